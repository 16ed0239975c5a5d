//! The cache: GitHub facts (this module), apps and grants ([`records`], with inline copies of
//! the apps in [`apps`] for a GitHub user's check by id), verified sessions ([`sessions`]).
//!
//! moka owns capacity, real-time expiry and per-key coalesced loading ([`facts`]). Freshness is
//! judged on the injected clock from the moment GitHub last confirmed a fact. Hits are served
//! from the hit table's inline copies ([`hits`]) and otherwise from a lock-free front map that
//! mirrors moka's contents (moka's eviction listener removes what moka drops from both), so that
//! a hit takes no lock and allocates nothing.
//!
//! Invalidation is recorded in an epoch log. Every entry remembers the epoch at which its fetch
//! started; an entry is served only if no invalidation since then matches it. This holds even for
//! a fetch that was in flight when the invalidation happened.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::Duration;

use parking_lot::RwLock;
use rustc_hash::FxBuildHasher;

use crate::core::decision::Fact;
use crate::core::ids::{OwnerId, RepoId, UserId};
use crate::core::invalidation::Invalidation;
use crate::core::time::Timestamp;

mod apps;
mod facts;
mod feed;
mod hits;
mod records;
mod seqlock;
mod sessions;

/// The value halfway between the lowest and the highest of `values` (0 for none): what a full
/// table keeps above, to drop about half of what it holds (the older half, for values that grow
/// with age, such as load stamps or expiry times).
fn middle(values: impl Iterator<Item = u64>) -> u64 {
    let (low, high) = values.fold((u64::MAX, 0), |(l, h), v| (l.min(v), h.max(v)));
    if low > high { 0 } else { low + (high - low) / 2 }
}

/// The atomics [`seqlock`] is built on (loom's, in the loom model that includes its file).
mod sync {
    pub(crate) use std::sync::atomic::{AtomicU64, Ordering, fence};
}

pub(crate) use facts::Facts;
pub(crate) use feed::{Caches, follow};
pub(crate) use hits::{Hit, InlineFact};
pub(crate) use records::Records;
pub(crate) use sessions::Sessions;

/// Lifetimes and bounds of the cache. Each setting is described once, at its setter (`with_...`,
/// with its default); the getter of the same name returns it.
///
/// # Staleness
///
/// | what | served at most | forgotten at once on |
/// |---|---|---|
/// | a GitHub role | `role_ttl` (5 min) after GitHub confirmed it; `deploy`/`delete`: `strict_max_age` (60 s) | an [`Invalidation`] that matches it (webhooks, [`Authorizer::invalidate`](crate::Authorizer::invalidate)) |
/// | no role, a missing or replaced repository, a repository's roster | `no_role_ttl` (1 min) | the same |
/// | either, while webhooks are heard, with [`CacheConfig::with_lifetimes_while_webhooks_heard`] | the longer lifetimes given there | the same |
/// | an app record, a viewer grant | `record_ttl` (5 min) after it was read, and only while the store's change feed is heard | a change to the app or its grants, here or on any authorizer sharing the store (Postgres: milliseconds; SQLite: within 25 ms) |
/// | a verified session | until its `exp` | new session keys |
///
/// Lifetimes are counted on the authorizer's clock from the moment the fact was confirmed;
/// reading an entry never extends its life. Revalidation is a conditional request
/// (`If-None-Match`); a 304 renews the fact without spending rate limit. A check made with
/// [`Consistency::Fresh`](crate::Consistency::Fresh) uses none of the cache: it reads the store,
/// verifies the session, and revalidates the GitHub fact first.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheConfig {
    pub(crate) role_ttl: Duration,
    pub(crate) no_role_ttl: Duration,
    pub(crate) strict_max_age: Duration,
    pub(crate) capacity: u64,
    pub(crate) keep_for_revalidation: Duration,
    pub(crate) error_backoff: Duration,
    pub(crate) record_ttl: Duration,
    pub(crate) session_capacity: u64,
    pub(crate) rosters: bool,
    pub(crate) shared_rosters: bool,
    pub(crate) roster_max_pages: usize,
    pub(crate) heard_lifetimes: Option<(Duration, Duration)>,
    pub(crate) heard_within: Duration,
}

impl CacheConfig {
    /// Lifetime of "has a role". Default 5 minutes.
    pub fn with_role_ttl(mut self, role_ttl: Duration) -> Self {
        self.role_ttl = role_ttl;
        self
    }

