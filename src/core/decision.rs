//! Decisions: an outcome with its reason, where the facts came from and how old they are.

use std::time::Duration;

use serde::Serialize;

use crate::core::ids::{RepoId, SupportId};
use crate::core::policy::{Need, Role, RoleGrant, RoleName, Visibility};
use crate::core::session::{SessionError, Via};
use crate::core::time::Timestamp;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The action may proceed.
    Allow,
    /// It may not.
    Deny,
}

/// Why a [`NoAccess`](Reason::NoAccess) denial was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NoAccessDetail {
    /// Nobody is signed in.
    Anonymous,
    /// GitHub says the user has no role on the repository.
    NoRole,
    /// The repository's roster, which lists the users holding at least the least role the
    /// policy grants anything to (`write` under the default policy), does not list the user:
    /// they hold no role the policy counts (perhaps `read` or `triage`).
    NotOnRoster,
    /// No repository answers at the app's coordinates (deleted, or out of the credentials' reach).
    RepositoryNotFound,
    /// No installation of the GitHub App covers the app's repository (the App is not installed
    /// on its account, or not given this repository), so GitHub was not asked about the user.
    NoInstallation,
    /// GitHub says the login belongs to another user id now (renamed and reused): the control
    /// plane's login for this user is out of date.
    LoginMismatch,
    /// An invited viewer may only view.
    ViewOnly,
    /// A support agent, with no open support window that admits them and grants this (a window
    /// never grants `deploy` or `delete`).
    NoSupportWindow,
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// The user's GitHub role decided: it is at least `required` (allow) or below it (deny).
    GithubRole {
        /// The role that decided (a custom role's base).
        role: Role,
        /// The role's name as GitHub reported it.
        role_name: RoleName,
        /// The least role the capability needs under the policy.
        required: Role,
    },
    /// The app is public and the action is `view`.
    PublicApp,
    /// A signed-in viewer invited to this app.
    ViewerGrant {
        /// How they signed in.
        via: Via,
    },
    /// A signed-in viewer whose address is not (or no longer) invited to this app.
    NotInvited,
    /// The viewer session was refused.
    SessionInvalid {
        /// Why the session was refused.
        error: SessionError,
    },
    /// No role, no invitation, or nobody signed in.
    NoAccess {
        /// What exactly was missing.
        detail: NoAccessDetail,
    },
    /// The repository at the app's coordinates is no longer the one deployed.
    RepoReplaced {
        /// The id deployed.
        deployed: RepoId,
        /// The id now at the coordinates.
        current: RepoId,
    },
    /// No app has this id.
    UnknownApp,
    /// A support window the app's developers opened admits the agent and grants this.
    SupportWindow {
        /// The window.
        window: SupportId,
        /// When it ends on its own, in milliseconds since the Unix epoch.
        #[serde(rename = "ends_at_ms")]
        ends_at: Timestamp,
    },
}

impl Reason {
    /// The reason's kind, as written in JSON (`github_role`, `public_app`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::GithubRole { .. } => "github_role",
            Reason::PublicApp => "public_app",
            Reason::ViewerGrant { .. } => "viewer_grant",
            Reason::NotInvited => "not_invited",
            Reason::SessionInvalid { .. } => "session_invalid",
            Reason::NoAccess { .. } => "no_access",
            Reason::RepoReplaced { .. } => "repo_replaced",
            Reason::UnknownApp => "unknown_app",
            Reason::SupportWindow { .. } => "support_window",
        }
    }
}

/// Where the facts behind a decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Asked of GitHub during this check (a 304 revalidation included).
    Github,
    /// Answered from the permission cache.
    Cache,
    /// The app's own record (visibility, existence) decided; GitHub was not needed.
    Store,
}

