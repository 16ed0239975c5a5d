//! The facade: policy, clock, GitHub and the cache, wired together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::cache::{Age, CacheConfig, CacheStats, Consistency, Counters, Facts, PermKey, Records, Sessions};
use crate::clock::SystemClock;
use crate::core::decision::{Decision, NoAccessDetail, Outcome, Reason, Source, decide_anonymous};
use crate::core::email::{Email, EmailError};
use crate::core::ids::{App, AppId, GithubUser, UserId};
use crate::core::invalidation::Invalidation;
use crate::core::policy::{Capability, Need, Policy, Visibility};
use crate::core::secret::{GithubToken, WebhookSecret};
use crate::core::session::{Session, SessionError};
use crate::core::time::{Clock, Timestamp};
use crate::error::CheckError;
use crate::github::{ClientBuildError, GithubConfig, OctocrabGithub};
use crate::google::{GoogleConfig, GoogleIdentity, GoogleVerifier};
use crate::store::{Actor, Bounded, Broadcast, Change, FeedEvent, MemoryStore, Store, StoreError, StoreFailure};
use crate::viewer::{
    GoogleSignInError, IssuedLink, IssuedSession, LinkConfig, LinkError, LinkInfo, SessionConfig, SessionKeys, SignIn,
};
use crate::webhook::{Meaning, VerifiedDelivery, WebhookError, WebhookOutcome, WebhookStats, WebhookVerifier, meaning};

/// Who is asking.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Principal {
    /// Nobody signed in.
    Anonymous,
    /// An invited viewer with a verified session ([`Authorizer::verify_session`]).
    Viewer(Session),
    /// A GitHub-authenticated user; in user-token mode, with their token.
    GithubUser {
        /// The user.
        user: GithubUser,
        /// The user's own token (needed in user-token mode only).
        token: Option<GithubToken>,
    },
}

impl Principal {
    /// A GitHub user, for installation-token mode.
    pub fn github(user: GithubUser) -> Self {
        Principal::GithubUser { user, token: None }
    }

    /// A GitHub user with their own token, for user-token mode.
    pub fn github_with_token(user: GithubUser, token: GithubToken) -> Self {
        Principal::GithubUser { user, token: Some(token) }
    }

    /// How the principal is written in output: `github:<login>` or `anonymous`.
    pub fn label(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".to_owned(),
            Principal::Viewer(s) => format!("viewer:{}", s.email()),
            Principal::GithubUser { user, .. } => format!("github:{}", user.login),
        }
    }
}

/// Who changes an app's viewers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ChangedBy {
    /// The operator: the control plane acting on its own authority (recorded as `operator`).
    Operator,
    /// A principal, who must hold the policy's `sharing` role on the app's repository.
    Principal(Principal),
}

/// The result of adding or removing a viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerChange {
    /// The app.
    pub app: AppId,
    /// The address, normalized.
    pub email: Email,
    /// Whether anything changed (adding an existing viewer, or removing an absent one, does not).
    pub changed: bool,
}

/// Why a viewer change, a listing or a deletion was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// No app with this id.
    #[error("no app `{0}`")]
    UnknownApp(AppId),
    /// The address was refused.
    #[error("invalid email address: {0}")]
    InvalidEmail(#[from] EmailError),
    /// The principal may not do this to the app; the decision says why.
    #[error("not allowed on `{app}` ({})", decision.reason().kind())]
    Denied {
        /// The app.
        app: AppId,
        /// The decision that refused it.
        decision: Box<Decision>,
    },
    /// Could not decide (GitHub or the store unavailable).
    #[error(transparent)]
    Check(#[from] CheckError),
}

impl ManageError {
    /// A stable name: `unknown_app`, `invalid_email`, `denied` (with the decision), or
    /// [`CheckError::kind`].
    pub fn kind(&self) -> &'static str {
        match self {
            ManageError::UnknownApp(_) => "unknown_app",
            ManageError::InvalidEmail(_) => "invalid_email",
            ManageError::Denied { .. } => "denied",
            ManageError::Check(e) => e.kind(),
        }
    }
}

/// Why an [`Authorizer`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The GitHub client could not be built.
    #[error(transparent)]
    Github(#[from] ClientBuildError),
    /// Called outside a Tokio runtime: the GitHub client's connection pool needs one.
    #[error("an authorizer must be built inside a tokio runtime")]
    NoRuntime,
    /// No session key could be generated (the system's random source failed).
    #[error("no session key could be generated")]
    Keys,
}

impl BuildError {
    /// A stable name: `github_client`, `no_runtime`, `no_randomness`.
    pub fn kind(&self) -> &'static str {
        match self {
            BuildError::Github(_) => "github_client",
            BuildError::NoRuntime => "no_runtime",
            BuildError::Keys => "no_randomness",
        }
    }
}

/// Builds an [`Authorizer`].
#[derive(Debug)]
pub struct AuthorizerBuilder {
    github: GithubConfig,
    policy: Policy,
    cache: CacheConfig,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    links: LinkConfig,
    sessions: SessionConfig,
    keys: Option<SessionKeys>,
    google: Option<GoogleConfig>,
    webhooks: Option<WebhookVerifier>,
    store_timeout: Duration,
}

