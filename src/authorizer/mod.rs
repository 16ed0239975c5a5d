//! The facade: policy, clock, GitHub and the cache, wired together.

mod audit;
mod builder;
mod checks;
mod lifecycle;
mod manage;
mod search;
mod signin;
mod support;
mod webhooks;

pub use builder::{AuthorizerBuilder, BuildError};
pub use checks::{AppRef, CheckRequest};
pub use lifecycle::Deployment;
pub use manage::{ChangedBy, ManageError, ViewerChange};
pub use search::Subjects;
pub use support::SupportGrant;

use std::sync::Arc;

use crate::cache::{CacheStats, Caches};
use crate::core::policy::Policy;
use crate::core::secret::GithubToken;
use crate::core::time::Clock;
use crate::store::Store;
use crate::viewer::SignIn;
use crate::webhook::Webhooks;

/// Decides who may view, edit, deploy and delete apps deployed from GitHub repositories, from
/// GitHub roles kept in a TTL cache and from invited viewers kept in a [`Store`].
///
/// Cheap to clone; clones share the cache, the store and the counters. Build one with
/// [`Authorizer::builder`](crate::Authorizer::builder), inside a Tokio runtime.
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
/// [`Authorizer::check`] answers a [`CheckRequest`]: "may this [`Principal`](crate::Principal)
/// (or the viewer holding this session token) do this [`Capability`](crate::Capability) to this
/// app?", with a [`Decision`](crate::Decision) that carries its [`Reason`](crate::Reason), the
/// [`Source`](crate::Source) of its facts and their age; the [`Policy`] ([`Authorizer::policy`])
/// says which GitHub role each capability needs. [`Authorizer::check_cached`] answers from memory
/// alone, or not at all.
///
/// # The request path
///
/// What a control plane calls on every page load takes an app's **id**:
/// `CheckRequest::new(&principal, &app_id, cap)`, or `CheckRequest::session(token, &app_id, cap)`
/// for a viewer's session token. [`Authorizer::check_cached`] is synchronous and allocation-free
/// on a hit; [`CheckRequest::fresh`] rests on nothing cached.
///
/// # Viewers and sign-in
///
/// An invited viewer signs in with a single-use link ([`Authorizer::issue_link`](crate::Authorizer::issue_link),
/// [`Authorizer::inspect_link`](crate::Authorizer::inspect_link), [`Authorizer::redeem_link`](crate::Authorizer::redeem_link)) or with Google
/// ([`Authorizer::google_sign_in`](crate::Authorizer::google_sign_in)), and gets a session for one app; [`Authorizer::verify_session`](crate::Authorizer::verify_session)
/// turns its token into a [`Principal::Viewer`](crate::Principal::Viewer), and [`Authorizer::set_session_keys`](crate::Authorizer::set_session_keys) rotates the
/// keys that sign sessions.
///
/// # Managing apps
///
/// [`Authorizer::add_viewer`](crate::Authorizer::add_viewer), [`Authorizer::remove_viewer`](crate::Authorizer::remove_viewer) and [`Authorizer::viewers`](crate::Authorizer::viewers) need the
/// policy's `sharing` role, [`Authorizer::delete_app`](crate::Authorizer::delete_app) the `delete` capability;
/// [`Authorizer::delete_account`](crate::Authorizer::delete_account) serves the account holder's own request. [`Authorizer::apps`](crate::Authorizer::apps),
/// [`Authorizer::app`](crate::Authorizer::app) and [`Authorizer::audit`](crate::Authorizer::audit) read the store.
///
/// # Webhooks and replicas
///
/// [`Authorizer::handle_webhook`](crate::Authorizer::handle_webhook) verifies a GitHub delivery and forgets what it changed;
/// [`Authorizer::invalidate`](crate::Authorizer::invalidate) forgets facts on demand. Both reach every authorizer sharing the
/// store through its change feed, as every change to apps and grants does
/// ([`AuthorizerBuilder::store`](crate::AuthorizerBuilder::store)'s `# Replicas`); [`Authorizer::invalidate_local`](crate::Authorizer::invalidate_local) stays here.
///
/// # Staleness
///
/// A fact is served at most its lifetime ([`CacheConfig`](crate::CacheConfig)'s `# Staleness`) after GitHub or the
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
/// A check's [`CheckError`](crate::CheckError) means *could not decide* (GitHub or the store failed): treat it as a
/// denial, and ask again after [`CheckError::retry_after`](crate::CheckError::retry_after). A denial is a [`Decision`](crate::Decision), never an
/// error. Management fails with [`ManageError`], sign-in with [`LinkError`](crate::LinkError) or
/// [`GoogleSignInError`](crate::GoogleSignInError), webhooks with [`WebhookError`](crate::WebhookError); each has a stable `kind()`.
///
/// # Security
///
/// Decisions fail closed. Sessions verify only under a listed key; links are single-use and stored
/// as hashes; webhook signatures are compared in constant time before the body is read. No token,
/// link or secret is ever logged (sign-in logs name the app, not the address), and every store call
/// is bounded in time ([`AuthorizerBuilder::store_timeout`](crate::AuthorizerBuilder::store_timeout)).
#[derive(Debug, Clone)]
pub struct Authorizer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    policy: Policy,
    clock: Arc<dyn Clock>,
    /// What is served from memory: GitHub facts, apps and grants, verified sessions.
    cache: Caches,
    store: Arc<dyn Store>,
    signin: SignIn,
    webhooks: Webhooks,
    /// The task that follows the store's change feed (set once the authorizer exists, so that
    /// the task can never find it not yet built), aborted when the authorizer goes.
    feed: std::sync::OnceLock<tokio_util::task::AbortOnDropHandle<()>>,
}

