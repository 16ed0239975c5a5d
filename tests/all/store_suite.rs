//! One suite for every store backend (in memory, SQLite, Postgres): what one does, all do.
#![cfg(all(feature = "world", feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use crate::common;
use ghauthz::CheckRequest;
use ghauthz::store::prelude::*;

use std::sync::Arc;
use std::time::Duration;

use common::Backend;
use ghauthz::store::{
    Actor, AppRecord, AuditAction, Broadcast, DELIVERY_RETENTION, PgStore, PgStoreOptions, Redemption, SqliteStore,
    Store, StoreError,
};
use ghauthz::{AppId, Email, Invalidation, RepoId, Timestamp, UserId, Visibility};

fn app(id: &str, by: u64) -> AppRecord {
    AppRecord {
        id: AppId(id.into()),
        owner: "acme".into(),
        repo: format!("{id}-repo"),
        repo_id: RepoId(100 + by),
        branch: "main".into(),
        main_file: "app.py".into(),
        visibility: Visibility::Private,
        deployed_by: UserId(by),
    }
}

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

const T: Timestamp = Timestamp(1_795_000_000_000);

/// A link for `email` on `app`, issued at `T` for 15 minutes, as `Store::issue_link` takes it.
fn new_link(hash: [u8; 32], app: &AppId, email: &Email) -> ghauthz::store::LinkRecord {
    ghauthz::store::LinkRecord {
        hash,
        app: app.clone(),
        email: email.clone(),
        issued_at: T,
        expires_at: T.plus(Duration::from_secs(900)),
        used_at: None,
        grant: None,
    }
}

async fn apps_round_trip(store: &dyn Store) {
    assert_eq!(store.app(&AppId("dash".into())).await.unwrap(), None);
    store.seed_app(&app("dash", 1)).await.unwrap();
    store.seed_app(&app("alpha", 2)).await.unwrap();
    assert_eq!(store.app(&AppId("dash".into())).await.unwrap(), Some(app("dash", 1)));
    let mut changed = app("dash", 1);
    changed.visibility = Visibility::Public;
    store.seed_app(&changed).await.unwrap();
    assert_eq!(store.app(&AppId("dash".into())).await.unwrap(), Some(changed));
    let ids: Vec<String> = store.apps().await.unwrap().into_iter().map(|a| a.id.0).collect();
    assert_eq!(ids, ["alpha", "dash"]);
}

async fn viewers_are_idempotent_and_audited(store: &dyn Store) {
    let dash = AppId("dash".into());
    store.seed_app(&app("dash", 1)).await.unwrap();
    let dana = email("dana@example.com");
    assert!(store.add_viewer(&dash, &dana, &Actor::Operator, T).await.unwrap());
    assert!(!store.add_viewer(&dash, &dana, &Actor::Github(UserId(5)), T).await.unwrap(), "already there");
    store.add_viewer(&dash, &email("bo@example.com"), &Actor::Operator, T).await.unwrap();
    assert_eq!(store.viewers(&dash).await.unwrap(), [email("bo@example.com"), dana.clone()]);
    assert!(store.grant(&dash, &dana).await.unwrap().is_some());
    assert!(store.remove_viewer(&dash, &dana, &Actor::Github(UserId(5)), T).await.unwrap());
    assert!(!store.remove_viewer(&dash, &dana, &Actor::Operator, T).await.unwrap(), "already gone");
    assert!(store.grant(&dash, &dana).await.unwrap().is_none());
    let log = store.audit_log().await.unwrap();
    let seen: Vec<(AuditAction, String, Option<String>)> =
        log.iter().map(|e| (e.action, e.actor.clone(), e.email.as_ref().map(|m| m.to_string()))).collect();
    assert_eq!(
        seen,
        [
            (AuditAction::ViewerAdded, "operator".into(), Some("dana@example.com".into())),
            (AuditAction::ViewerAdded, "operator".into(), Some("bo@example.com".into())),
            (AuditAction::ViewerRemoved, "github:5".into(), Some("dana@example.com".into())),
        ],
        "no-op changes are not audited"
    );
}