impl AuthorizerBuilder {
    /// How long any one store call may take before it counts as *unavailable* (default 5 s):
    /// a check fails closed instead of waiting on a connection that died without a word.
    ///
    /// The bundled stores wait for a lock or a connection at most 2 s by themselves, inside this
    /// bound, and answer *unavailable* having changed nothing. A link's redemption is never cut
    /// off once its use is written: it is written within the bound or not at all, and then
    /// waits up to the bound again for its commit's answer ([`Redemption`]), so that a redemption
    /// reported *unavailable* has not used the link up.
    ///
    /// [`Redemption`]: crate::store::Redemption
    pub fn store_timeout(mut self, limit: Duration) -> Self {
        self.store_timeout = limit;
        self
    }

    /// Accept GitHub webhook deliveries signed with `secret` ([`Authorizer::handle_webhook`]).
    pub fn webhook_secret(mut self, secret: WebhookSecret) -> Self {
        self.webhooks = Some(WebhookVerifier::new(secret));
        self
    }

    /// Accept webhook deliveries signed with the current secret *or* `previous`, during a
    /// rotation ([`WebhookVerifier`]'s `# Rotation`): set [`AuthorizerBuilder::webhook_secret`]
    /// first; without a current secret this enables nothing.
    pub fn previous_webhook_secret(mut self, previous: WebhookSecret) -> Self {
        self.webhooks = self.webhooks.map(|v| v.with_previous(previous));
        self
    }

    /// Accept Google sign-in (off unless configured).
    pub fn google(mut self, google: GoogleConfig) -> Self {
        self.google = Some(google);
        self
    }

    /// Link lifetimes and limits.
    pub fn links(mut self, links: LinkConfig) -> Self {
        self.links = links;
        self
    }

    /// The keys that sign viewer sessions (default: one random key, so sessions do not outlive
    /// the process), and their lifetime.
    pub fn sessions(mut self, keys: SessionKeys, config: SessionConfig) -> Self {
        self.keys = Some(keys);
        self.sessions = config;
        self
    }

    /// Where apps and viewer grants live (default: a fresh [`MemoryStore`]).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = store;
        self
    }

    /// The policy (default: the table in the README, [`Policy::default`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Cache lifetimes and bounds.
    pub fn cache(mut self, cache: CacheConfig) -> Self {
        self.cache = cache;
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builds it. Sends nothing; the first check does. Must be called inside a Tokio runtime
    /// ([`BuildError::NoRuntime`] otherwise). If the store is shared by replicas
    /// ([`Store::subscribe`]), the authorizer starts listening to their invalidations, in a task
    /// that ends when the last clone of the authorizer is dropped.
    pub fn build(self) -> Result<Authorizer, BuildError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BuildError::NoRuntime);
        }
        let github = Arc::new(OctocrabGithub::new(self.github, self.clock.clone())?);
        let keys = match self.keys {
            Some(k) => k,
            None => SessionKeys::generate().map_err(|_| BuildError::Keys)?,
        };
        let google = self
            .google
            .map(|g| GoogleVerifier::new(g, self.clock.clone()))
            .transpose()
            .map_err(|e| BuildError::Github(ClientBuildError::new(e)))?;
        let signin =
            SignIn { links: self.links, keys: parking_lot::RwLock::new(keys), sessions: self.sessions, google };
        let mut replica = [0u8; 8];
        getrandom::getrandom(&mut replica).map_err(|_| BuildError::Keys)?;
        // 0 is the origin of the store's own announcements.
        let replica = u64::from_le_bytes(replica) | 1;
        let cfg = self.cache;
        let store: Arc<dyn Store> = Arc::new(Bounded::new(self.store, self.store_timeout));
        let feed = store.subscribe();
        let inner = Arc::new(Inner {
            policy: self.policy,
            clock: self.clock.clone(),
            records: Records::new(cfg.capacity, cfg.record_ttl),
            sessions: Sessions::new(cfg.session_capacity),
            facts: Facts::new(cfg, self.clock, github),
            store,
            signin,
            replica,
            webhooks: self.webhooks,
            hooks: HookCounters::default(),
            feed: std::sync::OnceLock::new(),
        });
        if let Some(mut rx) = feed {
            // What the feed says already (the in-memory store says `Listening` at once) is applied
            // here: nothing is cached yet, so there is nothing to forget.
            while let Ok(event) = rx.try_recv() {
                match event {
                    FeedEvent::Listening | FeedEvent::Lost => {
                        inner.records.set_live(event == FeedEvent::Listening);
                        Counters::bump(&inner.facts.counters.resyncs);
                    }
                    FeedEvent::Broadcast(_) => {}
                }
            }
            let task = tokio::spawn(follow_feed(Arc::downgrade(&inner), rx));
            let _ = inner.feed.set(task.abort_handle());
        }
        Ok(Authorizer { inner })
    }
}

