//! The SQLite store: one file, no server; the embedded default.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions as _, Connection as _, Executor as _, Pool, Sqlite, Transaction};

use super::sql::{Backend, corrupt, to_i64, unavailable};
use super::{Broadcast, FeedEvent, StoreError, StoreFailure};
use crate::core::ids::{AppId, UserId};
use async_trait::async_trait;
use tokio::sync::mpsc;

/// The migrations, in order: (the schema version a file brings the store to, its SQL). The first
/// is idempotent and runs at every open; each later one runs once, in a write transaction, on a
/// store whose version is the one before it. Append only.
const MIGRATIONS: &[(u32, &str)] = &[
    (2, include_str!("../../migrations/sqlite/0002_initial.sql")),
    (3, include_str!("../../migrations/sqlite/0003_grant_ids.sql")),
    (4, include_str!("../../migrations/sqlite/0004_redemption_attempts.sql")),
    (5, include_str!("../../migrations/sqlite/0005_audit_outcomes.sql")),
    (6, include_str!("../../migrations/sqlite/0006_support_windows.sql")),
    (7, include_str!("../../migrations/sqlite/0007_shared_rosters.sql")),
];

/// The schema version this build reads and writes.
const SCHEMA_VERSION: u32 = 7;

/// The longest a call waits for another writer's lock (SQLite's busy wait) or for a pooled
/// connection before it answers *unavailable* by itself, having changed nothing: shorter than an
/// authorizer's store bound (5 s by default), so that a busy store answers before the bound cuts
/// the call off.
const WAIT: Duration = Duration::from_secs(2);

/// How often a subscriber reads the change log.
const POLL: Duration = Duration::from_millis(25);

/// How long the change log keeps a change (default). A subscriber that has not read it by then
/// finds the log pruned past its position and forgets everything it cached.
const CHANGE_RETENTION: Duration = Duration::from_secs(600);

/// Most changes read in one poll.
const PER_POLL: i64 = 1000;

/// A store in one SQLite file (created if absent, readable by its owner only, as are its `-wal`
/// and `-shm` files). Safe to share between threads and between
/// processes: writes are serialized by SQLite, and every method is one transaction, which every
/// path ends explicitly (a dropped transaction would keep the write lock until its connection
/// is reused). It is a [`Store`](super::Store): each operation is one SQL text, which the
/// Postgres store (`PgStore`, feature `postgres`) runs too.
///
/// # The change log
///
/// Every change to an app or a grant, and every [`publish`](super::ChangeFeed::publish)ed
/// invalidation, is written to a change log in the transaction that makes it. Each
/// [`subscribe`](super::ChangeFeed::subscribe)r, in this process or another, reads the log every
/// 25 ms, so that `ghauthz viewers remove --db FILE` reaches a service running on the same file
/// within that. The log keeps a change for 10 minutes ([`SqliteStore::change_retention`]); a
/// subscriber that falls further behind hears [`FeedEvent::Lost`] and starts again from the end.
///
/// # Deletion
///
/// Deleted rows are overwritten with zeros (`secure_delete`), and a deletion
/// ([`delete_app`](super::AppStore::delete_app), [`delete_account`](super::AppStore::delete_account))
/// folds the write-ahead log into the database file and empties it
/// (`wal_checkpoint(TRUNCATE)`) before it answers: when it returns, nothing it deleted is left
/// in the database file, its `-wal` or its `-shm`. An account's deletion also rewrites every
/// entry of the change log that names its apps or its identity as "forget" (every app and
/// grant, every fact). If another
/// connection keeps the log busy for longer than 2 s, the deletion answers
/// [`StoreError::Unavailable`] (it is committed; the log is emptied when the store closes).
///
/// # Closing
///
/// [`close`](super::ChangeFeed::close) closes every connection, which folds the log into the file
/// and removes it. Dropping the last clone closes the pool too: at once in a Tokio runtime,
/// otherwise as its connections are dropped.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    retention: Duration,
    _close_on_drop: Arc<CloseOnDrop>,
}

/// Closes the pool when the last [`SqliteStore`] that shares it is dropped.
#[derive(Debug)]
struct CloseOnDrop(SqlitePool);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        // Marks the pool closed at once (no connection is handed out again; idle ones close as
        // they are dropped), then, in a runtime, closes them.
        drop(self.0.close());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let pool = self.0.clone();
            runtime.spawn(async move { pool.close().await });
        }
    }
}

