//! GitHub, through octocrab's generic request methods and our own wire types.
//!
//! octocrab's typed collaborator-permission method cannot decode `write`, `read` or `none`, so
//! the routes are called with [`octocrab::Octocrab::_get_with_headers`] and decoded here, with
//! roles parsed as open strings.

mod client;
mod installations;
mod wire;

use std::time::Duration;

use async_trait::async_trait;

pub(crate) use client::OctocrabGithub;
pub use client::{ClientBuildError, DEFAULT_MAX_IN_FLIGHT, GithubAuth, GithubBudget, GithubConfig};

use crate::core::ids::{GithubUser, OwnerId, RepoCoords, RepoId, UserId};
use crate::core::policy::{Role, RoleGrant};
use crate::core::secret::GithubToken;

/// Why GitHub could not answer now. Never an allow, never a cached "no access".
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UnavailableCause {
    /// The primary rate limit is spent (`x-ratelimit-remaining: 0`).
    RateLimited,
    /// A secondary rate limit (429, or 403 with `retry-after`).
    SecondaryRateLimit,
    /// GitHub answered 5xx.
    ServerError(u16),
    /// No answer within the request timeout.
    Timeout,
    /// The connection failed.
    Connection,
    /// An earlier failure on this key or credential is still being backed off from; no request
    /// was sent.
    BackingOff,
}

impl std::fmt::Display for UnavailableCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnavailableCause::RateLimited => f.write_str("rate limit exhausted"),
            UnavailableCause::SecondaryRateLimit => f.write_str("secondary rate limit"),
            UnavailableCause::ServerError(s) => write!(f, "server error {s}"),
            UnavailableCause::Timeout => f.write_str("timed out"),
            UnavailableCause::Connection => f.write_str("connection failed"),
            UnavailableCause::BackingOff => f.write_str("backing off after an earlier failure"),
        }
    }
}

/// A failed GitHub request, sorted into its failure class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GithubError {
    /// GitHub is unavailable or rate limited; try again after `retry_after` where known.
    #[error("github unavailable: {cause}")]
    Unavailable {
        /// What failed.
        cause: UnavailableCause,
        /// When asking again makes sense.
        retry_after: Option<Duration>,
    },
    /// GitHub refused the credentials (401, or 403 without rate-limit signs): a configuration
    /// error, not a fact about the user.
    #[error("github refused the credentials (status {status}): {message}")]
    Credentials {
        /// The HTTP status.
        status: u16,
        /// GitHub's message.
        message: String,
    },
    /// No installation of the App covers the repository (an App across its installations).
    /// Checks decide on it as a fact (`no_access`, detail `no_installation`).
    #[error("no installation of the github app covers the repository")]
    NotInstalled,
    /// The installation that covers the repository is suspended: nothing is asked with it until
    /// it is unsuspended.
    #[error("the github app's installation {installation_id} is suspended")]
    InstallationSuspended {
        /// The installation.
        installation_id: u64,
    },
    /// A token that no request can carry (empty, or holding a space, a control character or
    /// anything beyond ASCII): refused before anything is sent. Its value is not repeated.
    #[error("the github token is empty or holds a character no token has (a space, a control character, non-ASCII)")]
    MalformedToken,
    /// GitHub answered something this client does not understand.
    #[error("unexpected answer from github for `{route}`: {detail}")]
    Protocol {
        /// The request path.
        route: String,
        /// What was wrong.
        detail: String,
    },
}

impl GithubError {
    /// A stable name: `rate_limited` (primary or secondary limit), `unavailable` (5xx, timeouts,
    /// connection failures), `github_credentials`, `github_protocol`, `malformed_token`,
    /// `not_installed`, `installation_suspended`.
    pub fn kind(&self) -> &'static str {
        match self {
            GithubError::Unavailable {
                cause: UnavailableCause::RateLimited | UnavailableCause::SecondaryRateLimit,
                ..
            } => "rate_limited",
            GithubError::Unavailable { .. } => "unavailable",
            GithubError::Credentials { .. } => "github_credentials",
            GithubError::Protocol { .. } => "github_protocol",
            GithubError::MalformedToken => "malformed_token",
            GithubError::NotInstalled => "not_installed",
            GithubError::InstallationSuspended { .. } => "installation_suspended",
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            GithubError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A conditional GET's result.
#[derive(Debug, Clone)]
pub(crate) enum Fetched<T> {
    /// 200 (or 404, as `T`'s own "absent").
    Fresh { value: T, etag: Option<String> },
    /// 304: what the caller holds is still current.
    NotModified,
}

/// The repository now at some coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepoInfo {
    pub(crate) id: RepoId,
    pub(crate) owner: OwnerId,
    /// The coordinates answered 301: the repository was renamed.
    pub(crate) redirected: bool,
    /// The calling user's role, in user-token mode; `None` without `permissions` in the body.
    pub(crate) role: Option<Option<RoleGrant>>,
}

/// One repository as `GET /user/repos` or `GET /installation/repositories` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedRepo {
    pub(crate) id: RepoId,
    pub(crate) owner: OwnerId,
    pub(crate) coords: RepoCoords,
    /// The user's role; `None` without `permissions` in the body.
    pub(crate) role: Option<Option<RoleGrant>>,
}

/// A collaborator-permission answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PermissionInfo {
    /// The user the answer is about.
    pub(crate) user: Option<UserId>,
    pub(crate) grant: Option<RoleGrant>,
}

