//! Data deletion: an app leaves only its coordinates; an account leaves nothing.
#![cfg(all(feature = "world", feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use crate::common;
use ghauthz::CheckRequest;
use ghauthz::store::prelude::*;

use std::sync::Arc;

use ghauthz::store::{AuditAction, AuditFilter, AuditOutcome, DELETED_ACCOUNT, DeletedApp, SqliteStore, Store};
use ghauthz::world::MockGithub;
use ghauthz::{AppId, Authorizer, Capability, ChangedBy, LinkError, ManageError, Principal, SupportGrant, UserId};
use sqlx::{Connection as _, Row};

async fn authz_on(store: Arc<dyn Store>) -> (Authorizer, ghauthz::world::World, MockGithub) {
    let v = common::viewers_on(store).await;
    (v.authz, v.world, v.mock)
}

fn id(s: &str) -> AppId {
    AppId(s.into())
}

async fn deleting_an_app_keeps_only_its_coordinates(store: Arc<dyn Store>) {
    let (authz, world, _mock) = authz_on(store.clone()).await;
    authz.add_viewer(&ChangedBy::Operator, &id("dash"), "eve@example.com").await.unwrap();
    let link = authz.issue_link(&id("dash"), "dana@example.com").await.unwrap().token.expose_secret().to_owned();
    let session = authz.redeem_link(&link, None).await.unwrap().token.expose_secret().to_owned();
    let unused = authz.issue_link(&id("dash"), "eve@example.com").await.unwrap().token.expose_secret().to_owned();

    let carol = ChangedBy::Principal(Principal::github(world.user("carol").unwrap()));
    assert!(
        matches!(authz.delete_app(&carol, &id("dash")).await, Err(ManageError::Denied { .. })),
        "write cannot delete"
    );
    let erin = ChangedBy::Principal(Principal::github(world.user("erin").unwrap()));
    authz.delete_app(&erin, &id("dash")).await.unwrap();

    assert_eq!(store.app(&id("dash")).await.unwrap(), None);
    assert!(store.viewers(&id("dash")).await.unwrap().is_empty());
    let audit = store.audit(&AuditFilter::new().for_app(id("dash"))).await.unwrap();
    assert!(audit.iter().all(|e| e.email.is_none()), "no audit entry keeps its addresses: {audit:#?}");
    let deletions: Vec<(&str, AuditOutcome)> =
        audit.iter().filter(|e| e.action == AuditAction::Delete).map(|e| (e.actor.as_str(), e.outcome)).collect();
    assert_eq!(
        deletions,
        [("github:5", AuditOutcome::Allowed), ("github:3", AuditOutcome::Denied)],
        "the deletion and the refusal stay on record, newest first"
    );
    assert!(audit.iter().any(|e| e.action == AuditAction::LinkRedeemed), "the app's history stays, without addresses");
    assert_eq!(authz.inspect_link(&unused).await.unwrap_err(), LinkError::Invalid, "outstanding links are gone");
    let viewer = Principal::Viewer(authz.verify_session(&session).unwrap());
    let d = authz.check(&CheckRequest::new(&viewer, &id("dash"), Capability::View)).await.unwrap();
    assert_eq!((d.is_allowed(), d.reason().kind()), (false, "unknown_app"), "sessions open nothing");
    assert_eq!(
        store.deleted_apps().await.unwrap(),
        [DeletedApp {
            owner: "acme".into(),
            repo: "dashboard".into(),
            branch: "main".into(),
            main_file: "streamlit_app.py".into(),
            deployed_by: UserId(5)
        }]
    );
    assert!(store.app(&id("notes")).await.unwrap().is_some(), "other apps stay");
}

