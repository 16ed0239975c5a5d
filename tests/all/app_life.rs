//! The app's life through the facade: deploy, visibility, delete, each audited, on every store.
#![cfg(all(feature = "world", feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use ghauthz::CheckRequest;
use ghauthz::store::prelude::*;
use std::sync::Arc;

use crate::common;

use ghauthz::Clock as _;
use ghauthz::store::{AuditAction, AuditEvent, AuditFilter, AuditOutcome, Store};
use ghauthz::{AppId, Capability, ChangedBy, Deployment, ManageError, Principal, RepoCoords, RepoId, Visibility};

fn id(s: &str) -> AppId {
    AppId(s.into())
}

fn deployment(app: &str, repo: &str) -> Deployment {
    Deployment::new(id(app), repo.parse::<RepoCoords>().unwrap(), "main", "app.py")
}

/// The newest audit entry about `app`.
async fn last_entry(store: &dyn Store, app: &str) -> AuditEvent {
    store.audit(&AuditFilter::new().for_app(id(app)).limit(1)).await.unwrap().pop().expect("an entry")
}

async fn deploy_records_the_id_github_reports(store: Arc<dyn Store>) {
    let v = common::viewers_on(store.clone()).await;
    let (authz, world) = (&v.authz, &v.world);
    let erin = Principal::github(world.user("erin").unwrap()); // admin on acme/dashboard
    let app = authz.deploy_app(&erin, &deployment("new", "acme/dashboard")).await.unwrap();
    assert_eq!((app.repo_id, app.deployed_by.0, app.visibility), (RepoId(101), 5, Visibility::Private));
    assert_eq!(store.app(&id("new")).await.unwrap(), Some(app.clone()), "recorded");
    let e = last_entry(&*store, "new").await;
    assert_eq!(
        (e.action, e.outcome, e.actor.as_str(), e.detail.as_deref()),
        (AuditAction::Deploy, AuditOutcome::Allowed, "github:5", Some("acme/dashboard@main:app.py"))
    );
    let d = authz.check(&CheckRequest::new(&erin, &id("new"), Capability::Deploy)).await.unwrap();
    assert!(d.is_allowed(), "the deployed app is checked like any other: {d:?}");

    // A maintainer may not deploy: refused, nothing recorded, the refusal audited.
    let bob = Principal::github(world.user("bob").unwrap());
    let err = authz.deploy_app(&bob, &deployment("bobs", "acme/dashboard")).await.unwrap_err();
    let ManageError::Denied { decision, .. } = &err else { panic!("{err:?}") };
    assert_eq!(decision.reason().kind(), "github_role");
    assert_eq!(store.app(&id("bobs")).await.unwrap(), None);
    let e = last_entry(&*store, "bobs").await;
    assert_eq!(
        (e.action, e.outcome, e.actor.as_str(), e.detail.as_deref()),
        (AuditAction::Deploy, AuditOutcome::Denied, "github:2", Some("github_role"))
    );

    // The same id from elsewhere is `app_exists`, audited; from the same place, a redeploy.
    let olga = Principal::github(world.user("olga").unwrap()); // acme owner: admin on acme/legacy too
    let err = authz.deploy_app(&olga, &deployment("new", "acme/legacy")).await.unwrap_err();
    assert_eq!(err.kind(), "app_exists");
    assert_eq!(last_entry(&*store, "new").await.detail.as_deref(), Some("app_exists"));
    assert_eq!(store.app(&id("new")).await.unwrap(), Some(app.clone()), "unchanged");
    let again = authz.deploy_app(&erin, &deployment("new", "acme/dashboard")).await.unwrap();
    assert_eq!(again, app);
    // GitHub's names ignore case: the same repository spelled otherwise is a redeploy too.
    let again = authz.deploy_app(&erin, &deployment("new", "ACME/Dashboard")).await.unwrap();
    assert_eq!(again, app, "the record keeps its spelling");

    // A repository GitHub does not have, and bad input.
    let err = authz.deploy_app(&erin, &deployment("ghost", "acme/nothing-here")).await.unwrap_err();
    assert_eq!(err.kind(), "repo_not_found");
    let bad = Deployment::new(id("x"), "acme/dashboard".parse().unwrap(), "ma\nin", "app.py");
    assert_eq!(authz.deploy_app(&erin, &bad).await.unwrap_err(), ManageError::InvalidDeployment("branch"));
    let err = authz.deploy_app(&Principal::Anonymous, &deployment("anon", "acme/dashboard")).await.unwrap_err();
    assert_eq!(err.kind(), "denied");
    let e = last_entry(&*store, "anon").await;
    assert_eq!((e.actor.as_str(), e.outcome, e.email), ("anonymous", AuditOutcome::Denied, None), "audited too");
    // No address is written for an app that does not exist (it would outlive every deletion).
    let email = ghauthz::Email::parse("dana@example.com").unwrap();
    let stray =
        AuditEvent::new(ghauthz::Timestamp(0), &ghauthz::store::Actor::Viewer, &id("gone"), AuditAction::GoogleSignIn)
            .with_email(&email);
    store.record(&stray, None).await.unwrap();
    assert!(store.audit(&AuditFilter::new().for_app(id("gone"))).await.unwrap().is_empty());
}