async fn viewers_of_one_app_are_not_another_apps(store: &dyn Store) {
    store.seed_app(&app("a", 1)).await.unwrap();
    store.seed_app(&app("b", 1)).await.unwrap();
    store.add_viewer(&AppId("a".into()), &email("dana@example.com"), &Actor::Operator, T).await.unwrap();
    assert!(store.grant(&AppId("b".into()), &email("dana@example.com")).await.unwrap().is_none());
    assert!(store.viewers(&AppId("b".into())).await.unwrap().is_empty());
}

async fn seeding_happens_once(store: &dyn Store) {
    let seed = vec![(app("dash", 1), vec![email("dana@example.com")])];
    assert!(store.seed_once(&seed, T).await.unwrap());
    store.remove_viewer(&AppId("dash".into()), &email("dana@example.com"), &Actor::Operator, T).await.unwrap();
    assert!(!store.seed_once(&seed, T).await.unwrap(), "a seeded store is not seeded again");
    assert!(store.viewers(&AppId("dash".into())).await.unwrap().is_empty(), "a removed viewer stays removed");
}

async fn deliveries_are_recorded_once_and_forgotten_after_retention(store: &dyn Store) {
    let b = Broadcast::invalidations(1, vec![Invalidation::Repo(RepoId(101))]);
    assert!(store.record_delivery("d-1", T, &b).await.unwrap());
    assert!(!store.record_delivery("d-1", T.plus(Duration::from_secs(3600)), &b).await.unwrap(), "a redelivery");
    assert!(store.record_delivery("d-2", T, &b).await.unwrap());
    let later = T.plus(DELIVERY_RETENTION + Duration::from_secs(1));
    assert!(store.record_delivery("d-1", later, &b).await.unwrap(), "remembered for the retention only");
}

async fn link_records_round_trip(store: &dyn Store) {
    use ghauthz::store::{IssueLimit, IssueOutcome, LinkRecord};
    let dash = AppId("dash".into());
    store.seed_app(&app("dash", 1)).await.unwrap();
    let dana = email("dana@example.com");
    let link = new_link([7; 32], &dash, &dana);
    let limit = IssueLimit::new(1, Duration::from_secs(60));
    assert_eq!(store.issue_link(&link, limit).await.unwrap(), IssueOutcome::NotInvited);
    store.add_viewer(&dash, &dana, &Actor::Operator, T).await.unwrap();
    assert_eq!(store.issue_link(&link, limit).await.unwrap(), IssueOutcome::Issued);
    let second = LinkRecord { hash: [8; 32], ..link.clone() };
    assert_eq!(
        store.issue_link(&second, limit).await.unwrap(),
        IssueOutcome::RateLimited { retry_at: T.plus(Duration::from_secs(60)) }
    );
    let grant = store.grant(&dash, &dana).await.unwrap();
    assert!(grant.is_some());
    assert_eq!(
        store.link(&[7; 32]).await.unwrap(),
        Some(LinkRecord { grant, ..link.clone() }),
        "issued under the grant"
    );
    assert_eq!(store.link(&[8; 32]).await.unwrap(), None, "a limited link is not stored");
    assert!(
        !store.use_link(&Redemption::new([7; 32], T.plus(Duration::from_secs(900)))).await.unwrap(),
        "expired at its end"
    );
    assert!(store.use_link(&Redemption::new([7; 32], T.plus(Duration::from_secs(10)))).await.unwrap());
    assert!(!store.use_link(&Redemption::new([7; 32], T.plus(Duration::from_secs(11)))).await.unwrap(), "once");
    let used = store.link(&[7; 32]).await.unwrap().unwrap();
    assert_eq!(used.used_at, Some(T.plus(Duration::from_secs(10))));
}

