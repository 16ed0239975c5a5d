//! Support access only by consent: windows opened by someone who may edit, exactly their
//! capabilities, never deploy or delete, ended by time or revocation on every replica, every
//! check audited.
#![cfg(all(feature = "world", feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use ghauthz::CheckRequest;
use std::sync::Arc;
use std::time::Duration;

use crate::common;

use ghauthz::Clock as _;
use ghauthz::store::{AuditAction, AuditFilter, AuditOutcome, Store};
use ghauthz::{AppId, Authorizer, Capability, ChangedBy, Principal, SupportGrant};

fn id(s: &str) -> AppId {
    AppId(s.into())
}

async fn allowed(authz: &Authorizer, agent: &str, cap: Capability) -> bool {
    authz.check(&CheckRequest::new(&Principal::support(agent), &id("dash"), cap)).await.unwrap().is_allowed()
}

async fn a_window_opens_exactly_what_it_grants_until_it_ends(store: Arc<dyn Store>) {
    let v = common::viewers_on(store.clone()).await;
    let b = Authorizer::builder(v.mock.github_config())
        .clock(Arc::new(v.clock.clone()))
        .store(store.clone())
        .build()
        .unwrap();
    let by = |login: &str| ChangedBy::Principal(Principal::github(v.world.user(login).unwrap()));
    // Every support check made here, to compare with the audit log's count.
    let made = std::cell::Cell::new(0usize);
    let may = |authz: &Authorizer, agent: &'static str, cap: Capability| {
        made.set(made.get() + 1);
        let authz = authz.clone();
        async move { allowed(&authz, agent, cap).await }
    };
    // B hears a change made on A through the store's change feed: within a second.
    let on_b_within_a_second = |agent: &'static str, cap: Capability, want: bool| {
        let may = &may;
        let b = &b;
        async move {
            common::wait_until_async("B hears the change", Duration::from_secs(1), || async move {
                may(b, agent, cap).await == want
            })
            .await
        }
    };
    for authz in [&v.authz, &b] {
        assert!(!may(authz, "a7", Capability::View).await, "no window, no way in");
    }
    // Only someone who may edit opens a window; dave has triage.
    let grant = SupportGrant::new("ticket 4711").for_agent("a7").with_duration(Duration::from_secs(3600));
    assert_eq!(v.authz.grant_support(&by("dave"), &id("dash"), &grant).await.unwrap_err().kind(), "denied");
    let window = v.authz.grant_support(&by("carol"), &id("dash"), &grant).await.unwrap();
    assert_eq!((window.agent.as_deref(), window.granted_by.as_str()), (Some("a7"), "github:3"));
    assert!(may(&v.authz, "a7", Capability::View).await, "on A at once");
    on_b_within_a_second("a7", Capability::View, true).await;
    for authz in [&v.authz, &b] {
        assert!(!may(authz, "a7", Capability::Edit).await, "only what it grants");
        assert!(!may(authz, "b8", Capability::View).await, "only its agent");
    }
    let any = SupportGrant::new("ticket 4712").with_capabilities([Capability::View, Capability::Edit]);
    let second = v.authz.grant_support(&by("carol"), &id("dash"), &any).await.unwrap();
    assert!(may(&v.authz, "b8", Capability::Edit).await);
    on_b_within_a_second("b8", Capability::Edit, true).await;
    for authz in [&v.authz, &b] {
        assert!(!may(authz, "b8", Capability::Deploy).await, "never deploy");
        assert!(!may(authz, "b8", Capability::Delete).await, "never delete");
    }
    let refused = SupportGrant::new("x").with_capabilities([Capability::Deploy]);
    assert_eq!(v.authz.grant_support(&by("erin"), &id("dash"), &refused).await.unwrap_err().kind(), "invalid_support");
    let long = SupportGrant::new("x").with_duration(Duration::from_secs(8 * 24 * 3600));
    assert_eq!(v.authz.grant_support(&by("erin"), &id("dash"), &long).await.unwrap_err().kind(), "invalid_support");

    // a7's one-hour window ends on its own, on both replicas (no message needed); the 24-hour
    // one, for any agent, still admits a7.
    v.clock.advance(Duration::from_secs(3600));
    made.set(made.get() + 1);
    let d = b.check(&CheckRequest::new(&Principal::support("a7"), &id("dash"), Capability::View)).await.unwrap();
    let reason = serde_json::to_value(d.reason()).unwrap();
    assert_eq!((reason["kind"].as_str(), reason["window"].as_u64()), (Some("support_window"), Some(second.id.0)));
    assert_eq!(v.authz.support_windows(&by("carol"), &id("dash")).await.unwrap().len(), 2);
    // Revoked on A: denied on A at its next check, and on B within a second.
    assert_eq!(v.authz.revoke_support(&by("carol"), &id("dash"), None).await.unwrap(), 2, "the ended one too");
    assert!(!may(&v.authz, "a7", Capability::View).await);
    assert!(!may(&v.authz, "b8", Capability::Edit).await);
    on_b_within_a_second("b8", Capability::Edit, false).await;
    assert!(!may(&b, "a7", Capability::View).await);

    // Every support check is on record, allowed or denied.
    let checks: Vec<AuditOutcome> = store
        .audit(&AuditFilter::new().for_app(id("dash")))
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == AuditAction::SupportCheck)
        .map(|e| e.outcome)
        .collect();
    assert_eq!(checks.len(), made.get(), "{checks:?}");
    assert!(checks.contains(&AuditOutcome::Allowed) && checks.contains(&AuditOutcome::Denied));
}

