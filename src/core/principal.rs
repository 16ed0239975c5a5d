//! Who asks: nobody, an invited viewer with a verified session, a GitHub user, or a support
//! agent.

use crate::core::ids::GithubUser;
use crate::core::secret::GithubToken;
use crate::core::session::Session;

/// Who is asking: nobody, an invited viewer with a verified session, or a GitHub user.
///
/// Every check takes one. A GitHub user is decided by their role on the app's repository (asked of
/// GitHub, then cached); a viewer by their session and the grant it was minted under (read from the
/// store, then cached); nobody by the app's visibility alone, without any request.
///
/// ```
/// # #[cfg(feature = "world")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
/// use ghauthz::{Capability, Principal};
/// use ghauthz::CheckRequest;
/// let site = world.app("site").unwrap(); // public
/// let dash = world.app("dash").unwrap(); // private
/// assert!(authz.check(&CheckRequest::new(&Principal::Anonymous, &site, Capability::View)).await.unwrap().is_allowed());
/// let d = authz.check(&CheckRequest::new(&Principal::Anonymous, &dash, Capability::View)).await.unwrap();
/// assert_eq!(d.reason().kind(), "no_access");
/// # }
/// # #[cfg(not(feature = "world"))]
/// # fn main() {}
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Principal {
    /// Nobody signed in: may view public apps, and nothing else. Decided without any request.
    Anonymous,
    /// An invited viewer whose session token verified ([`Authorizer::verify_session`](crate::Authorizer::verify_session)): may view
    /// the one app the session is for, while the grant it was minted under stands. Only a verified
    /// [`Session`] fits here; to check a raw token, use [`CheckRequest::session`](crate::CheckRequest::session).
    Viewer(Session),
    /// A GitHub-authenticated user, decided by their role on the app's repository; in user-token
    /// mode ([`GithubAuth::UserTokens`](crate::GithubAuth::UserTokens)), with their own token.
    GithubUser {
        /// Who the user is: the stable id decides, and the login addresses GitHub's per-login
        /// routes (a login renamed and reused by someone else fails closed).
        user: GithubUser,
        /// The user's own token, which GitHub is asked with in user-token mode; ignored otherwise.
        /// A check in user-token mode that must ask GitHub without it fails with
        /// [`CheckError::MissingUserToken`](crate::CheckError::MissingUserToken).
        token: Option<GithubToken>,
    },
    /// A member of the platform's support staff, authenticated by the control plane: allowed
    /// only what an open support window on the app grants them ([`Authorizer::grant_support`](crate::Authorizer::grant_support)),
    /// never `deploy` or `delete`, and every check is audited. Build it with
    /// [`Principal::support`](crate::Principal::support).
    Support {
        /// The agent's name (see [`valid_agent_name`](crate::valid_agent_name)); a name that is
        /// not one is denied.
        agent: String,
    },
}

impl Principal {
    /// A support agent, by name.
    ///
    /// ```
    /// use ghauthz::Principal;
    /// assert_eq!(Principal::support("a7").label(), "support:a7");
    /// ```
    pub fn support(agent: impl Into<String>) -> Self {
        Principal::Support { agent: agent.into() }
    }

    /// A GitHub user, for installation-token and GitHub App mode, where the authorizer asks GitHub
    /// with its own credentials.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{Capability, Principal};
    /// use ghauthz::CheckRequest;
    /// let carol = Principal::github(world.user("carol").unwrap()); // direct write on acme/dashboard
    /// let dash = world.app("dash").unwrap();
    /// assert!(authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap().is_allowed());
    /// assert!(!authz.check(&CheckRequest::new(&carol, &dash, Capability::Deploy)).await.unwrap().is_allowed());
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn github(user: GithubUser) -> Self {
        Principal::GithubUser { user, token: None }
    }

    /// A GitHub user with their own token, for user-token mode
    /// ([`GithubAuth::UserTokens`](crate::GithubAuth::UserTokens)), where GitHub is asked with the
    /// user's token rather than the service's.
    ///
    /// # Security
    ///
    /// The token is sent to GitHub only, never logged, and its `Debug` is redacted.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// use ghauthz::{Authorizer, Capability, Principal};
    /// use ghauthz::CheckRequest;
    /// let authz = Authorizer::builder(mock.user_token_config()).build().unwrap();
    /// let (bob, dash) = (world.user("bob").unwrap(), world.app("dash").unwrap());
    /// let without = authz.check(&CheckRequest::new(&Principal::github(bob.clone()), &dash, Capability::Edit)).await;
    /// assert_eq!(without.unwrap_err().kind(), "missing_user_token");
    /// let with = Principal::github_with_token(bob, mock.user_token("bob"));
    /// assert!(authz.check(&CheckRequest::new(&with, &dash, Capability::Edit)).await.unwrap().is_allowed());
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn github_with_token(user: GithubUser, token: GithubToken) -> Self {
        Principal::GithubUser { user, token: Some(token) }
    }

    /// How the principal is written in output (the CLI's `explain`, an audit trail of the caller's
    /// own): `anonymous`, `viewer:<email>`, `github:<login>` or `support:<agent>`. A viewer's label holds their
    /// address: personal data.
    ///
    /// ```
    /// use ghauthz::{GithubUser, Principal, UserId};
    /// assert_eq!(Principal::github(GithubUser::new(UserId(2), "bob")).label(), "github:bob");
    /// assert_eq!(Principal::Anonymous.label(), "anonymous");
    /// ```
    pub fn label(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".to_owned(),
            Principal::Viewer(s) => format!("viewer:{}", s.email()),
            Principal::GithubUser { user, .. } => format!("github:{}", user.login),
            Principal::Support { agent } => format!("support:{agent}"),
        }
    }
}
