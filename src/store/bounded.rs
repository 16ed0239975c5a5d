//! Every store call answers within a bound.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{
    Actor, AppRecord, AppStore, AuditEvent, AuditFilter, AuditStore, Broadcast, ChangeFeed, DeletedApp, DeployOutcome,
    FeedEvent, IssueLimit, IssueOutcome, LinkRecord, LinkStore, Redemption, Store, StoreError, SupportId, SupportStore,
    SupportWindow, ViewerStore,
};
use crate::core::email::Email;
use crate::core::ids::{AppId, GrantId, UserId};
use crate::core::policy::Visibility;
use crate::core::time::Timestamp;

/// A store whose every call answers within `limit`: a call still waiting then (on a connection
/// that died without a word, or a database that stopped answering) is *unavailable*, so that a
/// check fails closed instead of hanging. What the abandoned call was doing is rolled back with
/// its transaction.
#[derive(Debug)]
pub(crate) struct Bounded {
    inner: Arc<dyn Store>,
    limit: Duration,
}

impl Bounded {
    pub(crate) fn new(inner: Arc<dyn Store>, limit: Duration) -> Self {
        Self { inner, limit }
    }

    async fn within<T>(&self, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        self.within_limit(self.limit, call).await
    }

    async fn within_limit<T>(
        &self,
        limit: Duration,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(limit, call).await {
            Ok(answer) => answer,
            Err(_) => Err(StoreError::Unavailable(format!("no answer within {} ms", limit.as_millis()).into())),
        }
    }
}

#[async_trait]
impl AppStore for Bounded {
    async fn seed_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        self.within(self.inner.seed_app(app)).await
    }

    async fn app(&self, id: &AppId) -> Result<Option<AppRecord>, StoreError> {
        self.within(self.inner.app(id)).await
    }

    async fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        self.within(self.inner.apps()).await
    }

    async fn deploy_app(&self, app: &AppRecord, event: &AuditEvent) -> Result<DeployOutcome, StoreError> {
        self.within(self.inner.deploy_app(app, event)).await
    }

    async fn set_visibility(
        &self,
        app: &AppId,
        visibility: Visibility,
        event: &AuditEvent,
    ) -> Result<Option<bool>, StoreError> {
        self.within(self.inner.set_visibility(app, visibility, event)).await
    }

    async fn delete_app(&self, app: &AppId, event: &AuditEvent) -> Result<bool, StoreError> {
        self.within(self.inner.delete_app(app, event)).await
    }

    async fn delete_account(&self, user: UserId, at: Timestamp) -> Result<Vec<AppId>, StoreError> {
        self.within(self.inner.delete_account(user, at)).await
    }

    async fn deleted_apps(&self) -> Result<Vec<DeletedApp>, StoreError> {
        self.within(self.inner.deleted_apps()).await
    }

    async fn seed_once(&self, apps: &[(AppRecord, Vec<Email>)], at: Timestamp) -> Result<bool, StoreError> {
        self.within(self.inner.seed_once(apps, at)).await
    }
}

#[async_trait]
impl ViewerStore for Bounded {
    async fn add_viewer(&self, app: &AppId, email: &Email, actor: &Actor, at: Timestamp) -> Result<bool, StoreError> {
        self.within(self.inner.add_viewer(app, email, actor, at)).await
    }

    async fn remove_viewer(
        &self,
        app: &AppId,
        email: &Email,
        actor: &Actor,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.within(self.inner.remove_viewer(app, email, actor, at)).await
    }

    async fn viewers(&self, app: &AppId) -> Result<Vec<Email>, StoreError> {
        self.within(self.inner.viewers(app)).await
    }

    async fn grant(&self, app: &AppId, email: &Email) -> Result<Option<GrantId>, StoreError> {
        self.within(self.inner.grant(app, email)).await
    }
}

#[async_trait]
impl LinkStore for Bounded {
    async fn issue_link(&self, link: &LinkRecord, limit: IssueLimit) -> Result<IssueOutcome, StoreError> {
        self.within(self.inner.issue_link(link, limit)).await
    }

    async fn link(&self, hash: &[u8; 32]) -> Result<Option<LinkRecord>, StoreError> {
        self.within(self.inner.link(hash)).await
    }

    /// The redemption keeps to its own bounds ([`Redemption`]): the use is written within the
    /// bound or not at all, and a written use waits for its commit's answer up to the bound
    /// again. Cutting it off here, mid-commit, could report *unavailable* for a link that was
    /// used; only a store that ignores the bounds is cut off, at three times the bound.
    async fn use_link(&self, redemption: &Redemption) -> Result<bool, StoreError> {
        let redemption = redemption.clone().within(self.limit);
        self.within_limit(self.limit.saturating_mul(3), self.inner.use_link(&redemption)).await
    }
}

#[async_trait]
impl SupportStore for Bounded {
    async fn open_support(&self, window: &SupportWindow, event: &AuditEvent) -> Result<Option<SupportId>, StoreError> {
        self.within(self.inner.open_support(window, event)).await
    }

    async fn revoke_support(
        &self,
        app: &AppId,
        agent: Option<&str>,
        at: Timestamp,
        event: &AuditEvent,
    ) -> Result<u32, StoreError> {
        self.within(self.inner.revoke_support(app, agent, at, event)).await
    }

    async fn support_windows(&self, app: &AppId) -> Result<Vec<SupportWindow>, StoreError> {
        self.within(self.inner.support_windows(app)).await
    }
}

#[async_trait]
impl AuditStore for Bounded {
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        self.within(self.inner.audit(filter)).await
    }

    async fn record(&self, event: &AuditEvent, owner: Option<UserId>) -> Result<(), StoreError> {
        self.within(self.inner.record(event, owner)).await
    }
}

#[async_trait]
impl ChangeFeed for Bounded {
    async fn record_delivery(&self, id: &str, at: Timestamp, broadcast: &Broadcast) -> Result<bool, StoreError> {
        self.within(self.inner.record_delivery(id, at, broadcast)).await
    }

    async fn publish(&self, broadcast: &Broadcast) -> Result<(), StoreError> {
        self.within(self.inner.publish(broadcast)).await
    }

    fn subscribe(&self) -> Option<mpsc::Receiver<FeedEvent>> {
        self.inner.subscribe()
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

#[async_trait]
impl super::FactStore for Bounded {
    async fn fact_epoch(&self) -> Result<u64, StoreError> {
        self.within(self.inner.fact_epoch()).await
    }

    async fn put_roster(&self, roster: &super::SharedRoster) -> Result<(), StoreError> {
        self.within(self.inner.put_roster(roster)).await
    }

    async fn roster(&self, repo: crate::core::ids::RepoId) -> Result<Option<super::SharedRoster>, StoreError> {
        self.within(self.inner.roster(repo)).await
    }

    async fn put_repo(&self, repo: &super::SharedRepo) -> Result<(), StoreError> {
        self.within(self.inner.put_repo(repo)).await
    }

    async fn repo(&self, coords: &crate::core::ids::RepoCoords) -> Result<Option<super::SharedRepo>, StoreError> {
        self.within(self.inner.repo(coords)).await
    }
}
