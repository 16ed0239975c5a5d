//! A record cache smaller than the apps asked about: how many checks by id the cache answers
//! from memory, and how many go to the store, once it has filled.
//!
//! Scenario: one GitHub user with write on one repository, 2,500 apps deployed from it (so the
//! GitHub fact is one cache entry and only the app records compete for room), a cache of
//! 500 entries, SQLite. 200,000 checks by id, the apps drawn uniformly or by a Zipf-like skew
//! (`1/rank`), run twice, the second run counted; a check the cache cannot answer
//! (`check_cached` is `None`) is a store read, then made with `check` so the app is remembered.
//!
//! The app table of the hit path (as many slots as the capacity, rounded up to a power of two)
//! keeps copies of apps the record map made room by dropping, until their slots are reused, so
//! about twice the capacity is answered from memory.
//!
//! Run: `cargo bench --features world,sqlite --bench full_cache`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "bench code: a failure stops the run")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ghauthz::store::{SqliteStore, Store};
use ghauthz::world::{MockGithub, World};
use ghauthz::{AppId, Authorizer, CacheConfig, Capability, CheckRequest, Clock as _, Principal};

/// Apps asked about (`GHAUTHZ_BENCH_APPS` overrides).
fn apps() -> usize {
    std::env::var("GHAUTHZ_BENCH_APPS").ok().and_then(|v| v.parse().ok()).unwrap_or(2500)
}
/// The cache's capacity (`GHAUTHZ_BENCH_CAPACITY` overrides).
fn capacity() -> u64 {
    std::env::var("GHAUTHZ_BENCH_CAPACITY").ok().and_then(|v| v.parse().ok()).unwrap_or(500)
}
const CHECKS: usize = 200_000;

fn world(apps: usize) -> World {
    let mut t = String::from("version = 1\nnow = \"2026-11-22T10:00:00Z\"\n");
    t += "[[users]]\nid = 1000\nlogin = \"u0\"\n";
    t += "[[repos]]\nid = 10000\nowner = \"u0\"\nname = \"r0\"\nprivate = true\n";
    for a in 0..apps {
        t += &format!(
            "[[apps]]\nid = \"a{a}\"\nrepo = \"u0/r0\"\nrepo_id = 10000\nbranch = \"main\"\nmain_file = \"app.py\"\nvisibility = \"private\"\ndeployed_by = \"u0\"\n"
        );
    }
    World::from_toml_str(&t, ".").expect("bench world")
}

/// A small deterministic generator (xorshift), so that both runs of an A/B ask the same.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `CHECKS` app indexes: uniform, or Zipf-like (`P(rank k) ∝ 1/k`) over a fixed permutation.
fn workload(zipf: bool, apps: usize) -> Vec<usize> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    if !zipf {
        return (0..CHECKS).map(|_| (rng.next() % apps as u64) as usize).collect();
    }
    let weights: Vec<f64> = (1..=apps).map(|k| 1.0 / k as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut cumulative = Vec::with_capacity(apps);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cumulative.push(acc);
    }
    (0..CHECKS)
        .map(|_| {
            let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
            cumulative.partition_point(|c| *c < u).min(apps - 1) * 7919 % apps
        })
        .collect()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (apps, capacity) = (apps(), capacity());
    let world = world(apps);
    let mock = rt.block_on(MockGithub::start(world.clone())).unwrap();
    let user = Principal::github(world.user("u0").unwrap());
    let ids: Vec<AppId> = (0..apps).map(|a| AppId(format!("a{a}"))).collect();
    println!("{apps} apps on one repository, cache capacity {capacity}, {CHECKS} checks by id, SQLite:");
    for zipf in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(rt.block_on(SqliteStore::open(dir.path().join("bench.db"))).unwrap());
        rt.block_on(store.seed_once(&world.app_records(), ghauthz::SystemClock.now())).unwrap();
        let cache = CacheConfig::default()
            .with_capacity(capacity)
            .with_role_ttl(Duration::from_secs(3600))
            .with_record_ttl(Duration::from_secs(3600));
        let authz = {
            let _rt = rt.enter();
            Authorizer::builder(mock.github_config()).cache(cache).store(store).build().unwrap()
        };
        let work = workload(zipf, apps);
        // One pass to fill the cache, then the measured pass.
        let mut reads = 0usize;
        let mut worst_run = 0usize;
        let started = Instant::now();
        for pass in 0..2 {
            let (mut run, mut n) = (0usize, 0usize);
            for &a in &work {
                let req = CheckRequest::new(&user, &ids[a], Capability::Edit);
                let d = match authz.check_cached(&req) {
                    Some(d) => {
                        run = 0;
                        d
                    }
                    None => {
                        n += 1;
                        run += 1;
                        worst_run = worst_run.max(if pass == 1 { run } else { 0 });
                        rt.block_on(authz.check(&req)).unwrap()
                    }
                };
                assert!(d.is_allowed(), "write means edit");
            }
            reads = n;
        }
        let elapsed = started.elapsed() / 2;
        println!(
            "  {:8} store reads per 1,000 checks {:6.1}   longest run of consecutive reads {worst_run:5}   {:6.0} ns per check",
            if zipf { "zipf" } else { "uniform" },
            reads as f64 * 1000.0 / CHECKS as f64,
            elapsed.as_nanos() as f64 / CHECKS as f64
        );
    }
}