impl SqliteStore {
    /// Opens (creating if absent) the store at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::new()
            .filename(path.as_ref())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(WAIT)
            .foreign_keys(true);
        Self::connect(opts).await
    }

    /// Opens a store from an SQLite URL (`sqlite://path` or `sqlite::memory:`).
    pub async fn open_url(url: &str) -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(unavailable)?
            .create_if_missing(true)
            .busy_timeout(WAIT)
            .foreign_keys(true);
        Self::connect(opts).await
    }

    async fn connect(opts: SqliteConnectOptions) -> Result<SqliteStore, StoreError> {
        // Deleted rows are overwritten with zeros, not left in free pages: a deleted address or
        // support reason is gone from the file once the write-ahead log is checkpointed.
        let opts = opts.pragma("secure_delete", "ON");
        let file = opts.get_filename();
        if file != Path::new(":memory:") && !file.as_os_str().is_empty() {
            create_owner_only(file)?;
        }
        // The migrations run first, on a connection of their own that waits up to 30 s for
        // another process's migrations (a call waits 2 s): opening the store while another opens
        // it waits for it, from its first statement on.
        let mut migrating = connect_waiting(&opts.clone().busy_timeout(MIGRATION_WAIT)).await?;
        if let Err(e) = migrate(&mut migrating).await {
            let _ = migrating.close().await;
            return Err(e);
        }
        let pool = SqlitePoolOptions::new().max_connections(4).acquire_timeout(WAIT).connect_with(opts).await;
        // Closed once the pool holds a connection, so that a store in memory outlives it.
        let _ = migrating.close().await;
        let pool = pool.map_err(unavailable)?;
        Ok(SqliteStore { _close_on_drop: Arc::new(CloseOnDrop(pool.clone())), pool, retention: CHANGE_RETENTION })
    }

    /// How long the change log keeps a change before a subscriber that has not read it must
    /// forget everything (default 10 minutes).
    pub fn change_retention(mut self, keep: Duration) -> Self {
        self.retention = keep;
        self
    }

    /// Closes the store: folds the write-ahead log into the database file and empties it, then
    /// closes every connection (waiting for each to be returned), the last of which removes the
    /// log.
    pub async fn close(&self) {
        if !self.pool.is_closed() {
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await;
        }
        self.pool.close().await;
        // `Pool::close` waits until every connection is back in the pool, but does not close
        // those that came back during its last wait; a second call closes them.
        self.pool.close().await;
    }
}

/// Creates the store's file, if absent, readable and writable by its owner only (SQLite gives its
/// `-wal` and `-shm` files the database file's permissions). An existing file is left as it is.
fn create_owner_only(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => {
            Err(StoreError::Unavailable(StoreFailure::caused_by(format!("cannot create `{}`: {e}", path.display()), e)))
        }
    }
}

fn wall_ms() -> i64 {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// How long opening a store waits for another process's migrations: 30 s.
const MIGRATION_WAIT: Duration = Duration::from_secs(30);

/// A first connection to the file, waiting up to [`MIGRATION_WAIT`] while it is busy. Opening a
/// connection turns a new file to write-ahead logging, which needs the file to itself: SQLite
/// answers "database is locked" at once, without its busy wait, while another process does the
/// same, so the attempt is repeated here.
async fn connect_waiting(opts: &SqliteConnectOptions) -> Result<SqliteConnection, StoreError> {
    let give_up = tokio::time::Instant::now() + MIGRATION_WAIT;
    loop {
        match opts.connect().await {
            Ok(conn) => return Ok(conn),
            Err(e) if is_busy(&e) && tokio::time::Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(unavailable(e)),
        }
    }
}

/// Whether SQLite answered `SQLITE_BUSY` (or one of its extended codes).
fn is_busy(e: &sqlx::Error) -> bool {
    let code = e.as_database_error().and_then(|d| d.code()).and_then(|c| c.parse::<i32>().ok());
    code.is_some_and(|c| c & 0xff == 5)
}

/// Brings the store to [`SCHEMA_VERSION`] on `conn`: the idempotent first script, then each later
/// migration once, under SQLite's write lock (`BEGIN IMMEDIATE`), so that processes opening one
/// file at once apply each exactly once.
async fn migrate(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let (first, later) = MIGRATIONS.split_first().ok_or_else(|| corrupt("no migrations"))?;
    conn.execute(first.1).await.map_err(unavailable)?;
    conn.execute("BEGIN IMMEDIATE").await.map_err(unavailable)?;
    let applied = apply_migrations(conn, later).await;
    let end = if applied.is_ok() { "COMMIT" } else { "ROLLBACK" };
    applied.and(conn.execute(end).await.map(|_| ()).map_err(unavailable))
}

/// Applies, on `conn` (inside its write transaction), each migration after the store's version.
async fn apply_migrations(conn: &mut SqliteConnection, later: &[(u32, &str)]) -> Result<(), StoreError> {
    let version: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'schema_version'")
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    let mut version = version.as_deref().and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    for &(to, sql) in later {
        if to <= version {
            continue;
        }
        if to != version + 1 {
            break;
        }
        conn.execute(sql).await.map_err(unavailable)?;
        sqlx::query("UPDATE meta SET value = $1 WHERE key = 'schema_version'")
            .bind(to.to_string())
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
        version = to;
    }
    if version == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(corrupt(format!("schema version {version}: this build reads version {SCHEMA_VERSION}")))
    }
}

