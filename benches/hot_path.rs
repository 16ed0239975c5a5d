//! The hot path: a cached check at 100,000 active (user, repository) pairs with
//! uniform keys, beside an `FxHashMap` lookup of the same keys, on one and two threads; the same
//! at 1,000 active pairs (a working set the processor's caches hold); and, as the memory floor,
//! one random cache-line load that depends on the last, in a buffer the size of the hit table.
//!
//! A check reads one random line of the hit table and cannot overlap that read with the next
//! check's the way a bare map lookup in a tight loop does, so at 100,000 pairs it costs about one
//! dependent load from memory plus the check's own work (the resident scenario).
//!
//! Run: `cargo bench --features world --bench hot_path`. The last lines printed are the medians
//! and the ratios, read back from criterion's own estimates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use ghauthz::CheckRequest;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use criterion::{Criterion, Throughput};
use ghauthz::world::MockGithub;
use ghauthz::{App, Authorizer, CacheConfig, Capability, Principal};
use rustc_hash::FxHashMap;

const USERS: usize = 1000;
const REPOS: usize = 100; // USERS * REPOS = 100,000 active pairs
const KEYS: usize = 1 << 16;
/// Users in the resident scenario: 10 × 100 = 1,000 active pairs.
const RESIDENT_USERS: usize = 10;
/// The hit table's size at the benchmark's capacity (200,000 entries: 2^18 slots of 32 bytes).
const TABLE_BYTES: usize = 8 << 20;

struct Fixture {
    principals: Vec<Principal>,
    apps: Vec<App>,
    authz: Authorizer,
    /// Uniform random (user, repo) indices.
    keys: Vec<(usize, usize)>,
    /// The same, over the resident scenario's users.
    resident: Vec<(usize, usize)>,
    map: FxHashMap<(u64, u64), u8>,
    /// A random cycle through the cache lines of a `TABLE_BYTES` buffer.
    chain: Vec<[usize; 8]>,
    rt: tokio::runtime::Runtime,
    _mock: MockGithub,
}

fn setup() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let world = common::world(USERS, REPOS, 0);
    let mock = rt.block_on(MockGithub::start(world.clone())).expect("mock");
    // The system clock, as in production; lifetimes long enough that nothing expires mid-run.
    let cache = CacheConfig::default().with_role_ttl(Duration::from_secs(3600)).with_capacity(200_000);
    let authz = {
        let _in_runtime = rt.enter();
        Authorizer::builder(mock.github_config()).cache(cache).build().expect("authorizer")
    };
    let principals: Vec<Principal> =
        (0..USERS).map(|u| Principal::github(world.user(&format!("u{u}")).expect("user"))).collect();
    let apps: Vec<App> = (0..REPOS).map(|r| world.app(&format!("a{r}")).expect("app")).collect();

    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in 0..16 {
            let (authz, principals, apps) = (authz.clone(), principals.clone(), apps.clone());
            tasks.spawn(async move {
                for u in (chunk..USERS).step_by(16) {
                    for app in &apps {
                        let d = authz
                            .check(&CheckRequest::new(&principals[u], app, Capability::View))
                            .await
                            .expect("warm-up check");
                        assert!(d.is_allowed());
                    }
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("warm-up task");
        }
    });
    let stats = authz.stats();
    assert_eq!(stats.misses, (USERS * REPOS) as u64, "every pair was fetched once");
    eprintln!("warmed {} pairs in {:?} ({} requests served)", USERS * REPOS, started.elapsed(), mock.total_requests());

    let keys = common::uniform_keys(KEYS, USERS, REPOS);
    let map = (0..USERS)
        .flat_map(|u| (0..REPOS).map(move |r| ((1000 + u) as u64, (10_000 + r) as u64)))
        .map(|k| (k, 1u8))
        .collect();
    let resident = common::uniform_keys(KEYS, RESIDENT_USERS, REPOS);
    for &(u, r) in keys.iter().chain(&resident) {
        assert!(
            authz.check_cached(&CheckRequest::new(&principals[u], &apps[r], Capability::View)).is_some(),
            "all keys are hits"
        );
    }
    Fixture { principals, apps, authz, keys, resident, map, chain: chain(TABLE_BYTES / 64), rt, _mock: mock }
}

