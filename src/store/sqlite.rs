//! The SQLite store: one file, no server; the embedded default.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};

use super::sql::{corrupt, sql_store, unavailable};
use super::{Broadcast, StoreError};

/// Schema version 2 (version 1 without `deliveries`, which the script adds). Every statement is
/// idempotent, so that processes opening one file at once cannot trip over each other.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS apps (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    repo        TEXT NOT NULL,
    repo_id     INTEGER NOT NULL,
    branch      TEXT NOT NULL,
    main_file   TEXT NOT NULL,
    visibility  TEXT NOT NULL CHECK (visibility IN ('public', 'private')),
    deployed_by INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS apps_deployed_by ON apps (deployed_by);
CREATE TABLE IF NOT EXISTS viewers (
    app_id   TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    email    TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, email)
);
CREATE TABLE IF NOT EXISTS audit (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    app_id TEXT NOT NULL,
    action TEXT NOT NULL,
    email  TEXT
);
CREATE TABLE IF NOT EXISTS links (
    hash       BLOB PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX IF NOT EXISTS links_by_grant ON links (app_id, email, issued_at);
CREATE TABLE IF NOT EXISTS deleted_apps (
    owner       TEXT NOT NULL,
    repo        TEXT NOT NULL,
    branch      TEXT NOT NULL,
    main_file   TEXT NOT NULL,
    deployed_by INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS deleted_apps_once ON deleted_apps (owner, repo, branch, main_file, deployed_by);
CREATE TABLE IF NOT EXISTS deliveries (
    id      TEXT PRIMARY KEY,
    seen_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_seen_at ON deliveries (seen_at);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '2');
UPDATE meta SET value = '2' WHERE key = 'schema_version' AND value = '1';
"#;

/// The schema version this build reads and writes.
const SCHEMA_VERSION: &str = "2";

/// A store in one SQLite file (created if absent). Safe to share between threads and between
/// processes: writes are serialized by SQLite, and every method is one transaction, which every
/// path ends explicitly (a dropped transaction would keep the write lock until its connection
/// is reused).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if absent) the store at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::new()
            .filename(path.as_ref())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        Self::connect(opts).await
    }

    /// Opens a store from an SQLite URL (`sqlite://path` or `sqlite::memory:`).
    pub async fn open_url(url: &str) -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(unavailable)?
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        Self::connect(opts).await
    }

    async fn connect(opts: SqliteConnectOptions) -> Result<SqliteStore, StoreError> {
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await.map_err(unavailable)?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(unavailable)?;
        let version: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'schema_version'")
            .fetch_optional(&pool)
            .await
            .map_err(unavailable)?;
        match version.as_deref() {
            Some(SCHEMA_VERSION) => Ok(SqliteStore { pool }),
            other => Err(corrupt(format!("schema version {other:?}: this build reads version {SCHEMA_VERSION}"))),
        }
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A store in one file belongs to one machine: there are no other replicas to tell.
    async fn announce(&self, _tx: &mut Transaction<'_, Sqlite>, _broadcast: &Broadcast) -> Result<(), StoreError> {
        Ok(())
    }
}

sql_store! {
    store: SqliteStore,
    db: Sqlite,
    // SQLite has no row locks; its writers are serialized.
    for_update: "",
    // A transaction that reads before it writes takes the write lock first, so that what it
    // read cannot go stale before its write.
    write_lock: Some("UPDATE meta SET value = value WHERE key = 'schema_version'"),
    extra: {}
}