async fn a_renamed_repository_is_recorded_under_its_id(store: Arc<dyn Store>) {
    let v = common::viewers_on(store.clone()).await;
    let olga = Principal::github(v.world.user("olga").unwrap()); // acme owner: admin everywhere
    // acme/analytics was renamed to analytics-v2 (id 103): GitHub answers 301.
    let app = v.authz.deploy_app(&olga, &deployment("stats", "acme/analytics")).await.unwrap();
    assert_eq!(app.repo_id, RepoId(103));
    let d = v.authz.check(&CheckRequest::new(&olga, &id("stats"), Capability::Edit)).await.unwrap();
    assert!(d.is_allowed(), "{d:?}");

    // Someone creates a new acme/analytics: the app's coordinates now name another repository.
    v.mock.set_world(common::acme_with(|text| {
        text.replace("renamed_from = [\"analytics\"]\n", "")
            + "\n[[repos]]\nid = 999\nowner = \"acme\"\nname = \"analytics\"\nprivate = true\n"
    }));
    let d = v.authz.check(&CheckRequest::new(&olga, &id("stats"), Capability::View).fresh()).await.unwrap();
    assert_eq!(d.reason().kind(), "repo_replaced", "{d:?}");
    // The new repository's admin cannot take the app over by deploying it again.
    let err = v.authz.deploy_app(&olga, &deployment("stats", "acme/analytics")).await.unwrap_err();
    assert_eq!(err.kind(), "app_exists");
    assert_eq!(store.app(&id("stats")).await.unwrap().unwrap().repo_id, RepoId(103), "unchanged");
}

async fn visibility_and_delete_go_through_the_policy(store: Arc<dyn Store>) {
    let v = common::viewers_on(store.clone()).await;
    let by = |login: &str| ChangedBy::Principal(Principal::github(v.world.user(login).unwrap()));
    let dash = id("dash");
    // dave has triage (not on the roster, which lists `write` and up): no sharing, no delete;
    // both refusals are on record.
    assert_eq!(v.authz.set_visibility(&by("dave"), &dash, Visibility::Public).await.unwrap_err().kind(), "denied");
    let e = last_entry(&*store, "dash").await;
    assert_eq!(
        (e.action, e.outcome, e.detail.as_deref()),
        (AuditAction::Visibility, AuditOutcome::Denied, Some("no_access"))
    );
    // carol has write: sharing, so she may publish it.
    assert!(v.authz.set_visibility(&by("carol"), &dash, Visibility::Public).await.unwrap());
    assert!(
        !v.authz.set_visibility(&by("carol"), &dash, Visibility::Public).await.unwrap(),
        "no change the second time"
    );
    let e = last_entry(&*store, "dash").await;
    assert_eq!(
        (e.action, e.actor.as_str(), e.detail.as_deref()),
        (AuditAction::Visibility, "github:3", Some("public"))
    );
    let d = v.authz.check(&CheckRequest::new(&Principal::Anonymous, &dash, Capability::View)).await.unwrap();
    assert!(d.is_allowed(), "public at once on this replica: {d:?}");

    assert_eq!(v.authz.delete_app(&by("carol"), &dash).await.unwrap_err().kind(), "denied", "write cannot delete");
    let e = last_entry(&*store, "dash").await;
    assert_eq!((e.action, e.outcome), (AuditAction::Delete, AuditOutcome::Denied));
    v.authz.delete_app(&by("erin"), &dash).await.unwrap();
    let e = last_entry(&*store, "dash").await;
    assert_eq!((e.action, e.outcome, e.actor.as_str()), (AuditAction::Delete, AuditOutcome::Allowed, "github:5"));
    assert_eq!(
        v.authz.set_visibility(&ChangedBy::Operator, &dash, Visibility::Private).await.unwrap_err().kind(),
        "unknown_app"
    );
}