/// Decides who may view, edit, deploy and delete apps, from GitHub roles kept in a TTL cache.
///
/// Cheap to clone; clones share the cache.
///
/// # Staleness
///
/// See [`CacheConfig`]: a fact is served at most its lifetime after GitHub confirmed it, on the
/// authorizer's clock, and `deploy`/`delete` revalidate anything older than `strict_max_age`.
/// Errors are never cached as "no access" and never served as an allow.
///
/// # Concurrent calls
///
/// Concurrent checks that miss on one (user, repository) key send one request; the others wait
/// for its answer. Dropping a waiting check cancels nothing for the others; if the check that is
/// sending the request is dropped, the next waiter sends its own. The repository lookup (which
/// repository is at the app's coordinates) is shared by all users in the same way.
///
/// # Invalidation
///
/// [`Authorizer::invalidate_local`] is effective for the next check on this authorizer,
/// including against a request that was in flight when it was called: a fact whose fetch started
/// before a matching invalidation is never served from the cache. [`Authorizer::invalidate`]
/// and [`Authorizer::handle_webhook`] also reach every other replica that shares the store.
///
/// # Replicas
///
/// Authorizers that share a store hear one another's invalidations and every change to apps and
/// grants through the store's change feed (see [`crate::store`]): a [`PgStore`](crate::store::PgStore)'s
/// `LISTEN/NOTIFY`, typically within milliseconds; an [`SqliteStore`](crate::store::SqliteStore)'s
/// change log, within 100 ms, from any process on the file; a shared
/// [`MemoryStore`](crate::store::MemoryStore) at once. A change made through this authorizer
/// holds here before the call that made it returns. When the feed drops, the authorizer forgets
/// everything it cached, at once and again once it listens anew, since it may have missed
/// messages in between; until then it serves no cached app or grant (it reads the store at every
/// check) and caches GitHub facts as usual, within the lifetimes of [`CacheConfig`].
#[derive(Debug, Clone)]
pub struct Authorizer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    policy: Policy,
    clock: Arc<dyn Clock>,
    /// GitHub facts.
    facts: Facts,
    store: Arc<dyn Store>,
    signin: SignIn,
    /// This authorizer's id among the replicas (never 0).
    replica: u64,
    /// Apps and viewer grants, served while the store's feed is heard.
    records: Records,
    /// Sessions verified before.
    sessions: Sessions,
    webhooks: Option<WebhookVerifier>,
    hooks: HookCounters,
    /// The task that applies other replicas' invalidations (set once the authorizer exists,
    /// so that the task can never find it not yet built).
    feed: std::sync::OnceLock<tokio::task::AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(feed) = self.feed.get() {
            feed.abort();
        }
    }
}

#[derive(Debug, Default)]
struct HookCounters {
    applied: AtomicU64,
    duplicates: AtomicU64,
    unknown_events: AtomicU64,
    malformed: AtomicU64,
    rejected: AtomicU64,
}

/// Applies what the store's feed brings, for as long as the authorizer lives. A feed that ends
/// leaves the authorizer deaf for good: it serves no cached app or grant again.
async fn follow_feed(inner: Weak<Inner>, mut feed: tokio::sync::mpsc::Receiver<FeedEvent>) {
    /// Leaves the authorizer deaf however the task ends: returned, cancelled with its runtime, or
    /// panicked.
    struct Deaf(Weak<Inner>);
    impl Drop for Deaf {
        fn drop(&mut self) {
            if let Some(inner) = self.0.upgrade() {
                inner.records.set_live(false);
            }
        }
    }
    let _deaf = Deaf(inner.clone());
    while let Some(event) = feed.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        match event {
            FeedEvent::Broadcast(b) => {
                for change in &b.changes {
                    inner.apply_change(change);
                }
                if b.origin != inner.replica && !b.invalidations.is_empty() {
                    for inv in b.invalidations {
                        inner.invalidate_local(inv);
                    }
                    Counters::bump(&inner.facts.counters.received);
                }
            }
            FeedEvent::Lost => {
                inner.records.set_live(false);
                inner.invalidate_local(Invalidation::All);
                Counters::bump(&inner.facts.counters.resyncs);
            }
            FeedEvent::Listening => {
                inner.invalidate_local(Invalidation::All);
                inner.records.set_live(true);
                Counters::bump(&inner.facts.counters.resyncs);
            }
        }
    }
    tracing::warn!("change feed ended: apps and grants are read from the store at every check");
}

