//! Repository rosters (`CacheConfig::with_rosters`): one paged roster answers every user's check
//! on a repository in installation and App mode, with the decisions per-user lookups give.
#![cfg(feature = "world")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use crate::common;
use ghauthz::CheckRequest;

use ghauthz::{App, CacheConfig, Capability, Invalidation, Lookup, Reason, RepoId};

async fn env(world: ghauthz::world::World, rosters: bool) -> common::Env {
    let opts = common::Opts { cache: CacheConfig::default().with_rosters(rosters), ..Default::default() };
    common::env_with(world, opts).await
}

/// Where a check of every user of `world` on each of `apps`, for every capability, decides
/// otherwise from rosters than from per-user lookups: allowed on one side and not the other, or
/// allowed by another role; with what each side said. Also that the rosters' side asked no
/// per-user question.
async fn disagreements(world: &ghauthz::world::World, apps: &[App]) -> Vec<String> {
    let (rosters, per_user) = (env(world.clone(), true).await, env(world.clone(), false).await);
    let mut found = Vec::new();
    for app in apps {
        for user in world.users() {
            let p = rosters.user(&user.login);
            for cap in [Capability::View, Capability::Edit, Capability::Deploy, Capability::Delete] {
                let a = rosters.authz.check(&CheckRequest::new(&p, app, cap)).await.unwrap();
                let b = per_user.authz.check(&CheckRequest::new(&p, app, cap)).await.unwrap();
                let role = |r: &Reason| match r {
                    Reason::GithubRole { role, role_name, .. } => Some((*role, role_name.clone())),
                    _ => None,
                };
                let same_role = !a.is_allowed() || role(a.reason()).is_none() || role(a.reason()) == role(b.reason());
                if a.is_allowed() != b.is_allowed() || !same_role {
                    found.push(format!("{} on {} {cap:?}: {a:?} / {b:?}", user.login, app.id().0));
                }
            }
        }
    }
    let asked = rosters.mock.requests_matching("/**/permission");
    if asked != 0 || rosters.authz.stats().roster_fallbacks != 0 {
        found.push(format!("{asked} per-user lookups from rosters"));
    }
    found
}

/// Every decision of every user on every app, for every capability, is the same from rosters as
/// from per-user lookups (allowed or not, and by the same role), on the example world and on the
/// one of every role.
#[tokio::test]
async fn rosters_decide_as_per_user_lookups_do() {
    for name in ["acme.toml", "roles.toml"] {
        let world = common::fixture(name);
        let apps: Vec<App> = world.apps().iter().map(|a| a.app.clone()).collect();
        assert_eq!(disagreements(&world, &apps).await, Vec::<String>::new(), "{name}");
    }
}

/// One roster request answers every user of a repository, cold; none warm.
#[tokio::test]
async fn one_roster_answers_every_user_of_a_repository() {
    let env = env(common::fixture("acme.toml"), true).await;
    let dash = env.app("dash");
    let logins: Vec<String> = env.world.users().iter().map(|u| u.login.clone()).collect();
    for login in &logins {
        env.authz.check(&CheckRequest::new(&env.user(login), &dash, Capability::Edit)).await.unwrap();
    }
    assert_eq!(env.mock.requests("/repos/acme/dashboard/collaborators"), 1, "{:?}", env.mock.request_counts());
    assert_eq!(env.mock.requests("/repos/acme/dashboard"), 1, "the repository's identity, once");
    assert_eq!(env.authz.stats().roster_requests, 1);
    // `deploy` rests on a fact no older than 60 s: past it, the roster is revalidated, for free.
    env.advance_secs(61);
    let spent = env.mock.rate_limit_remaining();
    let d = env.authz.check(&CheckRequest::new(&env.user("erin"), &dash, Capability::Deploy)).await.unwrap();
    assert!(d.is_allowed(), "{d:?}");
    assert_eq!(env.mock.requests("/repos/acme/dashboard/collaborators"), 2);
    assert_eq!(env.mock.rate_limit_remaining(), spent, "304s: nothing charged");
    assert!(env.authz.stats().revalidated_not_modified >= 1);
}