    /// Lifetime of "no role". Default 1 minute.
    pub fn with_no_role_ttl(mut self, no_role_ttl: Duration) -> Self {
        self.no_role_ttl = no_role_ttl;
        self
    }

    /// Oldest fact a `deploy` or `delete` may rest on. Default 60 s.
    pub fn with_strict_max_age(mut self, strict_max_age: Duration) -> Self {
        self.strict_max_age = strict_max_age;
        self
    }

    /// Most (user, repository) entries held. Default 200,000.
    pub fn with_capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// How long past its lifetime an entry is kept (real time) so that it can be revalidated
    /// with a conditional request instead of fetched anew. Default 10 minutes.
    pub fn with_keep_for_revalidation(mut self, keep_for_revalidation: Duration) -> Self {
        self.keep_for_revalidation = keep_for_revalidation;
        self
    }

    /// How long a key is left alone after GitHub failed on it without saying when to come back.
    /// Default 5 s.
    pub fn with_error_backoff(mut self, error_backoff: Duration) -> Self {
        self.error_backoff = error_backoff;
        self
    }

    /// Longest an app record or a viewer grant read from the store is served, even while the
    /// change feed says nothing changed. Default 5 minutes.
    pub fn with_record_ttl(mut self, record_ttl: Duration) -> Self {
        self.record_ttl = record_ttl;
        self
    }

    /// Most verified sessions remembered. Default 100,000.
    pub fn with_session_capacity(mut self, session_capacity: u64) -> Self {
        self.session_capacity = session_capacity;
        self
    }

    /// In installation and App mode, answer every user's check on a repository from one roster
    /// (`GET /repos/{owner}/{repo}/collaborators?affiliation=all&permission=P`, P the lowest role
    /// the policy grants anything to), instead of one permission request per user. A user absent
    /// from it holds no role the policy counts. A repository whose roster is refused (a GitHub
    /// App without the organization `members` permission), or would take more than
    /// [`CacheConfig::with_roster_max_pages`] pages, is asked per user. Default on; `false`
    /// asks per user everywhere. User-token mode always asks with the user's own token.
    pub fn with_rosters(mut self, rosters: bool) -> Self {
        self.rosters = rosters;
        self
    }

    /// Share rosters with the other authorizers on the same store: a roster fetched here is
    /// written to the store with when GitHub confirmed it, and one another replica wrote is
    /// taken from there, within its lifetime (counted from that confirmation) and while no
    /// invalidation that covers it has been recorded since its fetch began, before GitHub is
    /// asked. N replicas then spend about what one spends. Where the store does not answer,
    /// GitHub is asked. Default on (with a store of one's own, nothing is gained or lost).
    pub fn with_shared_rosters(mut self, shared: bool) -> Self {
        self.shared_rosters = shared;
        self
    }

    /// Most pages (of 100 users) a roster may take before its repository is asked per user
    /// instead. Default 10; at least 1.
    pub fn with_roster_max_pages(mut self, pages: usize) -> Self {
        self.roster_max_pages = pages.max(1);
        self
    }

    /// Opt-in: while webhooks are heard, a role lives `role_ttl` and "no role" (a roster
    /// included) `no_role_ttl`, instead of [`CacheConfig::with_role_ttl`]'s and
    /// [`CacheConfig::with_no_role_ttl`]'s. Webhooks are heard while a verified delivery was
    /// applied on this authorizer within [`CacheConfig::with_webhooks_heard_within`] (1 hour by
    /// default), and the store's change feed has not been lost since (deliveries to other
    /// replicas reach this one through it). `deploy` and `delete` still rest on a fact no older
    /// than `strict_max_age`.
    ///
    /// The longer lifetimes are the bound on every change GitHub sends no webhook for (an
    /// organization's base permission, member and owner, custom-role edits, organization roles,
    /// enterprise grants, team re-parenting: docs/webhooks.md) and on a delivery GitHub failed
    /// to make. Each is at least the ordinary lifetime.
    pub fn with_lifetimes_while_webhooks_heard(mut self, role_ttl: Duration, no_role_ttl: Duration) -> Self {
        self.heard_lifetimes = Some((role_ttl.max(self.role_ttl), no_role_ttl.max(self.no_role_ttl)));
        self
    }

