//! The Postgres store: one database shared by every control-plane replica.
//!
//! The schema is created and upgraded by embedded, versioned migrations (`migrations/postgres/`),
//! under Postgres's advisory lock, so that replicas starting at once do not race. Invalidations
//! travel between replicas on a `LISTEN/NOTIFY` channel named after the schema.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use tokio::sync::mpsc;

use super::{
    Actor, AppRecord, AuditAction, AuditEvent, Broadcast, DELIVERY_RETENTION, DeletedApp, FeedEvent, IssueLimit,
    IssueOutcome, LinkRecord, Store, StoreError,
};
use crate::clock::Timestamp;
use crate::email::Email;
use crate::ids::{AppId, RepoId, UserId};
use crate::policy::Visibility;

/// The migrations, in order: (version, description, SQL). Append only; never edit one that
/// shipped (the migrator refuses a database whose applied migration has another checksum).
const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "initial", include_str!("../../migrations/postgres/0001_initial.sql"))];

/// The embedded migrations, as sqlx's migrator takes them.
#[derive(Debug)]
struct Embedded;

type Resolved = Result<Vec<Migration>, sqlx::error::BoxDynError>;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Resolved> + Send + 'static>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// How to reach the database, and the pool's bounds.
///
/// ```
/// use std::time::Duration;
/// use ghauthz::store::PgStoreOptions;
/// let opts = PgStoreOptions::new("postgres://postgres@127.0.0.1:5432/test")
///     .schema("ghauthz")
///     .max_connections(16)
///     .acquire_timeout(Duration::from_secs(1));
/// assert_eq!(opts.schema_name(), Some("ghauthz"));
/// ```
#[derive(Clone)]
pub struct PgStoreOptions {
    url: String,
    schema: Option<String>,
    max_connections: u32,
    acquire_timeout: Duration,
}

impl std::fmt::Debug for PgStoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PgStoreOptions")
            .field("url", &"[redacted]")
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

impl PgStoreOptions {
    /// A `postgres://` URL, with the defaults: the URL's own schema (`search_path`), 8
    /// connections, and 2 s to get one before a call answers *unavailable*.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), schema: None, max_connections: 8, acquire_timeout: Duration::from_secs(2) }
    }

    /// Keep the store in this schema (created if absent): lowercase ASCII letters, digits and
    /// `_`, at most 40 bytes. Stores in different schemas of one database are independent,
    /// their invalidation channels included.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// The schema set with [`PgStoreOptions::schema`].
    pub fn schema_name(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Most connections held (at least 2: one of them listens for invalidations).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// How long a call waits for a connection before it answers *unavailable*. This bounds how
    /// long a check takes to fail closed while Postgres is down.
    pub fn acquire_timeout(mut self, d: Duration) -> Self {
        self.acquire_timeout = d;
        self
    }
}

/// A store in a Postgres database, shared by replicas.
///
/// # Failures
///
/// A lost connection, or a database that is down, makes calls answer
/// [`StoreError::Unavailable`] within the acquire timeout: checks that need the store fail
/// closed. The pool opens new connections as they are needed, so the store recovers by itself
/// when Postgres returns.
///
/// # Replicas
///
/// [`Store::publish`] sends a `NOTIFY` on the schema's channel; [`Store::subscribe`] listens on
/// it from a connection of its own. When that connection drops, the subscriber hears
/// [`FeedEvent::Resync`] at once, reconnects with backoff, and hears `Resync` again once it
/// listens anew (messages sent in between are lost). The first `Resync` arrives as soon as the
/// subscription listens.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    channel: String,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    match &e {
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

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

/// Most invalidations per `NOTIFY` (Postgres caps a payload at 8,000 bytes; one invalidation
/// takes at most ~70).
const PER_MESSAGE: usize = 64;

