//! The audit log's entries: who acted, what was done or checked, and whether it was allowed.

use serde::Serialize;

use crate::core::email::Email;
use crate::core::ids::{AppId, UserId};
use crate::core::time::Timestamp;

/// Who made a change, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Actor {
    /// The operator (the control plane itself, or the CLI without `--github-user`).
    Operator,
    /// A GitHub user, by id.
    Github(UserId),
    /// A signed-in viewer (the entry's address says who).
    Viewer,
    /// Nobody signed in.
    Anonymous,
    /// A support agent, by name.
    Support(String),
}

impl Actor {
    /// As written in the audit log: `operator`, `github:<id>`, `viewer`, `anonymous` or
    /// `support:<agent>`.
    pub fn label(&self) -> String {
        match self {
            Actor::Operator => "operator".to_owned(),
            Actor::Github(id) => format!("github:{id}"),
            Actor::Viewer => "viewer".to_owned(),
            Actor::Anonymous => "anonymous".to_owned(),
            Actor::Support(agent) => format!("support:{agent}"),
        }
    }

    /// The GitHub user a label names (`github:<id>`), if it names one.
    #[cfg_attr(
        not(any(feature = "sqlite", feature = "postgres")),
        expect(dead_code, reason = "only the SQL stores lock an identity's account")
    )]
    pub(crate) fn github_of(label: &str) -> Option<UserId> {
        label.strip_prefix("github:")?.parse().ok().map(UserId)
    }
}

/// What an audit entry records: a change of state, or a check the log must keep (deploy, delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditAction {
    /// A viewer grant was added.
    ViewerAdded,
    /// A viewer grant was removed.
    ViewerRemoved,
    /// A sign-in link was issued.
    LinkIssued,
    /// A sign-in link was used up (a viewer signed in with it).
    LinkRedeemed,
    /// A viewer signed in with Google.
    GoogleSignIn,
    /// An app was deployed (or redeployed), or a deploy was refused.
    Deploy,
    /// An app's visibility was changed, or a change was refused.
    Visibility,
    /// An app was deleted, or a deletion was refused.
    Delete,
    /// A support window was opened, or opening one was refused.
    SupportGranted,
    /// Support windows were revoked, or revoking was refused.
    SupportRevoked,
    /// A support agent's check, allowed or denied.
    SupportCheck,
    /// Anyone else's `deploy` or `delete` check, allowed or denied.
    Check,
}

impl AuditAction {
    const ALL: [AuditAction; 12] = [
        AuditAction::ViewerAdded,
        AuditAction::ViewerRemoved,
        AuditAction::LinkIssued,
        AuditAction::LinkRedeemed,
        AuditAction::GoogleSignIn,
        AuditAction::Deploy,
        AuditAction::Visibility,
        AuditAction::Delete,
        AuditAction::SupportGranted,
        AuditAction::SupportRevoked,
        AuditAction::SupportCheck,
        AuditAction::Check,
    ];

    /// The action's name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::ViewerAdded => "viewer_added",
            AuditAction::ViewerRemoved => "viewer_removed",
            AuditAction::LinkIssued => "link_issued",
            AuditAction::LinkRedeemed => "link_redeemed",
            AuditAction::GoogleSignIn => "google_sign_in",
            AuditAction::Deploy => "deploy",
            AuditAction::Visibility => "visibility",
            AuditAction::Delete => "delete",
            AuditAction::SupportGranted => "support_granted",
            AuditAction::SupportRevoked => "support_revoked",
            AuditAction::SupportCheck => "support_check",
            AuditAction::Check => "check",
        }
    }

    #[cfg_attr(
        not(any(feature = "sqlite", feature = "postgres")),
        expect(dead_code, reason = "only the SQL stores read actions back")
    )]
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Whether what an audit entry records was done or allowed, or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Done, or allowed.
    Allowed,
    /// Refused: nothing changed.
    Denied,
}

impl AuditOutcome {
    /// `allowed` or `denied`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Allowed => "allowed",
            AuditOutcome::Denied => "denied",
        }
    }

    #[cfg_attr(
        not(any(feature = "sqlite", feature = "postgres")),
        expect(dead_code, reason = "only the SQL stores read outcomes back")
    )]
    pub(crate) fn parse(s: &str) -> Option<Self> {
        [AuditOutcome::Allowed, AuditOutcome::Denied].into_iter().find(|o| o.as_str() == s)
    }
}

/// One entry of the append-only audit log.
///
/// An entry belongs to the app it is about (or, for a refused deploy of an app that does not
/// exist, to the GitHub identity that tried): deleting the app removes its addresses from its
/// entries, and deleting that account removes its entries and puts [`DELETED_ACCOUNT`] in place
/// of the identity wherever else it acted.
///
/// ```
/// use ghauthz::store::{Actor, AuditAction, AuditEvent, AuditOutcome};
/// use ghauthz::{AppId, Timestamp, UserId};
/// let e = AuditEvent::new(Timestamp(0), &Actor::Github(UserId(2)), &AppId("dash".into()), AuditAction::Deploy)
///     .with_outcome(AuditOutcome::Denied)
///     .with_detail("github_role");
/// assert_eq!((e.actor.as_str(), e.outcome, e.detail.as_deref()), ("github:2", AuditOutcome::Denied, Some("github_role")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditEvent {
    /// When it happened.
    pub at: Timestamp,
    /// Who (`operator`, `github:<id>`, or [`DELETED_ACCOUNT`]).
    pub actor: String,
    /// Which app.
    pub app: AppId,
    /// What happened.
    pub action: AuditAction,
    /// Done or allowed, or refused.
    pub outcome: AuditOutcome,
    /// The viewer concerned, if any.
    pub email: Option<Email>,
    /// What else the entry says, never personal: a deploy's coordinates (`owner/repo@branch:file`),
    /// a visibility, or the reason kind of a refusal (`github_role`, `app_exists`, ...).
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An entry of `action` on `app` by `actor` at `at`: allowed, with no address and no detail.
    pub fn new(at: Timestamp, actor: &Actor, app: &AppId, action: AuditAction) -> Self {
        AuditEvent {
            at,
            actor: actor.label(),
            app: app.clone(),
            action,
            outcome: AuditOutcome::Allowed,
            email: None,
            detail: None,
        }
    }

    /// The same entry, with this outcome.
    pub fn with_outcome(mut self, outcome: AuditOutcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// The same entry, about this viewer.
    pub fn with_email(mut self, email: &Email) -> Self {
        self.email = Some(email.clone());
        self
    }

    /// The same entry, with this detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// What stands in an audit entry for a GitHub identity whose account was deleted.
pub const DELETED_ACCOUNT: &str = "deleted-account";