/// `lines` cache lines, each naming the next of one random cycle through all of them.
fn chain(lines: usize) -> Vec<[usize; 8]> {
    let mut order: Vec<usize> = (0..lines).collect();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in (1..lines).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let mut chain = vec![[0usize; 8]; lines];
    for k in 0..lines {
        chain[order[k]][0] = order[(k + 1) % lines];
    }
    chain
}

fn map_key(keys: &[(usize, usize)], i: usize) -> (u64, u64) {
    let (u, r) = keys[i % KEYS];
    ((1000 + u) as u64, (10_000 + r) as u64)
}

fn cached(f: &Fixture, keys: &[(usize, usize)], i: usize) -> Option<ghauthz::Decision> {
    let (u, r) = keys[i % KEYS];
    f.authz.check_cached(&CheckRequest::new(&f.principals[u], &f.apps[r], Capability::View))
}

fn benches(c: &mut Criterion, f: &Arc<Fixture>) {
    let mut g = c.benchmark_group("hot_path");
    g.measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1)).sample_size(40);
    for threads in [1usize, 2] {
        // Throughput counts operations on all threads; time is per iteration of each thread.
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_function(format!("fxhashmap_{threads}t"), |b| {
            b.iter_custom(|iters| {
                common::on_threads(threads, iters, |i| {
                    black_box(f.map.get(&map_key(&f.keys, i)));
                })
            })
        });
        g.bench_function(format!("check_cached_{threads}t"), |b| {
            b.iter_custom(|iters| {
                common::on_threads(threads, iters, |i| {
                    black_box(cached(f, &f.keys, i));
                })
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("fxhashmap_resident_1t", |b| {
        b.iter_custom(|iters| {
            common::on_threads(1, iters, |i| {
                black_box(f.map.get(&map_key(&f.resident, i)));
            })
        })
    });
    g.bench_function("check_cached_resident_1t", |b| {
        b.iter_custom(|iters| {
            common::on_threads(1, iters, |i| {
                black_box(cached(f, &f.resident, i));
            })
        })
    });
    g.bench_function("dependent_load_1t", |b| {
        b.iter_custom(|iters| {
            let mut line = 0;
            let start = Instant::now();
            for _ in 0..iters {
                line = black_box(f.chain[line][0]);
            }
            start.elapsed()
        })
    });
    g.bench_function("check_async_hit_1t", |b| {
        b.iter_custom(|iters| {
            f.rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let (u, r) = f.keys[i % KEYS];
                    black_box(
                        f.authz.check(&CheckRequest::new(&f.principals[u], &f.apps[r], Capability::View)).await.ok(),
                    );
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn main() {
    let f = Arc::new(setup());
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &f);
    c.final_summary();
    let get = |n: &str| common::median_ns("hot_path", n);
    let (m1, c1, m2, c2, a1) = (
        get("fxhashmap_1t"),
        get("check_cached_1t"),
        get("fxhashmap_2t"),
        get("check_cached_2t"),
        get("check_async_hit_1t"),
    );
    let (mr, cr, load) = (get("fxhashmap_resident_1t"), get("check_cached_resident_1t"), get("dependent_load_1t"));
    println!("\nmedians at {} active pairs (ns per operation on one thread):", USERS * REPOS);
    println!("  fxhashmap lookup       1 thread {m1:8.1}   2 threads {m2:8.1}");
    println!("  check_cached (hit)     1 thread {c1:8.1}   2 threads {c2:8.1}");
    println!("  check (async, hit)     1 thread {a1:8.1}");
    println!("  dependent line load in {} MiB {load:8.1}", TABLE_BYTES >> 20);
    println!("medians at {} active pairs:", RESIDENT_USERS * REPOS);
    println!("  fxhashmap lookup       1 thread {mr:8.1}");
    println!("  check_cached (hit)     1 thread {cr:8.1}");
    println!("ratio check_cached / fxhashmap: 1 thread {:.2}x, 2 threads {:.2}x", c1 / m1, c2 / m2);
    println!("ratio check_cached / (dependent load + resident check): {:.2}x", c1 / (load + cr));
    println!("ratio check_cached / fxhashmap, resident: {:.2}x", cr / mr);
    println!("throughput 2 threads / 1 thread: check_cached {:.2}x, fxhashmap {:.2}x", 2.0 * c1 / c2, 2.0 * m1 / m2);
}
