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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};

use rustc_hash::FxBuildHasher;

use std::sync::Arc;

use crate::core::ids::{App, AppId, AppView, GrantId};
use crate::core::support::SupportWindow;
use crate::core::time::Timestamp;

use super::apps::AppTable;
use super::middle;

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
    grants: papaya::HashMap<GrantId, (u64, Timestamp), FxBuildHasher>,
    /// An app's support windows, with the stamp of the app entry they were read under.
    windows: papaya::HashMap<AppId, (u64, Timestamp, Arc<[SupportWindow]>), foldhash::fast::RandomState>,
    /// Inline copies of the apps served, for a GitHub user's check by id.
    inline: AppTable,
    capacity: usize,
    /// The record lifetime in milliseconds, rounded up (a whole-millisecond age is within it
    /// exactly when it is within the lifetime given).
    ttl_ms: u64,
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
            inline: AppTable::new(usize::try_from(capacity).unwrap_or(usize::MAX)),
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX).max(1),
            ttl_ms: u64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX),
        }
    }

    /// Whether the feed is heard (and so whether anything here is served).
    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Runs `f` on the app and its entry's stamp, if it is cached and may be served at `now`; the
    /// app is copied into the app table.
    pub(crate) fn with_app<R>(&self, id: &AppId, now: Timestamp, f: impl FnOnce(&App, u64) -> R) -> Option<R> {
        if !self.is_live() {
            return None;
        }
        // Read before the map: a change applied after this moves the epoch past the copy's.
        let epoch = self.epoch.load(Ordering::SeqCst);
        let apps = self.apps.pin();
        let entry = apps.get(id)?;
        let servable = entry.confirmed.load(Ordering::Acquire) && now.millis_since(entry.loaded_at) < self.ttl_ms;
        if servable {
            // Whoever replaces the entry changes the map, then empties the slot (`remember_app`);
            // this writes the slot, then reads the map again: one of the two sees the other.
            if let Some(written) = self.inline.put(&entry.app, epoch, entry.loaded_at) {
                written.confirm(|| apps.get(id).map(|e| e.stamp) == Some(entry.stamp));
            }
        }
        servable.then(|| f(&entry.app, entry.stamp))
    }

    /// What a GitHub user's check needs of the app, from the app table: no lock, no guard, no
    /// read-modify-write. `None` when the table cannot answer; [`Records::with_app`] may.
    #[inline]
    pub(crate) fn app_view(&self, id: &AppId, now: Timestamp) -> Option<AppView> {
        if !self.is_live() {
            return None;
        }
        self.inline.get(id, self.epoch.load(Ordering::SeqCst), now, self.ttl_ms)
    }

    /// When `grant` was read live from the store, if it was under the app entry stamped `stamp`.
    #[inline]
    pub(crate) fn grant_live(&self, grant: GrantId, stamp: u64) -> Option<Timestamp> {
        self.grants.pin().get(&grant).filter(|(s, _)| *s == stamp).map(|(_, read_at)| *read_at)
    }

    /// The app's support windows and when they were read, if they were read under the app entry
    /// stamped `stamp`.
    pub(crate) fn windows(&self, id: &AppId, stamp: u64) -> Option<(Arc<[SupportWindow]>, Timestamp)> {
        let windows = self.windows.pin();
        windows.get(id).filter(|(s, _, _)| *s == stamp).map(|(_, read_at, w)| (w.clone(), *read_at))
    }

    /// Remembers the app's support windows, read at `read_at` under the app entry stamped `stamp`
    /// (taken before the store was read).
    pub(crate) fn remember_windows(&self, id: &AppId, stamp: u64, read_at: Timestamp, windows: Arc<[SupportWindow]>) {
        let cached = self.windows.pin();
        if cached.len() >= self.capacity {
            self.make_room_for_grants();
        }
        cached.insert(id.clone(), (stamp, read_at, windows));
    }

    /// The epoch to pass to [`Records::remember_app`], read before the store is.
    pub(crate) fn begin(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Remembers an app read from the store after [`Records::begin`] returned `started`, unless a
    /// change was applied since; returns its stamp if it stays.
    pub(crate) fn remember_app(&self, app: App, started: u64, now: Timestamp) -> Option<u64> {
        if !self.is_live() {
            return None;
        }
        if self.epoch.load(Ordering::SeqCst) != started {
            // A change was applied since the read began, so this read is not kept; nor is the
            // entry (and its copy) that it would have replaced, which may be older than it.
            self.apps.pin().remove(app.id());
            fence(Ordering::SeqCst);
            self.inline.remove(app.id());
            return None;
        }
        let apps = self.apps.pin();
        if apps.len() >= self.capacity {
            self.make_room(now);
        }
        let stamp = self.stamps.fetch_add(1, Ordering::Relaxed);
        let id = app.id().clone();
        apps.insert(id.clone(), AppEntry { app, stamp, loaded_at: now, confirmed: AtomicBool::new(false) });
        // Pairs with the fence in `forget_app` and `forget_all` (one of the two sides sees the
        // other's write), and in `with_app` (a copy of the entry this replaced is emptied).
        fence(Ordering::SeqCst);
        self.inline.remove(&id);
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

    /// Remembers that `grant` was read live at `read_at`, under the app entry stamped `stamp`
    /// (taken before the store was read).
    pub(crate) fn remember_grant(&self, grant: GrantId, stamp: u64, read_at: Timestamp) {
        let grants = self.grants.pin();
        if grants.len() >= self.capacity {
            self.make_room_for_grants();
        }
        grants.insert(grant, (stamp, read_at));
    }

    /// Makes room for apps, never by forgetting them all at once (a full cache must not turn
    /// into a burst of store reads): what may no longer be served goes first (read more than
    /// the record lifetime before `now`), then, if that is not enough, the older half of the
    /// rest (by load), and with them the grants and windows remembered under them. An app
    /// dropped here is read from the store again at its next check; nothing it said changes.
    fn make_room(&self, now: Timestamp) {
        let apps = self.apps.pin();
        apps.retain(|_, e| now.millis_since(e.loaded_at) < self.ttl_ms);
        if apps.len() >= self.capacity {
            let middle = middle(apps.iter().map(|(_, e)| e.stamp));
            apps.retain(|_, e| e.stamp > middle);
        }
        self.make_room_for_grants();
    }

    /// Drops the grants and windows remembered under app entries no longer held; if the grants
    /// or windows still fill the cache, the older half of them (by the stamp they were
    /// remembered under).
    fn make_room_for_grants(&self) {
        let held: std::collections::HashSet<u64> = self.apps.pin().iter().map(|(_, e)| e.stamp).collect();
        let (grants, windows) = (self.grants.pin(), self.windows.pin());
        grants.retain(|_, (stamp, _)| held.contains(stamp));
        windows.retain(|_, (stamp, _, _)| held.contains(stamp));
        if grants.len() >= self.capacity {
            let middle = middle(grants.iter().map(|(_, (stamp, _))| *stamp));
            grants.retain(|_, (stamp, _)| *stamp > middle);
        }
        if windows.len() >= self.capacity {
            let middle = middle(windows.iter().map(|(_, (stamp, _, _))| *stamp));
            windows.retain(|_, (stamp, _, _)| *stamp > middle);
        }
    }

    /// Forgets the app and, with it, its grants and support windows.
    pub(crate) fn forget_app(&self, id: &AppId) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.apps.pin().remove(id);
        self.windows.pin().remove(id);
        // Again once the entry is gone: a copy made from it, at whatever epoch it read, is now
        // behind.
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Forgets every app and grant.
    pub(crate) fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.apps.pin().clear();
        self.grants.pin().clear();
        self.windows.pin().clear();
        // As in `forget_app`: no copy survives.
        self.epoch.fetch_add(1, Ordering::SeqCst);
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
        crate::telemetry::feed_listening(live);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::RepoId;
    use crate::core::policy::Visibility;

    fn live_with(app: &App) -> Records {
        let records = Records::new(1024, std::time::Duration::from_secs(60));
        records.set_live(true);
        let started = records.begin();
        assert!(records.remember_app(app.clone(), started, Timestamp(0)).is_some());
        records
    }

    fn dash() -> App {
        App::new(AppId("dash".into()), "acme/dashboard".parse().unwrap(), RepoId(7), Visibility::Private)
    }

    #[test]
    fn the_app_table_answers_once_the_map_served_the_app_and_never_while_deaf() {
        let app = dash();
        let records = live_with(&app);
        assert_eq!(records.app_view(app.id(), Timestamp(1)), None, "not copied before the map served it");
        assert!(records.with_app(app.id(), Timestamp(1), |_, _| ()).is_some());
        assert_eq!(records.app_view(app.id(), Timestamp(1)), Some(app.view()));
        assert_eq!(records.app_view(app.id(), Timestamp(60_000)), None, "past the record lifetime");
        records.set_live(false);
        assert_eq!(records.app_view(app.id(), Timestamp(1)), None);
        records.set_live(true);
        assert_eq!(
            records.app_view(app.id(), Timestamp(1)),
            None,
            "what was copied before the feed was lost is behind"
        );
    }

    /// A full cache drops the older half of its apps, not all of them: the most recent reads
    /// are still served, with their grants.
    #[test]
    fn a_full_cache_keeps_its_newest_reads() {
        let records = Records::new(8, std::time::Duration::from_secs(60));
        records.set_live(true);
        let app = |n: usize| {
            App::new(AppId(format!("a{n}")), "acme/dashboard".parse().unwrap(), RepoId(n as u64), Visibility::Private)
        };
        let mut stamps = Vec::new();
        for n in 0..9 {
            let started = records.begin();
            stamps.push(records.remember_app(app(n), started, Timestamp(0)).unwrap());
            records.remember_grant(GrantId(n as u64), stamps[n], Timestamp(0));
        }
        let served = |n: usize| records.with_app(app(n).id(), Timestamp(1), |_, _| ()).is_some();
        assert!((5..9).all(served), "the newest reads stay");
        assert!(!served(0), "the oldest went");
        assert!(
            records.grant_live(GrantId(8), stamps[8]).is_some() && records.grant_live(GrantId(5), stamps[5]).is_some()
        );
        assert!(records.grant_live(GrantId(0), stamps[0]).is_none(), "with its app");
    }

    /// An app read from the store anew (a reload, or a `Fresh` check) replaces the copy at once,
    /// at the same epoch: the table never serves the older read.
    #[test]
    fn an_app_read_anew_empties_its_copy() {
        let app = dash();
        let records = live_with(&app);
        assert!(records.with_app(app.id(), Timestamp(1), |_, _| ()).is_some());
        let public = App::new(app.id().clone(), app.coords().clone(), app.repo_id(), Visibility::Public);
        let started = records.begin();
        assert!(records.remember_app(public.clone(), started, Timestamp(2)).is_some());
        assert_eq!(records.app_view(app.id(), Timestamp(3)), None, "the older copy is gone");
        assert!(records.with_app(app.id(), Timestamp(3), |_, _| ()).is_some());
        assert_eq!(records.app_view(app.id(), Timestamp(3)), Some(public.view()));
    }

    /// Readers copy the app into the table while it is read anew, again and again: once a
    /// reload is done and the readers are still, the table holds the newest read or nothing.
    #[test]
    fn a_copy_racing_a_reload_does_not_outlive_it() {
        let first = dash();
        let records = live_with(&first);
        let read = |n| App::new(first.id().clone(), first.coords().clone(), RepoId(n), Visibility::Private);
        let stale = super::super::rounds_left_stale(
            20_000,
            || {
                records.with_app(first.id(), Timestamp(0), |_, _| ());
            },
            |n| {
                let started = records.begin();
                assert!(records.remember_app(read(n), started, Timestamp(0)).is_some());
            },
            |n| records.app_view(first.id(), Timestamp(0)).is_some_and(|v| v.repo_id != RepoId(n)),
        );
        assert_eq!(stale, 0, "reloads after which the table still held an older read");
    }

    /// A read that raced a change (to any app) is not kept, and neither is the older entry it
    /// would have replaced, nor that entry's copy made after the change.
    #[test]
    fn a_read_that_raced_a_change_leaves_no_older_read_behind() {
        let app = dash();
        let records = live_with(&app);
        let started = records.begin();
        records.forget_app(&AppId("other".into()));
        assert!(records.with_app(app.id(), Timestamp(1), |_, _| ()).is_some());
        assert_eq!(records.app_view(app.id(), Timestamp(1)), Some(app.view()), "copied after the change");
        let public = App::new(app.id().clone(), app.coords().clone(), app.repo_id(), Visibility::Public);
        assert_eq!(records.remember_app(public, started, Timestamp(2)), None);
        assert_eq!(records.app_view(app.id(), Timestamp(3)), None);
        assert!(records.with_app(app.id(), Timestamp(3), |_, _| ()).is_none(), "read the store again");
    }

    /// A copy made while a change was being applied (after the change moved the epoch, before it
    /// removed the entry from the map) is behind once the change is applied.
    #[test]
    fn a_copy_made_while_an_app_is_forgotten_does_not_outlive_it() {
        let app = dash();
        let records = live_with(&app);
        records.forget_app(&AppId("other".into()));
        let mid_change = records.epoch.load(Ordering::SeqCst) + 1;
        // Left unconfirmed on purpose: the epoch alone must keep this copy from being served.
        if let Some(written) = records.inline.put(&app, mid_change, Timestamp(0)) {
            written.unconfirmed();
        }
        records.forget_app(app.id());
        assert_eq!(records.app_view(app.id(), Timestamp(1)), None);
        assert!(records.with_app(app.id(), Timestamp(1), |_, _| ()).is_none());
    }
}
