//! Building an authorizer: every setting, with its default.

use std::sync::Arc;
use std::time::Duration;

use super::{Authorizer, Inner};
use crate::cache::{CacheConfig, Caches, Facts, Records, Sessions, follow};
use crate::clock::SystemClock;
use crate::core::policy::Policy;
use crate::core::secret::{RandomnessUnavailable, WebhookSecret};
use crate::core::time::Clock;
use crate::github::{ClientBuildError, GithubConfig, OctocrabGithub};
use crate::google::{GoogleBuildError, GoogleConfig, GoogleVerifier};
use crate::store::{Bounded, MemoryStore, Store};
use crate::viewer::{LinkConfig, SessionConfig, SessionKeys, SignIn};
use crate::webhook::{WebhookVerifier, Webhooks};

/// Why [`AuthorizerBuilder::build`](crate::AuthorizerBuilder::build) failed; [`BuildError::kind`] names the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The GitHub client could not be built from its configuration.
    #[error(transparent)]
    Github(#[from] ClientBuildError),
    /// The Google sign-in client could not be built.
    #[error(transparent)]
    Google(#[from] GoogleBuildError),
    /// Called outside a Tokio runtime: the GitHub client's connection pool, and the task that
    /// follows a shared store's change feed, need one.
    #[error("an authorizer must be built inside a tokio runtime")]
    NoRuntime,
    /// The system's random source failed: no default session key could be drawn.
    #[error("no session key could be generated")]
    Keys(#[source] RandomnessUnavailable),
    /// The system's random source failed: no replica id (which tells this authorizer's
    /// messages on the change feed from the others') could be drawn.
    #[error("no replica id could be drawn")]
    ReplicaId(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl BuildError {
    /// A stable name, for logs and JSON: `github_client`, `google_client`, `no_runtime`,
    /// `no_randomness`.
    ///
    /// ```
    /// use ghauthz::{Authorizer, GithubAuth, GithubConfig, GithubToken};
    /// let github = GithubConfig::new(GithubAuth::Token(GithubToken::new("ghs_example".into())));
    /// let err = Authorizer::builder(github).build().unwrap_err(); // not inside a Tokio runtime
    /// assert_eq!(err.kind(), "no_runtime");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            BuildError::Github(_) => "github_client",
            BuildError::Google(_) => "google_client",
            BuildError::NoRuntime => "no_runtime",
            BuildError::Keys(_) | BuildError::ReplicaId(_) => "no_randomness",
        }
    }
}

/// Configures an [`Authorizer`](crate::Authorizer): start from [`Authorizer::builder`](crate::Authorizer::builder), set what differs from the
/// defaults, then [`AuthorizerBuilder::build`](crate::AuthorizerBuilder::build).
///
/// The defaults: [`Policy::default`], [`CacheConfig::default`](crate::CacheConfig::default), the system clock, a fresh
/// [`MemoryStore`], [`LinkConfig::default`] (links work 15 minutes, at most 5 per 15 minutes), one
/// random session key with one-hour sessions, no Google sign-in, no webhooks, and 5 s for any store
/// call.
///
/// ```
/// # #[cfg(feature = "world")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
/// # let world = ghauthz::world::World::load(path).unwrap();
/// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
/// # use ghauthz::store::prelude::*;
/// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
/// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
/// use std::time::Duration;
/// use ghauthz::{AppId, Authorizer, Capability, Policy, Principal, Role};
/// use ghauthz::CheckRequest;
/// let authz = Authorizer::builder(mock.github_config())
///     .store(store) // acme.toml's apps
///     .policy(Policy::default().with(Capability::Deploy, Role::Maintain))
///     .store_timeout(Duration::from_secs(2))
///     .build()
///     .unwrap();
/// let bob = Principal::github(world.user("bob").unwrap()); // maintain, through a team
/// assert!(authz.check(&CheckRequest::new(&bob, &AppId("dash".into()), Capability::Deploy)).await.unwrap().is_allowed());
/// # }
/// # #[cfg(not(feature = "world"))]
/// # fn main() {}
/// ```
#[derive(Debug)]
pub struct AuthorizerBuilder {
    github: GithubConfig,
    policy: Policy,
    cache: CacheConfig,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    links: LinkConfig,
    sessions: SessionConfig,
    keys: Option<SessionKeys>,
    google: Option<GoogleConfig>,
    mail: Option<crate::mail::MailConfig>,
    webhooks: Option<WebhookVerifier>,
    store_timeout: Duration,
}

impl AuthorizerBuilder {
    /// How long any one store call may take before it counts as *unavailable* (default 5 s): a
    /// check fails closed instead of waiting on a connection that died without a word.
    ///
    /// The bundled stores wait for a lock or a connection at most 2 s by themselves, inside this
    /// bound, and answer *unavailable* having changed nothing. A link's redemption is never cut off
    /// once its use is written: it is written within the bound or not at all, and then waits up to
    /// the bound again for its commit's answer ([`Redemption`]), so that a redemption reported
    /// *unavailable* has not used the link up.
    ///
    /// # Security
    ///
    /// The bound keeps a stalled database from holding checks open: past it, a check is a
    /// [`CheckError::Store`](crate::CheckError::Store), never an allow.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::prelude::*;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// use std::time::Duration;
    /// use ghauthz::{AppId, Authorizer, Capability, Principal};
    /// use ghauthz::CheckRequest;
    /// let authz = Authorizer::builder(mock.github_config())
    ///     .store(store)
    ///     .store_timeout(Duration::from_millis(500)) // a check waits at most 0.5 s per store call
    ///     .build()
    ///     .unwrap();
    /// let erin = Principal::github(world.user("erin").unwrap()); // admin on acme/dashboard
    /// assert!(authz.check(&CheckRequest::new(&erin, &AppId("dash".into()), Capability::Deploy)).await.unwrap().is_allowed());
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    ///
    /// [`Redemption`]: crate::store::Redemption
    pub fn store_timeout(mut self, limit: Duration) -> Self {
        self.store_timeout = limit;
        self
    }

    /// Accepts GitHub webhook deliveries signed with `secret` ([`Authorizer::handle_webhook`](crate::Authorizer::handle_webhook)): the
    /// secret set on the webhook in GitHub. Without it every delivery is refused,
    /// [`WebhookError::NotConfigured`](crate::WebhookError::NotConfigured).
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
    /// use ghauthz::{Authorizer, WebhookOutcome, WebhookSecret};
    /// let authz = Authorizer::builder(mock.github_config())
    ///     .webhook_secret(WebhookSecret::new("s3cret".into()).unwrap())
    ///     .build()
    ///     .unwrap();
    /// let body = br#"{"zen":"Design for failure."}"#;
    /// let headers = signed("ping", "d-1", body); // as GitHub sends it, signed with the secret
    /// assert_eq!(authz.handle_webhook(&headers, body).await.unwrap(), WebhookOutcome::Applied(vec![]));
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn webhook_secret(mut self, secret: WebhookSecret) -> Self {
        self.webhooks = Some(WebhookVerifier::new(secret));
        self
    }

    /// Accepts webhook deliveries signed with the current secret *or* `previous`, during a rotation
    /// ([`WebhookVerifier`](crate::WebhookVerifier)'s `# Rotation`): set [`AuthorizerBuilder::webhook_secret`](crate::AuthorizerBuilder::webhook_secret) first;
    /// without a current secret this enables nothing.
    ///
    /// # Security
    ///
    /// Both secrets are compared, in constant time, for every delivery, so timing does not tell
    /// which one matched. Drop the previous secret once GitHub signs with the new one only.
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
    /// use ghauthz::{Authorizer, WebhookSecret};
    /// let secret = |s: &str| WebhookSecret::new(s.into()).unwrap();
    /// let authz = Authorizer::builder(mock.github_config())
    ///     .webhook_secret(secret("new-secret"))
    ///     .previous_webhook_secret(secret("old-secret"))
    ///     .build()
    ///     .unwrap();
    /// let body = br#"{"zen":"Keep it logically awesome."}"#;
    /// assert!(authz.handle_webhook(&signed_with("old-secret", "ping", "d-1", body), body).await.is_ok());
    /// assert!(authz.handle_webhook(&signed_with("new-secret", "ping", "d-2", body), body).await.is_ok());
    /// let other = authz.handle_webhook(&signed_with("guessed", "ping", "d-3", body), body).await;
    /// assert_eq!(other.unwrap_err().kind(), "bad_signature");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn previous_webhook_secret(mut self, previous: WebhookSecret) -> Self {
        self.webhooks = self.webhooks.map(|v| v.with_previous(previous));
        self
    }

    /// Accepts Google sign-in ([`Authorizer::google_sign_in`](crate::Authorizer::google_sign_in)) for the client ids in `google`, with
    /// Google's keys fetched from its JWKS URL (and cached for their `Cache-Control` max-age). Off
    /// unless configured: Google sign-in is then refused, [`GoogleSignInError::NotConfigured`](crate::GoogleSignInError::NotConfigured).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// use ghauthz::Authorizer;
    /// let with = Authorizer::builder(mock.github_config()).google(mock.google_config().unwrap()).build().unwrap();
    /// let without = Authorizer::builder(mock.github_config()).build().unwrap();
    /// // Not an ID token: refused before any key is fetched.
    /// assert_eq!(with.verify_google_id_token("not-a-token").await.unwrap_err().kind(), "invalid");
    /// assert_eq!(without.verify_google_id_token("not-a-token").await.unwrap_err().kind(), "not_configured");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn google(mut self, google: GoogleConfig) -> Self {
        self.google = Some(google);
        self
    }

    /// Sends sign-in links by email ([`MailConfig`](crate::mail::MailConfig): a
    /// [`Mailer`](crate::mail::Mailer) and where the sign-in pages are served):
    /// [`Authorizer::send_link`](crate::Authorizer::send_link) issues and sends in one call, and
    /// the sign-in pages offer a new link in place of a used or expired one.
    pub fn mail(mut self, mail: crate::mail::MailConfig) -> Self {
        self.mail = Some(mail);
        self
    }

    /// How long sign-in links work, and how many one (app, address) may be issued ([`LinkConfig`];
    /// default: 15 minutes, at most 5 per 15 minutes).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::prelude::*;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// use std::time::Duration;
    /// use ghauthz::store::IssueLimit;
    /// use ghauthz::{AppId, Authorizer, LinkConfig};
    /// let links = LinkConfig::default().with_issue_limit(IssueLimit::new(1, Duration::from_secs(3600)));
    /// let authz = Authorizer::builder(mock.github_config()).store(store).links(links).build().unwrap();
    /// let dash = AppId("dash".into());
    /// authz.issue_link(&dash, "dana@example.com").await.unwrap();
    /// let again = authz.issue_link(&dash, "dana@example.com").await.unwrap_err();
    /// assert_eq!(again.kind(), "rate_limited");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn links(mut self, links: LinkConfig) -> Self {
        self.links = links;
        self
    }

    /// The keys that sign viewer sessions, and how long a session lasts ([`SessionConfig`]). By
    /// default one random key and one hour: sessions then neither outlive the process nor verify on
    /// another replica. Give every replica the same [`SessionKeys`] (for example from a keys file,
    /// `SessionKeys::load_or_create` with the `keys-file` feature).
    ///
    /// # Security
    ///
    /// Whoever holds a key can mint a session for any invited address: keep keys out of logs and
    /// source control (their `Debug` is redacted), and retire a leaked one at once
    /// ([`Authorizer::set_session_keys`](crate::Authorizer::set_session_keys)).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::prelude::*;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// use std::time::Duration;
    /// use ghauthz::{AppId, Authorizer, SessionConfig, SessionKeys};
    /// let keys = SessionKeys::generate().unwrap(); // in production: the same keys on every replica
    /// let ttl = SessionConfig::default().with_ttl(Duration::from_secs(15 * 60));
    /// let replica = || {
    ///     Authorizer::builder(mock.github_config()).store(store.clone()).sessions(keys.clone(), ttl.clone()).build()
    /// };
    /// let (a, b) = (replica().unwrap(), replica().unwrap());
    /// let link = a.issue_link(&AppId("dash".into()), "dana@example.com").await.unwrap();
    /// let issued = a.redeem_link(link.token.expose_secret(), None).await.unwrap();
    /// let session = b.verify_session(issued.token.expose_secret()).unwrap(); // minted by a, verified by b
    /// assert_eq!(session.email().as_str(), "dana@example.com");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn sessions(mut self, keys: SessionKeys, config: SessionConfig) -> Self {
        self.keys = Some(keys);
        self.sessions = config;
        self
    }

    /// Where apps, viewer grants, links and the audit log live (default: a fresh [`MemoryStore`],
    /// empty and this authorizer's alone). The control plane deploys its apps there
    /// ([`Authorizer::deploy_app`]); checks by app id read them.
    ///
    /// # Replicas
    ///
    /// Authorizers that share a store hear one another's invalidations and every change to apps and
    /// grants through the store's change feed (see [`crate::store`]): a
    /// [`PgStore`](crate::store::PgStore)'s `LISTEN/NOTIFY`, typically within milliseconds; an
    /// [`SqliteStore`](crate::store::SqliteStore)'s change log, within 25 ms, from any process on
    /// the file; a shared [`MemoryStore`](crate::store::MemoryStore) at once. A change made through
    /// an authorizer holds there before the call that made it returns. When the feed drops, the
    /// authorizer forgets everything it cached, at once and again once it listens anew, since it
    /// may have missed messages in between; until then it serves no cached app or grant (it reads
    /// the store at every check) and caches GitHub facts as usual, within the lifetimes of
    /// [`CacheConfig`](crate::CacheConfig).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::prelude::*;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// use ghauthz::{AppId, Authorizer, Capability, Principal};
    /// use ghauthz::CheckRequest;
    /// let (erin, dash) = (Principal::github(world.user("erin").unwrap()), AppId("dash".into()));
    /// let seeded = Authorizer::builder(mock.github_config()).store(store).build().unwrap();
    /// assert!(seeded.check(&CheckRequest::new(&erin, &dash, Capability::Deploy)).await.unwrap().is_allowed());
    /// let empty = Authorizer::builder(mock.github_config()).build().unwrap(); // a MemoryStore of its own
    /// let d = empty.check(&CheckRequest::new(&erin, &dash, Capability::Deploy)).await.unwrap();
    /// assert_eq!(d.reason().kind(), "unknown_app");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = store;
        self
    }

    /// Which GitHub role each capability needs, and who manages viewers (default:
    /// [`Policy::default`], the table in the README: `admin` deploys and deletes, `write` edits and
    /// views private apps).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::prelude::*;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// use ghauthz::{Authorizer, Capability, Policy, Principal, Role};
    /// use ghauthz::CheckRequest;
    /// let (bob, dash) = (Principal::github(world.user("bob").unwrap()), world.app("dash").unwrap()); // maintain
    /// let strict = Authorizer::builder(mock.github_config()).build().unwrap();
    /// assert!(!strict.check(&CheckRequest::new(&bob, &dash, Capability::Deploy)).await.unwrap().is_allowed());
    /// let policy = Policy::default().with(Capability::Deploy, Role::Maintain);
    /// let relaxed = Authorizer::builder(mock.github_config()).policy(policy).build().unwrap();
    /// assert!(relaxed.check(&CheckRequest::new(&bob, &dash, Capability::Deploy)).await.unwrap().is_allowed());
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Cache lifetimes and bounds ([`CacheConfig`](crate::CacheConfig), whose `# Staleness` says what each one bounds):
    /// shorter lifetimes give fresher answers for more GitHub requests.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::prelude::*;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// use std::{sync::Arc, time::Duration};
    /// use ghauthz::{Authorizer, CacheConfig, Capability, ManualClock, Principal, Source};
    /// use ghauthz::CheckRequest;
    /// let clock = ManualClock::new(world.now().unwrap());
    /// let authz = Authorizer::builder(mock.github_config())
    ///     .cache(CacheConfig::default().with_role_ttl(Duration::from_secs(30)))
    ///     .clock(Arc::new(clock.clone()))
    ///     .build()
    ///     .unwrap();
    /// let (carol, dash) = (Principal::github(world.user("carol").unwrap()), world.app("dash").unwrap());
    /// assert_eq!(authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap().source(), Source::Github);
    /// clock.advance(Duration::from_secs(20));
    /// assert_eq!(authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap().source(), Source::Cache);
    /// clock.advance(Duration::from_secs(11)); // past the 30 s lifetime: the next check asks again
    /// assert!(authz.check_cached(&CheckRequest::new(&carol, &dash, Capability::Edit)).is_none());
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn cache(mut self, cache: CacheConfig) -> Self {
        self.cache = cache;
        self
    }

    /// The clock every lifetime is counted on: cached facts, links, sessions, Google ID tokens
    /// (default: the system clock). A [`ManualClock`](crate::ManualClock) puts time in a test's
    /// hands.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::prelude::*;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// use std::{sync::Arc, time::Duration};
    /// use ghauthz::{AppId, Authorizer, ManualClock};
    /// let clock = ManualClock::new(world.now().unwrap());
    /// let authz = Authorizer::builder(mock.github_config())
    ///     .store(store)
    ///     .clock(Arc::new(clock.clone()))
    ///     .build()
    ///     .unwrap();
    /// let link = authz.issue_link(&AppId("dash".into()), "dana@example.com").await.unwrap();
    /// clock.advance(Duration::from_secs(15 * 60 + 1)); // links work for 15 minutes
    /// let err = authz.inspect_link(link.token.expose_secret()).await.unwrap_err();
    /// assert_eq!(err.kind(), "expired");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the authorizer. Sends nothing: the first check that misses asks GitHub. Must be
    /// called inside a Tokio runtime. If the store is shared by replicas ([`ChangeFeed::subscribe`](crate::store::ChangeFeed::subscribe)),
    /// the authorizer starts listening to their invalidations, in a task that ends when the last
    /// clone of the authorizer is dropped.
    ///
    /// # Errors
    ///
    /// [`BuildError::NoRuntime`] outside a Tokio runtime; [`BuildError::Github`] or
    /// [`BuildError::Google`] if the GitHub or the Google client cannot be built from its
    /// configuration; [`BuildError::Keys`] or [`BuildError::ReplicaId`] if the
    /// system's random source fails.
    ///
    /// ```
    /// use ghauthz::{Authorizer, GithubAuth, GithubConfig, GithubToken};
    /// let github = || GithubConfig::new(GithubAuth::Token(GithubToken::new("ghs_example".into())));
    /// assert_eq!(Authorizer::builder(github()).build().unwrap_err().kind(), "no_runtime");
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// let authz = runtime.block_on(async { Authorizer::builder(github()).build() }).unwrap();
    /// assert_eq!(authz.stats().misses, 0, "nothing was asked of GitHub yet");
    /// ```
    pub fn build(self) -> Result<Authorizer, BuildError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BuildError::NoRuntime);
        }
        let github = Arc::new(OctocrabGithub::new(self.github, self.clock.clone())?);
        let keys = match self.keys {
            Some(k) => k,
            None => SessionKeys::generate().map_err(BuildError::Keys)?,
        };
        let google =
            self.google.map(|g| GoogleVerifier::new(g, self.clock.clone())).transpose().map_err(BuildError::Google)?;
        let signin = SignIn {
            links: self.links,
            keys: parking_lot::RwLock::new(keys),
            sessions: self.sessions,
            google,
            mail: self.mail,
        };
        let mut replica = [0u8; 8];
        getrandom::getrandom(&mut replica).map_err(|e| BuildError::ReplicaId(Box::new(e)))?;
        // 0 is the origin of the store's own announcements.
        let replica = u64::from_le_bytes(replica) | 1;
        let cfg = self.cache;
        let least = self.policy.least_role();
        let store: Arc<dyn Store> = Arc::new(Bounded::new(self.store, self.store_timeout));
        let feed = store.subscribe();
        let cache = Caches {
            records: Records::new(cfg.capacity, cfg.record_ttl),
            sessions: Sessions::new(cfg.session_capacity),
            facts: Facts::new(cfg, self.clock.clone(), github, least, store.clone()),
            replica,
        };
        let inner = Arc::new(Inner {
            policy: self.policy,
            clock: self.clock,
            cache,
            store,
            signin,
            webhooks: Webhooks::new(self.webhooks),
            feed: std::sync::OnceLock::new(),
        });
        if let Some(mut rx) = feed {
            while let Ok(event) = rx.try_recv() {
                inner.cache.heard_before_start(&event);
            }
            let task = tokio::spawn(follow(Arc::downgrade(&inner), rx));
            let _ = inner.feed.set(tokio_util::task::AbortOnDropHandle::new(task));
        }
        Ok(Authorizer { inner })
    }
}