/// An invalidation that names the repository, or a user, drops its roster: a role taken away on
/// GitHub counts at the next check.
#[tokio::test]
async fn an_invalidation_drops_the_roster() {
    let env = env(common::fixture("acme.toml"), true).await;
    let (carol, dash) = (env.user("carol"), env.app("dash"));
    assert!(env.authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap().is_allowed());
    env.mock.set_world(common::acme_without_carol_on_dashboard());
    assert!(env.authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap().is_allowed(), "cached");
    let carol_id = env.world.user("carol").unwrap().id;
    env.authz.invalidate_local(Invalidation::UserOnRepo(carol_id, RepoId(101)));
    let d = env.authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap();
    assert!(!d.is_allowed(), "the next check: {d:?}");
    assert_eq!(env.mock.requests("/repos/acme/dashboard/collaborators"), 2);
}

/// `users` users `u0..`, the first `members` of them members of the organization `big`, whose
/// base permission (`write`) gives each a role on its one private repository `big/r`, whose app
/// is `a`.
fn big_world(users: usize, members: usize) -> ghauthz::world::World {
    let mut text = String::from("version = 1\nnow = \"2026-11-22T10:00:00Z\"\n");
    for i in 0..users {
        text.push_str(&format!("[[users]]\nid = {}\nlogin = \"u{i}\"\n", i + 1));
    }
    let listed: Vec<String> = (0..members).map(|i| format!("\"u{i}\"")).collect();
    text.push_str(&format!(
        "[[orgs]]\nid = 5000\nlogin = \"big\"\nmembers = [{}]\nbase_permission = \"write\"\n",
        listed.join(", ")
    ));
    text.push_str("[[repos]]\nid = 300\nowner = \"big\"\nname = \"r\"\nprivate = true\n");
    text.push_str(
        "[[apps]]\nid = \"a\"\nrepo = \"big/r\"\nrepo_id = 300\nbranch = \"main\"\nmain_file = \"a.py\"\nvisibility = \"private\"\ndeployed_by = \"u0\"\n",
    );
    ghauthz::world::World::from_toml_str(&text, ".").unwrap()
}

/// A roster that would take more pages than allowed is not read whole: its repository is asked
/// per user, and the stats say so.
#[tokio::test]
async fn a_roster_too_large_falls_back_to_per_user_lookups() {
    let world = big_world(150, 150);
    let opts = common::Opts {
        cache: CacheConfig::default().with_rosters(true).with_roster_max_pages(1),
        ..Default::default()
    };
    let env = common::env_with(world, opts).await;
    for login in ["u0", "u149"] {
        let d = env.authz.check(&CheckRequest::new(&env.user(login), &env.app("a"), Capability::Edit)).await.unwrap();
        assert!(d.is_allowed(), "{login}: {d:?}");
    }
    assert_eq!(env.authz.stats().roster_fallbacks, 1);
    assert_eq!(env.mock.requests_matching("/repos/big/r/collaborators/*/permission"), 2, "asked per user");
    let d = env.authz.check(&CheckRequest::new(&env.user("u7"), &env.app("a"), Capability::Edit)).await.unwrap();
    assert_eq!(d.lookup(), Some(Lookup::User), "the decision says so");
}

/// A roster whose first page is full is never revalidated by that page's ETag: a user added
/// onto a second page leaves the first page as it was, and would otherwise go unseen.
#[tokio::test]
async fn a_full_first_page_is_fetched_anew_not_revalidated() {
    let env = env(big_world(101, 100), true).await;
    assert!(
        env.authz
            .check(&CheckRequest::new(&env.user("u0"), &env.app("a"), Capability::Edit))
            .await
            .unwrap()
            .is_allowed()
    );
    let d = env.authz.check(&CheckRequest::new(&env.user("u100"), &env.app("a"), Capability::Edit)).await.unwrap();
    assert!(!d.is_allowed(), "not a member yet: {d:?}");
    // u100 joins, and sorts onto the roster's second page.
    env.mock.set_world(big_world(101, 101));
    env.advance_secs(61);
    let d = env.authz.check(&CheckRequest::new(&env.user("u100"), &env.app("a"), Capability::Edit)).await.unwrap();
    assert!(d.is_allowed(), "the new member is seen: {d:?}");
}

