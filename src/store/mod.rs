//! The store: apps, viewer grants and the append-only audit log.
//!
//! A small trait with three implementations: in memory ([`MemoryStore`], for tests and world
//! mode without `--db`), SQLite ([`SqliteStore`], feature `sqlite`: one file, no server) and
//! Postgres ([`PgStore`], feature `postgres`: shared by control-plane replicas). A store failure
//! is *unavailable*: checks that need the store fail closed.
//!
//! # The change feed
//!
//! Authorizers cache apps and viewer grants, so every store that several authorizers share tells
//! them what changed ([`ChangeFeed::subscribe`]): each write that changes an app or ends a grant sends
//! a [`Change`] in the same transaction as the write, and [`ChangeFeed::publish`] carries GitHub-fact
//! invalidations between replicas. The in-memory store tells the authorizers built on it at
//! once; SQLite keeps a change log (a sequence-numbered table) that every authorizer on the file
//! polls every 25 ms, so that a command run by another process reaches a running service;
//! Postgres sends `NOTIFY` on a channel of the schema's own. A subscriber that may have missed a
//! message hears [`FeedEvent::Lost`] and, once it hears everything again, [`FeedEvent::Listening`].

mod bounded;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub(crate) use bounded::Bounded;
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PgStore, PgStoreOptions};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

pub use crate::core::audit::{Actor, AuditAction, AuditEvent, AuditOutcome, DELETED_ACCOUNT};
use crate::core::invalidation::Invalidation;

use crate::core::email::Email;
pub use crate::core::ids::SupportId;
use crate::core::ids::{App, AppId, GrantId, InvalidRepoCoords, OwnerId, RepoCoords, RepoId, UserId};
use crate::core::policy::{Role, RoleGrant, Visibility};
pub use crate::core::support::SupportWindow;
use crate::core::time::Timestamp;

/// An app as the control plane recorded it at deploy time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    /// The app's id.
    pub id: AppId,
    /// Repository owner at deploy time.
    pub owner: String,
    /// Repository name at deploy time.
    pub repo: String,
    /// Repository id at deploy time.
    pub repo_id: RepoId,
    /// The branch the app runs from.
    pub branch: String,
    /// Main file.
    pub main_file: String,
    /// Public or private.
    pub visibility: Visibility,
    /// The GitHub identity the app belongs to.
    pub deployed_by: UserId,
}

impl AppRecord {
    /// The app as checks take it.
    pub fn app(&self) -> Result<App, InvalidRepoCoords> {
        Ok(App::new(self.id.clone(), RepoCoords::new(&self.owner, &self.repo)?, self.repo_id, self.visibility))
    }
}

/// Whether a support window still stood at `at` when its opener's account was deleted (an entry
/// says it went): not revoked, opened, not ended. As the SQL stores judge it.
pub(crate) fn still_open(w: &SupportWindow, at: Timestamp) -> bool {
    w.revoked_at.is_none() && w.opened_at <= at && w.ends_at > at
}

/// The entry an app gets when the account that opened support windows on it is deleted (the
/// windows go with the account): written as `user`'s, which the deletion then replaces with
/// [`DELETED_ACCOUNT`].
pub(crate) fn window_gone(app: &AppId, user: UserId, at: Timestamp) -> AuditEvent {
    AuditEvent::new(at, &Actor::Github(user), app, AuditAction::SupportRevoked).with_detail("account deleted")
}

/// Which audit entries [`AuditStore::audit`] returns: newest first, optionally of one app, since a
/// time, and at most so many.
///
/// ```
/// use ghauthz::store::AuditFilter;
/// use ghauthz::{AppId, Timestamp};
/// let f = AuditFilter::new().for_app(AppId("dash".into())).since(Timestamp(1_000)).limit(10);
/// assert_eq!((f.app().map(|a| a.0.as_str()), f.from(), f.max()), (Some("dash"), Some(Timestamp(1_000)), Some(10)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditFilter {
    app: Option<AppId>,
    since: Option<Timestamp>,
    limit: Option<u32>,
}

impl AuditFilter {
    /// Every entry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only the entries about `app`.
    pub fn for_app(mut self, app: AppId) -> Self {
        self.app = Some(app);
        self
    }

    /// Only the entries at or after `at`.
    pub fn since(mut self, at: Timestamp) -> Self {
        self.since = Some(at);
        self
    }