async fn deleting_an_account_leaves_nothing_of_its_apps(store: Arc<dyn Store>) {
    let (authz, _world, _mock) = authz_on(store.clone()).await;
    authz.delete_app(&ChangedBy::Operator, &id("legacy")).await.unwrap();
    let mut deleted = authz.delete_account(UserId(5)).await.unwrap();
    deleted.sort();
    assert_eq!(deleted, [id("dash")], "erin's remaining app");
    assert!(store.apps().await.unwrap().iter().all(|a| a.deployed_by != UserId(5)));
    assert!(store.deleted_apps().await.unwrap().is_empty(), "the coordinates records go too");
    assert!(store.app(&id("site")).await.unwrap().is_some(), "carol's apps stay");
    assert!(authz.delete_account(UserId(5)).await.unwrap().is_empty());
    let audit = store.audit_log().await.unwrap();
    assert!(audit.iter().all(|e| e.app != id("dash") && e.app != id("legacy")), "its apps' entries go: {audit:#?}");
    assert!(audit.iter().all(|e| e.actor != "github:5"), "the identity is gone from the rest");
}

/// An account's entries in other people's apps stay, with the identity replaced.
async fn a_deleted_account_is_a_placeholder_in_other_apps(store: Arc<dyn Store>) {
    let (authz, world, _mock) = authz_on(store.clone()).await;
    let erin = ChangedBy::Principal(Principal::github(world.user("erin").unwrap()));
    // erin (id 5) may not delete carol's app: the refusal is on carol's app's record.
    assert!(authz.delete_app(&erin, &id("site")).await.is_err());
    authz.delete_account(UserId(5)).await.unwrap();
    let site = store.audit(&AuditFilter::new().for_app(id("site"))).await.unwrap();
    let refusal = site.iter().find(|e| e.action == AuditAction::Delete).expect("the refusal stays");
    assert_eq!((refusal.actor.as_str(), refusal.outcome), (DELETED_ACCOUNT, AuditOutcome::Denied));
}

macro_rules! suite {
    ($backend:ident, $kind:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn deleting_an_app_keeps_only_its_coordinates() {
                let Some((store, _guard)) = common::store_of($kind).await else { return };
                super::deleting_an_app_keeps_only_its_coordinates(store).await;
            }

            #[tokio::test]
            async fn deleting_an_account_leaves_nothing_of_its_apps() {
                let Some((store, _guard)) = common::store_of($kind).await else { return };
                super::deleting_an_account_leaves_nothing_of_its_apps(store).await;
            }

            #[tokio::test]
            async fn a_deleted_account_is_a_placeholder_in_other_apps() {
                let Some((store, _guard)) = common::store_of($kind).await else { return };
                super::a_deleted_account_is_a_placeholder_in_other_apps(store).await;
            }
        }
    };
}

suite!(memory, common::Backend::Memory);
suite!(sqlite, common::Backend::Sqlite);
suite!(postgres, common::Backend::Postgres);

/// Every row of every table, as text.
async fn dump(path: &std::path::Path) -> Vec<String> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut rows = Vec::new();
    for t in tables {
        let cols: Vec<String> = sqlx::query(&format!("PRAGMA table_info({t})"))
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .collect();
        let expr = cols.iter().map(|c| format!("quote({c})")).collect::<Vec<_>>().join(" || '|' || ");
        let sql = format!("SELECT '{t}|' || {expr} FROM {t}");
        rows.extend(sqlx::query_scalar::<_, String>(&sql).fetch_all(&pool).await.unwrap());
    }
    pool.close().await;
    rows
}

