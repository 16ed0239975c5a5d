//! GitHub's webhooks, and invalidations on demand, here and on every replica.

use super::Authorizer;
use crate::core::invalidation::Invalidation;
use crate::store::{Broadcast, StoreError};
use crate::webhook::{VerifiedDelivery, WebhookError, WebhookOutcome, WebhookStats};

impl Authorizer {
    /// Forgets facts here and on every other replica that shares the store, for a change on GitHub
    /// no webhook reports. Effective for the next check here at once, and on the others when the
    /// message arrives ([`AuthorizerBuilder::store`](crate::AuthorizerBuilder::store)'s `# Replicas`).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the other replicas could not be told; this one forgot all the same.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{Capability, Invalidation, Principal};
    /// use ghauthz::CheckRequest;
    /// let (bob, dash) = (world.user("bob").unwrap(), world.app("dash").unwrap());
    /// let principal = Principal::github(bob.clone());
    /// authz.check(&CheckRequest::new(&principal, &dash, Capability::Edit)).await.unwrap(); // asks GitHub, caches
    /// authz.invalidate(Invalidation::UserOnRepo(bob.id, dash.repo_id())).await.unwrap();
    /// assert!(authz.check_cached(&CheckRequest::new(&principal, &dash, Capability::Edit)).is_none()); // asks again
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn invalidate(&self, inv: Invalidation) -> Result<(), StoreError> {
        self.inner.cache.invalidate_here(inv);
        self.inner.store.publish(&Broadcast::invalidations(self.inner.cache.replica, vec![inv])).await
    }

    /// Forgets facts on this authorizer only ([`Authorizer::invalidate`](crate::Authorizer::invalidate) tells the other replicas
    /// too). Effective for the next check, including against a request that was in flight when it
    /// was called: a fact whose fetch started before a matching invalidation is never served from
    /// the cache.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{Capability, Invalidation, Principal};
    /// use ghauthz::CheckRequest;
    /// let (carol, dash) = (Principal::github(world.user("carol").unwrap()), world.app("dash").unwrap());
    /// authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap();
    /// authz.invalidate_local(Invalidation::Repo(dash.repo_id())); // every user's fact on acme/dashboard
    /// assert!(authz.check_cached(&CheckRequest::new(&carol, &dash, Capability::Edit)).is_none());
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn invalidate_local(&self, inv: Invalidation) {
        self.inner.cache.invalidate_here(inv);
    }