    /// At most `n` entries (the newest).
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }

    /// The app, if one is asked for.
    pub fn app(&self) -> Option<&AppId> {
        self.app.as_ref()
    }

    /// The earliest time asked for.
    pub fn from(&self) -> Option<Timestamp> {
        self.since
    }

    /// The most entries asked for.
    pub fn max(&self) -> Option<u32> {
        self.limit
    }

    /// Whether `e` passes the app and time filters (the limit is applied by the caller).
    pub(crate) fn admits(&self, e: &AuditEvent) -> bool {
        self.app.as_ref().is_none_or(|a| a == &e.app) && self.since.is_none_or(|t| e.at >= t)
    }
}

/// What [`AppStore::deploy_app`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeployOutcome {
    /// A new app was recorded.
    Deployed,
    /// The app existed, deployed from the same coordinates (owner, repository, branch, main
    /// file) and the same repository: nothing changed but the audit log.
    Redeployed(AppRecord),
    /// An app with this id exists, deployed from other coordinates or from another repository
    /// (the one at its coordinates was replaced): nothing was changed.
    Exists(AppRecord),
}

impl AppRecord {
    /// Whether `other` is deployed from the same place: owner, repository, branch and main file.
    /// The owner and repository are compared as GitHub compares them, ignoring ASCII case; the
    /// branch and main file exactly.
    pub fn same_coordinates(&self, other: &AppRecord) -> bool {
        self.owner.eq_ignore_ascii_case(&other.owner)
            && self.repo.eq_ignore_ascii_case(&other.repo)
            && (&self.branch, &self.main_file) == (&other.branch, &other.main_file)
    }

    /// Where it is deployed from, as the audit log says it: `owner/repo@branch:main_file`.
    pub fn coordinates(&self) -> String {
        format!("{}/{}@{}:{}", self.owner, self.repo, self.branch, self.main_file)
    }
}

/// What is kept of a deleted app: where it was deployed from, and who deployed it (so that
/// deleting that account can remove this too). Nothing else, nothing personal of its viewers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeletedApp {
    /// Repository owner.
    pub owner: String,
    /// Repository name.
    pub repo: String,
    /// The branch the app ran from.
    pub branch: String,
    /// Main file.
    pub main_file: String,
    /// The GitHub identity that deployed it.
    pub deployed_by: UserId,
}

/// A sign-in link as the store holds it: never the token, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRecord {
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// The app it opens.
    pub app: AppId,
    /// The invited address it was sent to.
    pub email: Email,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// When it was used up, if it was.
    pub used_at: Option<Timestamp>,
    /// The grant it was issued under: set by [`LinkStore::issue_link`] (ignored when passed to it);
    /// `None` for a link kept from before grants had ids whose grant cannot be told, which is
    /// treated as revoked.
    pub grant: Option<GrantId>,
}

/// What [`LinkStore::issue_link`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssueOutcome {
    /// Stored (and audited).
    Issued,
    /// The address is not invited to the app: nothing stored.
    NotInvited,
    /// Too many links for this (app, address) lately: nothing stored until `retry_at`.
    RateLimited {
        /// When one more may be issued.
        retry_at: Timestamp,
    },
}

/// How many links one (app, address) may be issued within a window.
///
/// ```
/// use std::time::Duration;
/// use ghauthz::store::IssueLimit;
/// let limit = IssueLimit::new(5, Duration::from_secs(900));
/// assert_eq!((limit.max(), limit.window()), (5, Duration::from_secs(900)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssueLimit {
    /// At most this many...
    pub(crate) max: u32,
    /// ...within this long.
    pub(crate) window: std::time::Duration,
}

impl IssueLimit {
    /// At most `max` links within `window`.
    pub const fn new(max: u32, window: std::time::Duration) -> Self {
        Self { max, window }
    }

    /// At most this many...
    pub fn max(&self) -> u32 {
        self.max
    }

    /// ...within this long.
    pub fn window(&self) -> std::time::Duration {
        self.window
    }
}

