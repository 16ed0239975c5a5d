//! The facade: policy, clock, GitHub and the cache, wired together.

mod checks;
mod lifecycle;
mod support;

pub use lifecycle::Deployment;
pub use support::SupportGrant;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::cache::{CacheConfig, CacheStats, Consistency, Counters, Facts, Records, Sessions};
use crate::clock::SystemClock;
use crate::core::check::{AppSeen, Asked, Audited, Facts as Gathered, Missing, Subject, decide};
use crate::core::decision::Decision;
use crate::core::email::{Email, EmailError};
use crate::core::ids::{App, AppId, RepoCoords, UserId};
use crate::core::invalidation::Invalidation;
use crate::core::policy::Policy;
use crate::core::principal::Principal;
use crate::core::secret::{GithubToken, RandomnessUnavailable, WebhookSecret};
use crate::core::session::{Session, SessionError};
use crate::core::time::Clock;
use crate::error::CheckError;
use crate::github::{ClientBuildError, GithubConfig, OctocrabGithub};
use crate::google::{GoogleBuildError, GoogleConfig, GoogleIdentity, GoogleVerifier};
use crate::store::{Actor, AuditAction, Bounded, Broadcast, Change, FeedEvent, MemoryStore, Store, StoreError};
use crate::viewer::{
    GoogleSignInError, IssuedLink, IssuedSession, LinkConfig, LinkError, LinkInfo, SessionConfig, SessionKeys, SignIn,
};
use crate::webhook::{VerifiedDelivery, WebhookError, WebhookOutcome, WebhookStats, WebhookVerifier, Webhooks};

/// Who changes an app's viewers or deletes the app: the operator, or a principal the policy must
/// allow. The audit log ([`Authorizer::audit_log`]) records which: `operator` or `github:<id>`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ChangedBy {
    /// The control plane acting on its own authority (an admin tool, a migration): nothing is
    /// checked, and the change is recorded as `operator`. Never pass it on a user's behalf.
    Operator,
    /// A principal acting for themselves: allowed only for a GitHub user who holds the policy's
    /// `sharing` role (to manage viewers) or the `delete` capability (to delete) on the app's
    /// repository; anyone else is [`ManageError::Denied`].
    Principal(Principal),
}

/// What [`Authorizer::add_viewer`] or [`Authorizer::remove_viewer`] did: the app, the address as
/// stored, and whether anything changed (both calls are idempotent, so retrying is safe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerChange {
    /// The app whose viewers were changed.
    pub app: AppId,
    /// The address as stored, trimmed and lowercased ([`Email::parse`]): send links to this one,
    /// not to what was typed.
    pub email: Email,
    /// Whether anything changed: `false` when adding an address already invited, or removing one
    /// that was not.
    pub changed: bool,
}

/// Why [`Authorizer::add_viewer`], [`Authorizer::remove_viewer`], [`Authorizer::viewers`],
/// [`Authorizer::deploy_app`], [`Authorizer::set_visibility`] or [`Authorizer::delete_app`] was
/// refused or could not be done; [`ManageError::kind`] names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// No app with this id in the store; nothing was changed.
    #[error("no app `{0}`")]
    UnknownApp(AppId),
    /// The address was refused by [`Email::parse`] (checked first, before the app is looked up);
    /// the [`EmailError`] says why.
    #[error("invalid email address: {0}")]
    InvalidEmail(#[from] EmailError),
    /// The principal may not do this to the app: below the role the policy asks for, a viewer, or
    /// nobody signed in. The decision says why, as a check would; nothing was changed.
    #[error("not allowed on `{app}` ({})", decision.reason().kind())]
    Denied {
        /// The app the change was refused on.
        app: AppId,
        /// The decision that refused it, with its [`Reason`] (for example `github_role`, with the
        /// role found and the role required).
        decision: Box<Decision>,
    },
    /// Could not decide, or could not write: GitHub or the store failed ([`CheckError`]). A change
    /// may have been written before the store failed; retrying is safe.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// A deployment's `app`, `branch` or `main_file` (named) breaks its rule
    /// ([`valid_app_id`](crate::valid_app_id), [`valid_branch`](crate::valid_branch),
    /// [`valid_main_file`](crate::valid_main_file)); nothing was asked or written.
    #[error("invalid deployment: {}", deployment_rule(.0))]
    InvalidDeployment(&'static str),
    /// GitHub has no repository at the deployment's coordinates that may be seen.
    #[error("no repository `{0}` on GitHub")]
    RepoNotFound(RepoCoords),
    /// An app with this id is deployed from other coordinates; nothing was changed.
    #[error("an app `{0}` exists, deployed from elsewhere")]
    AppExists(AppId),
    /// A support grant's field (named) is refused: no capability, or `deploy` or `delete`; a
    /// duration of zero or over 7 days; an agent that is not an agent's name; an empty, overlong
    /// or control-character reason. Nothing was asked or written.
    #[error("invalid support grant: `{0}` is refused")]
    InvalidSupport(&'static str),
}

/// The rule a deployment's field breaks, for [`ManageError::InvalidDeployment`]'s message (the
/// value is not repeated).
fn deployment_rule(field: &str) -> String {
    use crate::core::deployment::{APP_ID_RULE, BRANCH_RULE, MAIN_FILE_RULE};
    let rule = match field {
        "app" => APP_ID_RULE,
        "branch" => BRANCH_RULE,
        "main_file" => MAIN_FILE_RULE,
        _ => "what the field's rule says",
    };
    format!("`{field}`: expected {rule}")
}

impl ManageError {
    /// A stable name, for logs and JSON: `unknown_app`, `invalid_email`, `denied` (the decision
    /// says why), `invalid_deployment`, `repo_not_found`, `app_exists`, `invalid_support`, or
    /// [`CheckError::kind`].
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).store(store).build().unwrap();
    /// use ghauthz::{AppId, ChangedBy, Principal};
    /// let dave = ChangedBy::Principal(Principal::github(world.user("dave").unwrap())); // triage
    /// let err = authz.delete_app(&dave, &AppId("dash".into())).await.unwrap_err();
    /// assert_eq!(err.kind(), "denied");
    /// let err = authz.delete_app(&ChangedBy::Operator, &AppId("nope".into())).await.unwrap_err();
    /// assert_eq!(err.kind(), "unknown_app");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            ManageError::UnknownApp(_) => "unknown_app",
            ManageError::InvalidEmail(_) => "invalid_email",
            ManageError::Denied { .. } => "denied",
            ManageError::Check(e) => e.kind(),
            ManageError::InvalidDeployment(_) => "invalid_deployment",
            ManageError::RepoNotFound(_) => "repo_not_found",
            ManageError::AppExists(_) => "app_exists",
            ManageError::InvalidSupport(_) => "invalid_support",
        }
    }
}