async fn an_ended_grant_never_comes_back(store: &dyn Store) {
    use ghauthz::store::{IssueLimit, IssueOutcome};
    let dash = AppId("dash".into());
    store.seed_app(&app("dash", 1)).await.unwrap();
    let (dana, bo) = (email("dana@example.com"), email("bo@example.com"));
    store.add_viewer(&dash, &dana, &Actor::Operator, T).await.unwrap();
    store.add_viewer(&dash, &bo, &Actor::Operator, T).await.unwrap();
    let first = store.grant(&dash, &dana).await.unwrap().unwrap();
    let link = new_link([9; 32], &dash, &dana);
    let limit = IssueLimit::new(5, Duration::from_secs(60));
    assert_eq!(store.issue_link(&link, limit).await.unwrap(), IssueOutcome::Issued);
    // The newest grant removed and the address invited again: the id is new, not the one freed.
    store.remove_viewer(&dash, &bo, &Actor::Operator, T).await.unwrap();
    store.remove_viewer(&dash, &dana, &Actor::Operator, T).await.unwrap();
    store.add_viewer(&dash, &dana, &Actor::Operator, T).await.unwrap();
    let second = store.grant(&dash, &dana).await.unwrap().unwrap();
    assert!(second > first, "grant ids are never reused: {first} then {second}");
    assert_eq!(store.grant(&dash, &bo).await.unwrap(), None);
    assert_eq!(store.link(&[9; 32]).await.unwrap().unwrap().grant, Some(first));
    assert!(
        !store.use_link(&Redemption::new([9; 32], T.plus(Duration::from_secs(1)))).await.unwrap(),
        "the link's grant ended"
    );
}

async fn a_viewer_for_a_missing_app_is_refused(store: &dyn Store) {
    let err = store.add_viewer(&AppId("ghost".into()), &email("dana@example.com"), &Actor::Operator, T).await;
    assert!(matches!(err, Err(StoreError::Corrupt(_))), "{err:?}");
    assert!(store.viewers(&AppId("ghost".into())).await.unwrap().is_empty());
}

/// Writes that read before they write (a visibility change, a deletion) do not fail when other
/// writers commit between their read and their write: they wait their turn.
async fn writes_that_read_first_wait_for_other_writers(store: &dyn Store) {
    let dash = AppId("dash".into());
    store.seed_app(&app("dash", 1)).await.unwrap();
    let event = |app: &AppId, action| ghauthz::store::AuditEvent::new(T, &Actor::Operator, app, action);
    let flips = async {
        for i in 0..40 {
            let to = if i % 2 == 0 { Visibility::Public } else { Visibility::Private };
            store.set_visibility(&dash, to, &event(&dash, AuditAction::Visibility)).await?;
        }
        Ok::<_, StoreError>(())
    };
    let records = async {
        for _ in 0..120 {
            store.record(&event(&dash, AuditAction::SupportCheck), None).await?;
        }
        Ok(())
    };
    let deletions = async {
        for i in 0..20 {
            let other = app(&format!("x{i}"), 2);
            store.seed_app(&other).await?;
            assert!(store.delete_app(&other.id, &event(&other.id, AuditAction::Delete)).await?);
        }
        Ok(())
    };
    let done = tokio::try_join!(flips, records, deletions);
    assert!(done.is_ok(), "{done:?}");
}