async fn the_audit_filters(store: Arc<dyn Store>) {
    let v = common::viewers_on(store.clone()).await;
    let t0 = v.clock.now();
    v.authz.add_viewer(&ChangedBy::Operator, &id("dash"), "eve@example.com").await.unwrap();
    v.clock.advance(std::time::Duration::from_secs(60));
    v.authz.add_viewer(&ChangedBy::Operator, &id("notes"), "eve@example.com").await.unwrap();
    v.authz.remove_viewer(&ChangedBy::Operator, &id("dash"), "eve@example.com").await.unwrap();
    let all = v.authz.audit(&AuditFilter::new()).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].at >= w[1].at), "newest first");
    let later = v.authz.audit(&AuditFilter::new().since(t0.plus(std::time::Duration::from_secs(1)))).await.unwrap();
    let seen: Vec<(&str, AuditAction)> = later.iter().map(|e| (e.app.0.as_str(), e.action)).collect();
    assert_eq!(seen, [("dash", AuditAction::ViewerRemoved), ("notes", AuditAction::ViewerAdded)]);
    let dash = v.authz.audit(&AuditFilter::new().for_app(id("dash")).limit(1)).await.unwrap();
    assert_eq!(dash.len(), 1);
    assert_eq!(dash[0].action, AuditAction::ViewerRemoved);
}

