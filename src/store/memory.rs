//! The in-memory store: for tests, and for world mode without `--db`.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use parking_lot::Mutex;

use tokio::sync::mpsc;

use super::{
    Actor, AppRecord, AppStore, AuditAction, AuditEvent, AuditFilter, AuditStore, Broadcast, Change, ChangeFeed,
    DELETED_ACCOUNT, DELIVERY_RETENTION, DeletedApp, DeployOutcome, FeedEvent, IssueLimit, IssueOutcome, LinkRecord,
    LinkStore, Redemption, StoreError, SupportId, SupportStore, SupportWindow, ViewerStore,
};
use crate::core::email::Email;
use crate::core::ids::{AppId, GrantId, UserId};
use crate::core::policy::Visibility;
use crate::core::time::Timestamp;

/// How many events a subscriber may leave unread before it is cut off (and so stops caching).
const FEED_CAPACITY: usize = 4096;

/// A store in memory; gone when dropped.
///
/// Authorizers built on one `MemoryStore` (an `Arc` shared between them) hear one another's
/// changes at once: each change is sent to every subscriber under the lock that makes it.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    apps: BTreeMap<AppId, AppRecord>,
    viewers: BTreeMap<(AppId, Email), GrantId>,
    last_grant: u64,
    subscribers: Vec<mpsc::Sender<FeedEvent>>,
    /// Each entry with the GitHub identity it belongs to.
    audit: Vec<(AuditEvent, Option<UserId>)>,
    links: BTreeMap<[u8; 32], LinkRecord>,
    deleted: BTreeSet<DeletedApp>,
    deliveries: BTreeMap<String, Timestamp>,
    seeded: bool,
    support: Vec<SupportWindow>,
    last_support: u64,
    /// Shared rosters by repository.
    rosters: BTreeMap<crate::core::ids::RepoId, super::SharedRoster>,
    /// Shared repository lookups by coordinates (lower case).
    repos: BTreeMap<String, super::SharedRepo>,
    /// Invalidations of stored facts: (seq, scope, id).
    fact_invalidations: Vec<(u64, &'static str, u64)>,
    last_fact_invalidation: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl State {
    /// Tells every subscriber; one that cannot keep up is cut off, which it hears as the end of
    /// its feed.
    fn announce(&mut self, broadcast: Broadcast) {
        for inv in &broadcast.invalidations {
            let (scope, id) = super::fact_scope(inv);
            self.last_fact_invalidation += 1;
            self.fact_invalidations.push((self.last_fact_invalidation, scope, id));
        }
        if !broadcast.invalidations.is_empty() {
            // The newest are kept; a roster fetched before the oldest kept is never served.
            let keep_from = self.last_fact_invalidation.saturating_sub(super::KEPT_FACT_INVALIDATIONS);
            let first_kept = self.fact_invalidations.partition_point(|(seq, _, _)| *seq <= keep_from);
            self.fact_invalidations.drain(..first_kept);
        }
        self.subscribers.retain(|s| s.try_send(FeedEvent::Broadcast(broadcast.clone())).is_ok());
    }

    /// Whether a shared fact whose fetch began after invalidation `seen`, about repository
    /// `found` (and its owner; `None`: nothing was found), is stale: an invalidation covering it
    /// was recorded since (any, where nothing was found), or its fetch began before the newest
    /// [`KEPT_FACT_INVALIDATIONS`](super::KEPT_FACT_INVALIDATIONS), whose older ones may be
    /// forgotten.
    fn stale(&self, seen: u64, found: Option<(crate::core::ids::RepoId, crate::core::ids::OwnerId)>) -> bool {
        seen < self.last_fact_invalidation.saturating_sub(super::KEPT_FACT_INVALIDATIONS)
            || self.fact_invalidations.iter().any(|(seq, scope, id)| {
                *seq > seen
                    && match (found, *scope) {
                        (Some((_, owner)), "owner") => *id == owner.0,
                        (Some((repo, _)), "repo") => *id == repo.0,
                        _ => true,
                    }
            })
    }

    fn changed(&mut self, app: &AppId) {
        self.announce(Broadcast::changes(vec![Change::App { app: app.clone() }]));
    }

    fn insert_viewer(&mut self, app: &AppId, email: &Email) -> bool {
        let key = (app.clone(), email.clone());
        if self.viewers.contains_key(&key) {
            return false;
        }
        self.last_grant += 1;
        self.viewers.insert(key, GrantId(self.last_grant));
        true
    }

    /// Removes everything of `app`; returns its record.
    fn purge(&mut self, app: &AppId) -> Option<AppRecord> {
        let record = self.apps.remove(app)?;
        self.viewers.retain(|(a, _), _| a != app);
        self.links.retain(|_, l| &l.app != app);
        self.support.retain(|w| &w.app != app);
        for (e, _) in self.audit.iter_mut().filter(|(e, _)| &e.app == app) {
            e.email = None;
        }
        self.changed(app);
        Some(record)
    }

    /// Appends `event`, which belongs to its app's deployer or, if there is no such app, to
    /// `owner`; an entry with an address only while its app exists.
    fn audit(&mut self, event: AuditEvent, owner: Option<UserId>) {
        let app = self.apps.get(&event.app);
        if event.email.is_some() && app.is_none() {
            return;
        }
        let owner = app.map(|a| a.deployed_by).or(owner);
        self.audit.push((event, owner));
    }
}

#[async_trait]
impl AppStore for MemoryStore {
    async fn seed_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        s.apps.insert(app.id.clone(), app.clone());
        s.changed(&app.id);
        Ok(())
    }

    async fn app(&self, id: &AppId) -> Result<Option<AppRecord>, StoreError> {
        Ok(self.state.lock().apps.get(id).cloned())
    }

    async fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        Ok(self.state.lock().apps.values().cloned().collect())
    }

    async fn deploy_app(&self, app: &AppRecord, event: &AuditEvent) -> Result<DeployOutcome, StoreError> {
        let mut s = self.state.lock();
        let outcome = match s.apps.get(&app.id).cloned() {
            None => {
                s.apps.insert(app.id.clone(), app.clone());
                DeployOutcome::Deployed
            }
            Some(existing) if existing.same_coordinates(app) && existing.repo_id == app.repo_id => {
                DeployOutcome::Redeployed(existing)
            }
            Some(existing) => return Ok(DeployOutcome::Exists(existing)),
        };
        s.audit(event.clone(), Some(app.deployed_by));
        s.changed(&app.id);
        Ok(outcome)
    }

    async fn set_visibility(
        &self,
        app: &AppId,
        visibility: Visibility,
        event: &AuditEvent,
    ) -> Result<Option<bool>, StoreError> {
        let mut s = self.state.lock();
        let Some(record) = s.apps.get_mut(app) else { return Ok(None) };
        if record.visibility == visibility {
            return Ok(Some(false));
        }
        record.visibility = visibility;
        s.audit(event.clone(), None);
        s.changed(app);
        Ok(Some(true))
    }

    async fn delete_app(&self, app: &AppId, event: &AuditEvent) -> Result<bool, StoreError> {
        let mut s = self.state.lock();
        let Some(r) = s.purge(app) else { return Ok(false) };
        s.audit(event.clone(), Some(r.deployed_by));
        s.deleted.insert(DeletedApp {
            owner: r.owner,
            repo: r.repo,
            branch: r.branch,
            main_file: r.main_file,
            deployed_by: r.deployed_by,
        });
        Ok(true)
    }

    async fn delete_account(&self, user: UserId, at: Timestamp) -> Result<Vec<AppId>, StoreError> {
        let mut s = self.state.lock();
        let ids: Vec<AppId> = s.apps.values().filter(|a| a.deployed_by == user).map(|a| a.id.clone()).collect();
        for id in &ids {
            s.purge(id);
        }
        s.deleted.retain(|d| d.deployed_by != user);
        s.audit.retain(|(_, owner)| *owner != Some(user));
        // Shared rosters may list the account: they are GitHub's facts kept a while.
        s.rosters.clear();
        s.repos.clear();
        let label = Actor::Github(user).label();
        let opened_on: BTreeSet<AppId> =
            s.support.iter().filter(|w| w.granted_by == label).map(|w| w.app.clone()).collect();
        let still_open: BTreeSet<AppId> = s
            .support
            .iter()
            .filter(|w| w.granted_by == label && super::still_open(w, at))
            .map(|w| w.app.clone())
            .collect();
        s.support.retain(|w| w.granted_by != label);
        for app in &still_open {
            s.audit(super::window_gone(app, user, at), None);
        }
        for app in &opened_on {
            s.changed(app);
        }
        for (e, _) in s.audit.iter_mut().filter(|(e, _)| e.actor == label) {
            e.actor = DELETED_ACCOUNT.to_owned();
        }
        Ok(ids)
    }

    async fn deleted_apps(&self) -> Result<Vec<DeletedApp>, StoreError> {
        Ok(self.state.lock().deleted.iter().cloned().collect())
    }

    async fn seed_once(&self, apps: &[(AppRecord, Vec<Email>)], at: Timestamp) -> Result<bool, StoreError> {
        let mut s = self.state.lock();
        if s.seeded {
            return Ok(false);
        }
        s.seeded = true;
        for (app, viewers) in apps {
            s.apps.insert(app.id.clone(), app.clone());
            s.changed(&app.id);
            for email in viewers {
                if s.insert_viewer(&app.id, email) {
                    s.audit(
                        AuditEvent::new(at, &Actor::Operator, &app.id, AuditAction::ViewerAdded).with_email(email),
                        None,
                    );
                }
            }
        }
        Ok(true)
    }
}

