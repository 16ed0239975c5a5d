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

use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Pool, Postgres, Transaction};
use tokio::sync::mpsc;

use super::sql::{Backend, corrupt, unavailable};
use super::{Broadcast, Change, FeedEvent, StoreError};
use crate::core::invalidation::Invalidation;
use async_trait::async_trait;

/// The migrations, in order: (version, description, SQL). Append only; never edit one that
/// shipped (the migrator refuses a database whose applied migration has another checksum).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../../migrations/postgres/0001_initial.sql")),
    (2, "grant ids", include_str!("../../migrations/postgres/0002_grant_ids.sql")),
    (3, "redemption attempts", include_str!("../../migrations/postgres/0003_redemption_attempts.sql")),
    (4, "audit outcomes", include_str!("../../migrations/postgres/0004_audit_outcomes.sql")),
    (5, "support windows", include_str!("../../migrations/postgres/0005_support_windows.sql")),
    (6, "shared rosters", include_str!("../../migrations/postgres/0006_shared_rosters.sql")),
];

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
#[non_exhaustive]
pub struct PgStoreOptions {
    url: String,
    schema: Option<String>,
    max_connections: u32,
    acquire_timeout: Duration,
    heartbeat: Duration,
}

impl std::fmt::Debug for PgStoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PgStoreOptions")
            .field("url", &"[redacted]")
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("heartbeat", &self.heartbeat)
            .finish()
    }
}

impl PgStoreOptions {
    /// A `postgres://` URL, with the defaults: the URL's own schema (`search_path`), 8
    /// connections, 2 s to get one before a call answers *unavailable*, and a 2 s heartbeat on
    /// the invalidation feed.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: None,
            max_connections: 8,
            acquire_timeout: Duration::from_secs(2),
            heartbeat: Duration::from_secs(2),
        }
    }

    /// How often a subscriber sends itself a message on the invalidation channel. A feed that
    /// hears nothing, not even that, for two heartbeats counts as lost (a connection that died
    /// without a word): the replica forgets what it cached and listens anew.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
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

/// A store in a Postgres database, shared by replicas. It is a [`Store`](super::Store): each
/// operation is one SQL text, which the SQLite store (`SqliteStore`, feature `sqlite`) runs too.
///
/// # Failures
///
/// A lost connection, or a database that is down, makes calls answer
/// [`StoreError::Unavailable`] within the acquire timeout: checks that need the store fail
/// closed. The pool opens new connections as they are needed, so the store recovers by itself
/// when Postgres returns. A statement waits for another session's row or table lock no longer
/// than the acquire timeout either (`lock_timeout`): the server rolls it back and the call
/// answers *unavailable*, before an authorizer's store bound cuts it off. (The bound travels as
/// the `options` startup parameter: a connection pooler in front of Postgres must pass it on.)
/// Migrations run on a connection of their own, without that bound, so that a replica starting
/// while another migrates waits for it.
///
/// # Replicas
///
/// [`ChangeFeed::publish`](super::ChangeFeed::publish) sends a `NOTIFY` on the schema's channel;
/// [`ChangeFeed::subscribe`](super::ChangeFeed::subscribe) listens on it from a connection of its own.
/// Every change to an app or a grant is sent on the same channel, in the transaction that makes
/// it. When the listening connection drops, the subscriber hears [`FeedEvent::Lost`] at once,
/// reconnects with backoff, and hears [`FeedEvent::Listening`] once it listens anew (messages
/// sent in between are lost). The first `Listening` arrives as soon as the subscription listens.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    channel: String,
    heartbeat: Duration,
}

fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

/// Most invalidations or changes per `NOTIFY` (Postgres caps a payload at 8,000 bytes; one
/// invalidation takes at most ~70).
const PER_MESSAGE: usize = 64;