/// A roster of two pages, the last not full, is revalidated page by page after an invalidation:
/// both pages 304, nothing charged.
#[tokio::test]
async fn a_roster_of_pages_is_revalidated_page_by_page_for_free() {
    let env = env(big_world(150, 150), true).await;
    let (u0, u149, a) = (env.user("u0"), env.user("u149"), env.app("a"));
    assert!(env.authz.check(&CheckRequest::new(&u0, &a, Capability::Edit)).await.unwrap().is_allowed());
    assert_eq!(env.mock.requests("/repos/big/r/collaborators"), 2, "two pages");
    let spent = env.mock.rate_limit_remaining();
    env.authz.invalidate_local(Invalidation::UserOnRepo(env.world.user("u0").unwrap().id, RepoId(300)));
    let d = env.authz.check(&CheckRequest::new(&u0, &a, Capability::Edit)).await.unwrap();
    assert_eq!((d.is_allowed(), d.source(), d.lookup()), (true, ghauthz::Source::Github, Some(Lookup::Roster)));
    assert_eq!(env.mock.requests("/repos/big/r/collaborators"), 4, "each page asked again");
    assert_eq!(env.mock.rate_limit_remaining(), spent, "two 304s: nothing charged");
    assert!(env.authz.check(&CheckRequest::new(&u149, &a, Capability::Edit)).await.unwrap().is_allowed());
}

/// A change on a roster's last page is seen when it is revalidated: that page answers 200, and
/// the roster is fetched again from its first page.
#[tokio::test]
async fn a_change_on_a_later_page_is_seen_by_revalidation() {
    let env = env(big_world(150, 150), true).await;
    let (u0, u149, a) = (env.user("u0"), env.user("u149"), env.app("a"));
    assert!(env.authz.check(&CheckRequest::new(&u149, &a, Capability::Edit)).await.unwrap().is_allowed());
    // u149 leaves the organization: only the second page changes.
    env.mock.set_world(big_world(150, 149));
    env.authz.invalidate_local(Invalidation::UserInOwner(env.world.user("u149").unwrap().id, ghauthz::OwnerId(5000)));
    let d = env.authz.check(&CheckRequest::new(&u149, &a, Capability::Edit)).await.unwrap();
    assert!(!d.is_allowed(), "the departure is seen: {d:?}");
    // Two pages fetched, two revalidated (the first 304, the second 200), two fetched again.
    assert_eq!(env.mock.requests("/repos/big/r/collaborators"), 6);
    assert!(env.authz.check(&CheckRequest::new(&u0, &a, Capability::Edit)).await.unwrap().is_allowed());
    assert_eq!(env.mock.requests("/repos/big/r/collaborators"), 6, "the new roster answers");
}

/// A roster whose last page is full is fetched whole, never revalidated: a user added after
/// it would fill a next page and leave every page before as it was.
#[tokio::test]
async fn a_roster_whose_last_page_is_full_is_fetched_anew() {
    let env = env(big_world(201, 200), true).await;
    let (u0, u200, a) = (env.user("u0"), env.user("u200"), env.app("a"));
    assert!(env.authz.check(&CheckRequest::new(&u0, &a, Capability::Edit)).await.unwrap().is_allowed());
    assert!(!env.authz.check(&CheckRequest::new(&u200, &a, Capability::Edit)).await.unwrap().is_allowed());
    // u200 joins, and sorts onto a third page.
    env.mock.set_world(big_world(201, 201));
    env.authz.invalidate_local(Invalidation::UserInOwner(env.world.user("u200").unwrap().id, ghauthz::OwnerId(5000)));
    let d = env.authz.check(&CheckRequest::new(&u200, &a, Capability::Edit)).await.unwrap();
    assert!(d.is_allowed(), "the new member is seen: {d:?}");
}

/// A roster refused to the credentials (GitHub's 403 to an App without the organization
/// `members` permission) makes its repository ask per user, deciding as before; other
/// repositories keep their rosters.
#[tokio::test]
async fn a_refused_roster_falls_back_to_per_user_lookups() {
    let world =
        common::acme_with(|t| t + "\n[[faults]]\npath = \"/repos/acme/dashboard/collaborators\"\nstatus = 403\n");
    let env = env(world.clone(), true).await;
    let (carol, dave) = (env.user("carol"), env.user("dave"));
    let d = env.authz.check(&CheckRequest::new(&carol, &env.app("dash"), Capability::Edit)).await.unwrap();
    assert!(d.is_allowed(), "{d:?}");
    assert_eq!(d.lookup(), Some(Lookup::User));
    let d = env.authz.check(&CheckRequest::new(&dave, &env.app("dash"), Capability::View)).await.unwrap();
    assert!(matches!(d.reason(), Reason::GithubRole { role: ghauthz::Role::Triage, .. }), "{d:?}");
    assert_eq!(env.mock.requests_matching("/repos/acme/dashboard/collaborators/*/permission"), 2);
    assert_eq!(env.authz.stats().roster_fallbacks, 1, "asked once, remembered as refused");
    // Another repository's roster still answers.
    let d = env.authz.check(&CheckRequest::new(&env.user("alice"), &env.app("notes"), Capability::Edit)).await.unwrap();
    assert_eq!((d.is_allowed(), d.lookup()), (true, Some(Lookup::Roster)));
}

