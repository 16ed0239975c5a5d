//! The request path: checks by app **id** for a GitHub user and from a viewer's
//! session **token string**, on the in-memory store, SQLite and Postgres, beside the floor (an
//! `FxHashMap` lookup of the same keys) and the check with the `App` in hand; and the time from a
//! viewer removed on one authorizer to another on the same store denying, while a thread keeps
//! checking.
//!
//! Scenario: 1,000 users × 100 repositories (100,000 active (user, repository) pairs, uniform
//! keys), one app per repository, 10 invited viewers per app, each signed in.
//!
//! Run: `cargo bench --features world,sqlite --bench request_path`; with
//! `GHAUTHZ_TEST_POSTGRES=postgres://...` (and feature `postgres`) Postgres too. The last lines
//! printed are the medians and the ratios, read back from criterion's own estimates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "bench code: a failure stops the run")]

use ghauthz::CheckRequest;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ghauthz::store::{IssueLimit, MemoryStore, SqliteStore, Store};
use ghauthz::world::MockGithub;
use ghauthz::{
    App, AppId, Authorizer, CacheConfig, Capability, ChangedBy, Clock as _, LinkConfig, Principal, SessionConfig,
    SessionKeys,
};
use rustc_hash::FxHashMap;

mod common;

const USERS: usize = 1000;
const REPOS: usize = 100;
const VIEWERS: usize = 10;
const KEYS: usize = 1 << 16;
/// Viewers removed, one at a time, to time revocation across authorizers.
const REVOCATIONS: usize = 100;

/// One store with two authorizers on it, warmed.
struct OnStore {
    name: &'static str,
    authz: Authorizer,
    other: Authorizer,
    /// `tokens[r][v]`: viewer `v` of app `r`, signed in.
    tokens: Vec<Vec<String>>,
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    /// On the memory store with an injected clock that reads one atomic (a `ManualClock`): what
    /// the hit costs without the system clock's read.
    atomic_clock: Authorizer,
    principals: Vec<Principal>,
    apps: Vec<App>,
    ids: Vec<AppId>,
    keys: Vec<(usize, usize)>,
    map: FxHashMap<(u64, u64), u8>,
    stores: Vec<OnStore>,
    _mock: MockGithub,
    _dir: tempfile::TempDir,
}