#[tokio::test]
async fn a_scan_of_every_table_finds_no_trace_of_a_deleted_app() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let (authz, _world, _mock) = authz_on(store.clone()).await;
    authz.add_viewer(&ChangedBy::Operator, &id("dash"), "eve@example.com").await.unwrap();
    authz.issue_link(&id("dash"), "eve@example.com").await.unwrap();
    authz.grant_support(&ChangedBy::Operator, &id("dash"), &SupportGrant::new("reason-canary")).await.unwrap();
    let before = dump(&path).await;
    assert!(before.iter().any(|r| r.contains("reason-canary")), "the scan sees support windows");
    assert!(before.iter().any(|r| r.contains("eve@example.com")), "the scan sees addresses");
    authz.delete_app(&ChangedBy::Operator, &id("dash")).await.unwrap();
    store.close().await;
    // Once the log is checkpointed into the file (and emptied), the file's bytes hold no deleted
    // address or reason, not even in free pages.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.unwrap();
    pool.close().await;
    let bytes = std::fs::read(&path).unwrap();
    for needle in ["dana@example.com", "eve@example.com", "reason-canary"] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} left in the file's bytes");
    }
    let kept: Vec<String> = dump(&path).await.into_iter().filter(|r| r.starts_with("deleted_apps|")).collect();
    assert_eq!(kept, ["deleted_apps|'acme'|'dashboard'|'main'|'streamlit_app.py'|5"]);
    let after = dump(&path).await;
    for needle in ["dana@example.com", "eve@example.com", "reason-canary"] {
        assert!(after.iter().all(|r| !r.contains(needle)), "{needle} left in {after:#?}");
    }
    assert!(
        after.iter().filter(|r| r.contains("'dash'")).all(|r| r.starts_with("audit|")),
        "only the audit keeps the app's id: {after:#?}"
    );
    let reopened = Arc::new(SqliteStore::open(&path).await.unwrap());
    reopened.delete_account(UserId(5), ghauthz::Timestamp(0)).await.unwrap();
    reopened.close().await;
    let after = dump(&path).await;
    for needle in ["'dash'", "'github:5'", "'acme'|'dashboard'"] {
        assert!(after.iter().all(|r| !r.contains(needle)), "{needle} left after the account's deletion in {after:#?}");
    }
}

/// Every row of every table of a Postgres schema, as text.
async fn pg_dump(url: &str, schema: &str) -> Vec<String> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1")
            .bind(schema)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(tables.len() >= 7, "the scan sees the schema's tables: {tables:?}");
    let mut rows = Vec::new();
    for t in tables {
        let sql = format!("SELECT '{t}|' || row_to_json(x)::text FROM \"{schema}\".\"{t}\" x");
        rows.extend(sqlx::query_scalar::<_, String>(&sql).fetch_all(&pool).await.unwrap());
    }
    pool.close().await;
    rows
}

#[tokio::test]
async fn a_scan_of_every_postgres_table_finds_no_trace_of_a_deleted_app() {
    let Some(url) = common::pg_url() else { return };
    let schema = common::fresh_schema();
    let store =
        ghauthz::store::PgStore::connect_with(ghauthz::store::PgStoreOptions::new(&url).schema(&schema)).await.unwrap();
    let store = Arc::new(store);
    let (authz, _world, _mock) = authz_on(store.clone()).await;
    authz.add_viewer(&ChangedBy::Operator, &id("dash"), "eve@example.com").await.unwrap();
    authz.issue_link(&id("dash"), "eve@example.com").await.unwrap();
    authz.grant_support(&ChangedBy::Operator, &id("dash"), &SupportGrant::new("reason-canary")).await.unwrap();
    let before = pg_dump(&url, &schema).await;
    assert!(before.iter().any(|r| r.contains("reason-canary")), "the scan sees support windows");
    assert!(before.iter().any(|r| r.contains("eve@example.com")), "the scan sees addresses");
    authz.delete_app(&ChangedBy::Operator, &id("dash")).await.unwrap();
    let after = pg_dump(&url, &schema).await;
    for needle in ["dana@example.com", "eve@example.com", "reason-canary"] {
        assert!(after.iter().all(|r| !r.contains(needle)), "{needle} left in {after:#?}");
    }
    assert!(
        after.iter().filter(|r| r.contains("\"dash\"")).all(|r| r.starts_with("audit|")),
        "only the audit keeps the app's id: {after:#?}"
    );
    let kept: Vec<&String> = after.iter().filter(|r| r.starts_with("deleted_apps|")).collect();
    assert_eq!(
        kept,
        [
            r#"deleted_apps|{"owner":"acme","repo":"dashboard","branch":"main","main_file":"streamlit_app.py","deployed_by":5}"#
        ]
    );
    store.delete_account(UserId(5), ghauthz::Timestamp(0)).await.unwrap();
    let after = pg_dump(&url, &schema).await;
    for needle in ["\"dash\"", "github:5", "\"dashboard\""] {
        assert!(after.iter().all(|r| !r.contains(needle)), "{needle} left after the account's deletion in {after:#?}");
    }
}

