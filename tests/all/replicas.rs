//! Several control-plane replicas on one Postgres: invalidations, viewer grants and links hold on
//! every replica; a lost connection fails closed and heals by itself.
//!
//! Needs `GHAUTHZ_TEST_POSTGRES` (`.ci/run` sets it); without it every test says it was skipped.
#![cfg(all(feature = "world", feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use crate::common;
use ghauthz::CheckRequest;
use ghauthz::store::prelude::*;

use std::io::BufRead;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ghauthz::store::{PgStore, PgStoreOptions, StoreError};
use ghauthz::world::{MockGithub, World};
use ghauthz::{
    AppId, Authorizer, Capability, ChangedBy, CheckError, Clock, GithubAuth, GithubConfig, GithubToken, Invalidation,
    LinkError, ManualClock, Principal, Reason, SessionConfig, SessionKeys, Source, Timestamp, UserId, WebhookOutcome,
};

const SECRET: &str = "It's a Secret to Everybody";

/// Replicas sharing one schema, one mock GitHub, one clock and one set of session keys.
struct Cluster {
    world: World,
    mock: MockGithub,
    clock: ManualClock,
    keys: SessionKeys,
    opts: PgStoreOptions,
}

impl Cluster {
    async fn new() -> Option<Cluster> {
        let _ = tracing_subscriber::fmt().with_max_level(tracing::Level::WARN).with_test_writer().try_init();
        let url = common::pg_url()?;
        let world = common::fixture("acme.toml");
        let clock = ManualClock::new(world.now().unwrap());
        let mock = MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone())).await.unwrap();
        let opts = PgStoreOptions::new(url).schema(common::fresh_schema());
        let store = PgStore::connect_with(opts.clone()).await.unwrap();
        store.seed_once(&world.app_records(), clock.now()).await.unwrap();
        store.close().await;
        Some(Cluster { world, mock, clock, keys: SessionKeys::generate().unwrap(), opts })
    }

    /// A replica with a pool of its own, listening to the others, whose store calls answer
    /// within `store_timeout`.
    async fn replica_on(&self, opts: PgStoreOptions, store_timeout: Duration) -> Authorizer {
        self.replica_with(opts, store_timeout, ghauthz::CacheConfig::default()).await
    }

    /// [`Cluster::replica_on`], with `cache`.
    async fn replica_with(
        &self,
        opts: PgStoreOptions,
        store_timeout: Duration,
        cache: ghauthz::CacheConfig,
    ) -> Authorizer {
        let store = PgStore::connect_with(opts).await.unwrap();
        let authz = Authorizer::builder(self.mock.github_config())
            .cache(cache)
            .clock(Arc::new(self.clock.clone()))
            .store(Arc::new(store))
            .sessions(self.keys.clone(), SessionConfig::default())
            .webhook_secret(ghauthz::WebhookSecret::new(SECRET.into()).unwrap())
            .store_timeout(store_timeout)
            .build()
            .unwrap();
        common::wait_until("the replica listens", Duration::from_secs(10), || authz.stats().resyncs >= 1).await;
        authz
    }

    async fn replica(&self) -> Authorizer {
        self.replica_on(self.opts.clone(), Duration::from_secs(5)).await
    }

    fn user(&self, login: &str) -> Principal {
        Principal::github(self.world.user(login).unwrap())
    }
}

fn signed_delivery(event: &str, id: &str, body: &[u8]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("x-github-event", event.parse().unwrap());
    h.insert("x-github-delivery", id.parse().unwrap());
    h.insert("x-hub-signature-256", common::webhook_signature(SECRET, body).parse().unwrap());
    h
}

fn dash() -> AppId {
    AppId("dash".into())
}

/// Dana, invited to `dash`, signed in with a link issued by `issuer` and redeemed on `on`.
async fn dana_signed_in(issuer: &Authorizer, on: &Authorizer) -> Principal {
    let link = issuer.issue_link(&dash(), "dana@example.com").await.unwrap();
    let session = on.redeem_link(link.token.expose_secret(), Some(&dash())).await.unwrap();
    Principal::Viewer(on.verify_session(session.token.expose_secret()).unwrap())
}

