//! The hit table: a compact, inline copy of the facts hits are served from, checked against a
//! version before it is believed.
//!
//! Each slot holds one (user, repository) fact in seven machine words, inline (no pointer to
//! follow), in a two-way set chosen by the key's hash. A slot is read optimistically: its
//! version word is read before and after the other words, and the read counts only if the
//! version was even and unchanged (a sequence lock, made of atomics alone). A slot is believed
//! only if it names the key, the coordinates the fact was verified at, and the invalidation
//! epoch that is current now: any invalidation since it was written (a webhook, a replica's
//! message, a lost feed) sends every hit back to the front map, which writes the slot anew. Its
//! lifetime is judged on every read exactly as the front map's is.
//!
//! # Staleness
//!
//! Never more than the front map's: a slot is believed only at the invalidation epoch it was
//! written at and within the fact's lifetime, judged on every read (5 min for a role, 1 min for
//! no role, 60 s for `deploy` and `delete`, by default).
//!
//! The slot is only a copy: moka still owns expiry, capacity and loading. An entry moka evicts
//! has its slot cleared by the same eviction listener that clears the front map, and a fact
//! that does not fit a word (a custom role's name, a replaced repository) is never copied here.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::core::decision::Fact;
use crate::core::policy::{Role, RoleGrant, RoleName};
use crate::core::time::Timestamp;

use super::PermKey;

const WORDS: usize = 7;
const VERSION: usize = 0;
const USER: usize = 1;
const REPO: usize = 2;
const COORDS: usize = 3;
const CONFIRMED: usize = 4;
const EPOCH: usize = 5;
const FACT: usize = 6;

/// One slot, on a cache line of its own.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Slot([AtomicU64; WORDS]);

/// What a slot says, once read consistently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) coords_fp: u64,
    pub(crate) confirmed_at: Timestamp,
    pub(crate) epoch: u64,
    pub(crate) fact: InlineFact,
}

/// A fact that fits one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InlineFact {
    /// No role.
    NoRole,
    /// A standard role.
    Role(Role),
    /// Nothing at the app's coordinates.
    RepoNotFound,
    /// The login answered for another user id.
    LoginMismatch,
}

impl InlineFact {
    /// The fact as one word, if it fits (0 is an empty slot).
    pub(crate) fn of(fact: &Fact) -> Option<Self> {
        match fact {
            Fact::Role(None) => Some(InlineFact::NoRole),
            Fact::Role(Some(RoleGrant { role, name: RoleName::Standard(named) })) if role == named => {
                Some(InlineFact::Role(*role))
            }
            Fact::RepoNotFound => Some(InlineFact::RepoNotFound),
            Fact::LoginMismatch => Some(InlineFact::LoginMismatch),
            Fact::Role(Some(_)) | Fact::Replaced { .. } => None,
        }
    }

    fn encode(self) -> u64 {
        match self {
            InlineFact::NoRole => 1,
            InlineFact::RepoNotFound => 2,
            InlineFact::LoginMismatch => 3,
            InlineFact::Role(r) => 16 + Role::ALL.iter().position(|x| *x == r).unwrap_or(0) as u64,
        }
    }

    fn decode(word: u64) -> Option<Self> {
        match word {
            1 => Some(InlineFact::NoRole),
            2 => Some(InlineFact::RepoNotFound),
            3 => Some(InlineFact::LoginMismatch),
            w if w >= 16 => Role::ALL.get(usize::try_from(w - 16).ok()?).map(|r| InlineFact::Role(*r)),
            _ => None,
        }
    }

    /// The fact it stands for.
    pub(crate) fn fact(self) -> Fact {
        match self {
            InlineFact::NoRole => Fact::Role(None),
            InlineFact::Role(r) => Fact::Role(Some(RoleGrant::standard(r))),
            InlineFact::RepoNotFound => Fact::RepoNotFound,
            InlineFact::LoginMismatch => Fact::LoginMismatch,
        }
    }
}

