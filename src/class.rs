//! What each public error means to whoever called, in one table: bad input, refused, or could
//! not decide. The command line exits with its code; a service answers with its status.

use crate::authorizer::{BuildError, ManageError};
use crate::error::CheckError;
use crate::github::GithubError;
use crate::google::GoogleError;
use crate::store::StoreError;
use crate::viewer::{GoogleSignInError, LinkError, SignInRefusal};
use crate::webhook::WebhookError;

/// What an error means to whoever called: the input was bad, the request was refused, or nothing
/// could be decided. An error's `kind()` says exactly what happened; its class says what to do
/// about it, and the command line's exit code is the class's ([`ErrorClass::exit_code`]).
///
/// ```
/// use ghauthz::{ErrorClass, LinkError};
/// use std::time::Duration;
/// let limited = LinkError::RateLimited { retry_after: Duration::from_secs(30) };
/// assert_eq!((limited.kind(), limited.class()), ("rate_limited", ErrorClass::Denied));
/// assert_eq!(ErrorClass::Unavailable.exit_code(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Bad usage or bad input: fix the request (exit 1).
    Usage,
    /// Refused: a denial, or a token, link or signature that does not hold (exit 2).
    Denied,
    /// Could not decide: GitHub, Google or the store is unavailable or rate limited, or the
    /// credentials are refused. Never an allow: treat it as a denial and ask again later (exit 3).
    Unavailable,
}

impl ErrorClass {
    /// The command line's exit code: 1, 2 or 3 (0 is success, which is no error).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorClass::Usage => 1,
            ErrorClass::Denied => 2,
            ErrorClass::Unavailable => 3,
        }
    }
}

impl CheckError {
    /// What the error means to the caller: a check that could not decide, never an allow
    /// ([`ErrorClass::Unavailable`]), a user-token check without the user's token included;
    /// a store location that cannot work is bad input.
    pub fn class(&self) -> ErrorClass {
        match self {
            CheckError::Github(e) => e.class(),
            CheckError::Store(e) => e.class(),
            CheckError::MissingUserToken { .. } | CheckError::Undecided | CheckError::NoRoster => {
                ErrorClass::Unavailable
            }
        }
    }
}

impl GithubError {
    /// What the error means to the caller: GitHub could not answer, always
    /// [`ErrorClass::Unavailable`].
    pub fn class(&self) -> ErrorClass {
        match self {
            GithubError::Unavailable { .. }
            | GithubError::Credentials { .. }
            | GithubError::MalformedToken
            | GithubError::Protocol { .. }
            | GithubError::NotInstalled
            | GithubError::InstallationSuspended { .. } => ErrorClass::Unavailable,
        }
    }
}

impl StoreError {
    /// What the error means to the caller: a store location or option that cannot work is bad
    /// input; anything else is [`ErrorClass::Unavailable`].
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::InvalidConfig(_) => ErrorClass::Usage,
            StoreError::Unavailable(_) | StoreError::Corrupt(_) => ErrorClass::Unavailable,
        }
    }
}

impl ManageError {
    /// What the error means to the caller.
    pub fn class(&self) -> ErrorClass {
        match self {
            ManageError::InvalidEmail(_) | ManageError::InvalidDeployment(_) | ManageError::InvalidSupport(_) => {
                ErrorClass::Usage
            }
            ManageError::UnknownApp(_)
            | ManageError::Denied { .. }
            | ManageError::RepoNotFound(_)
            | ManageError::AppExists(_) => ErrorClass::Denied,
            ManageError::Check(e) => e.class(),
        }
    }
}

impl SignInRefusal {
    /// What the refusal means to the caller.
    pub fn class(&self) -> ErrorClass {
        match self {
            SignInRefusal::NotInvited | SignInRefusal::UnknownApp(_) | SignInRefusal::Session(_) => ErrorClass::Denied,
            SignInRefusal::Store(_) | SignInRefusal::NoRandomness(_) => ErrorClass::Unavailable,
        }
    }
}

impl LinkError {
    /// What the error means to the caller: a link past its limit is refused (exit 2), not
    /// undecided.
    pub fn class(&self) -> ErrorClass {
        match self {
            LinkError::InvalidEmail(_) => ErrorClass::Usage,
            LinkError::RateLimited { .. }
            | LinkError::Expired
            | LinkError::AlreadyUsed
            | LinkError::Invalid
            | LinkError::Revoked
            | LinkError::WrongApp => ErrorClass::Denied,
            LinkError::SignIn(refusal) => refusal.class(),
        }
    }
}

impl GoogleError {
    /// What the error means to the caller: a token that does not hold is refused; Google's keys
    /// out of reach leave the sign-in undecided.
    pub fn class(&self) -> ErrorClass {
        match self {
            GoogleError::KeysUnavailable(_) => ErrorClass::Unavailable,
            _ => ErrorClass::Denied,
        }
    }
}

impl GoogleSignInError {
    /// What the error means to the caller.
    pub fn class(&self) -> ErrorClass {
        match self {
            GoogleSignInError::Token(e) => e.class(),
            GoogleSignInError::NotConfigured => ErrorClass::Usage,
            GoogleSignInError::SignIn(refusal) => refusal.class(),
        }
    }
}

impl WebhookError {
    /// What the error means to the caller: a signature that does not hold is refused, a
    /// delivery that is not one is bad input, and a store that cannot record it is undecided.
    pub fn class(&self) -> ErrorClass {
        match self {
            WebhookError::MissingSignature
            | WebhookError::Sha1Only
            | WebhookError::MalformedSignature
            | WebhookError::BadSignature => ErrorClass::Denied,
            WebhookError::NotConfigured
            | WebhookError::MissingHeader(_)
            | WebhookError::InvalidDeliveryId
            | WebhookError::TooLarge => ErrorClass::Usage,
            WebhookError::Store(e) => e.class(),
        }
    }
}

impl BuildError {
    /// What the error means to the caller: the authorizer could not start (no GitHub or Google
    /// client, no runtime, no randomness), [`ErrorClass::Unavailable`].
    pub fn class(&self) -> ErrorClass {
        match self {
            BuildError::Github(_)
            | BuildError::Google(_)
            | BuildError::NoRuntime
            | BuildError::Keys(_)
            | BuildError::ReplicaId(_) => ErrorClass::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::AppId;
    use crate::store::StoreFailure;

    #[test]
    fn one_kind_may_mean_two_classes_and_the_class_follows_the_error() {
        // `rate_limited`: a link past its limit is refused; GitHub out of budget is undecided.
        let link = LinkError::RateLimited { retry_after: std::time::Duration::from_secs(1) };
        let github =
            GithubError::Unavailable { cause: crate::github::UnavailableCause::RateLimited, retry_after: None };
        assert_eq!((link.kind(), github.kind()), ("rate_limited", "rate_limited"));
        assert_eq!((link.class(), github.class()), (ErrorClass::Denied, ErrorClass::Unavailable));
        // Wrapped errors keep their class: a management call that could not decide is exit 3.
        let store = StoreError::Unavailable(StoreFailure::new("down"));
        assert_eq!(ManageError::Check(CheckError::Store(store.clone())).class(), ErrorClass::Unavailable);
        assert_eq!(LinkError::SignIn(SignInRefusal::Store(store)).class(), ErrorClass::Unavailable);
        assert_eq!(ManageError::UnknownApp(AppId("x".into())).class().exit_code(), 2);
        assert_eq!(WebhookError::TooLarge.class().exit_code(), 1);
        assert_eq!(WebhookError::BadSignature.class().exit_code(), 2);
    }
}