/// Every deploy and delete check is on record, allowed or denied, whoever asks and however:
/// by app, by id, by session, for an unknown id, in a listing. Other checks are not.
async fn deploy_and_delete_checks_are_on_record(store: Arc<dyn Store>) {
    let v = common::viewers_on(store.clone()).await;
    let (erin, bob) =
        (Principal::github(v.world.user("erin").unwrap()), Principal::github(v.world.user("bob").unwrap()));
    let entries = || async { store.audit(&AuditFilter::new()).await.unwrap() };
    let seen = |e: &AuditEvent| (e.app.0.clone(), e.action, e.outcome, e.actor.clone(), e.detail.clone().unwrap());
    let entry = |app: &str, outcome, actor: &str, detail: &str| {
        (app.to_owned(), AuditAction::Check, outcome, actor.to_owned(), detail.to_owned())
    };

    let before = entries().await.len();
    for _ in 0..2 {
        assert!(v.authz.check(&CheckRequest::new(&erin, &id("dash"), Capability::Edit)).await.unwrap().is_allowed());
    }
    assert_eq!(entries().await.len(), before, "an edit check is not recorded");

    assert!(v.authz.check(&CheckRequest::new(&erin, &id("dash"), Capability::Deploy)).await.unwrap().is_allowed());
    assert_eq!(seen(&entries().await[0]), entry("dash", AuditOutcome::Allowed, "github:5", "deploy: github_role"));
    assert!(
        v.authz.check_cached(&CheckRequest::new(&erin, &id("dash"), Capability::Deploy)).is_none(),
        "never a silent hit"
    );
    assert!(v.authz.check(&CheckRequest::new(&erin, &id("dash"), Capability::Deploy)).await.unwrap().is_allowed());
    assert_eq!(seen(&entries().await[0]), entry("dash", AuditOutcome::Allowed, "github:5", "deploy: github_role"));
    assert_eq!(entries().await.len(), before + 2, "each check once");

    let dash = v.authz.app(&id("dash")).await.unwrap().unwrap().app().unwrap();
    assert!(!v.authz.check(&CheckRequest::new(&bob, &dash, Capability::Delete)).await.unwrap().is_allowed());
    assert_eq!(seen(&entries().await[0]), entry("dash", AuditOutcome::Denied, "github:2", "delete: github_role"));
    assert!(!v.authz.check(&CheckRequest::new(&bob, &id("nope"), Capability::Delete)).await.unwrap().is_allowed());
    assert_eq!(seen(&entries().await[0]), entry("nope", AuditOutcome::Denied, "github:2", "delete: unknown_app"));

    let link = v.authz.issue_link(&id("dash"), "dana@example.com").await.unwrap();
    let token = v.authz.redeem_link(link.token.expose_secret(), None).await.unwrap().token;
    let d =
        v.authz.check(&CheckRequest::session(token.expose_secret(), &id("dash"), Capability::Deploy)).await.unwrap();
    assert!(!d.is_allowed());
    let e = &entries().await[0];
    assert_eq!(seen(e), entry("dash", AuditOutcome::Denied, "viewer", "deploy: no_access"));
    assert_eq!(e.email.as_ref().map(|m| m.as_str()), Some("dana@example.com"), "the viewer's address");
    // Her session on another app: on record there, without her address (it is not that app's).
    let site = v.authz.app(&id("site")).await.unwrap().unwrap().app().unwrap();
    let session = v.authz.verify_session(token.expose_secret()).unwrap();
    assert!(
        !v.authz
            .check(&CheckRequest::new(&Principal::Viewer(session), &site, Capability::Delete))
            .await
            .unwrap()
            .is_allowed()
    );
    let e = &entries().await[0];
    assert_eq!((e.app.0.as_str(), e.actor.as_str(), e.email.as_ref()), ("site", "viewer", None));
    assert!(
        !v.authz
            .check(&CheckRequest::session(token.expose_secret(), &id("site"), Capability::Deploy))
            .await
            .unwrap()
            .is_allowed()
    );
    let e = &entries().await[0];
    assert_eq!((e.app.0.as_str(), e.actor.as_str(), e.email.as_ref()), ("site", "viewer", None), "by token too");
    let session = v.authz.verify_session(token.expose_secret()).unwrap();
    let by_her = ChangedBy::Principal(Principal::Viewer(session));
    assert_eq!(v.authz.set_visibility(&by_her, &id("site"), Visibility::Private).await.unwrap_err().kind(), "denied");
    let e = &entries().await[0];
    assert_eq!((e.app.0.as_str(), e.action, e.email.as_ref()), ("site", AuditAction::Visibility, None), "refused");
    // A token that does not verify, and nobody signed in: on record for an app that exists...
    assert!(
        !v.authz
            .check(&CheckRequest::session("not-a-token", &id("dash"), Capability::Deploy))
            .await
            .unwrap()
            .is_allowed()
    );
    assert_eq!(seen(&entries().await[0]), entry("dash", AuditOutcome::Denied, "viewer", "deploy: session_invalid"));
    assert!(
        !v.authz
            .check(&CheckRequest::new(&Principal::Anonymous, &id("dash"), Capability::Delete))
            .await
            .unwrap()
            .is_allowed()
    );
    assert_eq!(seen(&entries().await[0]), entry("dash", AuditOutcome::Denied, "anonymous", "delete: no_access"));
    // ...but an id no app has is on record for a GitHub user only: anyone else could fill the
    // log with text of their choosing.
    let before = entries().await.len();
    v.authz
        .check(&CheckRequest::new(&Principal::Anonymous, &id("dana@example.com"), Capability::Delete))
        .await
        .unwrap();
    v.authz.check(&CheckRequest::session("not-a-token", &id("nope"), Capability::Deploy)).await.unwrap();
    v.authz.check(&CheckRequest::session(token.expose_secret(), &id("nope"), Capability::Deploy)).await.unwrap();
    assert_eq!(entries().await.len(), before);

    let before = entries().await.len();
    let deployable = v.authz.apps_for(&erin, Capability::Deploy).await.unwrap();
    let listed = entries().await;
    assert_eq!(listed.len(), before + v.authz.apps().await.unwrap().len(), "a listing records each app's check");
    let new = &listed[..listed.len() - before];
    assert!(new.iter().all(|e| e.action == AuditAction::Check && e.actor == "github:5"));
    assert_eq!(new.iter().filter(|e| e.outcome == AuditOutcome::Allowed).count(), deployable.len());
    assert!(!deployable.is_empty());

    // The app's deletion takes the viewer's address from its entries.
    v.authz.delete_app(&ChangedBy::Principal(erin), &id("dash")).await.unwrap();
    let left = store.audit(&AuditFilter::new().for_app(id("dash"))).await.unwrap();
    assert!(left.iter().any(|e| e.action == AuditAction::Check) && left.iter().all(|e| e.email.is_none()));
}