impl Authorizer {
    /// A builder for an authorizer that asks GitHub as `github` says (a token, a GitHub App, or
    /// users' own tokens; the API base), with every other setting at its default
    /// ([`AuthorizerBuilder`](crate::AuthorizerBuilder)).
    ///
    /// ```
    /// use ghauthz::{Authorizer, BuildError, GithubAuth, GithubConfig, GithubToken, Policy};
    /// let github = || GithubConfig::new(GithubAuth::Token(GithubToken::new("ghs_example".into())));
    /// // Outside a runtime: a clear error, not a panic.
    /// assert!(matches!(Authorizer::builder(github()).build(), Err(BuildError::NoRuntime)));
    /// let rt = tokio::runtime::Runtime::new().unwrap();
    /// let _guard = rt.enter();
    /// let authz = Authorizer::builder(github()).policy(Policy::default()).build().unwrap();
    /// assert_eq!(authz.stats().hits, 0);
    /// ```
    pub fn builder(github: GithubConfig) -> AuthorizerBuilder {
        AuthorizerBuilder {
            github,
            policy: Policy::default(),
            cache: CacheConfig::default(),
            clock: Arc::new(SystemClock),
            store: Arc::new(MemoryStore::new()),
            links: LinkConfig::default(),
            sessions: SessionConfig::default(),
            keys: None,
            google: None,
            mail: None,
            webhooks: None,
            store_timeout: Duration::from_secs(5),
        }
    }
}
