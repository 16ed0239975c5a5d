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
//! Then `apps_for` over the 100 apps, cold and warm; then a churn variant: 100,000 checks an hour
//! while one user joins or leaves a repository's team every virtual minute, with the
//! `membership` webhook delivered and without, reporting how long each change took to show in a
//! check (with webhooks: at the next check; without: within `no_role_ttl` for an addition,
//! `role_ttl` for a removal, or the run fails).
//!
//! Run: `cargo bench --features world --bench github_budget` (`-- --quick`: up to 10,000
//! checks an hour).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "bench code: a failure stops the run")]

#[path = "common/draws.rs"]
mod draws;

use draws::{Rng, Zipf};
use ghauthz::CheckRequest;
use std::sync::Arc;
use std::time::Duration;

use ghauthz::store::{MemoryStore, prelude::*};
use ghauthz::world::{MockGithub, World};
use ghauthz::{AppId, Authorizer, CacheConfig, Capability, Clock as _, ManualClock, Principal, Role, WebhookSecret};

const USERS: usize = 1000;
const REPOS: usize = 100;
const TEAM: usize = 20;

/// Who holds what in the workload's world: each repository's `write` team and its admin.
#[derive(Clone)]
struct Spec {
    teams: Vec<Vec<usize>>,
    admins: Vec<usize>,
}

impl Spec {
    fn new() -> Self {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let teams = (0..REPOS).map(|_| (0..TEAM).map(|_| rng.below(USERS)).collect()).collect();
        let admins = (0..REPOS).map(|_| rng.below(USERS)).collect();
        Spec { teams, admins }
    }

    /// The workload's world (see the file's doc).
    fn world(&self) -> World {
        let mut t = String::from("version = 1\nnow = \"2026-11-22T10:00:00Z\"\n");
        for u in 0..USERS {
            t.push_str(&format!("[[users]]\nid = {}\nlogin = \"u{u}\"\n", u + 1));
        }
        let members: Vec<String> = (0..USERS).map(|u| format!("\"u{u}\"")).collect();
        t.push_str(&format!(
            "[[orgs]]\nid = 5000\nlogin = \"org\"\nmembers = [{}]\nbase_permission = \"read\"\n",
            members.join(", ")
        ));
        for (r, team) in self.teams.iter().enumerate() {
            let team: Vec<String> = team.iter().map(|u| format!("\"u{u}\"")).collect();
            t.push_str(&format!(
                "[[orgs.teams]]\nid = {}\nslug = \"t{r}\"\nmembers = [{}]\nrepos = {{ r{r} = \"write\" }}\n",
                7000 + r,
                team.join(", ")
            ));
        }
        for (r, admin) in self.admins.iter().enumerate() {
            t.push_str(&format!(
                "[[repos]]\nid = {}\nowner = \"org\"\nname = \"r{r}\"\nprivate = true\nroles = {{ u{admin} = \"admin\" }}\n",
                1000 + r,
            ));
            t.push_str(&format!(
                "[[apps]]\nid = \"a{r}\"\nrepo = \"org/r{r}\"\nrepo_id = {}\nbranch = \"main\"\nmain_file = \"app.py\"\nvisibility = \"private\"\ndeployed_by = \"u0\"\n",
                1000 + r
            ));
        }
        World::from_toml_str(&t, ".").unwrap()
    }
}

struct Run {
    requests: u64,
    charged: u64,
    undecided: u64,
}

const SECRET: &str = "budget-bench-secret";

/// An authorizer on `world`'s mock GitHub, with the mock's clock, every app in its store, and
/// the webhook secret [`SECRET`].
async fn authorizer(world: &World, cache: CacheConfig) -> (Authorizer, MockGithub, ManualClock) {
    let clock = ManualClock::new(world.now().unwrap());
    let mock = MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone())).await.unwrap();
    let store = Arc::new(MemoryStore::new());
    store.seed_once(&world.app_records(), clock.now()).await.unwrap();
    let authz = Authorizer::builder(mock.github_config())
        .cache(cache)
        .clock(Arc::new(clock.clone()))
        .store(store)
        .webhook_secret(WebhookSecret::new(SECRET.into()).unwrap())
        .build()
        .unwrap();
    (authz, mock, clock)
}