impl Authorizer {
    /// A builder for an authorizer that asks GitHub as `github` says.
    ///
    /// ```
    /// use ghauthz::{Authorizer, BuildError, GithubAuth, GithubConfig, GithubToken, Policy};
    /// let github = || GithubConfig::new(GithubAuth::Token(GithubToken::new("ghs_example".into())));
    /// // Outside a runtime: a clear error, not a panic.
    /// assert!(matches!(Authorizer::builder(github()).build(), Err(BuildError::NoRuntime)));
    /// let rt = tokio::runtime::Runtime::new().unwrap();
    /// let _guard = rt.enter();
    /// let authz = Authorizer::builder(github()).policy(Policy::default()).build().unwrap();
    /// assert_eq!(authz.stats().hits, 0);
    /// ```
    pub fn builder(github: GithubConfig) -> AuthorizerBuilder {
        AuthorizerBuilder {
            github,
            policy: Policy::default(),
            cache: CacheConfig::default(),
            clock: Arc::new(SystemClock),
            store: Arc::new(MemoryStore::new()),
            links: LinkConfig::default(),
            sessions: SessionConfig::default(),
            keys: None,
            google: None,
            webhooks: None,
            store_timeout: Duration::from_secs(5),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// May `principal` do `cap` to `app`?
    ///
    /// Answers from the cache when it can (see [`Authorizer::check_cached`]), otherwise asks
    /// GitHub. An error means "could not decide": treat it as a denial, and ask again after
    /// [`CheckError::retry_after`].
    pub async fn check(&self, principal: &Principal, app: &App, cap: Capability) -> Result<Decision, CheckError> {
        self.check_need(principal, app, self.inner.policy.need(cap), Consistency::Cached).await
    }

    /// [`Authorizer::check`] for the app with this id; `unknown_app` (a denial) when there is
    /// none. What a control plane calls on every request: on a hit, the app record, the GitHub
    /// fact (or the viewer's grant) all come from memory ([`CacheConfig`]'s `# Staleness`).
    pub async fn check_app(&self, principal: &Principal, app: &AppId, cap: Capability) -> Result<Decision, CheckError> {
        self.check_app_with(principal, app, cap, Consistency::Cached).await
    }

    /// [`Authorizer::check_app`] with the facts as old as `consistency` allows:
    /// [`Consistency::Fresh`] reads the app and the grant from the store and revalidates the
    /// GitHub fact first.
    pub async fn check_app_with(
        &self,
        principal: &Principal,
        app: &AppId,
        cap: Capability,
        consistency: Consistency,
    ) -> Result<Decision, CheckError> {
        if consistency == Consistency::Cached {
            if let Some(decision) = self.check_app_cached(principal, app, cap) {
                return Ok(decision);
            }
        }
        match self.app_with(app, consistency).await? {
            Some(app) => self.check_need(principal, &app, self.inner.policy.need(cap), consistency).await,
            None => Ok(unknown_app()),
        }
    }

    /// [`Authorizer::check_app`] if it needs neither GitHub nor the store: synchronous, and
    /// allocation-free on a hit. `None` means `check_app` would ask.
    pub fn check_app_cached(&self, principal: &Principal, app: &AppId, cap: Capability) -> Option<Decision> {
        let inner = &*self.inner;
        let need = inner.policy.need(cap);
        let now = inner.clock.now();
        inner
            .records
            .with_app(app, now, |app, stamp| self.cached_need(principal, app, need, Some(stamp), now))
            .flatten()
    }

    /// May the viewer holding session `token` do `cap` to the app with this id? A token that
    /// does not verify is a denial (`session_invalid`); an unknown app is `unknown_app`. On a hit
    /// nothing is verified again ([`Authorizer::verify_session`]) and nothing is read from the
    /// store.
    pub async fn check_session(&self, token: &str, app: &AppId, cap: Capability) -> Result<Decision, CheckError> {
        self.check_session_with(token, app, cap, Consistency::Cached).await
    }

    /// [`Authorizer::check_session`] with the facts as old as `consistency` allows:
    /// [`Consistency::Fresh`] verifies the token in full and reads the app and the grant from
    /// the store.
    pub async fn check_session_with(
        &self,
        token: &str,
        app: &AppId,
        cap: Capability,
        consistency: Consistency,
    ) -> Result<Decision, CheckError> {
        if consistency == Consistency::Cached {
            if let Some(decision) = self.check_session_cached(token, app, cap) {
                return Ok(decision);
            }
        }
        let session = match self.verify_session_with(token, consistency) {
            Ok(session) => session,
            Err(error) => return Ok(store_decision(Outcome::Deny, Reason::SessionInvalid { error })),
        };
        match self.app_with(app, consistency).await? {
            Some(app) => self.check_viewer(&session, &app, self.inner.policy.need(cap), consistency).await,
            None => Ok(unknown_app()),
        }
    }

    /// [`Authorizer::check_session`] if the token was verified before and the app and the grant
    /// are cached: synchronous, allocation-free. `None` means `check_session` would verify or
    /// read.
    pub fn check_session_cached(&self, token: &str, app: &AppId, cap: Capability) -> Option<Decision> {
        let inner = &*self.inner;
        let need = inner.policy.need(cap);
        let now = inner.clock.now();
        inner
            .sessions
            .with(token, now, |session| {
                inner.records.with_app(app, now, |app, stamp| self.cached_viewer(session, app, need, Some(stamp), now))
            })
            .flatten()
            .flatten()
    }

    /// The app with this id, from the cache or the store.
    pub async fn app(&self, id: &AppId) -> Result<Option<App>, CheckError> {
        self.app_with(id, Consistency::Cached).await
    }

    async fn app_with(&self, id: &AppId, consistency: Consistency) -> Result<Option<App>, CheckError> {
        let inner = &*self.inner;
        if consistency == Consistency::Cached {
            if let Some(app) = inner.records.with_app(id, inner.clock.now(), |app, _| app.clone()) {
                return Ok(Some(app));
            }
        }
        Ok(self.load_app(id).await?.map(|(app, _)| app))
    }

    /// Reads the app from the store, and remembers it; with its cache stamp if it stayed.
    async fn load_app(&self, id: &AppId) -> Result<Option<(App, Option<u64>)>, CheckError> {
        let inner = &*self.inner;
        let started = inner.records.begin();
        let Some(record) = inner.store.app(id).await? else { return Ok(None) };
        let app = record
            .app()
            .map_err(|e| CheckError::Store(StoreError::Corrupt(StoreFailure::caused_by(e.to_string(), e))))?;
        let stamp = inner.records.remember_app(app.clone(), started, inner.clock.now());
        Ok(Some((app, stamp)))
    }

    async fn check_need(
        &self,
        principal: &Principal,
        app: &App,
        need: Need,
        consistency: Consistency,
    ) -> Result<Decision, CheckError> {
        if let Principal::Viewer(session) = principal {
            return self.check_viewer(session, app, need, consistency).await;
        }
        let now = self.inner.clock.now();
        if consistency == Consistency::Cached {
            if let Some(decision) = self.cached_need(principal, app, need, None, now) {
                return Ok(decision);
            }
        }
        let Principal::GithubUser { user, token } = principal else {
            // Anonymous checks always answer without a request.
            return Ok(self.anonymous(app, need));
        };
        if need.open_on_public && app.visibility() == Visibility::Public && consistency == Consistency::Fresh {
            return Ok(self.anonymous(app, need));
        }
        let key = PermKey { user: user.id, repo: app.repo_id() };
        let token = match (self.inner.facts.user_token_mode(), token) {
            (true, None) => return Err(CheckError::MissingUserToken { login: user.login.clone() }),
            (true, Some(t)) => Some(t),
            (false, _) => None,
        };
        let age = match consistency {
            Consistency::Fresh => Age::Fresh,
            Consistency::Cached if need.strict => Age::Strict,
            Consistency::Cached => Age::Ordinary,
        };
        let (entry, source) = self.inner.facts.load(key, app, user, token, age).await?;
        let now = self.inner.clock.now();
        Ok(self.inner.facts.decision(&entry.core, app, need, source, now))
    }

    /// The answer if it needs no request: anonymous and public-view checks, and cache hits that
    /// are fresh enough for `cap`. Synchronous, allocation-free on a hit; `None` means
    /// [`Authorizer::check`] would ask GitHub (or, for a viewer, the store).
    pub fn check_cached(&self, principal: &Principal, app: &App, cap: Capability) -> Option<Decision> {
        self.cached_need(principal, app, self.inner.policy.need(cap), None, self.inner.clock.now())
    }

    /// `stamp`: the cache stamp of the app's record, where the caller already looked it up.
    fn cached_need(
        &self,
        principal: &Principal,
        app: &App,
        need: Need,
        stamp: Option<u64>,
        now: Timestamp,
    ) -> Option<Decision> {
        let user = match principal {
            Principal::Anonymous => return Some(self.anonymous(app, need)),
            Principal::GithubUser { user, .. } => user,
            Principal::Viewer(session) => return self.cached_viewer(session, app, need, stamp, now),
        };
        if need.open_on_public && app.visibility() == Visibility::Public {
            return Some(self.anonymous(app, need));
        }
        let key = PermKey { user: user.id, repo: app.repo_id() };
        self.inner.facts.cached(&key, app, need, if need.strict { Age::Strict } else { Age::Ordinary }, now)
    }

    /// What a viewer's session decides without the store: everything but a private app's grant,
    /// which must be cached (under the app's cache `stamp`).
    fn cached_viewer(
        &self,
        session: &Session,
        app: &App,
        need: Need,
        stamp: Option<u64>,
        now: Timestamp,
    ) -> Option<Decision> {
        if let Some(decision) = viewer_without_grant(session, app, need, now) {
            return Some(decision);
        }
        let records = &self.inner.records;
        let stamp = stamp.or_else(|| records.with_app(app.id(), now, |_, stamp| stamp))?;
        records.grant_live(session.grant(), stamp).then(|| granted(session, Source::Cache))
    }

    /// A viewer: the session must be for this app and unexpired, the action `view`, and the grant
    /// it was minted under must still be the one that invites its address (from the cache while
    /// the store's feed is heard, otherwise read from the store now).
    async fn check_viewer(
        &self,
        session: &Session,
        app: &App,
        need: Need,
        consistency: Consistency,
    ) -> Result<Decision, CheckError> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        if let Some(decision) = viewer_without_grant(session, app, need, now) {
            return Ok(decision);
        }
        let mut stamp = None;
        if consistency == Consistency::Cached {
            // The app's stamp is taken before the grant is read, so that a removal applied after
            // the read forgets what the read found.
            stamp = match inner.records.with_app(app.id(), now, |_, stamp| stamp) {
                Some(stamp) if inner.records.grant_live(session.grant(), stamp) => {
                    return Ok(granted(session, Source::Cache));
                }
                Some(stamp) => Some(stamp),
                None => self.load_app(app.id()).await?.and_then(|(_, stamp)| stamp),
            };
        }
        if inner.store.grant(app.id(), session.email()).await? == Some(session.grant()) {
            if let Some(stamp) = stamp {
                inner.records.remember_grant(session.grant(), stamp);
            }
            Ok(granted(session, Source::Store))
        } else {
            Ok(store_decision(Outcome::Deny, Reason::NotInvited))
        }
    }

    /// Issues a single-use sign-in link for an invited address (rate-limited per app and
    /// address). Send it to [`IssuedLink::email`], the stored address.
    pub async fn issue_link(&self, app: &AppId, email: &str) -> Result<IssuedLink, LinkError> {
        self.inner.signin.issue(&*self.inner.store, self.inner.clock.now(), app, email).await
    }

    /// Validates a link without using it up: what answering a GET may do (mail scanners fetch
    /// every link they see).
    pub async fn inspect_link(&self, token: &str) -> Result<LinkInfo, LinkError> {
        self.inner.signin.inspect(&*self.inner.store, self.inner.clock.now(), token).await
    }

    /// Uses the link up and mints a viewer session: what the POST does. Of any number of
    /// concurrent redemptions of one link, exactly one succeeds. With `expected_app`, a link for
    /// another app is refused (`wrong_app`) and not used up.
    pub async fn redeem_link(&self, token: &str, expected_app: Option<&AppId>) -> Result<IssuedSession, LinkError> {
        self.inner.signin.redeem(&*self.inner.store, self.inner.clock.now(), token, expected_app).await
    }

    /// Verifies a Google ID token and, if its address is invited to `app`, mints a viewer
    /// session for it.
    pub async fn google_sign_in(&self, app: &AppId, id_token: &str) -> Result<IssuedSession, GoogleSignInError> {
        self.inner.signin.google_sign_in(&*self.inner.store, self.inner.clock.now(), app, id_token).await
    }

    /// Verifies a Google ID token alone (no grant lookup, no session).
    pub async fn verify_google_id_token(&self, id_token: &str) -> Result<GoogleIdentity, GoogleSignInError> {
        self.inner.signin.google_identity(id_token).await
    }

    /// Verifies a viewer session token we signed. A token verified before is confirmed from
    /// memory (see the `sessions` row of [`CacheConfig`]'s `# Staleness`).
    pub fn verify_session(&self, token: &str) -> Result<Session, SessionError> {
        self.verify_session_with(token, Consistency::Cached)
    }

    fn verify_session_with(&self, token: &str, consistency: Consistency) -> Result<Session, SessionError> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        if consistency == Consistency::Cached {
            if let Some(session) = inner.sessions.with(token, now, Session::clone) {
                return Ok(session);
            }
        }
        let started = inner.sessions.begin();
        let session = inner.signin.verify(now, token)?;
        inner.sessions.remember(token, session.clone(), started, now);
        Ok(session)
    }

