//! Single-use sign-in links and viewer sessions, on every store backend.
#![cfg(all(feature = "world", feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use crate::common;
use ghauthz::CheckRequest;
use ghauthz::store::prelude::*;

use std::sync::Arc;
use std::time::Duration;

use ghauthz::store::{MemoryStore, SqliteStore, Store};
use ghauthz::world::MockGithub;
use ghauthz::{
    AppId, Authorizer, Capability, ChangedBy, LinkError, ManualClock, Principal, Reason, SessionConfig, SessionError,
    SessionKeys, Via,
};

async fn env_on(store: Arc<dyn Store>) -> common::Viewers {
    common::viewers_on(store).await
}

fn dash() -> AppId {
    AppId("dash".into())
}

async fn link_lifecycle(env: common::Viewers) {
    let a = &env.authz;
    let link = a.issue_link(&dash(), "Dana@Example.com").await.unwrap();
    assert_eq!(link.email.as_str(), "dana@example.com", "sent to the stored address");
    let token = link.token.expose_secret().to_owned();
    // Inspecting twice uses nothing up.
    assert_eq!(a.inspect_link(&token).await.unwrap().app, dash());
    assert_eq!(a.inspect_link(&token).await.unwrap().email.as_str(), "dana@example.com");
    // A link for app A presented at app B is refused, and not used up.
    assert_eq!(a.redeem_link(&token, Some(&AppId("notes".into()))).await.unwrap_err(), LinkError::WrongApp);
    env.clock.advance(Duration::from_secs(14 * 60 + 59));
    let session = a.redeem_link(&token, Some(&dash())).await.unwrap();
    assert_eq!((session.session.app(), session.session.via()), (&dash(), Via::EmailLink));
    assert_eq!(a.redeem_link(&token, None).await.unwrap_err(), LinkError::AlreadyUsed);
    assert_eq!(a.inspect_link(&token).await.unwrap_err(), LinkError::AlreadyUsed);
}

async fn links_expire_after_fifteen_minutes(env: common::Viewers) {
    let token = env.authz.issue_link(&dash(), "dana@example.com").await.unwrap().token.expose_secret().to_owned();
    env.clock.advance(Duration::from_secs(15 * 60 + 1));
    assert_eq!(env.authz.inspect_link(&token).await.unwrap_err(), LinkError::Expired);
    assert_eq!(env.authz.redeem_link(&token, None).await.unwrap_err(), LinkError::Expired);
}

async fn a_removed_grant_revokes_its_links_and_sessions(env: common::Viewers) {
    let a = &env.authz;
    let first = a.issue_link(&dash(), "dana@example.com").await.unwrap().token.expose_secret().to_owned();
    let second = a.issue_link(&dash(), "dana@example.com").await.unwrap().token.expose_secret().to_owned();
    let session = a.redeem_link(&first, None).await.unwrap();
    let viewer = Principal::Viewer(a.verify_session(session.token.expose_secret()).unwrap());
    let d = a.check(&CheckRequest::new(&viewer, &dash(), Capability::View)).await.unwrap();
    assert_eq!(d.reason(), &Reason::ViewerGrant { via: Via::EmailLink });
    a.remove_viewer(&ChangedBy::Operator, &dash(), "dana@example.com").await.unwrap();
    assert_eq!(a.redeem_link(&second, None).await.unwrap_err(), LinkError::Revoked);
    let d = a.check(&CheckRequest::new(&viewer, &dash(), Capability::View)).await.unwrap();
    assert_eq!((d.is_allowed(), d.reason()), (false, &Reason::NotInvited), "the next check after removal is denied");
}