    /// How recent the last delivery must be for webhooks to count as heard. Default 1 hour. A
    /// quiet organization sends none for hours: the ordinary lifetimes then apply, which is
    /// never less safe.
    pub fn with_webhooks_heard_within(mut self, within: Duration) -> Self {
        self.heard_within = within;
        self
    }

    /// As set by [`CacheConfig::with_lifetimes_while_webhooks_heard`].
    pub fn lifetimes_while_webhooks_heard(&self) -> Option<(Duration, Duration)> {
        self.heard_lifetimes
    }

    /// As set by [`CacheConfig::with_webhooks_heard_within`].
    pub fn webhooks_heard_within(&self) -> Duration {
        self.heard_within
    }

    /// As set by [`CacheConfig::with_rosters`].
    pub fn rosters(&self) -> bool {
        self.rosters
    }

    /// As set by [`CacheConfig::with_roster_max_pages`].
    pub fn roster_max_pages(&self) -> usize {
        self.roster_max_pages
    }

    /// As set by [`CacheConfig::with_role_ttl`].
    pub fn role_ttl(&self) -> Duration {
        self.role_ttl
    }

    /// As set by [`CacheConfig::with_no_role_ttl`].
    pub fn no_role_ttl(&self) -> Duration {
        self.no_role_ttl
    }

    /// As set by [`CacheConfig::with_strict_max_age`].
    pub fn strict_max_age(&self) -> Duration {
        self.strict_max_age
    }

    /// As set by [`CacheConfig::with_capacity`].
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// As set by [`CacheConfig::with_keep_for_revalidation`].
    pub fn keep_for_revalidation(&self) -> Duration {
        self.keep_for_revalidation
    }

    /// As set by [`CacheConfig::with_error_backoff`].
    pub fn error_backoff(&self) -> Duration {
        self.error_backoff
    }

    /// As set by [`CacheConfig::with_record_ttl`].
    pub fn record_ttl(&self) -> Duration {
        self.record_ttl
    }

    /// As set by [`CacheConfig::with_session_capacity`].
    pub fn session_capacity(&self) -> u64 {
        self.session_capacity
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            role_ttl: Duration::from_secs(300),
            no_role_ttl: Duration::from_secs(60),
            strict_max_age: Duration::from_secs(60),
            capacity: 200_000,
            keep_for_revalidation: Duration::from_secs(600),
            error_backoff: Duration::from_secs(5),
            record_ttl: Duration::from_secs(300),
            session_capacity: 100_000,
            rosters: true,
            shared_rosters: true,
            roster_max_pages: 10,
            heard_lifetimes: None,
            heard_within: Duration::from_secs(3600),
        }
    }
}

/// How old the facts a check rests on may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Consistency {
    /// Within the cache's bounds ([`CacheConfig`]'s `# Staleness`): the default.
    #[default]
    Cached,
    /// Nothing from the cache: the app and the grant are read from the store, a session token is
    /// verified in full, and the GitHub fact is revalidated (a conditional request) first, as
    /// SpiceDB's `fully_consistent` and OpenFGA's `HIGHER_CONSISTENCY` do.
    Fresh,
}

/// How old a cached fact a check accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Age {
    /// Its lifetime.
    Ordinary = 0,
    /// At most `strict_max_age` (`deploy`, `delete`).
    Strict,
    /// None: revalidate first.
    Fresh,
}

impl CacheConfig {
    /// The oldest fact `strict` (deploy/delete) or ordinary checks accept: a positive fact (a
    /// role; a repository found) lives `role_ttl`, a negative one `no_role_ttl`.
    pub(crate) fn max_age(&self, positive: bool, age: Age) -> Duration {
        let ttl = if positive { self.role_ttl } else { self.no_role_ttl };
        match age {
            Age::Ordinary => ttl,
            Age::Strict => ttl.min(self.strict_max_age),
            Age::Fresh => Duration::ZERO,
        }
    }
}

