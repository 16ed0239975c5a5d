//! GitHub's budget at a platform's scale: one GitHub App installed once per customer
//! organization, checks spread Zipf across the organizations, on one authorizer and on four
//! sharing one store (each with its own App tokens, as separate processes would have).
//!
//! The workload: 1,000 organizations (`--quick`: 100), one installation of the App each, 20
//! private repositories and 50 members apiece (members drawn from a pool of 10,000 users, so a
//! user belongs to several organizations; base permission `read`; in each repository 10 members
//! hold `write` and one `admin`), one app per repository. Over one virtual hour of the
//! authorizers' and the mock's clock, 1,000,000 `view` checks (`--quick`: 100,000) by app id:
//! the organization drawn Zipf (s = 1), the repository and the member uniformly within it.
//! Every decision is compared with the world's own answer (a private app's `view` needs
//! `write`); a mismatch or an undecided check fails the run. With four authorizers, check `i`
//! goes to authorizer `i mod 4`.
//!
//! Reported: requests and charged requests per 1,000 checks, the App's own requests
//! (installation lookups and token mints, with its JWT), and the most any one installation
//! spent of its hourly budget (5,000 on the mock).
//!
//! The store is in memory, shared by the authorizers; with `GHAUTHZ_BENCH_POSTGRES` set (a
//! Postgres URL) and feature `postgres`, a Postgres store in a schema of its own.
//!
//! Run: `cargo bench --features world --bench platform_budget` (`-- --quick`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "bench code: a failure stops the run")]

#[path = "common/draws.rs"]
mod draws;

use std::sync::Arc;
use std::time::Duration;

use draws::{Rng, Zipf};
use ghauthz::CheckRequest;
use ghauthz::store::{MemoryStore, Store, prelude::*};
use ghauthz::world::{MockGithub, World};
use ghauthz::{AppId, Authorizer, Capability, Clock as _, ManualClock, Principal, Role};

const REPOS: usize = 20;
const MEMBERS: usize = 50;
const WRITERS: usize = 10;
const POOL: usize = 10_000;
/// The mock's hourly budget per installation.
const HOURLY: u64 = 5_000;

/// Who is in which organization, and who holds what on each repository.
struct Spec {
    orgs: usize,
    /// Each organization's members (indices into the pool).
    members: Vec<Vec<usize>>,
    /// Per organization, per repository: the writers and the admin (indices into `members`).
    roles: Vec<Vec<(Vec<usize>, usize)>>,
}

impl Spec {
    fn new(orgs: usize) -> Self {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut members = Vec::with_capacity(orgs);
        let mut roles = Vec::with_capacity(orgs);
        for _ in 0..orgs {
            let mut m: Vec<usize> = Vec::with_capacity(MEMBERS);
            while m.len() < MEMBERS {
                let u = rng.below(POOL);
                if !m.contains(&u) {
                    m.push(u);
                }
            }
            members.push(m);
            roles.push(
                (0..REPOS)
                    .map(|_| {
                        let mut writers = Vec::with_capacity(WRITERS);
                        while writers.len() < WRITERS {
                            let w = rng.below(MEMBERS);
                            if !writers.contains(&w) {
                                writers.push(w);
                            }
                        }
                        (writers, rng.below(MEMBERS))
                    })
                    .collect(),
            );
        }
        Spec { orgs, members, roles }
    }

    fn world(&self) -> World {
        let mut t = String::from("version = 1\nnow = \"2026-11-22T10:00:00Z\"\n");
        for u in 0..POOL {
            t.push_str(&format!("[[users]]\nid = {}\nlogin = \"u{u}\"\n", u + 1));
        }
        for (o, members) in self.members.iter().enumerate() {
            let list: Vec<String> = members.iter().map(|u| format!("\"u{u}\"")).collect();
            t.push_str(&format!(
                "[[orgs]]\nid = {}\nlogin = \"o{o}\"\nmembers = [{}]\nbase_permission = \"read\"\n",
                100_000 + o,
                list.join(", ")
            ));
        }
        for (o, repos) in self.roles.iter().enumerate() {
            for (r, (writers, admin)) in repos.iter().enumerate() {
                let mut roles: Vec<String> =
                    writers.iter().map(|w| format!("u{} = \"write\"", self.members[o][*w])).collect();
                if !writers.contains(admin) {
                    roles.push(format!("u{} = \"admin\"", self.members[o][*admin]));
                }
                let id = 1_000_000 + o * REPOS + r;
                t.push_str(&format!(
                    "[[repos]]\nid = {id}\nowner = \"o{o}\"\nname = \"r{r}\"\nprivate = true\nroles = {{ {} }}\n",
                    roles.join(", ")
                ));
                t.push_str(&format!(
                    "[[apps]]\nid = \"o{o}r{r}\"\nrepo = \"o{o}/r{r}\"\nrepo_id = {id}\nbranch = \"main\"\nmain_file = \"app.py\"\nvisibility = \"private\"\ndeployed_by = \"u{}\"\n",
                    self.members[o][0]
                ));
            }
        }
        for o in 0..self.orgs {
            t.push_str(&format!("[[installations]]\nid = {}\naccount = \"o{o}\"\n", 10_000 + o));
        }
        World::from_toml_str(&t, ".").unwrap()
    }
}