/// A link or a session outlives neither its grant's removal nor a later re-invitation of the
/// same address: that is a new grant, and needs a new link.
async fn a_reinvitation_is_a_new_grant_that_needs_a_new_link(env: common::Viewers) {
    let a = &env.authz;
    let old_link = a.issue_link(&dash(), "dana@example.com").await.unwrap().token.expose_secret().to_owned();
    let redeemed = a.issue_link(&dash(), "dana@example.com").await.unwrap().token.expose_secret().to_owned();
    let old_session = a.redeem_link(&redeemed, None).await.unwrap().token.expose_secret().to_owned();
    assert!(a.check(&CheckRequest::session(&old_session, &dash(), Capability::View)).await.unwrap().is_allowed());
    a.remove_viewer(&ChangedBy::Operator, &dash(), "dana@example.com").await.unwrap();
    a.add_viewer(&ChangedBy::Operator, &dash(), "dana@example.com").await.unwrap();
    assert_eq!(a.inspect_link(&old_link).await.unwrap_err(), LinkError::Revoked);
    assert_eq!(a.redeem_link(&old_link, None).await.unwrap_err(), LinkError::Revoked);
    for _ in 0..2 {
        let d = a.check(&CheckRequest::session(&old_session, &dash(), Capability::View)).await.unwrap();
        assert_eq!((d.is_allowed(), d.reason()), (false, &Reason::NotInvited), "the old session opens nothing");
    }
    let old = Principal::Viewer(a.verify_session(&old_session).unwrap());
    assert!(!a.check(&CheckRequest::new(&old, &dash(), Capability::View)).await.unwrap().is_allowed());
    let new_link = a.issue_link(&dash(), "dana@example.com").await.unwrap().token.expose_secret().to_owned();
    let new_session = a.redeem_link(&new_link, None).await.unwrap();
    assert_ne!(new_session.session.grant(), a.verify_session(&old_session).unwrap().grant(), "a new grant");
    let d =
        a.check(&CheckRequest::session(new_session.token.expose_secret(), &dash(), Capability::View)).await.unwrap();
    assert_eq!(d.reason(), &Reason::ViewerGrant { via: Via::EmailLink }, "a new link does");
}

async fn only_invited_addresses_get_links_and_issuing_is_limited(env: common::Viewers) {
    let a = &env.authz;
    assert_eq!(
        a.issue_link(&dash(), "mallory@example.com").await.unwrap_err(),
        LinkError::SignIn(ghauthz::SignInRefusal::NotInvited)
    );
    assert!(matches!(
        a.issue_link(&AppId("nope".into()), "dana@example.com").await,
        Err(LinkError::SignIn(ghauthz::SignInRefusal::UnknownApp(_)))
    ));
    assert!(matches!(a.issue_link(&dash(), "dana@@example.com").await, Err(LinkError::InvalidEmail(_))));
    for _ in 0..5 {
        a.issue_link(&dash(), "dana@example.com").await.unwrap();
        env.clock.advance(Duration::from_secs(60));
    }
    let err = a.issue_link(&dash(), "dana@example.com").await.unwrap_err();
    assert_eq!(err, LinkError::RateLimited { retry_after: Duration::from_secs(10 * 60) }, "5 per 15 minutes");
    env.clock.advance(Duration::from_secs(10 * 60 + 1));
    assert!(a.issue_link(&dash(), "dana@example.com").await.is_ok(), "the window slides");
}

async fn viewers_only_view_their_own_app(env: common::Viewers) {
    let a = &env.authz;
    let token = a.issue_link(&dash(), "dana@example.com").await.unwrap().token.expose_secret().to_owned();
    let session = a.redeem_link(&token, None).await.unwrap();
    let viewer = Principal::Viewer(a.verify_session(session.token.expose_secret()).unwrap());
    assert!(a.check(&CheckRequest::new(&viewer, &dash(), Capability::View)).await.unwrap().is_allowed());
    for cap in [Capability::Edit, Capability::Deploy, Capability::Delete] {
        assert!(!a.check(&CheckRequest::new(&viewer, &dash(), cap)).await.unwrap().is_allowed(), "{cap}");
    }
    let other = a.check(&CheckRequest::new(&viewer, &AppId("notes".into()), Capability::View)).await.unwrap();
    assert_eq!(other.reason(), &Reason::SessionInvalid { error: SessionError::WrongApp });
    env.clock.advance(Duration::from_secs(3600));
    assert_eq!(a.verify_session(session.token.expose_secret()).unwrap_err(), SessionError::Expired);
    let d = a.check(&CheckRequest::new(&viewer, &dash(), Capability::View)).await.unwrap();
    assert_eq!(d.reason(), &Reason::SessionInvalid { error: SessionError::Expired }, "a held session expires too");
}

async fn garbage_tokens_are_invalid(env: common::Viewers) {
    for token in ["", "gl1_", "not a token", &"x".repeat(1 << 20), "gl1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        assert_eq!(env.authz.inspect_link(token).await.unwrap_err(), LinkError::Invalid);
        assert_eq!(env.authz.redeem_link(token, None).await.unwrap_err(), LinkError::Invalid);
    }
    let _ = &env.world;
}

/// One test of the suite on one backend; skipped (said on stderr) where the backend is absent.
macro_rules! case {
    ($kind:expr, $name:ident) => {
        #[tokio::test]
        async fn $name() {
            let Some((store, _guard)) = common::store_of($kind).await else { return };
            super::$name(env_on(store).await).await;
        }
    };
}