/// The longest payload sent; a longer message is replaced by [`Change::All`].
const MAX_PAYLOAD: usize = 7900;

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
        // What the parser says may repeat part of the URL, which may hold a password.
        let mut connect = PgConnectOptions::from_str(&opts.url).map_err(|_| {
            StoreError::InvalidConfig("database url: not a URL Postgres accepts (its text is not repeated)".into())
        })?;
        if let Some(schema) = &opts.schema {
            if !valid_schema(schema) {
                return Err(StoreError::InvalidConfig(
                    format!("schema `{schema}`: expected lowercase letters, digits and `_`, at most 40 bytes").into(),
                ));
            }
            create_schema(&connect, schema, opts.acquire_timeout).await?;
            connect = connect.options([("search_path", schema.as_str())]);
        }
        migrate(&connect, opts.acquire_timeout).await?;
        // A statement waits for another session's lock no longer than a connection is waited
        // for: the server gives up (and rolls back) before an authorizer's store bound (5 s by
        // default) would cut the call off. (A pooler in front of Postgres must pass the
        // `options` startup parameter on, or this bound is lost.)
        let lock_wait = opts.acquire_timeout.as_millis().clamp(1, i32::MAX as u128);
        let connect = connect.options([("lock_timeout", format!("{lock_wait}ms").as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(2))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(unavailable)?;
        let schema: String =
            sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await.map_err(unavailable)?;
        Ok(PgStore { pool, channel: channel_for(&schema), heartbeat: opts.heartbeat.max(Duration::from_millis(10)) })
    }

    /// Closes the pool (waits for connections to be returned), which also ends subscriptions.
    pub async fn close(&self) {
        self.pool.close().await;
        // `Pool::close` waits until every connection is back in the pool, but does not close
        // those that came back during its last wait; a second call closes them.
        self.pool.close().await;
    }

    /// The `LISTEN/NOTIFY` channel invalidations travel on.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

/// The channel of a schema's store. Postgres cuts identifiers at 63 bytes, and `LISTEN` would
/// cut a longer name where `pg_notify` refuses it, so a long schema name is replaced by its hash.
fn channel_for(schema: &str) -> String {
    let channel = format!("ghauthz_invalidations:{schema}");
    if channel.len() <= 63 {
        return channel;
    }
    let digest = <sha2::Sha256 as sha2::Digest>::digest(schema.as_bytes());
    format!("ghauthz_invalidations:{}", hex::encode(&digest[..16]))
}

/// A pool of one connection, for work done once on a connection of its own (close it after).
async fn one_connection(connect: &PgConnectOptions, timeout: Duration) -> Result<PgPool, StoreError> {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(timeout)
        .connect_with(connect.clone())
        .await
        .map_err(unavailable)
}

/// Runs the embedded migrations on a connection of its own, without the pool's lock wait: a
/// replica starting while another migrates waits for sqlx's migration lock (an advisory lock),
/// and a migration waits for the tables' locks, as long as they are held.
async fn migrate(connect: &PgConnectOptions, timeout: Duration) -> Result<(), StoreError> {
    let pool = one_connection(connect, timeout).await?;
    let ran = match Migrator::new(Embedded).await {
        Ok(migrator) => migrator.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => unavailable(e),
            other => corrupt(format!("this build cannot use the database's schema: {other}")),
        }),
        Err(e) => Err(corrupt(format!("migrations: {e}"))),
    };
    pool.close().await;
    ran
}

/// `CREATE SCHEMA IF NOT EXISTS`, on a connection of its own (the pool's connections start in
/// the schema). Two replicas creating it at once can collide on the catalog's unique index;
/// the loser finds it there.
async fn create_schema(connect: &PgConnectOptions, schema: &str, timeout: Duration) -> Result<(), StoreError> {
    let pool = one_connection(connect, timeout).await?;
    let created = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")).execute(&pool).await;
    pool.close().await;
    match created {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(()),
        Err(e) => Err(unavailable(e)),
    }
}

/// What a heartbeat sends: an empty payload, which no invalidation has.
const HEARTBEAT: &str = "";