/// Shared rosters: kept by repository, a newer confirmation replacing an older one (never the
/// reverse); an invalidation recorded through the feed (a delivery or a publish) after a
/// roster's fetch began, and covering it (every roster, its owner's, its repository's), makes
/// it stale; one covering another owner or repository does not, nor one from before its fetch.
async fn shared_rosters_are_stale_once_an_invalidation_covers_them(store: &dyn Store) {
    use ghauthz::store::SharedRoster;
    use ghauthz::{OwnerId, Role, RoleGrant, RoleName};
    let writer = RoleGrant::standard(Role::Write);
    let custom = RoleGrant { role: Role::Maintain, name: RoleName::Custom("deployer".into()) };
    let roles = vec![(UserId(3), writer.clone()), (UserId(10), custom)];
    let seen = store.fact_epoch().await.unwrap();
    let roster = |repo: u64, at: u64, roles: Option<Vec<(UserId, RoleGrant)>>, seen: u64| {
        let at = T.plus(Duration::from_secs(at));
        SharedRoster::new(RepoId(repo), OwnerId(5000), Role::Write, roles, (at, at), seen)
    };
    assert_eq!(store.roster(RepoId(101)).await.unwrap(), None);
    store.put_roster(&roster(101, 10, Some(roles.clone()), seen)).await.unwrap();
    store.put_roster(&roster(102, 10, None, seen)).await.unwrap();
    assert_eq!(store.roster(RepoId(101)).await.unwrap(), Some(roster(101, 10, Some(roles.clone()), seen)));
    assert_eq!(store.roster(RepoId(102)).await.unwrap(), Some(roster(102, 10, None, seen)), "refused, as such");
    // An older confirmation never replaces a newer one; a newer one does.
    store.put_roster(&roster(101, 5, Some(vec![]), seen)).await.unwrap();
    assert_eq!(store.roster(RepoId(101)).await.unwrap().unwrap().roles, Some(roles.clone()));
    store.put_roster(&roster(101, 20, Some(vec![(UserId(3), writer.clone())]), seen)).await.unwrap();
    assert_eq!(store.roster(RepoId(101)).await.unwrap().unwrap().roles.unwrap().len(), 1);
    // One confirmed at the same time (another replica's, fetched later) replaces it too.
    store.put_roster(&roster(101, 20, Some(vec![]), seen + 1)).await.unwrap();
    assert_eq!(store.roster(RepoId(101)).await.unwrap().unwrap().seen, seen + 1);
    store.put_roster(&roster(101, 20, Some(vec![(UserId(3), writer.clone())]), seen)).await.unwrap();

    // Invalidations of someone else's: nothing stale.
    let other = [
        Invalidation::Repo(RepoId(999)),
        Invalidation::Owner(OwnerId(77)),
        Invalidation::UserInOwner(UserId(3), OwnerId(77)),
    ];
    store.publish(&Broadcast::invalidations(7, other.to_vec())).await.unwrap();
    assert!(store.fact_epoch().await.unwrap() > seen, "each invalidation is recorded");
    assert!(store.roster(RepoId(101)).await.unwrap().is_some());
    // Carol removed from 101, by a delivery: 101 is stale, 102 is not.
    let removed = Broadcast::invalidations(7, vec![Invalidation::UserOnRepo(UserId(3), RepoId(101))]);
    assert!(store.record_delivery("d-shared", T, &removed).await.unwrap());
    assert_eq!(store.roster(RepoId(101)).await.unwrap(), None, "stale once a covering invalidation is recorded");
    assert!(store.roster(RepoId(102)).await.unwrap().is_some());
    // Fetched again from now on: served.
    let now = store.fact_epoch().await.unwrap();
    store.put_roster(&roster(101, 30, Some(vec![]), now)).await.unwrap();
    assert_eq!(store.roster(RepoId(101)).await.unwrap().unwrap().roles, Some(vec![]));
    // The owner's invalidation covers both; so does a user's everywhere.
    store.publish(&Broadcast::invalidations(7, vec![Invalidation::Owner(OwnerId(5000))])).await.unwrap();
    assert_eq!((store.roster(RepoId(101)).await.unwrap(), store.roster(RepoId(102)).await.unwrap()), (None, None));
    let now = store.fact_epoch().await.unwrap();
    store.put_roster(&roster(101, 40, Some(vec![]), now)).await.unwrap();
    store.publish(&Broadcast::invalidations(7, vec![Invalidation::User(UserId(42))])).await.unwrap();
    assert_eq!(store.roster(RepoId(101)).await.unwrap(), None);
    // An account's deletion takes every shared roster with it (they may list the account).
    let now = store.fact_epoch().await.unwrap();
    store.put_roster(&roster(101, 50, Some(roles), now)).await.unwrap();
    store.delete_account(UserId(3), T).await.unwrap();
    assert_eq!(store.roster(RepoId(101)).await.unwrap(), None);
}

