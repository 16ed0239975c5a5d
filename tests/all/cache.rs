//! Cache semantics: coalescing, lifetimes from fetch, revalidation, invalidation.
#![cfg(feature = "world")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use crate::common;
use ghauthz::CheckRequest;

use std::time::Duration;

use ghauthz::{Capability, Invalidation, OwnerId, RepoId, Source, UserId};

/// The roster every user's check on the dashboard repository is answered from.
const DASH_ROSTER: &str = "/repos/acme/dashboard/collaborators";
const DASH_REPO: &str = "/repos/acme/dashboard";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_on_one_key_make_one_request() {
    let env = common::env(common::fixture("acme.toml")).await;
    concurrent_misses(&env, DASH_ROSTER).await;
    let env = common::env_with(common::fixture("acme.toml"), common::per_user()).await;
    concurrent_misses(&env, "/repos/acme/dashboard/collaborators/carol/permission").await;
}

async fn concurrent_misses(env: &common::Env, path: &str) {
    let (carol, dash) = (env.user("carol"), env.app("dash"));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (authz, carol, dash) = (env.authz.clone(), carol.clone(), dash.clone());
        tasks.spawn(async move { authz.check(&CheckRequest::new(&carol, &dash, Capability::View)).await });
    }
    let mut allowed = 0;
    while let Some(r) = tasks.join_next().await {
        allowed += usize::from(r.unwrap().unwrap().is_allowed());
    }
    assert_eq!(allowed, 100);
    assert_eq!(env.mock.requests(path), 1, "one request for 100 concurrent misses");
    assert_eq!(env.mock.requests(DASH_REPO), 1, "one repository lookup");
    let stats = env.authz.stats();
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.misses + stats.coalesced_waits + stats.hits, 100, "{stats:?}");
}

#[tokio::test]
async fn a_dropped_waiter_cancels_nothing_for_the_others() {
    let env = common::env(common::fixture("acme.toml")).await;
    let (carol, dash) = (env.user("carol"), env.app("dash"));
    // A check dropped before it finishes...
    let dropped = tokio::time::timeout(
        Duration::from_nanos(1),
        env.authz.check(&CheckRequest::new(&carol, &dash, Capability::View)),
    )
    .await;
    drop(dropped);
    // ...leaves the key usable for everyone else.
    let d = env.authz.check(&CheckRequest::new(&carol, &dash, Capability::View)).await.unwrap();
    assert!(d.is_allowed());
    assert!(env.mock.requests(DASH_ROSTER) <= 2);
}

#[tokio::test]
async fn lifetime_counts_from_the_fetch_and_hits_do_not_extend_it() {
    let env = common::env(common::fixture("acme.toml")).await;
    let (carol, dash) = (env.user("carol"), env.app("dash"));
    let first = env.authz.check(&CheckRequest::new(&carol, &dash, Capability::View)).await.unwrap();
    assert_eq!(first.source(), Source::Github);
    let remaining = env.mock.rate_limit_remaining();
    for minute in 1..=4 {
        env.advance_secs(60);
        let d = env.authz.check(&CheckRequest::new(&carol, &dash, Capability::View)).await.unwrap();
        assert_eq!(d.source(), Source::Cache, "minute {minute}");
        assert_eq!(d.age(), Duration::from_secs(60 * minute));
    }
    assert_eq!(env.mock.requests(DASH_ROSTER), 1);
    env.advance_secs(61); // 5 min 1 s after the fetch, however often it was read
    let d = env.authz.check(&CheckRequest::new(&carol, &dash, Capability::View)).await.unwrap();
    assert_eq!(d.source(), Source::Github, "an expired fact is revalidated");
    assert!(d.is_allowed());
    assert_eq!(env.mock.requests(DASH_ROSTER), 2);
    assert_eq!(env.authz.stats().revalidated_not_modified, 2, "repository and roster both answered 304");
    assert_eq!(env.mock.rate_limit_remaining(), remaining, "a 304 spends no rate limit");
    let again = env.authz.check(&CheckRequest::new(&carol, &dash, Capability::View)).await.unwrap();
    assert_eq!((again.source(), again.age()), (Source::Cache, Duration::ZERO), "the 304 renewed the fact");
}

