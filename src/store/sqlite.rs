//! The SQLite store: one file, no server; the embedded default.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::{
    Actor, AppRecord, AuditAction, AuditEvent, Broadcast, DELIVERY_RETENTION, DeletedApp, IssueLimit, IssueOutcome,
    LinkRecord, Store, StoreError,
};
use crate::clock::Timestamp;
use crate::email::Email;
use crate::ids::{AppId, RepoId, UserId};
use crate::policy::Visibility;

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

fn unavailable(e: sqlx::Error) -> StoreError {
    match &e {
        // A broken constraint is not a passing outage: asking again would not help.
        sqlx::Error::Database(db) if db.is_foreign_key_violation() || db.is_check_violation() => {
            StoreError::Corrupt(db.message().to_owned())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| corrupt(format!("{what} {v} does not fit the store")))
}

fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(format!("negative {what}")))
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

    async fn audit(
        tx: &mut Transaction<'_, Sqlite>,
        at: Timestamp,
        actor: &Actor,
        app: &AppId,
        action: AuditAction,
        email: &Email,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit (at, actor, app_id, action, email) VALUES (?, ?, ?, ?, ?)")
            .bind(to_i64(at.0, "time")?)
            .bind(actor.label())
            .bind(&app.0)
            .bind(action.as_str())
            .bind(email.as_str())
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn insert_app(tx: &mut Transaction<'_, Sqlite>, app: &AppRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO apps (id, owner, repo, repo_id, branch, main_file, visibility, deployed_by)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, repo = excluded.repo,
               repo_id = excluded.repo_id, branch = excluded.branch, main_file = excluded.main_file,
               visibility = excluded.visibility, deployed_by = excluded.deployed_by",
        )
        .bind(&app.id.0)
        .bind(&app.owner)
        .bind(&app.repo)
        .bind(to_i64(app.repo_id.0, "repository id")?)
        .bind(&app.branch)
        .bind(&app.main_file)
        .bind(match app.visibility {
            Visibility::Public => "public",
            Visibility::Private => "private",
        })
        .bind(to_i64(app.deployed_by.0, "user id")?)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn insert_viewer(
        tx: &mut Transaction<'_, Sqlite>,
        app: &AppId,
        email: &Email,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("INSERT INTO viewers (app_id, email, added_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
            .bind(&app.0)
            .bind(email.as_str())
            .bind(to_i64(at.0, "time")?)
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }
}

impl SqliteStore {
    /// Removes everything of `app` inside `tx`; returns its record.
    async fn purge(tx: &mut Transaction<'_, Sqlite>, app: &AppId) -> Result<Option<AppRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = ?"))
            .bind(&app.0)
            .fetch_optional(&mut **tx)
            .await
            .map_err(unavailable)?;
        let Some(record) = row.as_ref().map(app_from_row).transpose()? else { return Ok(None) };
        for sql in [
            "DELETE FROM links WHERE app_id = ?",
            "DELETE FROM viewers WHERE app_id = ?",
            "DELETE FROM audit WHERE app_id = ?",
            "DELETE FROM apps WHERE id = ?",
        ] {
            sqlx::query(sql).bind(&app.0).execute(&mut **tx).await.map_err(unavailable)?;
        }
        Ok(Some(record))
    }
}

fn app_from_row(row: &SqliteRow) -> Result<AppRecord, StoreError> {
    let get_s = |c: &str| row.try_get::<String, _>(c).map_err(unavailable);
    let get_i = |c: &str| row.try_get::<i64, _>(c).map_err(unavailable);
    Ok(AppRecord {
        id: AppId(get_s("id")?),
        owner: get_s("owner")?,
        repo: get_s("repo")?,
        repo_id: RepoId(to_u64(get_i("repo_id")?, "repository id")?),
        branch: get_s("branch")?,
        main_file: get_s("main_file")?,
        visibility: match get_s("visibility")?.as_str() {
            "public" => Visibility::Public,
            "private" => Visibility::Private,
            other => return Err(corrupt(format!("visibility `{other}`"))),
        },
        deployed_by: UserId(to_u64(get_i("deployed_by")?, "user id")?),
    })
}

fn email_from(s: String) -> Result<Email, StoreError> {
    Email::parse(&s).map_err(|e| corrupt(format!("stored email: {e}")))
}

const APP_COLUMNS: &str = "id, owner, repo, repo_id, branch, main_file, visibility, deployed_by";

#[async_trait]
impl Store for SqliteStore {
    async fn put_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        Self::insert_app(&mut tx, app).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn app(&self, id: &AppId) -> Result<Option<AppRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = ?"))
            .bind(&id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(app_from_row).transpose()
    }

    async fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {APP_COLUMNS} FROM apps ORDER BY id"))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(app_from_row).collect()
    }

    async fn add_viewer(&self, app: &AppId, email: &Email, actor: &Actor, at: Timestamp) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let added = Self::insert_viewer(&mut tx, app, email, at).await?;
        if added {
            Self::audit(&mut tx, at, actor, app, AuditAction::ViewerAdded, email).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(added)
    }

    async fn remove_viewer(
        &self,
        app: &AppId,
        email: &Email,
        actor: &Actor,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let done = sqlx::query("DELETE FROM viewers WHERE app_id = ? AND email = ?")
            .bind(&app.0)
            .bind(email.as_str())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let removed = done.rows_affected() == 1;
        if removed {
            Self::audit(&mut tx, at, actor, app, AuditAction::ViewerRemoved, email).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(removed)
    }

    async fn viewers(&self, app: &AppId) -> Result<Vec<Email>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT email FROM viewers WHERE app_id = ? ORDER BY email")
            .bind(&app.0)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.into_iter().map(email_from).collect()
    }

    async fn is_viewer(&self, app: &AppId, email: &Email) -> Result<bool, StoreError> {
        let row: Option<i64> = sqlx::query_scalar("SELECT 1 FROM viewers WHERE app_id = ? AND email = ?")
            .bind(&app.0)
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.is_some())
    }

    async fn audit_log(&self) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query("SELECT at, actor, app_id, action, email FROM audit ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let action: String = row.try_get("action").map_err(unavailable)?;
                let email: Option<String> = row.try_get("email").map_err(unavailable)?;
                Ok(AuditEvent {
                    at: Timestamp(to_u64(row.try_get("at").map_err(unavailable)?, "time")?),
                    actor: row.try_get("actor").map_err(unavailable)?,
                    app: AppId(row.try_get("app_id").map_err(unavailable)?),
                    action: AuditAction::parse(&action).ok_or_else(|| corrupt(format!("audit action `{action}`")))?,
                    email: email.map(email_from).transpose()?,
                })
            })
            .collect()
    }

    async fn issue_link(&self, link: &LinkRecord, limit: IssueLimit) -> Result<IssueOutcome, StoreError> {
        let issued_at = to_i64(link.issued_at.0, "time")?;
        let window = to_i64(u64::try_from(limit.window.as_millis()).unwrap_or(u64::MAX), "window")?;
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // Take the write lock first, so that the count below cannot go stale before the insert.
        sqlx::query("UPDATE meta SET value = value WHERE key = 'schema_version'")
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let invited: Option<i64> = sqlx::query_scalar("SELECT 1 FROM viewers WHERE app_id = ? AND email = ?")
            .bind(&link.app.0)
            .bind(link.email.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        if invited.is_none() {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(IssueOutcome::NotInvited);
        }
        let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(issued_at) FROM links WHERE app_id = ? AND email = ? AND issued_at > ?",
        )
        .bind(&link.app.0)
        .bind(link.email.as_str())
        .bind(issued_at.saturating_sub(window))
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        if count >= i64::from(limit.max) {
            let oldest = Timestamp(to_u64(oldest.unwrap_or(issued_at), "time")?);
            tx.rollback().await.map_err(unavailable)?;
            return Ok(IssueOutcome::RateLimited { retry_at: oldest.plus(limit.window) });
        }
        sqlx::query(
            "INSERT INTO links (hash, app_id, email, issued_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?, NULL)",
        )
        .bind(&link.hash[..])
        .bind(&link.app.0)
        .bind(link.email.as_str())
        .bind(issued_at)
        .bind(to_i64(link.expires_at.0, "time")?)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        Self::audit(&mut tx, link.issued_at, &Actor::Operator, &link.app, AuditAction::LinkIssued, &link.email).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(IssueOutcome::Issued)
    }

    async fn link(&self, hash: &[u8; 32]) -> Result<Option<LinkRecord>, StoreError> {
        let row = sqlx::query("SELECT app_id, email, issued_at, expires_at, used_at FROM links WHERE hash = ?")
            .bind(&hash[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        let Some(row) = row else { return Ok(None) };
        let used_at: Option<i64> = row.try_get("used_at").map_err(unavailable)?;
        Ok(Some(LinkRecord {
            hash: *hash,
            app: AppId(row.try_get("app_id").map_err(unavailable)?),
            email: email_from(row.try_get("email").map_err(unavailable)?)?,
            issued_at: Timestamp(to_u64(row.try_get("issued_at").map_err(unavailable)?, "time")?),
            expires_at: Timestamp(to_u64(row.try_get("expires_at").map_err(unavailable)?, "time")?),
            used_at: used_at.map(|t| to_u64(t, "time").map(Timestamp)).transpose()?,
        }))
    }

    async fn use_link(&self, hash: &[u8; 32], now: Timestamp) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // One conditional write: of any number of racing redemptions, SQLite lets exactly one
        // find `used_at` still empty.
        let row: Option<(String, String)> = sqlx::query_as(
            "UPDATE links SET used_at = ?1
             WHERE hash = ?2 AND used_at IS NULL AND expires_at > ?1
               AND EXISTS (SELECT 1 FROM viewers v WHERE v.app_id = links.app_id AND v.email = links.email)
             RETURNING app_id, email",
        )
        .bind(to_i64(now.0, "time")?)
        .bind(&hash[..])
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some((app, email)) = row else {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(false);
        };
        Self::audit(&mut tx, now, &Actor::Operator, &AppId(app), AuditAction::LinkRedeemed, &email_from(email)?)
            .await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn delete_app(&self, app: &AppId) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let Some(r) = Self::purge(&mut tx, app).await? else {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(false);
        };
        sqlx::query(
            "INSERT INTO deleted_apps (owner, repo, branch, main_file, deployed_by) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(&r.owner)
        .bind(&r.repo)
        .bind(&r.branch)
        .bind(&r.main_file)
        .bind(to_i64(r.deployed_by.0, "user id")?)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn delete_account(&self, user: UserId) -> Result<Vec<AppId>, StoreError> {
        let by = to_i64(user.0, "user id")?;
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM apps WHERE deployed_by = ? ORDER BY id")
            .bind(by)
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
        let ids: Vec<AppId> = ids.into_iter().map(AppId).collect();
        for id in &ids {
            Self::purge(&mut tx, id).await?;
        }
        sqlx::query("DELETE FROM deleted_apps WHERE deployed_by = ?")
            .bind(by)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(ids)
    }

    async fn deleted_apps(&self) -> Result<Vec<DeletedApp>, StoreError> {
        let rows = sqlx::query(
            "SELECT owner, repo, branch, main_file, deployed_by FROM deleted_apps ORDER BY owner, repo, branch, main_file",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(DeletedApp {
                    owner: row.try_get("owner").map_err(unavailable)?,
                    repo: row.try_get("repo").map_err(unavailable)?,
                    branch: row.try_get("branch").map_err(unavailable)?,
                    main_file: row.try_get("main_file").map_err(unavailable)?,
                    deployed_by: UserId(to_u64(row.try_get("deployed_by").map_err(unavailable)?, "user id")?),
                })
            })
            .collect()
    }

    async fn seed_once(&self, apps: &[(AppRecord, Vec<Email>)], at: Timestamp) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // The first statement writes, so the transaction holds the write lock from here on: of
        // processes seeding at once, exactly one finds the marker absent.
        let claimed = sqlx::query("INSERT INTO meta (key, value) VALUES ('seeded', ?) ON CONFLICT DO NOTHING")
            .bind(at.0.to_string())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected()
            == 1;
        if claimed {
            for (app, viewers) in apps {
                Self::insert_app(&mut tx, app).await?;
                for email in viewers {
                    if Self::insert_viewer(&mut tx, &app.id, email, at).await? {
                        Self::audit(&mut tx, at, &Actor::Operator, &app.id, AuditAction::ViewerAdded, email).await?;
                    }
                }
            }
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(claimed)
    }

    async fn record_delivery(&self, id: &str, at: Timestamp, _broadcast: &Broadcast) -> Result<bool, StoreError> {
        let at_ms = to_i64(at.0, "time")?;
        let horizon = at_ms.saturating_sub(to_i64(u64::try_from(DELIVERY_RETENTION.as_millis()).unwrap_or(0), "time")?);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query("DELETE FROM deliveries WHERE seen_at < ?")
            .bind(horizon)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let new = sqlx::query("INSERT INTO deliveries (id, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(id)
            .bind(at_ms)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected()
            == 1;
        tx.commit().await.map_err(unavailable)?;
        Ok(new)
    }
}
