//! The app table: inline copies of what a GitHub user's check by app id needs of the app (its
//! repository id, the coordinates' fingerprint, its visibility), read without a lock, a guard
//! or an atomic read-modify-write.
//!
//! The records' map stays the source: a check that finds no usable slot reads the map, and the
//! entry it serves is copied here. A slot is one cache line, chosen by a hash of the id (seeded
//! at random per table), and holds the id itself (up to 24 bytes, compared whole: one id is
//! never taken for another, whatever the hash does), the records' change epoch it was copied at
//! and when the record was read from the store. It is read under a sequence lock, as the hit
//! table's slots are ([`super::hits`]). Ids longer than 24 bytes are never copied here: they are
//! served from the map, slower, never wrong.
//!
//! # Staleness
//!
//! No more than the records' map: the caller serves a slot only while the store's feed is heard;
//! a slot is believed only at the change epoch it was copied at (a change applied to any app or
//! grant, or the feed lost or found, moves the epoch) and within the record lifetime
//! (`record_ttl`, 5 minutes by default) counted from the store read; and an app read from the
//! store anew empties its slot (a copy written while that happens is emptied by its writer, which
//! looks at the map again). An app the map let go to stay within its capacity may still be
//! served from here, as fresh as it was, until its lifetime ends or the epoch moves.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::ids::{App, AppId, AppView, RepoId};
use crate::core::policy::Visibility;
use crate::core::time::Timestamp;

use super::seqlock::{Slot, Written};

/// Words per slot, and their places (the meta word first, where the shared sequence lock keeps
/// it).
const WORDS: usize = 8;
const EPOCH: usize = 1;
const REPO: usize = 2;
const COORDS: usize = 3;
const LOADED: usize = 4;
const ID: usize = 5;
/// The longest id a slot holds, in bytes.
const ID_BYTES: usize = 24;

/// The meta word: the id's length in bits 0..5 (0: an empty slot), bit 5 set for a public app,
/// the version in bits 24..64 (odd while the slot is being written).
const LEN_MASK: u64 = 0x1f;
const PUBLIC: u64 = 1 << 5;

/// One slot: one cache line.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Line([AtomicU64; WORDS]);

/// An id as a slot holds it: its length, and its bytes (zero-padded) in three words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packed {
    len: u64,
    words: [u64; 3],
}

impl Packed {
    /// The id as a slot holds it, if it fits.
    #[inline]
    fn of(id: &AppId) -> Option<Self> {
        let bytes = id.0.as_bytes();
        if bytes.is_empty() || bytes.len() > ID_BYTES {
            return None;
        }
        let mut padded = [0u8; ID_BYTES];
        padded[..bytes.len()].copy_from_slice(bytes);
        let mut words = [0u64; 3];
        for (word, chunk) in words.iter_mut().zip(padded.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *word = u64::from_le_bytes(b);
        }
        Some(Self { len: bytes.len() as u64, words })
    }
}

/// The table: a power of two of one-line slots, one app each.
pub(crate) struct AppTable {
    slots: Box<[Line]>,
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for AppTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppTable").field("slots", &self.slots.len()).finish()
    }
}

impl AppTable {
    /// A table with about one slot per app of a cache of `capacity` (at least 64 slots, at most
    /// 2^14: 1 MiB).
    pub(crate) fn new(capacity: usize) -> Self {
        let slots = capacity.clamp(64, 1 << 14).next_power_of_two();
        Self { slots: (0..slots).map(|_| Line::default()).collect(), hasher: foldhash::fast::RandomState::default() }
    }

    #[inline]
    fn slot(&self, id: &AppId) -> &[AtomicU64] {
        let mask = (self.slots.len() - 1) as u64;
        let i = usize::try_from(self.hasher.hash_one(id.0.as_str()) & mask).unwrap_or(0);
        &self.slots[i].0
    }