#[async_trait]
impl ViewerStore for MemoryStore {
    async fn add_viewer(&self, app: &AppId, email: &Email, actor: &Actor, at: Timestamp) -> Result<bool, StoreError> {
        let mut s = self.state.lock();
        if !s.apps.contains_key(app) {
            return Err(StoreError::Corrupt(format!("viewer for missing app `{app}`").into()));
        }
        let added = s.insert_viewer(app, email);
        if added {
            s.audit(AuditEvent::new(at, actor, app, AuditAction::ViewerAdded).with_email(email), None);
        }
        Ok(added)
    }

    async fn remove_viewer(
        &self,
        app: &AppId,
        email: &Email,
        actor: &Actor,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut s = self.state.lock();
        let removed = s.viewers.remove(&(app.clone(), email.clone())).is_some();
        if removed {
            s.audit(AuditEvent::new(at, actor, app, AuditAction::ViewerRemoved).with_email(email), None);
            s.changed(app);
        }
        Ok(removed)
    }

    async fn viewers(&self, app: &AppId) -> Result<Vec<Email>, StoreError> {
        Ok(self.state.lock().viewers.keys().filter(|(a, _)| a == app).map(|(_, e)| e.clone()).collect())
    }

    async fn grant(&self, app: &AppId, email: &Email) -> Result<Option<GrantId>, StoreError> {
        Ok(self.state.lock().viewers.get(&(app.clone(), email.clone())).copied())
    }
}