/// One attempt to use a link up ([`LinkStore::use_link`]).
///
/// # Time bounds
///
/// An attempt has two instants. By `decide_by` the use must be written, or the store leaves the
/// link unused and answers [`StoreError::Unavailable`]: an attempt given up is never committed
/// later. Once the use is written the store commits it and waits for the commit's answer until
/// `answer_by`; if that answer is lost (the connection failed mid-commit) it reads back whether
/// the link was used by this very attempt (each attempt writes an id of its own with the use),
/// asking again until `answer_by` while the store does not answer, so that a redemption that did
/// commit is reported as a success and one that did not leaves the link unused. Only a commit
/// whose outcome stays unknown past `answer_by` is reported unavailable without that knowledge
/// (its message says so). Without a bound both instants are a day away; an authorizer sets them
/// from its store bound ([`AuthorizerBuilder::store_timeout`]).
///
/// ```
/// use std::time::Duration;
/// use ghauthz::Timestamp;
/// use ghauthz::store::Redemption;
/// let r = Redemption::new([7; 32], Timestamp(1_000)).within(Duration::from_secs(5));
/// assert!(r.decide_by() < r.answer_by());
/// assert_ne!(r.attempt(), Redemption::new([7; 32], Timestamp(1_000)).attempt(), "each attempt its own id");
/// ```
///
/// [`AuthorizerBuilder::store_timeout`]: crate::AuthorizerBuilder::store_timeout
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redemption {
    hash: [u8; 32],
    at: Timestamp,
    attempt: [u8; 16],
    decide_by: tokio::time::Instant,
    answer_by: tokio::time::Instant,
}

impl Redemption {
    /// An attempt on the link whose token hashes to `hash`, at `at`, with a fresh attempt id.
    pub fn new(hash: [u8; 32], at: Timestamp) -> Self {
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
        Self { hash, at, attempt: attempt_id(), decide_by: far, answer_by: far }
    }

    /// The use must be written within `bound` from now, and the commit answered within twice
    /// that.
    pub fn within(mut self, bound: Duration) -> Self {
        let now = tokio::time::Instant::now();
        // A bound too large for the clock ("no limit") is a day, as without one.
        let at = |d: Duration| now.checked_add(d).unwrap_or(self.decide_by);
        let decide_by = at(bound);
        self.answer_by = at(bound.saturating_mul(2)).max(decide_by);
        self.decide_by = decide_by;
        self
    }

    /// SHA-256 of the link's token.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// When the link is used (its expiry is judged at this instant).
    pub fn at(&self) -> Timestamp {
        self.at
    }

    /// This attempt's own id, written with the use.
    pub fn attempt(&self) -> &[u8; 16] {
        &self.attempt
    }

    /// The use is written by then, or not at all.
    pub fn decide_by(&self) -> tokio::time::Instant {
        self.decide_by
    }

    /// The commit's answer is awaited until then.
    pub fn answer_by(&self) -> tokio::time::Instant {
        self.answer_by
    }
}

/// 128 bits unique to one attempt, across threads, processes and replicas: two keyed hashes
/// (std's per-process random keys) of a counter, the process id and the time. Not a secret.
fn attempt_id() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(salt);
        h.write_u64(n);
        h.write_u32(std::process::id());
        h.write_u128(nanos);
        h.finish().to_le_bytes()
    };
    let (a, b) = (half(0), half(1));
    let mut id = [0; 16];
    id[..8].copy_from_slice(&a);
    id[8..].copy_from_slice(&b);
    id
}

/// Opens the store `location` names: a `postgres://` (or `postgresql://`) URL (feature
/// `postgres`), a `sqlite://` URL or a file path (feature `sqlite`; the file is created if
/// absent). Anything else that looks like a URL or a connection string (a scheme such as
/// `mysql:`, or `key=value` words) is refused rather than taken for a file name, and is not
/// repeated in the error (it may hold a password).
///
/// # Errors
///
/// [`StoreError::InvalidConfig`] for a location this build cannot open;
/// [`StoreError::Unavailable`] if the store cannot be reached or created.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use ghauthz::store::{self, StoreError};
/// let err = store::open("mysql://user:secret@db/app").await.unwrap_err();
/// assert!(matches!(err, StoreError::InvalidConfig(_)) && !err.to_string().contains("secret"));
/// # });
/// ```
pub async fn open(location: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return Ok(std::sync::Arc::new(PgStore::connect(location).await?));
        #[cfg(not(feature = "postgres"))]
        return Err(StoreError::InvalidConfig("this build has no Postgres store (feature `postgres`)".into()));
    }
    let path = match location.strip_prefix("sqlite://") {
        Some(path) => path,
        None if looks_like_a_url(location) => {
            return Err(StoreError::InvalidConfig(
                "expected an SQLite file, a `sqlite://` URL or a `postgres://` URL (the location is not repeated)"
                    .into(),
            ));
        }
        None => location,
    };
    #[cfg(feature = "sqlite")]
    return Ok(std::sync::Arc::new(SqliteStore::open(path).await?));
    #[cfg(not(feature = "sqlite"))]
    {
        let _ = path;
        Err(StoreError::InvalidConfig("this build has no SQLite store (feature `sqlite`)".into()))
    }
}

