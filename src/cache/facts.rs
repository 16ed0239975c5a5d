//! GitHub facts: loading (one request per key, conditional where an ETag is at hand),
//! revalidation, and the hit path through the hit table and the front map.
//!
//! # Staleness
//!
//! A fact is served at most `role_ttl` (5 min, a role) or `no_role_ttl` (1 min, no role, a
//! missing or replaced repository) after GitHub confirmed it; `deploy` and `delete` at most
//! `strict_max_age` (60 s); [`Consistency::Fresh`](crate::Consistency::Fresh) nothing cached. An
//! invalidation is effective for the next check, including against a fetch that was in flight.
//!
//! # Concurrent calls
//!
//! Concurrent misses on one key make one request (moka's per-key compute); the others wait for
//! its answer and count as coalesced. Dropping a waiting caller cancels nothing for the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::ops::compute::Op;

use super::{
    Age, Backoff, CacheConfig, Counters, Epochs, FactCore, FactMap, PermEntry, PermKey, RepoEntry, RosterEntry,
};
use crate::core::check::Seen;
use crate::core::decision::{Fact, Source};
use crate::core::ids::{App, AppView, GithubUser, OwnerId, RepoCoords, RepoId, UserId};
use crate::core::invalidation::Invalidation;
use crate::core::policy::Role;
use crate::core::secret::GithubToken;
use crate::core::time::{Clock, Timestamp};
use crate::error::CheckError;
use crate::github::{Fetched, GithubApi, GithubError, PermissionTarget, Roster, UnavailableCause};
use crate::store::{SharedRepo, SharedRoster, Store};

/// The GitHub-fact cache: moka for capacity, expiry and coalesced loading, the front map and the
/// hit table for hits, the epoch log for invalidation.
#[derive(Debug)]
pub(crate) struct Facts {
    cfg: CacheConfig,
    clock: Arc<dyn Clock>,
    github: Arc<dyn GithubApi>,
    perms: moka::future::Cache<PermKey, Arc<PermEntry>>,
    repos: moka::future::Cache<RepoCoords, Arc<RepoEntry>>,
    /// Rosters by repository (installation and App mode, with `cfg.rosters`).
    rosters: moka::future::Cache<RepoId, Arc<RosterEntry>>,
    /// GitHub accounts by id (`GET /user/{account_id}`), for a caller that holds only an id.
    accounts: moka::future::Cache<UserId, Arc<AccountEntry>>,
    /// The lowest role the policy grants anything to: what a roster lists.
    least: Role,
    /// Where rosters are shared with the other replicas on the store
    /// ([`CacheConfig::with_shared_rosters`]).
    shared: Option<Arc<dyn Store>>,
    /// Invalidations made here that the store may not have recorded (local ones, or ones it
    /// refused), by scope, with when: a roster from the store whose fetch began no later than one
    /// that covers it is not served.
    barriers: parking_lot::Mutex<Barriers>,
    front: Arc<FactMap>,
    epochs: Epochs,
    backoff: moka::sync::Cache<PermKey, Backoff>,
    pub(crate) counters: Counters,
    generation: AtomicU64,
    /// `cfg.max_age` in whole milliseconds, rounded up (a fact's age, counted in whole
    /// milliseconds, is below it exactly when it is below `max_age`), by [`Age`] and by whether
    /// the fact is positive.
    max_age_ms: [[u64; 2]; 3],
    /// The same, while webhooks are heard ([`CacheConfig::with_lifetimes_while_webhooks_heard`]).
    heard_max_age_ms: Option<[[u64; 2]; 3]>,
    /// Until when (milliseconds on the clock) webhooks count as heard: `heard_within` after the
    /// last delivery applied here; 0 when none was, or the change feed was lost since.
    heard_until: AtomicU64,
    /// Since when (milliseconds on the clock) webhooks have been heard without a break: only
    /// facts confirmed since then get the longer lifetimes.
    heard_since: AtomicU64,
    /// Orders `webhook_heard` and `webhooks_unheard`.
    heard_lock: parking_lot::Mutex<()>,
}

