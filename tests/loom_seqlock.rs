//! A loom model of the hit tables' sequence lock (`src/cache/seqlock.rs`, included here with
//! loom's atomics in place of the standard library's): under every interleaving and every
//! memory ordering loom explores, a read that validates saw one write whole, and a copy never
//! outlives its entry when the copier confirms and the remover clears; without the confirmation
//! it does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

/// The atomics `seqlock` is built on: loom's.
mod sync {
    pub(crate) use loom::sync::atomic::{AtomicU64, Ordering, fence};
}

#[allow(dead_code, reason = "the model uses part of the module")]
#[path = "../src/cache/seqlock.rs"]
mod seqlock;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering, fence};
use seqlock::{OWN, Slot};

/// A slot's words: the meta word, the key, the value.
const KEY: usize = 1;
const VALUE: usize = 2;
/// The key the model's map holds.
const K: u64 = 7;

/// One slot, and the map it copies: the generation of key `K`'s entry.
struct Table {
    words: [AtomicU64; 3],
    map: AtomicU64,
}

impl Table {
    fn new() -> Self {
        Table { words: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)], map: AtomicU64::new(1) }
    }

    /// What the slot holds, read consistently: (key, value), or nothing.
    fn read(&self) -> Option<(u64, u64)> {
        let slot = Slot::new(&self.words);
        let guard = slot.optimistic_read()?;
        let (key, value) = (self.words[KEY].load(Ordering::Relaxed), self.words[VALUE].load(Ordering::Relaxed));
        (slot.validate_read(guard) && guard.meta() & OWN != 0).then_some((key, value))
    }

    /// A reader's hit: copies the entry it read into the slot, then (if `confirm`) confirms it.
    fn copy(&self, confirm: bool) {
        let generation = self.map.load(Ordering::Acquire);
        let written = Slot::new(&self.words).write(1, |w| {
            w[KEY].store(K, Ordering::Relaxed);
            w[VALUE].store(generation, Ordering::Relaxed);
        });
        if let Some(written) = written {
            if confirm {
                written.confirm(|| self.map.load(Ordering::Acquire) == generation);
            } else {
                written.unconfirmed();
            }
        }
    }

    /// A writer replaces the entry: the map first, then the slot is cleared.
    fn replace(&self) {
        self.map.store(2, Ordering::Release);
        fence(Ordering::SeqCst);
        Slot::new(&self.words).clear(|meta, w| meta & OWN != 0 && w[KEY].load(Ordering::Relaxed) == K);
    }
}

/// Once a copier and a replacer are done, the slot holds nothing, or a copy of the entry that
/// is in the map now: never the one replaced.
fn copy_and_replace(confirm: bool) {
    loom::model(move || {
        let t = Arc::new(Table::new());
        let copier = {
            let t = t.clone();
            loom::thread::spawn(move || t.copy(confirm))
        };
        t.replace();
        copier.join().unwrap();
        if let Some((_, value)) = t.read() {
            assert_eq!(value, t.map.load(Ordering::Relaxed), "a copy outlived its entry");
        }
    });
}

#[test]
fn a_confirmed_copy_never_outlives_its_entry() {
    copy_and_replace(true);
}

#[test]
#[should_panic(expected = "a copy outlived its entry")]
fn without_the_confirmation_a_copy_outlives_its_entry() {
    copy_and_replace(false);
}

/// Two copiers of one entry and one replacer: neither copier's confirmation depends on the
/// other's, so whatever order their writes land in, no copy of the replaced entry is left.
/// (Bounded to 3 preemptions, as loom's own documentation suggests for three threads.)
#[test]
fn two_confirmed_copies_never_outlive_their_entry() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let t = Arc::new(Table::new());
        let copiers: Vec<_> = (0..2)
            .map(|_| {
                let t = t.clone();
                loom::thread::spawn(move || t.copy(true))
            })
            .collect();
        t.replace();
        for copier in copiers {
            copier.join().unwrap();
        }
        if let Some((_, value)) = t.read() {
            assert_eq!(value, t.map.load(Ordering::Relaxed), "a copy outlived its entry");
        }
    });
}

/// Two writers and a reader on one slot: a read that validates saw one write's words, never a
/// mix of two.
#[test]
fn a_validated_read_is_never_torn() {
    loom::model(|| {
        let words = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
        let writers: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|v| {
                let words = words.clone();
                loom::thread::spawn(move || {
                    let written = Slot::new(&words[..]).write(1, |w| {
                        w[KEY].store(v, Ordering::Relaxed);
                        w[VALUE].store(v, Ordering::Relaxed);
                    });
                    if let Some(written) = written {
                        written.confirm(|| true);
                    }
                })
            })
            .collect();
        let slot = Slot::new(&words[..]);
        if let Some(guard) = slot.optimistic_read() {
            let (key, value) = (words[KEY].load(Ordering::Relaxed), words[VALUE].load(Ordering::Relaxed));
            if slot.validate_read(guard) {
                assert_eq!(key, value, "a torn read");
            }
        }
        for w in writers {
            w.join().unwrap();
        }
    });
}