/// Why [`AuthorizerBuilder::build`] failed; [`BuildError::kind`] names the cause.
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

/// Configures an [`Authorizer`]: start from [`Authorizer::builder`], set what differs from the
/// defaults, then [`AuthorizerBuilder::build`].
///
/// The defaults: [`Policy::default`], [`CacheConfig::default`], the system clock, a fresh
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
/// # use ghauthz::store::Store as _;
/// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
/// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
/// use std::time::Duration;
/// use ghauthz::{AppId, Authorizer, Capability, Policy, Principal, Role};
/// let authz = Authorizer::builder(mock.github_config())
///     .store(store) // acme.toml's apps
///     .policy(Policy::default().with(Capability::Deploy, Role::Maintain))
///     .store_timeout(Duration::from_secs(2))
///     .build()
///     .unwrap();
/// let bob = Principal::github(world.user("bob").unwrap()); // maintain, through a team
/// assert!(authz.check_app(&bob, &AppId("dash".into()), Capability::Deploy).await.unwrap().is_allowed());
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
    /// [`CheckError::Store`], never an allow.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// use std::time::Duration;
    /// use ghauthz::{AppId, Authorizer, Capability, Principal};
    /// let authz = Authorizer::builder(mock.github_config())
    ///     .store(store)
    ///     .store_timeout(Duration::from_millis(500)) // a check waits at most 0.5 s per store call
    ///     .build()
    ///     .unwrap();
    /// let erin = Principal::github(world.user("erin").unwrap()); // admin on acme/dashboard
    /// assert!(authz.check_app(&erin, &AppId("dash".into()), Capability::Deploy).await.unwrap().is_allowed());
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

    /// Accepts GitHub webhook deliveries signed with `secret` ([`Authorizer::handle_webhook`]): the
    /// secret set on the webhook in GitHub. Without it every delivery is refused,
    /// [`WebhookError::NotConfigured`].
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
    /// ([`WebhookVerifier`]'s `# Rotation`): set [`AuthorizerBuilder::webhook_secret`] first;
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

    /// Accepts Google sign-in ([`Authorizer::google_sign_in`]) for the client ids in `google`, with
    /// Google's keys fetched from its JWKS URL (and cached for their `Cache-Control` max-age). Off
    /// unless configured: Google sign-in is then refused, [`GoogleSignInError::NotConfigured`].
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
    /// # use ghauthz::store::Store as _;
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
    /// ([`Authorizer::set_session_keys`]).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
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
    /// empty and this authorizer's alone). The control plane records its apps there
    /// ([`Store::put_app`]); checks by app id read them.
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
    /// [`CacheConfig`].
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// use ghauthz::{AppId, Authorizer, Capability, Principal};
    /// let (erin, dash) = (Principal::github(world.user("erin").unwrap()), AppId("dash".into()));
    /// let seeded = Authorizer::builder(mock.github_config()).store(store).build().unwrap();
    /// assert!(seeded.check_app(&erin, &dash, Capability::Deploy).await.unwrap().is_allowed());
    /// let empty = Authorizer::builder(mock.github_config()).build().unwrap(); // a MemoryStore of its own
    /// let d = empty.check_app(&erin, &dash, Capability::Deploy).await.unwrap();
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
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// use ghauthz::{Authorizer, Capability, Policy, Principal, Role};
    /// let (bob, dash) = (Principal::github(world.user("bob").unwrap()), world.app("dash").unwrap()); // maintain
    /// let strict = Authorizer::builder(mock.github_config()).build().unwrap();
    /// assert!(!strict.check(&bob, &dash, Capability::Deploy).await.unwrap().is_allowed());
    /// let policy = Policy::default().with(Capability::Deploy, Role::Maintain);
    /// let relaxed = Authorizer::builder(mock.github_config()).policy(policy).build().unwrap();
    /// assert!(relaxed.check(&bob, &dash, Capability::Deploy).await.unwrap().is_allowed());
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Cache lifetimes and bounds ([`CacheConfig`], whose `# Staleness` says what each one bounds):
    /// shorter lifetimes give fresher answers for more GitHub requests.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// use std::{sync::Arc, time::Duration};
    /// use ghauthz::{Authorizer, CacheConfig, Capability, ManualClock, Principal, Source};
    /// let clock = ManualClock::new(world.now().unwrap());
    /// let authz = Authorizer::builder(mock.github_config())
    ///     .cache(CacheConfig::default().with_role_ttl(Duration::from_secs(30)))
    ///     .clock(Arc::new(clock.clone()))
    ///     .build()
    ///     .unwrap();
    /// let (carol, dash) = (Principal::github(world.user("carol").unwrap()), world.app("dash").unwrap());
    /// assert_eq!(authz.check(&carol, &dash, Capability::Edit).await.unwrap().source(), Source::Github);
    /// clock.advance(Duration::from_secs(20));
    /// assert_eq!(authz.check(&carol, &dash, Capability::Edit).await.unwrap().source(), Source::Cache);
    /// clock.advance(Duration::from_secs(11)); // past the 30 s lifetime: the next check asks again
    /// assert!(authz.check_cached(&carol, &dash, Capability::Edit).is_none());
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
    /// # use ghauthz::store::Store as _;
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
    /// called inside a Tokio runtime. If the store is shared by replicas ([`Store::subscribe`]),
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
        let signin =
            SignIn { links: self.links, keys: parking_lot::RwLock::new(keys), sessions: self.sessions, google };
        let mut replica = [0u8; 8];
        getrandom::getrandom(&mut replica).map_err(|e| BuildError::ReplicaId(Box::new(e)))?;
        // 0 is the origin of the store's own announcements.
        let replica = u64::from_le_bytes(replica) | 1;
        let cfg = self.cache;
        let least = self.policy.least_role();
        let store: Arc<dyn Store> = Arc::new(Bounded::new(self.store, self.store_timeout));
        let feed = store.subscribe();
        let inner = Arc::new(Inner {
            policy: self.policy,
            clock: self.clock.clone(),
            records: Records::new(cfg.capacity, cfg.record_ttl),
            sessions: Sessions::new(cfg.session_capacity),
            facts: Facts::new(cfg, self.clock, github, least),
            store,
            signin,
            replica,
            webhooks: Webhooks::new(self.webhooks),
            feed: std::sync::OnceLock::new(),
        });
        if let Some(mut rx) = feed {
            // What the feed says already (the in-memory store says `Listening` at once) is applied
            // here: nothing is cached yet, so there is nothing to forget.
            while let Ok(event) = rx.try_recv() {
                match event {
                    FeedEvent::Listening | FeedEvent::Lost => {
                        inner.records.set_live(event == FeedEvent::Listening);
                        Counters::bump(&inner.facts.counters.resyncs);
                    }
                    FeedEvent::Broadcast(_) => {}
                }
            }
            let task = tokio::spawn(follow_feed(Arc::downgrade(&inner), rx));
            let _ = inner.feed.set(tokio_util::task::AbortOnDropHandle::new(task));
        }
        Ok(Authorizer { inner })
    }
}