/// A roster one replica fetched is served by another from the store, without asking GitHub for
/// it. Once an invalidation that covers it is recorded (a delivery to the first replica), a
/// replica that never held it does not serve it, whatever its feed has heard; past its lifetime
/// it is asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_fetched_on_one_replica_is_served_by_another_without_a_github_request() {
    let Some(c) = Cluster::new().await else { return };
    let (a, b) = (c.replica().await, c.replica().await);
    let app = c.world.app("dash").unwrap();
    let roster = "/repos/acme/dashboard/collaborators";
    let check = |on: &Authorizer, login: &str| {
        let (on, who, app) = (on.clone(), c.user(login), app.clone());
        async move { on.check(&CheckRequest::new(&who, &app, Capability::Edit)).await.unwrap() }
    };
    assert!(check(&a, "carol").await.is_allowed());
    assert_eq!(c.mock.requests(roster), 1);
    let d = check(&b, "bob").await;
    assert!(d.is_allowed(), "{d:?}");
    assert_eq!(d.lookup(), Some(ghauthz::Lookup::Roster));
    assert_eq!(c.mock.requests(roster), 1, "B took A's roster from the store: {:?}", c.mock.request_counts());
    assert_eq!(c.mock.requests("/repos/acme/dashboard"), 1, "and which repository is there");
    assert_eq!((b.stats().rosters_shared, b.stats().repos_shared), (1, 1));
    assert!(!check(&b, "mallory").await.is_allowed(), "absent from the shared roster: no role the policy counts");
    assert_eq!(c.mock.requests(roster), 1);

    // GitHub removes carol from acme/dashboard and tells replica A. Replica C, new, holds
    // nothing: the roster in the store is stale, so it asks GitHub.
    c.mock.set_world(common::acme_without_carol_on_dashboard());
    let body = std::fs::read(common::fixture_path("webhooks/member_removed.json")).unwrap();
    a.handle_webhook(&signed_delivery("member", "s-1", &body), &body).await.unwrap();
    let fresh = c.replica().await;
    let d = check(&fresh, "carol").await;
    assert!(!d.is_allowed(), "a stale shared roster is never served: {d:?}");
    assert_eq!(c.mock.requests(roster), 2);
    // Past its lifetime (a roster lives as long as "no role" does, 1 min), it is asked again.
    c.clock.advance(Duration::from_secs(61));
    let later = c.replica().await;
    assert!(!check(&later, "carol").await.is_allowed());
    assert_eq!(c.mock.requests(roster), 3);
    assert_eq!(later.stats().rosters_shared, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removal_delivered_to_one_replica_reaches_the_other_within_a_second() {
    let Some(c) = Cluster::new().await else { return };
    let (a, b) = (c.replica().await, c.replica().await);
    let (carol, erin, app) = (c.user("carol"), c.user("erin"), c.world.app("dash").unwrap());
    for who in [&carol, &erin] {
        b.check(&CheckRequest::new(who, &app, Capability::Edit)).await.unwrap();
        assert_eq!(b.check(&CheckRequest::new(who, &app, Capability::Edit)).await.unwrap().source(), Source::Cache);
    }
    // GitHub removes carol from acme/dashboard and tells replica A.
    c.mock.set_world(common::acme_without_carol_on_dashboard());
    let body = std::fs::read(common::fixture_path("webhooks/member_removed.json")).unwrap();
    let delivered = Instant::now();
    let outcome = a.handle_webhook(&signed_delivery("member", "r-1", &body), &body).await.unwrap();
    assert_eq!(outcome.applied(), [Invalidation::UserOnRepo(UserId(3), ghauthz::RepoId(101))]);
    let waited = common::wait_until("B drops carol's fact", Duration::from_secs(1), || {
        b.check_cached(&CheckRequest::new(&carol, &app, Capability::Edit)).is_none()
    })
    .await;
    eprintln!("B dropped the fact {waited:?} after A's delivery returned, {:?} after it began", delivered.elapsed());
    let d = b.check(&CheckRequest::new(&carol, &app, Capability::Edit)).await.unwrap();
    assert_eq!((d.source(), d.is_allowed()), (Source::Github, false), "B's next check goes to GitHub");
    assert_eq!(
        b.check(&CheckRequest::new(&erin, &app, Capability::Edit)).await.unwrap().source(),
        Source::Cache,
        "and no one else's"
    );
    assert_eq!(b.stats().invalidations_received, 1);
    // The same delivery redelivered to B: already seen, by the shared store.
    assert_eq!(
        b.handle_webhook(&signed_delivery("member", "r-1", &body), &body).await.unwrap(),
        WebhookOutcome::Duplicate
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_made_on_one_replica_reaches_the_others_and_not_itself_twice() {
    let Some(c) = Cluster::new().await else { return };
    let (a, b, third) = (c.replica().await, c.replica().await, c.replica().await);
    let (alice, notes) = (c.user("alice"), c.world.app("notes").unwrap());
    for r in [&a, &b, &third] {
        r.check(&CheckRequest::new(&alice, &notes, Capability::Edit)).await.unwrap();
    }
    a.invalidate(Invalidation::Owner(ghauthz::OwnerId(1))).await.unwrap();
    assert!(
        a.check_cached(&CheckRequest::new(&alice, &notes, Capability::Edit)).is_none(),
        "at once on the replica that made it"
    );
    for r in [&b, &third] {
        common::wait_until("the others drop it", Duration::from_secs(1), || {
            r.check_cached(&CheckRequest::new(&alice, &notes, Capability::Edit)).is_none()
        })
        .await;
    }
    assert_eq!(a.stats().invalidations_received, 0, "a replica skips its own messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_removed_on_one_replica_is_denied_on_the_others_next_check() {
    let Some(c) = Cluster::new().await else { return };
    let (a, b) = (c.replica().await, c.replica().await);
    let viewer = dana_signed_in(&a, &b).await;
    let (erin, viewer_on_a) = (c.user("erin"), dana_signed_in(&a, &a).await);
    for replica in [&a, &b] {
        replica.check(&CheckRequest::new(&erin, &dash(), Capability::View)).await.unwrap();
    }
    assert!(a.check(&CheckRequest::new(&viewer_on_a, &dash(), Capability::View)).await.unwrap().is_allowed());
    let d = b.check(&CheckRequest::new(&viewer, &dash(), Capability::View)).await.unwrap();
    assert_eq!((d.is_allowed(), d.source()), (true, Source::Store), "B reads the grant once");
    let d = b.check(&CheckRequest::new(&viewer, &dash(), Capability::View)).await.unwrap();
    assert_eq!((d.is_allowed(), d.source()), (true, Source::Cache), "B serves the grant from memory");
    a.remove_viewer(&ChangedBy::Operator, &dash(), "dana@example.com").await.unwrap();
    let d = a.check(&CheckRequest::new(&viewer_on_a, &dash(), Capability::View)).await.unwrap();
    assert_eq!((d.is_allowed(), d.reason()), (false, &Reason::NotInvited), "A's very next check");
    let waited = common::wait_until_async("B denies the removed viewer", Duration::from_secs(1), || async {
        !b.check(&CheckRequest::new(&viewer, &dash(), Capability::View)).await.unwrap().is_allowed()
    })
    .await;
    eprintln!("B denied the removed viewer {waited:?} after A's removal returned");
    a.delete_app(&ChangedBy::Operator, &dash()).await.unwrap();
    let d = a.check(&CheckRequest::new(&erin, &dash(), Capability::View)).await.unwrap();
    assert_eq!(d.reason(), &Reason::UnknownApp, "A's very next check");
    common::wait_until_async("B forgets the deleted app", Duration::from_secs(1), || async {
        b.check(&CheckRequest::new(&erin, &dash(), Capability::View)).await.unwrap().reason() == &Reason::UnknownApp
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_redeemed_on_one_replica_is_already_used_on_the_other() {
    let Some(c) = Cluster::new().await else { return };
    let (a, b) = (c.replica().await, c.replica().await);
    let token = a.issue_link(&dash(), "dana@example.com").await.unwrap().token.expose_secret().to_owned();
    assert_eq!(b.inspect_link(&token).await.unwrap().email.as_str(), "dana@example.com");
    a.redeem_link(&token, None).await.unwrap();
    assert_eq!(b.redeem_link(&token, None).await.unwrap_err(), LinkError::AlreadyUsed);
    assert_eq!(b.inspect_link(&token).await.unwrap_err(), LinkError::AlreadyUsed);
}

// ---- 64 redemptions from 4 processes ----

const CHILD_SCHEMA: &str = "GHAUTHZ_CHILD_SCHEMA";
const CHILD_TOKEN: &str = "GHAUTHZ_CHILD_TOKEN";
const CHILD_NOW: &str = "GHAUTHZ_CHILD_NOW";
const CHILD_GO: &str = "GHAUTHZ_CHILD_GO";
const PER_CHILD: usize = 16;

/// One of the four processes of the test below: 16 concurrent redemptions of one link, started
/// together once the parent says go. Ignored in ordinary runs; the parent runs it.
#[test]
#[ignore = "run in child processes by sixty_four_redemptions_from_four_processes_succeed_once"]
fn child_redeems_sixteen_times() {
    let (Ok(schema), Ok(token), Ok(now), Ok(go)) =
        (std::env::var(CHILD_SCHEMA), std::env::var(CHILD_TOKEN), std::env::var(CHILD_NOW), std::env::var(CHILD_GO))
    else {
        eprintln!("skipped: run by its parent test only");
        return;
    };
    let url = common::pg_url().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let opts = PgStoreOptions::new(url).schema(schema).max_connections(PER_CHILD as u32);
        let store = PgStore::connect_with(opts).await.unwrap();
        let github = GithubConfig::new(GithubAuth::Token(GithubToken::new("unused".into())));
        let authz = Authorizer::builder(github)
            .clock(Arc::new(ManualClock::new(Timestamp(now.parse().unwrap()))))
            .store(Arc::new(store))
            .build()
            .unwrap();
        println!("READY");
        let go = std::path::PathBuf::from(go);
        while !go.exists() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (ok, used) = common::redeem_concurrently(&authz, &token, PER_CHILD).await;
        println!("RESULT {ok} {used}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_redemptions_from_four_processes_succeed_once() {
    let Some(c) = Cluster::new().await else { return };
    let a = c.replica().await;
    let token = a.issue_link(&dash(), "dana@example.com").await.unwrap().token.expose_secret().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let mut children: Vec<std::process::Child> = (0..4)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "replicas::child_redeems_sixteen_times",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_SCHEMA, c.opts.schema_name().unwrap())
                .env(CHILD_TOKEN, &token)
                .env(CHILD_NOW, c.clock.now().0.to_string())
                .env(CHILD_GO, &go)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut outputs: Vec<_> =
        children.iter_mut().map(|ch| std::io::BufReader::new(ch.stdout.take().unwrap()).lines()).collect();
    // Every process is connected and waiting before any redeems.
    for out in &mut outputs {
        let ready = out.by_ref().map(|l| l.unwrap()).find(|l| l.contains("READY"));
        assert!(ready.is_some(), "a child did not get ready");
    }
    std::fs::write(&go, b"go").unwrap();
    let (mut ok, mut used) = (0, 0);
    for out in &mut outputs {
        let line = out.by_ref().map(|l| l.unwrap()).find(|l| l.starts_with("RESULT")).expect("a child reported");
        let n: Vec<usize> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect();
        ok += n[0];
        used += n[1];
    }
    for mut ch in children {
        assert!(ch.wait().unwrap().success());
    }
    assert_eq!((ok, used), (1, 63), "exactly one of 64 redemptions in 4 processes succeeds");
    let redeemed = a
        .audit(&ghauthz::store::AuditFilter::new())
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == ghauthz::store::AuditAction::LinkRedeemed)
        .count();
    assert_eq!(redeemed, 1, "and it alone is audited");
}

// ---- Postgres going away and coming back ----

/// A TCP proxy in front of Postgres that the test can cut (every connection closed, new ones
/// closed on arrival, as a stopped server does), freeze (nothing passes and nothing is closed, as
/// in a network partition) and restore.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    /// While set, a connection that sent `LISTEN` is severed, and so is any that sends it: the
    /// feed is cut while the store stays reachable.
    deaf: Arc<AtomicBool>,
    conns: Arc<parking_lot::Mutex<Vec<tokio::task::AbortHandle>>>,
}

/// Copies bytes both ways until either side closes; holds still while `frozen`; severs a
/// listening connection while `deaf`.
async fn pump(
    mut a: tokio::net::TcpStream,
    mut b: tokio::net::TcpStream,
    frozen: Arc<AtomicBool>,
    deaf: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut ar, mut aw) = a.split();
    let (mut br, mut bw) = b.split();
    let (mut up, mut down) = ([0u8; 8192], [0u8; 8192]);
    let mut listened = false;
    loop {
        if listened && deaf.load(Ordering::SeqCst) {
            return;
        }
        if frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let moved = tokio::select! {
            n = ar.read(&mut up) => match n {
                Ok(n) if n > 0 => {
                    listened |= up[..n].windows(7).any(|w| w == b"LISTEN ");
                    if listened && deaf.load(Ordering::SeqCst) {
                        return;
                    }
                    bw.write_all(&up[..n]).await.is_ok()
                }
                _ => false,
            },
            n = br.read(&mut down) => match n {
                Ok(n) if n > 0 => aw.write_all(&down[..n]).await.is_ok(),
                _ => false,
            },
            () = tokio::time::sleep(Duration::from_millis(5)) => true,
        };
        if !moved {
            return;
        }
    }
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let frozen = Arc::new(AtomicBool::new(false));
        let deaf = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let (up2, frozen2, deaf2, conns2) = (up.clone(), frozen.clone(), deaf.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else { return };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let (upstream, frozen, deaf) = (upstream.clone(), frozen2.clone(), deaf2.clone());
                let task = tokio::spawn(async move {
                    if let Ok(out) = tokio::net::TcpStream::connect(&upstream).await {
                        pump(inbound, out, frozen, deaf).await;
                    }
                });
                conns2.lock().push(task.abort_handle());
            }
        });
        Proxy { port, up, frozen, deaf, conns }
    }

    /// A URL for the test Postgres through this proxy.
    fn url(&self) -> String {
        let direct = sqlx::postgres::PgConnectOptions::from_str(&common::pg_url().unwrap()).unwrap();
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            direct.get_username(),
            self.port,
            direct.get_database().unwrap_or("postgres")
        )
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().drain(..) {
            c.abort();
        }
    }

    /// Cuts every listening connection, and any that listens, until `false`.
    fn deafen(&self, deaf: bool) {
        self.deaf.store(deaf, Ordering::SeqCst);
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    fn restore(&self) {
        self.frozen.store(false, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn proxy() -> Proxy {
    let direct = sqlx::postgres::PgConnectOptions::from_str(&common::pg_url().unwrap()).unwrap();
    Proxy::start(format!("{}:{}", direct.get_host(), direct.get_port())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_fails_closed_and_the_replica_heals_without_a_restart() {
    let Some(c) = Cluster::new().await else { return };
    let proxy = proxy().await;
    let opts = PgStoreOptions::new(proxy.url())
        .schema(c.opts.schema_name().unwrap())
        .acquire_timeout(Duration::from_millis(500));
    let a = c.replica_on(opts, Duration::from_secs(5)).await;
    let b = c.replica().await;
    let (carol, app) = (c.user("carol"), c.world.app("dash").unwrap());
    let viewer = dana_signed_in(&a, &a).await;
    assert!(a.check(&CheckRequest::new(&viewer, &dash(), Capability::View)).await.unwrap().is_allowed());
    a.check(&CheckRequest::new(&carol, &app, Capability::Edit)).await.unwrap();
    let resyncs = a.stats().resyncs;

    proxy.cut();
    // A's feed dropped: it may miss messages, so it forgot what it cached and reads the store.
    common::wait_until("A notices the lost feed", Duration::from_secs(5), || a.stats().resyncs > resyncs).await;
    assert!(a.check_cached(&CheckRequest::new(&carol, &app, Capability::Edit)).is_none());
    for (what, result) in [
        ("a viewer's check", a.check(&CheckRequest::new(&viewer, &dash(), Capability::View)).await),
        ("a check that reads the app", a.check(&CheckRequest::new(&carol, &dash(), Capability::Edit)).await),
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, CheckError::Store(_)) && err.is_unavailable(), "{what}: {err:?}");
    }
    assert!(a.issue_link(&dash(), "dana@example.com").await.is_err(), "nothing is issued blind");

    proxy.restore();
    let d = common::check_until_available(&a, &viewer, &dash(), Capability::View, Duration::from_secs(15)).await;
    assert!(d.is_allowed(), "the store came back without a restart");
    // The feed listens again (and forgot once more); invalidations from B reach A anew.
    common::wait_until("A listens again", Duration::from_secs(15), || a.stats().resyncs >= resyncs + 2).await;
    a.check(&CheckRequest::new(&carol, &app, Capability::Edit)).await.unwrap();
    assert!(a.check_cached(&CheckRequest::new(&carol, &app, Capability::Edit)).is_some());
    b.invalidate(Invalidation::User(UserId(3))).await.unwrap();
    common::wait_until("B's invalidation reaches A", Duration::from_secs(1), || {
        a.check_cached(&CheckRequest::new(&carol, &app, Capability::Edit)).is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_partition_fails_closed_within_the_bound_and_the_feed_is_taken_for_lost() {
    let Some(c) = Cluster::new().await else { return };
    let proxy = proxy().await;
    let opts = PgStoreOptions::new(proxy.url())
        .schema(c.opts.schema_name().unwrap())
        .acquire_timeout(Duration::from_millis(500))
        .heartbeat(Duration::from_millis(200));
    let a = c.replica_on(opts, Duration::from_secs(1)).await;
    let b = c.replica().await;
    let (carol, app) = (c.user("carol"), c.world.app("dash").unwrap());
    let viewer = dana_signed_in(&a, &a).await;
    a.check(&CheckRequest::new(&carol, &app, Capability::Edit)).await.unwrap();
    let resyncs = a.stats().resyncs;

    // Nothing passes and nothing is closed: without bounds, a call would wait forever.
    proxy.freeze();
    let asked = Instant::now();
    let err = a.check(&CheckRequest::new(&viewer, &dash(), Capability::View)).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(asked.elapsed() < Duration::from_secs(3), "answered within the store timeout: {:?}", asked.elapsed());
    // The feed hears not even its own heartbeat: taken for lost, the cache is forgotten.
    common::wait_until("A takes its silent feed for lost", Duration::from_secs(3), || a.stats().resyncs > resyncs)
        .await;
    assert!(a.check_cached(&CheckRequest::new(&carol, &app, Capability::Edit)).is_none());

    proxy.restore();
    let d = common::check_until_available(&a, &viewer, &dash(), Capability::View, Duration::from_secs(15)).await;
    assert!(d.is_allowed());
    common::wait_until("A listens again", Duration::from_secs(15), || a.stats().resyncs >= resyncs + 2).await;
    a.check(&CheckRequest::new(&carol, &app, Capability::Edit)).await.unwrap();
    b.invalidate(Invalidation::User(UserId(3))).await.unwrap();
    common::wait_until("B's invalidation reaches A", Duration::from_secs(1), || {
        a.check_cached(&CheckRequest::new(&carol, &app, Capability::Edit)).is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_call_that_does_not_answer_is_unavailable_within_the_bound() {
    let Some(c) = Cluster::new().await else { return };
    let a = c.replica_on(c.opts.clone(), Duration::from_secs(1)).await;
    let viewer = dana_signed_in(&a, &a).await;
    // Another session holds the grants table: a viewer's check waits on its lock.
    let connect = sqlx::postgres::PgConnectOptions::from_str(&common::pg_url().unwrap())
        .unwrap()
        .options([("search_path", c.opts.schema_name().unwrap())]);
    let locker = sqlx::PgPool::connect_with(connect).await.unwrap();
    let mut held = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE viewers IN ACCESS EXCLUSIVE MODE").execute(&mut *held).await.unwrap();
    let asked = Instant::now();
    let answer =
        tokio::time::timeout(Duration::from_secs(10), a.check(&CheckRequest::new(&viewer, &dash(), Capability::View)))
            .await;
    let err = answer.expect("the check answers, bounded").unwrap_err();
    assert!(matches!(err, CheckError::Store(_)) && err.is_unavailable(), "{err:?}");
    assert!(
        asked.elapsed() >= Duration::from_secs(1) && asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    held.rollback().await.unwrap();
    assert!(a.check(&CheckRequest::new(&viewer, &dash(), Capability::View)).await.unwrap().is_allowed());
}

/// A replica whose change feed is cut while its store stays reachable serves no cached app or
/// grant: a viewer removed on another replica meanwhile is refused at its next check. A proxy
/// severs every connection that listens (and any that listens anew), so the replica stays deaf
/// until the test lets it listen again, while its queries pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deaf_replica_reads_the_store_at_every_check_until_it_listens_again() {
    let Some(c) = Cluster::new().await else { return };
    let proxy = proxy().await;
    let opts = PgStoreOptions::new(proxy.url()).schema(c.opts.schema_name().unwrap());
    let a = c.replica_on(opts, Duration::from_secs(5)).await;
    let b = c.replica().await;
    let viewer = dana_signed_in(&b, &a).await;
    for source in [Source::Store, Source::Cache] {
        let d = a.check(&CheckRequest::new(&viewer, &dash(), Capability::View)).await.unwrap();
        assert_eq!((d.is_allowed(), d.source()), (true, source));
    }

    proxy.deafen(true);
    common::wait_until("A hears its feed is lost", Duration::from_secs(5), || !a.stats().feed_listening).await;
    for _ in 0..2 {
        let d = a.check(&CheckRequest::new(&viewer, &dash(), Capability::View)).await.unwrap();
        assert_eq!((d.is_allowed(), d.source()), (true, Source::Store), "deaf: read from the store, not kept");
    }
    b.remove_viewer(&ChangedBy::Operator, &dash(), "dana@example.com").await.unwrap();
    let d = a.check(&CheckRequest::new(&viewer, &dash(), Capability::View)).await.unwrap();
    assert_eq!((d.is_allowed(), d.reason()), (false, &Reason::NotInvited), "honoured at A's next check");
    assert!(!a.stats().feed_listening, "A was deaf throughout");

    proxy.deafen(false);
    common::wait_until("A listens again", Duration::from_secs(15), || a.stats().feed_listening).await;
    assert!(!a.check(&CheckRequest::new(&viewer, &dash(), Capability::View)).await.unwrap().is_allowed());
}

/// The longer lifetimes while webhooks are heard need the feed too: a delivery applied while the
/// replica is deaf (deliveries to the others would not reach it) leaves the ordinary lifetimes;
/// once it listens again, a delivery turns them on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_not_heard_by_a_deaf_replica() {
    let Some(c) = Cluster::new().await else { return };
    let proxy = proxy().await;
    let opts = PgStoreOptions::new(proxy.url()).schema(c.opts.schema_name().unwrap());
    let minutes = |m: u64| Duration::from_secs(60 * m);
    // Rosters are not shared here: a roster kept in the store outlives the resyncs this test
    // watches the in-memory lifetimes through.
    let cache = ghauthz::CacheConfig::default()
        .with_lifetimes_while_webhooks_heard(minutes(30), minutes(10))
        .with_shared_rosters(false);
    let a = c.replica_with(opts, Duration::from_secs(5), cache).await;
    let (carol, app) = (c.user("carol"), c.world.app("dash").unwrap());
    let ping = br#"{"zen":"Design for failure.","hook_id":1}"#;
    let source_after_six_minutes = || async {
        assert_eq!(a.check(&CheckRequest::new(&carol, &app, Capability::Edit)).await.unwrap().source(), Source::Github);
        c.clock.advance(minutes(6));
        a.check(&CheckRequest::new(&carol, &app, Capability::Edit)).await.unwrap().source()
    };

    proxy.deafen(true);
    common::wait_until("A hears its feed is lost", Duration::from_secs(5), || !a.stats().feed_listening).await;
    let outcome = a.handle_webhook(&signed_delivery("ping", "deaf-1", ping), ping).await.unwrap();
    assert!(matches!(outcome, WebhookOutcome::Applied(_)), "{outcome:?}");
    assert_eq!(source_after_six_minutes().await, Source::Github, "deaf: the ordinary 5 minutes");

    proxy.deafen(false);
    common::wait_until("A listens again", Duration::from_secs(15), || a.stats().feed_listening).await;
    a.handle_webhook(&signed_delivery("ping", "heard-1", ping), ping).await.unwrap();
    assert_eq!(source_after_six_minutes().await, Source::Cache, "heard: 30 minutes");
}

/// A connection of the test's own in the cluster's schema, to hold locks with.
async fn locker(c: &Cluster) -> sqlx::PgPool {
    let connect = sqlx::postgres::PgConnectOptions::from_str(&common::pg_url().unwrap())
        .unwrap()
        .options([("search_path", c.opts.schema_name().unwrap())]);
    sqlx::PgPool::connect_with(connect).await.unwrap()
}

/// Makes every commit that used a link up wait for advisory lock 4242 (a deferred trigger), as
/// long as it is held (the store's lock wait is lifted for that one wait).
async fn hold_commits_on_lock(locker: &sqlx::PgPool) {
    sqlx::raw_sql(
        "CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN
                PERFORM set_config('lock_timeout', '0', true);
                PERFORM pg_advisory_xact_lock(4242);
                RETURN NULL;
              END $$;
         CREATE CONSTRAINT TRIGGER hold_commit AFTER UPDATE ON links
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hold_commit();",
    )
    .execute(locker)
    .await
    .unwrap();
}

/// What a redemption cut off by the store bound must leave: reported as a success, or the link
/// unused (it redeems now).
async fn used_only_if_reported(a: &Authorizer, token: &str, answer: &Result<ghauthz::IssuedSession, LinkError>) {
    match answer {
        Ok(_) => assert_eq!(a.redeem_link(token, None).await.unwrap_err(), LinkError::AlreadyUsed),
        Err(e) => {
            assert!(matches!(e, LinkError::SignIn(ghauthz::SignInRefusal::Store(StoreError::Unavailable(_)))), "{e:?}");
            a.redeem_link(token, None).await.expect("a redemption reported unavailable left the link unused");
        }
    }
}

/// The commit of a link's use is held past the store bound (a deferred trigger waits on a lock
/// the test holds for 1.5 s, the bound is 1 s): the redemption waits for the commit's answer
/// instead of abandoning it, and reports the success. Cut off at the bound, it would report
/// *unavailable* for a link the commit then used up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redemption_whose_commit_outlasts_the_bound_is_reported_as_the_success_it_is() {
    let Some(c) = Cluster::new().await else { return };
    let a = c.replica_on(c.opts.clone(), Duration::from_secs(1)).await;
    let link = a.issue_link(&dash(), "dana@example.com").await.unwrap();
    let locker = locker(&c).await;
    hold_commits_on_lock(&locker).await;
    let mut held = locker.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(4242)").execute(&mut *held).await.unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        held.rollback().await.unwrap();
    });
    let asked = Instant::now();
    let answer = a.redeem_link(link.token.expose_secret(), Some(&dash())).await;
    release.await.unwrap();
    assert!(asked.elapsed() >= Duration::from_millis(1400), "the commit was held: {:?}", asked.elapsed());
    used_only_if_reported(&a, link.token.expose_secret(), &answer).await;
    assert!(answer.is_ok(), "the commit landed, so the redemption succeeded: {answer:?}");
}

/// The use of a link waits on another session's row lock past the store bound: the redemption
/// gives up, and the link is left unused, even though the lock is released while the abandoned
/// statement still waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redemption_that_cannot_write_within_the_bound_leaves_the_link_unused() {
    let Some(c) = Cluster::new().await else { return };
    let a = c.replica_on(c.opts.clone(), Duration::from_secs(1)).await;
    let link = a.issue_link(&dash(), "dana@example.com").await.unwrap();
    let locker = locker(&c).await;
    let mut held = locker.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM links FOR UPDATE").execute(&mut *held).await.unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        held.rollback().await.unwrap();
    });
    let answer = a.redeem_link(link.token.expose_secret(), Some(&dash())).await;
    release.await.unwrap();
    // Whatever the abandoned statement does once the lock is gone, it is not committed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        matches!(answer, Err(LinkError::SignIn(ghauthz::SignInRefusal::Store(StoreError::Unavailable(_))))),
        "{answer:?}"
    );
    used_only_if_reported(&a, link.token.expose_secret(), &answer).await;
}

/// The connection is cut while the commit of a link's use waits (a deferred trigger holds it
/// until the test releases a lock, 2.8 s in; the bound is 3 s): the commit still lands on the
/// server. The redemption, told
/// only that its connection failed, reads back whether the link was used by its own attempt
/// (waiting for the landing commit), and reports the success. Reporting the failed connection
/// as *unavailable* would leave the link used with no session to show for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redemption_whose_commit_answer_is_lost_reads_back_its_own_use() {
    let Some(c) = Cluster::new().await else { return };
    let proxy = proxy().await;
    let opts = PgStoreOptions::new(proxy.url()).schema(c.opts.schema_name().unwrap());
    let a = c.replica_on(opts, Duration::from_secs(3)).await;
    let link = a.issue_link(&dash(), "dana@example.com").await.unwrap();
    let locker = locker(&c).await;
    hold_commits_on_lock(&locker).await;
    let mut held = locker.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(4242)").execute(&mut *held).await.unwrap();
    // The lock is held 2.5 s past the cut: longer than a statement waits for a lock (2 s), so
    // the first read-back gives up and is asked again.
    let cut = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.cut();
        proxy.restore();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        held.rollback().await.unwrap();
    };
    let app = dash();
    let (answer, ()) = tokio::join!(a.redeem_link(link.token.expose_secret(), Some(&app)), cut);
    used_only_if_reported(&a, link.token.expose_secret(), &answer).await;
    assert!(answer.is_ok(), "the commit landed, so the redemption succeeded: {answer:?}");
}