/// When this replica last made an invalidation of each scope ([`Facts::bar`]).
#[derive(Debug, Default)]
struct Barriers {
    all: Option<Timestamp>,
    /// By scope (`owner`, `repo`) and id.
    by_id: std::collections::HashMap<(&'static str, u64), Timestamp>,
}

/// How far the replicas' clocks are taken to differ at most: a roster another replica began to
/// fetch up to this long after an invalidation made here (by its clock) is not served here.
const CLOCK_SKEW: Duration = Duration::from_secs(5);

/// How many scoped barriers are kept before the old ones are dropped.
const MAX_BARRIERS: usize = 10_000;

/// A GitHub account as `GET /user/{account_id}` answered, and when.
#[derive(Debug)]
pub(crate) struct AccountEntry {
    user: Option<GithubUser>,
    fetched_at: Timestamp,
    /// The invalidation epoch before it was asked for: one naming the account since then (or
    /// while it was asked) makes it unusable.
    seen_epoch: AtomicU64,
}

impl AccountEntry {
    /// Whether `inv` may change what GitHub says of account `id`.
    fn matches(id: UserId, inv: &Invalidation) -> bool {
        match inv {
            Invalidation::All => true,
            Invalidation::User(u) | Invalidation::UserOnRepo(u, _) | Invalidation::UserInOwner(u, _) => *u == id,
            Invalidation::Repo(_) | Invalidation::Owner(_) => false,
        }
    }
}

/// `cfg.max_age` in whole milliseconds, rounded up, by [`Age`] and by whether the fact is
/// positive.
fn max_ages(cfg: &CacheConfig) -> [[u64; 2]; 3] {
    [Age::Ordinary, Age::Strict, Age::Fresh].map(|age| {
        [false, true].map(|positive| {
            u64::try_from(cfg.max_age(positive, age).as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
        })
    })
}

/// A conditional request's outcome.
enum Conditional<'c, C, T> {
    /// 304: what we hold is current.
    Unchanged(&'c C),
    /// A new body, with its ETag.
    New(T, Option<String>),
}

/// What a load found: the entry, and whether GitHub was asked for it.
type Loaded = (Arc<PermEntry>, Source);

impl Facts {
    pub(crate) fn new(
        cfg: CacheConfig,
        clock: Arc<dyn Clock>,
        github: Arc<dyn GithubApi>,
        least: Role,
        store: Arc<dyn Store>,
    ) -> Self {
        let front = Arc::new(FactMap::new(cfg.capacity));
        let listener_front = front.clone();
        let (heard_role, heard_no_role) = cfg.heard_lifetimes.unwrap_or_default();
        let keep = cfg.role_ttl.max(cfg.no_role_ttl).max(heard_role).max(heard_no_role) + cfg.keep_for_revalidation;
        let perms = moka::future::Cache::builder()
            .max_capacity(cfg.capacity)
            .time_to_live(keep)
            .eviction_listener(move |k: Arc<PermKey>, v: Arc<PermEntry>, _| {
                listener_front.remove_generation(&k, v.core.generation);
            })
            .build();
        /// A cache of facts shared by many permissions: a quarter of the capacity, at least 1,024.
        fn shared_facts<K, V>(capacity: u64, keep: Duration) -> moka::future::Cache<K, V>
        where
            K: std::hash::Hash + Eq + Send + Sync + 'static,
            V: Clone + Send + Sync + 'static,
        {
            moka::future::Cache::builder().max_capacity((capacity / 4).max(1024)).time_to_live(keep).build()
        }
        let (repos, rosters, accounts) =
            (shared_facts(cfg.capacity, keep), shared_facts(cfg.capacity, keep), shared_facts(cfg.capacity, keep));
        let backoff = moka::sync::Cache::builder()
            .max_capacity(cfg.capacity.max(1024))
            .time_to_live(Duration::from_secs(3600))
            .build();
        Self {
            clock,
            github,
            perms,
            repos,
            rosters,
            accounts,
            least,
            shared: cfg.shared_rosters.then_some(store),
            barriers: parking_lot::Mutex::new(Barriers::default()),
            front,
            epochs: Epochs::default(),
            backoff,
            counters: Counters::default(),
            generation: AtomicU64::new(0),
            max_age_ms: max_ages(&cfg),
            heard_max_age_ms: cfg.heard_lifetimes.map(|(role_ttl, no_role_ttl)| {
                // Never shorter than the ordinary lifetimes.
                let (role_ttl, no_role_ttl) = (role_ttl.max(cfg.role_ttl), no_role_ttl.max(cfg.no_role_ttl));
                max_ages(&CacheConfig { role_ttl, no_role_ttl, ..cfg.clone() })
            }),
            heard_until: AtomicU64::new(0),
            heard_since: AtomicU64::new(u64::MAX),
            heard_lock: parking_lot::Mutex::new(()),
            cfg,
        }
    }

    /// Whether checks need the user's own token (user-token mode).
    pub(crate) fn user_token_mode(&self) -> bool {
        self.github.user_token_mode()
    }

    /// The shared credentials' budget, as GitHub's last answer said it.
    pub(crate) fn github_budget(&self) -> Option<crate::github::GithubBudget> {
        self.github.budget()
    }

    /// Each installation in use and its budget (an App across its installations).
    pub(crate) fn github_installation_budgets(&self) -> Vec<(u64, crate::github::GithubBudget)> {
        self.github.installation_budgets()
    }

    /// Whether GitHub's last answer to the shared credentials refused them.
    pub(crate) fn github_credentials_refused(&self) -> bool {
        self.github.credentials_refused()
    }

    /// A user token's own budget, as GitHub's last answer to it said.
    pub(crate) fn github_budget_for(&self, token: &GithubToken) -> Option<crate::github::GithubBudget> {
        self.github.user_budget(token)
    }

    /// Checks answered from memory.
    pub(crate) fn hits(&self) -> u64 {
        self.front.hits()
    }

    /// Entries held now (approximate).
    pub(crate) fn entries(&self) -> u64 {
        self.perms.entry_count()
    }

    /// The hit path: `decide` over the key's fact, if the fact is in memory and fresh enough for
    /// `age` (and still about the repository at the app's coordinates).
    #[inline]
    pub(crate) fn cached<R>(
        &self,
        key: &PermKey,
        app: AppView,
        age: Age,
        now: Timestamp,
        decide: impl Fn(Seen<&Fact>) -> R,
    ) -> Option<R> {
        // Read before either look: a slot is believed only if no invalidation came since it was
        // written, and the front map's entry is copied there stamped with it.
        let epoch = self.epochs.current();
        let inline = self.front.with_inline(key, |hit| {
            let age_ms = now.millis_since(hit.confirmed_at);
            let fresh = hit.at_epoch(epoch)
                && hit.coords_fp == app.coords_fp
                && age_ms < self.max_age_ms(hit.fact.role().is_some(), age, now, hit.confirmed_at);
            fresh.then(|| decide(Seen::cached(&hit.fact.fact(), age_ms)))
        });
        if inline.is_some() {
            return inline;
        }
        self.cached_front(key, app, age, now, epoch, &decide)
    }

    /// The hit path's second look: the front map.
    #[inline(never)]
    fn cached_front<R>(
        &self,
        key: &PermKey,
        app: AppView,
        age: Age,
        now: Timestamp,
        epoch: u64,
        decide: &impl Fn(Seen<&Fact>) -> R,
    ) -> Option<R> {
        self.front.with(key, epoch, |entry| {
            self.usable(key, entry, app, now, age).then(|| decide(Self::seen(entry, Source::Cache, now)))
        })
    }

    /// `inv` was made on this replica, and the store may not have recorded it (a local
    /// invalidation, or one the store refused): no roster shared through the store whose fetch
    /// began no later than now, and which `inv` covers, is served here.
    pub(crate) fn bar(&self, inv: Invalidation) {
        if self.shared.is_none() {
            return;
        }
        let now = self.clock.now();
        let mut b = self.barriers.lock();
        // The latest stands, even if the clock stepped back.
        match crate::store::fact_scope(&inv) {
            ("all", _) => b.all = Some(b.all.map_or(now, |at| at.max(now))),
            (scope, id) => {
                if b.by_id.len() >= MAX_BARRIERS {
                    // Older than any fact may live: they cover nothing servable.
                    let horizon = now.minus(self.longest_lifetime()).minus(CLOCK_SKEW);
                    b.by_id.retain(|_, at| *at >= horizon);
                    if b.by_id.len() >= MAX_BARRIERS {
                        // Still full: one barrier over everything stands for them all.
                        b.by_id.clear();
                        b.all = Some(b.all.map_or(now, |at| at.max(now)));
                    }
                }
                let at = b.by_id.entry((scope, id)).or_insert(now);
                *at = (*at).max(now);
            }
        }
    }

    /// The longest any fact may be served, webhooks heard or not.
    fn longest_lifetime(&self) -> Duration {
        let most = |table: &[[u64; 2]; 3]| table.iter().flatten().copied().max().unwrap_or(0);
        let ms = most(&self.max_age_ms).max(self.heard_max_age_ms.as_ref().map_or(0, most));
        Duration::from_millis(ms)
    }

    /// Whether a fact from the store, confirmed at `confirmed_at` by another replica's clock, is
    /// too far in this one's future to be believed (its age would read as less than it is).
    fn confirmed_in_the_future(&self, confirmed_at: Timestamp) -> bool {
        confirmed_at > self.clock.now().plus(CLOCK_SKEW)
    }

    /// Whether a barrier ([`Facts::bar`]) covers a fact taken from the store, about repository
    /// `repo` of `owner`, whose fetch began at `started_at` (by the clock of the replica that
    /// fetched it): made no earlier than [`CLOCK_SKEW`] before. A fact about no repository (none
    /// was found) is covered by any barrier.
    fn barred(&self, started_at: Timestamp, owner: Option<OwnerId>, repo: Option<RepoId>) -> bool {
        let b = self.barriers.lock();
        let covers = |at: &Timestamp| at.plus(CLOCK_SKEW) >= started_at;
        if b.all.as_ref().is_some_and(covers) {
            return true;
        }
        match (owner, repo) {
            (Some(owner), Some(repo)) => {
                b.by_id.get(&("owner", owner.0)).is_some_and(covers)
                    || b.by_id.get(&("repo", repo.0)).is_some_and(covers)
            }
            _ => b.by_id.values().any(covers),
        }
    }

    /// Forgets what `inv` names; effective for the next check.
    ///
    /// Recording it in the epoch log is what forgets: every look at a cached fact (a
    /// permission, a roster, a repository lookup, an account) checks the log, so an entry the
    /// invalidation covers is never served again, and its next fetch replaces it (a conditional
    /// request where it has an ETag: most of what an invalidation names has not changed, and
    /// its revalidation is a free 304). The maps are not scanned: an invalidation costs the
    /// same whatever the cache holds, and a delivery never holds up the checks around it.
    pub(crate) fn invalidate(&self, inv: Invalidation) {
        self.epochs.record(inv);
        self.github.forget_installations(&inv);
        if inv == Invalidation::All {
            self.accounts.invalidate_all();
            self.perms.invalidate_all();
            self.repos.invalidate_all();
        }
    }

    /// The oldest, in milliseconds, a `positive` (or negative) fact confirmed at `confirmed`
    /// may be for `age` at `now`: the longer lifetimes while webhooks are heard, for a fact
    /// confirmed since they have been.
    #[inline]
    fn max_age_ms(&self, positive: bool, age: Age, now: Timestamp, confirmed: Timestamp) -> u64 {
        match &self.heard_max_age_ms {
            Some(heard)
                if now.0 < self.heard_until.load(Ordering::Acquire)
                    && confirmed.0 >= self.heard_since.load(Ordering::Acquire) =>
            {
                heard[age as usize][usize::from(positive)]
            }
            _ => self.max_age_ms[age as usize][usize::from(positive)],
        }
    }

    /// A verified delivery was applied at `now`: the lifetimes while webhooks are heard apply
    /// until `heard_within` after it, to facts confirmed since webhooks have been heard without
    /// a break.
    pub(crate) fn webhook_heard(&self, now: Timestamp) {
        if self.heard_max_age_ms.is_none() {
            return;
        }
        let until = now.plus(self.cfg.heard_within).0;
        let _one = self.heard_lock.lock();
        if self.heard_until.load(Ordering::Acquire) <= now.0 {
            // Not heard until now: facts confirmed before keep the ordinary lifetimes.
            self.heard_since.store(now.0, Ordering::Release);
        }
        self.heard_until.fetch_max(until, Ordering::AcqRel);
    }

    /// Deliveries to other replicas no longer reach this one (the change feed was lost or ended):
    /// the ordinary lifetimes apply until the next delivery here.
    pub(crate) fn webhooks_unheard(&self) {
        let _one = self.heard_lock.lock();
        self.heard_until.store(0, Ordering::Release);
    }

    fn usable(&self, key: &PermKey, entry: &FactCore, app: AppView, now: Timestamp, age: Age) -> bool {
        entry.coords_fp == app.coords_fp
            && now.millis_since(entry.confirmed_at)
                < self.max_age_ms(entry.fact.is_positive(), age, now, entry.confirmed_at)
            && self.epochs.still_valid(&entry.seen_epoch, |inv| entry.matches(key, inv))
    }

    /// A roster answers "no role" for every user absent from it, and a role for those on it: it
    /// is served no longer than either fact.
    fn roster_usable(&self, entry: &RosterEntry, now: Timestamp, age: Age) -> bool {
        // Whichever lifetime is shorter: it answers both "no role" and "has a role".
        let max = |positive| self.max_age_ms(positive, age, now, entry.confirmed_at);
        now.millis_since(entry.confirmed_at) < max(false).min(max(true))
            && self.epochs.still_valid(&entry.seen_epoch, |inv| entry.matches(inv))
    }

    fn repo_usable(&self, entry: &RepoEntry, now: Timestamp, age: Age) -> bool {
        now.millis_since(entry.confirmed_at) < self.max_age_ms(entry.found.is_some(), age, now, entry.confirmed_at)
            && self.epochs.still_valid(&entry.seen_epoch, |inv| entry.matches(inv))
    }

    /// The entry's fact, from `source`: as old as its confirmation, or new if asked just now.
    pub(crate) fn seen(entry: &FactCore, source: Source, now: Timestamp) -> Seen<&Fact> {
        let age_ms = if source == Source::Github { 0 } else { now.millis_since(entry.confirmed_at) };
        Seen { value: &entry.fact, source, age_ms }
    }

    fn note_failure(&self, key: PermKey, err: &CheckError, now: Timestamp) {
        Counters::bump(&self.counters.upstream_errors);
        let wait = err.retry_after().unwrap_or(self.cfg.error_backoff);
        self.backoff.insert(key, Backoff { until: now.plus(wait) });
    }

    /// The slow path: one request per key, whatever the number of concurrent callers.
    pub(crate) async fn load(
        &self,
        key: PermKey,
        app: &App,
        user: &GithubUser,
        token: Option<&GithubToken>,
        age: Age,
    ) -> Result<Loaded, CheckError> {
        let fresh = |c: &PermEntry| self.usable(&key, &c.core, app.view(), self.clock.now(), age);
        let fetch = |current: Option<Arc<PermEntry>>| async move {
            let now = self.clock.now();
            // The caller's mistake, not GitHub's failure: refused without backing off.
            if token.is_some_and(|t| !t.is_well_formed()) {
                return Err(GithubError::MalformedToken.into());
            }
            if let Some(b) = self.backoff.get(&key).filter(|b| b.until > now) {
                let retry_after = Some(Duration::from_secs(b.until.since(now).as_secs().max(1)));
                return Err(GithubError::Unavailable { cause: UnavailableCause::BackingOff, retry_after }.into());
            }
            let fetched = self.fetch(current.as_deref(), app, user, token, age).await;
            match &fetched {
                Ok(_) => self.backoff.invalidate(&key),
                Err(e) => self.note_failure(key, e, now),
            }
            fetched
        };
        // The front map gets the entry before moka does, so that whatever moka then drops to stay
        // within its capacity (the new entry itself included) its eviction listener removes.
        let (entry, source) =
            coalesced(&self.perms, key, fresh, fetch, |e: &PermEntry| self.front.insert(key, e.core.snapshot()))
                .await?;
        if source != Source::Github {
            Counters::bump(&self.counters.coalesced);
        }
        // Built from a roster already in memory: nothing was asked of GitHub.
        let source = if source == Source::Github && !entry.asked { Source::Cache } else { source };
        Ok((entry, source))
    }

    /// Asks GitHub, conditionally where an earlier answer's ETag is at hand.
    async fn fetch(
        &self,
        current: Option<&PermEntry>,
        app: &App,
        user: &GithubUser,
        token: Option<&GithubToken>,
        age: Age,
    ) -> Result<PermEntry, CheckError> {
        let start_epoch = self.epochs.current();
        // A conditional request only makes sense for the same coordinates.
        let current = current.filter(|c| c.core.coords_fp == app.coords_fingerprint());
        if current.is_none() {
            Counters::bump(&self.counters.misses);
        }
        let (fact, confirmed_at, owner, perm_etag, repo_etag) = match token {
            Some(token) => {
                let etag = current.and_then(|c| c.repo_etag.as_deref());
                let answer = self.github.repository(app.coords(), Some(token), etag).await?;
                let now = self.clock.now();
                match self.conditional(current, etag, answer)? {
                    Conditional::Unchanged(cur) => {
                        (cur.core.fact.clone(), now, cur.core.owner, None, cur.repo_etag.clone())
                    }
                    Conditional::New(None, _) => (Fact::Role(None), now, None, None, None),
                    Conditional::New(Some(info), etag) => {
                        let fact = if info.id == app.repo_id() {
                            Fact::Role(info.role.flatten())
                        } else {
                            Fact::Replaced { current: info.id }
                        };
                        (fact, now, Some(info.owner), None, etag)
                    }
                }
            }
            None => {
                let repo = self.repo(app.coords(), age).await?;
                match repo.found {
                    None if repo.not_installed => (Fact::NotInstalled, repo.confirmed_at, None, None, None),
                    None => (Fact::RepoNotFound, repo.confirmed_at, None, None, None),
                    Some((id, owner)) if id != app.repo_id() => {
                        (Fact::Replaced { current: id }, repo.confirmed_at, Some(owner), None, None)
                    }
                    Some((id, owner)) => {
                        let target = PermissionTarget::of(app.coords(), id, repo.renamed);
                        let roster = match self.cfg.rosters {
                            true => Some(self.roster(id, owner, target, age).await?),
                            false => None,
                        };
                        if let Some((roster, roles, asked)) =
                            roster.as_ref().and_then(|(r, source)| r.roles.as_ref().map(|m| (r, m, *source)))
                        {
                            // Absent from the roster: no role the policy counts.
                            let fact = Fact::Rostered(roles.get(&user.id).cloned());
                            let confirmed_at = roster.confirmed_at.min(repo.confirmed_at);
                            let mut entry = self.entry(fact, confirmed_at, app, Some(owner), start_epoch, None, None);
                            entry.asked = asked == Source::Github;
                            return Ok(entry);
                        }
                        let reuse = current.filter(|c| matches!(c.core.fact, Fact::Role(_) | Fact::LoginMismatch));
                        let etag = reuse.and_then(|c| c.perm_etag.as_deref());
                        let answer = self.github.permission(target, &user.login, etag).await?;
                        let now = self.clock.now();
                        let (fact, perm_etag) = match self.conditional(reuse, etag, answer)? {
                            Conditional::Unchanged(cur) => (cur.core.fact.clone(), cur.perm_etag.clone()),
                            Conditional::New(None, _) => (Fact::Role(None), None),
                            Conditional::New(Some(info), etag) => match info.user {
                                Some(id) if id != user.id => (Fact::LoginMismatch, None),
                                _ => (Fact::Role(info.grant), etag),
                            },
                        };
                        (fact, now.min(repo.confirmed_at), Some(owner), perm_etag, None)
                    }
                }
            }
        };
        Ok(self.entry(fact, confirmed_at, app, owner, start_epoch, perm_etag, repo_etag))
    }

    /// A new entry for `app`'s key, fetched from `start_epoch` on.
    #[expect(clippy::too_many_arguments, reason = "the parts of one entry, each named at its one call site")]
    fn entry(
        &self,
        fact: Fact,
        confirmed_at: Timestamp,
        app: &App,
        owner: Option<OwnerId>,
        start_epoch: u64,
        perm_etag: Option<String>,
        repo_etag: Option<String>,
    ) -> PermEntry {
        PermEntry {
            core: FactCore {
                fact,
                confirmed_at,
                coords_fp: app.coords_fingerprint(),
                owner,
                generation: self.generation.fetch_add(1, Ordering::Relaxed),
                seen_epoch: AtomicU64::new(start_epoch),
            },
            perm_etag,
            repo_etag,
            asked: true,
        }
    }

    /// The roster of repository `repo` (owned by `owner`, asked at `target`), shared by all its
    /// users and coalesced: revalidated with its ETag once it is older than a negative fact may
    /// be for `age`.
    async fn roster(
        &self,
        repo: RepoId,
        owner: OwnerId,
        target: PermissionTarget<'_>,
        age: Age,
    ) -> Result<(Arc<RosterEntry>, Source), CheckError> {
        let fresh = |c: &RosterEntry| self.roster_usable(c, self.clock.now(), age);
        let fetch = |current: Option<Arc<RosterEntry>>| async move {
            let start_epoch = self.epochs.current();
            let started_at = self.clock.now();
            // Another replica's, from the store, while within its lifetime and no invalidation
            // that covers it came since its fetch began; else asked of GitHub and shared. Where
            // the store does not answer, GitHub is asked and nothing is shared.
            let mut seen = None;
            if let Some(store) = &self.shared {
                if let Ok(Some(kept)) = store.roster(repo).await {
                    if kept.owner == owner
                        && kept.least == self.least
                        && !self.confirmed_in_the_future(kept.confirmed_at)
                        && !self.barred(kept.started_at, Some(kept.owner), Some(kept.repo))
                    {
                        // This replica's own ETag is kept, with the roles it stands for, so that its
                        // next revalidation may be a free 304 (an ETag is worth something only to
                        // the token that fetched it).
                        let own = current.as_ref().filter(|c| c.etag_roles.is_some());
                        let entry = RosterEntry {
                            repo,
                            owner,
                            roles: kept.roles.map(|roles| roles.into_iter().collect()),
                            confirmed_at: kept.confirmed_at,
                            etag: own.and_then(|c| c.etag.clone()),
                            seen_epoch: AtomicU64::new(start_epoch),
                            shared: true,
                            etag_roles: own.and_then(|c| c.etag_roles.clone()),
                        };
                        if self.roster_usable(&entry, self.clock.now(), age) {
                            Counters::bump(&self.counters.rosters_shared);
                            return Ok(entry);
                        }
                    }
                }
                seen = store.fact_epoch().await.ok();
            }
            let etag = current.as_ref().filter(|c| c.etag_roles.is_some()).and_then(|c| c.etag.as_deref());
            Counters::bump(&self.counters.roster_requests);
            let answer = self.github.roster(target, self.least, self.cfg.roster_max_pages, etag).await?;
            let confirmed_at = self.clock.now();
            let (roles, etag) = match self.conditional(current.as_deref(), etag, answer)? {
                Conditional::Unchanged(cur) => (cur.etag_roles.clone(), cur.etag.clone()),
                Conditional::New(Roster::Listed(listed), etag) => (Some(listed.into_iter().collect()), etag),
                Conditional::New(Roster::Refused | Roster::TooLarge, _) => {
                    Counters::bump(&self.counters.roster_fallbacks);
                    (None, None)
                }
            };
            if let (Some(store), Some(seen)) = (&self.shared, seen) {
                let listed = roles.as_ref().map(|r: &std::collections::HashMap<_, _>| {
                    r.iter().map(|(user, grant)| (*user, grant.clone())).collect()
                });
                let shared = SharedRoster::new(repo, owner, self.least, listed, (started_at, confirmed_at), seen);
                if let Err(e) = store.put_roster(&shared).await {
                    tracing::debug!(error = %e, "a roster could not be shared through the store");
                }
            }
            let etag_roles = etag.as_ref().and(roles.clone());
            Ok(RosterEntry {
                repo,
                owner,
                roles,
                confirmed_at,
                etag,
                seen_epoch: AtomicU64::new(start_epoch),
                shared: false,
                etag_roles,
            })
        };
        let (entry, source) = coalesced(&self.rosters, repo, fresh, fetch, |_: &RosterEntry| {}).await?;
        // Taken from the store: GitHub was not asked.
        let source = if source == Source::Github && entry.shared { Source::Cache } else { source };
        Ok((entry, source))
    }

    /// Sorts a conditional answer into "what we hold is current" or a new body.
    fn conditional<'c, T, C>(
        &self,
        current: Option<&'c C>,
        sent_etag: Option<&str>,
        answer: Fetched<T>,
    ) -> Result<Conditional<'c, C, T>, CheckError> {
        match answer {
            Fetched::NotModified if sent_etag.is_none() => Err(GithubError::Protocol {
                route: "(conditional)".into(),
                detail: "304 to an unconditional request".into(),
            }
            .into()),
            Fetched::NotModified => {
                Counters::bump(&self.counters.not_modified);
                current.map(Conditional::Unchanged).ok_or_else(|| {
                    GithubError::Protocol {
                        route: "(conditional)".into(),
                        detail: "304 to an unconditional request".into(),
                    }
                    .into()
                })
            }
            Fetched::Fresh { value, etag } => {
                if sent_etag.is_some() {
                    Counters::bump(&self.counters.modified);
                }
                Ok(Conditional::New(value, etag))
            }
        }
    }