    /// Replaces the keys that sign and verify viewer sessions (to rotate them, or to retire a
    /// key): a session signed by a key no longer listed is refused from the next check on, even
    /// if it was verified before.
    pub fn set_session_keys(&self, keys: SessionKeys) {
        *self.inner.signin.keys.write() = keys;
        self.inner.sessions.keys_changed();
    }

    /// What `email` may do to `app` once signed in (by an emailed link): what `explain` shows
    /// for an invited viewer. The policy's verdict on the grant the store holds now; no session
    /// is made.
    #[cfg(feature = "world")]
    pub(crate) async fn invited_viewer(
        &self,
        app: &App,
        email: &Email,
        cap: Capability,
    ) -> Result<Decision, CheckError> {
        if let Some(decision) = viewer_need(app, self.inner.policy.need(cap)) {
            return Ok(decision);
        }
        Ok(match self.inner.store.grant(app.id(), email).await? {
            Some(_) => {
                store_decision(Outcome::Allow, Reason::ViewerGrant { via: crate::core::session::Via::EmailLink })
            }
            None => store_decision(Outcome::Deny, Reason::NotInvited),
        })
    }

    fn anonymous(&self, app: &App, need: Need) -> Decision {
        let (outcome, reason) = decide_anonymous(app.visibility(), need);
        Decision::new(outcome, reason, Source::Store, Duration::ZERO)
    }