/// What one read of the change log found.
enum Read {
    /// Where the log ends now: the subscriber starts there.
    Start(i64),
    /// Changes after the subscriber's position, in order.
    Rows(Vec<(i64, String)>),
    /// The log was pruned past the subscriber's position.
    Behind,
}

/// Reads the log after `pos` (or where it ends, for `None`), in one read transaction.
async fn read_log(pool: &SqlitePool, pos: Option<i64>) -> Result<Read, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let pruned: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'changes_pruned_through'")
        .fetch_optional(&mut *tx)
        .await?;
    let pruned = pruned.and_then(|p| p.parse::<i64>().ok()).unwrap_or(0);
    let read = match pos {
        None => {
            let end: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM changes").fetch_one(&mut *tx).await?;
            Read::Start(end.unwrap_or(0).max(pruned))
        }
        Some(pos) if pruned > pos => Read::Behind,
        Some(pos) => Read::Rows(
            sqlx::query_as("SELECT seq, body FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(pos)
                .bind(PER_POLL)
                .fetch_all(&mut *tx)
                .await?,
        ),
    };
    tx.rollback().await?;
    Ok(read)
}

/// The subscriber's loop: every [`POLL`], read the log after its position and pass each change
/// on. It says [`FeedEvent::Listening`] once it knows where the log ends, [`FeedEvent::Lost`]
/// when a read fails, the log was pruned past its position, or a row cannot be read, and then
/// starts again from the end. Ends when the receiver is dropped or the pool is closed.
async fn follow_log(pool: SqlitePool, tx: mpsc::Sender<FeedEvent>) {
    let mut pos: Option<i64> = None;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = tx.closed() => return,
        }
        if pool.is_closed() {
            return;
        }
        let events = match read_log(&pool, pos).await {
            Ok(Read::Start(end)) => {
                pos = Some(end);
                vec![FeedEvent::Listening]
            }
            Ok(Read::Rows(rows)) if rows.len() >= PER_POLL as usize => {
                // Too far behind to catch up within a poll: forget everything and start again
                // from the end rather than serve what the unread changes may have changed.
                tracing::warn!("change log: a full page behind; starting again from the end");
                pos = None;
                vec![FeedEvent::Lost]
            }
            Ok(Read::Rows(rows)) => {
                let mut events = Vec::with_capacity(rows.len());
                for (seq, body) in rows {
                    match serde_json::from_str::<Broadcast>(&body) {
                        Ok(b) => {
                            events.push(FeedEvent::Broadcast(b));
                            pos = Some(seq);
                        }
                        Err(e) => {
                            // A newer format, or a row written by someone else: what it changes is
                            // unknown, so forget everything and start again from the end.
                            tracing::warn!(error = %e, "change log: unreadable row");
                            events.push(FeedEvent::Lost);
                            pos = None;
                            break;
                        }
                    }
                }
                events
            }
            Ok(Read::Behind) => {
                tracing::warn!("change log: pruned past this subscriber's position");
                pos = None;
                vec![FeedEvent::Lost]
            }
            Err(e) if pos.is_some() => {
                tracing::warn!(error = %e, "change log: cannot read");
                pos = None;
                vec![FeedEvent::Lost]
            }
            Err(_) => Vec::new(),
        };
        for event in events {
            if tx.send(event).await.is_err() {
                return;
            }
        }
    }
}

#[async_trait]
impl Backend for SqliteStore {
    type Db = Sqlite;
    // SQLite has no row locks; its writers are serialized.
    const FOR_UPDATE: &'static str = "";
    const FOR_KEY_SHARE: &'static str = "";
    // A transaction that reads before it writes takes the write lock first, so that what it
    // read cannot go stale before its write.
    const WRITE_LOCK: Option<&'static str> = Some("UPDATE meta SET value = value WHERE key = 'schema_version'");
    const ACCOUNT_LOCK: Option<&'static str> = None;

    fn pool(&self) -> &Pool<Sqlite> {
        &self.pool
    }

