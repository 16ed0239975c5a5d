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