macro_rules! suite {
    ($backend:ident, $kind:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn deploy_records_the_id_github_reports() {
                let Some((store, _guard)) = common::store_of($kind).await else { return };
                super::deploy_records_the_id_github_reports(store).await;
            }

            #[tokio::test]
            async fn deploy_and_delete_checks_are_on_record() {
                let Some((store, _guard)) = common::store_of($kind).await else { return };
                super::deploy_and_delete_checks_are_on_record(store).await;
            }

            #[tokio::test]
            async fn a_renamed_repository_is_recorded_under_its_id() {
                let Some((store, _guard)) = common::store_of($kind).await else { return };
                super::a_renamed_repository_is_recorded_under_its_id(store).await;
            }

            #[tokio::test]
            async fn visibility_and_delete_go_through_the_policy() {
                let Some((store, _guard)) = common::store_of($kind).await else { return };
                super::visibility_and_delete_go_through_the_policy(store).await;
            }

            #[tokio::test]
            async fn the_audit_filters() {
                let Some((store, _guard)) = common::store_of($kind).await else { return };
                super::the_audit_filters(store).await;
            }
        }
    };
}

suite!(memory, common::Backend::Memory);
suite!(sqlite, common::Backend::Sqlite);
suite!(postgres, common::Backend::Postgres);

/// `apps_for` answers what each app's check answers.
#[tokio::test]
async fn apps_for_lists_what_each_check_allows() {
    let v = common::viewers_on(Arc::new(ghauthz::store::MemoryStore::new())).await;
    let apps: Vec<_> = v.authz.apps().await.unwrap().iter().map(|r| r.app().unwrap()).collect();
    for login in ["alice", "bob", "carol", "dave", "erin", "olga", "frank"] {
        let user = Principal::github(v.world.user(login).unwrap());
        for cap in Capability::ALL {
            let listed: Vec<AppId> =
                v.authz.apps_for(&user, cap).await.unwrap().iter().map(|a| a.id().clone()).collect();
            let mut checked = Vec::new();
            for app in &apps {
                if v.authz.check(&CheckRequest::new(&user, app, cap)).await.unwrap().is_allowed() {
                    checked.push(app.id().clone());
                }
            }
            assert_eq!(listed, checked, "{login} {cap}");
        }
    }
}

/// A world of 100 private repositories of one organization, one app on each: `dev` has the
/// organization's base `read` on all of them and `write` on the first 60.
fn hundred_apps() -> ghauthz::world::World {
    big_org(100, |_| 1)
}

/// A world of `repos` private repositories `big/r<i>` (ids from 1000) of one organization, and
/// `apps_on(i)` apps on each (`app<i>` on branch `main`, then `app<i>-<k>` on branch `b<k>`):
/// `dev` has the organization's base `read` on all of them and `write` on the first 60.
fn big_org(repos: usize, apps_on: impl Fn(usize) -> usize) -> ghauthz::world::World {
    let mut text = String::from(
        "version = 1\nnow = \"2026-11-22T10:00:00Z\"\n[[users]]\nid = 1\nlogin = \"dev\"\n\
         [[orgs]]\nid = 500\nlogin = \"big\"\nmembers = [\"dev\"]\nbase_permission = \"read\"\n",
    );
    for i in 0..repos {
        let roles = if i < 60 { "roles = { dev = \"write\" }\n" } else { "" };
        let id = 1000 + i;
        text.push_str(&format!("[[repos]]\nid = {id}\nowner = \"big\"\nname = \"r{i}\"\nprivate = true\n{roles}"));
        for k in 0..apps_on(i) {
            let (app, branch) = if k == 0 {
                (format!("app{i:03}"), "main".to_owned())
            } else {
                (format!("app{i:03}-{k}"), format!("b{k}"))
            };
            text.push_str(&format!(
                "[[apps]]\nid = \"{app}\"\nrepo = \"big/r{i}\"\nrepo_id = {id}\nbranch = \"{branch}\"\n\
                 main_file = \"a.py\"\nvisibility = \"private\"\ndeployed_by = \"dev\"\n"
            ));
        }
    }
    ghauthz::world::World::from_toml_str(&text, ".").unwrap()
}