/// The subscriber's loop: listen, say `Listening`, forward, and on any interruption say `Lost`,
/// reconnect with backoff and say `Listening` again. Every `heartbeat` it sends itself an empty
/// message through the pool; a feed that heard nothing for two heartbeats is taken for lost.
/// Ends when the receiver is dropped or the pool is closed.
async fn listen(pool: PgPool, channel: String, heartbeat: Duration, tx: mpsc::Sender<FeedEvent>) {
    const FIRST_RETRY: Duration = Duration::from_millis(100);
    const LAST_RETRY: Duration = Duration::from_secs(5);
    let mut retry = FIRST_RETRY;
    loop {
        let listening = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(&channel).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let listening = tokio::select! {
            l = tokio::time::timeout(heartbeat * 2, listening) => l,
            () = tx.closed() => return,
        };
        let mut listener = match listening {
            Ok(Ok(l)) => l,
            failed => {
                if pool.is_closed() {
                    return;
                }
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer".to_owned(),
                };
                tracing::warn!(%error, retry_ms = retry.as_millis() as u64, "invalidation feed: cannot listen");
                tokio::select! {
                    () = tokio::time::sleep(retry) => {}
                    () = tx.closed() => return,
                }
                retry = (retry * 2).min(LAST_RETRY);
                continue;
            }
        };
        retry = FIRST_RETRY;
        tracing::debug!("invalidation feed: listening");
        if tx.send(FeedEvent::Listening).await.is_err() {
            return;
        }
        let mut beat = tokio::time::interval(heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard = tokio::time::Instant::now();
        loop {
            // `try_recv` keeps a partly read message buffered when it is cancelled.
            let next = tokio::select! {
                n = listener.try_recv() => Some(n),
                _ = beat.tick() => None,
                () = tx.closed() => return,
            };
            let event = match next {
                None if heard.elapsed() > heartbeat * 2 => None,
                None => {
                    let ping = sqlx::query("SELECT pg_notify($1, $2)").bind(&channel).bind(HEARTBEAT).execute(&pool);
                    if let Ok(Err(e)) = tokio::time::timeout(heartbeat, ping).await {
                        tracing::debug!(error = %e, "invalidation feed: heartbeat not sent");
                    }
                    continue;
                }
                Some(Ok(Some(n))) => {
                    heard = tokio::time::Instant::now();
                    match n.payload() {
                        HEARTBEAT => continue,
                        payload => Some(match serde_json::from_str::<Broadcast>(payload) {
                            Ok(b) => FeedEvent::Broadcast(b),
                            Err(e) => {
                                // Someone else's message on our channel, or a newer format: what
                                // it invalidates is unknown, so forget everything.
                                tracing::warn!(error = %e, "invalidation feed: unreadable message");
                                if tx.send(FeedEvent::Lost).await.is_err() {
                                    return;
                                }
                                FeedEvent::Listening
                            }
                        }),
                    }
                }
                Some(Ok(None) | Err(_)) => None,
            };
            let Some(event) = event else {
                tracing::warn!("invalidation feed: connection lost");
                if tx.send(FeedEvent::Lost).await.is_err() {
                    return;
                }
                break;
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    }
}

#[async_trait]
impl Backend for PgStore {
    type Db = Postgres;
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const FOR_KEY_SHARE: &'static str = " FOR KEY SHARE";
    // Row locks (`FOR UPDATE`) order what must be ordered; an advisory lock per identity orders
    // its deploys against its account's deletion (there is no row to lock for an app not yet
    // written).
    const WRITE_LOCK: Option<&'static str> = None;
    const ACCOUNT_LOCK: Option<&'static str> = Some(
        "SELECT pg_advisory_xact_lock(hashtextextended('ghauthz account ' || current_schema() || ' ' || $1::text, 0))",
    );

    fn pool(&self) -> &Pool<Postgres> {
        &self.pool
    }

    fn rows_affected(done: &<Postgres as sqlx::Database>::QueryResult) -> u64 {
        done.rows_affected()
    }

    /// Sends `b` on the channel inside `tx`. `NOTIFY` is transactional: the messages go out, in
    /// order, when the transaction commits, and not at all if it does not.
    async fn announce(&self, tx: &mut Transaction<'_, Postgres>, b: &Broadcast) -> Result<(), StoreError> {
        let invalidations = b.invalidations.chunks(PER_MESSAGE).map(|c| Broadcast::invalidations(b.origin, c.to_vec()));
        let changes =
            b.changes.chunks(PER_MESSAGE).map(|c| Broadcast { changes: c.to_vec(), ..Broadcast::changes(vec![]) });
        for part in invalidations.chain(changes) {
            let mut payload = serde_json::to_string(&part).map_err(|e| corrupt(e.to_string()))?;
            if payload.len() > MAX_PAYLOAD {
                // Long app ids: too much for one message, so every subscriber forgets everything.
                let all = Broadcast {
                    origin: part.origin,
                    invalidations: if part.invalidations.is_empty() { vec![] } else { vec![Invalidation::All] },
                    changes: if part.changes.is_empty() { vec![] } else { vec![Change::All] },
                };
                payload = serde_json::to_string(&all).map_err(|e| corrupt(e.to_string()))?;
            }
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&self.channel)
                .bind(payload)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn close(&self) {
        PgStore::close(self).await;
    }

    fn subscribe(&self) -> Option<mpsc::Receiver<FeedEvent>> {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(listen(self.pool.clone(), self.channel.clone(), self.heartbeat, tx));
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
    fn channel_names_fit_an_identifier() {
        assert_eq!(channel_for("public"), "ghauthz_invalidations:public");
        let long = channel_for(&"s".repeat(63));
        assert!(long.len() <= 63 && long != channel_for(&"s".repeat(62)), "{long}");
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