/// Whether `value` names a URL or a connection string rather than a file: a scheme (letters
/// before a `:` that comes before any `/`, as in `mysql://` or `postgres:user@host`), or
/// `key=value` words (`host=db password=...`).
fn looks_like_a_url(value: &str) -> bool {
    let scheme = value.split_once(':').is_some_and(|(before, _)| {
        !before.is_empty() && before.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    });
    scheme || (value.contains('=') && value.contains(char::is_whitespace))
}

/// The store could not answer. Checks that need it fail closed (exit 3 in the CLI).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend is unreachable or failed.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] StoreFailure),
    /// The backend holds something this version cannot read.
    #[error("store holds unreadable data: {0}")]
    Corrupt(#[source] StoreFailure),
    /// The store was configured wrongly (a malformed URL, an unusable schema name).
    #[error("store configuration: {0}")]
    InvalidConfig(#[source] StoreFailure),
}

/// What a [`StoreError`] says, and the backend's own error behind it where there was one
/// ([`std::error::Error::source`]): the driver's error is kept, not only its text.
///
/// ```
/// use std::error::Error as _;
/// use ghauthz::store::{StoreError, StoreFailure};
/// let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer");
/// let err = StoreError::Unavailable(StoreFailure::caused_by("cannot connect", io));
/// assert_eq!(err.to_string(), "store unavailable: cannot connect");
/// assert_eq!(err.source().and_then(|f| f.source()).map(|e| e.to_string()).as_deref(), Some("no answer"));
/// ```
#[derive(Debug, Clone)]
pub struct StoreFailure {
    message: String,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl StoreFailure {
    /// A failure described by `message` alone.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), source: None }
    }

    /// A failure described by `message`, caused by `source`.
    pub fn caused_by(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self { message: message.into(), source: Some(std::sync::Arc::new(source)) }
    }

    /// What went wrong, in words.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Failures compare by what they say: the source is what caused it, not what it is.
impl PartialEq for StoreFailure {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for StoreFailure {}

impl From<String> for StoreFailure {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for StoreFailure {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// An app record whose coordinates are not a repository's: the store holds what this version
/// cannot read.
impl From<InvalidRepoCoords> for StoreError {
    fn from(e: InvalidRepoCoords) -> Self {
        StoreError::Corrupt(StoreFailure::caused_by(e.to_string(), e))
    }
}

impl StoreError {
    /// A stable name: `store_unavailable`, `store_corrupt`, `store_config`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "store_unavailable",
            StoreError::Corrupt(_) => "store_corrupt",
            StoreError::InvalidConfig(_) => "store_config",
        }
    }
}

/// A change to what the store holds, that authorizers caching it must hear of.
///
/// Serialized as `{"kind": "app", "app": "<id>"}` or `{"kind": "all"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Change {
    /// The app's record changed, the app was deleted, or one of its grants ended: forget the
    /// app and every grant of it.
    App {
        /// The app.
        app: AppId,
    },
    /// Anything may have changed: forget every app and grant.
    All,
}

/// What one replica sends to the others that share its store: invalidations of GitHub facts, and
/// changes to apps and grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broadcast {
    /// The replica that sent it (each authorizer draws a random id, never 0), so that it can
    /// skip its own; 0 for changes the store itself announces, which every authorizer applies.
    pub origin: u64,
    /// What to forget of GitHub's facts.
    #[serde(default)]
    pub invalidations: Vec<Invalidation>,
    /// What changed in the store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
}

impl Broadcast {
    /// Invalidations sent by replica `origin`.
    pub fn invalidations(origin: u64, invalidations: Vec<Invalidation>) -> Self {
        Self { origin, invalidations, changes: Vec::new() }
    }

    /// Changes the store announces (origin 0: every authorizer applies them).
    pub fn changes(changes: Vec<Change>) -> Self {
        Self { origin: 0, invalidations: Vec::new(), changes }
    }
}

/// What a subscriber hears ([`ChangeFeed::subscribe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedEvent {
    /// A replica's invalidations, or the store's changes.
    Broadcast(Broadcast),
    /// The feed was interrupted, or a message could not be read: messages may have been missed.
    /// The subscriber forgets what it cached and caches no app or grant until
    /// [`FeedEvent::Listening`].
    Lost,
    /// The subscriber hears every message from here on (sent first when a subscription starts,
    /// and again after [`FeedEvent::Lost`]). What it cached before may be stale: it forgets that.
    Listening,
}