#[async_trait]
impl LinkStore for MemoryStore {
    async fn issue_link(&self, link: &LinkRecord, limit: IssueLimit) -> Result<IssueOutcome, StoreError> {
        let mut s = self.state.lock();
        let Some(grant) = s.viewers.get(&(link.app.clone(), link.email.clone())).copied() else {
            return Ok(IssueOutcome::NotInvited);
        };
        let since = link.issued_at.minus(limit.window);
        let recent: Vec<Timestamp> = s
            .links
            .values()
            .filter(|l| l.app == link.app && l.email == link.email && l.issued_at > since)
            .map(|l| l.issued_at)
            .collect();
        if recent.len() >= limit.max as usize {
            let oldest = recent.iter().min().copied().unwrap_or(link.issued_at);
            return Ok(IssueOutcome::RateLimited { retry_at: oldest.plus(limit.window) });
        }
        s.links.insert(link.hash, LinkRecord { grant: Some(grant), ..link.clone() });
        let event = AuditEvent::new(link.issued_at, &Actor::Operator, &link.app, AuditAction::LinkIssued);
        s.audit(event.with_email(&link.email), None);
        Ok(IssueOutcome::Issued)
    }

    async fn link(&self, hash: &[u8; 32]) -> Result<Option<LinkRecord>, StoreError> {
        Ok(self.state.lock().links.get(hash).cloned())
    }

    async fn use_link(&self, redemption: &Redemption) -> Result<bool, StoreError> {
        // Decided and written at once, under one lock: no commit can go unanswered.
        let (hash, now) = (redemption.hash(), redemption.at());
        let mut s = self.state.lock();
        let Some(link) = s.links.get(hash).cloned() else { return Ok(false) };
        let granted =
            link.grant.is_some() && s.viewers.get(&(link.app.clone(), link.email.clone())).copied() == link.grant;
        if link.used_at.is_some() || link.expires_at <= now || !granted {
            return Ok(false);
        }
        if let Some(l) = s.links.get_mut(hash) {
            l.used_at = Some(now);
        }
        s.audit(
            AuditEvent::new(now, &Actor::Operator, &link.app, AuditAction::LinkRedeemed).with_email(&link.email),
            None,
        );
        Ok(true)
    }
}