#[tokio::test]
async fn no_role_lives_one_minute() {
    let env = common::env(common::fixture("acme.toml")).await;
    let (zed, dash) = (env.user("zed"), env.app("dash"));
    env.authz.check(&CheckRequest::new(&zed, &dash, Capability::View)).await.unwrap();
    env.advance_secs(59);
    assert_eq!(
        env.authz.check(&CheckRequest::new(&zed, &dash, Capability::View)).await.unwrap().source(),
        Source::Cache
    );
    env.advance_secs(2);
    assert_eq!(
        env.authz.check(&CheckRequest::new(&zed, &dash, Capability::View)).await.unwrap().source(),
        Source::Github
    );
}

#[tokio::test]
async fn deploy_revalidates_a_two_minute_old_fact_first() {
    let env = common::env(common::fixture("acme.toml")).await;
    let (erin, dash) = (env.user("erin"), env.app("dash"));
    env.authz.check(&CheckRequest::new(&erin, &dash, Capability::View)).await.unwrap();
    env.advance_secs(120);
    let view = env.authz.check(&CheckRequest::new(&erin, &dash, Capability::View)).await.unwrap();
    assert_eq!((view.source(), view.age()), (Source::Cache, Duration::from_secs(120)));
    let remaining = env.mock.rate_limit_remaining();
    let deploy = env.authz.check(&CheckRequest::new(&erin, &dash, Capability::Deploy)).await.unwrap();
    assert!(deploy.is_allowed());
    assert_eq!((deploy.source(), deploy.age()), (Source::Github, Duration::ZERO));
    assert_eq!(env.mock.requests(DASH_ROSTER), 2, "a conditional request before deciding");
    assert_eq!(env.authz.stats().revalidated_not_modified, 2);
    assert_eq!(env.mock.rate_limit_remaining(), remaining);
    // Within 60 s, deploy answers from the cache.
    env.advance_secs(30);
    assert_eq!(
        env.authz.check(&CheckRequest::new(&erin, &dash, Capability::Delete)).await.unwrap().source(),
        Source::Cache
    );
}

#[tokio::test]
async fn revalidation_sees_a_removed_role() {
    let env = common::env(common::fixture("acme.toml")).await;
    let (carol, dash) = (env.user("carol"), env.app("dash"));
    assert!(env.authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap().is_allowed());
    env.mock.set_world(common::acme_without_carol_on_dashboard());
    env.advance_secs(301);
    let d = env.authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap();
    assert!(!d.is_allowed(), "{d:?}");
    assert_eq!(env.authz.stats().revalidated_modified, 1, "the permission body changed");
}

#[tokio::test]
async fn invalidation_by_user_sends_that_user_upstream_and_no_one_else() {
    let env = common::env(common::fixture("acme.toml")).await;
    let (carol, erin, dash) = (env.user("carol"), env.user("erin"), env.app("dash"));
    env.authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap();
    env.authz.check(&CheckRequest::new(&erin, &dash, Capability::Edit)).await.unwrap();
    env.mock.set_world(common::acme_without_carol_on_dashboard());
    env.authz.invalidate_local(Invalidation::User(UserId(3)));
    let d = env.authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap();
    assert_eq!((d.source(), d.is_allowed()), (Source::Github, false), "effective for the next check");
    assert_eq!(env.mock.requests(DASH_ROSTER), 2);
    assert_eq!(
        env.authz.check(&CheckRequest::new(&erin, &dash, Capability::Edit)).await.unwrap().source(),
        Source::Cache
    );
}