/// Shared repository lookups: kept by coordinates (whatever their case); a repository found is
/// made stale by its own or its owner's invalidation, nothing found by any repository's or
/// owner's (one of them may have made it).
async fn shared_repository_lookups_are_stale_once_an_invalidation_covers_them(store: &dyn Store) {
    use ghauthz::store::SharedRepo;
    use ghauthz::{OwnerId, RepoCoords};
    let coords = |s: &str| s.parse::<RepoCoords>().unwrap();
    let seen = store.fact_epoch().await.unwrap();
    let found = |seen: u64| {
        SharedRepo::new(coords("acme/dashboard"), Some((RepoId(101), OwnerId(5000))), (true, false), (T, T), seen)
    };
    let nothing = |seen: u64| SharedRepo::new(coords("acme/nope"), None, (false, true), (T, T), seen);
    assert_eq!(store.repo(&coords("acme/dashboard")).await.unwrap(), None);
    store.put_repo(&found(seen)).await.unwrap();
    store.put_repo(&nothing(seen)).await.unwrap();
    assert_eq!(store.repo(&coords("ACME/Dashboard")).await.unwrap(), Some(found(seen)), "any case");
    assert_eq!(store.repo(&coords("acme/nope")).await.unwrap(), Some(nothing(seen)));
    // Another repository's invalidation: the one found stands; "nothing there" does not.
    store.publish(&Broadcast::invalidations(7, vec![Invalidation::Repo(RepoId(999))])).await.unwrap();
    assert!(store.repo(&coords("acme/dashboard")).await.unwrap().is_some());
    assert_eq!(store.repo(&coords("acme/nope")).await.unwrap(), None);
    // Its owner's: stale.
    store.publish(&Broadcast::invalidations(7, vec![Invalidation::Owner(OwnerId(5000))])).await.unwrap();
    assert_eq!(store.repo(&coords("acme/dashboard")).await.unwrap(), None);
    let now = store.fact_epoch().await.unwrap();
    store.put_repo(&found(now)).await.unwrap();
    assert!(store.repo(&coords("acme/dashboard")).await.unwrap().is_some(), "looked up again: served");
    store.delete_account(UserId(3), T).await.unwrap();
    assert_eq!(store.repo(&coords("acme/dashboard")).await.unwrap(), None, "an account's deletion takes them too");
}

/// One test of the suite on one backend; skipped (said on stderr) where the backend is absent.
macro_rules! case {
    ($kind:expr, $name:ident) => {
        #[tokio::test]
        async fn $name() {
            let Some((store, _guard)) = common::store_of($kind).await else { return };
            super::$name(&*store).await;
        }
    };
}

macro_rules! suite {
    ($backend:ident, $kind:expr) => {
        mod $backend {
            use super::*;

            case!($kind, apps_round_trip);
            case!($kind, viewers_are_idempotent_and_audited);
            case!($kind, viewers_of_one_app_are_not_another_apps);
            case!($kind, seeding_happens_once);
            case!($kind, deliveries_are_recorded_once_and_forgotten_after_retention);
            case!($kind, link_records_round_trip);
            case!($kind, a_viewer_for_a_missing_app_is_refused);
            case!($kind, an_ended_grant_never_comes_back);
            case!($kind, writes_that_read_first_wait_for_other_writers);
            case!($kind, shared_rosters_are_stale_once_an_invalidation_covers_them);
            case!($kind, shared_repository_lookups_are_stale_once_an_invalidation_covers_them);
        }
    };
}

suite!(memory_store, Backend::Memory);
suite!(sqlite_store, Backend::Sqlite);
suite!(postgres_store, Backend::Postgres);

#[tokio::test]
async fn sqlite_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ghauthz.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.seed_once(&[(app("dash", 1), vec![email("dana@example.com")])], T).await.unwrap();
        store.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(store.grant(&AppId("dash".into()), &email("dana@example.com")).await.unwrap().is_some());
    assert!(!store.seed_once(&[], T).await.unwrap());
    assert_eq!(store.audit_log().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_opens_seed_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ghauthz.db");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let path = path.clone();
        tasks.spawn(async move {
            let store = SqliteStore::open(&path).await.unwrap();
            store.seed_once(&[(app("dash", 1), vec![email("dana@example.com")])], T).await.unwrap()
        });
    }
    let mut seeded = 0;
    while let Some(r) = tasks.join_next().await {
        seeded += usize::from(r.unwrap());
    }
    assert_eq!(seeded, 1);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.audit_log().await.unwrap().len(), 1);
}