fn setup() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let world = common::world(USERS, REPOS, VIEWERS);
    let mock = rt.block_on(MockGithub::start(world.clone())).unwrap();
    let principals: Vec<Principal> =
        (0..USERS).map(|u| Principal::github(world.user(&format!("u{u}")).unwrap())).collect();
    let apps: Vec<App> = (0..REPOS).map(|r| world.app(&format!("a{r}")).unwrap()).collect();
    let ids: Vec<AppId> = apps.iter().map(|a| a.id().clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut stores: Vec<(&'static str, Arc<dyn Store>)> = vec![
        ("memory", Arc::new(MemoryStore::new())),
        ("sqlite", Arc::new(rt.block_on(SqliteStore::open(dir.path().join("bench.db"))).unwrap())),
    ];
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("GHAUTHZ_TEST_POSTGRES") {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let opts = ghauthz::store::PgStoreOptions::new(url).schema(format!("bench_{}", nanos % 1_000_000_000));
        stores.push(("postgres", Arc::new(rt.block_on(ghauthz::store::PgStore::connect_with(opts)).unwrap())));
    } else {
        eprintln!("postgres skipped: set GHAUTHZ_TEST_POSTGRES to include it");
    }
    let keys_ = SessionKeys::generate().unwrap();
    // Lifetimes long enough that nothing expires mid-run; the system clock, as in production.
    let cache =
        CacheConfig::default().with_role_ttl(Duration::from_secs(3600)).with_record_ttl(Duration::from_secs(3600));
    let links = LinkConfig::default().with_issue_limit(IssueLimit::new(u32::MAX, Duration::from_secs(1)));
    let stores = stores
        .into_iter()
        .map(|(name, store)| {
            rt.block_on(store.seed_once(&world.app_records(), ghauthz::SystemClock.now())).unwrap();
            let build = || {
                let _rt = rt.enter();
                Authorizer::builder(mock.github_config())
                    .cache(cache.clone())
                    .links(links.clone())
                    .sessions(keys_.clone(), SessionConfig::default().with_ttl(Duration::from_secs(24 * 3600)))
                    .store(store.clone())
                    .build()
                    .unwrap()
            };
            let (authz, other) = (build(), build());
            let started = Instant::now();
            while !(authz.stats().feed_listening && other.stats().feed_listening) {
                assert!(started.elapsed() < Duration::from_secs(10), "{name}: not listening");
                std::thread::sleep(Duration::from_millis(5));
            }
            let tokens = rt.block_on(warm(&authz, &other, &principals, &ids));
            eprintln!("{name}: warmed in {:?}", started.elapsed());
            OnStore { name, authz, other, tokens }
        })
        .collect();
    let atomic_clock = {
        let _rt = rt.enter();
        let clock = ghauthz::ManualClock::new(ghauthz::SystemClock.now());
        Authorizer::builder(mock.github_config()).clock(Arc::new(clock)).cache(cache.clone()).build().unwrap()
    };
    rt.block_on(async {
        for p in &principals {
            for app in &apps {
                atomic_clock.check(&CheckRequest::new(p, app, Capability::View)).await.unwrap();
            }
        }
    });
    let map = (0..USERS)
        .flat_map(|u| (0..REPOS).map(move |r| ((1000 + u) as u64, (10_000 + r) as u64)))
        .map(|k| (k, 1u8))
        .collect();
    Fixture {
        rt,
        atomic_clock,
        principals,
        apps,
        ids,
        keys: common::uniform_keys(KEYS, USERS, REPOS),
        map,
        stores,
        _mock: mock,
        _dir: dir,
    }
}