    /// Every user holding a role the policy counts on `app`'s repository, as its roster lists
    /// them, with the roster's source and age; empty when no repository, or another one, answers
    /// at the app's coordinates. `None` when GitHub does not list them: the roster is refused or
    /// too large, rosters are off, or in user-token mode.
    pub(crate) async fn roster_of(
        &self,
        app: &App,
        age: Age,
    ) -> Result<Option<(Vec<(UserId, crate::core::policy::RoleGrant)>, Source, u64)>, CheckError> {
        if self.user_token_mode() || !self.cfg.rosters {
            return Ok(None);
        }
        let repo = self.repo(app.coords(), age).await?;
        let (id, owner) = match repo.found {
            Some((id, owner)) if id == app.repo_id() => (id, owner),
            _ => return Ok(Some((Vec::new(), Source::Github, 0))),
        };
        let target = PermissionTarget::of(app.coords(), id, repo.renamed);
        let (entry, source) = self.roster(id, owner, target, age).await?;
        let age_ms = self.clock.now().millis_since(entry.confirmed_at.min(repo.confirmed_at));
        Ok(entry.roles.as_ref().map(|roles| {
            let mut listed: Vec<_> = roles.iter().map(|(id, grant)| (*id, grant.clone())).collect();
            listed.sort_by_key(|(id, _)| *id);
            (listed, source, age_ms)
        }))
    }