/// Counters, since the authorizer was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Checks answered from the cache.
    pub hits: u64,
    /// Checks that found no entry for their (user, repository) and loaded one: from GitHub, or
    /// from the repository's roster already in memory (the decision says `source: cache` then).
    pub misses: u64,
    /// Conditional requests answered 304 (nothing spent).
    pub revalidated_not_modified: u64,
    /// Conditional requests answered with a new body.
    pub revalidated_modified: u64,
    /// Checks that waited for another check's request on the same key instead of sending one.
    pub coalesced_waits: u64,
    /// Requests that failed (unavailable, credentials, protocol).
    pub upstream_errors: u64,
    /// Entries held now (approximate).
    pub entries: u64,
    /// Messages of invalidations received from other replicas.
    pub invalidations_received: u64,
    /// Times the store's change feed started, dropped or came back, each of which forgot
    /// everything.
    pub resyncs: u64,
    /// Whether the store's change feed is heard now, so that apps and grants are served from
    /// memory (never, for a store without a feed).
    pub feed_listening: bool,
    /// Rosters asked of GitHub, revalidations included ([`CacheConfig::with_rosters`]).
    pub roster_requests: u64,
    /// Rosters refused or too large, whose repositories were asked per user instead.
    pub roster_fallbacks: u64,
    /// Rosters taken from the store, where another replica sharing it had fetched them within
    /// their lifetime, instead of asking GitHub.
    pub rosters_shared: u64,
    /// Repository lookups ("which repository is at these coordinates") taken from the store,
    /// likewise.
    pub repos_shared: u64,
    /// The installation's (or the token's) rate-limit budget, as GitHub's last answer said it:
    /// `None` before the first answer, and in user-token mode, where each user spends their own
    /// ([`Authorizer::github_budget_for`](crate::Authorizer::github_budget_for)).
    pub github_budget: Option<crate::github::GithubBudget>,
    /// GitHub's last answer to the shared credentials (installation or App mode) was a 401:
    /// they are refused, and every check that must ask GitHub fails until an answer says
    /// otherwise.
    pub github_credentials_refused: bool,
}

/// Key of the permission cache: (GitHub user id, repository id), never a joined string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PermKey {
    pub(crate) user: UserId,
    pub(crate) repo: RepoId,
}

/// What a hit needs of a cached fact. The front map holds it inline (no pointer to follow).
#[derive(Debug)]
pub(crate) struct FactCore {
    pub(crate) fact: Fact,
    /// When GitHub last confirmed every fact this entry rests on.
    pub(crate) confirmed_at: Timestamp,
    /// Coordinates the repository identity was verified at.
    pub(crate) coords_fp: u64,
    pub(crate) owner: Option<OwnerId>,
    pub(crate) generation: u64,
    pub(crate) seen_epoch: AtomicU64,
}

impl FactCore {
    /// The entry as it stands now (its epoch read once).
    pub(crate) fn snapshot(&self) -> Self {
        Self {
            fact: self.fact.clone(),
            confirmed_at: self.confirmed_at,
            coords_fp: self.coords_fp,
            owner: self.owner,
            generation: self.generation,
            seen_epoch: AtomicU64::new(self.seen_epoch.load(Ordering::Acquire)),
        }
    }
}

/// One cached fact about a user and a repository, with what revalidating it takes.
#[derive(Debug)]
pub(crate) struct PermEntry {
    pub(crate) core: FactCore,
    pub(crate) perm_etag: Option<String>,
    pub(crate) repo_etag: Option<String>,
    /// Whether building it asked GitHub (not so for one built from a roster in memory).
    pub(crate) asked: bool,
}

/// One cached answer to "which repository is at these coordinates?" (shared by all users).
#[derive(Debug)]
pub(crate) struct RepoEntry {
    /// `None`: nothing at the coordinates.
    pub(crate) found: Option<(RepoId, OwnerId)>,
    /// Nothing at the coordinates because no installation of the App covers them.
    pub(crate) not_installed: bool,
    /// The coordinates answered with a redirect: the repository was renamed since deploy.
    pub(crate) renamed: bool,
    pub(crate) confirmed_at: Timestamp,
    pub(crate) etag: Option<String>,
    pub(crate) seen_epoch: AtomicU64,
}

/// One cached roster of a repository (installation and App mode), shared by all its users.
#[derive(Debug)]
pub(crate) struct RosterEntry {
    pub(crate) repo: RepoId,
    pub(crate) owner: OwnerId,
    /// Every user with a role the policy counts; `None`: the repository is asked per user.
    pub(crate) roles: Option<std::collections::HashMap<UserId, crate::core::policy::RoleGrant>>,
    pub(crate) confirmed_at: Timestamp,
    pub(crate) etag: Option<String>,
    pub(crate) seen_epoch: AtomicU64,
    /// Taken from the store, as another replica fetched it.
    pub(crate) shared: bool,
    /// The roles `etag` stands for: what this replica last fetched itself (a 304 to `etag` says
    /// these are current, whatever the store's copy says).
    pub(crate) etag_roles: Option<std::collections::HashMap<UserId, crate::core::policy::RoleGrant>>,
}

