//! GitHub's budget: requests, and requests charged against the rate limit, per 1,000 checks over
//! one virtual hour, per-user lookups beside repository rosters in one run.
//!
//! The workload: one organization (base permission `read`) of 1,000 members and 100 private
//! repositories, each with a 20-member `write` team and one direct admin, one app per
//! repository; users and apps each drawn Zipf (s = 1); `view` checks by app id with the default
//! cache settings, spread evenly over one hour of the authorizer's and the mock's clock. Every
//! decision is checked against the world's own answer (`World::effective_role` and the default
//! policy: a private app's `view` needs `write`); a mismatch or an undecided check fails the run.
//!
//! Run: `cargo bench --features world,sqlite --bench github_budget` (`-- --quick`: up to 10,000
//! checks an hour).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "bench code: a failure stops the run")]

use std::sync::Arc;
use std::time::Duration;

use ghauthz::store::{MemoryStore, Store as _};
use ghauthz::world::{MockGithub, World};
use ghauthz::{AppId, Authorizer, CacheConfig, Capability, Clock as _, ManualClock, Principal, Role};

const USERS: usize = 1000;
const REPOS: usize = 100;
const TEAM: usize = 20;

/// The workload's world (see the file's doc).
fn world() -> World {
    let mut t = String::from("version = 1\nnow = \"2026-11-22T10:00:00Z\"\n");
    for u in 0..USERS {
        t.push_str(&format!("[[users]]\nid = {}\nlogin = \"u{u}\"\n", u + 1));
    }
    let members: Vec<String> = (0..USERS).map(|u| format!("\"u{u}\"")).collect();
    t.push_str(&format!(
        "[[orgs]]\nid = 5000\nlogin = \"org\"\nmembers = [{}]\nbase_permission = \"read\"\n",
        members.join(", ")
    ));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for r in 0..REPOS {
        let team: Vec<String> = (0..TEAM).map(|_| format!("\"u{}\"", rng.below(USERS))).collect();
        t.push_str(&format!(
            "[[orgs.teams]]\nid = {}\nslug = \"t{r}\"\nmembers = [{}]\nrepos = {{ r{r} = \"write\" }}\n",
            7000 + r,
            team.join(", ")
        ));
    }
    for r in 0..REPOS {
        t.push_str(&format!(
            "[[repos]]\nid = {}\nowner = \"org\"\nname = \"r{r}\"\nprivate = true\nroles = {{ u{} = \"admin\" }}\n",
            1000 + r,
            rng.below(USERS)
        ));
        t.push_str(&format!(
            "[[apps]]\nid = \"a{r}\"\nrepo = \"org/r{r}\"\nrepo_id = {}\nbranch = \"main\"\nmain_file = \"app.py\"\nvisibility = \"private\"\ndeployed_by = \"u0\"\n",
            1000 + r
        ));
    }
    World::from_toml_str(&t, ".").unwrap()
}

/// xorshift64*: a fixed sequence, the same in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws 0..n with probability proportional to 1 / (k + 1) (Zipf, s = 1).
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize) -> Self {
        let mut sum = 0.0;
        Zipf(
            (0..n)
                .map(|k| {
                    sum += 1.0 / (k + 1) as f64;
                    sum
                })
                .collect(),
        )
    }

    fn draw(&self, rng: &mut Rng) -> usize {
        let x = rng.unit() * self.0.last().copied().unwrap_or(0.0);
        self.0.partition_point(|c| *c < x).min(self.0.len() - 1)
    }
}

struct Run {
    requests: u64,
    charged: u64,
    undecided: u64,
}

/// `checks` view checks over one virtual hour, from rosters or per user.
async fn run(world: &World, checks: usize, rosters: bool) -> Run {
    let clock = ManualClock::new(world.now().unwrap());
    let mock = MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone())).await.unwrap();
    let store = Arc::new(MemoryStore::new());
    store.seed_once(&world.app_records(), clock.now()).await.unwrap();
    let authz = Authorizer::builder(mock.github_config())
        .cache(CacheConfig::default().with_rosters(rosters))
        .clock(Arc::new(clock.clone()))
        .store(store)
        .build()
        .unwrap();
    let principals: Vec<Principal> =
        world.users().iter().map(|u| Principal::github(world.user(&u.login).unwrap())).collect();
    let (users, apps) = (Zipf::new(USERS), Zipf::new(REPOS));
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let step = Duration::from_secs(3600).as_nanos() / checks as u128;
    let mut undecided = 0;
    for i in 0..checks {
        if i > 0 {
            clock.advance(Duration::from_nanos(u64::try_from(step).unwrap()));
        }
        let (u, r) = (users.draw(&mut rng), apps.draw(&mut rng));
        let user = &world.users()[u];
        match authz.check_app(&principals[u], &AppId(format!("a{r}")), Capability::View).await {
            Ok(d) => {
                let role = world.effective_role(user.id, &world.repos()[r]).map(|g| g.role);
                let want = role.is_some_and(|role| role >= Role::Write);
                assert_eq!(d.is_allowed(), want, "u{u} on r{r} ({role:?}): {d:?}");
            }
            Err(_) => undecided += 1,
        }
    }
    Run { requests: mock.total_requests(), charged: mock.charged_requests(), undecided }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let world = world();
    let scales: &[usize] = if quick { &[1_000, 10_000] } else { &[1_000, 10_000, 100_000, 1_000_000] };
    println!("checks/hour | mode     | requests | charged | requests/1k | charged/1k | undecided");
    for &checks in scales {
        // Per-user lookups at a million checks spend past any budget; they are shown to 100,000.
        let modes: &[bool] = if checks > 100_000 { &[true] } else { &[false, true] };
        let mut per_user_charged = None;
        for &rosters in modes {
            let r = rt.block_on(run(&world, checks, rosters));
            let per_k = |n: u64| n as f64 * 1000.0 / checks as f64;
            println!(
                "{checks:>11} | {:<8} | {:>8} | {:>7} | {:>11.1} | {:>10.2} | {}",
                if rosters { "rosters" } else { "per-user" },
                r.requests,
                r.charged,
                per_k(r.requests),
                per_k(r.charged),
                r.undecided
            );
            assert_eq!(r.undecided, 0, "every check decided");
            match (rosters, per_user_charged) {
                (false, _) => per_user_charged = Some(r.charged),
                (true, Some(per_user)) => {
                    println!(
                        "{:>11}   rosters charge {:.1}x fewer requests than per-user lookups",
                        "",
                        per_user as f64 / r.charged.max(1) as f64
                    )
                }
                (true, None) => {}
            }
        }
    }
}