async fn a_window_ends_on_its_own(store: Arc<dyn Store>) {
    let v = common::viewers_on(store.clone()).await;
    let grant = SupportGrant::new("ticket 4711").with_duration(Duration::from_secs(600));
    v.authz.grant_support(&ChangedBy::Operator, &id("dash"), &grant).await.unwrap();
    v.clock.advance(Duration::from_secs(599));
    assert!(allowed(&v.authz, "a7", Capability::View).await);
    v.clock.advance(Duration::from_secs(1));
    assert!(!allowed(&v.authz, "a7", Capability::View).await, "ended");
}

async fn windows_go_with_the_app_and_the_account(store: Arc<dyn Store>) {
    let v = common::viewers_on(store.clone()).await;
    let by = |login: &str| ChangedBy::Principal(Principal::github(v.world.user(login).unwrap()));
    v.authz.grant_support(&by("carol"), &id("dash"), &SupportGrant::new("ticket 1")).await.unwrap();
    v.authz.grant_support(&by("carol"), &id("notes"), &SupportGrant::new("ticket 2")).await.unwrap_err();
    v.authz.grant_support(&by("alice"), &id("notes"), &SupportGrant::new("ticket 3")).await.unwrap();
    v.authz.delete_app(&ChangedBy::Operator, &id("dash")).await.unwrap();
    assert!(store.support_windows(&id("dash")).await.unwrap().is_empty(), "gone with the app");
    v.authz.delete_account(ghauthz::UserId(1)).await.unwrap(); // alice: notes
    assert!(store.support_windows(&id("notes")).await.unwrap().is_empty(), "gone with the account");
}

/// A window its opener's account took with it is not served from memory either; revoking for
/// an agent cuts that agent off, windows for any agent included.
async fn revocations_cut_the_agent_off(store: Arc<dyn Store>) {
    let v = common::viewers_on(store.clone()).await;
    let carol = ChangedBy::Principal(Principal::github(v.world.user("carol").unwrap()));
    // carol (write) opens a window on erin's app; the agent's check caches it.
    v.authz.grant_support(&carol, &id("dash"), &SupportGrant::new("ticket 1")).await.unwrap();
    assert!(allowed(&v.authz, "a7", Capability::View).await);
    assert!(allowed(&v.authz, "a7", Capability::View).await, "from memory now");
    v.authz.delete_account(ghauthz::UserId(3)).await.unwrap();
    assert!(!allowed(&v.authz, "a7", Capability::View).await, "gone with the account that opened it");
    // The app's own log says so: the window went, by an account deleted since.
    let log = store.audit(&AuditFilter::new().for_app(id("dash"))).await.unwrap();
    let last = log.iter().find(|e| e.action != AuditAction::SupportCheck).unwrap();
    assert_eq!(
        (last.action, last.actor.as_str(), last.detail.as_deref()),
        (AuditAction::SupportRevoked, ghauthz::store::DELETED_ACCOUNT, Some("account deleted"))
    );

    // A check of an id no app has is on record too.
    let d = v.authz.check(&CheckRequest::new(&Principal::support("a7"), &id("nope"), Capability::View)).await.unwrap();
    assert_eq!(d.reason().kind(), "unknown_app");
    let nope = store.audit(&AuditFilter::new().for_app(id("nope"))).await.unwrap();
    assert_eq!((nope.len(), nope[0].action, nope[0].actor.as_str()), (1, AuditAction::SupportCheck, "support:a7"));

    v.authz.grant_support(&ChangedBy::Operator, &id("dash"), &SupportGrant::new("ticket 2")).await.unwrap();
    assert!(allowed(&v.authz, "a7", Capability::View).await);
    assert_eq!(v.authz.revoke_support(&ChangedBy::Operator, &id("dash"), Some("a7")).await.unwrap(), 1);
    assert!(!allowed(&v.authz, "a7", Capability::View).await, "a window for any agent admitted a7: revoked");

    // An agent's name is checked on revocation as on a grant: nothing else reaches the log.
    v.authz.grant_support(&ChangedBy::Operator, &id("dash"), &SupportGrant::new("ticket 3")).await.unwrap();
    let before = store.audit(&AuditFilter::new()).await.unwrap().len();
    let err = v.authz.revoke_support(&ChangedBy::Operator, &id("dash"), Some("dana@example.com")).await.unwrap_err();
    assert_eq!(err.kind(), "invalid_support");
    assert_eq!(store.audit(&AuditFilter::new()).await.unwrap().len(), before, "nothing written");
    assert!(allowed(&v.authz, "a7", Capability::View).await, "nothing revoked");
}