#[async_trait]
impl SupportStore for MemoryStore {
    async fn open_support(&self, window: &SupportWindow, event: &AuditEvent) -> Result<Option<SupportId>, StoreError> {
        let mut s = self.state.lock();
        if !s.apps.contains_key(&window.app) {
            return Ok(None);
        }
        s.last_support += 1;
        let id = SupportId(s.last_support);
        s.support.push(SupportWindow { id, ..window.clone() });
        s.audit(event.clone(), None);
        s.changed(&window.app);
        Ok(Some(id))
    }

    async fn revoke_support(
        &self,
        app: &AppId,
        agent: Option<&str>,
        at: Timestamp,
        event: &AuditEvent,
    ) -> Result<u32, StoreError> {
        let mut s = self.state.lock();
        let mut revoked = 0u32;
        for w in s.support.iter_mut().filter(|w| &w.app == app && w.revoked_at.is_none()) {
            if agent.is_none_or(|a| w.admits(a)) {
                w.revoked_at = Some(at);
                revoked = revoked.saturating_add(1);
            }
        }
        if revoked > 0 {
            s.audit(event.clone(), None);
            s.changed(app);
        }
        Ok(revoked)
    }

    async fn support_windows(&self, app: &AppId) -> Result<Vec<SupportWindow>, StoreError> {
        Ok(self.state.lock().support.iter().filter(|w| &w.app == app).cloned().collect())
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        let s = self.state.lock();
        let admitted = s.audit.iter().rev().map(|(e, _)| e).filter(|e| filter.admits(e));
        Ok(admitted.take(filter.max().map_or(usize::MAX, |n| n as usize)).cloned().collect())
    }

    async fn record(&self, event: &AuditEvent, owner: Option<UserId>) -> Result<(), StoreError> {
        self.state.lock().audit(event.clone(), owner);
        Ok(())
    }
}

#[async_trait]
impl ChangeFeed for MemoryStore {
    async fn record_delivery(&self, id: &str, at: Timestamp, broadcast: &Broadcast) -> Result<bool, StoreError> {
        let mut s = self.state.lock();
        let horizon = at.minus(DELIVERY_RETENTION);
        s.deliveries.retain(|_, seen| *seen >= horizon);
        if s.deliveries.contains_key(id) {
            return Ok(false);
        }
        s.deliveries.insert(id.to_owned(), at);
        s.announce(broadcast.clone());
        Ok(true)
    }

    async fn publish(&self, broadcast: &Broadcast) -> Result<(), StoreError> {
        self.state.lock().announce(broadcast.clone());
        Ok(())
    }

    fn subscribe(&self) -> Option<mpsc::Receiver<FeedEvent>> {
        let (tx, rx) = mpsc::channel(FEED_CAPACITY);
        // Registered under the lock, so that no change falls between `Listening` and the first
        // message.
        let mut s = self.state.lock();
        if tx.try_send(FeedEvent::Listening).is_ok() {
            s.subscribers.push(tx);
        }
        Some(rx)
    }
}

#[async_trait]
impl super::FactStore for MemoryStore {
    async fn fact_epoch(&self) -> Result<u64, StoreError> {
        Ok(self.state.lock().last_fact_invalidation)
    }

    async fn put_roster(&self, roster: &super::SharedRoster) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        let horizon = roster.confirmed_at.minus(super::SHARED_ROSTER_RETENTION);
        s.rosters.retain(|_, r| r.confirmed_at >= horizon);
        if s.rosters.get(&roster.repo).is_none_or(|kept| kept.confirmed_at <= roster.confirmed_at) {
            s.rosters.insert(roster.repo, roster.clone());
        }
        Ok(())
    }

    async fn put_repo(&self, repo: &super::SharedRepo) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        let horizon = repo.confirmed_at.minus(super::SHARED_ROSTER_RETENTION);
        s.repos.retain(|_, r| r.confirmed_at >= horizon);
        let key = super::SharedRepo::key(&repo.coords);
        if s.repos.get(&key).is_none_or(|kept| kept.confirmed_at <= repo.confirmed_at) {
            s.repos.insert(key, repo.clone());
        }
        Ok(())
    }

    async fn repo(&self, coords: &crate::core::ids::RepoCoords) -> Result<Option<super::SharedRepo>, StoreError> {
        let s = self.state.lock();
        Ok(s.repos.get(&super::SharedRepo::key(coords)).filter(|r| !s.stale(r.seen, r.found)).cloned())
    }

    async fn roster(&self, repo: crate::core::ids::RepoId) -> Result<Option<super::SharedRoster>, StoreError> {
        let s = self.state.lock();
        Ok(s.rosters.get(&repo).filter(|r| !s.stale(r.seen, Some((r.repo, r.owner)))).cloned())
    }
}
