//! The hit table: a compact, inline copy of the facts hits are served from, checked against a
//! version before it is believed.
//!
//! Each slot holds one (user, repository) fact in four machine words, inline (no pointer to
//! follow); two slots make a set, and a set is one cache line, chosen by the key's hash, so a
//! hit costs one line and the table stays small enough (8 MiB at most) that its lines and pages
//! stay in the processor's caches. A slot is read optimistically: its meta word (a 40-bit
//! version, part of the invalidation epoch it was written at, and the fact) is read before and
//! after the other words, and the read counts only if the version was even and the word
//! unchanged (a sequence lock, made of atomics alone: [`super::seqlock`]). A slot is believed only if it names the
//! key, the coordinates the fact was verified at, and the invalidation epoch that is current
//! now: any invalidation since it was written (a webhook, a replica's message, a lost feed)
//! sends every hit back to the front map, which writes the slot anew. Its lifetime is judged on
//! every read exactly as the front map's is.
//!
//! To fit a line, a slot holds the user and repository ids in one word, the epoch in 32 bits and
//! the confirmation time in 48: a key whose ids do not both fit 32 bits (GitHub's ids are far
//! below that today) or a time past the year 10889 is never copied here, and once 2^32
//! invalidations have been recorded the table is no longer believed. All fall back to the front
//! map: slower, never wrong.
//!
//! # Staleness
//!
//! Never more than the front map's: a slot is believed only at the invalidation epoch it was
//! written at and within the fact's lifetime, judged on every read (5 min for a role, 1 min for
//! no role, 60 s for `deploy` and `delete`, by default).
//!
//! The slot is only a copy: moka still owns expiry, capacity and loading. An entry moka evicts
//! or replaces has its slots emptied once the front map has let it go (by the same eviction
//! listener), a copy written while that happens is emptied by its own writer (its
//! [`Written`](super::seqlock::Written) is confirmed against the map), and a fact that does not
//! fit a word (a custom role's name, a
//! replaced repository) is never copied here.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::decision::Fact;
use crate::core::policy::{Role, RoleGrant, RoleName};
use crate::core::time::Timestamp;

use super::PermKey;
use super::seqlock::{META, Slot, Written};

/// Words per slot, and their places (the meta word is [`META`]).
const WORDS: usize = 4;
const KEY: usize = 1;
const COORDS: usize = 2;
const CONFIRMED: usize = 3;

/// The meta word's own bits ([`super::seqlock`]): the fact in bits 0..8, the epoch's low 16 bits
/// in 8..24.
const EPOCH_SHIFT: u32 = 8;
const EPOCH_LOW_BITS: u32 = 16;
/// The confirmation word: the time in bits 0..48 (milliseconds since the Unix epoch, good until
/// the year 10889), the epoch's high 16 bits in 48..64.
const TIME_BITS: u32 = 48;

/// Two slots: one cache line.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Set([AtomicU64; 2 * WORDS]);

/// What a slot says, once read consistently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) coords_fp: u64,
    pub(crate) confirmed_at: Timestamp,
    /// The invalidation epoch the slot was written at (which is below 2^32).
    pub(crate) epoch: u32,
    pub(crate) fact: InlineFact,
}

impl Hit {
    /// Whether the slot was written at `epoch`, the epoch current now.
    #[inline]
    pub(crate) fn at_epoch(&self, epoch: u64) -> bool {
        u64::from(self.epoch) == epoch
    }
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
    /// No installation of the App covers the app's repository.
    NotInstalled,
    /// The login answered for another user id.
    LoginMismatch,
    /// Absent from the repository's roster.
    NotOnRoster,
    /// A standard role, as the repository's roster lists it.
    RosterRole(Role),
}