/// Whether the default policy lets user `u` view repository `r`'s app in `world`.
fn may_view(world: &World, u: usize, r: usize) -> bool {
    let role = world.effective_role(world.users()[u].id, &world.repos()[r]).map(|g| g.role);
    role.is_some_and(|role| role >= Role::Write)
}

/// `checks` view checks over one virtual hour, from rosters or per user.
async fn run(world: &World, checks: usize, rosters: bool) -> Run {
    let (authz, mock, clock) = authorizer(world, CacheConfig::default().with_rosters(rosters)).await;
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
        match authz.check(&CheckRequest::new(&principals[u], &AppId(format!("a{r}")), Capability::View)).await {
            Ok(d) => assert_eq!(d.is_allowed(), may_view(world, u, r), "u{u} on r{r}: {d:?}"),
            Err(_) => undecided += 1,
        }
    }
    Run { requests: mock.total_requests(), charged: mock.charged_requests(), undecided }
}

/// `apps_for` over the 100 apps from rosters: requests for the first user (cold), then for the
/// next ten users.
async fn apps_for(world: &World) -> (u64, u64) {
    let (authz, mock, _clock) = authorizer(world, CacheConfig::default()).await;
    let user = |u: usize| Principal::github(world.user(&format!("u{u}")).unwrap());
    let listed = authz.apps_for(&user(0), Capability::View).await.unwrap();
    let want = (0..REPOS).filter(|r| may_view(world, 0, *r)).count();
    assert_eq!(listed.len(), want, "apps_for equals the world's answer");
    let cold = mock.total_requests();
    for u in 1..=10 {
        let listed = authz.apps_for(&user(u), Capability::View).await.unwrap();
        assert_eq!(listed.len(), (0..REPOS).filter(|r| may_view(world, u, *r)).count());
    }
    (cold, mock.total_requests() - cold)
}

/// What the churn variant saw: how long each change took to show in a check (virtual
/// seconds), for members added and members removed, and the budget.
struct Churn {
    added: Vec<u64>,
    removed: Vec<u64>,
    charged: u64,
    checks: u64,
    undecided: u64,
}