impl AsRef<Caches> for Inner {
    fn as_ref(&self) -> &Caches {
        &self.cache
    }
}

impl Authorizer {
    /// The policy in force: the least GitHub role each capability needs ([`Policy::required`]) and
    /// who manages viewers ([`Policy::sharing`]), for telling a refused user what they lack.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
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

    /// The cache's counters since the authorizer was built ([`CacheStats`]): hits, misses,
    /// revalidations, coalesced waits, upstream errors, entries held, invalidations received from
    /// other replicas, feed resyncs, and whether the store's change feed is heard now. For metrics:
    /// a hit rate that drops, or `feed_listening` false, is worth an alert.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{Capability, Principal};
    /// use ghauthz::CheckRequest;
    /// let (bob, dash) = (Principal::github(world.user("bob").unwrap()), world.app("dash").unwrap());
    /// authz.check(&CheckRequest::new(&bob, &dash, Capability::Edit)).await.unwrap(); // a miss: asks GitHub
    /// authz.check(&CheckRequest::new(&bob, &dash, Capability::View)).await.unwrap(); // the same fact: a hit
    /// let stats = authz.stats();
    /// assert_eq!((stats.misses, stats.hits), (1, 1));
    /// assert!(stats.feed_listening, "a MemoryStore's feed is heard at once");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn stats(&self) -> CacheStats {
        self.inner.cache.stats()
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
    /// use ghauthz::CheckRequest;
    /// let token = mock.user_token("carol");
    /// assert_eq!(authz.github_budget_for(&token), None, "nothing asked yet");
    /// let carol = Principal::github_with_token(world.user("carol").unwrap(), token.clone());
    /// authz.check(&CheckRequest::new(&carol, &world.app("dash").unwrap(), Capability::Edit)).await.unwrap();
    /// let budget = authz.github_budget_for(&token).unwrap();
    /// assert!(budget.remaining < budget.limit);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn github_budget_for(&self, token: &GithubToken) -> Option<crate::github::GithubBudget> {
        self.inner.cache.facts.github_budget_for(token)
    }

    /// A GitHub App across its installations ([`GithubAuth::App`](crate::GithubAuth::App)
    /// without an installation): each installation in use and its own budget, as GitHub's last
    /// answer to its token stated it, fewest remaining first. Empty in every other mode, where
    /// [`CacheStats::github_budget`] holds the one budget.
    pub fn github_installation_budgets(&self) -> Vec<(u64, crate::github::GithubBudget)> {
        self.inner.cache.facts.github_installation_budgets()
    }
}