/// A Postgres store of its own, with the acme world's apps: the store, an authorizer on it, the
/// world's mock, a pool of raw connections and the schema. `None` without Postgres.
async fn pg_world() -> Option<(Arc<dyn Store>, Authorizer, MockGithub, sqlx::PgPool, String)> {
    let url = common::pg_url()?;
    let schema = common::fresh_schema();
    let store =
        ghauthz::store::PgStore::connect_with(ghauthz::store::PgStoreOptions::new(&url).schema(&schema)).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let (authz, _world, mock) = authz_on(store.clone()).await;
    assert!(store.app(&id("dash")).await.unwrap().is_some());
    Some((store, authz, mock, sqlx::PgPool::connect(&url).await.unwrap(), schema))
}

/// A deletion of `dash` half done, as `delete_app` does it: the app's row locked.
async fn half_deleted(pool: &sqlx::PgPool, schema: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut deletion = pool.begin().await.unwrap();
    for statement in
        [format!("SET LOCAL search_path TO \"{schema}\""), "SELECT id FROM apps WHERE id = 'dash' FOR UPDATE".into()]
    {
        sqlx::query(&statement).execute(&mut *deletion).await.unwrap();
    }
    deletion
}

/// The rest of `half_deleted`'s deletion, as `delete_app` does it; each statement must not wait
/// on the writer started meanwhile (it would wait on the deletion in turn: a deadlock, which
/// Postgres breaks by failing one of the two).
async fn finish_deletion(mut deletion: sqlx::Transaction<'static, sqlx::Postgres>) {
    for statement in [
        "DELETE FROM links WHERE app_id = 'dash'",
        "DELETE FROM viewers WHERE app_id = 'dash'",
        "UPDATE audit SET email = NULL WHERE app_id = 'dash'",
        "DELETE FROM apps WHERE id = 'dash'",
    ] {
        sqlx::query(statement).execute(&mut *deletion).await.unwrap();
    }
    deletion.commit().await.unwrap();
}

