//! Reading the audit log.

use super::Authorizer;
use crate::store::{AuditEvent, AuditFilter, StoreError};

impl Authorizer {
    /// The audit log, oldest first: every entry [`Authorizer::audit`](crate::Authorizer::audit) can return. It holds
    /// viewers' addresses while their apps exist (deleting an app keeps its entries without
    /// them); show it only to those who may see its viewers.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store cannot answer (unavailable, or an entry it cannot read).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::store::AuditAction;
    /// use ghauthz::{AppId, ChangedBy};
    /// authz.add_viewer(&ChangedBy::Operator, &AppId("dash".into()), "eve@example.com").await.unwrap();
    /// let last = authz.audit_log().await.unwrap().pop().unwrap();
    /// assert_eq!((last.action, last.actor.as_str()), (AuditAction::ViewerAdded, "operator"));
    /// assert_eq!(last.email.unwrap().as_str(), "eve@example.com");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn audit_log(&self) -> Result<Vec<crate::store::AuditEvent>, StoreError> {
        self.inner.store.audit_log().await
    }

    /// The audit entries `filter` asks for, newest first: every change of state (deploy,
    /// visibility, delete, viewers, links, sign-ins) and every deploy and delete decision, each
    /// with who, what, when and its outcome.
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