    /// Every app in the store, ordered by id.
    ///
    /// # Errors
    ///
    /// [`CheckError::Store`] if the store cannot answer, or holds a record that is not an app.
    ///
    /// ```
    /// # tokio_test_block_on(async {
    /// use ghauthz::{Authorizer, GithubAuth, GithubConfig, GithubToken};
    /// let config = GithubConfig::new(GithubAuth::Token(GithubToken::new("t".into())));
    /// let authz = Authorizer::builder(config).build().unwrap();
    /// assert!(authz.apps().await.unwrap().is_empty(), "a fresh memory store holds none");
    /// # });
    /// # fn tokio_test_block_on(f: impl std::future::Future<Output = ()>) {
    /// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    /// # }
    /// ```
    pub async fn apps(&self) -> Result<Vec<App>, CheckError> {
        let records = self.inner.store.apps().await?;
        records
            .iter()
            .map(|r| {
                r.app().map_err(|e| CheckError::Store(StoreError::Corrupt(StoreFailure::caused_by(e.to_string(), e))))
            })
            .collect()
    }

    /// The audit log, oldest first: grant changes, link issues and redemptions, deletions.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store cannot answer.
    pub async fn audit_log(&self) -> Result<Vec<crate::store::AuditEvent>, StoreError> {
        self.inner.store.audit_log().await
    }

