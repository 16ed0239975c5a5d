//! The verified viewer session, how the viewer signed in, and why a session is refused.

use serde::{Deserialize, Serialize};

use crate::core::email::Email;
use crate::core::ids::{AppId, GrantId};
use crate::core::time::Timestamp;

/// How a viewer signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// A single-use emailed link.
    EmailLink,
    /// Google sign-in.
    Google,
}

/// A verified viewer session: only [`crate::Authorizer::verify_session`] (or a redemption) makes
/// one, and checks of viewers accept only this type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub(crate) app: AppId,
    pub(crate) email: Email,
    pub(crate) grant: GrantId,
    pub(crate) via: Via,
    pub(crate) expires_at: Timestamp,
}

impl Session {
    /// The grant the viewer signed in under: the session opens nothing once it has ended, even if
    /// the address is invited again.
    pub fn grant(&self) -> GrantId {
        self.grant
    }

    /// The one app the session opens.
    pub fn app(&self) -> &AppId {
        &self.app
    }

    /// The invited address.
    pub fn email(&self) -> &Email {
        &self.email
    }

    /// How the viewer signed in.
    pub fn via(&self) -> Via {
        self.via
    }

    /// When the session ends.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }
}

/// Why a viewer session was refused. Never carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionError {
    /// Not a well-formed token, a wrong algorithm, a bad signature, or missing claims.
    #[error("the session is not valid")]
    Invalid,
    /// Signed by a key that is no longer listed.
    #[error("the session was signed by a retired key")]
    RetiredKey,
    /// Past its lifetime.
    #[error("the session has expired")]
    Expired,
    /// The session opens another app.
    #[error("the session is for another app")]
    WrongApp,
    /// The keys could not sign.
    #[error("the session could not be signed")]
    Signing,
}

impl SessionError {
    /// The error's kind as written in JSON.
    pub fn kind(self) -> &'static str {
        match self {
            SessionError::Invalid => "invalid",
            SessionError::RetiredKey => "retired_key",
            SessionError::Expired => "expired",
            SessionError::WrongApp => "wrong_app",
            SessionError::Signing => "signing",
        }
    }
}