/// Every (user, app) pair checked by id on `authz`, every viewer signed in and checked on both.
async fn warm(authz: &Authorizer, other: &Authorizer, principals: &[Principal], ids: &[AppId]) -> Vec<Vec<String>> {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..16 {
        let (authz, principals, ids) = (authz.clone(), principals.to_vec(), ids.to_vec());
        tasks.spawn(async move {
            for u in (chunk..USERS).step_by(16) {
                for id in &ids {
                    assert!(
                        authz
                            .check(&CheckRequest::new(&principals[u], id, Capability::View))
                            .await
                            .unwrap()
                            .is_allowed()
                    );
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let mut tokens = Vec::with_capacity(REPOS);
    for (r, id) in ids.iter().enumerate() {
        let mut row = Vec::with_capacity(VIEWERS);
        for v in 0..VIEWERS {
            let link = authz.issue_link(id, &format!("v{v}.a{r}@example.com")).await.unwrap();
            let token =
                authz.redeem_link(link.token.expose_secret(), None).await.unwrap().token.expose_secret().to_owned();
            for a in [authz, other] {
                for _ in 0..2 {
                    assert!(a.check(&CheckRequest::session(&token, id, Capability::View)).await.unwrap().is_allowed());
                }
            }
            row.push(token);
        }
        tokens.push(row);
    }
    for (u, p) in principals.iter().enumerate() {
        for (r, id) in ids.iter().enumerate() {
            assert!(authz.check_cached(&CheckRequest::new(p, id, Capability::View)).is_some(), "({u}, {r}) is a hit");
        }
    }
    tokens
}

fn benches(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("request_path");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    let key = |i: usize| f.keys[i % KEYS];
    for threads in [1usize, 2] {
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_function(format!("floor_fxhashmap_{threads}t"), |b| {
            b.iter_custom(|iters| {
                common::on_threads(threads, iters, |i| {
                    let (u, r) = key(i);
                    black_box(f.map.get(&((1000 + u) as u64, (10_000 + r) as u64)));
                })
            })
        });
        let memory = &f.stores[0].authz;
        g.bench_function(format!("check_cached_app_in_hand_{threads}t"), |b| {
            b.iter_custom(|iters| {
                common::on_threads(threads, iters, |i| {
                    let (u, r) = key(i);
                    black_box(memory.check_cached(&CheckRequest::new(&f.principals[u], &f.apps[r], Capability::View)));
                })
            })
        });
        for s in &f.stores {
            g.bench_function(format!("{}_check_app_by_id_{threads}t", s.name), |b| {
                b.iter_custom(|iters| {
                    common::on_threads(threads, iters, |i| {
                        let (u, r) = key(i);
                        black_box(s.authz.check_cached(&CheckRequest::new(
                            &f.principals[u],
                            &f.ids[r],
                            Capability::View,
                        )));
                    })
                })
            });
            g.bench_function(format!("{}_viewer_from_token_{threads}t", s.name), |b| {
                b.iter_custom(|iters| {
                    common::on_threads(threads, iters, |i| {
                        let (u, r) = key(i);
                        black_box(s.authz.check_cached(&CheckRequest::session(
                            &s.tokens[r][u % VIEWERS],
                            &f.ids[r],
                            Capability::View,
                        )));
                    })
                })
            });
        }
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("check_cached_app_in_hand_atomic_clock_1t", |b| {
        b.iter_custom(|iters| {
            common::on_threads(1, iters, |i| {
                let (u, r) = key(i);
                black_box(f.atomic_clock.check_cached(&CheckRequest::new(
                    &f.principals[u],
                    &f.apps[r],
                    Capability::View,
                )));
            })
        })
    });
    let memory = &f.stores[0].authz;
    g.bench_function("check_app_in_hand_async_1t", |b| {
        b.iter_custom(|iters| {
            f.rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let (u, r) = key(i);
                    black_box(
                        memory.check(&CheckRequest::new(&f.principals[u], &f.apps[r], Capability::View)).await.ok(),
                    );
                }
                start.elapsed()
            })
        })
    });
    for s in &f.stores {
        g.bench_function(format!("{}_check_app_by_id_async_1t", s.name), |b| {
            b.iter_custom(|iters| {
                f.rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let (u, r) = key(i);
                        black_box(
                            s.authz.check(&CheckRequest::new(&f.principals[u], &f.ids[r], Capability::View)).await.ok(),
                        );
                    }
                    start.elapsed()
                })
            })
        });
        g.bench_function(format!("{}_check_session_async_1t", s.name), |b| {
            b.iter_custom(|iters| {
                f.rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        let (u, r) = key(i);
                        black_box(
                            s.authz
                                .check(&CheckRequest::session(&s.tokens[r][u % VIEWERS], &f.ids[r], Capability::View))
                                .await
                                .ok(),
                        );
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

/// Removes the last viewer of each of `REVOCATIONS` apps on `s.authz`, timing each until
/// `s.other` denies that viewer, while another thread keeps checking on `s.other`. Sorted.
fn revocations(f: &Fixture, s: &OnStore) -> Vec<Duration> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let (u, r) = f.keys[i % KEYS];
                black_box(s.other.check_cached(&CheckRequest::session(
                    &s.tokens[r][u % (VIEWERS - 1)],
                    &f.ids[r],
                    Capability::View,
                )));
                black_box(s.other.check_cached(&CheckRequest::new(&f.principals[u], &f.ids[r], Capability::View)));
                i += 1;
            }
        });
        let mut times = Vec::with_capacity(REVOCATIONS);
        for r in 0..REVOCATIONS.min(REPOS) {
            let token = &s.tokens[r][VIEWERS - 1];
            let id = &f.ids[r];
            assert!(
                s.other
                    .check_cached(&CheckRequest::session(token, id, Capability::View))
                    .is_some_and(|d| d.is_allowed())
            );
            let email = format!("v{}.a{r}@example.com", VIEWERS - 1);
            let start = Instant::now();
            f.rt.block_on(s.authz.remove_viewer(&ChangedBy::Operator, id, &email)).unwrap();
            loop {
                let denied = f.rt.block_on(s.other.check(&CheckRequest::session(token, id, Capability::View))).unwrap();
                if !denied.is_allowed() {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(5), "{}: not revoked", s.name);
                std::thread::sleep(Duration::from_micros(50));
            }
            times.push(start.elapsed());
        }
        stop.store(true, Ordering::Relaxed);
        times.sort();
        times
    })
}