impl InlineFact {
    /// The fact as one word, if it fits (0 is an empty slot).
    pub(crate) fn of(fact: &Fact) -> Option<Self> {
        match fact {
            Fact::Role(None) => Some(InlineFact::NoRole),
            Fact::Role(Some(RoleGrant { role, name: RoleName::Standard(named) })) if role == named => {
                Some(InlineFact::Role(*role))
            }
            Fact::Rostered(None) => Some(InlineFact::NotOnRoster),
            Fact::Rostered(Some(RoleGrant { role, name: RoleName::Standard(named) })) if role == named => {
                Some(InlineFact::RosterRole(*role))
            }
            Fact::RepoNotFound => Some(InlineFact::RepoNotFound),
            Fact::NotInstalled => Some(InlineFact::NotInstalled),
            Fact::LoginMismatch => Some(InlineFact::LoginMismatch),
            Fact::Role(Some(_)) | Fact::Rostered(Some(_)) | Fact::Replaced { .. } => None,
        }
    }

    /// The standard role it names, if any.
    #[inline]
    pub(crate) fn role(self) -> Option<Role> {
        match self {
            InlineFact::Role(r) | InlineFact::RosterRole(r) => Some(r),
            _ => None,
        }
    }

    fn encode(self) -> u64 {
        match self {
            InlineFact::NoRole => 1,
            InlineFact::RepoNotFound => 2,
            InlineFact::LoginMismatch => 3,
            InlineFact::NotOnRoster => 4,
            InlineFact::NotInstalled => 5,
            InlineFact::Role(r) => 16 + Role::ALL.iter().position(|x| *x == r).unwrap_or(0) as u64,
            InlineFact::RosterRole(r) => 32 + Role::ALL.iter().position(|x| *x == r).unwrap_or(0) as u64,
        }
    }

    #[inline]
    fn decode(word: u64) -> Option<Self> {
        match word {
            1 => Some(InlineFact::NoRole),
            2 => Some(InlineFact::RepoNotFound),
            3 => Some(InlineFact::LoginMismatch),
            4 => Some(InlineFact::NotOnRoster),
            5 => Some(InlineFact::NotInstalled),
            w @ 16..32 => Role::ALL.get(usize::try_from(w - 16).ok()?).map(|r| InlineFact::Role(*r)),
            w if w >= 32 => Role::ALL.get(usize::try_from(w - 32).ok()?).map(|r| InlineFact::RosterRole(*r)),
            _ => None,
        }
    }

    /// The fact it stands for.
    #[inline]
    pub(crate) fn fact(self) -> Fact {
        match self {
            InlineFact::NoRole => Fact::Role(None),
            InlineFact::Role(r) => Fact::Role(Some(RoleGrant::standard(r))),
            InlineFact::RepoNotFound => Fact::RepoNotFound,
            InlineFact::NotInstalled => Fact::NotInstalled,
            InlineFact::LoginMismatch => Fact::LoginMismatch,
            InlineFact::NotOnRoster => Fact::Rostered(None),
            InlineFact::RosterRole(r) => Fact::Rostered(Some(RoleGrant::standard(r))),
        }
    }
}

/// The table: a power of two of two-slot sets.
pub(crate) struct HitTable {
    sets: Box<[Set]>,
    /// 64 minus log2 of the number of sets: the hash's top bits pick the set.
    shift: u32,
}

impl std::fmt::Debug for HitTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HitTable").field("slots", &(self.sets.len() * 2)).finish()
    }
}

/// The key as one word, if both ids fit 32 bits.
#[inline]
fn packed(key: &PermKey) -> Option<u64> {
    let (user, repo) = (u32::try_from(key.user.0).ok()?, u32::try_from(key.repo.0).ok()?);
    Some(u64::from(user) << 32 | u64::from(repo))
}

impl HitTable {
    /// A table with about one slot per entry of a cache of `capacity` (at least 64 slots, at
    /// most 2^18: 8 MiB).
    pub(crate) fn new(capacity: u64) -> Self {
        let slots = usize::try_from(capacity).unwrap_or(usize::MAX).clamp(64, 1 << 18).next_power_of_two();
        let sets = slots / 2;
        Self { sets: (0..sets).map(|_| Set::default()).collect(), shift: 64 - sets.trailing_zeros() }
    }

