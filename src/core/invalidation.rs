//! What to forget: the invalidations webhooks, replicas and callers send the cache.

use serde::{Deserialize, Serialize};

use crate::core::ids::{OwnerId, RepoId, UserId};

/// What to forget.
///
/// [`Authorizer::invalidate`](crate::Authorizer::invalidate) applies it on this replica and every
/// other replica that shares the store; [`Authorizer::invalidate_local`](crate::Authorizer::invalidate_local)
/// on this one only. Either is effective for the next check.
///
/// Serialized (in `LISTEN/NOTIFY` messages and in the CLI's `webhook` output) as an object with
/// a `kind` and the ids it names:
///
/// ```
/// use ghauthz::{Invalidation, RepoId, UserId};
/// let inv = Invalidation::UserOnRepo(UserId(3), RepoId(101));
/// let json = serde_json::to_string(&inv).unwrap();
/// assert_eq!(json, r#"{"kind":"user_on_repo","user":3,"repo":101}"#);
/// assert_eq!(serde_json::from_str::<Invalidation>(&json).unwrap(), inv);
/// assert!(serde_json::from_str::<Invalidation>(r#"{"kind":"user"}"#).is_err(), "ids are required");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "InvalidationWire", try_from = "InvalidationWire")]
#[non_exhaustive]
pub enum Invalidation {
    /// Every fact about this user.
    User(UserId),
    /// The fact about this user on this repository (a collaborator added, changed or removed).
    UserOnRepo(UserId, RepoId),
    /// Every fact about this user on the repositories this account owns (an organization
    /// membership changed).
    UserInOwner(UserId, OwnerId),
    /// Every fact about this repository.
    Repo(RepoId),
    /// Every fact about the repositories this account (an organization or a user) owns.
    Owner(OwnerId),
    /// Everything.
    All,
}

impl Invalidation {
    /// The user it is about, if it names one.
    #[cfg_attr(not(feature = "sqlite"), expect(dead_code, reason = "only the SQLite store rewrites its history"))]
    pub(crate) fn user(&self) -> Option<UserId> {
        match self {
            Invalidation::User(u) | Invalidation::UserOnRepo(u, _) | Invalidation::UserInOwner(u, _) => Some(*u),
            Invalidation::Repo(_) | Invalidation::Owner(_) | Invalidation::All => None,
        }
    }
}

/// How an [`Invalidation`] is written: `{"kind": "...", "user": .., "repo": .., "owner": ..}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidationWire {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repo: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<u64>,
}

impl From<Invalidation> for InvalidationWire {
    fn from(inv: Invalidation) -> Self {
        let (kind, user, repo, owner) = match inv {
            Invalidation::User(u) => ("user", Some(u.0), None, None),
            Invalidation::UserOnRepo(u, r) => ("user_on_repo", Some(u.0), Some(r.0), None),
            Invalidation::UserInOwner(u, o) => ("user_in_owner", Some(u.0), None, Some(o.0)),
            Invalidation::Repo(r) => ("repo", None, Some(r.0), None),
            Invalidation::Owner(o) => ("owner", None, None, Some(o.0)),
            Invalidation::All => ("all", None, None, None),
        };
        Self { kind: kind.to_owned(), user, repo, owner }
    }
}

impl TryFrom<InvalidationWire> for Invalidation {
    type Error = String;

    fn try_from(w: InvalidationWire) -> Result<Self, String> {
        let inv = match (w.kind.as_str(), w.user, w.repo, w.owner) {
            ("user", Some(u), None, None) => Invalidation::User(UserId(u)),
            ("user_on_repo", Some(u), Some(r), None) => Invalidation::UserOnRepo(UserId(u), RepoId(r)),
            ("user_in_owner", Some(u), None, Some(o)) => Invalidation::UserInOwner(UserId(u), OwnerId(o)),
            ("repo", None, Some(r), None) => Invalidation::Repo(RepoId(r)),
            ("owner", None, None, Some(o)) => Invalidation::Owner(OwnerId(o)),
            ("all", None, None, None) => Invalidation::All,
            (kind, ..) => return Err(format!("invalidation `{kind}` with the wrong ids")),
        };
        Ok(inv)
    }
}