/// The churn variant: 100,000 checks an hour from rosters, and every virtual minute one user
/// joins or leaves a repository's `write` team on GitHub (with the `membership` delivery, or
/// without). That user's check on that app is then repeated every virtual second until it
/// shows the change. Checks of (user, repository) pairs a change touched are not compared with
/// the world until they show it; every other check is.
async fn churn(spec: &Spec, webhook: bool) -> Churn {
    let mut spec = spec.clone();
    let world = spec.world();
    let (authz, mock, clock) = authorizer(&world, CacheConfig::default()).await;
    let principals: Vec<Principal> =
        world.users().iter().map(|u| Principal::github(world.user(&u.login).unwrap())).collect();
    let (users, apps) = (Zipf::new(USERS), Zipf::new(REPOS));
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut current = world;
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut checks, mut undecided) = (0u64, 0u64);
    // Changes not shown yet: (user, repository, allowed now, virtual second of the change).
    let mut pending: Vec<(usize, usize, bool, u64)> = Vec::new();
    let mut touched = std::collections::HashSet::new();
    let check = |u: usize, r: usize| {
        let (authz, p) = (authz.clone(), principals[u].clone());
        async move { authz.check(&CheckRequest::new(&p, &AppId(format!("a{r}")), Capability::View)).await }
    };
    // An hour of traffic and changes, then as long as the last changes take to show (at most
    // ten minutes).
    for second in 0..4200u64 {
        let hour = second < 3600;
        if !hour && pending.is_empty() {
            break;
        }
        if second > 0 {
            clock.advance(Duration::from_secs(1));
        }
        if hour && second % 60 == 30 {
            // A hot repository; a user on neither side of it already pending.
            let r = apps.draw(&mut rng);
            let join = second % 120 == 30;
            let u = loop {
                let u = users.draw(&mut rng);
                let on_team = spec.teams[r].contains(&u);
                if spec.admins[r] != u && on_team != join && !pending.iter().any(|p| p.0 == u && p.1 == r) {
                    break u;
                }
            };
            // The user's current answer is cached before the change.
            let _ = check(u, r).await;
            if join {
                spec.teams[r].push(u);
            } else {
                spec.teams[r].retain(|m| *m != u);
            }
            current = spec.world();
            mock.set_world(current.clone());
            if webhook {
                let body = serde_json::json!({
                    "action": if join { "added" } else { "removed" },
                    "scope": "team",
                    "member": {"login": format!("u{u}"), "id": u + 1, "type": "User"},
                    "team": {"id": 7000 + r, "slug": format!("t{r}"), "name": format!("t{r}")},
                    "organization": {"login": "org", "id": 5000},
                    "sender": {"login": "u0", "id": 1, "type": "User"}
                })
                .to_string();
                let mut headers = http::HeaderMap::new();
                headers.insert("x-github-event", "membership".parse().unwrap());
                headers.insert("x-github-delivery", format!("churn-{second}").parse().unwrap());
                headers.insert("x-hub-signature-256", signature(body.as_bytes()).parse().unwrap());
                authz.handle_webhook(&headers, body.as_bytes()).await.unwrap();
            }
            pending.push((u, r, join, second));
            touched.insert((u, r));
        }
        // The changed users' checks, until each shows its change.
        let mut still = Vec::new();
        for (u, r, want, at) in pending.drain(..) {
            checks += 1;
            match check(u, r).await {
                Ok(d) if d.is_allowed() == want => {
                    if want { &mut added } else { &mut removed }.push(second - at);
                    touched.remove(&(u, r));
                }
                Ok(_) => still.push((u, r, want, at)),
                Err(_) => {
                    undecided += 1;
                    still.push((u, r, want, at));
                }
            }
        }
        pending = still;
        // 100,000 checks an hour: about 28 a second.
        for _ in 0..if hour { 28 } else { 0 } {
            let (u, r) = (users.draw(&mut rng), apps.draw(&mut rng));
            checks += 1;
            match check(u, r).await {
                Ok(d) if !touched.contains(&(u, r)) => {
                    assert_eq!(d.is_allowed(), may_view(&current, u, r), "u{u} on r{r}: {d:?}")
                }
                Ok(_) => {}
                Err(_) => undecided += 1,
            }
        }
    }
    assert!(pending.is_empty(), "every change showed within ten minutes of the hour's end");
    Churn { added, removed, charged: mock.charged_requests(), checks, undecided }
}

/// `sha256=` and the HMAC-SHA256 of `body` with [`SECRET`], as GitHub signs a delivery.
fn signature(body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!("sha256={}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn seconds(v: &[u64]) -> String {
    let mut v = v.to_vec();
    v.sort_unstable();
    match (v.get(v.len() / 2), v.last()) {
        (Some(median), Some(max)) => format!("{} changes, median {median} s, max {max} s", v.len()),
        _ => "none".into(),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let spec = Spec::new();
    let world = spec.world();
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
    let (cold, warm) = rt.block_on(apps_for(&world));
    println!("apps_for over {REPOS} apps from rosters: {cold} requests for the first user, {warm} for the next ten");
    assert!(cold <= REPOS as u64 + 1 && warm == 0, "at most 101 cold, none warm");
    for webhook in [true, false] {
        let c = rt.block_on(churn(&spec, webhook));
        println!(
            "churn, {}: added: {}; removed: {}; {} checks, {:.2} charged/1k, {} undecided",
            if webhook { "webhooks delivered" } else { "no webhooks" },
            seconds(&c.added),
            seconds(&c.removed),
            c.checks,
            c.charged as f64 * 1000.0 / c.checks as f64,
            c.undecided
        );
        assert_eq!(c.undecided, 0, "every check decided");
        let worst = c.added.iter().chain(&c.removed).copied().max().unwrap_or(0);
        if webhook {
            assert_eq!(worst, 0, "with webhooks, a change shows at the next check after its delivery");
        } else {
            assert!(c.added.iter().all(|s| *s <= 60), "an addition within no_role_ttl");
            assert!(c.removed.iter().all(|s| *s <= 300), "a removal within role_ttl");
        }
    }
}