    /// Learns which repository answers at each of `coords` from one listing of the
    /// installation's repositories (a request per 100 of them), when any of them has no usable
    /// entry: a listing of apps then asks only for the user's roles. The listing goes past its
    /// first page only if it costs no more requests than looking up the coordinates it is for one
    /// by one. Coordinates it does not name (renamed, out of reach, on a page not read) are
    /// looked up one by one later, as ever. An entry learnt here is no older than the listing,
    /// and an invalidation that matches it during the listing undoes it.
    pub(crate) async fn learn_repos(&self, coords: &[RepoCoords]) -> Result<(), CheckError> {
        let now = self.clock.now();
        let mut missing = Vec::new();
        for c in coords {
            if self.repos.get(c).await.is_none_or(|e| !self.repo_usable(&e, now, Age::Ordinary)) {
                missing.push(c);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let start_epoch = self.epochs.current();
        let listed = if self.github.installations_per_owner() {
            // Each account's installation lists its own repositories.
            let mut owners: Vec<&RepoCoords> = Vec::new();
            for c in &missing {
                if !owners.iter().any(|o| o.owner().eq_ignore_ascii_case(c.owner())) {
                    owners.push(c);
                }
            }
            let mut listed = Vec::new();
            for owner in owners {
                let of_owner = missing.iter().filter(|c| c.owner().eq_ignore_ascii_case(owner.owner())).count();
                listed.extend(self.github.installation_repos(Some(owner), of_owner).await?);
            }
            listed
        } else {
            self.github.installation_repos(None, missing.len()).await?
        };
        let confirmed_at = self.clock.now();
        for r in listed.into_iter().filter(|r| missing.contains(&&r.coords)) {
            let entry = RepoEntry {
                found: Some((r.id, r.owner)),
                not_installed: false,
                renamed: false,
                confirmed_at,
                etag: None,
                seen_epoch: AtomicU64::new(start_epoch),
            };
            self.repos.insert(r.coords, Arc::new(entry)).await;
        }
        Ok(())
    }

    /// The repositories the token's user has a role on (user-token mode), every page.
    pub(crate) async fn user_repos(&self, token: &GithubToken) -> Result<Vec<crate::github::ListedRepo>, CheckError> {
        Ok(self.github.user_repos(token).await?)
    }

    /// The GitHub user with `login` now (asked each time: logins are renamed and reused).
    pub(crate) async fn user(&self, login: &str) -> Result<Option<GithubUser>, CheckError> {
        Ok(self.github.user(login).await?)
    }

    /// The GitHub account with this id and its login now (`None`: no user has it), with where
    /// it came from and its age: from memory while it is younger than the role lifetime (the
    /// no-role lifetime for none), unless `age` is fresh; otherwise asked of GitHub, one request
    /// for concurrent askers.
    pub(crate) async fn account(&self, id: UserId, age: Age) -> Result<(Option<GithubUser>, Source, u64), CheckError> {
        let fresh = |e: &AccountEntry| {
            let now = self.clock.now();
            age != Age::Fresh
                && now.millis_since(e.fetched_at) < self.max_age_ms(e.user.is_some(), Age::Ordinary, now, e.fetched_at)
                && self.epochs.still_valid(&e.seen_epoch, |inv| AccountEntry::matches(id, inv))
        };
        // A usable entry is read without taking the key's lock; past it, one load per key.
        if let Some(entry) = self.accounts.get(&id).await.filter(|e| fresh(e)) {
            return Ok((entry.user.clone(), Source::Cache, self.clock.now().millis_since(entry.fetched_at)));
        }
        let fetch = |_| async move {
            let seen_epoch = AtomicU64::new(self.epochs.current());
            let user = self.github.account(id).await?;
            Ok(AccountEntry { user, fetched_at: self.clock.now(), seen_epoch })
        };
        let (entry, source) = coalesced(&self.accounts, id, fresh, fetch, |_: &AccountEntry| {}).await?;
        Ok((entry.user.clone(), source, self.clock.now().millis_since(entry.fetched_at)))
    }

    /// The id of the repository at `coords` now, a rename followed; `None` if GitHub has none
    /// there that the caller can see. With a user's `token`, asked with it (user-token mode);
    /// without, the installation's answer, no older than `age` allows.
    pub(crate) async fn repository_id(
        &self,
        coords: &RepoCoords,
        token: Option<&GithubToken>,
        age: Age,
    ) -> Result<Option<RepoId>, CheckError> {
        match token {
            Some(token) => match self.github.repository(coords, Some(token), None).await? {
                Fetched::Fresh { value, .. } => Ok(value.map(|info| info.id)),
                Fetched::NotModified => Err(GithubError::Protocol {
                    route: "GET /repos/{owner}/{repo}".into(),
                    detail: "304 to an unconditional request".into(),
                }
                .into()),
            },
            None => Ok(self.repo(coords, age).await?.found.map(|(id, _)| id)),
        }
    }

    /// Which repository is at `coords`, shared by all users and coalesced like permissions.
    async fn repo(&self, coords: &RepoCoords, age: Age) -> Result<Arc<RepoEntry>, CheckError> {
        let fresh = |c: &RepoEntry| self.repo_usable(c, self.clock.now(), age);
        let fetch = |current: Option<Arc<RepoEntry>>| async move {
            let start_epoch = self.epochs.current();
            let started_at = self.clock.now();
            // Another replica's answer, from the store, as rosters are ([`Facts::roster`]).
            let mut seen = None;
            if let Some(store) = &self.shared {
                if let Ok(Some(kept)) = store.repo(coords).await {
                    if !self.confirmed_in_the_future(kept.confirmed_at)
                        && !self.barred(
                            kept.started_at,
                            kept.found.map(|(_, owner)| owner),
                            kept.found.map(|(id, _)| id),
                        )
                    {
                        // This replica's own ETag is kept where it stands for the same answer.
                        let same = |c: &&Arc<RepoEntry>| c.found == kept.found && c.renamed == kept.renamed;
                        let entry = RepoEntry {
                            found: kept.found,
                            not_installed: kept.not_installed,
                            renamed: kept.renamed,
                            confirmed_at: kept.confirmed_at,
                            etag: current.as_ref().filter(same).and_then(|c| c.etag.clone()),
                            seen_epoch: AtomicU64::new(start_epoch),
                        };
                        if self.repo_usable(&entry, self.clock.now(), age) {
                            Counters::bump(&self.counters.repos_shared);
                            return Ok(entry);
                        }
                    }
                }
                seen = store.fact_epoch().await.ok();
            }
            let etag = current.as_ref().and_then(|c| c.etag.as_deref());
            let entry = match self.github.repository(coords, None, etag).await {
                // No installation of the App covers it: a fact, kept as long as "not found".
                Err(GithubError::NotInstalled) => RepoEntry {
                    found: None,
                    not_installed: true,
                    renamed: false,
                    confirmed_at: self.clock.now(),
                    etag: None,
                    seen_epoch: AtomicU64::new(start_epoch),
                },
                answer => {
                    let answer = answer?;
                    let confirmed_at = self.clock.now();
                    let seen_epoch = AtomicU64::new(start_epoch);
                    match self.conditional(current.as_deref(), etag, answer)? {
                        Conditional::Unchanged(cur) => RepoEntry {
                            found: cur.found,
                            not_installed: cur.not_installed,
                            renamed: cur.renamed,
                            confirmed_at,
                            etag: cur.etag.clone(),
                            seen_epoch,
                        },
                        Conditional::New(info, etag) => RepoEntry {
                            found: info.as_ref().map(|i| (i.id, i.owner)),
                            not_installed: false,
                            renamed: info.as_ref().is_some_and(|i| i.redirected),
                            confirmed_at,
                            etag,
                            seen_epoch,
                        },
                    }
                }
            };
            if let (Some(store), Some(seen)) = (&self.shared, seen) {
                let shared = SharedRepo::new(
                    coords.clone(),
                    entry.found,
                    (entry.renamed, entry.not_installed),
                    (started_at, entry.confirmed_at),
                    seen,
                );
                if let Err(e) = store.put_repo(&shared).await {
                    tracing::debug!(error = %e, "a repository lookup could not be shared through the store");
                }
            }
            Ok(entry)
        };
        coalesced(&self.repos, coords.clone(), fresh, fetch, |_: &RepoEntry| {}).await.map(|(entry, _)| entry)
    }
}

/// One request per key, whatever the number of concurrent callers: moka runs one compute per key
/// at a time, so the first caller fetches and the callers queued behind it find its fresh value
/// (`Source::Cache`). A failed fetch stores nothing and leaves the old value (which is not fresh)
/// in place. If the fetching caller is dropped, the next one in the queue fetches.
/// `before_put` runs on a fetched value just before moka stores it.
async fn coalesced<K, V, Fut>(
    cache: &moka::future::Cache<K, Arc<V>>,
    key: K,
    fresh: impl FnOnce(&V) -> bool,
    fetch: impl FnOnce(Option<Arc<V>>) -> Fut,
    before_put: impl FnOnce(&V),
) -> Result<(Arc<V>, Source), CheckError>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<V, CheckError>>,
{
    let mut out = None;
    let _ = cache
        .entry(key)
        .and_compute_with(|current| {
            let out = &mut out;
            async move {
                let current = current.map(|e| e.into_value());
                if let Some(cur) = current.as_ref().filter(|c| fresh(c)) {
                    *out = Some(Ok((cur.clone(), Source::Cache)));
                    return Op::Nop;
                }
                match fetch(current).await {
                    Ok(value) => {
                        before_put(&value);
                        let value = Arc::new(value);
                        *out = Some(Ok((value.clone(), Source::Github)));
                        Op::Put(value)
                    }
                    Err(e) => {
                        *out = Some(Err(e));
                        Op::Nop
                    }
                }
            }
        })
        .await;
    out.unwrap_or_else(|| {
        Err(GithubError::Protocol { route: "(cache)".into(), detail: "load produced no answer".into() }.into())
    })
}