/// How long a webhook delivery id is remembered. GitHub redelivers for up to three days.
pub const DELIVERY_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Keeps outside implementations out: the store traits are the library's own, so that an
/// operation can be added to one of them without breaking anyone's code.
#[allow(unreachable_pub, reason = "the sealed-trait pattern: named by the store traits, nameable by nobody outside")]
mod sealed {
    pub trait Sealed {}
    impl Sealed for super::MemoryStore {}
    impl Sealed for super::Bounded {}
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    impl<B: super::sql::Backend> Sealed for B {}
}

/// The apps: what is deployed, and what deleting an app or an account removes. Implementations make each method atomic.
#[async_trait]
pub trait AppStore: sealed::Sealed + Send + Sync + std::fmt::Debug {
    /// Inserts an app, or replaces the one with the same id, announcing [`Change::App`]: with no
    /// GitHub check and no audit entry, for tests and migrations only (bringing apps over from
    /// another system). A control plane deploys with
    /// [`Authorizer::deploy_app`](crate::Authorizer::deploy_app), which checks GitHub and audits.
    async fn seed_app(&self, app: &AppRecord) -> Result<(), StoreError>;

    /// The app with this id.
    async fn app(&self, id: &AppId) -> Result<Option<AppRecord>, StoreError>;

    /// Every app, ordered by id.
    async fn apps(&self) -> Result<Vec<AppRecord>, StoreError>;

    /// Records the app `app` deployed, with `event`, and announces [`Change::App`]; atomically.
    /// An app with the same id, coordinates and repository is redeployed (only `event` is
    /// written); any other app with that id is left as it is ([`DeployOutcome::Exists`], nothing
    /// written).
    async fn deploy_app(&self, app: &AppRecord, event: &AuditEvent) -> Result<DeployOutcome, StoreError>;

    /// Sets the app's visibility and, if it changed, records `event` and announces
    /// [`Change::App`]; atomically. `None` if there is no such app, else whether it changed.
    async fn set_visibility(
        &self,
        app: &AppId,
        visibility: Visibility,
        event: &AuditEvent,
    ) -> Result<Option<bool>, StoreError>;

    /// Deletes the app, its viewer grants, its support windows and its links, removes every
    /// address from its audit
    /// entries, records `event`, and announces [`Change::App`], keeping one [`DeletedApp`]
    /// record (one per distinct record: deleting a redeployed app again adds nothing);
    /// atomically. `false` if there was no such app (nothing is written then).
    ///
    /// When it returns `Ok`, nothing it deleted is left in any file of the store: an SQLite
    /// store overwrites deleted rows with zeros and folds its write-ahead log into the database
    /// file, then empties the log, before it answers (Postgres keeps dead row versions until
    /// `VACUUM`: see docs/store.md).
    async fn delete_app(&self, app: &AppId, event: &AuditEvent) -> Result<bool, StoreError>;

    /// Deletes every app `user` deployed, as [`AppStore::delete_app`] does (support windows
    /// included), every [`DeletedApp`] record of theirs, every support window they opened and
    /// every audit entry that belongs to them, and puts
    /// [`DELETED_ACCOUNT`] in place of `github:<user>` in the entries left; atomically. Each
    /// other app that loses a window still open at `at` records it
    /// ([`AuditAction::SupportRevoked`] by [`DELETED_ACCOUNT`], detail `account deleted`).
    /// Returns the ids of the apps deleted. Like [`AppStore::delete_app`], it leaves nothing it
    /// deleted in the store's files when it returns `Ok`.
    async fn delete_account(&self, user: UserId, at: Timestamp) -> Result<Vec<AppId>, StoreError>;

    /// The records kept of deleted apps.
    async fn deleted_apps(&self) -> Result<Vec<DeletedApp>, StoreError>;

    /// Inserts `apps` with their viewers if, and only if, this store was never seeded; atomically
    /// with recording that it was. Returns whether it seeded.
    async fn seed_once(&self, apps: &[(AppRecord, Vec<Email>)], at: Timestamp) -> Result<bool, StoreError>;
}

/// The invited viewers of each app, and the grants that invite them. Implementations make each method atomic.
#[async_trait]
pub trait ViewerStore: sealed::Sealed + Send + Sync + std::fmt::Debug {
    /// Adds a viewer grant, with a new [`GrantId`] never used before, and audits it; `false` if
    /// the address was invited already (nothing is written then). The app must exist.
    async fn add_viewer(&self, app: &AppId, email: &Email, actor: &Actor, at: Timestamp) -> Result<bool, StoreError>;

    /// Ends a viewer grant for good and audits it, announcing [`Change::App`]; `false` if there
    /// was none (nothing is written then).
    async fn remove_viewer(&self, app: &AppId, email: &Email, actor: &Actor, at: Timestamp)
    -> Result<bool, StoreError>;

