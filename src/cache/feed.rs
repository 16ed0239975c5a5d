//! The caches an authorizer keeps, together, and the change feed that keeps them true: what
//! another replica changed or invalidated, and whether everything is heard. A feed that may
//! have missed a message makes the caches deaf (no app or grant is served from memory) until it
//! hears everything again.

use std::sync::Weak;
use std::sync::atomic::Ordering;

use super::{CacheStats, Counters, Facts, Records, Sessions};
use crate::core::invalidation::Invalidation;
use crate::store::{Change, FeedEvent};

/// GitHub facts, apps and grants, verified sessions: what an authorizer serves from memory.
#[derive(Debug)]
pub(crate) struct Caches {
    /// GitHub facts (a user's role on a repository, which repository is at which coordinates),
    /// cached per (user, repository) and per coordinates.
    pub(crate) facts: Facts,
    /// Apps and viewer grants, served while the store's feed is heard.
    pub(crate) records: Records,
    /// Session tokens verified before, so that a hit does not verify a signature again.
    pub(crate) sessions: Sessions,
    /// This authorizer's id among the replicas (never 0): its own broadcasts come back to it.
    pub(crate) replica: u64,
}

impl Caches {
    /// Forgets what `change` names.
    pub(crate) fn apply_change(&self, change: &Change) {
        match change {
            Change::App { app } => self.records.forget_app(app),
            Change::All => self.records.forget_all(),
        }
    }

    /// The change feed is no longer heard: no app or grant is served from memory, and webhooks
    /// delivered to other replicas no longer reach this one (so none counts as heard).
    pub(crate) fn deafen(&self) {
        self.records.set_live(false);
        self.facts.webhooks_unheard();
    }

    /// Forgets the GitHub facts `inv` names; effective for the next check.
    pub(crate) fn invalidate(&self, inv: Invalidation) {
        self.facts.invalidate(inv);
    }

    /// [`Caches::invalidate`] for an invalidation made on this replica (which the store may not
    /// record): facts shared through the store that it covers are barred first
    /// ([`Facts::bar`](super::facts::Facts::bar)), so that no fetch starting once the cache
    /// forgets takes one from before it.
    pub(crate) fn invalidate_here(&self, inv: Invalidation) {
        self.facts.bar(inv);
        self.facts.invalidate(inv);
    }

    /// What the feed said before anyone could ask (the in-memory store says `Listening` at
    /// once): nothing is cached yet, so there is nothing to forget.
    pub(crate) fn heard_before_start(&self, event: &FeedEvent) {
        match event {
            FeedEvent::Listening | FeedEvent::Lost => {
                self.records.set_live(*event == FeedEvent::Listening);
                Counters::bump(&self.facts.counters.resyncs);
            }
            FeedEvent::Broadcast(_) => {}
        }
    }

    /// Applies one event of the feed.
    fn hear(&self, event: FeedEvent) {
        match event {
            FeedEvent::Broadcast(b) => {
                for change in &b.changes {
                    self.apply_change(change);
                }
                if b.origin != self.replica && !b.invalidations.is_empty() {
                    for inv in b.invalidations {
                        self.invalidate(inv);
                    }
                    Counters::bump(&self.facts.counters.received);
                }
            }
            FeedEvent::Lost => {
                self.deafen();
                self.invalidate(Invalidation::All);
                Counters::bump(&self.facts.counters.resyncs);
            }
            FeedEvent::Listening => {
                self.invalidate(Invalidation::All);
                self.records.set_live(true);
                Counters::bump(&self.facts.counters.resyncs);
            }
        }
    }

    /// The counters since the caches were made.
    pub(crate) fn stats(&self) -> CacheStats {
        let c = &self.facts.counters;
        CacheStats {
            hits: self.facts.hits(),
            misses: c.misses.load(Ordering::Relaxed),
            revalidated_not_modified: c.not_modified.load(Ordering::Relaxed),
            revalidated_modified: c.modified.load(Ordering::Relaxed),
            coalesced_waits: c.coalesced.load(Ordering::Relaxed),
            upstream_errors: c.upstream_errors.load(Ordering::Relaxed),
            entries: self.facts.entries(),
            invalidations_received: c.received.load(Ordering::Relaxed),
            resyncs: c.resyncs.load(Ordering::Relaxed),
            feed_listening: self.records.is_live(),
            roster_requests: c.roster_requests.load(Ordering::Relaxed),
            roster_fallbacks: c.roster_fallbacks.load(Ordering::Relaxed),
            rosters_shared: c.rosters_shared.load(Ordering::Relaxed),
            repos_shared: c.repos_shared.load(Ordering::Relaxed),
            github_budget: self.facts.github_budget(),
            github_credentials_refused: self.facts.github_credentials_refused(),
        }
    }
}

/// Applies what the store's feed brings to the caches `owner` holds, for as long as the owner
/// lives. A feed that ends leaves the caches deaf for good: they serve no app or grant again.
pub(crate) async fn follow<T: AsRef<Caches>>(owner: Weak<T>, mut feed: tokio::sync::mpsc::Receiver<FeedEvent>) {
    /// Leaves the caches deaf however the task ends: returned, cancelled with its runtime, or
    /// panicked.
    struct Deaf<T: AsRef<Caches>>(Weak<T>);
    impl<T: AsRef<Caches>> Drop for Deaf<T> {
        fn drop(&mut self) {
            if let Some(owner) = self.0.upgrade() {
                (*owner).as_ref().deafen();
            }
        }
    }
    let _deaf = Deaf(owner.clone());
    while let Some(event) = feed.recv().await {
        let Some(owner) = owner.upgrade() else { return };
        (*owner).as_ref().hear(event);
    }
    tracing::warn!("change feed ended: apps and grants are read from the store at every check");
}