/// Decides who may view, edit, deploy and delete apps deployed from GitHub repositories, from
/// GitHub roles kept in a TTL cache and from invited viewers kept in a [`Store`].
///
/// Cheap to clone; clones share the cache, the store and the counters. Build one with
/// [`Authorizer::builder`], inside a Tokio runtime.
///
/// - [Checking](#checking)
/// - [The request path](#the-request-path)
/// - [Viewers and sign-in](#viewers-and-sign-in)
/// - [Managing apps](#managing-apps)
/// - [Webhooks and replicas](#webhooks-and-replicas)
/// - [Staleness](#staleness)
/// - [Concurrent calls](#concurrent-calls)
/// - [Errors](#errors)
/// - [Security](#security)
///
/// # Checking
///
/// [`Authorizer::check`] answers "may this [`Principal`] do this [`Capability`] to this [`App`]?"
/// with a [`Decision`] that carries its [`Reason`] and its [`Source`]; the [`Policy`]
/// ([`Authorizer::policy`]) says which GitHub role each capability needs.
/// [`Authorizer::check_cached`] answers from memory alone, or not at all.
///
/// # The request path
///
/// What a control plane calls on every page load takes an app's **id**: [`Authorizer::check_app`]
/// for a GitHub user (or anybody), [`Authorizer::check_session`] for a viewer's session token.
/// Their `_cached` forms are synchronous and allocation-free on a hit; their `_with` forms take
/// [`Consistency::Fresh`] to rest on nothing cached.
///
/// # Viewers and sign-in
///
/// An invited viewer signs in with a single-use link ([`Authorizer::issue_link`],
/// [`Authorizer::inspect_link`], [`Authorizer::redeem_link`]) or with Google
/// ([`Authorizer::google_sign_in`]), and gets a session for one app; [`Authorizer::verify_session`]
/// turns its token into a [`Principal::Viewer`], and [`Authorizer::set_session_keys`] rotates the
/// keys that sign sessions.
///
/// # Managing apps
///
/// [`Authorizer::add_viewer`], [`Authorizer::remove_viewer`] and [`Authorizer::viewers`] need the
/// policy's `sharing` role, [`Authorizer::delete_app`] the `delete` capability;
/// [`Authorizer::delete_account`] serves the account holder's own request. [`Authorizer::apps`],
/// [`Authorizer::app`] and [`Authorizer::audit_log`] read the store.
///
/// # Webhooks and replicas
///
/// [`Authorizer::handle_webhook`] verifies a GitHub delivery and forgets what it changed;
/// [`Authorizer::invalidate`] forgets facts on demand. Both reach every authorizer sharing the
/// store through its change feed, as every change to apps and grants does
/// ([`AuthorizerBuilder::store`]'s `# Replicas`); [`Authorizer::invalidate_local`] stays here.
///
/// # Staleness
///
/// A fact is served at most its lifetime ([`CacheConfig`]'s `# Staleness`) after GitHub or the
/// store confirmed it, on the authorizer's clock; `deploy` and `delete` revalidate anything older
/// than `strict_max_age`. Errors are never cached as "no access" and never served as an allow.
///
/// # Concurrent calls
///
/// Concurrent checks that miss on one (user, repository) key send one request; the others wait for
/// its answer. Dropping a waiting check cancels nothing for the others; if the check that is
/// sending the request is dropped, the next waiter sends its own. The repository lookup (which
/// repository is at the app's coordinates) is shared by all users in the same way.
///
/// # Errors
///
/// A check's [`CheckError`] means *could not decide* (GitHub or the store failed): treat it as a
/// denial, and ask again after [`CheckError::retry_after`]. A denial is a [`Decision`], never an
/// error. Management fails with [`ManageError`], sign-in with [`LinkError`] or
/// [`GoogleSignInError`], webhooks with [`WebhookError`]; each has a stable `kind()`.
///
/// # Security
///
/// Decisions fail closed. Sessions verify only under a listed key; links are single-use and stored
/// as hashes; webhook signatures are compared in constant time before the body is read. No token,
/// link or secret is ever logged (sign-in logs name the app, not the address), and every store call
/// is bounded in time ([`AuthorizerBuilder::store_timeout`]).
#[derive(Debug, Clone)]
pub struct Authorizer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    policy: Policy,
    clock: Arc<dyn Clock>,
    /// GitHub facts (a user's role on a repository, which repository is at which coordinates),
    /// cached per (user, repository) and per coordinates.
    facts: Facts,
    store: Arc<dyn Store>,
    signin: SignIn,
    /// This authorizer's id among the replicas (never 0).
    replica: u64,
    /// Apps and viewer grants, served while the store's feed is heard.
    records: Records,
    /// Session tokens verified before, so that a hit does not verify a signature again.
    sessions: Sessions,
    webhooks: Webhooks,
    /// The task that applies other replicas' invalidations (set once the authorizer exists,
    /// so that the task can never find it not yet built), aborted when the authorizer goes.
    feed: std::sync::OnceLock<tokio_util::task::AbortOnDropHandle<()>>,
}