/// The table: `2^bits` two-slot sets.
pub(crate) struct HitTable {
    slots: Box<[Slot]>,
    mask: usize,
}

impl std::fmt::Debug for HitTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HitTable").field("slots", &self.slots.len()).finish()
    }
}

impl HitTable {
    /// A table with about one slot per entry of a cache of `capacity` (a power of two, at most
    /// 2^18 slots: 16 MiB).
    pub(crate) fn new(capacity: u64) -> Self {
        let slots = usize::try_from(capacity).unwrap_or(usize::MAX).clamp(64, 1 << 18).next_power_of_two();
        Self { slots: (0..slots).map(|_| Slot::default()).collect(), mask: slots / 2 - 1 }
    }

    fn set(&self, key: &PermKey) -> usize {
        // Fx-style multiply of both ids; the high bits pick the set.
        let h = (key.user.0 ^ key.repo.0.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((h >> 24) as usize & self.mask) * 2
    }

    /// The slot's contents for `key`, read consistently, if a slot of its set holds it.
    pub(crate) fn get(&self, key: &PermKey) -> Option<Hit> {
        let set = self.set(key);
        for slot in &self.slots[set..set + 2] {
            if let Some(hit) = read(slot, key) {
                return Some(hit);
            }
        }
        None
    }

    /// Writes `hit` for `key`: into the slot that holds the key, or an empty one, or the second
    /// of its set (the first is kept). A slot being written by another thread is left alone.
    pub(crate) fn put(&self, key: &PermKey, hit: Hit) {
        let set = self.set(key);
        let pair = &self.slots[set..set + 2];
        let holds = |s: &Slot| {
            s.0[USER].load(Ordering::Relaxed) == key.user.0 && s.0[REPO].load(Ordering::Relaxed) == key.repo.0
        };
        let empty = |s: &Slot| s.0[FACT].load(Ordering::Relaxed) == 0;
        let slot = pair.iter().find(|s| holds(s)).or_else(|| pair.iter().find(|s| empty(s))).unwrap_or(&pair[1]);
        write(slot, |w| {
            w[USER].store(key.user.0, Ordering::Relaxed);
            w[REPO].store(key.repo.0, Ordering::Relaxed);
            w[COORDS].store(hit.coords_fp, Ordering::Relaxed);
            w[CONFIRMED].store(hit.confirmed_at.0, Ordering::Relaxed);
            w[EPOCH].store(hit.epoch, Ordering::Relaxed);
            w[FACT].store(hit.fact.encode(), Ordering::Relaxed);
        });
    }

    /// Empties the slot that holds `key`, if any.
    pub(crate) fn remove(&self, key: &PermKey) {
        let set = self.set(key);
        for slot in &self.slots[set..set + 2] {
            if read(slot, key).is_some() {
                write(slot, |w| w[FACT].store(0, Ordering::Relaxed));
            }
        }
    }
}

/// A consistent read of `slot`, if it holds `key` and a fact.
fn read(slot: &Slot, key: &PermKey) -> Option<Hit> {
    let w = &slot.0;
    let before = w[VERSION].load(Ordering::Acquire);
    if before & 1 == 1 {
        return None;
    }
    let (user, repo) = (w[USER].load(Ordering::Relaxed), w[REPO].load(Ordering::Relaxed));
    let coords_fp = w[COORDS].load(Ordering::Relaxed);
    let confirmed_at = w[CONFIRMED].load(Ordering::Relaxed);
    let epoch = w[EPOCH].load(Ordering::Relaxed);
    let fact = w[FACT].load(Ordering::Relaxed);
    // Orders the loads above before the version is read again.
    fence(Ordering::Acquire);
    if w[VERSION].load(Ordering::Relaxed) != before || user != key.user.0 || repo != key.repo.0 {
        return None;
    }
    let fact = InlineFact::decode(fact)?;
    Some(Hit { coords_fp, confirmed_at: Timestamp(confirmed_at), epoch, fact })
}

/// Runs `f` on the slot's words under its version: odd while `f` runs, even and higher after.
fn write(slot: &Slot, f: impl FnOnce(&[AtomicU64; WORDS])) {
    let w = &slot.0;
    let v = w[VERSION].load(Ordering::Relaxed);
    if v & 1 == 1 || w[VERSION].compare_exchange(v, v + 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
        return;
    }
    // Orders the odd version before the stores `f` makes.
    fence(Ordering::Release);
    f(w);
    w[VERSION].store(v + 2, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::{RepoId, UserId};

    fn key(u: u64, r: u64) -> PermKey {
        PermKey { user: UserId(u), repo: RepoId(r) }
    }

    fn hit(fact: InlineFact) -> Hit {
        Hit { coords_fp: 7, confirmed_at: Timestamp(1_000), epoch: 3, fact }
    }

    #[test]
    fn a_slot_returns_what_was_put_for_its_key_only() {
        let t = HitTable::new(1024);
        t.put(&key(1, 2), hit(InlineFact::Role(Role::Write)));
        assert_eq!(t.get(&key(1, 2)), Some(hit(InlineFact::Role(Role::Write))));
        assert_eq!(t.get(&key(2, 1)), None);
        t.remove(&key(1, 2));
        assert_eq!(t.get(&key(1, 2)), None);
    }

    #[test]
    fn every_inline_fact_round_trips_and_custom_roles_do_not_fit() {
        for f in [InlineFact::NoRole, InlineFact::RepoNotFound, InlineFact::LoginMismatch]
            .into_iter()
            .chain(Role::ALL.iter().map(|r| InlineFact::Role(*r)))
        {
            assert_eq!(InlineFact::decode(f.encode()), Some(f));
            assert_eq!(InlineFact::of(&f.fact()), Some(f));
        }
        let custom = Fact::Role(Some(RoleGrant { role: Role::Write, name: RoleName::Custom("release".into()) }));
        assert_eq!(InlineFact::of(&custom), None);
        assert_eq!(InlineFact::of(&Fact::Replaced { current: RepoId(9) }), None);
        assert_eq!(InlineFact::decode(0), None, "an empty slot");
    }

    #[test]
    fn a_full_set_keeps_its_first_slot_and_drops_nothing_it_does_not_say() {
        let t = HitTable::new(64);
        // Keys that share a set.
        let first = key(1, 1);
        let mates: Vec<PermKey> =
            (2..10_000).map(|u| key(u, 1)).filter(|k| t.set(k) == t.set(&first)).take(2).collect();
        t.put(&first, hit(InlineFact::NoRole));
        for k in &mates {
            t.put(k, hit(InlineFact::RepoNotFound));
        }
        assert_eq!(t.get(&first), Some(hit(InlineFact::NoRole)));
        assert_eq!(t.get(&mates[0]), None, "displaced");
        assert_eq!(t.get(&mates[1]), Some(hit(InlineFact::RepoNotFound)));
    }

    #[test]
    fn concurrent_writers_never_let_a_torn_slot_be_read() {
        let t = std::sync::Arc::new(HitTable::new(64));
        let k = key(5, 6);
        std::thread::scope(|s| {
            for w in 0..2u64 {
                let t = t.clone();
                s.spawn(move || {
                    for i in 0..20_000u64 {
                        let v = w * 1_000_000 + i;
                        t.put(&k, Hit { coords_fp: v, confirmed_at: Timestamp(v), epoch: v, fact: InlineFact::NoRole });
                    }
                });
            }
            let t = t.clone();
            s.spawn(move || {
                for _ in 0..50_000 {
                    if let Some(h) = t.get(&k) {
                        assert!(h.coords_fp == h.confirmed_at.0 && h.epoch == h.coords_fp, "torn read: {h:?}");
                    }
                }
            });
        });
    }
}