async fn seeded(world: &ghauthz::world::World) -> Arc<dyn Store> {
    let store = Arc::new(ghauthz::store::MemoryStore::new());
    store.seed_once(&world.app_records(), ghauthz::Timestamp(0)).await.unwrap();
    store
}

/// `world` seeded into a fresh store, checked in user-token mode, and `dev` with their token.
async fn in_user_token_mode(world: &ghauthz::world::World) -> (common::Env, Principal) {
    let opts = common::Opts {
        store: Some(seeded(world).await),
        github: Box::new(|m| m.user_token_config()),
        ..Default::default()
    };
    let env = common::env_with(world.clone(), opts).await;
    let dev = Principal::github_with_token(world.user("dev").unwrap(), env.mock.user_token("dev"));
    (env, dev)
}

/// What a listing of 100 apps on 100 repositories costs: installation mode asks one page of the
/// installation's repositories (which repository answers where, shared by every user) and the
/// user's role on each repository, and nothing when warm; user-token mode asks one page of
/// `GET /user/repos` per 100 repositories.
#[tokio::test]
async fn a_listing_of_a_hundred_apps_costs_what_it_should() {
    let world = hundred_apps();
    let opts = common::Opts { store: Some(seeded(&world).await), ..Default::default() };
    let env = common::env_with(world.clone(), opts).await;
    let dev = env.user("dev");
    let editable = env.authz.apps_for(&dev, Capability::Edit).await.unwrap();
    assert_eq!(editable.len(), 60);
    let cold = env.mock.total_requests();
    assert_eq!(cold, 1 + 100, "{:?}", env.mock.request_counts());
    assert_eq!(env.mock.requests("/installation/repositories"), 1);
    // `read` does not view a private app: the same 60, from the same cached facts.
    assert_eq!(env.authz.apps_for(&dev, Capability::View).await.unwrap().len(), 60);
    assert_eq!(env.mock.total_requests(), cold, "warm: nothing asked");

    let (env, dev) = in_user_token_mode(&world).await;
    let editable = env.authz.apps_for(&dev, Capability::Edit).await.unwrap();
    assert_eq!(editable.len(), 60);
    assert_eq!(env.mock.total_requests(), 1, "one page of 100: {:?}", env.mock.request_counts());
}

/// Apps that share a repository share its requests: 100 apps, two on each of 50 repositories,
/// cost one page and 50 roles cold, nothing warm, and one page in user-token mode.
#[tokio::test]
async fn a_listing_asks_once_per_repository_not_once_per_app() {
    let world = big_org(50, |_| 2);
    let opts = common::Opts { store: Some(seeded(&world).await), ..Default::default() };
    let env = common::env_with(world.clone(), opts).await;
    let dev = env.user("dev");
    let editable = env.authz.apps_for(&dev, Capability::Edit).await.unwrap();
    assert_eq!(editable.len(), 100);
    assert!(editable.iter().any(|a| a.id().to_string() == "app049-1"), "both apps of a repository are listed");
    let cold = env.mock.total_requests();
    assert_eq!(cold, 1 + 50, "{:?}", env.mock.request_counts());
    assert_eq!(env.authz.apps_for(&dev, Capability::Edit).await.unwrap().len(), 100);
    assert_eq!(env.mock.total_requests(), cold, "warm: nothing asked");

    let (env, dev) = in_user_token_mode(&world).await;
    assert_eq!(env.authz.apps_for(&dev, Capability::Edit).await.unwrap().len(), 100);
    assert_eq!(env.mock.total_requests(), 1, "{:?}", env.mock.request_counts());
    // A listing for `delete` puts each app's check on record, in this mode too.
    assert!(env.authz.apps_for(&dev, Capability::Delete).await.unwrap().is_empty(), "write does not delete");
    let checks = env.authz.audit(&AuditFilter::new()).await.unwrap();
    let checks: Vec<_> = checks.iter().filter(|e| e.action == AuditAction::Check).collect();
    assert_eq!(checks.len(), 100);
    assert!(checks.iter().all(|e| e.outcome == AuditOutcome::Denied && e.actor == "github:1"));
}