impl RosterEntry {
    /// Whether `inv` may change what the roster says. Any user's invalidation does: the user
    /// may have joined or left it.
    pub(crate) fn matches(&self, inv: &Invalidation) -> bool {
        match inv {
            Invalidation::All | Invalidation::User(_) => true,
            Invalidation::UserOnRepo(_, r) | Invalidation::Repo(r) => *r == self.repo,
            Invalidation::UserInOwner(_, o) | Invalidation::Owner(o) => *o == self.owner,
        }
    }
}

const LOG_CAPACITY: usize = 1024;

/// The invalidation epoch and the recent invalidations.
#[derive(Debug, Default)]
pub(crate) struct Epochs {
    current: AtomicU64,
    log: RwLock<VecDeque<(u64, Invalidation)>>,
}

impl Epochs {
    #[inline]
    pub(crate) fn current(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }

    pub(crate) fn record(&self, inv: Invalidation) {
        let mut log = self.log.write();
        let e = self.current.load(Ordering::Acquire) + 1;
        if log.len() == LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back((e, inv));
        self.current.store(e, Ordering::Release);
    }

    /// Whether no invalidation since `seen` matches. On success `seen` moves forward, so the
    /// log is scanned once per entry per invalidation, not per hit.
    pub(crate) fn still_valid(&self, seen: &AtomicU64, matches: impl Fn(&Invalidation) -> bool) -> bool {
        let s = seen.load(Ordering::Acquire);
        if s == self.current() {
            return true;
        }
        let log = self.log.read();
        let Some(&(oldest, _)) = log.front() else { return true };
        if oldest > s + 1 {
            // Invalidations after `s` have left the log: assume one of them matched.
            return false;
        }
        let mut last = s;
        for (e, inv) in log.iter().filter(|(e, _)| *e > s) {
            if matches(inv) {
                return false;
            }
            last = *e;
        }
        seen.fetch_max(last, Ordering::AcqRel);
        true
    }
}

impl FactCore {
    pub(crate) fn matches(&self, key: &PermKey, inv: &Invalidation) -> bool {
        match inv {
            Invalidation::User(u) => *u == key.user,
            Invalidation::UserOnRepo(u, r) => *u == key.user && *r == key.repo,
            Invalidation::UserInOwner(u, o) => *u == key.user && self.owner.is_none_or(|own| own == *o),
            Invalidation::Repo(r) => *r == key.repo,
            // Without a known owner, an entry cannot be shown not to belong to the owner.
            Invalidation::Owner(o) => self.owner.is_none_or(|own| own == *o),
            Invalidation::All => true,
        }
    }
}

impl RepoEntry {
    pub(crate) fn matches(&self, inv: &Invalidation) -> bool {
        match (inv, self.found) {
            // Which repository is at some coordinates is the same for every user.
            (Invalidation::User(_) | Invalidation::UserOnRepo(..) | Invalidation::UserInOwner(..), _) => false,
            (Invalidation::Repo(r), Some((id, _))) => *r == id,
            (Invalidation::Owner(o), Some((_, own))) => *o == own,
            // Nothing was found: any repository event may be the one that created it.
            (Invalidation::Repo(_) | Invalidation::Owner(_), None) => true,
            (Invalidation::All, _) => true,
        }
    }
}

const STRIPES: usize = 64;

/// A hit counter on its own cache lines (128 bytes, so that the adjacent-line prefetcher does not
/// pair two stripes either).
#[derive(Debug, Default)]
struct Stripe(crossbeam_utils::CachePadded<AtomicU64>);

static NEXT_STRIPE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// The thread's stripe, chosen at its first hit (`STRIPES` until then).
    static STRIPE: std::cell::Cell<usize> = const { std::cell::Cell::new(STRIPES) };
}

/// The calling thread's stripe.
#[inline]
fn stripe() -> usize {
    STRIPE.with(|s| {
        let mut stripe = s.get();
        if stripe == STRIPES {
            stripe = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
            s.set(stripe);
        }
        stripe
    })
}

