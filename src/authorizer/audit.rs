//! Reading the audit log.

use super::Authorizer;
use crate::store::{AuditEvent, AuditFilter, StoreError};

impl Authorizer {
    /// The audit entries `filter` asks for, newest first: every change of state (deploy,
    /// visibility, delete, viewers, links, sign-ins) and every deploy and delete decision, each
    /// with who, what, when and its outcome. The log holds viewers' addresses while their apps
    /// exist (deleting an app keeps its entries without them): show it only to those who may
    /// see its viewers.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::store::{AuditAction, AuditFilter, AuditOutcome};
    /// use ghauthz::{AppId, ChangedBy, Principal};
    /// let dash = AppId("dash".into());
    /// let dave = ChangedBy::Principal(Principal::github(world.user("dave").unwrap())); // triage
    /// authz.delete_app(&dave, &dash).await.unwrap_err();
    /// let newest = authz.audit(&AuditFilter::new().for_app(dash).limit(1)).await.unwrap();
    /// assert_eq!((newest[0].action, newest[0].outcome), (AuditAction::Delete, AuditOutcome::Denied));
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the store fails.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.store.audit(filter).await
    }
}