    /// The key's set (Fibonacci hashing: a multiply, the top bits).
    #[inline]
    fn set(&self, packed: u64) -> &Set {
        let i = packed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift;
        &self.sets[usize::try_from(i).unwrap_or(0) & (self.sets.len() - 1)]
    }

    /// The slot's contents for `key`, read consistently, if a slot of its set holds it.
    #[inline]
    pub(crate) fn get(&self, key: &PermKey) -> Option<Hit> {
        let packed = packed(key)?;
        let set = &self.set(packed).0;
        read(&set[..WORDS], packed).or_else(|| read(&set[WORDS..], packed))
    }

    /// Writes `hit` for `key`: into the slot that holds the key, or an empty one, or the second
    /// of its set (the first is kept); the copy must then be confirmed against the map. A slot
    /// being written by another thread is left alone, and so is a hit that does not fit (ids
    /// beyond 32 bits, a time beyond 48): `None`.
    #[must_use = "a copy must be confirmed against its map (`Written::confirm`)"]
    pub(crate) fn put(&self, key: &PermKey, hit: Hit) -> Option<Written<'_>> {
        let packed = packed(key)?;
        if hit.confirmed_at.0 >> TIME_BITS != 0 {
            return None;
        }
        let set = &self.set(packed).0;
        let (first, second) = set.split_at(WORDS);
        let holds = |s: &[AtomicU64]| s[KEY].load(Ordering::Relaxed) == packed;
        let empty = |s: &[AtomicU64]| s[META].load(Ordering::Relaxed) & 0xff == 0;
        let slot = if holds(first) {
            first
        } else if holds(second) || !empty(first) {
            second
        } else {
            first
        };
        let epoch = u64::from(hit.epoch);
        let own = (epoch & ((1 << EPOCH_LOW_BITS) - 1)) << EPOCH_SHIFT | hit.fact.encode();
        let confirmed = (epoch >> EPOCH_LOW_BITS) << TIME_BITS | hit.confirmed_at.0;
        Slot::new(slot).write(own, |w| {
            w[KEY].store(packed, Ordering::Relaxed);
            w[COORDS].store(hit.coords_fp, Ordering::Relaxed);
            w[CONFIRMED].store(confirmed, Ordering::Relaxed);
        })
    }

    /// Empties the slots that hold `key` ([`Slot::clear`]).
    pub(crate) fn remove(&self, key: &PermKey) {
        let Some(packed) = packed(key) else { return };
        let set = &self.set(packed).0;
        for slot in [&set[..WORDS], &set[WORDS..]] {
            Slot::new(slot).clear(|meta, w| meta & 0xff != 0 && w[KEY].load(Ordering::Relaxed) == packed);
        }
    }
}