#[tokio::test]
async fn invalidation_by_repository_and_owner_and_all() {
    let env = common::env(common::fixture("acme.toml")).await;
    let (carol, alice) = (env.user("carol"), env.user("alice"));
    let (dash, notes) = (env.app("dash"), env.app("notes"));
    let warm = || async {
        env.authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap();
        env.authz.check(&CheckRequest::new(&alice, &notes, Capability::Edit)).await.unwrap();
    };
    let sources = || async {
        (
            env.authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap().source(),
            env.authz.check(&CheckRequest::new(&alice, &notes, Capability::Edit)).await.unwrap().source(),
        )
    };
    warm().await;
    env.authz.invalidate_local(Invalidation::Repo(RepoId(101)));
    assert_eq!(sources().await, (Source::Github, Source::Cache));
    env.authz.invalidate_local(Invalidation::Owner(OwnerId(5000)));
    assert_eq!(sources().await, (Source::Github, Source::Cache), "acme's repositories only");
    env.authz.invalidate_local(Invalidation::Owner(OwnerId(1)));
    assert_eq!(sources().await, (Source::Cache, Source::Github), "alice's repositories only");
    env.authz.invalidate_local(Invalidation::All);
    assert_eq!(sources().await, (Source::Github, Source::Github));
}

#[tokio::test]
async fn an_app_moved_to_other_coordinates_does_not_reuse_the_old_fact() {
    let env = common::env(common::fixture("acme.toml")).await;
    let carol = env.user("carol");
    let dash = env.app("dash");
    env.authz.check(&CheckRequest::new(&carol, &dash, Capability::View)).await.unwrap();
    // Same repository id, other coordinates: the fact was verified at acme/dashboard only.
    let moved = ghauthz::App::new(dash.id().clone(), "acme/legacy".parse().unwrap(), RepoId(101), dash.visibility());
    let d = env.authz.check(&CheckRequest::new(&carol, &moved, Capability::View)).await.unwrap();
    assert_eq!((d.source(), d.reason().kind()), (Source::Github, "repo_replaced"));
}

