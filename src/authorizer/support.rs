//! Support access, only by consent: someone who may edit an app opens a window for the
//! platform's support staff; a support agent's every check is decided over the app's windows and
//! audited.

use std::time::Duration;

use super::{Authorizer, ChangedBy, ManageError};
use crate::core::check::Asked;
use crate::core::ids::{AppId, SupportId};
use crate::core::policy::Capability;
use crate::core::support::{
    DEFAULT_SUPPORT_WINDOW, MAX_SUPPORT_REASON, MAX_SUPPORT_WINDOW, SupportWindow, valid_agent_name,
};
use crate::error::CheckError;
use crate::store::{AuditAction, AuditEvent, Change};

/// What managing support windows asks: the policy's `edit`.
const EDIT: Asked = Asked::Capability(Capability::Edit);

/// What [`Authorizer::grant_support`](crate::Authorizer::grant_support) is asked to open: the capabilities (`view` unless set;
/// `view` and `edit` only), how long (24 hours unless set; at most [`MAX_SUPPORT_WINDOW`]), for
/// one agent or any, and why.
///
/// ```
/// use std::time::Duration;
/// use ghauthz::{Capability, SupportGrant};
/// let g = SupportGrant::new("ticket 4711: the app will not start")
///     .with_capabilities([Capability::View, Capability::Edit])
///     .with_duration(Duration::from_secs(2 * 3600))
///     .for_agent("a7");
/// assert_eq!((g.agent(), g.duration().as_secs()), (Some("a7"), 7200));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SupportGrant {
    capabilities: Vec<Capability>,
    duration: Duration,
    agent: Option<String>,
    reason: String,
}

impl SupportGrant {
    /// A window for any agent to `view`, for 24 hours, given `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        SupportGrant {
            capabilities: vec![Capability::View],
            duration: DEFAULT_SUPPORT_WINDOW,
            agent: None,
            reason: reason.into(),
        }
    }

    /// The same grant, for these capabilities (`view`, `edit`).
    pub fn with_capabilities(mut self, capabilities: impl IntoIterator<Item = Capability>) -> Self {
        let mut caps: Vec<Capability> = capabilities.into_iter().collect();
        caps.sort_by_key(|c| c.as_str());
        caps.dedup();
        self.capabilities = caps;
        self
    }

    /// The same grant, open this long.
    pub fn with_duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// The same grant, for this agent only.
    pub fn for_agent(mut self, agent: impl Into<String>) -> Self {
        self.agent = Some(agent.into());
        self
    }

    /// The capabilities it grants.
    pub fn capabilities(&self) -> &[Capability] {
        &self.capabilities
    }

    /// How long it stays open.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The one agent it admits, if it names one.
    pub fn agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    /// Why it is opened.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The first field that is refused.
    fn invalid_field(&self) -> Option<&'static str> {
        let reason = &self.reason;
        if self.capabilities.is_empty() || self.capabilities.iter().any(|c| c.is_destructive()) {
            Some("capabilities")
        } else if self.duration.is_zero() || self.duration > MAX_SUPPORT_WINDOW {
            Some("duration")
        } else if self.agent.as_deref().is_some_and(|a| !valid_agent_name(a)) {
            Some("agent")
        } else if reason.trim().is_empty() || reason.len() > MAX_SUPPORT_REASON || reason.chars().any(char::is_control)
        {
            Some("reason")
        } else {
            None
        }
    }
}

