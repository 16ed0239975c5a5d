//! Apps, viewer grants and support windows, served from memory while the store's change feed is
//! heard.
//!
//! # Staleness
//!
//! An app record or a grant is served only while the authorizer hears its store's change feed
//! ([`FeedEvent::Listening`](crate::store::FeedEvent::Listening) and no
//! [`Lost`](crate::store::FeedEvent::Lost) since), and for at most the record lifetime
//! ([`CacheConfig::record_ttl`](crate::CacheConfig::record_ttl), 5 minutes by default) after
//! it was read from the store. A change made through this authorizer is applied here before the
//! call that made it returns; a change made elsewhere is applied when the feed brings it (Postgres
//! `NOTIFY`: milliseconds; the SQLite change log: within 25 ms, its polling interval). While the
//! feed is down nothing here is served: every check reads the store.
//!
//! # Concurrent calls
//!
//! A load that read the store before a change was applied never leaves its result behind, nor
//! lets it be served for a moment: every change bumps an epoch, and a load inserts its entry
//! unconfirmed, removes it if it finds the epoch moved, and confirms it (so that it is served)
//! only otherwise. A grant, or an app's support windows, is remembered with the stamp of the app
//! entry it was checked under, taken before the store was read, so forgetting the app forgets
//! them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rustc_hash::FxBuildHasher;

use std::sync::Arc;

use crate::core::ids::{App, AppId, GrantId};
use crate::core::support::SupportWindow;
use crate::core::time::Timestamp;

/// An app record as it was read from the store.
#[derive(Debug)]
struct AppEntry {
    app: App,
    /// Unique to this load: grants remembered under it die with it.
    stamp: u64,
    /// When the store was read.
    loaded_at: Timestamp,
    /// Set once the load knows no change was applied while it inserted: only then is it served.
    confirmed: AtomicBool,
}

/// The cache of apps and grants.
pub(crate) struct Records {
    /// Whether the feed is heard: nothing is served otherwise.
    live: AtomicBool,
    /// Bumped by every change applied, so that a load can tell it raced one.
    epoch: AtomicU64,
    stamps: AtomicU64,
    /// Keyed by app id with a hash seeded at random per authorizer (app ids are chosen by whoever
    /// deploys, so they must not be able to aim them at one another).
    apps: papaya::HashMap<AppId, AppEntry, foldhash::fast::RandomState>,
    /// A live grant, with the stamp of the app entry it was checked under.
    grants: papaya::HashMap<GrantId, u64, FxBuildHasher>,
    /// An app's support windows, with the stamp of the app entry they were read under.
    windows: papaya::HashMap<AppId, (u64, Arc<[SupportWindow]>), foldhash::fast::RandomState>,
    capacity: usize,
    ttl: std::time::Duration,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("live", &self.is_live())
            .field("apps", &self.apps.len())
            .field("grants", &self.grants.len())
            .field("windows", &self.windows.len())
            .finish()
    }
}

impl Records {
    /// A cache of at most `capacity` apps and `capacity` grants, each served `ttl` at most.
    pub(crate) fn new(capacity: u64, ttl: std::time::Duration) -> Self {
        Self {
            live: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            stamps: AtomicU64::new(1),
            apps: papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .resize_mode(papaya::ResizeMode::Blocking)
                .build(),
            grants: papaya::HashMap::builder().hasher(FxBuildHasher).resize_mode(papaya::ResizeMode::Blocking).build(),
            windows: papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .resize_mode(papaya::ResizeMode::Blocking)
                .build(),
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX).max(1),
            ttl,
        }
    }

    /// Whether the feed is heard (and so whether anything here is served).
    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Runs `f` on the app and its entry's stamp, if it is cached and may be served at `now`.
    pub(crate) fn with_app<R>(&self, id: &AppId, now: Timestamp, f: impl FnOnce(&App, u64) -> R) -> Option<R> {
        if !self.is_live() {
            return None;
        }
        let apps = self.apps.pin();
        let entry = apps.get(id)?;
        let servable = entry.confirmed.load(Ordering::Acquire) && now.since(entry.loaded_at) < self.ttl;
        servable.then(|| f(&entry.app, entry.stamp))
    }

    /// Whether `grant` was found live under the app entry stamped `stamp`.
    pub(crate) fn grant_live(&self, grant: GrantId, stamp: u64) -> bool {
        self.grants.pin().get(&grant) == Some(&stamp)
    }

    /// The app's support windows, if they were read under the app entry stamped `stamp`.
    pub(crate) fn windows(&self, id: &AppId, stamp: u64) -> Option<Arc<[SupportWindow]>> {
        let windows = self.windows.pin();
        windows.get(id).filter(|(s, _)| *s == stamp).map(|(_, w)| w.clone())
    }

    /// Remembers the app's support windows, read under the app entry stamped `stamp` (taken
    /// before the store was read).
    pub(crate) fn remember_windows(&self, id: &AppId, stamp: u64, windows: Arc<[SupportWindow]>) {
        let cached = self.windows.pin();
        if cached.len() >= self.capacity {
            cached.clear();
        }
        cached.insert(id.clone(), (stamp, windows));
    }

    /// The epoch to pass to [`Records::remember_app`], read before the store is.
    pub(crate) fn begin(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Remembers an app read from the store after [`Records::begin`] returned `started`, unless a
    /// change was applied since; returns its stamp if it stays.
    pub(crate) fn remember_app(&self, app: App, started: u64, now: Timestamp) -> Option<u64> {
        if !self.is_live() || self.epoch.load(Ordering::SeqCst) != started {
            return None;
        }
        let apps = self.apps.pin();
        if apps.len() >= self.capacity {
            apps.clear();
            self.grants.pin().clear();
            self.windows.pin().clear();
        }
        let stamp = self.stamps.fetch_add(1, Ordering::Relaxed);
        let id = app.id().clone();
        apps.insert(id.clone(), AppEntry { app, stamp, loaded_at: now, confirmed: AtomicBool::new(false) });
        if self.epoch.load(Ordering::SeqCst) != started {
            // A change was applied while this was inserted: it may have missed the insert.
            apps.remove_if(&id, |_, e| e.stamp == stamp).ok();
            return None;
        }
        // Confirmed only now, so that nobody is served what a change applied meanwhile forgot.
        // A change applied after the check above removes the entry itself.
        if let Some(e) = apps.get(&id).filter(|e| e.stamp == stamp) {
            e.confirmed.store(true, Ordering::Release);
        }
        Some(stamp)
    }

    /// Remembers that `grant` is live under the app entry stamped `stamp` (taken before the
    /// store was read).
    pub(crate) fn remember_grant(&self, grant: GrantId, stamp: u64) {
        let grants = self.grants.pin();
        if grants.len() >= self.capacity {
            grants.clear();
        }
        grants.insert(grant, stamp);
    }

    /// Forgets the app and, with it, its grants and support windows.
    pub(crate) fn forget_app(&self, id: &AppId) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.apps.pin().remove(id);
        self.windows.pin().remove(id);
    }

    /// Forgets every app and grant.
    pub(crate) fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.apps.pin().clear();
        self.grants.pin().clear();
        self.windows.pin().clear();
    }

    /// The feed is heard from now on (`true`), or no longer (`false`); either way, what was
    /// cached may be stale and is forgotten.
    pub(crate) fn set_live(&self, live: bool) {
        if !live {
            self.live.store(false, Ordering::SeqCst);
        }
        self.forget_all();
        if live {
            self.live.store(true, Ordering::SeqCst);
        }
    }
}