/// A revocation closes a window on every replica whatever the revoker's clock says: a replica
/// whose clock runs behind still took a window the revoker saw ended for open.
async fn a_revocation_does_not_depend_on_the_revokers_clock(store: Arc<dyn Store>) {
    let v = common::viewers_on(store.clone()).await;
    let behind = ghauthz::ManualClock::new(v.clock.now());
    let b = Authorizer::builder(v.mock.github_config()).clock(Arc::new(behind)).store(store.clone()).build().unwrap();
    let grant = SupportGrant::new("ticket 5").with_duration(Duration::from_secs(600));
    v.authz.grant_support(&ChangedBy::Operator, &id("dash"), &grant).await.unwrap();
    v.clock.advance(Duration::from_secs(601));
    assert!(!allowed(&v.authz, "a7", Capability::View).await, "ended on A's clock");
    assert!(allowed(&b, "a7", Capability::View).await, "open on B's");
    assert_eq!(v.authz.revoke_support(&ChangedBy::Operator, &id("dash"), None).await.unwrap(), 1);
    common::wait_until_async("B hears the revocation", Duration::from_secs(1), || async {
        !allowed(&b, "a7", Capability::View).await
    })
    .await;
}

macro_rules! suite {
    ($backend:ident, $kind:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn a_window_opens_exactly_what_it_grants_until_it_ends() {
                let Some((store, _guard)) = common::store_of($kind).await else { return };
                super::a_window_opens_exactly_what_it_grants_until_it_ends(store).await;
            }

            #[tokio::test]
            async fn a_window_ends_on_its_own() {
                let Some((store, _guard)) = common::store_of($kind).await else { return };
                super::a_window_ends_on_its_own(store).await;
            }

            #[tokio::test]
            async fn a_revocation_does_not_depend_on_the_revokers_clock() {
                let Some((store, _guard)) = common::store_of($kind).await else { return };
                super::a_revocation_does_not_depend_on_the_revokers_clock(store).await;
            }

            #[tokio::test]
            async fn revocations_cut_the_agent_off() {
                let Some((store, _guard)) = common::store_of($kind).await else { return };
                super::revocations_cut_the_agent_off(store).await;
            }

            #[tokio::test]
            async fn windows_go_with_the_app_and_the_account() {
                let Some((store, _guard)) = common::store_of($kind).await else { return };
                super::windows_go_with_the_app_and_the_account(store).await;
            }
        }
    };
}

suite!(memory, common::Backend::Memory);
suite!(sqlite, common::Backend::Sqlite);
suite!(postgres, common::Backend::Postgres);

/// One rule for an agent's name, said the same everywhere: the code refuses `@` (a name is never
/// an address, which would outlive its app in the audit log), and no document a user reads
/// allows it.
#[test]
fn an_agents_name_follows_one_rule_in_the_code_and_every_document() {
    for name in ["a7", "ops.team_1-x", &"a".repeat(64)] {
        assert!(ghauthz::valid_agent_name(name), "{name}");
    }
    for name in ["ops@example.com", "a@b", "", "a b", &"a".repeat(65), "\u{430}gent"] {
        assert!(!ghauthz::valid_agent_name(name), "{name}");
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs")).unwrap().map(|e| e.unwrap().path()).collect();
    docs.extend(["README.md", "SECURITY.md"].map(|f| root.join(f)));
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        // Paragraph by paragraph: a statement of the alphabet names its characters in one place.
        for paragraph in text.split("\n\n").filter(|p| p.contains("agent") && p.contains("ASCII letters")) {
            assert!(
                paragraph.contains("no `@`"),
                "{}: an agent's name rule without `no @`: {paragraph}",
                doc.display()
            );
            assert!(!paragraph.contains("and `@`"), "{}: allows `@`: {paragraph}", doc.display());
        }
    }
}