/// A consistent read of `slot`, if it holds `packed` and a fact.
#[inline]
fn read(w: &[AtomicU64], packed: u64) -> Option<Hit> {
    let slot = Slot::new(w);
    let guard = slot.optimistic_read()?;
    let key = w[KEY].load(Ordering::Relaxed);
    let coords_fp = w[COORDS].load(Ordering::Relaxed);
    let confirmed = w[CONFIRMED].load(Ordering::Relaxed);
    if !slot.validate_read(guard) || key != packed {
        return None;
    }
    let before = guard.meta();
    let fact = InlineFact::decode(before & 0xff)?;
    let low = (before >> EPOCH_SHIFT) & ((1 << EPOCH_LOW_BITS) - 1);
    let epoch = u32::try_from((confirmed >> TIME_BITS) << EPOCH_LOW_BITS | low).ok()?;
    let confirmed_at = Timestamp(confirmed & ((1 << TIME_BITS) - 1));
    Some(Hit { coords_fp, confirmed_at, epoch, fact })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::seqlock::{VERSION_ONE, VERSION_SHIFT};
    use crate::core::ids::{RepoId, UserId};

    fn key(u: u64, r: u64) -> PermKey {
        PermKey { user: UserId(u), repo: RepoId(r) }
    }

    fn hit(fact: InlineFact) -> Hit {
        Hit { coords_fp: 7, confirmed_at: Timestamp(1_000), epoch: 3, fact }
    }

    /// Puts `hit`, its map unchanged (the copy confirmed).
    trait PutConfirmed {
        fn put_confirmed(&self, key: &PermKey, hit: Hit);
    }

    impl PutConfirmed for HitTable {
        fn put_confirmed(&self, key: &PermKey, hit: Hit) {
            if let Some(written) = self.put(key, hit) {
                written.confirm(|| true);
            }
        }
    }

    /// A copy written after its entry was replaced (the replacer's clear came first and found
    /// nothing) is emptied by its confirmation; left unconfirmed, it would be served.
    #[test]
    fn a_copy_confirmed_against_a_replaced_entry_is_emptied() {
        let t = HitTable::new(64);
        let k = key(1, 2);
        // The entry the copier read is replaced, and the slot cleared, before the copy lands.
        t.remove(&k);
        let generation_now = 2;
        let copied_generation = 1;
        t.put(&k, hit(InlineFact::Role(Role::Admin))).unwrap().confirm(|| generation_now == copied_generation);
        assert_eq!(t.get(&k), None, "the confirmation emptied the stale copy");
        t.put(&k, hit(InlineFact::Role(Role::Admin))).unwrap().unconfirmed();
        assert!(t.get(&k).is_some(), "unconfirmed, the stale copy stays: what the confirmation is for");
    }

    #[test]
    fn a_slot_returns_what_was_put_for_its_key_only() {
        let t = HitTable::new(1024);
        t.put_confirmed(&key(1, 2), hit(InlineFact::Role(Role::Write)));
        assert_eq!(t.get(&key(1, 2)), Some(hit(InlineFact::Role(Role::Write))));
        assert_eq!(t.get(&key(2, 1)), None);
        t.remove(&key(1, 2));
        assert_eq!(t.get(&key(1, 2)), None);
    }

    #[test]
    fn every_inline_fact_round_trips_and_custom_roles_do_not_fit() {
        for f in [
            InlineFact::NoRole,
            InlineFact::RepoNotFound,
            InlineFact::NotInstalled,
            InlineFact::LoginMismatch,
            InlineFact::NotOnRoster,
        ]
        .into_iter()
        .chain(Role::ALL.iter().map(|r| InlineFact::Role(*r)))
        .chain(Role::ALL.iter().map(|r| InlineFact::RosterRole(*r)))
        {
            assert_eq!(InlineFact::decode(f.encode()), Some(f));
            assert_eq!(InlineFact::of(&f.fact()), Some(f));
        }
        let custom = Fact::Role(Some(RoleGrant { role: Role::Write, name: RoleName::Custom("release".into()) }));
        assert_eq!(InlineFact::of(&custom), None);
        let rostered_custom =
            Fact::Rostered(Some(RoleGrant { role: Role::Write, name: RoleName::Custom("release".into()) }));
        assert_eq!(InlineFact::of(&rostered_custom), None);
        assert_eq!(InlineFact::of(&Fact::Replaced { current: RepoId(9) }), None);
        assert_eq!(InlineFact::decode(0), None, "an empty slot");
    }

    #[test]
    fn a_full_set_keeps_its_first_slot_and_drops_nothing_it_does_not_say() {
        let t = HitTable::new(64);
        // Keys that share a set.
        let first = key(1, 1);
        let set_of = |k: &PermKey| std::ptr::from_ref(t.set(packed(k).unwrap()));
        let mates: Vec<PermKey> =
            (2..10_000).map(|u| key(u, 1)).filter(|k| set_of(k) == set_of(&first)).take(2).collect();
        t.put_confirmed(&first, hit(InlineFact::NoRole));
        for k in &mates {
            t.put_confirmed(k, hit(InlineFact::RepoNotFound));
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
                    for i in 0..20_000u32 {
                        let v = w as u32 * 1_000_000 + i;
                        let fact = if i % 2 == 0 { InlineFact::NoRole } else { InlineFact::Role(Role::Admin) };
                        let hit = Hit { coords_fp: v.into(), confirmed_at: Timestamp(v.into()), epoch: v, fact };
                        t.put_confirmed(&k, hit);
                    }
                });
            }
            let t = t.clone();
            s.spawn(move || {
                for _ in 0..50_000 {
                    if let Some(h) = t.get(&k) {
                        let whole = h.coords_fp == h.confirmed_at.0 && u64::from(h.epoch) == h.coords_fp;
                        let fact = if h.epoch % 2 == 0 { InlineFact::NoRole } else { InlineFact::Role(Role::Admin) };
                        assert!(whole && h.fact == fact, "torn read: {h:?}");
                    }
                }
            });
        });
    }

    #[test]
    fn ids_beyond_32_bits_are_never_copied_here_and_never_alias() {
        let t = HitTable::new(1024);
        let wide = key(1 << 32 | 5, 6);
        t.put_confirmed(&wide, hit(InlineFact::Role(Role::Admin)));
        assert_eq!(t.get(&wide), None, "not copied");
        assert_eq!(t.get(&key(5, 6)), None, "the low bits alone name another key");
        t.put_confirmed(&key(5, 6), hit(InlineFact::NoRole));
        assert_eq!(t.get(&key(5, 6 | 1 << 32)), None);
        assert_eq!(t.get(&key(5, 6)), Some(hit(InlineFact::NoRole)));
    }

    #[test]
    fn a_slot_is_believed_only_at_its_own_epoch() {
        let h = Hit { epoch: 7, ..hit(InlineFact::NoRole) };
        assert!(h.at_epoch(7));
        assert!(!h.at_epoch(8));
        assert!(!h.at_epoch(7 + (1 << 32)), "an epoch past 32 bits matches no slot");
    }

    #[test]
    fn the_version_survives_its_wrap() {
        let t = HitTable::new(64);
        let k = key(3, 4);
        let slot = &t.set(packed(&k).unwrap()).0[..WORDS];
        // The highest even version: 2^39 writes from where it started.
        slot[META].store(!VERSION_ONE & !(VERSION_ONE - 1), Ordering::Relaxed);
        t.put_confirmed(&k, hit(InlineFact::NoRole));
        assert_eq!(t.get(&k), Some(hit(InlineFact::NoRole)));
        assert_eq!(slot[META].load(Ordering::Relaxed) >> VERSION_SHIFT, 0, "wrapped to an even version");
    }

    #[test]
    fn the_whole_epoch_and_time_come_back_and_a_time_beyond_48_bits_is_not_copied() {
        let t = HitTable::new(64);
        let h = Hit { epoch: 0xABCD_1234, confirmed_at: Timestamp((1 << 48) - 1), ..hit(InlineFact::NoRole) };
        t.put_confirmed(&key(1, 2), h);
        assert_eq!(t.get(&key(1, 2)), Some(h));
        t.put_confirmed(&key(3, 4), Hit { confirmed_at: Timestamp(1 << 48), ..h });
        assert_eq!(t.get(&key(3, 4)), None);
    }

    #[test]
    fn the_meta_word_does_not_come_back_within_2_pow_23_writes() {
        // A reader stalled between its two reads of the meta word must not see it come back to
        // the value it first read while other writes landed (a 24-bit version would, here).
        let t = HitTable::new(64);
        let k = key(7, 8);
        t.put_confirmed(&k, hit(InlineFact::NoRole));
        let slot = &t.set(packed(&k).unwrap()).0[..WORDS];
        let first = slot[META].load(Ordering::Relaxed);
        for _ in 0..1 << 23 {
            t.put_confirmed(&k, hit(InlineFact::NoRole));
        }
        assert_ne!(slot[META].load(Ordering::Relaxed), first);
    }
}
