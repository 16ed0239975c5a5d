//! Invited viewers: who may manage them (a policy decision), normalization, audit, persistence.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use crate::common;
use ghauthz::CheckRequest;

use std::sync::Arc;

use ghauthz::store::{AuditAction, SqliteStore};
use ghauthz::{AppId, Capability, ChangedBy, EmailError, ManageError, Policy, Principal, Role};

type Env = common::Viewers;

async fn env_with(policy: Policy) -> (Env, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("db")).await.unwrap();
    (common::viewers_with(Arc::new(store), policy).await, dir)
}

fn by(env: &Env, login: &str) -> ChangedBy {
    ChangedBy::Principal(Principal::github(env.world.user(login).unwrap()))
}

fn dash() -> AppId {
    AppId("dash".into())
}

#[tokio::test]
async fn world_viewers_are_seeded_and_listed() {
    let (env, _dir) = env_with(Policy::default()).await;
    let list = env.authz.viewers(&ChangedBy::Operator, &dash()).await.unwrap();
    assert_eq!(list.iter().map(|e| e.as_str()).collect::<Vec<_>>(), ["dana@example.com"]);
}

#[tokio::test]
async fn a_writer_manages_viewers_and_is_audited() {
    let (env, _dir) = env_with(Policy::default()).await;
    let change = env.authz.add_viewer(&by(&env, "carol"), &dash(), "  Eve@Example.COM ").await.unwrap();
    assert!(change.changed);
    assert_eq!(change.email.as_str(), "eve@example.com", "normalized on the way in");
    let again = env.authz.add_viewer(&by(&env, "carol"), &dash(), "eve@example.com").await.unwrap();
    assert!(!again.changed);
    let removed = env.authz.remove_viewer(&by(&env, "erin"), &dash(), "EVE@example.com").await.unwrap();
    assert!(removed.changed);
    let log = env.authz.audit(&ghauthz::store::AuditFilter::new().limit(2)).await.unwrap();
    let tail: Vec<(AuditAction, &str)> = log.iter().map(|e| (e.action, e.actor.as_str())).collect();
    assert_eq!(tail, [(AuditAction::ViewerRemoved, "github:5"), (AuditAction::ViewerAdded, "github:3")]);
}

#[tokio::test]
async fn below_the_sharing_role_is_denied_with_the_reason() {
    let (env, _dir) = env_with(Policy::default()).await;
    for login in ["dave", "mallory", "zed"] {
        let err = env.authz.add_viewer(&by(&env, login), &dash(), "eve@example.com").await.unwrap_err();
        let ManageError::Denied { decision, .. } = &err else { panic!("{login}: {err:?}") };
        assert!(!decision.is_allowed());
        assert!(matches!(decision.reason().kind(), "github_role" | "no_access"), "{login}");
        let err = env.authz.viewers(&by(&env, login), &dash()).await.unwrap_err();
        assert!(matches!(err, ManageError::Denied { .. }), "listing is authorized too");
    }
    let anonymous = ChangedBy::Principal(Principal::Anonymous);
    assert!(matches!(
        env.authz.remove_viewer(&anonymous, &dash(), "dana@example.com").await,
        Err(ManageError::Denied { .. })
    ));
    assert_eq!(env.authz.viewers(&ChangedBy::Operator, &dash()).await.unwrap().len(), 1, "nothing changed");
}

#[tokio::test]
async fn the_sharing_role_is_a_policy_decision() {
    let (env, _dir) = env_with(Policy::default().with_sharing(Role::Admin)).await;
    assert!(matches!(
        env.authz.add_viewer(&by(&env, "carol"), &dash(), "eve@example.com").await,
        Err(ManageError::Denied { .. })
    ));
    assert!(env.authz.add_viewer(&by(&env, "erin"), &dash(), "eve@example.com").await.is_ok());
    // Unset, sharing follows edit: moving edit to maintain takes sharing with it.
    let (env, _dir) = env_with(Policy::default().with(Capability::Edit, Role::Maintain)).await;
    assert!(
        matches!(
            env.authz.add_viewer(&by(&env, "carol"), &dash(), "eve@example.com").await,
            Err(ManageError::Denied { .. })
        ),
        "write is below the moved edit"
    );
    assert!(
        env.authz.add_viewer(&by(&env, "bob"), &dash(), "eve@example.com").await.is_ok(),
        "maintain through a team"
    );
}

#[tokio::test]
async fn bad_input_gets_typed_errors() {
    let (env, _dir) = env_with(Policy::default()).await;
    let err = env.authz.add_viewer(&ChangedBy::Operator, &dash(), "eve＠example.com").await.unwrap_err();
    assert_eq!(err, ManageError::InvalidEmail(EmailError::At));
    let err = env.authz.add_viewer(&ChangedBy::Operator, &AppId("nope".into()), "eve@example.com").await.unwrap_err();
    assert_eq!(err, ManageError::UnknownApp(AppId("nope".into())));
}

#[tokio::test]
async fn checks_resolve_apps_through_the_store() {
    let (env, _dir) = env_with(Policy::default()).await;
    let erin = Principal::github(env.world.user("erin").unwrap());
    let d = env.authz.check(&CheckRequest::new(&erin, &dash(), ghauthz::Capability::Deploy)).await.unwrap();
    assert!(d.is_allowed());
    let d = env.authz.check(&CheckRequest::new(&erin, &AppId("gone".into()), ghauthz::Capability::View)).await.unwrap();
    assert_eq!((d.is_allowed(), d.reason().kind()), (false, "unknown_app"));
}