    /// The app's viewers, ordered.
    async fn viewers(&self, app: &AppId) -> Result<Vec<Email>, StoreError>;

    /// The grant that invites `email` to `app` now, if there is one.
    async fn grant(&self, app: &AppId, email: &Email) -> Result<Option<GrantId>, StoreError>;
}

/// Single-use sign-in links, stored by their token's hash. Implementations make each method atomic.
#[async_trait]
pub trait LinkStore: sealed::Sealed + Send + Sync + std::fmt::Debug {
    /// Stores `link` if its address is invited to its app and fewer than `limit.max` links were
    /// issued for the pair within `limit.window` before `link.issued_at`; atomically.
    async fn issue_link(&self, link: &LinkRecord, limit: IssueLimit) -> Result<IssueOutcome, StoreError>;

    /// The link whose token hashes to `hash`.
    async fn link(&self, hash: &[u8; 32]) -> Result<Option<LinkRecord>, StoreError>;

    /// Uses the link up if it is unused, unexpired at [`Redemption::at`], and the grant it was
    /// issued under still exists; true for exactly one caller, however many race (threads,
    /// processes, replicas). Keeps to the attempt's [time bounds](Redemption#time-bounds): an
    /// attempt answered [`StoreError::Unavailable`] has not used the link, unless its commit
    /// stayed unanswered past [`Redemption::answer_by`].
    async fn use_link(&self, redemption: &Redemption) -> Result<bool, StoreError>;
}

/// Support windows, opened by an app's developers for the platform's support staff. Implementations make each method atomic.
#[async_trait]
pub trait SupportStore: sealed::Sealed + Send + Sync + std::fmt::Debug {
    /// Opens `window` on its app (its `id` is assigned here, the one passed is ignored) and
    /// records `event`, announcing [`Change::App`]; atomically. `None` if there is no such app
    /// (nothing is written then).
    async fn open_support(&self, window: &SupportWindow, event: &AuditEvent) -> Result<Option<SupportId>, StoreError>;

    /// Revokes, at `at`, every window of `app` not revoked yet that admits `agent` (its own,
    /// and those for any agent; every one when `None`) and, if any was, records `event` and
    /// announces [`Change::App`]; atomically. Returns how many were revoked. A window that has
    /// ended by `at` is revoked too: a replica whose clock runs behind the caller's would still
    /// see it open.
    async fn revoke_support(
        &self,
        app: &AppId,
        agent: Option<&str>,
        at: Timestamp,
        event: &AuditEvent,
    ) -> Result<u32, StoreError>;

    /// Every support window of `app`, open or not, ordered by id.
    async fn support_windows(&self, app: &AppId) -> Result<Vec<SupportWindow>, StoreError>;
}

/// The append-only audit log. Implementations make each method atomic.
#[async_trait]
pub trait AuditStore: sealed::Sealed + Send + Sync + std::fmt::Debug {
    /// The audit entries `filter` asks for, newest first.
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError>;

    /// The whole audit log, oldest first.
    async fn audit_log(&self) -> Result<Vec<AuditEvent>, StoreError> {
        let mut events = self.audit(&AuditFilter::new()).await?;
        events.reverse();
        Ok(events)
    }

    /// Appends `event` to the audit log (a refusal, a sign-in). The entry belongs to its app's
    /// deployer or, if there is no such app, to `owner`. An entry with an address is written
    /// only while its app exists (and dropped otherwise), so that no address outlives the app.
    async fn record(&self, event: &AuditEvent, owner: Option<UserId>) -> Result<(), StoreError>;
}

/// What tells the authorizers sharing the store what changed: webhook deliveries recorded once, replicas' invalidations, the subscription, and closing the store. Implementations make each method atomic.
#[async_trait]
pub trait ChangeFeed: sealed::Sealed + Send + Sync + std::fmt::Debug {
    /// Records webhook delivery `id` as seen at `at` and, if it was not seen before, publishes
    /// `broadcast` ([`ChangeFeed::publish`]), atomically: a delivery is never marked seen without its
    /// invalidations reaching the other replicas. Returns whether the id was new. Ids seen more
    /// than [`DELIVERY_RETENTION`] before `at` are forgotten.
    async fn record_delivery(&self, id: &str, at: Timestamp, broadcast: &Broadcast) -> Result<bool, StoreError>;

    /// Sends `broadcast` to every subscriber of this store. A store without a feed (the default)
    /// has no one to tell, and succeeds.
    async fn publish(&self, broadcast: &Broadcast) -> Result<(), StoreError> {
        let _ = broadcast;
        Ok(())
    }

