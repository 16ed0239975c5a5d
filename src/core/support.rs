//! Support access, only by consent: the windows an app's developers open for the platform's
//! support staff, and the pure decision over them.

use std::time::Duration;

use serde::Serialize;

use crate::core::decision::{NoAccessDetail, Outcome, Reason};
use crate::core::ids::{AppId, SupportId};
use crate::core::policy::{Capability, Visibility};
use crate::core::time::Timestamp;

/// The longest a support window may stay open: 7 days.
pub const MAX_SUPPORT_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long a support window stays open unless told otherwise: 24 hours.
pub const DEFAULT_SUPPORT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The longest reason a window may give, in bytes.
pub const MAX_SUPPORT_REASON: usize = 500;

/// The longest support agent name, in bytes.
pub const MAX_AGENT_NAME: usize = 64;

/// Whether `agent` is a support agent's name: 1 to [`MAX_AGENT_NAME`] bytes of ASCII letters,
/// digits, `.`, `_` and `-` (no `@`: a name is written in the audit log, which holds no
/// address outside the app it belongs to).
///
/// ```
/// assert!(ghauthz::valid_agent_name("a7"));
/// assert!(!ghauthz::valid_agent_name("a 7"));
/// ```
pub fn valid_agent_name(agent: &str) -> bool {
    !agent.is_empty()
        && agent.len() <= MAX_AGENT_NAME
        && agent.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A window in which the platform's support staff (or one agent) may `view` or `edit` a private
/// app, opened by someone who may edit it; it ends on its own at `ends_at`, or when revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SupportWindow {
    /// Its id.
    pub id: SupportId,
    /// The app it opens.
    pub app: AppId,
    /// The one agent it admits; any agent when `None`.
    pub agent: Option<String>,
    /// What it allows: `view`, `edit`, or both; never `deploy` or `delete`.
    pub capabilities: Vec<Capability>,
    /// When it was opened.
    pub opened_at: Timestamp,
    /// When it ends on its own.
    pub ends_at: Timestamp,
    /// Why it was opened, as its grantor wrote it.
    pub reason: String,
    /// Who opened it (`operator` or `github:<id>`).
    pub granted_by: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

impl SupportWindow {
    /// Whether it is open at `now`: opened, not ended, never revoked (a revocation closes it
    /// at once, whatever the revoking replica's clock said). A window never lasts more than
    /// [`MAX_SUPPORT_WINDOW`]: one stored with a later end ends that long after it opened.
    pub fn is_open_at(&self, now: Timestamp) -> bool {
        self.opened_at <= now && now < self.ends() && self.revoked_at.is_none()
    }

    /// When it ends on its own: `ends_at`, at most [`MAX_SUPPORT_WINDOW`] after it opened.
    fn ends(&self) -> Timestamp {
        self.ends_at.min(self.opened_at.plus(MAX_SUPPORT_WINDOW))
    }

    /// Whether it admits `agent`.
    pub fn admits(&self, agent: &str) -> bool {
        self.agent.as_deref().is_none_or(|a| a == agent)
    }
}

/// The verdict for support agent `agent` asking for `cap` (`None`: something no window grants,
/// such as managing viewers) on an app with `visibility`, given the app's windows: pure, `now`
/// given. A public app is open to view; otherwise an open window that admits the agent and
/// names the capability is needed, and `deploy` and `delete` are never granted.
pub(crate) fn decide_support(
    windows: &[SupportWindow],
    agent: &str,
    cap: Option<Capability>,
    visibility: Visibility,
    now: Timestamp,
) -> (Outcome, Reason) {
    if cap == Some(Capability::View) && visibility == Visibility::Public {
        return (Outcome::Allow, Reason::PublicApp);
    }
    let granting = cap.filter(|c| !c.is_destructive()).and_then(|cap| {
        windows
            .iter()
            .filter(|w| {
                valid_agent_name(agent) && w.is_open_at(now) && w.admits(agent) && w.capabilities.contains(&cap)
            })
            .max_by_key(|w| w.ends())
    });
    match granting {
        Some(w) => (Outcome::Allow, Reason::SupportWindow { window: w.id, ends_at: w.ends() }),
        None => (Outcome::Deny, Reason::NoAccess { detail: NoAccessDetail::NoSupportWindow }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(agent: Option<&str>, caps: &[Capability], revoked_at: Option<u64>) -> SupportWindow {
        SupportWindow {
            id: SupportId(1),
            app: AppId("dash".into()),
            agent: agent.map(str::to_owned),
            capabilities: caps.to_vec(),
            opened_at: Timestamp(1_000),
            ends_at: Timestamp(2_000),
            reason: "ticket 42".into(),
            granted_by: "github:5".into(),
            revoked_at: revoked_at.map(Timestamp),
        }
    }

    fn allowed(windows: &[SupportWindow], agent: &str, cap: Capability, now: u64) -> bool {
        decide_support(windows, agent, Some(cap), Visibility::Private, Timestamp(now)).0 == Outcome::Allow
    }

    #[test]
    fn a_window_stored_longer_than_seven_days_ends_after_seven() {
        let week = u64::try_from(MAX_SUPPORT_WINDOW.as_millis()).unwrap();
        let long = [SupportWindow { ends_at: Timestamp(1_000 + 2 * week), ..window(None, &[Capability::View], None) }];
        assert!(allowed(&long, "a7", Capability::View, 1_000 + week - 1));
        assert!(!allowed(&long, "a7", Capability::View, 1_000 + week), "no window outlasts seven days");
    }

    #[test]
    fn a_window_grants_exactly_its_capabilities_inside_its_time_to_its_agent() {
        let w = [window(Some("a7"), &[Capability::View], None)];
        assert!(allowed(&w, "a7", Capability::View, 1_000));
        assert!(allowed(&w, "a7", Capability::View, 1_999));
        assert!(!allowed(&w, "a7", Capability::View, 2_000), "ended");
        assert!(!allowed(&w, "a7", Capability::View, 999), "not yet open");
        assert!(!allowed(&w, "a7", Capability::Edit, 1_500), "not granted");
        assert!(!allowed(&w, "b8", Capability::View, 1_500), "another agent");
        let any = [window(None, &[Capability::View, Capability::Edit, Capability::Deploy], None)];
        assert!(allowed(&any, "b8", Capability::Edit, 1_500));
        assert!(!allowed(&any, "b8", Capability::Deploy, 1_500), "never deploy");
        assert!(!allowed(&any, "b8", Capability::Delete, 1_500), "never delete");
        assert!(!allowed(&any, "b 8", Capability::View, 1_500), "not an agent name");
    }

    #[test]
    fn a_revoked_window_grants_nothing_whatever_the_clocks_say() {
        let w = [window(None, &[Capability::View], Some(1_500))];
        assert!(!allowed(&w, "a7", Capability::View, 1_499), "a replica whose clock lags");
        assert!(!allowed(&w, "a7", Capability::View, 1_500));
        assert!(!valid_agent_name("dana@example.com"), "no address becomes an agent's name");
    }

    #[test]
    fn public_apps_are_open_to_view_and_nothing_else_is_without_a_window() {
        let d = decide_support(&[], "a7", Some(Capability::View), Visibility::Public, Timestamp(0));
        assert_eq!(d, (Outcome::Allow, Reason::PublicApp));
        let d = decide_support(&[], "a7", Some(Capability::Edit), Visibility::Public, Timestamp(0));
        assert_eq!(d, (Outcome::Deny, Reason::NoAccess { detail: NoAccessDetail::NoSupportWindow }));
        let w = [window(None, &[Capability::View, Capability::Edit], None)];
        let d = decide_support(&w, "a7", None, Visibility::Private, Timestamp(1_500));
        assert_eq!(d.0, Outcome::Deny, "managing viewers is never granted");
    }
}