/// An installation that sees far more repositories than the apps listed: the listing stops at
/// its first page (its `total_count` says 10 pages, more than looking up the 3 apps' repositories
/// one by one would cost), learns the one app repository it names, and the other two are looked
/// up alone.
#[tokio::test]
async fn a_listing_of_a_few_apps_in_a_large_installation_reads_one_page_of_it() {
    let world = big_org(1000, |i| usize::from([5, 500, 999].contains(&i)));
    let opts = common::Opts { store: Some(seeded(&world).await), ..Default::default() };
    let env = common::env_with(world.clone(), opts).await;
    let view: Vec<String> = env
        .authz
        .apps_for(&env.user("dev"), Capability::View)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id().to_string())
        .collect();
    assert_eq!(view, ["app005"], "write on the first 60 only");
    assert_eq!(env.mock.requests("/installation/repositories"), 1, "{:?}", env.mock.request_counts());
    assert_eq!(
        env.mock.total_requests(),
        1 + 2 + 3,
        "a page, two repositories, three roles: {:?}",
        env.mock.request_counts()
    );
}

/// A change is judged on the app as the store holds it now, not on a cached copy: an id deleted
/// and deployed from another repository since is judged on the new one, even before this
/// replica has heard of the change.
#[tokio::test]
async fn a_change_is_judged_on_the_app_as_it_is_now() {
    let store: Arc<dyn Store> = Arc::new(ghauthz::store::MemoryStore::new());
    let v = common::viewers_on(store.clone()).await;
    let erin_user = Principal::github(v.world.user("erin").unwrap()); // admin on acme/dashboard only
    let held = v.authz.check(&CheckRequest::new(&erin_user, &id("dash"), Capability::View)).await.unwrap();
    assert!(held.is_allowed(), "the app is held in memory now");
    let erin = ChangedBy::Principal(erin_user);
    let event = |action| AuditEvent::new(v.clock.now(), &ghauthz::store::Actor::Operator, &id("dash"), action);
    assert!(store.delete_app(&id("dash"), &event(AuditAction::Delete)).await.unwrap());
    let mut elsewhere = store.app(&id("notes")).await.unwrap().unwrap(); // alice/notes
    elsewhere.id = id("dash");
    store.deploy_app(&elsewhere, &event(AuditAction::Deploy)).await.unwrap();
    let err = v.authz.delete_app(&erin, &id("dash")).await.unwrap_err();
    assert_eq!(err.kind(), "denied", "judged on alice/notes, where erin has no role");
    assert_eq!(store.app(&id("dash")).await.unwrap(), Some(elsewhere));
}

/// An app whose id `deploy_app` would refuse is never allowed `deploy` or `delete` by a check
/// (such a check is not written as an entry), while a support agent's check of it is on record.
#[tokio::test]
async fn an_app_with_an_id_deploy_refuses_is_never_deployed_by_a_check() {
    let store: Arc<dyn Store> = Arc::new(ghauthz::store::MemoryStore::new());
    let v = common::viewers_on(store.clone()).await;
    let long = "x".repeat(300);
    let record = store.app(&id("dash")).await.unwrap().unwrap(); // acme/dashboard: erin is admin
    store.seed_app(&ghauthz::store::AppRecord { id: id(&long), ..record }).await.unwrap();
    let erin = Principal::github(v.world.user("erin").unwrap());
    let before = store.audit(&AuditFilter::new()).await.unwrap().len();
    assert!(
        v.authz.check(&CheckRequest::new(&erin, &id(&long), Capability::Edit)).await.unwrap().is_allowed(),
        "edit as usual"
    );
    for cap in [Capability::Deploy, Capability::Delete] {
        let d = v.authz.check(&CheckRequest::new(&erin, &id(&long), cap)).await.unwrap();
        assert_eq!((d.is_allowed(), d.reason().kind()), (false, "unknown_app"));
    }
    assert_eq!(store.audit(&AuditFilter::new()).await.unwrap().len(), before);
    v.authz.check(&CheckRequest::new(&Principal::support("a7"), &id(&long), Capability::Deploy)).await.unwrap();
    assert_eq!(store.audit(&AuditFilter::new()).await.unwrap().len(), before + 1, "a support check is on record");
}