    fn rows_affected(done: &<Sqlite as sqlx::Database>::QueryResult) -> u64 {
        done.rows_affected()
    }

    /// Appends `b` to the change log inside `tx`, and prunes what is older than the retention.
    async fn announce(&self, tx: &mut Transaction<'_, Sqlite>, b: &Broadcast) -> Result<(), StoreError> {
        let now = wall_ms();
        let body = serde_json::to_string(b).map_err(|e| corrupt(e.to_string()))?;
        let cutoff = now.saturating_sub(i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX));
        let pruned: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM changes WHERE at < $1")
            .bind(cutoff)
            .fetch_one(&mut **tx)
            .await
            .map_err(unavailable)?;
        if let Some(through) = pruned {
            sqlx::query("DELETE FROM changes WHERE seq <= $1")
                .bind(through)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
            sqlx::query("UPDATE meta SET value = $1 WHERE key = 'changes_pruned_through'")
                .bind(through.to_string())
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
        }
        sqlx::query("INSERT INTO changes (at, body) VALUES ($1, $2)")
            .bind(now)
            .bind(body)
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn close(&self) {
        SqliteStore::close(self).await;
    }

    fn subscribe(&self) -> Option<mpsc::Receiver<FeedEvent>> {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(follow_log(self.pool.clone(), tx));
        Some(rx)
    }

    /// Rewrites each entry of the change log that names `user`, one of `apps` or an app of the
    /// user's audit entries (those deleted earlier included): the changes it carries become
    /// "forget every app and grant", and its invalidations, if one names the user, "forget every
    /// fact". A subscriber that has not read such an entry yet then forgets more than it had
    /// to, never less; an entry that cannot be read is rewritten whole.
    async fn forget_history(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        user: UserId,
        apps: &[AppId],
    ) -> Result<(), StoreError> {
        use crate::core::invalidation::Invalidation;
        let mut apps: Vec<AppId> = apps.to_vec();
        let audited: Vec<String> = sqlx::query_scalar("SELECT DISTINCT app_id FROM audit WHERE owner_id = $1")
            .bind(to_i64(user.0, "user id")?)
            .fetch_all(&mut **tx)
            .await
            .map_err(unavailable)?;
        apps.extend(audited.into_iter().map(AppId));
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, body FROM changes").fetch_all(&mut **tx).await.map_err(unavailable)?;
        for (seq, body) in rows {
            let rewritten = match serde_json::from_str::<Broadcast>(&body) {
                Ok(mut b) => {
                    let names_user = b.invalidations.iter().any(|i| i.user() == Some(user));
                    let names_app =
                        b.changes.iter().any(|c| matches!(c, super::Change::App { app } if apps.contains(app)));
                    if !names_user && !names_app {
                        continue;
                    }
                    if names_user {
                        b.invalidations = vec![Invalidation::All];
                    }
                    if names_app {
                        b.changes = vec![super::Change::All];
                    }
                    b
                }
                Err(_) => {
                    Broadcast { origin: 0, invalidations: vec![Invalidation::All], changes: vec![super::Change::All] }
                }
            };
            let body = serde_json::to_string(&rewritten).map_err(|e| corrupt(e.to_string()))?;
            sqlx::query("UPDATE changes SET body = $1 WHERE seq = $2")
                .bind(body)
                .bind(seq)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Folds the write-ahead log into the database file and truncates it, waiting up to
    /// [`WAIT`] in all for readers of older snapshots (each attempt waits at most 100 ms for a
    /// lock, so that the whole stays within an authorizer's store bound).
    async fn erase(&self) -> Result<(), StoreError> {
        let give_up = tokio::time::Instant::now() + WAIT;
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        conn.execute("PRAGMA busy_timeout = 100").await.map_err(unavailable)?;
        let erased = loop {
            let answer: Result<(i64, i64, i64), _> =
                sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *conn).await;
            match answer {
                Ok((0, _, _)) => break Ok(()),
                Err(e) if !is_busy(&e) => break Err(unavailable(e)),
                _ if tokio::time::Instant::now() >= give_up => {
                    break Err(StoreError::Unavailable(StoreFailure::new(
                        "the deletion is committed, but another connection kept the write-ahead log busy: what it \
                         deleted leaves the store's files when the log is next emptied (the next deletion, or the \
                         store's closing)",
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        let restored = conn.execute(format!("PRAGMA busy_timeout = {}", WAIT.as_millis()).as_str()).await;
        if restored.is_err() {
            // A connection that would wait otherwise than the others is not returned to the pool.
            conn.detach();
        }
        erased
    }
}