    /// What is published and changed, from now on, until the receiver is dropped; `None` for a
    /// store without a feed (the default), whose apps and grants an authorizer then reads at
    /// every check. The first event is [`FeedEvent::Listening`] once the subscriber hears
    /// everything. A receiver whose channel closes has stopped hearing. Called inside a Tokio
    /// runtime.
    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<FeedEvent>> {
        None
    }

    /// Closes the store: waits for its connections to be returned and closes them, so that
    /// everything written is in the store's files and nothing else (an SQLite store folds its
    /// write-ahead log into the database file and removes it). Calls made afterwards fail
    /// [`StoreError::Unavailable`]. A store without connections (the default) has nothing to do.
    async fn close(&self) {}
}

/// A repository's roster as one replica fetched it from GitHub, shared through the store with the
/// replicas on it ([`FactStore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedRoster {
    /// The repository.
    pub repo: RepoId,
    /// Its owner (an invalidation of the owner makes the roster stale).
    pub owner: OwnerId,
    /// The least role the roster was asked for: it lists every user with that role or more.
    pub least: Role,
    /// Every user it lists, with their role; `None` where GitHub refused the roster or it was
    /// too large (the repository is asked per user).
    pub roles: Option<Vec<(UserId, RoleGrant)>>,
    /// When its fetch began, by the fetching replica's clock.
    pub started_at: Timestamp,
    /// When GitHub confirmed it: its lifetime counts from here.
    pub confirmed_at: Timestamp,
    /// The newest invalidation recorded when its fetch began ([`FactStore::fact_epoch`]): an
    /// invalidation recorded after that, and covering the roster, makes it stale.
    pub seen: u64,
}

impl SharedRoster {
    /// A roster of `repo` (owned by `owner`) of every user with at least `least`, whose fetch
    /// began at `started_at` (after invalidation `seen` was recorded) and which GitHub confirmed
    /// at `confirmed_at`.
    pub fn new(
        repo: RepoId,
        owner: OwnerId,
        least: Role,
        roles: Option<Vec<(UserId, RoleGrant)>>,
        (started_at, confirmed_at): (Timestamp, Timestamp),
        seen: u64,
    ) -> Self {
        Self { repo, owner, least, roles, started_at, confirmed_at, seen }
    }

    /// `roles` as the stores keep it: JSON, `[[user_id, role, custom_name_or_null], ...]`.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn roles_json(&self) -> Option<String> {
        self.roles.as_ref().map(|roles| {
            let rows: Vec<(u64, &str, Option<&str>)> = roles
                .iter()
                .map(|(user, grant)| {
                    let custom = match &grant.name {
                        crate::core::policy::RoleName::Custom(name) => Some(&**name),
                        crate::core::policy::RoleName::Standard(_) => None,
                    };
                    (user.0, grant.role.as_str(), custom)
                })
                .collect();
            serde_json::to_string(&rows).unwrap_or_default()
        })
    }

    /// The roles [`SharedRoster::roles_json`] wrote.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn roles_from_json(json: &str) -> Result<Vec<(UserId, RoleGrant)>, StoreError> {
        let rows: Vec<(u64, String, Option<String>)> =
            serde_json::from_str(json).map_err(|_| StoreError::Corrupt("a shared roster's roles".into()))?;
        rows.into_iter()
            .map(|(user, role, custom)| {
                let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt("a shared roster's role".into()))?;
                let name = custom.map_or(crate::core::policy::RoleName::Standard(role), |c| {
                    crate::core::policy::RoleName::Custom(c.into())
                });
                Ok((UserId(user), RoleGrant { role, name }))
            })
            .collect()
    }
}

/// Which repository answers at some coordinates, as one replica asked GitHub, shared through the
/// store with the replicas on it ([`FactStore`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedRepo {
    /// The coordinates asked about (compared without regard to case).
    pub coords: RepoCoords,
    /// The repository there and its owner; `None`: nothing there the credentials may see.
    pub found: Option<(RepoId, OwnerId)>,
    /// The coordinates answered with a redirect: the repository was renamed.
    pub renamed: bool,
    /// Nothing there because no installation of the App covers the coordinates.
    pub not_installed: bool,
    /// When its lookup began, by the asking replica's clock.
    pub started_at: Timestamp,
    /// When GitHub confirmed it: its lifetime counts from here.
    pub confirmed_at: Timestamp,
    /// The newest invalidation recorded when its lookup began ([`FactStore::fact_epoch`]).
    pub seen: u64,
}