impl PgStore {
    /// Connects to `url` (`postgres://...`) with the default options, and brings the schema up
    /// to date.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        Self::connect_with(PgStoreOptions::new(url)).await
    }

    /// Connects as `opts` says, creating the schema if it is named and absent, and runs the
    /// migrations this build embeds.
    pub async fn connect_with(opts: PgStoreOptions) -> Result<PgStore, StoreError> {
        if !(opts.url.starts_with("postgres://") || opts.url.starts_with("postgresql://")) {
            return Err(StoreError::InvalidConfig("database url: expected `postgres://` or `postgresql://`".into()));
        }
        let mut connect = PgConnectOptions::from_str(&opts.url)
            .map_err(|e| StoreError::InvalidConfig(format!("database url: {e}")))?;
        if let Some(schema) = &opts.schema {
            if !valid_schema(schema) {
                return Err(StoreError::InvalidConfig(format!(
                    "schema `{schema}`: expected lowercase letters, digits and `_`, at most 40 bytes"
                )));
            }
            create_schema(&connect, schema, opts.acquire_timeout).await?;
            connect = connect.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(2))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(unavailable)?;
        Migrator::new(Embedded).await.map_err(|e| corrupt(format!("migrations: {e}")))?.run(&pool).await.map_err(
            |e| match e {
                sqlx::migrate::MigrateError::Execute(e) => unavailable(e),
                other => corrupt(format!("this build cannot use the database's schema: {other}")),
            },
        )?;
        let schema: String =
            sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await.map_err(unavailable)?;
        Ok(PgStore { pool, channel: format!("ghauthz_invalidations:{schema}") })
    }

    /// Closes the pool (waits for connections to be returned), which also ends subscriptions.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The `LISTEN/NOTIFY` channel invalidations travel on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    async fn notify(tx: &mut Transaction<'_, Postgres>, channel: &str, b: &Broadcast) -> Result<(), StoreError> {
        // NOTIFY is transactional: the messages go out, in order, when the transaction commits.
        for chunk in b.invalidations.chunks(PER_MESSAGE) {
            let part = Broadcast { origin: b.origin, invalidations: chunk.to_vec() };
            let payload = serde_json::to_string(&part).map_err(|e| corrupt(e.to_string()))?;
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(payload)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn audit(
        tx: &mut Transaction<'_, Postgres>,
        at: Timestamp,
        actor: &Actor,
        app: &AppId,
        action: AuditAction,
        email: &Email,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit (at, actor, app_id, action, email) VALUES ($1, $2, $3, $4, $5)")
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

    async fn insert_app(tx: &mut Transaction<'_, Postgres>, app: &AppRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO apps (id, owner, repo, repo_id, branch, main_file, visibility, deployed_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
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
        tx: &mut Transaction<'_, Postgres>,
        app: &AppId,
        email: &Email,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("INSERT INTO viewers (app_id, email, added_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(&app.0)
                .bind(email.as_str())
                .bind(to_i64(at.0, "time")?)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes everything of `app` inside `tx`; returns its record.
    async fn purge(tx: &mut Transaction<'_, Postgres>, app: &AppId) -> Result<Option<AppRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1 FOR UPDATE"))
            .bind(&app.0)
            .fetch_optional(&mut **tx)
            .await
            .map_err(unavailable)?;
        let Some(record) = row.as_ref().map(app_from_row).transpose()? else { return Ok(None) };
        for sql in [
            "DELETE FROM links WHERE app_id = $1",
            "DELETE FROM viewers WHERE app_id = $1",
            "DELETE FROM audit WHERE app_id = $1",
            "DELETE FROM apps WHERE id = $1",
        ] {
            sqlx::query(sql).bind(&app.0).execute(&mut **tx).await.map_err(unavailable)?;
        }
        Ok(Some(record))
    }
}

/// `CREATE SCHEMA IF NOT EXISTS`, on a connection of its own (the pool's connections start in
/// the schema). Two replicas creating it at once can collide on the catalog's unique index;
/// the loser finds it there.
async fn create_schema(connect: &PgConnectOptions, schema: &str, timeout: Duration) -> Result<(), StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(timeout)
        .connect_with(connect.clone())
        .await
        .map_err(unavailable)?;
    let created = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")).execute(&pool).await;
    pool.close().await;
    match created {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(()),
        Err(e) => Err(unavailable(e)),
    }
}

const APP_COLUMNS: &str = "id, owner, repo, repo_id, branch, main_file, visibility, deployed_by";

fn app_from_row(row: &PgRow) -> Result<AppRecord, StoreError> {
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

/// The subscriber's loop: listen, forward, and on any interruption say `Resync`, reconnect with
/// backoff and say `Resync` again. Ends when the receiver is dropped or the pool is closed.
async fn listen(pool: PgPool, channel: String, tx: mpsc::Sender<FeedEvent>) {
    const FIRST_RETRY: Duration = Duration::from_millis(100);
    const LAST_RETRY: Duration = Duration::from_secs(5);
    let mut retry = FIRST_RETRY;
    loop {
        let listening = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(&channel).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            l = listening => match l {
                Ok(l) => l,
                Err(e) => {
                    if pool.is_closed() {
                        return;
                    }
                    tracing::warn!(error = %e, retry_ms = retry.as_millis() as u64, "invalidation feed: cannot listen");
                    tokio::select! {
                        () = tokio::time::sleep(retry) => {}
                        () = tx.closed() => return,
                    }
                    retry = (retry * 2).min(LAST_RETRY);
                    continue;
                }
            },
            () = tx.closed() => return,
        };
        retry = FIRST_RETRY;
        tracing::debug!("invalidation feed: listening");
        if tx.send(FeedEvent::Resync).await.is_err() {
            return;
        }
        loop {
            let next = tokio::select! {
                n = listener.try_recv() => n,
                () = tx.closed() => return,
            };
            let event = match next {
                Ok(Some(n)) => match serde_json::from_str::<Broadcast>(n.payload()) {
                    Ok(b) => FeedEvent::Broadcast(b),
                    Err(e) => {
                        // Someone else's message on our channel, or a newer format: what it
                        // invalidates is unknown, so forget everything.
                        tracing::warn!(error = %e, "invalidation feed: unreadable message");
                        FeedEvent::Resync
                    }
                },
                Ok(None) | Err(_) => {
                    tracing::warn!("invalidation feed: connection lost");
                    if tx.send(FeedEvent::Resync).await.is_err() {
                        return;
                    }
                    break;
                }
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn put_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        Self::insert_app(&mut tx, app).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn app(&self, id: &AppId) -> Result<Option<AppRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1"))
            .bind(&id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(app_from_row).transpose()
    }

    async fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {APP_COLUMNS} FROM apps ORDER BY id COLLATE \"C\""))
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
        let done = sqlx::query("DELETE FROM viewers WHERE app_id = $1 AND email = $2")
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
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT email FROM viewers WHERE app_id = $1 ORDER BY email COLLATE \"C\"")
                .bind(&app.0)
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        rows.into_iter().map(email_from).collect()
    }

    async fn is_viewer(&self, app: &AppId, email: &Email) -> Result<bool, StoreError> {
        let row: Option<i32> = sqlx::query_scalar("SELECT 1 FROM viewers WHERE app_id = $1 AND email = $2")
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // Lock the grant: issues for one (app, address) queue here, so the count below cannot
        // go stale before the insert, and a grant removed meanwhile is seen as removed.
        let invited: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM viewers WHERE app_id = $1 AND email = $2 FOR UPDATE")
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
            "SELECT COUNT(*), MIN(issued_at) FROM links WHERE app_id = $1 AND email = $2 AND issued_at > $3",
        )
        .bind(&link.app.0)
        .bind(link.email.as_str())
        .bind(issued_at.saturating_sub(millis(limit.window)))
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        if count >= i64::from(limit.max) {
            let oldest = Timestamp(to_u64(oldest.unwrap_or(issued_at), "time")?);
            tx.rollback().await.map_err(unavailable)?;
            return Ok(IssueOutcome::RateLimited { retry_at: oldest.plus(limit.window) });
        }
        sqlx::query(
            "INSERT INTO links (hash, app_id, email, issued_at, expires_at, used_at)
             VALUES ($1, $2, $3, $4, $5, NULL)",
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
        let row = sqlx::query("SELECT app_id, email, issued_at, expires_at, used_at FROM links WHERE hash = $1")
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
        // One conditional write. Racing redemptions queue on the row's lock; each one after the
        // first re-reads the row once the first commits, finds `used_at` set, and updates nothing.
        let row: Option<(String, String)> = sqlx::query_as(
            "UPDATE links SET used_at = $1
             WHERE hash = $2 AND used_at IS NULL AND expires_at > $1
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
            "INSERT INTO deleted_apps (owner, repo, branch, main_file, deployed_by) VALUES ($1, $2, $3, $4, $5)
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
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM apps WHERE deployed_by = $1 ORDER BY id COLLATE \"C\" FOR UPDATE")
                .bind(by)
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
        let ids: Vec<AppId> = ids.into_iter().map(AppId).collect();
        for id in &ids {
            Self::purge(&mut tx, id).await?;
        }
        sqlx::query("DELETE FROM deleted_apps WHERE deployed_by = $1")
            .bind(by)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(ids)
    }

    async fn deleted_apps(&self) -> Result<Vec<DeletedApp>, StoreError> {
        let rows = sqlx::query(
            "SELECT owner, repo, branch, main_file, deployed_by FROM deleted_apps
             ORDER BY owner COLLATE \"C\", repo COLLATE \"C\", branch COLLATE \"C\", main_file COLLATE \"C\", deployed_by",
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
        // Of replicas seeding at once, one inserts the marker; the others wait on its key until
        // that transaction ends, then find it there.
        let claimed = sqlx::query("INSERT INTO meta (key, value) VALUES ('seeded', $1) ON CONFLICT DO NOTHING")
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

    async fn record_delivery(&self, id: &str, at: Timestamp, broadcast: &Broadcast) -> Result<bool, StoreError> {
        let at_ms = to_i64(at.0, "time")?;
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query("DELETE FROM deliveries WHERE seen_at < $1")
            .bind(at_ms.saturating_sub(millis(DELIVERY_RETENTION)))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let new = sqlx::query("INSERT INTO deliveries (id, seen_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(id)
            .bind(at_ms)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected()
            == 1;
        if new {
            Self::notify(&mut tx, &self.channel, broadcast).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(new)
    }

    async fn publish(&self, broadcast: &Broadcast) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        Self::notify(&mut tx, &self.channel, broadcast).await?;
        tx.commit().await.map_err(unavailable)
    }

    fn subscribe(&self) -> Option<mpsc::Receiver<FeedEvent>> {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(listen(self.pool.clone(), self.channel.clone(), tx));
        Some(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["ghauthz", "t_1", "prod_eu"] {
            assert!(valid_schema(ok), "{ok}");
        }
        for bad in ["", "1abc", "Public", "a-b", "a\"b", "x; DROP TABLE apps", &"a".repeat(41)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }

    #[test]
    fn options_debug_hides_the_url() {
        let opts = PgStoreOptions::new("postgres://u:hunter2@db/x");
        assert!(!format!("{opts:?}").contains("hunter2"));
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        let expected: Vec<i64> = (1..=MIGRATIONS.len() as i64).collect();
        assert_eq!(versions, expected);
    }
}