/// Which GitHub lookup the facts behind a decision came from ([`Decision::lookup`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Lookup {
    /// The repository's roster, shared by every user of the repository.
    Roster,
    /// A lookup of this user alone: the permission route (installation and App mode, where the
    /// repository's roster is refused, too large, or not used) or the repository read with the
    /// user's own token (user-token mode).
    User,
    /// The repository itself: nothing, or another repository, answers at the app's coordinates.
    Repository,
}

/// The answer to "may this principal do this to this app?".
///
/// Never a bare bool: it carries the [`Reason`], the [`Source`] of its facts and their age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    outcome: Outcome,
    reason: Reason,
    source: Source,
    /// The facts' age, in milliseconds (the clock's resolution).
    age_ms: u64,
    /// Which GitHub lookup the facts came from, where a GitHub fact decided.
    lookup: Option<Lookup>,
}

impl Decision {
    /// `age_ms`: how old the facts are, in milliseconds.
    #[inline]
    pub(crate) fn new(outcome: Outcome, reason: Reason, source: Source, age_ms: u64) -> Self {
        Self { outcome, reason, source, age_ms, lookup: None }
    }

    /// The decision a GitHub fact gave, which says which lookup it came from.
    #[inline]
    pub(crate) fn github(outcome: Outcome, reason: Reason, source: Source, age_ms: u64, lookup: Lookup) -> Self {
        Self { outcome, reason, source, age_ms, lookup: Some(lookup) }
    }

    /// Allow or deny.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Shorthand for `outcome() == Outcome::Allow`.
    pub fn is_allowed(&self) -> bool {
        self.outcome == Outcome::Allow
    }

    /// Why it was decided so: the role, the grant or the refusal it rests on.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }

    /// Where the facts came from.
    pub fn source(&self) -> Source {
        self.source
    }

    /// How old the facts are: time since GitHub last confirmed them (zero for [`Source::Store`]).
    pub fn age(&self) -> Duration {
        Duration::from_millis(self.age_ms)
    }

    /// Which GitHub lookup the facts came from: the repository's roster, a lookup of this user
    /// alone, or the repository itself. `None` where no GitHub fact decided (an app record, a
    /// viewer's grant, a support window, nobody signed in).
    pub fn lookup(&self) -> Option<Lookup> {
        self.lookup
    }
}

/// As JSON: `{"decision": "allow", "reason": {"kind": ...}, "source": "cache", "age_ms": 1200,
/// "lookup": "roster"}`, `lookup` only where a GitHub fact decided.
impl Serialize for Decision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Decision", 5)?;
        st.serialize_field("decision", &self.outcome)?;
        st.serialize_field("reason", &self.reason)?;
        st.serialize_field("source", &self.source)?;
        st.serialize_field("age_ms", &self.age_ms)?;
        match &self.lookup {
            Some(lookup) => st.serialize_field("lookup", lookup)?,
            None => st.skip_field("lookup")?,
        }
        st.end()
    }
}

/// What is known of a GitHub user and an app's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fact {
    /// The user's effective role, or none, from a lookup of this user.
    Role(Option<RoleGrant>),
    /// The user's role as the repository's roster lists it, or none: absent from it, the user
    /// holds no role the policy counts.
    Rostered(Option<RoleGrant>),
    /// Another repository now answers at the app's coordinates.
    Replaced { current: RepoId },
    /// Nothing answers at the app's coordinates.
    RepoNotFound,
    /// No installation of the App covers the app's repository.
    NotInstalled,
    /// The login answered for another user id.
    LoginMismatch,
}

impl Fact {
    /// Whether the fact lives as "has a role" (else as a negative fact).
    #[inline]
    pub(crate) fn is_positive(&self) -> bool {
        matches!(self, Fact::Role(Some(_)) | Fact::Rostered(Some(_)))
    }

    /// Which lookup says so.
    #[inline]
    pub(crate) fn lookup(&self) -> Lookup {
        match self {
            Fact::Rostered(_) => Lookup::Roster,
            Fact::Role(_) | Fact::LoginMismatch => Lookup::User,
            Fact::Replaced { .. } | Fact::RepoNotFound | Fact::NotInstalled => Lookup::Repository,
        }
    }
}