impl SharedRepo {
    /// What GitHub answered at `coords` (`found`; `renamed`, `not_installed`), asked from
    /// `started_at` (after invalidation `seen` was recorded) and confirmed at `confirmed_at`.
    pub fn new(
        coords: RepoCoords,
        found: Option<(RepoId, OwnerId)>,
        (renamed, not_installed): (bool, bool),
        (started_at, confirmed_at): (Timestamp, Timestamp),
        seen: u64,
    ) -> Self {
        Self { coords, found, renamed, not_installed, started_at, confirmed_at, seen }
    }

    /// The key the stores keep it under: the coordinates in lower case.
    pub(crate) fn key(coords: &RepoCoords) -> String {
        format!("{}/{}", coords.owner(), coords.name()).to_ascii_lowercase()
    }
}

/// The scope of the stored facts an invalidation makes stale: every roster, an owner's, or one
/// repository's.
pub(crate) fn fact_scope(inv: &Invalidation) -> (&'static str, u64) {
    match inv {
        Invalidation::All | Invalidation::User(_) => ("all", 0),
        Invalidation::Owner(o) | Invalidation::UserInOwner(_, o) => ("owner", o.0),
        Invalidation::Repo(r) | Invalidation::UserOnRepo(_, r) => ("repo", r.0),
    }
}

/// How many of the newest invalidations of stored facts are kept. A shared roster whose fetch
/// began more than this many invalidations ago is never served: whether one since covers it may
/// no longer be known.
pub(crate) const KEPT_FACT_INVALIDATIONS: u64 = 100_000;

/// How long a shared roster is kept at most (none is served past its lifetime anyway).
pub(crate) const SHARED_ROSTER_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// GitHub's facts one replica fetched, shared with the others on the store, so that N replicas
/// spend about what one spends: repository rosters, and the invalidations that make them stale
/// (every invalidation the store's feed carries, [`ChangeFeed::record_delivery`] and
/// [`ChangeFeed::publish`], is recorded for this). The defaults keep nothing.
#[async_trait]
pub trait FactStore: sealed::Sealed + Send + Sync + std::fmt::Debug {
    /// The newest invalidation recorded (0: none). A replica reads it before asking GitHub for
    /// a fact it will share ([`SharedRoster::seen`]).
    async fn fact_epoch(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Keeps `roster` for the others, in place of one of the same repository confirmed no later
    /// (an older `confirmed_at` never replaces a newer one).
    async fn put_roster(&self, roster: &SharedRoster) -> Result<(), StoreError> {
        let _ = roster;
        Ok(())
    }

    /// Keeps `repo` for the others, in place of one of the same coordinates confirmed no later.
    async fn put_repo(&self, repo: &SharedRepo) -> Result<(), StoreError> {
        let _ = repo;
        Ok(())
    }

    /// Which repository a replica found at `coords`, unless an invalidation covering it was
    /// recorded since its lookup began (any repository's or owner's where nothing was found, as
    /// one of them may have made it). Its lifetime is the caller's to check.
    async fn repo(&self, coords: &RepoCoords) -> Result<Option<SharedRepo>, StoreError> {
        let _ = coords;
        Ok(None)
    }

    /// The roster of `repo` a replica shared, unless an invalidation covering it was recorded
    /// since its fetch began (or its fetch began before the oldest invalidation still kept).
    /// Its lifetime is the caller's to check, from `confirmed_at`.
    async fn roster(&self, repo: RepoId) -> Result<Option<SharedRoster>, StoreError> {
        let _ = repo;
        Ok(None)
    }
}

/// Where state lives: every narrow store trait at once, implemented by [`MemoryStore`],
/// [`SqliteStore`] (feature `sqlite`) and
/// [`PgStore`] (feature `postgres`), and by nothing outside the library
/// (the traits are sealed). An authorizer takes an `Arc<dyn Store>`; methods of every narrow
/// trait can be called on it. To call them on a store's own type, bring the traits into scope
/// with `use ghauthz::store::prelude::*`.
pub trait Store: AppStore + ViewerStore + LinkStore + SupportStore + AuditStore + ChangeFeed + FactStore {}

impl<T: AppStore + ViewerStore + LinkStore + SupportStore + AuditStore + ChangeFeed + FactStore + ?Sized> Store for T {}

/// The store traits, to call their methods on a store's own type
/// (`use ghauthz::store::prelude::*`).
pub mod prelude {
    pub use super::{
        AppStore as _, AuditStore as _, ChangeFeed as _, FactStore as _, LinkStore as _, Store as _, SupportStore as _,
        ViewerStore as _,
    };
}