/// A decision reports its facts' true age: a viewer's grant, read from the store and then
/// served from memory, is as old as that read (not zero), and a support agent's windows too.
#[tokio::test]
async fn cached_grants_and_windows_report_their_age() {
    use ghauthz::{Consistency, Source, SupportGrant};
    let store: std::sync::Arc<dyn ghauthz::store::Store> = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    let v = common::viewers_on(store).await;
    let dash = dash();
    let link = v.authz.issue_link(&dash, "dana@example.com").await.unwrap();
    let token = v.authz.redeem_link(link.token.expose_secret(), Some(&dash)).await.unwrap().token;
    let token = token.expose_secret();
    let read = v.authz.check(&CheckRequest::session(token, &dash, Capability::View)).await.unwrap();
    assert_eq!((read.source(), read.age()), (Source::Store, std::time::Duration::ZERO));
    v.clock.advance(std::time::Duration::from_millis(4_250));
    let hit = v.authz.check_cached(&CheckRequest::session(token, &dash, Capability::View)).unwrap();
    assert_eq!((hit.source(), hit.age().as_millis()), (Source::Cache, 4_250), "the grant's age, on a hit");
    let slow = v
        .authz
        .check(&CheckRequest::session(token, &dash, Capability::View).with_consistency(Consistency::Cached))
        .await
        .unwrap();
    assert_eq!(slow.age().as_millis(), 4_250);
    let fresh = v.authz.check(&CheckRequest::session(token, &dash, Capability::View).fresh()).await.unwrap();
    assert_eq!((fresh.source(), fresh.age().as_millis()), (Source::Store, 0));

    v.authz.grant_support(&ChangedBy::Operator, &dash, &SupportGrant::new("ticket 7")).await.unwrap();
    let agent = Principal::support("a7");
    let read = v.authz.check(&CheckRequest::new(&agent, &dash, Capability::View)).await.unwrap();
    assert_eq!((read.is_allowed(), read.source()), (true, Source::Store));
    v.clock.advance(std::time::Duration::from_millis(900));
    let cached = v.authz.check(&CheckRequest::new(&agent, &dash, Capability::View)).await.unwrap();
    assert_eq!((cached.source(), cached.age().as_millis()), (Source::Cache, 900), "the windows' age");
}

/// `explain` is a report: it decides every principal, and every invited address as a signed-in
/// viewer, as checks do, and writes nothing to the audit log (an address would otherwise land on
/// the entries of apps it was never invited to).
#[tokio::test]
async fn explain_decides_as_checks_do_and_writes_nothing() {
    use ghauthz::store::{AuditFilter, MemoryStore};
    let store: Arc<dyn ghauthz::store::Store> = Arc::new(MemoryStore::new());
    let v = common::viewers_on(store.clone()).await;
    let apps: Vec<_> = v.authz.apps().await.unwrap().iter().map(|r| r.app().unwrap()).collect();
    let before = store.audit(&AuditFilter::new()).await.unwrap().len();
    let viewers = [ghauthz::Email::parse("dana@example.com").unwrap()];
    let rows = ghauthz::world::explain(&v.authz, &apps, &v.world.principals(), &viewers).await;
    let kind = |app: &str, who: &str, cap| {
        let row = rows.iter().find(|r| r.app.0 == app && r.principal == who && r.action == cap).unwrap();
        row.result.as_ref().unwrap().reason().kind()
    };
    assert_eq!(kind("dash", "viewer:dana@example.com", Capability::View), "viewer_grant");
    assert_eq!(kind("analytics", "viewer:dana@example.com", Capability::View), "not_invited");
    assert_eq!(kind("dash", "github:erin", Capability::Delete), "github_role");
    assert_eq!(store.audit(&AuditFilter::new()).await.unwrap().len(), before, "a report writes nothing");
}

/// A fresh request rests on the app as the store holds it now, even when the caller hands in
/// an `App` read earlier; and a request's `Debug` shows neither a viewer's address nor a token.
#[tokio::test]
async fn a_fresh_request_reads_the_app_anew_and_debug_shows_nothing_personal() {
    use ghauthz::{CheckRequest, Visibility};
    let store: Arc<dyn ghauthz::store::Store> = Arc::new(ghauthz::store::MemoryStore::new());
    let v = common::viewers_on(store).await;
    let stale = v.authz.app(&dash()).await.unwrap().unwrap().app().unwrap(); // private
    v.authz.set_visibility(&ChangedBy::Operator, &dash(), Visibility::Public).await.unwrap();
    let anyone = Principal::Anonymous;
    let cached = v.authz.check(&CheckRequest::new(&anyone, &stale, Capability::View)).await.unwrap();
    assert!(!cached.is_allowed(), "the App handed in decides a cached request");
    let fresh = v.authz.check(&CheckRequest::new(&anyone, &stale, Capability::View).fresh()).await.unwrap();
    assert_eq!((fresh.is_allowed(), fresh.reason().kind()), (true, "public_app"), "the store's app decides");

    let link = v.authz.issue_link(&dash(), "dana@example.com").await.unwrap();
    let token = v.authz.redeem_link(link.token.expose_secret(), Some(&dash())).await.unwrap().token;
    let viewer = Principal::Viewer(v.authz.verify_session(token.expose_secret()).unwrap());
    let shown = format!("{:?}", CheckRequest::new(&viewer, &dash(), Capability::View));
    assert!(!shown.contains("dana"), "{shown}");
    let shown = format!("{:?}", CheckRequest::session(token.expose_secret(), &dash(), Capability::View));
    assert!(!shown.contains(token.expose_secret()), "{shown}");
}