#[tokio::test]
async fn postgres_survives_a_restart() {
    let Some(url) = common::pg_url() else { return };
    let opts = PgStoreOptions::new(url).schema(common::fresh_schema());
    {
        let store = PgStore::connect_with(opts.clone()).await.unwrap();
        store.seed_once(&[(app("dash", 1), vec![email("dana@example.com")])], T).await.unwrap();
        store.close().await;
    }
    let store = PgStore::connect_with(opts).await.unwrap();
    assert!(store.grant(&AppId("dash".into()), &email("dana@example.com")).await.unwrap().is_some());
    assert!(!store.seed_once(&[], T).await.unwrap());
    assert_eq!(store.audit_log().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_first_connects_migrate_and_seed_exactly_once() {
    let Some(url) = common::pg_url() else { return };
    let opts = PgStoreOptions::new(url).schema(common::fresh_schema());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let opts = opts.clone();
        tasks.spawn(async move {
            let store = PgStore::connect_with(opts).await.unwrap();
            store.seed_once(&[(app("dash", 1), vec![email("dana@example.com")])], T).await.unwrap()
        });
    }
    let mut seeded = 0;
    while let Some(r) = tasks.join_next().await {
        seeded += usize::from(r.unwrap());
    }
    assert_eq!(seeded, 1);
    let store = PgStore::connect_with(opts).await.unwrap();
    assert_eq!(store.audit_log().await.unwrap().len(), 1);
}

#[tokio::test]
async fn postgres_bad_configuration_is_a_clear_error() {
    let Some(url) = common::pg_url() else { return };
    let err = PgStore::connect_with(PgStoreOptions::new(url).schema("Robert'); DROP TABLE apps;--")).await;
    assert!(matches!(err, Err(StoreError::InvalidConfig(_))), "{err:?}");
    let err = PgStore::connect("mysql://nope").await;
    assert!(matches!(err, Err(StoreError::InvalidConfig(_))), "{err:?}");
    // Nothing listens on port 1: unavailable, within the acquire timeout.
    let err = PgStore::connect_with(
        PgStoreOptions::new("postgres://postgres@127.0.0.1:1/test").acquire_timeout(Duration::from_millis(500)),
    )
    .await;
    assert!(matches!(err, Err(StoreError::Unavailable(_))), "{err:?}");
}

#[tokio::test]
async fn an_unreadable_file_is_unavailable_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-db");
    std::fs::write(&path, b"this is not an sqlite file, it is just text that goes on for a while").unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(err, ghauthz::store::StoreError::Unavailable(_)), "{err:?}");
}

// ---- stores written by the schema before grant ids (fixtures/stores/README.md) ----

const FRANK_BEFORE_REMOVAL: [&str; 2] =
    ["gl1_s0AEioYr1rr-tpwqMgGDCVKrxLpD3SMGimE8PbTFqos", "gl1_GgLN9-gwy534C8SHuHJvCZ-vGYNIGQWTDDfMrdBMu8M"];
const DANA_OUTSTANDING: [&str; 2] =
    ["gl1_rtm53P_TSI0f0LVQa83hXVMYiqCAedMXAse-5W91dj0", "gl1_v52QW8yhqbwWKRFI2mJ4bxcGj4Rh-BwJskwMXED0JbA"];

/// What a store migrated from the previous schema must show: everything kept, the link issued
/// before frank was invited again revoked, dana's outstanding link still good, new grants working.
async fn migrated_store_keeps_everything_and_revokes_the_stale_link(store: Arc<dyn Store>, which: usize) {
    use ghauthz::{ChangedBy, LinkError};
    let env = common::viewers_on(store.clone()).await;
    env.clock.advance(Duration::from_secs(7 * 60)); // 10:07, as the fixture's links were issued at 10:02 and 10:05
    let (a, dash) = (&env.authz, AppId("dash".into()));
    assert_eq!(store.viewers(&dash).await.unwrap(), [email("dana@example.com"), email("frank@example.com")]);
    assert_eq!(store.audit_log().await.unwrap().len(), 8, "the audit log is kept");
    assert_eq!(a.inspect_link(FRANK_BEFORE_REMOVAL[which]).await.unwrap_err(), LinkError::Revoked);
    assert_eq!(a.redeem_link(FRANK_BEFORE_REMOVAL[which], None).await.unwrap_err(), LinkError::Revoked);
    let session = a.redeem_link(DANA_OUTSTANDING[which], Some(&dash)).await.unwrap();
    assert!(
        a.check(&CheckRequest::session(session.token.expose_secret(), &dash, ghauthz::Capability::View))
            .await
            .unwrap()
            .is_allowed()
    );
    let frank = a.issue_link(&dash, "frank@example.com").await.unwrap();
    a.redeem_link(frank.token.expose_secret(), None).await.unwrap();
    // A grant made after the migration gets an id above every migrated one.
    a.add_viewer(&ChangedBy::Operator, &dash, "gus@example.com").await.unwrap();
    let gus = store.grant(&dash, &email("gus@example.com")).await.unwrap().unwrap();
    for old in ["dana@example.com", "frank@example.com"] {
        assert!(store.grant(&dash, &email(old)).await.unwrap().unwrap() < gus);
    }
}