struct Run {
    requests: u64,
    charged: u64,
    /// Installation lookups and token mints (the App's JWT).
    app_requests: u64,
    /// The most one installation spent of its hourly budget.
    most_spent: u64,
    /// Requests by route: repositories, rosters, the App's own, anything else.
    routes: [u64; 4],
}

/// `checks` view checks over one virtual hour on `replicas` authorizers sharing one store.
async fn run(spec: &Spec, world: &World, checks: usize, replicas: usize) -> Run {
    let clock = ManualClock::new(world.now().unwrap());
    let mock = MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone())).await.unwrap();
    let store = shared_store(world, &clock).await;
    let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/keys/github-app-test.pem")).unwrap();
    let key = ghauthz::AppPrivateKey::from_pem(&pem).unwrap();
    let authorizers: Vec<Authorizer> = (0..replicas)
        .map(|_| {
            Authorizer::builder(mock.app_config(42, key.clone(), None))
                .clock(Arc::new(clock.clone()))
                .store(store.clone())
                .build()
                .unwrap()
        })
        .collect();
    let principals: Vec<Principal> =
        (0..POOL).map(|u| Principal::github(world.user(&format!("u{u}")).unwrap())).collect();
    let orgs = Zipf::new(spec.orgs);
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let step = Duration::from_secs(3600).as_nanos() / checks as u128;
    for i in 0..checks {
        if i > 0 {
            clock.advance(Duration::from_nanos(u64::try_from(step).unwrap()));
        }
        let o = orgs.draw(&mut rng);
        let (r, m) = (rng.below(REPOS), rng.below(MEMBERS));
        let u = spec.members[o][m];
        let authz = &authorizers[i % replicas];
        let d = authz
            .check(&CheckRequest::new(&principals[u], &AppId(format!("o{o}r{r}")), Capability::View))
            .await
            .unwrap_or_else(|e| panic!("u{u} on o{o}/r{r} undecided: {e}"));
        let repo = &world.repos()[o * REPOS + r];
        let want = world.effective_role(world.users()[u].id, repo).is_some_and(|g| g.role >= Role::Write);
        assert_eq!(d.is_allowed(), want, "u{u} on o{o}/r{r}: {d:?}");
    }
    let counts = mock.request_counts();
    let app_requests = counts
        .iter()
        .filter(|(path, _)| path.ends_with("/installation") || path.ends_with("/access_tokens"))
        .map(|(_, n)| *n)
        .sum();
    let mut routes = [0u64; 4];
    for (path, n) in &counts {
        let kind = if path.ends_with("/installation") || path.ends_with("/access_tokens") {
            2
        } else if path.ends_with("/collaborators") {
            1
        } else if path.starts_with("/repos/") && path.matches('/').count() == 3 {
            0
        } else {
            3
        };
        routes[kind] += n;
    }
    let most_spent =
        (0..spec.orgs).map(|o| HOURLY - mock.installation_rate_limit_remaining(10_000 + o as u64)).max().unwrap_or(0);
    Run { requests: mock.total_requests(), charged: mock.charged_requests(), app_requests, most_spent, routes }
}

/// One store for every authorizer of a run: Postgres where `GHAUTHZ_BENCH_POSTGRES` names one,
/// else in memory; seeded with the world's apps.
async fn shared_store(world: &World, clock: &ManualClock) -> Arc<dyn Store> {
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("GHAUTHZ_BENCH_POSTGRES") {
        use std::sync::atomic::{AtomicU32, Ordering};
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let schema = format!("bench_{}_{}", std::process::id(), RUNS.fetch_add(1, Ordering::Relaxed));
        let opts = ghauthz::store::PgStoreOptions::new(url).schema(schema);
        let store = ghauthz::store::PgStore::connect_with(opts).await.unwrap();
        store.seed_once(&world.app_records(), clock.now()).await.unwrap();
        return Arc::new(store);
    }
    let store = MemoryStore::new();
    store.seed_once(&world.app_records(), clock.now()).await.unwrap();
    Arc::new(store)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (orgs, checks) = if quick { (100, 100_000) } else { (1_000, 1_000_000) };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let spec = Spec::new(orgs);
    let world = spec.world();
    println!(
        "{orgs} organizations x {REPOS} repositories x {MEMBERS} members, one installation each; {checks} view checks in a virtual hour, organizations Zipf (s = 1)"
    );
    println!(
        "replicas | requests | charged | requests/1k | charged/1k | App JWT requests | most one installation spent"
    );
    let mut per_k = Vec::new();
    for replicas in [1, 4] {
        let r = rt.block_on(run(&spec, &world, checks, replicas));
        let k = |n: u64| n as f64 * 1000.0 / checks as f64;
        println!(
            "{replicas:>8} | {:>8} | {:>7} | {:>11.2} | {:>10.3} | {:>16} | {} of {HOURLY} ({:.1} %)",
            r.requests,
            r.charged,
            k(r.requests),
            k(r.charged),
            r.app_requests,
            r.most_spent,
            r.most_spent as f64 * 100.0 / HOURLY as f64
        );
        println!(
            "{:>8}   by route: repositories {}, rosters {}, the App's own {}, other {}",
            "", r.routes[0], r.routes[1], r.routes[2], r.routes[3]
        );
        per_k.push(k(r.requests));
    }
    println!(
        "requests per 1,000 checks, 4 replicas over 1: {:.2}x (target at most 1.2x)",
        per_k[1] / per_k[0].max(f64::MIN_POSITIVE)
    );
}