/// A new deployment's id keeps to the app-id alphabet, its branch is one git accepts and its
/// main file lies inside the repository: nothing else is asked of GitHub or written. An app
/// stored before (an id outside the alphabet) is still checked and deleted as any other.
#[tokio::test]
async fn deployments_name_plain_ids_real_branches_and_files_inside_the_repository() {
    let store: Arc<dyn Store> = Arc::new(ghauthz::store::MemoryStore::new());
    let v = common::viewers_on(store.clone()).await;
    let erin = Principal::github(v.world.user("erin").unwrap());
    let before = v.mock.total_requests();
    let coords = || "acme/dashboard".parse::<RepoCoords>().unwrap();
    let ids = ["da\u{202e}sh", "da\u{200b}sh", "\u{2066}dash", "\u{feff}dash", "d\u{430}sh", "da sh", "-dash", ""];
    for bad in ids {
        let d = Deployment::new(id(bad), coords(), "main", "app.py");
        assert_eq!(v.authz.deploy_app(&erin, &d).await.unwrap_err(), ManageError::InvalidDeployment("app"), "{bad:?}");
    }
    for bad in ["/etc/passwd", "../../x", "src/../../x", "a\0b", "a\u{1}b", "./app.py", "src/", "a\\b", "a\u{202e}b"] {
        let d = Deployment::new(id("fine"), coords(), "main", bad);
        let err = v.authz.deploy_app(&erin, &d).await.unwrap_err();
        assert_eq!(err, ManageError::InvalidDeployment("main_file"), "{bad:?}");
        assert!(!err.to_string().contains(bad), "the value is not repeated: {err}");
    }
    let git_refuses = [
        "a..b", "-x", "x.lock", ".x", "a/.b", "a/", "/a", "a//b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[b", "@",
        "HEAD", "a@{1}", "a.",
    ];
    let spaces = ["main\u{a0}", "main\u{3000}", "ma\u{2002}in", "main\u{2800}"];
    for bad in git_refuses.into_iter().chain(spaces) {
        let d = Deployment::new(id("fine"), coords(), bad, "app.py");
        assert_eq!(
            v.authz.deploy_app(&erin, &d).await.unwrap_err(),
            ManageError::InvalidDeployment("branch"),
            "{bad:?}"
        );
    }
    assert_eq!(v.mock.total_requests(), before, "nothing was asked of GitHub");
    assert!(store.audit(&AuditFilter::new().for_app(id("fine"))).await.unwrap().is_empty(), "nor written");
    let ok = Deployment::new(id("fine-1.v2_x"), coords(), "feature/new-ui", "pages/données.py");
    v.authz.deploy_app(&erin, &ok).await.unwrap();

    // An app stored with an id outside the alphabet is still an app.
    let mut legacy = store.app(&id("dash")).await.unwrap().unwrap();
    legacy.id = id("da\u{202e}sh");
    store.seed_app(&legacy).await.unwrap();
    let d = v.authz.check(&CheckRequest::new(&erin, &legacy.id, Capability::Delete)).await.unwrap();
    assert!(d.is_allowed(), "{d:?}");
    v.authz.delete_app(&ChangedBy::Principal(erin.clone()), &legacy.id).await.unwrap();
    assert_eq!(store.app(&legacy.id).await.unwrap(), None);
    // An app stored under an id deploys refuse (a control character) is never allowed `delete`
    // through a check, but its admin may still delete it.
    legacy.id = id("da\u{7}sh");
    store.seed_app(&legacy).await.unwrap();
    let d = v.authz.check(&CheckRequest::new(&erin, &legacy.id, Capability::Delete)).await.unwrap();
    assert_eq!((d.is_allowed(), d.reason().kind()), (false, "unknown_app"));
    v.authz.delete_app(&ChangedBy::Principal(erin.clone()), &legacy.id).await.unwrap();
    assert_eq!(store.app(&legacy.id).await.unwrap(), None);
    // A refusal about an id outside the alphabet that no app has is not written.
    let err = v.authz.delete_app(&ChangedBy::Principal(erin.clone()), &id("ghost\u{202e}")).await.unwrap_err();
    assert_eq!(err.kind(), "unknown_app");
    assert!(store.audit(&AuditFilter::new().for_app(id("ghost\u{202e}"))).await.unwrap().is_empty());
}