impl Authorizer {
    /// Opens a support window on `app`: the platform's support staff (or the one agent named)
    /// may then `view` or `edit` it, as granted, until the window ends or is revoked. `by` needs
    /// `edit` (or is the operator, acting on consent given elsewhere). Audited
    /// ([`AuditAction::SupportGranted`]), and so is a refusal. The window goes with the app,
    /// and with the account of whoever opened it.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, Capability, ChangedBy, Principal, SupportGrant};
    /// use ghauthz::CheckRequest;
    /// let dash = AppId("dash".into());
    /// let agent = Principal::support("a7");
    /// assert!(!authz.check(&CheckRequest::new(&agent, &dash, Capability::View)).await.unwrap().is_allowed());
    /// let carol = ChangedBy::Principal(Principal::github(world.user("carol").unwrap())); // write
    /// authz.grant_support(&carol, &dash, &SupportGrant::new("ticket 4711").for_agent("a7")).await.unwrap();
    /// assert!(authz.check(&CheckRequest::new(&agent, &dash, Capability::View)).await.unwrap().is_allowed());
    /// assert!(!authz.check(&CheckRequest::new(&agent, &dash, Capability::Deploy)).await.unwrap().is_allowed());
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    ///
    /// # Errors
    ///
    /// [`ManageError::InvalidSupport`] (nothing asked or written), [`ManageError::UnknownApp`],
    /// [`ManageError::Denied`] (audited), or [`ManageError::Check`] when GitHub or the store
    /// failed.
    ///
    /// # Security
    ///
    /// There is no other way in for support staff: without an open window that admits the agent
    /// and grants the capability, a support agent is denied, and `deploy` and `delete` are never
    /// granted.
    pub async fn grant_support(
        &self,
        by: &ChangedBy,
        app: &AppId,
        grant: &SupportGrant,
    ) -> Result<SupportWindow, ManageError> {
        if let Some(field) = grant.invalid_field() {
            return Err(ManageError::InvalidSupport(field));
        }
        let actor = self.authorize_app(by, app, EDIT, Some(AuditAction::SupportGranted)).await?;
        let now = self.inner.clock.now();
        let mut window = SupportWindow {
            id: SupportId(0),
            app: app.clone(),
            agent: grant.agent.clone(),
            capabilities: grant.capabilities.clone(),
            opened_at: now,
            ends_at: now.plus(grant.duration),
            reason: grant.reason.clone(),
            granted_by: actor.label(),
            revoked_at: None,
        };
        let caps: Vec<&str> = window.capabilities.iter().map(|c| c.as_str()).collect();
        let detail =
            format!("{} for {}s, agent {}", caps.join(","), grant.duration.as_secs(), grant.agent().unwrap_or("any"));
        let event = AuditEvent::new(now, &actor, app, AuditAction::SupportGranted).with_detail(detail);
        let opened = self.inner.store.open_support(&window, &event).await;
        self.inner.cache.apply_change(&Change::App { app: app.clone() });
        window.id = opened.map_err(CheckError::from)?.ok_or_else(|| ManageError::UnknownApp(app.clone()))?;
        Ok(window)
    }

    /// Revokes every support window of `app` not revoked yet (with `agent`, every one that admits
    /// that agent: its own and those for any agent, so that the agent is cut off; an ended one
    /// too, so that a replica whose clock runs behind cannot still take it for open),
    /// on this replica before the call returns, and on every other replica as soon as the store's
    /// change feed brings it (as a viewer's removal does). `by` needs
    /// `edit`, or is the operator. Returns how many were revoked; audited
    /// ([`AuditAction::SupportRevoked`]) when any was, and so is a refusal.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, Capability, ChangedBy, Principal, SupportGrant};
    /// use ghauthz::CheckRequest;
    /// let dash = AppId("dash".into());
    /// authz.grant_support(&ChangedBy::Operator, &dash, &SupportGrant::new("ticket 4711")).await.unwrap();
    /// assert_eq!(authz.revoke_support(&ChangedBy::Operator, &dash, None).await.unwrap(), 1);
    /// let d = authz.check(&CheckRequest::new(&Principal::support("a7"), &dash, Capability::View)).await.unwrap();
    /// assert!(!d.is_allowed());
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    ///
    /// # Errors
    ///
    /// [`ManageError::InvalidSupport`] for an `agent` that is not an agent's name (nothing asked
    /// or written), [`ManageError::UnknownApp`], [`ManageError::Denied`] (audited), or
    /// [`ManageError::Check`] when GitHub or the store failed.
    pub async fn revoke_support(&self, by: &ChangedBy, app: &AppId, agent: Option<&str>) -> Result<u32, ManageError> {
        if agent.is_some_and(|a| !valid_agent_name(a)) {
            return Err(ManageError::InvalidSupport("agent"));
        }
        let actor = self.authorize_app(by, app, EDIT, Some(AuditAction::SupportRevoked)).await?;
        let now = self.inner.clock.now();
        let event = AuditEvent::new(now, &actor, app, AuditAction::SupportRevoked)
            .with_detail(format!("agent {}", agent.unwrap_or("any")));
        let revoked = self.inner.store.revoke_support(app, agent, now, &event).await;
        self.inner.cache.apply_change(&Change::App { app: app.clone() });
        Ok(revoked.map_err(CheckError::from)?)
    }

    /// Every support window of `app`, open or not, ordered by id. `by` needs `edit`, or is the
    /// operator.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, ChangedBy, SupportGrant};
    /// let dash = AppId("dash".into());
    /// authz.grant_support(&ChangedBy::Operator, &dash, &SupportGrant::new("ticket 4711")).await.unwrap();
    /// let windows = authz.support_windows(&ChangedBy::Operator, &dash).await.unwrap();
    /// assert_eq!(windows[0].reason, "ticket 4711");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    ///
    /// # Errors
    ///
    /// [`ManageError::UnknownApp`], [`ManageError::Denied`], or [`ManageError::Check`] when
    /// GitHub or the store failed.
    pub async fn support_windows(&self, by: &ChangedBy, app: &AppId) -> Result<Vec<SupportWindow>, ManageError> {
        self.authorize_app(by, app, EDIT, None).await?;
        Ok(self.inner.store.support_windows(app).await.map_err(CheckError::from)?)
    }
}