    /// Invites `email` to `app`. `by` must hold the policy's `sharing` role (what `edit` needs,
    /// GitHub `write` by default) unless it is [`ChangedBy::Operator`].
    pub async fn add_viewer(&self, by: &ChangedBy, app: &AppId, email: &str) -> Result<ViewerChange, ManageError> {
        let (email, actor) = self.authorize_sharing(by, app, email).await?;
        let now = self.inner.clock.now();
        let changed = self.inner.store.add_viewer(app, &email, &actor, now).await.map_err(CheckError::from)?;
        Ok(ViewerChange { app: app.clone(), email, changed })
    }

    /// Removes `email` from `app`'s viewers; authorized as [`Authorizer::add_viewer`].
    pub async fn remove_viewer(&self, by: &ChangedBy, app: &AppId, email: &str) -> Result<ViewerChange, ManageError> {
        let (email, actor) = self.authorize_sharing(by, app, email).await?;
        let now = self.inner.clock.now();
        let removed = self.inner.store.remove_viewer(app, &email, &actor, now).await;
        // Forgotten here even if the store failed: the removal may have committed.
        self.inner.apply_change(&Change::App { app: app.clone() });
        let changed = removed.map_err(CheckError::from)?;
        Ok(ViewerChange { app: app.clone(), email, changed })
    }

    /// `app`'s viewers; authorized as [`Authorizer::add_viewer`] (the list is personal data).
    pub async fn viewers(&self, by: &ChangedBy, app: &AppId) -> Result<Vec<Email>, ManageError> {
        self.authorize_app(by, app, self.inner.policy.sharing_need()).await?;
        Ok(self.inner.store.viewers(app).await.map_err(CheckError::from)?)
    }

    async fn authorize_sharing(&self, by: &ChangedBy, app: &AppId, email: &str) -> Result<(Email, Actor), ManageError> {
        let email = Email::parse(email)?;
        let actor = self.authorize_app(by, app, self.inner.policy.sharing_need()).await?;
        Ok((email, actor))
    }

    /// Deletes an app: its grants, links, sessions (they open nothing once the app
    /// and its grants are gone) and every address that belonged to it, keeping one record of its
    /// coordinates. `by` needs the `delete` capability (GitHub `admin` by default), or is the
    /// operator.
    pub async fn delete_app(&self, by: &ChangedBy, app: &AppId) -> Result<(), ManageError> {
        self.authorize_app(by, app, self.inner.policy.need(Capability::Delete)).await?;
        let deleted = self.inner.store.delete_app(app).await;
        self.inner.apply_change(&Change::App { app: app.clone() });
        deleted.map_err(CheckError::from)?;
        Ok(())
    }

    /// Deletes an account: every app the GitHub identity deployed, with everything
    /// deleting an app removes, and the coordinates records of its earlier deleted apps. The
    /// control plane calls this on the account holder's authenticated request.
    pub async fn delete_account(&self, user: UserId) -> Result<Vec<AppId>, CheckError> {
        match self.inner.store.delete_account(user).await {
            Ok(apps) => {
                for app in &apps {
                    self.inner.apply_change(&Change::App { app: app.clone() });
                }
                Ok(apps)
            }
            Err(e) => {
                // Which apps went is unknown: forget them all.
                self.inner.apply_change(&Change::All);
                Err(e.into())
            }
        }
    }

    async fn authorize_app(&self, by: &ChangedBy, id: &AppId, need: Need) -> Result<Actor, ManageError> {
        let app = self.app(id).await?.ok_or_else(|| ManageError::UnknownApp(id.clone()))?;
        match by {
            ChangedBy::Operator => Ok(Actor::Operator),
            ChangedBy::Principal(principal) => {
                let decision = self.check_need(principal, &app, need, Consistency::Cached).await?;
                match principal {
                    Principal::GithubUser { user, .. } if decision.is_allowed() => Ok(Actor::Github(user.id)),
                    _ => Err(ManageError::Denied { app: id.clone(), decision: Box::new(decision) }),
                }
            }
        }
    }

    /// Forgets facts here and on every other replica that shares the store; effective for the
    /// next check here at once, and on the others when the message arrives (see the type's
    /// `# Replicas`). An error means the other replicas could not be told; this one forgot.
    pub async fn invalidate(&self, inv: Invalidation) -> Result<(), StoreError> {
        self.inner.invalidate_local(inv);
        self.inner.store.publish(&Broadcast::invalidations(self.inner.replica, vec![inv])).await
    }

    /// Forgets facts on this authorizer only; effective for the next check (see the type's
    /// `# Invalidation`).
    pub fn invalidate_local(&self, inv: Invalidation) {
        self.inner.invalidate_local(inv);
    }

