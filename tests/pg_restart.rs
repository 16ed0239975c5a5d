//! The machine's Postgres really stopped and started again mid-run.
//!
//! Runs where `GHAUTHZ_TEST_PG_CTL` names a command that takes `stop` and `start` for the server
//! `GHAUTHZ_TEST_POSTGRES` points at (`.ci/run` sets both); elsewhere it says it was skipped. It
//! is a test binary of its own, so that no other test sees the server go (cargo runs test
//! binaries one after another). `tests/replicas.rs` covers the same ground through a proxy.
#![cfg(all(feature = "world", feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

mod common;

use ghauthz::CheckRequest;
use ghauthz::store::prelude::*;
use std::sync::Arc;
use std::time::Duration;

use ghauthz::store::{PgStore, PgStoreOptions};
use ghauthz::world::MockGithub;
use ghauthz::{AppId, Authorizer, Capability, CheckError, Clock, ManualClock, Principal};

/// Runs `<ctl> <verb>`; panics if it fails.
fn pg_ctl(ctl: &str, verb: &str) {
    let status = std::process::Command::new("sh").arg("-c").arg(format!("{ctl} {verb}")).status().unwrap();
    assert!(status.success(), "`{ctl} {verb}` failed: {status}");
}

/// Starts the server again however the test ends, so that the tests after it find it up.
struct StartOnDrop(String);

impl Drop for StartOnDrop {
    fn drop(&mut self) {
        // Quietly: after a passing run the server is up, and `start` says so.
        let _ = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{} start", self.0))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_run_fails_closed_and_the_store_recovers_when_it_returns() {
    let Some(url) = common::pg_url() else { return };
    let Ok(ctl) = std::env::var("GHAUTHZ_TEST_PG_CTL") else {
        eprintln!("skipped: GHAUTHZ_TEST_PG_CTL is unset, so Postgres is not stopped and started");
        return;
    };
    let world = common::fixture("acme.toml");
    let clock = ManualClock::new(world.now().unwrap());
    let mock = MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone())).await.unwrap();
    let opts = PgStoreOptions::new(url).schema(common::fresh_schema()).acquire_timeout(Duration::from_millis(500));
    let store = PgStore::connect_with(opts).await.unwrap();
    store.seed_once(&world.app_records(), clock.now()).await.unwrap();
    let authz = Authorizer::builder(mock.github_config())
        .clock(Arc::new(clock.clone()))
        .store(Arc::new(store))
        .build()
        .unwrap();
    let dash = AppId("dash".into());
    let link = authz.issue_link(&dash, "dana@example.com").await.unwrap();
    let session = authz.redeem_link(link.token.expose_secret(), None).await.unwrap();
    let viewer = Principal::Viewer(authz.verify_session(session.token.expose_secret()).unwrap());
    let carol = Principal::github(world.user("carol").unwrap());
    assert!(authz.check(&CheckRequest::new(&viewer, &dash, Capability::View)).await.unwrap().is_allowed());
    authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap();
    let resyncs = authz.stats().resyncs;

    let _restart = StartOnDrop(ctl.clone());
    pg_ctl(&ctl, "stop");
    // Deaf, the authorizer serves no cached app or grant: every check reads the store.
    common::wait_until("the feed notices", Duration::from_secs(10), || authz.stats().resyncs > resyncs).await;
    assert!(!authz.stats().feed_listening);
    let err = authz.check(&CheckRequest::new(&viewer, &dash, Capability::View)).await.unwrap_err();
    assert!(matches!(err, CheckError::Store(_)) && err.is_unavailable(), "{err:?}");
    let err = authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap_err();
    assert!(err.is_unavailable(), "the app cannot be read: {err:?}");
    assert!(
        authz.check_cached(&CheckRequest::new(&carol, &world.app("dash").unwrap(), Capability::Edit)).is_none(),
        "forgot"
    );

    pg_ctl(&ctl, "start");
    let d = common::check_until_available(&authz, &viewer, &dash, Capability::View, Duration::from_secs(30)).await;
    assert!(d.is_allowed(), "recovered without a restart");
    common::wait_until("the feed listens again", Duration::from_secs(30), || authz.stats().resyncs >= resyncs + 2)
        .await;
}