    /// Verifies a GitHub webhook delivery (its headers and raw body, as received) and applies it
    /// ([`Authorizer::apply_webhook`](crate::Authorizer::apply_webhook)). Needs [`AuthorizerBuilder::webhook_secret`](crate::AuthorizerBuilder::webhook_secret). A delivery
    /// seen before (GitHub redelivers with the same id) changes nothing.
    ///
    /// # Errors
    ///
    /// Fails with [`WebhookError`](crate::WebhookError): `NotConfigured` without a secret; `TooLarge` beyond
    /// [`MAX_WEBHOOK_BODY`](crate::MAX_WEBHOOK_BODY); `MissingSignature`, `Sha1Only`,
    /// `MalformedSignature`, `BadSignature` (kind `bad_signature`); `MissingHeader`,
    /// `InvalidDeliveryId` (kind `bad_request`); `Store` when the delivery was applied here but
    /// could not be recorded: answer GitHub with an error, so that it delivers again.
    ///
    /// # Security
    ///
    /// The signature (HMAC-SHA256, `X-Hub-Signature-256`) is checked in constant time before
    /// anything else of the delivery is read; nothing of a refused delivery is applied, and the
    /// cache is untouched.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # fn signed_with(secret: &str, event: &str, id: &str, body: &[u8]) -> http::HeaderMap {
    /// #     use hmac::Mac as _;
    /// #     let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    /// #     mac.update(body);
    /// #     let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    /// #     let mut headers = http::HeaderMap::new();
    /// #     headers.insert("x-github-event", event.parse().unwrap());
    /// #     headers.insert("x-github-delivery", id.parse().unwrap());
    /// #     headers.insert("x-hub-signature-256", signature.parse().unwrap());
    /// #     headers
    /// # }
    /// # let signed = |event: &str, id: &str, body: &[u8]| signed_with("s3cret", event, id, body);
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config())
    /// #     .webhook_secret(ghauthz::WebhookSecret::new("s3cret".into()).unwrap())
    /// #     .build()
    /// #     .unwrap();
    /// use ghauthz::{Invalidation, RepoId, UserId, WebhookOutcome};
    /// // carol's role on acme/dashboard (id 101) changed: forget that one fact.
    /// let body = br#"{"action":"edited","member":{"id":3},"repository":{"id":101}}"#;
    /// let outcome = authz.handle_webhook(&signed("member", "d-1", body), body).await.unwrap();
    /// assert_eq!(outcome, WebhookOutcome::Applied(vec![Invalidation::UserOnRepo(UserId(3), RepoId(101))]));
    /// let again = authz.handle_webhook(&signed("member", "d-1", body), body).await.unwrap();
    /// assert_eq!(again, WebhookOutcome::Duplicate);
    /// let forged = signed_with("guessed", "member", "d-2", body);
    /// assert_eq!(authz.handle_webhook(&forged, body).await.unwrap_err().kind(), "bad_signature");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn handle_webhook(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<WebhookOutcome, WebhookError> {
        let event = headers.get("x-github-event").and_then(|v| v.to_str().ok());
        let applied = match self.inner.webhooks.verify(headers, body) {
            Ok(delivery) => self.apply_webhook(&delivery).await,
            Err(e) => Err(e),
        };
        crate::telemetry::webhook(
            event,
            match &applied {
                Ok(WebhookOutcome::Applied(_)) => "applied",
                Ok(WebhookOutcome::Duplicate) => "duplicate",
                Ok(_) => "ignored",
                Err(_) => "refused",
            },
        );
        applied
    }

    /// Applies a verified delivery: turns it into the narrowest safe invalidations, records its id
    /// (a delivery seen before changes nothing), and applies them here and on every other replica.
    /// Unknown events are counted and ignored; a known event whose payload lacks the ids it needs
    /// invalidates everything. For a delivery verified elsewhere ([`WebhookVerifier::verify`](crate::WebhookVerifier::verify));
    /// [`Authorizer::handle_webhook`](crate::Authorizer::handle_webhook) does both.
    ///
    /// # Errors
    ///
    /// [`WebhookError::Store`](crate::WebhookError::Store) if the store cannot record the delivery: the invalidations are
    /// applied here anyway, and GitHub should be answered with an error, so that it delivers again.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # fn signed_with(secret: &str, event: &str, id: &str, body: &[u8]) -> http::HeaderMap {
    /// #     use hmac::Mac as _;
    /// #     let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    /// #     mac.update(body);
    /// #     let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    /// #     let mut headers = http::HeaderMap::new();
    /// #     headers.insert("x-github-event", event.parse().unwrap());
    /// #     headers.insert("x-github-delivery", id.parse().unwrap());
    /// #     headers.insert("x-hub-signature-256", signature.parse().unwrap());
    /// #     headers
    /// # }
    /// # let signed = |event: &str, id: &str, body: &[u8]| signed_with("s3cret", event, id, body);
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).build().unwrap();
    /// use ghauthz::{Invalidation, RepoId, WebhookOutcome, WebhookSecret, WebhookVerifier};
    /// let verifier = WebhookVerifier::new(WebhookSecret::new("s3cret".into()).unwrap());
    /// let body = br#"{"action":"privatized","repository":{"id":101}}"#;
    /// let delivery = verifier.verify(&signed("repository", "d-1", body), body).unwrap();
    /// let outcome = authz.apply_webhook(&delivery).await.unwrap();
    /// assert_eq!(outcome.applied(), [Invalidation::Repo(RepoId(101))]);
    /// let unknown = verifier.verify(&signed("deployment", "d-2", b"{}"), b"{}").unwrap();
    /// assert_eq!(authz.apply_webhook(&unknown).await.unwrap(), WebhookOutcome::UnknownEvent);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn apply_webhook(&self, delivery: &VerifiedDelivery) -> Result<WebhookOutcome, WebhookError> {
        let inner = &*self.inner;
        let Some(invalidations) = inner.webhooks.invalidations(delivery) else {
            return Ok(WebhookOutcome::UnknownEvent);
        };
        let broadcast = Broadcast::invalidations(inner.cache.replica, invalidations);
        let recorded = inner.store.record_delivery(delivery.id(), inner.clock.now(), &broadcast).await;
        if recorded == Ok(false) {
            inner.webhooks.count_duplicate();
            return Ok(WebhookOutcome::Duplicate);
        }
        // New, or not known to be old: forgetting here is always safe.
        for inv in &broadcast.invalidations {
            inner.cache.invalidate_here(*inv);
        }
        recorded.map_err(WebhookError::Store)?;
        // Heard only while deliveries to other replicas reach this one: the feed is heard before
        // and after (a feed lost in between has reset what this sets, or resets it now).
        if inner.cache.records.is_live() {
            inner.cache.facts.webhook_heard(inner.clock.now());
            if !inner.cache.records.is_live() {
                inner.cache.facts.webhooks_unheard();
            }
        }
        inner.webhooks.count_applied();
        Ok(WebhookOutcome::Applied(broadcast.invalidations))
    }

    /// The webhook counters since the authorizer was built ([`WebhookStats`]): deliveries applied,
    /// duplicates, unknown events, malformed payloads, and deliveries refused before anything was
    /// read (a rising `rejected` may be someone probing the endpoint, or a secret out of step).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).build().unwrap();
    /// let unsigned = http::HeaderMap::new();
    /// assert!(authz.handle_webhook(&unsigned, b"{}").await.is_err()); // no webhook secret configured
    /// assert_eq!(authz.webhook_stats().rejected, 1);
    /// assert_eq!(authz.webhook_stats().applied, 0);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn webhook_stats(&self) -> WebhookStats {
        self.inner.webhooks.stats()
    }
}
