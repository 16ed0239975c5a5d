//! The error of a check that could not decide: what the adapters below (GitHub, the store) say
//! when they cannot answer, as the cache and the facade hand it on.

use std::time::Duration;

use crate::github::GithubError;
use crate::store::StoreError;

/// Why a check could not decide. Never an allow in disguise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// GitHub failed (unavailable, rate limited, credentials refused, or an unexpected answer).
    #[error(transparent)]
    Github(#[from] GithubError),
    /// The store failed: could not decide.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// In user-token mode, a check that must ask GitHub needs the user's token.
    #[error("user-token mode needs the user's github token for `{login}`")]
    MissingUserToken {
        /// The user's login.
        login: String,
    },
    /// The decision asked for a fact this kind of check does not gather: a defect in the
    /// library, never expected. Could not decide (so: denied).
    #[error("the check did not gather what its decision needs")]
    Undecided,
    /// GitHub does not list who holds a role on the repository (its roster is refused or too
    /// large, rosters are off, or user-token mode): a search for who may act cannot be answered
    /// whole, and is not answered in part.
    #[error("github does not list who holds a role on this repository")]
    NoRoster,
}

impl CheckError {
    /// A stable name: [`GithubError::kind`] or [`StoreError::kind`] for what failed below, or
    /// `missing_user_token`, `undecided` or `no_roster`.
    pub fn kind(&self) -> &'static str {
        match self {
            CheckError::Github(e) => e.kind(),
            CheckError::Store(e) => e.kind(),
            CheckError::MissingUserToken { .. } => "missing_user_token",
            CheckError::Undecided => "undecided",
            CheckError::NoRoster => "no_roster",
        }
    }

    /// Whether the failure is temporary (unavailable or rate limited): ask again later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            CheckError::Github(GithubError::Unavailable { .. }) | CheckError::Store(StoreError::Unavailable(_))
        )
    }

    /// When asking again makes sense, where known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CheckError::Github(e) => e.retry_after(),
            CheckError::Store(_)
            | CheckError::MissingUserToken { .. }
            | CheckError::Undecided
            | CheckError::NoRoster => None,
        }
    }
}