macro_rules! suite {
    ($backend:ident, $kind:expr) => {
        mod $backend {
            use super::*;

            case!($kind, link_lifecycle);
            case!($kind, links_expire_after_fifteen_minutes);
            case!($kind, a_removed_grant_revokes_its_links_and_sessions);
            case!($kind, only_invited_addresses_get_links_and_issuing_is_limited);
            case!($kind, viewers_only_view_their_own_app);
            case!($kind, garbage_tokens_are_invalid);
            case!($kind, a_reinvitation_is_a_new_grant_that_needs_a_new_link);
        }
    };
}

suite!(memory, common::Backend::Memory);
suite!(sqlite, common::Backend::Sqlite);
suite!(postgres, common::Backend::Postgres);

#[tokio::test]
async fn a_used_link_stays_used_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let token = {
        let store = SqliteStore::open(&path).await.unwrap();
        let env = env_on(Arc::new(store.clone())).await;
        let token = env.authz.issue_link(&dash(), "dana@example.com").await.unwrap().token.expose_secret().to_owned();
        env.authz.redeem_link(&token, None).await.unwrap();
        store.close().await;
        token
    };
    let env = env_on(Arc::new(SqliteStore::open(&path).await.unwrap())).await;
    assert_eq!(env.authz.redeem_link(&token, None).await.unwrap_err(), LinkError::AlreadyUsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_redemptions_on_one_sqlite_file_succeed_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let env = env_on(Arc::new(SqliteStore::open(&path).await.unwrap())).await;
    let token = env.authz.issue_link(&dash(), "dana@example.com").await.unwrap().token.expose_secret().to_owned();
    // Eight authorizers, each with its own connection pool on the file, eight redemptions each.
    let mut pools = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = Arc::new(SqliteStore::open(&path).await.unwrap());
        let authz = Authorizer::builder(env.mock.github_config())
            .clock(Arc::new(env.clock.clone()))
            .store(store)
            .build()
            .unwrap();
        let token = token.clone();
        pools.spawn(async move { common::redeem_concurrently(&authz, &token, 8).await });
    }
    let (mut ok, mut used) = (0, 0);
    while let Some(r) = pools.join_next().await {
        let (o, u) = r.unwrap();
        (ok, used) = (ok + o, used + u);
    }
    assert_eq!((ok, used), (1, 63));
}

#[tokio::test]
async fn sessions_survive_key_rotation_until_the_key_is_retired() {
    let world = common::fixture("acme.toml");
    let clock = ManualClock::new(world.now().unwrap());
    let mock = MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone())).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    store.seed_once(&world.app_records(), world.now().unwrap()).await.unwrap();
    let build = |keys: SessionKeys| {
        Authorizer::builder(mock.github_config())
            .clock(Arc::new(clock.clone()))
            .store(store.clone())
            .sessions(keys, SessionConfig::default())
            .build()
            .unwrap()
    };
    let mut keys = SessionKeys::generate().unwrap();
    let old_kid = keys.kids()[0].to_owned();
    let before = build(keys.clone());
    let token = before.issue_link(&dash(), "dana@example.com").await.unwrap().token.expose_secret().to_owned();
    let session = before.redeem_link(&token, None).await.unwrap().token.expose_secret().to_owned();
    keys.rotate().unwrap();
    assert!(build(keys.clone()).verify_session(&session).is_ok(), "signed by the previous, still listed key");
    keys.retire(&old_kid);
    assert_eq!(build(keys).verify_session(&session).unwrap_err(), SessionError::RetiredKey);
}