/// A repository's roster (`GET /repos/{owner}/{repo}/collaborators`), as far as it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Roster {
    /// Every user with at least the role asked for, with their role. A user absent from it holds
    /// no such role.
    Listed(Vec<(UserId, RoleGrant)>),
    /// GitHub refused the route (a GitHub App without the organization `members` permission) or
    /// does not show it: ask per user.
    Refused,
    /// It takes more pages than allowed: ask per user.
    TooLarge,
}

/// Which route a permission question goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PermissionTarget<'a> {
    /// `/repos/{owner}/{name}/...`: the coordinates answer directly.
    Coords(&'a RepoCoords),
    /// `/repositories/{id}/...`: the repository (deployed at these coordinates) was renamed;
    /// skip the redirect.
    Id(&'a RepoCoords, RepoId),
}

impl<'a> PermissionTarget<'a> {
    /// The repository with id `id` at `coords`: by its id once it was `renamed` (so that no
    /// request goes through the redirect), else at its coordinates.
    pub(crate) fn of(coords: &'a RepoCoords, id: RepoId, renamed: bool) -> Self {
        if renamed { PermissionTarget::Id(coords, id) } else { PermissionTarget::Coords(coords) }
    }

    /// The coordinates the question is about (whose owner's installation answers it).
    pub(crate) fn coords(&self) -> &'a RepoCoords {
        match self {
            PermissionTarget::Coords(c) | PermissionTarget::Id(c, _) => c,
        }
    }

    /// The path of the route `rest` (`/collaborators...`) on this repository.
    pub(crate) fn path(&self, rest: &str) -> String {
        match self {
            PermissionTarget::Coords(c) => format!("/repos/{}/{}{rest}", c.owner(), c.name()),
            PermissionTarget::Id(_, id) => format!("/repositories/{id}{rest}"),
        }
    }
}

/// The GitHub routes the authorizer needs. A trait so that tests and other clients can swap it.
#[async_trait]
pub(crate) trait GithubApi: Send + Sync + std::fmt::Debug {
    /// `GET /repos/{owner}/{name}`, a rename followed; `None` for 404.
    async fn repository(
        &self,
        coords: &RepoCoords,
        user_token: Option<&GithubToken>,
        etag: Option<&str>,
    ) -> Result<Fetched<Option<RepoInfo>>, GithubError>;

    /// `GET /repos/{owner}/{name}/collaborators/{login}/permission`, or the same under
    /// `/repositories/{id}` for a renamed repository; `None` for 404.
    async fn permission(
        &self,
        repo: PermissionTarget<'_>,
        login: &str,
        etag: Option<&str>,
    ) -> Result<Fetched<Option<PermissionInfo>>, GithubError>;

    /// `GET /repos/{owner}/{name}/collaborators?affiliation=all&permission=P` (or the same under
    /// `/repositories/{id}`), every page up to `max_pages`: every user with at least `least`.
    /// Conditional on `etag`, a validator this method answered: each page is asked for again
    /// conditional on its own ETag, and the roster is unchanged when every page is. Only a
    /// roster whose last page is not full has one; any other is fetched whole.
    async fn roster(
        &self,
        repo: PermissionTarget<'_>,
        least: Role,
        max_pages: usize,
        etag: Option<&str>,
    ) -> Result<Fetched<Roster>, GithubError>;

    /// `GET /user/repos` with the user's token, every page: the repositories the user has a
    /// role on, with their role.
    async fn user_repos(&self, token: &GithubToken) -> Result<Vec<ListedRepo>, GithubError>;

    /// `GET /installation/repositories`: the repositories the installation can see (no role:
    /// `role` is `None`). Installation and App mode only. Every page when they take at most
    /// `max_requests` requests in all (as the first page's `total_count` tells), otherwise the
    /// first page alone: a caller learns what it names and looks the rest up one by one.
    ///
    /// An App across its installations lists the installation on `owner`'s account (the owner
    /// of these coordinates), if it was found already; otherwise nothing.
    async fn installation_repos(
        &self,
        owner: Option<&RepoCoords>,
        max_requests: usize,
    ) -> Result<Vec<ListedRepo>, GithubError>;

    /// `GET /users/{login}`: the user with this login now, by id; `None` for 404, an
    /// organization, or a string that is not a login.
    async fn user(&self, login: &str) -> Result<Option<GithubUser>, GithubError>;

    /// `GET /user/{account_id}`: the user with this id and their login now; `None` for 404 or
    /// an organization.
    async fn account(&self, id: UserId) -> Result<Option<GithubUser>, GithubError>;

    /// Whether checks must carry the user's own token (user-token mode).
    fn user_token_mode(&self) -> bool;

    /// The shared credentials' budget, as GitHub's last answer said it (none yet, or in
    /// user-token mode, where each user's budget is their own).
    fn budget(&self) -> Option<GithubBudget> {
        None
    }

    /// Whether GitHub's last answer to the shared credentials refused them (401); for an App
    /// across its installations, the App's own key.
    fn credentials_refused(&self) -> bool {
        false
    }

    /// Each installation in use and its budget (an App across its installations), fewest
    /// remaining first.
    fn installation_budgets(&self) -> Vec<(u64, GithubBudget)> {
        Vec::new()
    }

    /// Whether each account's repositories go through an installation of their own (an App
    /// across its installations).
    fn installations_per_owner(&self) -> bool {
        false
    }

    /// Forgets what `inv` may have changed of which installation covers which repositories (an
    /// `installation` or `installation_repositories` delivery, or a repository's own).
    fn forget_installations(&self, _inv: &crate::core::invalidation::Invalidation) {}

    /// A user token's own budget, as GitHub's last answer to it said (user-token mode; none
    /// before the token's first answer, or once it has not been used for an hour).
    fn user_budget(&self, _token: &GithubToken) -> Option<GithubBudget> {
        None
    }
}