/// The read side of the permission cache: what hits are served from.
///
/// A lock-free map (`papaya`): a read takes no lock and executes no fence, so concurrent hits
/// do not contend and successive hits overlap their memory accesses. Hits are counted per thread
/// stripe with a plain load and store for the same reason. A thread takes the next of the 64
/// stripes at its first hit, so no two of the first 64 threads to hit share one; later threads
/// share stripes with earlier ones, and two threads hitting at once on one stripe may lose an
/// increment: the count is exact until a 65th thread hits, and may undercount after.
pub(crate) struct FactMap {
    map: papaya::HashMap<PermKey, FactCore, FxBuildHasher>,
    /// Inline copies of the map's facts, for the first look.
    table: hits::HitTable,
    hits: Box<[Stripe]>,
}

impl std::fmt::Debug for FactMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FactMap").field("entries", &self.map.len()).field("hits", &self.hits()).finish()
    }
}

impl FactMap {
    /// A front map expected to hold up to `capacity` entries.
    pub(crate) fn new(capacity: u64) -> Self {
        // Blocking resizes: an incremental resize finishes only as later writes arrive, and until
        // then every read searches two tables. Inserts happen on misses, off the hot path.
        let initial = usize::try_from(capacity.min(16_384)).unwrap_or(16_384);
        Self {
            map: papaya::HashMap::builder()
                .hasher(FxBuildHasher)
                .capacity(initial)
                .resize_mode(papaya::ResizeMode::Blocking)
                .build(),
            table: hits::HitTable::new(capacity),
            hits: (0..STRIPES).map(|_| Stripe::default()).collect(),
        }
    }

    /// Runs `f` on the inline copy of the key's fact, if the hit table holds one; counts a hit
    /// when `f` answers.
    #[inline]
    pub(crate) fn with_inline<R>(&self, key: &PermKey, f: impl FnOnce(&Hit) -> Option<R>) -> Option<R> {
        let answer = self.table.get(key).as_ref().and_then(f);
        if answer.is_some() {
            self.count_hit();
        }
        answer
    }

    /// Runs `f` on the entry; counts a hit when `f` answers. An answered entry whose fact fits
    /// a word is copied into the hit table, stamped with `epoch` (read before `f` judged it).
    ///
    /// The copy never outlives the entry: whoever replaces an entry or evicts it changes the
    /// map, then empties the key's slots ([`FactMap::insert`], [`FactMap::remove_generation`]); a
    /// copy is written, then confirmed against the map ([`seqlock::Written::confirm`]): the map
    /// is read again, and the copy emptied (unless already overwritten) if the entry is no longer
    /// the one copied. With a sequentially consistent fence between the two steps on each
    /// side, one of them sees the other. An invalidation empties no slot and removes no entry:
    /// it moves the epoch, a slot is believed only at the epoch it was written at, and an entry
    /// only if the epoch log shows nothing covering it since it was checked.
    pub(crate) fn with<R>(&self, key: &PermKey, epoch: u64, f: impl FnOnce(&FactCore) -> Option<R>) -> Option<R> {
        let map = self.map.pin();
        let entry = map.get(key)?;
        let answer = f(entry)?;
        self.count_hit();
        if let (Some(fact), Ok(epoch)) = (InlineFact::of(&entry.fact), u32::try_from(epoch)) {
            let hit = Hit { coords_fp: entry.coords_fp, confirmed_at: entry.confirmed_at, epoch, fact };
            if let Some(written) = self.table.put(key, hit) {
                written.confirm(|| map.get(key).map(|e| e.generation) == Some(entry.generation));
            }
        }
        Some(answer)
    }