    /// Verifies a GitHub webhook delivery (its headers and raw body) and applies it
    /// ([`Authorizer::apply_webhook`]). Needs [`AuthorizerBuilder::webhook_secret`].
    ///
    /// Nothing of a delivery whose signature fails is read or applied: the cache is untouched.
    pub async fn handle_webhook(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<WebhookOutcome, WebhookError> {
        let inner = &*self.inner;
        let verified = match &inner.webhooks {
            None => Err(WebhookError::NotConfigured),
            Some(v) => v.verify(headers, body),
        };
        match verified {
            Ok(delivery) => self.apply_webhook(&delivery).await,
            Err(e) => {
                Counters::bump(&inner.hooks.rejected);
                Err(e)
            }
        }
    }

    /// Applies a verified delivery: turns it into the narrowest safe invalidations, records its
    /// id (a delivery seen before changes nothing), and applies them here and on every other
    /// replica. Unknown events are counted and ignored; a known event whose payload lacks the
    /// ids it needs invalidates everything.
    ///
    /// If the store cannot record the delivery, the invalidations are applied here anyway and
    /// [`WebhookError::Store`] is returned, so that GitHub is answered with an error and
    /// delivers again.
    pub async fn apply_webhook(&self, delivery: &VerifiedDelivery) -> Result<WebhookOutcome, WebhookError> {
        let inner = &*self.inner;
        let invalidations = match meaning(delivery.event(), delivery.body()) {
            Meaning::Unknown => {
                Counters::bump(&inner.hooks.unknown_events);
                tracing::debug!(event = delivery.event(), "webhook: unknown event ignored");
                return Ok(WebhookOutcome::UnknownEvent);
            }
            Meaning::Malformed => {
                Counters::bump(&inner.hooks.malformed);
                tracing::warn!(event = delivery.event(), "webhook: payload lacks its ids; invalidating everything");
                vec![Invalidation::All]
            }
            Meaning::Known(invs) => invs,
        };
        let broadcast = Broadcast::invalidations(inner.replica, invalidations);
        let recorded = inner.store.record_delivery(delivery.id(), inner.clock.now(), &broadcast).await;
        if recorded == Ok(false) {
            Counters::bump(&inner.hooks.duplicates);
            return Ok(WebhookOutcome::Duplicate);
        }
        // New, or not known to be old: forgetting here is always safe.
        for inv in &broadcast.invalidations {
            inner.invalidate_local(*inv);
        }
        recorded.map_err(WebhookError::Store)?;
        Counters::bump(&inner.hooks.applied);
        Ok(WebhookOutcome::Applied(broadcast.invalidations))
    }

    /// The webhook counters.
    pub fn webhook_stats(&self) -> WebhookStats {
        let h = &self.inner.hooks;
        WebhookStats {
            applied: h.applied.load(Ordering::Relaxed),
            duplicates: h.duplicates.load(Ordering::Relaxed),
            unknown_events: h.unknown_events.load(Ordering::Relaxed),
            malformed: h.malformed.load(Ordering::Relaxed),
            rejected: h.rejected.load(Ordering::Relaxed),
        }
    }

    /// The cache's counters.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.facts.counters;
        CacheStats {
            hits: self.inner.facts.hits(),
            misses: c.misses.load(Ordering::Relaxed),
            revalidated_not_modified: c.not_modified.load(Ordering::Relaxed),
            revalidated_modified: c.modified.load(Ordering::Relaxed),
            coalesced_waits: c.coalesced.load(Ordering::Relaxed),
            upstream_errors: c.upstream_errors.load(Ordering::Relaxed),
            entries: self.inner.facts.entries(),
            invalidations_received: c.received.load(Ordering::Relaxed),
            resyncs: c.resyncs.load(Ordering::Relaxed),
            feed_listening: self.inner.records.is_live(),
        }
    }
}

impl Inner {
    fn apply_change(&self, change: &Change) {
        match change {
            Change::App { app } => self.records.forget_app(app),
            Change::All => self.records.forget_all(),
        }
    }

    fn invalidate_local(&self, inv: Invalidation) {
        self.facts.invalidate(inv);
    }
}

fn store_decision(outcome: Outcome, reason: Reason) -> Decision {
    Decision::new(outcome, reason, Source::Store, Duration::ZERO)
}

/// A viewer allowed by their grant, known from `source`.
fn granted(session: &Session, source: Source) -> Decision {
    Decision::new(Outcome::Allow, Reason::ViewerGrant { via: session.via() }, source, Duration::ZERO)
}

fn unknown_app() -> Decision {
    store_decision(Outcome::Deny, Reason::UnknownApp)
}

/// What a viewer's session decides on its own, before any grant: refused if expired or for
/// another app, denied for anything but `view`, allowed on a public app.
fn viewer_without_grant(session: &Session, app: &App, need: Need, now: Timestamp) -> Option<Decision> {
    let invalid = |error| Some(store_decision(Outcome::Deny, Reason::SessionInvalid { error }));
    if session.expires_at() <= now {
        return invalid(SessionError::Expired);
    }
    if session.app() != app.id() {
        return invalid(SessionError::WrongApp);
    }
    viewer_need(app, need)
}

/// What any viewer's capability decides before a grant: denied for anything but `view`,
/// allowed on a public app.
fn viewer_need(app: &App, need: Need) -> Option<Decision> {
    if !need.open_on_public {
        return Some(store_decision(Outcome::Deny, Reason::NoAccess { detail: NoAccessDetail::ViewOnly }));
    }
    if app.visibility() == Visibility::Public {
        return Some(store_decision(Outcome::Allow, Reason::PublicApp));
    }
    None
}