    /// The app with this id, if its slot holds it, copied at change epoch `epoch` (the records'
    /// epoch now) and read from the store less than `ttl_ms` before `now`.
    #[inline]
    pub(crate) fn get(&self, id: &AppId, epoch: u64, now: Timestamp, ttl_ms: u64) -> Option<AppView> {
        let packed = Packed::of(id)?;
        let copy = read(self.slot(id))?;
        let believed = copy.id == packed && copy.epoch == epoch && now.millis_since(copy.loaded_at) < ttl_ms;
        believed.then_some(copy.view)
    }

    /// Copies `app`, read from the store at `loaded_at`, into its slot, stamped with `epoch` (the
    /// records' epoch read before the app was looked up), unless the slot holds that already. A
    /// slot being written by another thread is left alone, and so is an app whose id does not
    /// fit.
    #[must_use = "a copy must be confirmed against its map (`Written::confirm`)"]
    pub(crate) fn put(&self, app: &App, epoch: u64, loaded_at: Timestamp) -> Option<Written<'_>> {
        let packed = Packed::of(app.id())?;
        let (w, view) = (self.slot(app.id()), app.view());
        let copy = Held { id: packed, epoch, view, loaded_at };
        if read(w) == Some(copy) {
            return None;
        }
        let public = if view.visibility == Visibility::Public { PUBLIC } else { 0 };
        Slot::new(w).write(public | packed.len, |w| {
            w[EPOCH].store(epoch, Ordering::Relaxed);
            w[REPO].store(view.repo_id.0, Ordering::Relaxed);
            w[COORDS].store(view.coords_fp, Ordering::Relaxed);
            w[LOADED].store(loaded_at.0, Ordering::Relaxed);
            for (i, word) in packed.words.iter().enumerate() {
                w[ID + i].store(*word, Ordering::Relaxed);
            }
        })
    }

    /// Empties the slot that holds the app with this id, if any (see [`Slot::clear`] for a slot
    /// being written meanwhile).
    pub(crate) fn remove(&self, id: &AppId) {
        let Some(packed) = Packed::of(id) else { return };
        Slot::new(self.slot(id)).clear(|meta, w| meta & LEN_MASK == packed.len && id_words(w) == packed.words);
    }
}

/// What a slot holds, read consistently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    id: Packed,
    epoch: u64,
    view: AppView,
    loaded_at: Timestamp,
}

#[inline]
fn id_words(w: &[AtomicU64]) -> [u64; 3] {
    [w[ID].load(Ordering::Relaxed), w[ID + 1].load(Ordering::Relaxed), w[ID + 2].load(Ordering::Relaxed)]
}