/// An entry with an address written while its app is being deleted does not keep the address:
/// it waits for the deletion (the app's row is held), then finds no app and is dropped.
#[tokio::test]
async fn an_address_written_during_a_deletion_does_not_outlive_it() {
    let Some((store, _authz, _mock, pool, schema)) = pg_world().await else { return };
    let deletion = half_deleted(&pool, &schema).await;
    let email = ghauthz::Email::parse("eve@example.com").unwrap();
    let event = ghauthz::store::AuditEvent::new(
        ghauthz::Timestamp(1),
        &ghauthz::store::Actor::Viewer,
        &id("dash"),
        AuditAction::GoogleSignIn,
    )
    .with_email(&email);
    let writer = store.clone();
    let write = tokio::spawn(async move { writer.record(&event, None).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!write.is_finished(), "the entry waits for the deletion");
    finish_deletion(deletion).await;
    write.await.unwrap().unwrap();
    let entries = store.audit(&AuditFilter::new().for_app(id("dash"))).await.unwrap();
    assert!(entries.iter().all(|e| e.email.is_none()), "an address outlived its app: {entries:?}");
    pool.close().await;
}

/// A viewer removed, a link issued or a link redeemed while the app is being deleted waits for the deletion
/// instead of holding a row the deletion needs (which would deadlock), then finds nothing to do.
#[tokio::test]
async fn a_removal_or_a_redemption_during_a_deletion_waits_for_it() {
    let Some((store, authz, _mock, pool, schema)) = pg_world().await else { return };
    let link = authz.issue_link(&id("dash"), "dana@example.com").await.unwrap();
    let deletion = half_deleted(&pool, &schema).await;
    let removal = tokio::spawn(async move {
        let dana = ghauthz::Email::parse("dana@example.com").unwrap();
        store.remove_viewer(&id("dash"), &dana, &ghauthz::store::Actor::Operator, ghauthz::Timestamp(1)).await
    });
    let issuer = authz.clone();
    let issue = tokio::spawn(async move { issuer.issue_link(&id("dash"), "dana@example.com").await });
    let redemption = tokio::spawn(async move { authz.redeem_link(link.token.expose_secret(), None).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!removal.is_finished() && !issue.is_finished() && !redemption.is_finished(), "all wait for the deletion");
    finish_deletion(deletion).await;
    assert!(!removal.await.unwrap().unwrap(), "the deletion took the viewer");
    for refused in [issue.await.unwrap().map(|_| ()), redemption.await.unwrap().map(|_| ())] {
        let refused = refused.unwrap_err();
        assert!(
            !matches!(refused, LinkError::SignIn(ghauthz::SignInRefusal::Store(_))),
            "refused, not failed: {refused:?}"
        );
    }
    pool.close().await;
}

/// A deploy by an identity whose account is being deleted waits for the deletion (Postgres; the
/// SQLite store has one writer at a time): an app committed while the deletion runs would
/// otherwise outlive it, and lose its deploy entry to it. So does another deletion of it.
#[tokio::test]
async fn a_deploy_waits_for_its_deployers_account_deletion() {
    let Some((store, _authz, _mock, pool, schema)) = pg_world().await else { return };
    // What `delete_account` holds for erin (5) from its start to its end, in this store's schema.
    let hold = || async {
        let mut deletion = pool.begin().await.unwrap();
        sqlx::query(&format!("SET LOCAL search_path TO \"{schema}\"")).execute(&mut *deletion).await.unwrap();
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended('ghauthz account ' || current_schema() || ' ' || $1::text, 0))",
        )
        .bind(5_i64)
        .execute(&mut *deletion)
        .await
        .unwrap();
        deletion
    };
    let wait = || tokio::time::sleep(std::time::Duration::from_millis(300));
    let mut record = store.app(&id("dash")).await.unwrap().unwrap();
    record.id = id("fresh");
    let event = ghauthz::store::AuditEvent::new(
        ghauthz::Timestamp(1),
        &ghauthz::store::Actor::Github(UserId(5)),
        &id("fresh"),
        AuditAction::Deploy,
    );
    let deletion = hold().await;
    let deploy = {
        let store = store.clone();
        tokio::spawn(async move { store.deploy_app(&record, &event).await })
    };
    wait().await;
    assert!(!deploy.is_finished(), "the deploy waits for the account's deletion");
    deletion.commit().await.unwrap();
    assert!(deploy.await.unwrap().is_ok());

    let deletion = hold().await;
    let second = {
        let store = store.clone();
        tokio::spawn(async move { store.delete_account(UserId(5), ghauthz::Timestamp(1)).await })
    };
    wait().await;
    assert!(!second.is_finished(), "an account's deletions take turns");
    deletion.commit().await.unwrap();
    assert_eq!(
        second.await.unwrap().unwrap(),
        [id("dash"), id("fresh"), id("legacy")],
        "erin's, the fresh one included"
    );
    pool.close().await;
}