#[tokio::test]
async fn hits_are_counted() {
    let env = common::env(common::fixture("acme.toml")).await;
    let (carol, dash) = (env.user("carol"), env.app("dash"));
    for _ in 0..5 {
        env.authz.check(&CheckRequest::new(&carol, &dash, Capability::View)).await.unwrap();
    }
    let s = env.authz.stats();
    assert_eq!((s.misses, s.hits), (1, 4));
    assert!(env.authz.check_cached(&CheckRequest::new(&carol, &dash, Capability::View)).is_some());
    assert!(
        env.authz.check_cached(&CheckRequest::new(&env.user("erin"), &dash, Capability::View)).is_none(),
        "a miss is not answered synchronously"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_during_a_request_keeps_its_answer_out_of_the_cache() {
    let env = common::env(common::fixture("acme.toml")).await;
    let (carol, dash) = (env.user("carol"), env.app("dash"));
    // Warm the shared repository lookup so that carol's check sends one request only.
    env.authz.check(&CheckRequest::new(&env.user("erin"), &dash, Capability::View)).await.unwrap();
    env.mock.set_response_delay(Duration::from_millis(300));
    let in_flight = {
        let (authz, carol, dash) = (env.authz.clone(), carol.clone(), dash.clone());
        tokio::spawn(async move { authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The role is removed on GitHub and the webhook arrives while the old answer is in flight.
    env.mock.set_world(common::acme_without_carol_on_dashboard());
    env.authz.invalidate_local(Invalidation::User(UserId(3)));
    let old = in_flight.await.unwrap().unwrap();
    assert!(old.is_allowed(), "the check that started before the invalidation gets its answer");
    env.mock.set_response_delay(Duration::ZERO);
    let next = env.authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap();
    assert_eq!((next.source(), next.is_allowed()), (Source::Github, false), "but no later check is served it");
}

/// The cache holds at most its capacity: what moka drops to stay within it is not served from
/// the front map or the hit table either.
#[tokio::test]
async fn capacity_bounds_what_is_served() {
    use std::sync::Arc;

    use ghauthz::store::prelude::*;
    use ghauthz::{AppId, Clock as _};
    const CAPACITY: u64 = 4;
    let world = common::fixture("acme.toml");
    let clock = ghauthz::ManualClock::new(world.now().unwrap());
    let mock = ghauthz::world::MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone())).await.unwrap();
    let store = Arc::new(ghauthz::store::MemoryStore::new());
    store.seed_once(&world.app_records(), clock.now()).await.unwrap();
    let authz = ghauthz::Authorizer::builder(mock.github_config())
        .clock(Arc::new(clock))
        .store(store)
        .cache(ghauthz::CacheConfig::default().with_capacity(CAPACITY))
        .build()
        .unwrap();
    let logins = ["alice", "bob", "carol", "dave", "erin", "frank", "olga", "mallory", "rick", "tina", "zed"];
    let apps = ["notes", "dash", "site", "analytics"].map(|a| world.app(a).unwrap());
    let pairs: Vec<_> = logins
        .iter()
        .flat_map(|l| apps.iter().map(|a| (ghauthz::Principal::github(world.user(l).unwrap()), a.clone())))
        .collect();
    // Every check twice, so that each fact is copied to the hit table too.
    for (p, a) in &pairs {
        authz.check(&CheckRequest::new(p, a, Capability::Edit)).await.unwrap();
        authz.check_cached(&CheckRequest::new(p, a, Capability::Edit));
    }
    // moka keeps to its capacity when it catches up with its writes: make enough of them, on one
    // key, without any invalidation (which would retire every hit-table slot on its own).
    let (carol, dash) = (ghauthz::Principal::github(world.user("carol").unwrap()), AppId("dash".into()));
    for _ in 0..1000 {
        authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit).fresh()).await.unwrap();
    }
    let served =
        pairs.iter().filter(|(p, a)| authz.check_cached(&CheckRequest::new(p, a, Capability::Edit)).is_some()).count();
    let entries = authz.stats().entries;
    assert!(entries <= CAPACITY, "{entries} entries");
    assert!(served as u64 <= CAPACITY, "{served} of {} pairs served from a cache of {CAPACITY}", pairs.len());
}

/// `Consistency::Fresh` rests on nothing cached: the fact is revalidated first (a conditional
/// request, 304 here), and the next ordinary check is a hit again.
#[tokio::test]
async fn a_fresh_check_revalidates_the_cached_fact_first() {
    use std::sync::Arc;

    use ghauthz::store::prelude::*;
    use ghauthz::{AppId, Clock as _};
    let world = common::fixture("acme.toml");
    let clock = ghauthz::ManualClock::new(world.now().unwrap());
    let mock = ghauthz::world::MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone())).await.unwrap();
    let store = Arc::new(ghauthz::store::MemoryStore::new());
    store.seed_once(&world.app_records(), clock.now()).await.unwrap();
    let authz = ghauthz::Authorizer::builder(mock.github_config()).clock(Arc::new(clock)).store(store).build().unwrap();
    let (carol, dash) = (ghauthz::Principal::github(world.user("carol").unwrap()), AppId("dash".into()));
    assert_eq!(
        authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap().source(),
        Source::Github
    );
    assert_eq!(authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap().source(), Source::Cache);
    let requests = mock.requests(DASH_ROSTER);
    let fresh = authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit).fresh()).await.unwrap();
    assert_eq!((fresh.is_allowed(), fresh.source()), (true, Source::Github));
    assert_eq!(mock.requests(DASH_ROSTER), requests + 1, "asked GitHub");
    assert!(authz.stats().revalidated_not_modified >= 1, "conditionally: a 304");
    assert_eq!(authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap().source(), Source::Cache);
}