/// A consistent read of the slot, if it holds an app.
#[inline]
fn read(w: &[AtomicU64]) -> Option<Held> {
    let slot = Slot::new(w);
    let guard = slot.optimistic_read()?;
    let before = guard.meta();
    if before & LEN_MASK == 0 {
        return None;
    }
    let epoch = w[EPOCH].load(Ordering::Relaxed);
    let repo = w[REPO].load(Ordering::Relaxed);
    let coords_fp = w[COORDS].load(Ordering::Relaxed);
    let loaded_at = w[LOADED].load(Ordering::Relaxed);
    let words = id_words(w);
    if !slot.validate_read(guard) {
        return None;
    }
    let visibility = if before & PUBLIC != 0 { Visibility::Public } else { Visibility::Private };
    Some(Held {
        id: Packed { len: before & LEN_MASK, words },
        epoch,
        view: AppView { repo_id: RepoId(repo), visibility, coords_fp },
        loaded_at: Timestamp(loaded_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::seqlock::META;
    use crate::core::ids::RepoCoords;

    fn app(id: &str, repo: u64, visibility: Visibility) -> App {
        let coords: RepoCoords = "acme/dashboard".parse().unwrap();
        App::new(AppId(id.into()), coords, RepoId(repo), visibility)
    }

    #[test]
    fn a_slot_answers_for_its_own_id_epoch_and_lifetime_only() {
        let t = AppTable::new(64);
        let a = app("dash", 7, Visibility::Private);
        if let Some(w) = t.put(&a, 3, Timestamp(1_000)) {
            w.confirm(|| true);
        }
        let id = AppId("dash".into());
        assert_eq!(t.get(&id, 3, Timestamp(1_500), 1_000), Some(a.view()));
        assert_eq!(t.get(&id, 4, Timestamp(1_500), 1_000), None, "a change applied since");
        assert_eq!(t.get(&id, 3, Timestamp(2_000), 1_000), None, "past the record lifetime");
        assert_eq!(t.get(&AppId("dasH".into()), 3, Timestamp(1_500), 1_000), None);
        if let Some(w) = t.put(&app("dash", 7, Visibility::Public), 4, Timestamp(1_000)) {
            w.confirm(|| true);
        }
        assert_eq!(t.get(&id, 4, Timestamp(1_500), 1_000).map(|v| v.visibility), Some(Visibility::Public));
    }

    /// Every id of one table lands in one slot here: they must still never be taken for one
    /// another, whatever their length or bytes in common.
    #[test]
    fn ids_that_share_a_slot_are_never_taken_for_one_another() {
        let t = AppTable { slots: vec![Line::default()].into_boxed_slice(), hasher: Default::default() };
        let ids =
            ["a", "a\0", "ab", "abcdefgh", "abcdefghi", "abcdefgh\0", "x".repeat(24).as_str(), "x".repeat(23).as_str()]
                .map(String::from);
        for (n, id) in ids.iter().enumerate() {
            if let Some(w) = t.put(&app(id, n as u64, Visibility::Private), 1, Timestamp(0)) {
                w.confirm(|| true);
            }
            for (m, other) in ids.iter().enumerate() {
                let got = t.get(&AppId(other.clone()), 1, Timestamp(0), 10).map(|v| v.repo_id.0);
                assert_eq!(got, (m == n).then_some(n as u64), "{id:?} written, {other:?} read");
            }
        }
    }

    #[test]
    fn a_copy_already_held_is_not_written_again() {
        let t = AppTable::new(64);
        let a = app("dash", 7, Visibility::Private);
        if let Some(w) = t.put(&a, 3, Timestamp(1_000)) {
            w.confirm(|| true);
        }
        let meta = |t: &AppTable| t.slot(a.id())[META].load(Ordering::Relaxed);
        let before = meta(&t);
        if let Some(w) = t.put(&a, 3, Timestamp(1_000)) {
            w.confirm(|| true);
        }
        assert_eq!(meta(&t), before, "the same copy: no write, readers keep their line");
        if let Some(w) = t.put(&a, 3, Timestamp(1_001)) {
            w.confirm(|| true);
        }
        assert_ne!(meta(&t), before, "a newer read of the app is written");
        t.remove(a.id());
        assert_eq!(t.get(a.id(), 3, Timestamp(1_001), 10), None);
    }

    #[test]
    fn an_id_longer_than_a_slot_holds_is_never_copied() {
        let t = AppTable::new(64);
        let long = "y".repeat(ID_BYTES + 1);
        if let Some(w) = t.put(&app(&long, 1, Visibility::Private), 1, Timestamp(0)) {
            w.confirm(|| true);
        }
        assert_eq!(t.get(&AppId(long.clone()), 1, Timestamp(0), 10), None);
        assert_eq!(t.get(&AppId(long[..ID_BYTES].into()), 1, Timestamp(0), 10), None);
    }

    /// Writers race readers on one slot: a reader sees one app's words whole or nothing.
    #[test]
    fn a_torn_slot_is_never_read() {
        let t = std::sync::Arc::new(AppTable::new(64));
        let apps: Vec<App> = (0..4).map(|i| app("same", 100 + i, Visibility::Private)).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (t, stop, apps) = (t.clone(), stop.clone(), apps.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let n = usize::try_from(i % 4).unwrap();
                    // Epoch and load time move with the repository id: a torn read mixes them.
                    if let Some(w) = t.put(&apps[n], 100 + i % 4, Timestamp(100 + i % 4)) {
                        w.confirm(|| true);
                    }
                    i += 1;
                }
            })
        };
        let id = AppId("same".into());
        for _ in 0..200_000 {
            for e in 100..104 {
                if let Some(v) = t.get(&id, e, Timestamp(e), 1) {
                    assert_eq!(v.repo_id.0, e, "a slot read whole");
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
    }
}