/// Applies what the store's feed brings, for as long as the authorizer lives. A feed that ends
/// leaves the authorizer deaf for good: it serves no cached app or grant again.
async fn follow_feed(inner: Weak<Inner>, mut feed: tokio::sync::mpsc::Receiver<FeedEvent>) {
    /// Leaves the authorizer deaf however the task ends: returned, cancelled with its runtime, or
    /// panicked.
    struct Deaf(Weak<Inner>);
    impl Drop for Deaf {
        fn drop(&mut self) {
            if let Some(inner) = self.0.upgrade() {
                inner.deafen();
            }
        }
    }
    let _deaf = Deaf(inner.clone());
    while let Some(event) = feed.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        match event {
            FeedEvent::Broadcast(b) => {
                for change in &b.changes {
                    inner.apply_change(change);
                }
                if b.origin != inner.replica && !b.invalidations.is_empty() {
                    for inv in b.invalidations {
                        inner.invalidate_local(inv);
                    }
                    Counters::bump(&inner.facts.counters.received);
                }
            }
            FeedEvent::Lost => {
                inner.deafen();
                inner.invalidate_local(Invalidation::All);
                Counters::bump(&inner.facts.counters.resyncs);
            }
            FeedEvent::Listening => {
                inner.invalidate_local(Invalidation::All);
                inner.records.set_live(true);
                Counters::bump(&inner.facts.counters.resyncs);
            }
        }
    }
    tracing::warn!("change feed ended: apps and grants are read from the store at every check");
}