fn main() {
    let f = setup();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &f);
    c.final_summary();
    let revoked: Vec<(&str, Vec<Duration>)> = f.stores.iter().map(|s| (s.name, revocations(&f, s))).collect();

    let floor = common::median_ns("request_path", "floor_fxhashmap_1t");
    let in_hand = common::median_ns("request_path", "check_cached_app_in_hand_1t");
    let in_hand_async = common::median_ns("request_path", "check_app_in_hand_async_1t");
    println!("\nmedians, {USERS} users x {REPOS} repositories, {VIEWERS} viewers per app (ns per check, one thread):");
    println!("  floor: FxHashMap lookup            {floor:8.1}");
    println!("  check_cached, App in hand          {in_hand:8.1}   ({:.1}x floor)", in_hand / floor);
    println!("  check(&App).await, hit             {in_hand_async:8.1}");
    let atomic = common::median_ns("request_path", "check_cached_app_in_hand_atomic_clock_1t");
    println!(
        "  check_cached, App in hand, a clock that reads one atomic {atomic:8.1}   ({:.1}x floor)",
        atomic / floor
    );
    for s in &f.stores {
        let n = s.name;
        let (id, id_async) = (
            common::median_ns("request_path", &format!("{n}_check_app_by_id_1t")),
            common::median_ns("request_path", &format!("{n}_check_app_by_id_async_1t")),
        );
        let (tok, tok_async) = (
            common::median_ns("request_path", &format!("{n}_viewer_from_token_1t")),
            common::median_ns("request_path", &format!("{n}_check_session_async_1t")),
        );
        let (id2, tok2) = (
            common::median_ns("request_path", &format!("{n}_check_app_by_id_2t")),
            common::median_ns("request_path", &format!("{n}_viewer_from_token_2t")),
        );
        println!("  {n}:");
        println!(
            "    check_app by id (sync / async)   {id:8.1} / {id_async:8.1}   ({:.2}x / {:.2}x the App-in-hand hit)",
            id / in_hand,
            id_async / in_hand_async
        );
        println!("    viewer from token (sync / async) {tok:8.1} / {tok_async:8.1}   ({:.1}x floor)", tok / floor);
        println!(
            "    2 threads / 1 thread throughput: by id {:.2}x, from token {:.2}x",
            2.0 * id / id2,
            2.0 * tok / tok2
        );
    }
    let (m1, m2, c2) = (
        floor,
        common::median_ns("request_path", "floor_fxhashmap_2t"),
        common::median_ns("request_path", "check_cached_app_in_hand_2t"),
    );
    println!("  2 threads / 1 thread throughput: check_cached {:.2}x, floor {:.2}x", 2.0 * in_hand / c2, 2.0 * m1 / m2);
    println!("revocation on one authorizer until the other denies, {REVOCATIONS} removals under load:");
    for (name, t) in &revoked {
        let pct = |p: f64| t[((t.len() as f64 * p) as usize).min(t.len() - 1)];
        println!("  {name:9} p50 {:?}   p99 {:?}   max {:?}", pct(0.50), pct(0.99), t[t.len() - 1]);
    }
}