/// An invalidation that names a user keeps the rosters it makes unusable: their ETags make the
/// next fetch conditional, and a roster that did not change costs nothing.
#[tokio::test]
async fn a_roster_an_invalidation_touched_is_revalidated_for_free() {
    let env = env(common::fixture("acme.toml"), true).await;
    let (erin, dash) = (env.user("erin"), env.app("dash"));
    env.authz.check(&CheckRequest::new(&erin, &dash, Capability::Edit)).await.unwrap();
    let spent = env.mock.rate_limit_remaining();
    // Another user left the organization: every acme roster is suspect, none changed here.
    let mallory = env.world.user("mallory").unwrap().id;
    env.authz.invalidate_local(Invalidation::UserInOwner(mallory, ghauthz::OwnerId(5000)));
    let d = env.authz.check(&CheckRequest::new(&env.user("carol"), &dash, Capability::Edit)).await.unwrap();
    assert_eq!((d.is_allowed(), d.source()), (true, ghauthz::Source::Github));
    assert_eq!(env.mock.requests("/repos/acme/dashboard/collaborators"), 2, "asked again");
    assert_eq!(env.mock.rate_limit_remaining(), spent, "a 304: nothing charged");
}

/// `apps_for` from rosters: cold, one listing of the installation's repositories and one roster
/// per repository with apps; for the next users, nothing.
#[tokio::test]
async fn apps_for_asks_one_roster_per_repository_and_nothing_warm() {
    use ghauthz::store::prelude::*;
    let world = common::fixture("acme.toml");
    let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    store.seed_once(&world.app_records(), ghauthz::Timestamp(0)).await.unwrap();
    let env = common::env_with(world, common::Opts { store: Some(store), ..Default::default() }).await;
    let carol = env.user("carol");
    let editable = env.authz.apps_for(&carol, Capability::Edit).await.unwrap();
    let ids: Vec<&str> = editable.iter().map(|a| a.id().0.as_str()).collect();
    assert_eq!(ids, ["analytics", "dash", "site"]);
    let repos =
        env.world.apps().iter().map(|a| a.app.repo_id()).collect::<std::collections::BTreeSet<_>>().len() as u64;
    let counts = env.mock.request_counts();
    let rosters = env.mock.requests_matching("/**/collaborators");
    assert!(rosters <= repos, "{rosters} rosters for {repos} repositories: {counts:?}");
    assert_eq!(env.mock.requests_matching("/**/permission"), 0, "no per-user lookup: {counts:?}");
    let cold = env.mock.total_requests();
    assert!(cold <= repos + 1 + 2, "{cold} requests: {counts:?}");
    for login in ["alice", "bob", "dave", "erin", "olga", "zed"] {
        env.authz.apps_for(&env.user(login), Capability::View).await.unwrap();
    }
    assert_eq!(env.mock.total_requests(), cold, "warm: nothing asked");
}

mod differential {
    //! On random worlds (teams, base permissions, owners, direct and custom roles, public and
    //! private repositories), a check from the roster decides as a check from the permission
    //! route, for every user, repository and capability; where the user holds a role the policy
    //! counts, both name the same role.

    use super::*;
    use crate::mock_github::differential::{spec, world_text};
    use ghauthz::{App, AppId, Visibility};
    use proptest::prelude::*;

    fn agree(text: &str) -> Result<(), TestCaseError> {
        let world = ghauthz::world::World::from_toml_str(text, ".").map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let mut apps = Vec::new();
        for repo in world.repos() {
            let coords: ghauthz::RepoCoords = format!("{}/{}", repo.owner, repo.name).parse().unwrap();
            for visibility in [Visibility::Private, Visibility::Public] {
                apps.push(App::new(
                    AppId(format!("{}-{visibility:?}", repo.name)),
                    coords.clone(),
                    repo.id,
                    visibility,
                ));
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let found = rt.block_on(disagreements(&world, &apps));
        prop_assert!(found.is_empty(), "{:#?}\n{}", found, text);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn rosters_decide_as_the_permission_route_on_random_worlds(s in spec()) {
            agree(&world_text(&s))?;
        }
    }
}