impl Authorizer {
    /// A builder for an authorizer that asks GitHub as `github` says (a token, a GitHub App, or
    /// users' own tokens; the API base), with every other setting at its default
    /// ([`AuthorizerBuilder`]).
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
            webhooks: None,
            store_timeout: Duration::from_secs(5),
        }
    }

    /// The policy in force: the least GitHub role each capability needs ([`Policy::required`]) and
    /// who manages viewers ([`Policy::sharing`]), for telling a refused user what they lack.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).store(store).build().unwrap();
    /// use ghauthz::{Capability, Role};
    /// assert_eq!(authz.policy().required(Capability::Deploy), Role::Admin);
    /// assert_eq!(authz.policy().required(Capability::View), Role::Write); // for a private app
    /// assert_eq!(authz.policy().sharing(), Role::Write); // follows `edit` unless set
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Issues a single-use sign-in link to `app` for an invited address, rate-limited per (app,
    /// address) ([`AuthorizerBuilder::links`]). Send it to [`IssuedLink::email`], the stored
    /// address, never to what a requester typed; it works until [`IssuedLink::expires_at`].
    ///
    /// # Errors
    ///
    /// Fails with [`LinkError`]: `InvalidEmail` if the address does not parse; `SignIn(UnknownApp)`
    /// if there is no such app; `SignIn(NotInvited)` if the address is not invited (a sign-in page
    /// should answer the same either way, so as not to tell who is invited); `RateLimited` with
    /// `retry_after` past the limit; `SignIn(NoRandomness)` if no token could be drawn; `SignIn(Store(..))`
    /// if the store fails.
    ///
    /// # Security
    ///
    /// Only the token's SHA-256 is stored, so a copy of the store opens nothing; the token itself
    /// is in the returned [`LinkToken`](crate::LinkToken) alone (redacted `Debug`), and never
    /// logged.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).store(store).build().unwrap();
    /// use ghauthz::AppId;
    /// let dash = AppId("dash".into());
    /// let link = authz.issue_link(&dash, " Dana@Example.com").await.unwrap();
    /// assert_eq!(link.email.as_str(), "dana@example.com"); // send it here
    /// let err = authz.issue_link(&dash, "mallory@example.com").await.unwrap_err();
    /// assert_eq!(err.kind(), "not_invited");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn issue_link(&self, app: &AppId, email: &str) -> Result<IssuedLink, LinkError> {
        self.inner.signin.issue(&*self.inner.store, self.inner.clock.now(), app, email).await
    }

    /// Validates a link without using it up: what answering a GET may do (mail scanners fetch every
    /// link they see). Show a page whose button POSTs to [`Authorizer::redeem_link`].
    ///
    /// # Errors
    ///
    /// Fails with [`LinkError`]: `Invalid` (not a link this service issued), `AlreadyUsed`,
    /// `Expired`, `Revoked` (the invitation was removed, or renewed, since the link was issued), or
    /// `SignIn(Store(..))` if the store fails.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).store(store).build().unwrap();
    /// use ghauthz::AppId;
    /// let link = authz.issue_link(&AppId("dash".into()), "dana@example.com").await.unwrap();
    /// let token = link.token.expose_secret();
    /// let info = authz.inspect_link(token).await.unwrap();
    /// assert_eq!((info.app.0.as_str(), info.email.as_str()), ("dash", "dana@example.com"));
    /// assert!(authz.inspect_link(token).await.is_ok(), "inspecting uses nothing up");
    /// assert!(authz.redeem_link(token, None).await.is_ok());
    /// assert_eq!(authz.inspect_link("gl1_made-up").await.unwrap_err().kind(), "invalid");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn inspect_link(&self, token: &str) -> Result<LinkInfo, LinkError> {
        self.inner.signin.inspect(&*self.inner.store, self.inner.clock.now(), token).await
    }

    /// Uses the link up and mints a viewer session: what the POST does. With `expected_app` (the
    /// app whose page the link was opened on), a link for another app is refused (`wrong_app`) and
    /// not used up.
    ///
    /// # Errors
    ///
    /// Fails with [`LinkError`]: as [`Authorizer::inspect_link`]; `AlreadyUsed` for all but one of
    /// concurrent redemptions; `WrongApp`; `SignIn(Session(..))` if the session cannot be signed.
    /// What a redemption that fails *unavailable* did is said at
    /// [`AuthorizerBuilder::store_timeout`].
    ///
    /// # Security
    ///
    /// The store enforces single use atomically: of any number of concurrent redemptions of one
    /// link, on any number of replicas, exactly one succeeds. The session carries the id of the
    /// grant the link was issued under, so that removing the viewer ends it.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).store(store).build().unwrap();
    /// use ghauthz::{AppId, LinkError};
    /// let dash = AppId("dash".into());
    /// let link = authz.issue_link(&dash, "dana@example.com").await.unwrap();
    /// let token = link.token.expose_secret();
    /// let notes = AppId("notes".into());
    /// assert_eq!(authz.redeem_link(token, Some(&notes)).await.unwrap_err(), LinkError::WrongApp);
    /// let issued = authz.redeem_link(token, Some(&dash)).await.unwrap(); // not used up by the above
    /// assert_eq!(issued.session.app(), &dash);
    /// assert_eq!(authz.redeem_link(token, Some(&dash)).await.unwrap_err(), LinkError::AlreadyUsed);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn redeem_link(&self, token: &str, expected_app: Option<&AppId>) -> Result<IssuedSession, LinkError> {
        self.inner.signin.redeem(&*self.inner.store, self.inner.clock.now(), token, expected_app).await
    }

    /// Verifies a Google ID token and, if its verified address is invited to `app`, mints a viewer
    /// session for it. Needs [`AuthorizerBuilder::google`].
    ///
    /// # Errors
    ///
    /// Fails with [`GoogleSignInError`]: `NotConfigured` without [`AuthorizerBuilder::google`];
    /// `Token` with the [`GoogleError`](crate::GoogleError) of the first check the token failed
    /// (its `KeysUnavailable` when Google's keys cannot be fetched); `SignIn(UnknownApp)`,
    /// `SignIn(NotInvited)`; `SignIn(Store(..))` if the store fails; `SignIn(Session(..))` if the
    /// session cannot be signed.
    ///
    /// # Security
    ///
    /// RS256 only, under Google's published keys; `aud` must be one of the configured client ids,
    /// `email_verified` exactly `true`, the lifetime at most 24 hours. The ID token is neither
    /// logged nor kept.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let google_id_token = |email: &str| {
    /// #     let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    /// #     let claims = serde_json::json!({
    /// #         "iss": "https://accounts.google.com", "aud": "1234-test.apps.googleusercontent.com",
    /// #         "sub": "110169484474386276334", "email": email, "email_verified": true,
    /// #         "iat": now, "exp": now + 3600,
    /// #     });
    /// #     let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    /// #     header.kid = Some("test-key-1".into());
    /// #     let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/keys/google-test.pem")).unwrap();
    /// #     jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
    /// # };
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config())
    /// #     .store(store)
    /// #     .google(mock.google_config().unwrap())
    /// #     .build()
    /// #     .unwrap();
    /// use ghauthz::{AppId, Via};
    /// let dash = AppId("dash".into());
    /// let id_token = google_id_token("dana@example.com"); // signed as Google signs
    /// let issued = authz.google_sign_in(&dash, &id_token).await.unwrap();
    /// assert_eq!(issued.session.via(), Via::Google);
    /// let stranger = google_id_token("zed@example.com");
    /// assert_eq!(authz.google_sign_in(&dash, &stranger).await.unwrap_err().kind(), "not_invited");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn google_sign_in(&self, app: &AppId, id_token: &str) -> Result<IssuedSession, GoogleSignInError> {
        self.inner.signin.google_sign_in(&*self.inner.store, self.inner.clock.now(), app, id_token).await
    }

    /// Verifies a Google ID token alone: who Google says signed in, with no grant lookup and no
    /// session (for a flow of your own, such as asking an operator to invite the address).
    ///
    /// # Errors
    ///
    /// [`GoogleSignInError::NotConfigured`] without [`AuthorizerBuilder::google`];
    /// [`GoogleSignInError::Token`] with the [`GoogleError`](crate::GoogleError) of the first check
    /// the token failed.
    ///
    /// # Security
    ///
    /// Verified as [`Authorizer::google_sign_in`] verifies; the token is neither logged nor kept.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let google_id_token = |email: &str| {
    /// #     let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    /// #     let claims = serde_json::json!({
    /// #         "iss": "https://accounts.google.com", "aud": "1234-test.apps.googleusercontent.com",
    /// #         "sub": "110169484474386276334", "email": email, "email_verified": true,
    /// #         "iat": now, "exp": now + 3600,
    /// #     });
    /// #     let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    /// #     header.kid = Some("test-key-1".into());
    /// #     let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/keys/google-test.pem")).unwrap();
    /// #     jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
    /// # };
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config())
    /// #     .store(store)
    /// #     .google(mock.google_config().unwrap())
    /// #     .build()
    /// #     .unwrap();
    /// let identity = authz.verify_google_id_token(&google_id_token("zed@example.com")).await.unwrap();
    /// assert_eq!(identity.email().as_str(), "zed@example.com"); // invited or not
    /// assert_eq!(authz.verify_google_id_token("not-a-token").await.unwrap_err().kind(), "invalid");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn verify_google_id_token(&self, id_token: &str) -> Result<GoogleIdentity, GoogleSignInError> {
        self.inner.signin.google_identity(id_token).await
    }

    /// Verifies a viewer session token this service signed, and gives the [`Session`] it holds, for
    /// [`Principal::Viewer`]. A token verified before is confirmed from memory (see the `sessions`
    /// row of [`CacheConfig`]'s `# Staleness`). Whether the session's grant still stands is for a
    /// check to say.
    ///
    /// # Errors
    ///
    /// Fails with [`SessionError`]: `Invalid` (malformed, over 4 KiB, not HS256, a bad signature,
    /// another issuer or audience), `RetiredKey` (signed by a key no longer listed), `Expired` (at
    /// or past its `exp`, on the authorizer's clock).
    ///
    /// # Security
    ///
    /// The algorithm is fixed, never taken from the token, and the key is found by `kid` among the
    /// listed keys only. Tokens are never logged.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).store(store).build().unwrap();
    /// use ghauthz::{AppId, Capability, Principal, SessionError};
    /// let dash = AppId("dash".into());
    /// let link = authz.issue_link(&dash, "dana@example.com").await.unwrap(); // dana is invited to dash
    /// let token = authz.redeem_link(link.token.expose_secret(), Some(&dash)).await.unwrap().token;
    /// let token = token.expose_secret();
    /// let session = authz.verify_session(token).unwrap();
    /// assert_eq!(session.email().as_str(), "dana@example.com");
    /// let viewer = Principal::Viewer(session);
    /// assert!(authz.check_app(&viewer, &dash, Capability::View).await.unwrap().is_allowed());
    /// assert_eq!(authz.verify_session("not-a-session").unwrap_err(), SessionError::Invalid);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn verify_session(&self, token: &str) -> Result<Session, SessionError> {
        self.verify_session_with(token, Consistency::Cached)
    }

    fn verify_session_with(&self, token: &str, consistency: Consistency) -> Result<Session, SessionError> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        if consistency == Consistency::Cached {
            if let Some(session) = inner.sessions.with(token, now, Session::clone) {
                return Ok(session);
            }
        }
        let started = inner.sessions.begin();
        let session = inner.signin.verify(now, token)?;
        inner.sessions.remember(token, session.clone(), started, now);
        Ok(session)
    }

    /// Replaces the keys that sign and verify viewer sessions, to rotate them or to retire a key:
    /// the first key signs from now on, and a session signed by a key no longer listed is refused
    /// from the next check on, even if it was verified before. Set the same keys on every replica.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// use ghauthz::{AppId, Authorizer, SessionConfig, SessionError, SessionKeys};
    /// let mut keys = SessionKeys::generate().unwrap();
    /// let authz = Authorizer::builder(mock.github_config())
    ///     .store(store)
    ///     .sessions(keys.clone(), SessionConfig::default())
    ///     .build()
    ///     .unwrap();
    /// let dash = AppId("dash".into());
    /// let link = authz.issue_link(&dash, "dana@example.com").await.unwrap(); // dana is invited to dash
    /// let token = authz.redeem_link(link.token.expose_secret(), Some(&dash)).await.unwrap().token;
    /// let token = token.expose_secret();
    /// let old = keys.kids()[0].to_owned();
    /// keys.rotate().unwrap(); // a new signing key; the old one still verifies
    /// authz.set_session_keys(keys.clone());
    /// assert!(authz.verify_session(token).is_ok());
    /// keys.retire(&old);
    /// authz.set_session_keys(keys);
    /// assert_eq!(authz.verify_session(token).unwrap_err(), SessionError::RetiredKey);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn set_session_keys(&self, keys: SessionKeys) {
        *self.inner.signin.keys.write() = keys;
        self.inner.sessions.keys_changed();
    }

    /// The session a redeemed link would give `email` on `app` now, under the grant the store
    /// holds (its token is not signed: the check does not read it) (world mode: `explain` and decision tables check a signed-in viewer through
    /// the production path).
    #[cfg(feature = "world")]
    pub(crate) async fn session_for(&self, app: &AppId, email: &Email) -> Result<Session, StoreError> {
        // An address the store does not invite gets the session of a viewer whose invitation was
        // since removed: one under a grant id no store issues (they count from 1).
        let grant = self.inner.store.grant(app, email).await?.unwrap_or(crate::core::ids::GrantId(0));
        let expires_at = self.inner.clock.now().plus(self.inner.signin.sessions.ttl);
        let via = crate::core::session::Via::EmailLink;
        Ok(Session { app: app.clone(), email: email.clone(), grant, via, expires_at })
    }

    /// Every app in the store, ordered by id (read from the store each time, for listings).
    ///
    /// # Errors
    ///
    /// [`CheckError::Store`] if the store cannot answer, or holds a record that is not an app.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).store(store).build().unwrap();
    /// let apps = authz.apps().await.unwrap();
    /// let ids: Vec<String> = apps.iter().map(|a| a.id().to_string()).collect();
    /// assert_eq!(ids, ["analytics", "dash", "legacy", "notes", "site"]);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn apps(&self) -> Result<Vec<App>, CheckError> {
        let records = self.app_records().await?;
        records.iter().map(|r| r.app().map_err(|e| CheckError::Store(e.into()))).collect()
    }

    /// The audit log, oldest first: every entry [`Authorizer::audit`] can return. It holds
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
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).store(store).build().unwrap();
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

    /// Invites `email` to `app`: a new grant, under which the address can sign in
    /// ([`Authorizer::issue_link`], [`Authorizer::google_sign_in`]). `by` must hold the policy's
    /// `sharing` role (what `edit` needs, GitHub `write` by default) unless it is
    /// [`ChangedBy::Operator`]. Inviting an address already invited changes nothing. Audited.
    ///
    /// # Errors
    ///
    /// Fails with [`ManageError`]: `InvalidEmail` if the address does not parse (checked first);
    /// `UnknownApp`; `Denied` with the decision, when `by` lacks the role; `Check` when the
    /// decision could not be made or the store could not write (GitHub or the store failed).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).store(store).build().unwrap();
    /// use ghauthz::{AppId, ChangedBy, Principal};
    /// let dash = AppId("dash".into());
    /// let carol = ChangedBy::Principal(Principal::github(world.user("carol").unwrap())); // write
    /// let change = authz.add_viewer(&carol, &dash, " Eve@Example.com").await.unwrap();
    /// assert!(change.changed);
    /// assert_eq!(change.email.as_str(), "eve@example.com");
    /// let dave = ChangedBy::Principal(Principal::github(world.user("dave").unwrap())); // triage
    /// assert_eq!(authz.add_viewer(&dave, &dash, "zed@example.com").await.unwrap_err().kind(), "denied");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn add_viewer(&self, by: &ChangedBy, app: &AppId, email: &str) -> Result<ViewerChange, ManageError> {
        let (email, actor) = self.authorize_sharing(by, app, email).await?;
        let now = self.inner.clock.now();
        let changed = self.inner.store.add_viewer(app, &email, &actor, now).await.map_err(CheckError::from)?;
        Ok(ViewerChange { app: app.clone(), email, changed })
    }

    /// Removes `email` from `app`'s viewers; authorized as [`Authorizer::add_viewer`]. The grant
    /// ends for good: links issued under it are `revoked`, and sessions minted under it open
    /// nothing from the next check on, here and on every replica, even if the address is invited
    /// again. Removing an address that is not invited changes nothing. Audited.
    ///
    /// # Errors
    ///
    /// Fails with [`ManageError`]: `InvalidEmail` if the address does not parse (checked first);
    /// `UnknownApp`; `Denied` with the decision, when `by` lacks the role; `Check` when the
    /// decision could not be made or the store could not write (GitHub or the store failed). After
    /// a `Check` error the removal may have been written: this authorizer forgets the app's grants
    /// anyway, and removing again is safe.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).store(store).build().unwrap();
    /// use ghauthz::{AppId, ChangedBy};
    /// let dash = AppId("dash".into());
    /// let link = authz.issue_link(&dash, "dana@example.com").await.unwrap();
    /// let removed = authz.remove_viewer(&ChangedBy::Operator, &dash, "dana@example.com").await.unwrap();
    /// assert!(removed.changed);
    /// assert_eq!(authz.inspect_link(link.token.expose_secret()).await.unwrap_err().kind(), "revoked");
    /// assert!(!authz.remove_viewer(&ChangedBy::Operator, &dash, "dana@example.com").await.unwrap().changed);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn remove_viewer(&self, by: &ChangedBy, app: &AppId, email: &str) -> Result<ViewerChange, ManageError> {
        let (email, actor) = self.authorize_sharing(by, app, email).await?;
        let now = self.inner.clock.now();
        let removed = self.inner.store.remove_viewer(app, &email, &actor, now).await;
        // Forgotten here even if the store failed: the removal may have committed.
        self.inner.apply_change(&Change::App { app: app.clone() });
        let changed = removed.map_err(CheckError::from)?;
        Ok(ViewerChange { app: app.clone(), email, changed })
    }

    /// `app`'s invited addresses, as stored; authorized as [`Authorizer::add_viewer`], since the
    /// list is personal data.
    ///
    /// # Errors
    ///
    /// Fails with [`ManageError`]: `UnknownApp`; `Denied` with the decision, when `by` lacks the
    /// role; `Check` when the decision could not be made or the store could not be read.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).store(store).build().unwrap();
    /// use ghauthz::{AppId, ChangedBy, Principal};
    /// let dash = AppId("dash".into());
    /// let list = authz.viewers(&ChangedBy::Operator, &dash).await.unwrap();
    /// assert_eq!(list.iter().map(|e| e.as_str()).collect::<Vec<_>>(), ["dana@example.com"]);
    /// let nobody = ChangedBy::Principal(Principal::Anonymous);
    /// assert_eq!(authz.viewers(&nobody, &dash).await.unwrap_err().kind(), "denied");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn viewers(&self, by: &ChangedBy, app: &AppId) -> Result<Vec<Email>, ManageError> {
        self.authorize_app(by, app, Asked::Sharing, None).await?;
        Ok(self.inner.store.viewers(app).await.map_err(CheckError::from)?)
    }

    async fn authorize_sharing(&self, by: &ChangedBy, app: &AppId, email: &str) -> Result<(Email, Actor), ManageError> {
        let email = Email::parse(email)?;
        let actor = self.authorize_app(by, app, Asked::Sharing, None).await?;
        Ok((email, actor))
    }

    /// Deletes an account: every app the GitHub identity `user` deployed, with everything deleting
    /// an app removes, and the records kept of its earlier deleted apps. Returns the ids of the
    /// apps deleted. Nothing is checked here: the control plane calls this on the account holder's
    /// authenticated request.
    ///
    /// # Errors
    ///
    /// [`CheckError::Store`] if the store fails; which apps went is then unknown, so this
    /// authorizer forgets every cached app and grant. Calling again is safe.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).store(store).build().unwrap();
    /// use ghauthz::AppId;
    /// let erin = world.user("erin").unwrap(); // deployed dash and legacy
    /// let mut gone = authz.delete_account(erin.id).await.unwrap();
    /// gone.sort();
    /// assert_eq!(gone, [AppId("dash".into()), AppId("legacy".into())]);
    /// assert!(authz.app(&AppId("dash".into())).await.unwrap().is_none());
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn delete_account(&self, user: UserId) -> Result<Vec<AppId>, CheckError> {
        let deleted = self.inner.store.delete_account(user, self.inner.clock.now()).await;
        // Its apps went, and so did the support windows it opened on other apps (which the
        // store does not name here): forget every app, as a rare deletion may.
        self.inner.apply_change(&Change::All);
        Ok(deleted?)
    }

    /// Who may change the app with this id as `asked`: the operator, or a GitHub user the policy
    /// allows; anyone else is refused before anything is looked up. The app is read from the
    /// store, not the cache: a change is judged on the app as it is now (an id deleted and
    /// deployed elsewhere since is judged on its new repository). A refusal is on record as
    /// `action` denied, where an action is given; a support agent's attempt is on record as its
    /// checks are.
    async fn authorize_app(
        &self,
        by: &ChangedBy,
        id: &AppId,
        asked: Asked,
        action: Option<AuditAction>,
    ) -> Result<Actor, ManageError> {
        let app = self.app_with(id, Consistency::Fresh).await?;
        let ChangedBy::Principal(principal) = by else {
            return app.map(|_| Actor::Operator).ok_or_else(|| ManageError::UnknownApp(id.clone()));
        };
        let (policy, subject, now) = (&self.inner.policy, Subject::of(principal), self.inner.clock.now());
        let (seen, decision) = match &app {
            None => {
                let seen = AppSeen::Unknown(id);
                (seen, decide(policy, subject, &Gathered::of(seen), asked, now))
            }
            Some(app) => {
                let seen = AppSeen::Known(id, app.view());
                match decide(policy, subject, &Gathered::of(AppSeen::Changing(id)), asked, now) {
                    Err(Missing::App) => {
                        (seen, Ok(self.decide_gathering(principal, app, asked, Consistency::Cached).await?))
                    }
                    refused => {
                        let refused = refused.map_err(|_| CheckError::Undecided)?;
                        if let Subject::Support(_) = subject {
                            // On record as every support agent's check is.
                            self.record_decision(subject, seen, Audited::Check(asked, &refused)).await?;
                        }
                        (seen, Ok(refused))
                    }
                }
            }
        };
        let decision = decision.map_err(|_| CheckError::Undecided)?;
        if let (Some(action), false) = (action, decision.is_allowed()) {
            self.record_decision(subject, seen, Audited::Refusal(action, &decision)).await?;
        }
        match (principal, app) {
            (_, None) => Err(ManageError::UnknownApp(id.clone())),
            (Principal::GithubUser { user, .. }, Some(_)) if decision.is_allowed() => Ok(Actor::Github(user.id)),
            _ => Err(ManageError::Denied { app: id.clone(), decision: Box::new(decision) }),
        }
    }

    /// Forgets facts here and on every other replica that shares the store, for a change on GitHub
    /// no webhook reports. Effective for the next check here at once, and on the others when the
    /// message arrives ([`AuthorizerBuilder::store`]'s `# Replicas`).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the other replicas could not be told; this one forgot all the same.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).store(store).build().unwrap();
    /// use ghauthz::{Capability, Invalidation, Principal};
    /// let (bob, dash) = (world.user("bob").unwrap(), world.app("dash").unwrap());
    /// let principal = Principal::github(bob.clone());
    /// authz.check(&principal, &dash, Capability::Edit).await.unwrap(); // asks GitHub, caches
    /// authz.invalidate(Invalidation::UserOnRepo(bob.id, dash.repo_id())).await.unwrap();
    /// assert!(authz.check_cached(&principal, &dash, Capability::Edit).is_none()); // asks again
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn invalidate(&self, inv: Invalidation) -> Result<(), StoreError> {
        self.inner.invalidate_local(inv);
        self.inner.store.publish(&Broadcast::invalidations(self.inner.replica, vec![inv])).await
    }

    /// Forgets facts on this authorizer only ([`Authorizer::invalidate`] tells the other replicas
    /// too). Effective for the next check, including against a request that was in flight when it
    /// was called: a fact whose fetch started before a matching invalidation is never served from
    /// the cache.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).store(store).build().unwrap();
    /// use ghauthz::{Capability, Invalidation, Principal};
    /// let (carol, dash) = (Principal::github(world.user("carol").unwrap()), world.app("dash").unwrap());
    /// authz.check(&carol, &dash, Capability::Edit).await.unwrap();
    /// authz.invalidate_local(Invalidation::Repo(dash.repo_id())); // every user's fact on acme/dashboard
    /// assert!(authz.check_cached(&carol, &dash, Capability::Edit).is_none());
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn invalidate_local(&self, inv: Invalidation) {
        self.inner.invalidate_local(inv);
    }

    /// Verifies a GitHub webhook delivery (its headers and raw body, as received) and applies it
    /// ([`Authorizer::apply_webhook`]). Needs [`AuthorizerBuilder::webhook_secret`]. A delivery
    /// seen before (GitHub redelivers with the same id) changes nothing.
    ///
    /// # Errors
    ///
    /// Fails with [`WebhookError`]: `NotConfigured` without a secret; `TooLarge` beyond
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
        let delivery = self.inner.webhooks.verify(headers, body)?;
        self.apply_webhook(&delivery).await
    }

    /// Applies a verified delivery: turns it into the narrowest safe invalidations, records its id
    /// (a delivery seen before changes nothing), and applies them here and on every other replica.
    /// Unknown events are counted and ignored; a known event whose payload lacks the ids it needs
    /// invalidates everything. For a delivery verified elsewhere ([`WebhookVerifier::verify`]);
    /// [`Authorizer::handle_webhook`] does both.
    ///
    /// # Errors
    ///
    /// [`WebhookError::Store`] if the store cannot record the delivery: the invalidations are
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
        let broadcast = Broadcast::invalidations(inner.replica, invalidations);
        let recorded = inner.store.record_delivery(delivery.id(), inner.clock.now(), &broadcast).await;
        if recorded == Ok(false) {
            inner.webhooks.count_duplicate();
            return Ok(WebhookOutcome::Duplicate);
        }
        // New, or not known to be old: forgetting here is always safe.
        for inv in &broadcast.invalidations {
            inner.invalidate_local(*inv);
        }
        recorded.map_err(WebhookError::Store)?;
        // Heard only while deliveries to other replicas reach this one: the feed is heard before
        // and after (a feed lost in between has reset what this sets, or resets it now).
        if inner.records.is_live() {
            inner.facts.webhook_heard(inner.clock.now());
            if !inner.records.is_live() {
                inner.facts.webhooks_unheard();
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

    /// The cache's counters since the authorizer was built ([`CacheStats`]): hits, misses,
    /// revalidations, coalesced waits, upstream errors, entries held, invalidations received from
    /// other replicas, feed resyncs, and whether the store's change feed is heard now. For metrics:
    /// a hit rate that drops, or `feed_listening` false, is worth an alert.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::Store as _;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).store(store).build().unwrap();
    /// use ghauthz::{Capability, Principal};
    /// let (bob, dash) = (Principal::github(world.user("bob").unwrap()), world.app("dash").unwrap());
    /// authz.check(&bob, &dash, Capability::Edit).await.unwrap(); // a miss: asks GitHub
    /// authz.check(&bob, &dash, Capability::View).await.unwrap(); // the same fact: a hit
    /// let stats = authz.stats();
    /// assert_eq!((stats.misses, stats.hits), (1, 1));
    /// assert!(stats.feed_listening, "a MemoryStore's feed is heard at once");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.facts.counters;
        CacheStats {
            hits: self.inner.facts.hits(),
            misses: c.misses.load(Ordering::Relaxed),
            revalidated_not_modified: c.not_modified.load(Ordering::Relaxed),
            revalidated_modified: c.modified.load(Ordering::Relaxed),
            coalesced_waits: c.coalesced.load(Ordering::Relaxed),
            upstream_errors: c.upstream_errors.load(Ordering::Relaxed),
            entries: self.inner.facts.entries(),
            invalidations_received: c.received.load(Ordering::Relaxed),
            resyncs: c.resyncs.load(Ordering::Relaxed),
            feed_listening: self.inner.records.is_live(),
            roster_requests: c.roster_requests.load(Ordering::Relaxed),
            roster_fallbacks: c.roster_fallbacks.load(Ordering::Relaxed),
            github_budget: self.inner.facts.github_budget(),
        }
    }

    /// In user-token mode, a user's own rate-limit budget as GitHub's last answer to `token`
    /// stated it: `None` before that token's first answer, once it has gone unused for an hour,
    /// and in installation and App mode (see [`CacheStats::github_budget`]). Kept by a hash of
    /// the token, never the token.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.user_token_config()).build().unwrap();
    /// use ghauthz::{Capability, Principal};
    /// let token = mock.user_token("carol");
    /// assert_eq!(authz.github_budget_for(&token), None, "nothing asked yet");
    /// let carol = Principal::github_with_token(world.user("carol").unwrap(), token.clone());
    /// authz.check(&carol, &world.app("dash").unwrap(), Capability::Edit).await.unwrap();
    /// let budget = authz.github_budget_for(&token).unwrap();
    /// assert!(budget.remaining < budget.limit);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn github_budget_for(&self, token: &GithubToken) -> Option<crate::github::GithubBudget> {
        self.inner.facts.github_budget_for(token)
    }
}

impl Inner {
    fn apply_change(&self, change: &Change) {
        match change {
            Change::App { app } => self.records.forget_app(app),
            Change::All => self.records.forget_all(),
        }
    }

    /// The change feed is no longer heard: no app or grant is served from memory, and webhooks
    /// delivered to other replicas no longer reach this one (so none counts as heard).
    fn deafen(&self) {
        self.records.set_live(false);
        self.facts.webhooks_unheard();
    }

    fn invalidate_local(&self, inv: Invalidation) {
        self.facts.invalidate(inv);
    }
}