#[tokio::test]
async fn an_sqlite_store_of_the_previous_schema_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.sqlite");
    std::fs::copy(common::fixture_path("stores/sqlite-v2.sqlite"), &path).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    migrated_store_keeps_everything_and_revokes_the_stale_link(store, 0).await;
    // Opening the migrated file again changes nothing.
    let again = SqliteStore::open(&path).await.unwrap();
    assert_eq!(again.viewers(&AppId("dash".into())).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_postgres_store_of_the_previous_schema_is_migrated() {
    let Some(url) = common::pg_url() else { return };
    let schema = common::fresh_schema();
    let dump = std::fs::read_to_string(common::fixture_path("stores/postgres-v1.sql")).unwrap();
    let script = format!("CREATE SCHEMA {schema};\n{}", dump.replace("public.", &format!("{schema}.")));
    let mut psql = std::process::Command::new("psql")
        .args([url.as_str(), "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql runs");
    std::io::Write::write_all(&mut psql.stdin.take().unwrap(), script.as_bytes()).unwrap();
    assert!(psql.wait().unwrap().success(), "the previous schema's dump loads");
    let store: Arc<dyn Store> = Arc::new(PgStore::connect_with(PgStoreOptions::new(url).schema(schema)).await.unwrap());
    migrated_store_keeps_everything_and_revokes_the_stale_link(store, 1).await;
}

/// A follower of an SQLite change log that falls behind the log's retention (another process
/// pruned changes it had not read) forgets everything it cached, and listens again from the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_follower_behind_the_logs_retention_forgets_everything() {
    use ghauthz::{Capability, Source};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ghauthz.db");
    let env = common::viewers_on(Arc::new(SqliteStore::open(&path).await.unwrap())).await;
    let (a, dash) = (&env.authz, AppId("dash".into()));
    common::wait_until("the authorizer follows the log", Duration::from_secs(5), || a.stats().feed_listening).await;
    let link = a.issue_link(&dash, "dana@example.com").await.unwrap();
    let token = a.redeem_link(link.token.expose_secret(), None).await.unwrap().token.expose_secret().to_owned();
    for source in [Source::Store, Source::Cache] {
        assert_eq!(a.check(&CheckRequest::session(&token, &dash, Capability::View)).await.unwrap().source(), source);
    }
    let resyncs = a.stats().resyncs;
    // Another process keeps no change at all: a burst of changes to another app, each pruning
    // the one before, faster than the follower polls (every 100 ms).
    let other = SqliteStore::open(&path).await.unwrap().change_retention(Duration::ZERO);
    let notes = other.app(&AppId("notes".into())).await.unwrap().unwrap();
    for _ in 0..20 {
        other.seed_app(&notes).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    common::wait_until("the follower finds itself behind, and listens again", Duration::from_secs(2), || {
        a.stats().resyncs >= resyncs + 2 && a.stats().feed_listening
    })
    .await;
    let d = a.check(&CheckRequest::session(&token, &dash, Capability::View)).await.unwrap();
    assert_eq!((d.is_allowed(), d.source()), (true, Source::Store), "dash's grant was forgotten too");
}

/// The SQLite store holds addresses and link hashes: the file SQLite writes, and its `-wal` and
/// `-shm` files, are readable by their owner only, whatever the umask.
#[cfg(unix)]
#[tokio::test]
async fn an_sqlite_store_is_created_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ghauthz.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.seed_once(&[(app("dash", 1), vec![email("dana@example.com")])], T).await.unwrap();
    for name in ["ghauthz.db", "ghauthz.db-wal", "ghauthz.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}: {mode:o}");
    }
    store.close().await;
}

/// A store error keeps the backend's own error as its source, not only its text.
#[tokio::test]
async fn a_store_error_keeps_the_backends_error_as_its_source() {
    use std::error::Error as _;
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(dir.path().join("missing").join("ghauthz.db")).await.unwrap_err();
    assert_eq!(err.kind(), "store_unavailable", "{err}");
    let cause = err.source().and_then(|failure| failure.source()).expect("the backend's error");
    assert!(cause.downcast_ref::<std::io::Error>().is_some(), "{cause:?}");
}
