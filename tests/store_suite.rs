//! One suite for every store backend: what one does, all do.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use std::sync::Arc;

use ghauthz::store::{Actor, AppRecord, AuditAction, MemoryStore, SqliteStore, Store};
use ghauthz::{AppId, Email, RepoId, Timestamp, UserId, Visibility};

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

async fn apps_round_trip(store: &dyn Store) {
    assert_eq!(store.app(&AppId("dash".into())).await.unwrap(), None);
    store.put_app(&app("dash", 1)).await.unwrap();
    store.put_app(&app("alpha", 2)).await.unwrap();
    assert_eq!(store.app(&AppId("dash".into())).await.unwrap(), Some(app("dash", 1)));
    let mut changed = app("dash", 1);
    changed.visibility = Visibility::Public;
    store.put_app(&changed).await.unwrap();
    assert_eq!(store.app(&AppId("dash".into())).await.unwrap(), Some(changed));
    let ids: Vec<String> = store.apps().await.unwrap().into_iter().map(|a| a.id.0).collect();
    assert_eq!(ids, ["alpha", "dash"]);
}

async fn viewers_are_idempotent_and_audited(store: &dyn Store) {
    let dash = AppId("dash".into());
    store.put_app(&app("dash", 1)).await.unwrap();
    let dana = email("dana@example.com");
    assert!(store.add_viewer(&dash, &dana, &Actor::Operator, T).await.unwrap());
    assert!(!store.add_viewer(&dash, &dana, &Actor::Github(UserId(5)), T).await.unwrap(), "already there");
    store.add_viewer(&dash, &email("bo@example.com"), &Actor::Operator, T).await.unwrap();
    assert_eq!(store.viewers(&dash).await.unwrap(), [email("bo@example.com"), dana.clone()]);
    assert!(store.is_viewer(&dash, &dana).await.unwrap());
    assert!(store.remove_viewer(&dash, &dana, &Actor::Github(UserId(5)), T).await.unwrap());
    assert!(!store.remove_viewer(&dash, &dana, &Actor::Operator, T).await.unwrap(), "already gone");
    assert!(!store.is_viewer(&dash, &dana).await.unwrap());
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
    store.put_app(&app("a", 1)).await.unwrap();
    store.put_app(&app("b", 1)).await.unwrap();
    store.add_viewer(&AppId("a".into()), &email("dana@example.com"), &Actor::Operator, T).await.unwrap();
    assert!(!store.is_viewer(&AppId("b".into()), &email("dana@example.com")).await.unwrap());
    assert!(store.viewers(&AppId("b".into())).await.unwrap().is_empty());
}

async fn seeding_happens_once(store: &dyn Store) {
    let seed = vec![(app("dash", 1), vec![email("dana@example.com")])];
    assert!(store.seed_once(&seed, T).await.unwrap());
    store.remove_viewer(&AppId("dash".into()), &email("dana@example.com"), &Actor::Operator, T).await.unwrap();
    assert!(!store.seed_once(&seed, T).await.unwrap(), "a seeded store is not seeded again");
    assert!(store.viewers(&AppId("dash".into())).await.unwrap().is_empty(), "a removed viewer stays removed");
}

macro_rules! suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn apps_round_trip() {
                let (store, _dir) = $make.await;
                super::apps_round_trip(&*store).await;
            }

            #[tokio::test]
            async fn viewers_are_idempotent_and_audited() {
                let (store, _dir) = $make.await;
                super::viewers_are_idempotent_and_audited(&*store).await;
            }

            #[tokio::test]
            async fn viewers_of_one_app_are_not_another_apps() {
                let (store, _dir) = $make.await;
                super::viewers_of_one_app_are_not_another_apps(&*store).await;
            }

            #[tokio::test]
            async fn seeding_happens_once() {
                let (store, _dir) = $make.await;
                super::seeding_happens_once(&*store).await;
            }
        }
    };
}

async fn memory() -> (Arc<dyn Store>, Option<tempfile::TempDir>) {
    (Arc::new(MemoryStore::new()), None)
}

async fn sqlite() -> (Arc<dyn Store>, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("ghauthz.db")).await.unwrap();
    (Arc::new(store), Some(dir))
}

suite!(memory_store, memory());
suite!(sqlite_store, sqlite());

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
    assert!(store.is_viewer(&AppId("dash".into()), &email("dana@example.com")).await.unwrap());
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
async fn an_unreadable_file_is_unavailable_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-db");
    std::fs::write(&path, b"this is not an sqlite file, it is just text that goes on for a while").unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(err, ghauthz::store::StoreError::Unavailable(_)), "{err:?}");
}