/// The policy's verdict for a GitHub user: pure, no I/O, no clock.
#[inline]
pub(crate) fn decide_github(need: Need, deployed: RepoId, visibility: Visibility, fact: &Fact) -> (Outcome, Reason) {
    let public_view = need.open_on_public && visibility == Visibility::Public;
    let no_access = |detail| (Outcome::Deny, Reason::NoAccess { detail });
    match fact {
        Fact::Replaced { current } => (Outcome::Deny, Reason::RepoReplaced { deployed, current: *current }),
        Fact::RepoNotFound => no_access(NoAccessDetail::RepositoryNotFound),
        Fact::NotInstalled => no_access(NoAccessDetail::NoInstallation),
        Fact::LoginMismatch => no_access(NoAccessDetail::LoginMismatch),
        Fact::Role(Some(g)) | Fact::Rostered(Some(g)) => decide_role(need, visibility, g.role, g.name.clone()),
        Fact::Role(None) | Fact::Rostered(None) if public_view => (Outcome::Allow, Reason::PublicApp),
        Fact::Role(None) => no_access(NoAccessDetail::NoRole),
        Fact::Rostered(None) => no_access(NoAccessDetail::NotOnRoster),
    }
}

/// The policy's verdict for a user whose role on the app's repository is `role` (named
/// `role_name`).
#[inline]
fn decide_role(need: Need, visibility: Visibility, role: Role, role_name: RoleName) -> (Outcome, Reason) {
    let required = need.required;
    if role >= required {
        (Outcome::Allow, Reason::GithubRole { role, role_name, required })
    } else if need.open_on_public && visibility == Visibility::Public {
        // A public app is open to anyone; say so rather than "your role is too low".
        (Outcome::Allow, Reason::PublicApp)
    } else {
        (Outcome::Deny, Reason::GithubRole { role, role_name, required })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::policy::{Capability, Policy};

    fn role(r: Role) -> Fact {
        Fact::Role(Some(RoleGrant::standard(r)))
    }

    #[test]
    fn default_table_matches_design() {
        let p = Policy::default();
        let private = Visibility::Private;
        let expect = [
            (Role::Admin, [true, true, true, true]),
            (Role::Maintain, [true, true, false, false]),
            (Role::Write, [true, true, false, false]),
            (Role::Triage, [false, false, false, false]),
            (Role::Read, [false, false, false, false]),
        ];
        for (r, row) in expect {
            for (cap, want) in Capability::ALL.into_iter().zip(row) {
                let (o, _) = decide_github(p.need(cap), RepoId(1), private, &role(r));
                assert_eq!(o == Outcome::Allow, want, "{r} {cap}");
            }
        }
    }

    #[test]
    fn moved_capability_follows_policy() {
        let p = Policy { deploy: Role::Maintain, ..Policy::default() };
        let (o, reason) =
            decide_github(p.need(Capability::Deploy), RepoId(1), Visibility::Private, &role(Role::Maintain));
        assert_eq!(o, Outcome::Allow);
        assert_eq!(reason.kind(), "github_role");
    }

    #[test]
    fn replaced_repo_denies_even_admin() {
        let fact = Fact::Replaced { current: RepoId(2) };
        let (o, r) = decide_github(Policy::default().need(Capability::View), RepoId(1), Visibility::Public, &fact);
        assert_eq!(o, Outcome::Deny);
        assert_eq!(r, Reason::RepoReplaced { deployed: RepoId(1), current: RepoId(2) });
    }

    #[test]
    fn reason_serializes_with_kind() {
        let r = Reason::GithubRole {
            role: Role::Write,
            role_name: RoleName::Custom("release-manager".into()),
            required: Role::Write,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["kind"], "github_role");
        assert_eq!(v["role"], "write");
        assert_eq!(v["role_name"], "release-manager");
    }
}
