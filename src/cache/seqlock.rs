//! The sequence lock the hit tables' slots are read and written under, made of atomics alone:
//! a reader takes no lock and writes nothing, a writer never waits.
//!
//! A slot is a run of atomic words, the first its meta word: a version in bits 24..64 (odd while
//! the slot is being written; 40 bits, so that it comes back to a value a reader saw only after
//! 2^39 writes to the slot) and, in bits 0..24, what the table keeps there of its own (0 for an
//! empty slot). A read ([`Slot::optimistic_read`], then the words, then
//! [`Slot::validate_read`]) counts only if the version was even and the meta word did not move.
//!
//! A slot holds a *copy* of an entry of a map. That the copy never outlives its entry is a rule
//! of two steps on each side:
//! - whoever replaces or removes an entry in a way no epoch records changes the map, executes a
//!   sequentially consistent fence, then calls [`Slot::clear`] (the fence is the caller's: the
//!   hit table's `FactMap::insert` and `remove_generation`, the records' `remember_app`);
//! - whoever copies an entry gets a [`Written`] from [`Slot::write`], which must be confirmed
//!   ([`Written::confirm`]) against the map: a sequentially consistent fence, the map read again,
//!   and the copy emptied if its entry has moved on. The type carries this half.
//!
//! (A change that moves an epoch the copy is stamped with, such as an invalidation or a record
//! forgotten, needs no clear: a copy is believed only at its own epoch.)
//!
//! With a sequentially consistent fence between the two steps on each side, one side sees the
//! other's change: either the remover's clear finds the copy, or the copier's confirmation finds
//! the map changed. `tests/loom_seqlock.rs` checks this for one and for two copiers against one
//! remover, under the interleavings and memory orderings loom explores, and that it fails
//! without the confirmation.
//!
//! The module takes its atomics from `super::sync`, so that the loom model can include this very
//! file with loom's atomics in their place.

use super::sync::{AtomicU64, Ordering, fence};

/// The meta word's place in a slot.
pub(crate) const META: usize = 0;
/// Where the version starts in the meta word.
pub(crate) const VERSION_SHIFT: u32 = 24;
/// One step of the version (odd while written).
pub(crate) const VERSION_ONE: u64 = 1 << VERSION_SHIFT;
/// The meta word's bits that are the table's own.
pub(crate) const OWN: u64 = VERSION_ONE - 1;

/// A slot of a table: words under one sequence lock, the first its meta word.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot<'a>(&'a [AtomicU64]);

/// A read begun: the meta word as it stood, even.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadGuard(u64);

impl ReadGuard {
    /// The meta word the read began at.
    #[inline]
    pub(crate) fn meta(self) -> u64 {
        self.0
    }
}

/// A copy written into a slot, which must be confirmed against the map it copies.
#[must_use = "a copy must be confirmed against its map (`Written::confirm`), or it may outlive its entry"]
#[derive(Debug)]
pub(crate) struct Written<'a> {
    slot: Slot<'a>,
    /// The meta word the write left.
    meta: u64,
}

impl<'a> Slot<'a> {
    /// The slot made of `words` (at least one: the meta word).
    #[inline]
    pub(crate) fn new(words: &'a [AtomicU64]) -> Self {
        Self(words)
    }

    /// Begins a read: `None` while the slot is being written.
    #[inline]
    pub(crate) fn optimistic_read(self) -> Option<ReadGuard> {
        let meta = self.0[META].load(Ordering::Acquire);
        (meta & VERSION_ONE == 0).then_some(ReadGuard(meta))
    }

    /// Ends a read begun with `guard`: whether the words loaded (with relaxed loads) since
    /// belong to one write.
    #[inline]
    pub(crate) fn validate_read(self, guard: ReadGuard) -> bool {
        // Orders the loads of the words before the meta word is read again.
        fence(Ordering::Acquire);
        self.0[META].load(Ordering::Relaxed) == guard.0
    }

    /// Writes the slot: `f` stores the words (relaxed stores) while the version is odd, then
    /// the meta word takes `own` (its low 24 bits) with an even, higher version. `None` when
    /// another thread is writing the slot: it is left to them.
    #[must_use = "a copy must be confirmed against its map (`Written::confirm`)"]
    pub(crate) fn write(self, own: u64, f: impl FnOnce(&[AtomicU64])) -> Option<Written<'a>> {
        let current = self.0[META].load(Ordering::Relaxed);
        self.write_over(current, own, f).map(|meta| Written { slot: self, meta })
    }

    /// Empties the slot if `holds` says (of its meta word and its words, read consistently) that
    /// it holds what is to go. Called after the map was changed (and a sequentially consistent
    /// fence): a slot being written meanwhile is left alone, since its writer confirms its copy
    /// against the map, and so sees the change.
    pub(crate) fn clear(self, holds: impl FnOnce(u64, &[AtomicU64]) -> bool) {
        let Some(guard) = self.optimistic_read() else { return };
        let held = holds(guard.0, self.0);
        if held && self.validate_read(guard) {
            let _ = self.write_over(guard.0, 0, |_| {});
        }
    }

    /// [`Slot::write`], if the meta word is still `current`; the meta word written.
    fn write_over(self, current: u64, own: u64, f: impl FnOnce(&[AtomicU64])) -> Option<u64> {
        let meta = &self.0[META];
        let busy = current.wrapping_add(VERSION_ONE);
        if current & VERSION_ONE != 0
            || meta.compare_exchange(current, busy, Ordering::Acquire, Ordering::Relaxed).is_err()
        {
            return None;
        }
        // Orders the odd version before the stores `f` makes.
        fence(Ordering::Release);
        f(self.0);
        let done = (busy.wrapping_add(VERSION_ONE) & !OWN) | (own & OWN);
        meta.store(done, Ordering::Release);
        Some(done)
    }
}

impl Written<'_> {
    /// Confirms the copy against its map: behind a sequentially consistent fence,
    /// `still_current` reads the map again; if the entry copied has moved on, this copy is
    /// emptied, unless a later write has replaced it already. That later write came after what
    /// the remover's clear read of the slot, so either the clear empties it or its own writer's
    /// confirmation sees the change.
    pub(crate) fn confirm(self, still_current: impl FnOnce() -> bool) {
        fence(Ordering::SeqCst);
        if !still_current() {
            let _ = self.slot.write_over(self.meta, 0, |_| {});
        }
    }

    /// Leaves the copy unconfirmed. Only for tests that show what the confirmation is for.
    #[cfg(test)]
    pub(crate) fn unconfirmed(self) {}
}