/// The futures a hit is served through stay a few words: the slow path's state (the store, GitHub,
/// the audit) is boxed, and allocated only on a miss. A future of thousands of bytes costs its
/// copy on every check.
#[tokio::test]
async fn the_futures_of_the_request_path_are_small() {
    let env = common::env(common::fixture("acme.toml")).await;
    let (carol, dash, id) = (env.user("carol"), env.app("dash"), ghauthz::AppId("dash".into()));
    let sizes = [
        ("check", std::mem::size_of_val(&env.authz.check(&CheckRequest::new(&carol, &dash, Capability::View)))),
        ("check_app", std::mem::size_of_val(&env.authz.check(&CheckRequest::new(&carol, &id, Capability::View)))),
        ("check_session", std::mem::size_of_val(&env.authz.check(&CheckRequest::session("t", &id, Capability::View)))),
    ];
    for (name, size) in sizes {
        assert!(size <= 256, "{name}'s future is {size} bytes");
    }
}

/// The reason's `detail`, as `ghauthz check` prints it.
fn detail(d: &ghauthz::Decision) -> serde_json::Value {
    serde_json::to_value(d.reason()).unwrap()["detail"].clone()
}

/// An account learnt by id (`GET /user/{account_id}`) is kept until an invalidation names its
/// user, then asked for again (a rename is seen); one naming another user leaves it.
#[tokio::test]
async fn an_invalidation_naming_a_user_forgets_the_account_learnt_by_id() {
    let env = common::env(common::fixture("acme.toml")).await;
    let dash = env.app("dash");
    let (carol, erin) = (env.world.user("carol").unwrap().id, env.world.user("erin").unwrap().id);
    let path = format!("/user/{}", carol.0);
    let by_id = |login| CheckRequest::github_id(carol, Some(login), &dash, Capability::Edit);
    assert!(env.authz.check(&by_id("carol")).await.unwrap().is_allowed());
    assert_eq!(env.mock.requests(&path), 1);
    // carol is renamed on GitHub.
    env.mock.set_world(common::acme_with(|t| t.replace("carol", "carolyn")));
    env.authz.invalidate_local(Invalidation::UserOnRepo(erin, RepoId(101)));
    assert!(env.authz.check(&by_id("carol")).await.unwrap().is_allowed(), "another user's: the account is kept");
    assert_eq!(env.mock.requests(&path), 1);
    env.authz.invalidate_local(Invalidation::UserOnRepo(carol, RepoId(101)));
    let d = env.authz.check(&by_id("carol")).await.unwrap();
    assert_eq!((d.is_allowed(), detail(&d)), (false, serde_json::json!("login_mismatch")), "asked again: {d:?}");
    assert_eq!(env.mock.requests(&path), 2);
    assert!(env.authz.check(&by_id("carolyn")).await.unwrap().is_allowed());
    assert_eq!(env.mock.requests(&path), 2, "kept again");
}

/// An account being asked for when an invalidation naming its user arrives is not kept: the
/// answer may predate the change the invalidation announces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_asked_for_across_an_invalidation_is_not_kept() {
    let env = common::env(common::fixture("acme.toml")).await;
    let dash = env.app("dash");
    let carol = env.world.user("carol").unwrap().id;
    let path = format!("/user/{}", carol.0);
    env.mock.set_response_delay(Duration::from_millis(300));
    let asking = {
        let (authz, dash) = (env.authz.clone(), dash.clone());
        tokio::spawn(async move { authz.check(&CheckRequest::github_id(carol, None, &dash, Capability::Edit)).await })
    };
    for _ in 0..200 {
        if env.mock.requests(&path) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(env.mock.requests(&path), 1, "the account is being asked for");
    env.authz.invalidate_local(Invalidation::User(carol));
    assert!(asking.await.unwrap().unwrap().is_allowed());
    env.mock.set_response_delay(Duration::ZERO);
    env.authz.check(&CheckRequest::github_id(carol, None, &dash, Capability::Edit)).await.unwrap();
    assert_eq!(env.mock.requests(&path), 2, "asked again");
}