/// A session verified once is confirmed from memory afterwards, but never past its `exp`, never
/// after its key is retired, and a tampered or truncated token is never served from the memory.
#[tokio::test]
async fn a_remembered_session_is_refused_once_expired_retired_or_tampered() {
    let env = common::viewers_on(Arc::new(MemoryStore::new())).await;
    let a = &env.authz;
    let mut keys = SessionKeys::generate().unwrap();
    let old_kid = keys.kids()[0].to_owned();
    a.set_session_keys(keys.clone());
    let link = a.issue_link(&dash(), "dana@example.com").await.unwrap().token.expose_secret().to_owned();
    let token = a.redeem_link(&link, None).await.unwrap().token.expose_secret().to_owned();
    for _ in 0..2 {
        assert!(a.check(&CheckRequest::session(&token, &dash(), Capability::View)).await.unwrap().is_allowed());
    }
    let hit = a.check_cached(&CheckRequest::session(&token, &dash(), Capability::View)).expect("remembered");
    assert_eq!(hit.source(), ghauthz::Source::Cache);
    let refused = |d: ghauthz::Decision| match d.reason() {
        Reason::SessionInvalid { error } => *error,
        other => panic!("expected session_invalid, got {other:?}"),
    };
    // The token's last byte changed, and the token cut short: neither is the remembered token.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [tampered.as_str(), &token[..token.len() - 1], &token[..token.len() / 2]] {
        assert!(a.check_cached(&CheckRequest::session(bad, &dash(), Capability::View)).is_none(), "never a hit");
        let d = a.check(&CheckRequest::session(bad, &dash(), Capability::View)).await.unwrap();
        assert_eq!(refused(d), SessionError::Invalid);
        assert!(a.check_cached(&CheckRequest::session(bad, &dash(), Capability::View)).is_none(), "never remembered");
    }
    // Retired: refused at once, although it was remembered.
    keys.rotate().unwrap();
    a.set_session_keys(keys.clone());
    assert!(
        a.check(&CheckRequest::session(&token, &dash(), Capability::View)).await.unwrap().is_allowed(),
        "rotation keeps it"
    );
    keys.retire(&old_kid);
    a.set_session_keys(keys.clone());
    assert!(a.check_cached(&CheckRequest::session(&token, &dash(), Capability::View)).is_none());
    assert_eq!(
        refused(a.check(&CheckRequest::session(&token, &dash(), Capability::View)).await.unwrap()),
        SessionError::RetiredKey
    );
    // Expired: a new session, remembered, then the clock passes its `exp`.
    let link = a.issue_link(&dash(), "dana@example.com").await.unwrap().token.expose_secret().to_owned();
    let token = a.redeem_link(&link, None).await.unwrap().token.expose_secret().to_owned();
    assert!(a.check(&CheckRequest::session(&token, &dash(), Capability::View)).await.unwrap().is_allowed());
    assert!(a.check_cached(&CheckRequest::session(&token, &dash(), Capability::View)).is_some());
    env.clock.advance(Duration::from_secs(3600));
    assert!(
        a.check_cached(&CheckRequest::session(&token, &dash(), Capability::View)).is_none(),
        "not served at its exp"
    );
    assert_eq!(
        refused(a.check(&CheckRequest::session(&token, &dash(), Capability::View)).await.unwrap()),
        SessionError::Expired
    );
}

/// Another process holds an SQLite store's write lock for 4 s: a redemption waits for it no
/// longer than the store's own busy wait (2 s), well inside the authorizer's bound (5 s), and
/// answers *unavailable* having left the link unused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redemption_on_a_locked_sqlite_file_answers_by_itself_and_leaves_the_link_unused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ghauthz.db");
    let env = env_on(Arc::new(SqliteStore::open(&path).await.unwrap())).await;
    let token = env.authz.issue_link(&dash(), "dana@example.com").await.unwrap().token.expose_secret().to_owned();
    let other =
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&path)).await.unwrap();
    let mut held = other.acquire().await.unwrap();
    sqlx::Executor::execute(&mut *held, "BEGIN IMMEDIATE").await.unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(4)).await;
        sqlx::Executor::execute(&mut *held, "ROLLBACK").await.unwrap();
    });
    let asked = std::time::Instant::now();
    let answer = env.authz.redeem_link(&token, Some(&dash())).await;
    let took = asked.elapsed();
    release.await.unwrap();
    assert!(
        matches!(
            answer,
            Err(LinkError::SignIn(ghauthz::SignInRefusal::Store(ghauthz::store::StoreError::Unavailable(_))))
        ),
        "{answer:?}"
    );
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(4), "answered by the busy wait: {took:?}");
    env.authz.redeem_link(&token, Some(&dash())).await.expect("the link was left unused");
}

/// A store bound too large for the clock (`Duration::MAX`, "no limit") still redeems.
#[tokio::test]
async fn a_store_bound_without_limit_still_redeems() {
    let world = common::fixture("acme.toml");
    let clock = ManualClock::new(ghauthz::Clock::now(&ManualClock::new(world.now().unwrap())));
    let mock = MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone())).await.unwrap();
    let store = Arc::new(MemoryStore::new());
    store.seed_once(&world.app_records(), ghauthz::Clock::now(&clock)).await.unwrap();
    let authz = Authorizer::builder(mock.github_config())
        .clock(Arc::new(clock))
        .store(store)
        .store_timeout(Duration::MAX)
        .build()
        .unwrap();
    let link = authz.issue_link(&dash(), "dana@example.com").await.unwrap();
    authz.redeem_link(link.token.expose_secret(), Some(&dash())).await.unwrap();
}