    #[inline]
    fn count_hit(&self) {
        let stripe = &self.hits[stripe()].0;
        stripe.store(stripe.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Puts `entry` in the map, and empties the key's slots in the hit table, which copied the
    /// entry it replaces.
    pub(crate) fn insert(&self, key: PermKey, entry: FactCore) {
        self.map.pin().insert(key, entry);
        fence(Ordering::SeqCst);
        self.table.remove(&key);
    }

    /// Removes the entry if it is still generation `generation` (a newer one stays), then the
    /// key's inline copy whatever it holds.
    pub(crate) fn remove_generation(&self, key: &PermKey, generation: u64) {
        let _ = self.map.pin().remove_if(key, |_, e| e.generation == generation);
        fence(Ordering::SeqCst);
        self.table.remove(key);
    }

    pub(crate) fn hits(&self) -> u64 {
        self.hits.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// A key's failure, remembered so that it is not retried before `until`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) until: Timestamp,
}

/// Counters that are not per shard.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) misses: AtomicU64,
    pub(crate) not_modified: AtomicU64,
    pub(crate) modified: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) upstream_errors: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) resyncs: AtomicU64,
    /// Rosters asked of GitHub (a revalidation included).
    pub(crate) roster_requests: AtomicU64,
    /// Rosters GitHub refused or that were too large: their repositories are asked per user.
    pub(crate) roster_fallbacks: AtomicU64,
    pub(crate) rosters_shared: AtomicU64,
    pub(crate) repos_shared: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Test support for a copy racing a change: two threads `copy` into a table while round after
/// round `change` replaces what they copy; after each round, with the copiers held still,
/// `stale` says whether the table kept what the round replaced. How many rounds it did.
#[cfg(test)]
fn rounds_left_stale(
    rounds: u64,
    copy: impl Fn() + Sync,
    mut change: impl FnMut(u64),
    stale: impl Fn(u64) -> bool,
) -> u64 {
    use std::sync::atomic::AtomicBool;

    const COPIERS: u64 = 2;
    // `paused`: the copiers are asked to stop; `idle`: how many have.
    let (paused, idle, stop) = (AtomicBool::new(false), AtomicU64::new(0), AtomicBool::new(false));
    std::thread::scope(|s| {
        for _ in 0..COPIERS {
            s.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    if paused.load(Ordering::SeqCst) {
                        idle.fetch_add(1, Ordering::SeqCst);
                        while paused.load(Ordering::SeqCst) {
                            std::hint::spin_loop();
                        }
                        idle.fetch_sub(1, Ordering::SeqCst);
                    }
                    copy();
                }
            });
        }
        let mut count = 0;
        for round in 1..=rounds {
            change(round);
            paused.store(true, Ordering::SeqCst);
            while idle.load(Ordering::SeqCst) != COPIERS {
                std::hint::spin_loop();
            }
            count += u64::from(stale(round));
            paused.store(false, Ordering::SeqCst);
        }
        stop.store(true, Ordering::SeqCst);
        count
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_log_rejects_entries_older_than_a_matching_invalidation() {
        let epochs = Epochs::default();
        let seen = AtomicU64::new(epochs.current());
        epochs.record(Invalidation::User(UserId(2)));
        assert!(epochs.still_valid(&seen, |inv| *inv == Invalidation::User(UserId(1))));
        assert_eq!(seen.load(Ordering::Relaxed), 1, "a clean scan moves the entry forward");
        epochs.record(Invalidation::User(UserId(1)));
        assert!(!epochs.still_valid(&seen, |inv| *inv == Invalidation::User(UserId(1))));
    }

    /// Readers copy the entry into the hit table while it is replaced: once the replacement is
    /// done and the readers are still, the table holds the new entry or nothing, never the old.
    #[test]
    fn a_copy_racing_a_replacement_does_not_outlive_it() {
        let map = FactMap::new(1024);
        let key = PermKey { user: UserId(1), repo: RepoId(2) };
        let core = |generation: u64| FactCore {
            fact: Fact::Role(None),
            confirmed_at: Timestamp(generation),
            coords_fp: 7,
            owner: None,
            generation,
            seen_epoch: AtomicU64::new(0),
        };
        map.insert(key, core(0));
        let stale = rounds_left_stale(
            20_000,
            || {
                map.with(&key, 0, |_| Some(()));
            },
            |generation| {
                map.insert(key, core(generation));
                // What moka's eviction listener does for the entry replaced.
                map.remove_generation(&key, generation - 1);
            },
            |generation| map.table.get(&key).is_some_and(|hit| hit.confirmed_at != Timestamp(generation)),
        );
        assert_eq!(stale, 0, "replacements after which the table still held the entry replaced");
    }

    #[test]
    fn epoch_log_overflow_fails_closed() {
        let epochs = Epochs::default();
        let seen = AtomicU64::new(0);
        for i in 0..(LOG_CAPACITY as u64 + 5) {
            epochs.record(Invalidation::Repo(RepoId(10_000 + i)));
        }
        assert!(!epochs.still_valid(&seen, |_| false));
    }
}