/// When `delete_app` or `delete_account` returns, nothing it deleted is readable in any file of
/// the SQLite store (database, `-wal`, `-shm`), while the store stays open: the deletion folds
/// the write-ahead log into the file and empties it before it answers. Repeated, since what is
/// left in the log otherwise depends on when SQLite happened to checkpoint.
#[tokio::test]
async fn a_deletion_leaves_nothing_readable_in_the_store_files_when_it_returns() {
    // An identity whose id has bytes of its own (SQLite stores it as 6 or 8 big-endian bytes).
    let stranger = UserId(0x71B2_C3D4_E5F6);
    let stranger_bytes = &stranger.0.to_be_bytes()[2..];
    let stranger_label = format!("github:{}", stranger.0);
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Arc::new(SqliteStore::open(&path).await.unwrap());
        let (authz, world, _mock) = authz_on(store.clone()).await;
        let erin = Principal::github(world.user("erin").unwrap());
        let address = format!("canary{round}@example.org");
        let (reason_dash, reason_fresh) = (format!("reason-dash-{round}"), format!("reason-fresh-{round}"));
        let (branch, main_file, fresh) =
            (format!("branch-canary-{round}"), format!("main-canary-{round}.py"), format!("fresh-canary-{round}"));
        authz.add_viewer(&ChangedBy::Operator, &id("dash"), &address).await.unwrap();
        authz.issue_link(&id("dash"), &address).await.unwrap();
        authz.grant_support(&ChangedBy::Operator, &id("dash"), &SupportGrant::new(&reason_dash)).await.unwrap();
        let coords = ghauthz::RepoCoords::new("acme", "dashboard").unwrap();
        let deployment = ghauthz::Deployment::new(id(&fresh), coords, &branch, &main_file);
        authz.deploy_app(&erin, &deployment).await.unwrap();
        let by_erin = ChangedBy::Principal(erin.clone());
        authz.grant_support(&by_erin, &id(&fresh), &SupportGrant::new(&reason_fresh)).await.unwrap();
        // An app of the stranger's, written through the store.
        let mut record = store.app(&id("dash")).await.unwrap().unwrap();
        (record.id, record.owner, record.repo, record.branch, record.deployed_by) =
            (id("strangers"), "stranger-owner".into(), "stranger-repo".into(), "stranger-branch".into(), stranger);
        let event = ghauthz::store::AuditEvent::new(
            ghauthz::Timestamp(1),
            &ghauthz::store::Actor::Github(stranger),
            &id("strangers"),
            AuditAction::Deploy,
        );
        store.deploy_app(&record, &event).await.unwrap();
        let left = |needles: &[&[u8]]| common::left_in_store_files(&path, needles);
        let planted: Vec<&[u8]> = vec![
            address.as_bytes(),
            reason_dash.as_bytes(),
            reason_fresh.as_bytes(),
            branch.as_bytes(),
            main_file.as_bytes(),
            fresh.as_bytes(),
            stranger_bytes,
            stranger_label.as_bytes(),
        ];
        let seen: std::collections::BTreeSet<String> = left(&planted).into_iter().map(|(_, n)| n).collect();
        assert_eq!(seen.len(), planted.len(), "the scan sees what was planted");

        authz.delete_app(&ChangedBy::Operator, &id("dash")).await.unwrap();
        let gone: [&[u8]; 3] = [address.as_bytes(), b"dana@example.com", reason_dash.as_bytes()];
        assert_eq!(left(&gone), [], "round {round}: an app's deletion left what it deleted in the files");

        assert_eq!(authz.delete_account(UserId(5)).await.unwrap(), [id(&fresh), id("legacy")]);
        let gone: [&[u8]; 6] =
            [reason_fresh.as_bytes(), branch.as_bytes(), main_file.as_bytes(), fresh.as_bytes(), b"github:5", b"dash"];
        assert_eq!(left(&gone), [], "round {round}: an account's deletion left what it deleted in the files");

        assert_eq!(store.delete_account(stranger, ghauthz::Timestamp(2)).await.unwrap(), [id("strangers")]);
        let gone: [&[u8]; 4] = [stranger_bytes, stranger_label.as_bytes(), b"stranger-", b"strangers"];
        assert_eq!(left(&gone), [], "round {round}: the stranger's deletion left what it deleted in the files");
        drop(authz);
    }
}

/// A deletion that cannot empty the write-ahead log (another connection keeps reading an older
/// snapshot) is committed but does not answer `Ok`: it says so, within the store's bound, and
/// what it deleted leaves the files when the log is next emptied, here at the store's closing.
#[tokio::test]
async fn a_deletion_that_cannot_empty_the_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let (authz, _world, _mock) = authz_on(store.clone()).await;
    authz.add_viewer(&ChangedBy::Operator, &id("dash"), "busy-canary@example.org").await.unwrap();
    // A reader in another process's place: a read transaction held open across the deletion.
    let mut reader = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
    let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM apps").fetch_one(&mut reader).await.unwrap();
    let started = std::time::Instant::now();
    let err = store
        .delete_app(
            &id("dash"),
            &ghauthz::store::AuditEvent::new(
                ghauthz::Timestamp(1),
                &ghauthz::store::Actor::Operator,
                &id("dash"),
                AuditAction::Delete,
            ),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("committed"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "within the store's bound: {:?}", started.elapsed());
    assert_eq!(store.app(&id("dash")).await.unwrap(), None, "the deletion is committed");
    sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
    reader.close().await.unwrap();
    drop(authz);
    store.close().await;
    let left = common::left_in_store_files(&path, &[b"busy-canary@example.org"]);
    assert_eq!(left, [], "gone once the log is emptied");
}
