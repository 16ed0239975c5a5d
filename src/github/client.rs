//! The octocrab-backed client: failure classification, retries, conditional requests.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{ACCEPT, IF_NONE_MATCH, LOCATION, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use octocrab::Octocrab;
use parking_lot::Mutex;
use sha2::Digest as _;

use super::installations::{Found, Installations, Reach};
use super::wire::{
    WireCollaborator, WireInstallationRepos, WireListedRepo, WireMessage, WirePermission, WireRepo, WireUser,
};
use super::{
    Fetched, GithubApi, GithubError, ListedRepo, PermissionInfo, PermissionTarget, RepoInfo, Roster, UnavailableCause,
};
use crate::core::ids::{GithubUser, OwnerId, RepoCoords, RepoId, UserId};
use crate::core::policy::Role;
use crate::core::secret::{AppPrivateKey, GithubToken};
use crate::core::time::{Clock, Timestamp};

/// GitHub rejects requests that take longer than 10 s; give up before that.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(8);
/// Bodies larger than this are not GitHub's answers to our routes.
const MAX_BODY: usize = 1 << 20;
/// What GitHub asks for when a secondary rate limit names no time.
const SECONDARY_DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// How long before it expires an App's installation token is replaced.
const TOKEN_RENEWAL: Duration = Duration::from_secs(300);
/// How long GitHub's installation tokens live.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// How the client authenticates to GitHub.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum GithubAuth {
    /// An installation token (or a token with equivalent reach), used on the
    /// collaborator-permission route for every user.
    Token(GithubToken),
    /// A GitHub App; installation tokens are minted and renewed as needed.
    App {
        /// The App's id.
        app_id: u64,
        /// The App's private key.
        key: AppPrivateKey,
        /// The installation to act as, for every repository; `None`: across all of the App's
        /// installations, each repository through the installation on its owner's account,
        /// found with the App's JWT (`GET /repos/{owner}/{repo}/installation`) and kept for an
        /// hour. Each installation then has its own token, budget, requests in flight and
        /// rate-limit gate, so one customer's exhausted budget never holds up another's checks.
        installation_id: Option<u64>,
    },
    /// User-token mode: each check carries the user's own token, and the role is read from
    /// `GET /repos/{owner}/{repo}`'s `permissions`.
    UserTokens,
}

/// Where GitHub is and how to talk to it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GithubConfig {
    pub(crate) api_base: String,
    /// How the client authenticates (an installation token, a GitHub App, or users' own tokens).
    pub(crate) auth: GithubAuth,
    pub(crate) request_timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) retry_backoff: Duration,
    pub(crate) max_inline_wait: Duration,
    pub(crate) max_in_flight: usize,
}

/// Requests in flight at once per token, by default: 16. GitHub allows at most 100 concurrent
/// requests, counted across everything that uses the token (every replica of the control plane,
/// and anything else the installation runs), and answers bursts with secondary rate limits; 16
/// leaves room for six replicas under that ceiling, and a check waits for a slot rather than
/// spending the budget on a limit's refusal.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;

impl GithubConfig {
    /// Time allowed for one request, body included. Default 8 s (GitHub gives up at 10 s).
    pub fn with_request_timeout(mut self, request_timeout: Duration) -> Self {
        self.request_timeout = request_timeout;
        self
    }

    /// Retries of a 5xx or a failed connection within one check. Default 1. Rate limits and
    /// timeouts are not retried within a check; the check fails with `retry_after` instead.
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Wait before the first retry, doubled for each further one, unless GitHub sent
    /// `retry-after`. Default 250 ms.
    pub fn with_retry_backoff(mut self, retry_backoff: Duration) -> Self {
        self.retry_backoff = retry_backoff;
        self
    }

    /// Longest wait a check will spend on a retry; a longer `retry-after` fails the check at
    /// once. Default 1 s.
    pub fn with_max_inline_wait(mut self, max_inline_wait: Duration) -> Self {
        self.max_inline_wait = max_inline_wait;
        self
    }

    /// Most requests in flight at once per token (the installation's, or each user's own);
    /// a request beyond waits for one to end. Default [`DEFAULT_MAX_IN_FLIGHT`] (16); at least 1.
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight.max(1);
        self
    }

    /// As set by [`GithubConfig::with_max_in_flight`].
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// As set by [`GithubConfig::with_api_base`].
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// How the client authenticates (an installation token, a GitHub App, or users' own tokens).
    pub fn auth(&self) -> &GithubAuth {
        &self.auth
    }

    /// As set by [`GithubConfig::with_request_timeout`].
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// As set by [`GithubConfig::with_max_retries`].
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// As set by [`GithubConfig::with_retry_backoff`].
    pub fn retry_backoff(&self) -> Duration {
        self.retry_backoff
    }

    /// As set by [`GithubConfig::with_max_inline_wait`].
    pub fn max_inline_wait(&self) -> Duration {
        self.max_inline_wait
    }
}

impl GithubConfig {
    /// api.github.com with these credentials and the default timeouts and retries.
    ///
    /// ```
    /// use ghauthz::{GithubAuth, GithubConfig, GithubToken};
    /// let cfg = GithubConfig::new(GithubAuth::Token(GithubToken::new("ghs_x".into())))
    ///     .with_api_base("http://127.0.0.1:9999");
    /// assert_eq!(cfg.api_base(), "http://127.0.0.1:9999");
    /// ```
    pub fn new(auth: GithubAuth) -> Self {
        Self {
            api_base: "https://api.github.com".to_owned(),
            auth,
            request_timeout: DEFAULT_TIMEOUT,
            max_retries: 1,
            retry_backoff: Duration::from_millis(250),
            max_inline_wait: Duration::from_secs(1),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }

    /// The same, against another base URL (GitHub Enterprise Server's
    /// `https://HOST/api/v3`, or a mock). It must be an `http` or `https` URL with a host, or
    /// building the authorizer fails (`BuildError::Github`). A renamed repository's redirect is
    /// followed only to `/repositories/{id}` under this base, never to another host.
    pub fn with_api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = base.into();
        self
    }
}

/// Why the GitHub client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the github client: {0}")]
pub struct ClientBuildError(String);

impl ClientBuildError {
    /// A stable name: `github_client`.
    pub fn kind(&self) -> &'static str {
        "github_client"
    }
}

/// A GET's answer, classified.
#[derive(Debug)]
enum Answer {
    /// 200; `more`: its `link` header names a next page.
    Ok {
        body: Bytes,
        etag: Option<String>,
        more: bool,
    },
    NotModified,
    NotFound,
    Moved {
        location: String,
    },
}

/// Joins a roster's page ETags into the one validator the cache keeps: a header value never
/// holds a line feed.
const ROSTER_TAG_SEPARATOR: &str = "\n";

#[derive(Debug)]
pub(crate) struct OctocrabGithub {
    /// The API's base URL, which redirects are held to.
    base: url::Url,
    cfg: GithubConfig,
    clock: Arc<dyn Clock>,
    /// The one credential every request goes with: a token, an App's fixed installation, or
    /// (user-token mode) no credential, which users' own tokens are added to. `None` across an
    /// App's installations.
    shared: Option<Credential>,
    /// An App across its installations.
    installations: Option<super::installations::Installations>,
    /// Each user token's requests in flight, by a hash of the token (user-token mode).
    user_in_flight: moka::sync::Cache<[u8; 32], Arc<tokio::sync::Semaphore>>,
    /// Each user token's budget, by a hash of the token (user-token mode).
    user_budgets: moka::sync::Cache<[u8; 32], GithubBudget>,
}

/// One credential's client and what is kept about it: its rate-limit gate, its requests in
/// flight, its budget, whether GitHub refused it.
#[derive(Debug)]
pub(super) struct Credential {
    pub(super) octo: Octocrab,
    /// An App's installation (its token minted and renewed here), by id.
    pub(super) installation: Option<u64>,
    /// While a rate limit on it lasts, no request is sent.
    gate: Mutex<Option<Timestamp>>,
    in_flight: Arc<tokio::sync::Semaphore>,
    /// As GitHub's last answer said it.
    pub(super) budget: Mutex<Option<GithubBudget>>,
    /// GitHub's last answer to it was a 401 (cleared by any other answer).
    pub(super) refused: std::sync::atomic::AtomicBool,
    /// GitHub's last answer to it said its installation is suspended (cleared by any other).
    pub(super) suspended: std::sync::atomic::AtomicBool,
    /// Held while an installation token is looked at, and renewed if it must be.
    renewing: tokio::sync::Mutex<()>,
    /// When, by the authorizer's clock, the installation token in use was minted, and a hash
    /// of it (never the token).
    minted: Mutex<Option<(Timestamp, [u8; 32])>>,
}

impl Credential {
    pub(super) fn new(octo: Octocrab, installation: Option<u64>, max_in_flight: usize) -> Self {
        Self {
            octo,
            installation,
            gate: Mutex::new(None),
            in_flight: Arc::new(tokio::sync::Semaphore::new(max_in_flight)),
            budget: Mutex::new(None),
            refused: std::sync::atomic::AtomicBool::new(false),
            suspended: std::sync::atomic::AtomicBool::new(false),
            renewing: tokio::sync::Mutex::new(()),
            minted: Mutex::new(None),
        }
    }

    /// Keeps the installation token for its hour, and mints the next one [`TOKEN_RENEWAL`]
    /// before it expires (octocrab alone would wait until 30 s before): before its `expires_at`
    /// by the system's clock, and before [`TOKEN_LIFETIME`] has passed since it was minted by
    /// the authorizer's clock (`now`), whichever comes first. One caller mints; the others wait
    /// for it and use its token. A token kept this long keeps its ETags worth asking with:
    /// GitHub ties them to the token.
    async fn renew_installation_token(&self, now: Timestamp) -> Result<(), GithubError> {
        use octocrab::secrecy::ExposeSecret as _;
        let _one = self.renewing.lock().await;
        let keep = TOKEN_LIFETIME.saturating_sub(TOKEN_RENEWAL);
        let due = self.minted.lock().is_none_or(|(at, _)| now.since(at) >= keep);
        // A buffer longer than any token lives makes octocrab mint a new one.
        let buffer = if due { TOKEN_LIFETIME.saturating_mul(24) } else { TOKEN_RENEWAL };
        let buffer = chrono::Duration::from_std(buffer).unwrap_or(chrono::Duration::minutes(5));
        let token = self.octo.installation_token_with_buffer(buffer).await.map_err(|e| transport_error(&e))?;
        let digest: [u8; 32] = sha2::Sha256::digest(token.expose_secret().as_bytes()).into();
        let mut minted = self.minted.lock();
        if minted.is_none_or(|(_, kept)| kept != digest) {
            *minted = Some((now, digest));
        }
        Ok(())
    }
}

/// A token's rate-limit budget, as GitHub's last answer to it said (`x-ratelimit-limit`,
/// `x-ratelimit-remaining`, `x-ratelimit-reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GithubBudget {
    /// Requests the token may make in its window.
    pub limit: u64,
    /// Requests left in the window.
    pub remaining: u64,
    /// When the window starts again.
    pub reset: Timestamp,
}

/// What a request is sent with: the credential it spends, or a user's own token.
pub(super) enum Sender<'a> {
    /// The shared credential (or, in user-token mode, none).
    Shared(&'a Credential),
    /// One of an App's installations (borrowed from nowhere: the client keeps it too, and a
    /// clone of its `Octocrab` would mint a token of its own).
    Installation(Arc<Credential>),
    /// A user's own token: a client carrying it, its requests in flight, and its hash.
    User { octo: Box<Octocrab>, in_flight: Arc<tokio::sync::Semaphore>, key: [u8; 32] },
}

impl Sender<'_> {
    fn credential(&self) -> Option<&Credential> {
        match self {
            Sender::Shared(c) => Some(c),
            Sender::Installation(c) => Some(c),
            Sender::User { .. } => None,
        }
    }

    fn octo(&self) -> &Octocrab {
        match self {
            Sender::Shared(c) => &c.octo,
            Sender::Installation(c) => &c.octo,
            Sender::User { octo, .. } => octo,
        }
    }

    fn in_flight(&self) -> &tokio::sync::Semaphore {
        match self {
            Sender::Shared(c) => &c.in_flight,
            Sender::Installation(c) => &c.in_flight,
            Sender::User { in_flight, .. } => in_flight,
        }
    }
}

impl OctocrabGithub {
    pub(crate) fn new(cfg: GithubConfig, clock: Arc<dyn Clock>) -> Result<Self, ClientBuildError> {
        let err = |e: octocrab::Error| ClientBuildError(e.to_string());
        let base = url::Url::parse(&cfg.api_base)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && u.has_host())
            .ok_or_else(|| ClientBuildError("the API base is not an http(s) URL".into()))?;
        let builder = Octocrab::builder().base_uri(cfg.api_base.as_str()).map_err(err)?;
        let slots = cfg.max_in_flight;
        let (shared, installations) = match &cfg.auth {
            // octocrab panics on a token that cannot be a header value: refused here instead.
            GithubAuth::Token(t) if !t.is_well_formed() => {
                return Err(ClientBuildError(GithubError::MalformedToken.to_string()));
            }
            GithubAuth::Token(t) => {
                let octo = builder.personal_token(t.expose_secret().to_owned()).build().map_err(err)?;
                (Some(Credential::new(octo, None, slots)), None)
            }
            GithubAuth::App { app_id, key, installation_id } => {
                let app =
                    builder.app(octocrab::models::AppId(*app_id), key.expose_secret().clone()).build().map_err(err)?;
                match installation_id {
                    Some(id) => {
                        let octo = app.installation(octocrab::models::InstallationId(*id)).map_err(err)?;
                        (Some(Credential::new(octo, Some(*id), slots)), None)
                    }
                    None => (None, Some(Installations::new(app, slots))),
                }
            }
            GithubAuth::UserTokens => (Some(Credential::new(builder.build().map_err(err)?, None, slots)), None),
        };
        let user_in_flight =
            moka::sync::Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(3600)).build();
        Ok(Self {
            base,
            cfg,
            clock,
            shared,
            installations,
            user_in_flight,
            user_budgets: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        })
    }

    fn shared_credentials(&self) -> bool {
        !matches!(self.cfg.auth, GithubAuth::UserTokens)
    }

    /// The credential `sender` spends, where rate limits and refusals are kept (not a user's own
    /// token, nor user-token mode's unauthenticated client).
    fn kept<'s>(&self, sender: &'s Sender<'_>) -> Option<&'s Credential> {
        sender.credential().filter(|_| self.shared_credentials())
    }

    fn gate_check(&self, sender: &Sender<'_>) -> Result<(), GithubError> {
        let Some(credential) = self.kept(sender) else { return Ok(()) };
        let now = self.clock.now();
        match *credential.gate.lock() {
            Some(until) if until > now => Err(GithubError::Unavailable {
                cause: UnavailableCause::BackingOff,
                retry_after: Some(round_up_secs(until.since(now))),
            }),
            _ => Ok(()),
        }
    }

    async fn send_once(&self, sender: &Sender<'_>, path: &str, etag: Option<&str>) -> Result<Answer, GithubError> {
        // A slot of the token's: released when the answer is read (or the request given up).
        let _slot = sender
            .in_flight()
            .acquire()
            .await
            .map_err(|_| GithubError::Protocol { route: path.to_owned(), detail: "the client is closed".into() })?;
        let octo = sender.octo();
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/vnd.github+json"));
        headers.insert("x-github-api-version", HeaderValue::from_static("2022-11-28"));
        if let Some(tag) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
            headers.insert(IF_NONE_MATCH, tag);
        }
        let exchange = async {
            if let Some(credential) = sender.credential().filter(|c| c.installation.is_some()) {
                credential.renew_installation_token(self.clock.now()).await.inspect_err(|e| self.minting_failed(e))?;
            }
            let resp = octo._get_with_headers(path, Some(headers)).await.map_err(|e| transport_error(&e))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|_| unavailable(UnavailableCause::Connection, None))?
                .to_bytes();
            Ok::<_, GithubError>((parts.status, parts.headers, body))
        };
        let installation = match sender {
            Sender::Installation(c) => c.installation,
            _ => None,
        };
        match tokio::time::timeout(self.cfg.request_timeout, exchange).await {
            Err(_) => {
                crate::telemetry::github_answer(None, None, installation);
                Err(unavailable(UnavailableCause::Timeout, None))
            }
            Ok(Err(e)) => {
                crate::telemetry::github_answer(None, None, installation);
                Err(e)
            }
            Ok(Ok((status, headers, body))) => {
                let budget = read_budget(&headers);
                crate::telemetry::github_answer(
                    Some(status.as_u16()),
                    budget.filter(|_| sender.credential().is_some()).map(|b| b.remaining),
                    installation,
                );
                // Keeps the budget the answer states, the credential's or the user's own.
                match (budget, sender) {
                    (Some(b), Sender::User { key, .. }) => self.user_budgets.insert(*key, b),
                    (Some(b), _) => {
                        if let Some(credential) = sender.credential() {
                            *credential.budget.lock() = Some(b);
                        }
                    }
                    (None, _) => {}
                }
                classify(path, status, &headers, body, self.clock.now())
            }
        }
    }

    /// Minting an installation token failed: a 401 is the App's own key refused.
    fn minting_failed(&self, e: &GithubError) {
        if let (Some(installations), GithubError::Credentials { status: 401, .. }) = (&self.installations, e) {
            installations.app.refused.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// One GET with the retry rules of [`GithubConfig`].
    async fn get(&self, sender: &Sender<'_>, path: &str, etag: Option<&str>) -> Result<Answer, GithubError> {
        self.gate_check(sender)?;
        let kept = self.kept(sender);
        let mut attempt = 0u32;
        loop {
            let err = match self.send_once(sender, path, etag).await {
                Ok(answer) => {
                    if let Some(credential) = kept {
                        credential.refused.store(false, std::sync::atomic::Ordering::Relaxed);
                        credential.suspended.store(false, std::sync::atomic::Ordering::Relaxed);
                    }
                    return Ok(answer);
                }
                Err(e) => suspension(sender, e),
            };
            if let (GithubError::InstallationSuspended { installation_id }, Some(installations)) =
                (&err, &self.installations)
            {
                // Found again (and then kept as suspended for a minute) on the next question.
                installations.forget_installation(*installation_id);
            }
            if let Some(credential) = kept {
                let refused = matches!(err, GithubError::Credentials { status: 401, .. });
                credential.refused.store(refused, std::sync::atomic::Ordering::Relaxed);
                let suspended = matches!(err, GithubError::InstallationSuspended { .. });
                credential.suspended.store(suspended, std::sync::atomic::Ordering::Relaxed);
            }
            let GithubError::Unavailable { cause, retry_after } = &err else { return Err(err) };
            if let Some(credential) =
                kept.filter(|_| matches!(cause, UnavailableCause::RateLimited | UnavailableCause::SecondaryRateLimit))
            {
                let until = self.clock.now().plus(retry_after.unwrap_or(SECONDARY_DEFAULT_WAIT));
                *credential.gate.lock() = Some(until);
            }
            let transient = matches!(cause, UnavailableCause::ServerError(_) | UnavailableCause::Connection);
            let wait = retry_after.unwrap_or_else(|| self.cfg.retry_backoff.saturating_mul(1 << attempt.min(16)));
            if !transient || attempt >= self.cfg.max_retries || wait > self.cfg.max_inline_wait {
                return Err(err);
            }
            tracing::debug!(path, attempt, ?wait, "retrying github request");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// The user account a `GET` of `path` answers (`/users/{login}`, `/user/{account_id}`);
    /// `None` for 404 or an organization.
    async fn account_at(&self, path: &str) -> Result<Option<GithubUser>, GithubError> {
        let sender = self.account_sender().await?;
        match self.get(&sender, path, None).await? {
            Answer::Ok { body, .. } => {
                let user: WireUser = decode(path, &body)?;
                Ok((user.kind != "Organization").then(|| GithubUser::new(UserId(user.id), &user.login)))
            }
            Answer::NotFound => Ok(None),
            Answer::NotModified | Answer::Moved { .. } => {
                Err(GithubError::Protocol { route: path.into(), detail: "unexpected status".into() })
            }
        }
    }

    /// Every page of a repository listing at `route` (100 a page, following the `link` header's
    /// next page); an error rather than a partial listing past [`MAX_REPO_PAGES`]. `page_of`
    /// decodes a page and the total it announces, if it does. With `max_pages`, a listing whose
    /// total needs more pages stops after the first (the caller must accept a partial listing).
    async fn list_repos(
        &self,
        sender: &Sender<'_>,
        route: &str,
        max_pages: Option<usize>,
        page_of: impl Fn(&str, &Bytes) -> Result<(Vec<WireListedRepo>, Option<u64>), GithubError>,
    ) -> Result<Vec<ListedRepo>, GithubError> {
        let mut listed = Vec::new();
        for page in 1..=MAX_REPO_PAGES {
            let path = format!("{route}?per_page={REPOS_PER_PAGE}&page={page}");
            let (body, more) = match self.get(sender, &path, None).await? {
                Answer::Ok { body, more, .. } => (body, more),
                _ => {
                    return Err(GithubError::Protocol {
                        route: format!("GET {route}"),
                        detail: "unexpected status".into(),
                    });
                }
            };
            let (repos, total) = page_of(&path, &body)?;
            let pages = total.map(|t| usize::try_from(t.div_ceil(REPOS_PER_PAGE)).unwrap_or(usize::MAX));
            let over_budget = matches!((max_pages, pages), (Some(max), Some(pages)) if pages > max);
            for r in repos {
                let coords = r
                    .full_name
                    .parse::<RepoCoords>()
                    .map_err(|e| GithubError::Protocol { route: format!("GET {route}"), detail: e.to_string() })?;
                let role = r.permissions.map(|p| p.grant());
                listed.push(ListedRepo { id: RepoId(r.id), owner: OwnerId(r.owner.id), coords, role });
            }
            if !more || over_budget {
                return Ok(listed);
            }
        }
        // Fail closed rather than answer from a partial listing.
        Err(GithubError::Protocol {
            route: format!("GET {route}"),
            detail: format!("more than {} repositories", MAX_REPO_PAGES as u64 * REPOS_PER_PAGE),
        })
    }

    /// What to send with a user's own token: a client carrying it, and that token's slots.
    fn user_sender(&self, token: &GithubToken) -> Result<Sender<'_>, GithubError> {
        if !token.is_well_formed() {
            return Err(GithubError::MalformedToken);
        }
        let base = match (&self.shared, &self.installations) {
            (Some(shared), _) => &shared.octo,
            (None, Some(installations)) => &installations.app.octo,
            (None, None) => return Err(no_credential()),
        };
        let octo = base
            .user_access_token(token.expose_secret().to_owned())
            .map_err(|e| GithubError::Protocol { route: "(client)".into(), detail: e.to_string() })?;
        let key = token_key(token);
        let slots = self.cfg.max_in_flight;
        let in_flight = self.user_in_flight.get_with(key, || Arc::new(tokio::sync::Semaphore::new(slots)));
        Ok(Sender::User { octo: Box::new(octo), in_flight, key })
    }

    /// What to send a question about repository `coords` with: the shared credential, or (an App
    /// across its installations) the credential of the installation that covers it, found first
    /// if it must be. [`GithubError::NotInstalled`] when none covers it;
    /// [`GithubError::InstallationSuspended`] when the one that does is suspended.
    async fn repo_sender(&self, coords: &RepoCoords) -> Result<(Sender<'_>, Option<Arc<Found>>), GithubError> {
        let Some(installations) = &self.installations else {
            return self.shared.as_ref().map(|c| (Sender::Shared(c), None)).ok_or_else(no_credential);
        };
        let path = format!("/repos/{}/{}/installation", coords.owner(), coords.name());
        match installations.reach(coords, self.find_installation(installations, path)).await? {
            Reach::NotInstalled => Err(GithubError::NotInstalled),
            Reach::Installed(found) if found.suspended => {
                Err(GithubError::InstallationSuspended { installation_id: found.id })
            }
            Reach::Installed(found) => {
                let credential = installations.credential(found.id)?;
                Ok((Sender::Installation(credential), Some(found)))
            }
        }
    }

    /// `GET` of an installation lookup with the App's JWT: the installation, or none (404).
    async fn find_installation(&self, installations: &Installations, path: String) -> Result<Reach, GithubError> {
        let app = Sender::Shared(&installations.app);
        match self.get(&app, &path, None).await? {
            Answer::Ok { body, .. } => {
                Ok(Reach::Installed(Arc::new(super::installations::found(decode(&path, &body)?))))
            }
            Answer::NotFound => Ok(Reach::NotInstalled),
            Answer::NotModified | Answer::Moved { .. } => {
                Err(GithubError::Protocol { route: path, detail: "unexpected status".into() })
            }
        }
    }

    /// A 404 to a question about `coords` from the installation `found` on its owner: when the
    /// installation covers only selected repositories, whether it is because it does not select
    /// this one ([`GithubError::NotInstalled`], kept) rather than because nothing is there.
    async fn not_found(&self, coords: &RepoCoords, found: Option<&Found>) -> Result<(), GithubError> {
        let (Some(installations), Some(found)) = (&self.installations, found) else { return Ok(()) };
        if !found.selected {
            return Ok(());
        }
        let path = format!("/repos/{}/{}/installation", coords.owner(), coords.name());
        match self.find_installation(installations, path).await? {
            Reach::NotInstalled => {
                installations.not_covered(coords).await;
                Err(GithubError::NotInstalled)
            }
            Reach::Installed(_) => Ok(()),
        }
    }

    /// What to send a question about no repository with (an account, by login or id): the
    /// shared credential, or (an App across its installations) the installation in use with the
    /// most budget left, else the first of the App's installations that is not suspended.
    async fn account_sender(&self) -> Result<Sender<'_>, GithubError> {
        let Some(installations) = &self.installations else {
            return self.shared.as_ref().map(Sender::Shared).ok_or_else(no_credential);
        };
        if let Some(credential) = installations.any_credential() {
            return Ok(Sender::Installation(credential));
        }
        let path = "/app/installations?per_page=100";
        let app = Sender::Shared(&installations.app);
        let listed: Vec<super::wire::WireInstallation> = match self.get(&app, path, None).await? {
            Answer::Ok { body, .. } => decode(path, &body)?,
            _ => return Err(GithubError::Protocol { route: path.into(), detail: "unexpected status".into() }),
        };
        let found = listed
            .into_iter()
            .map(super::installations::found)
            .find(|f| !f.suspended)
            .ok_or(GithubError::NotInstalled)?;
        Ok(Sender::Installation(installations.credential(found.id)?))
    }
}

fn no_credential() -> GithubError {
    GithubError::Protocol { route: "(client)".into(), detail: "no credential for this request".into() }
}

/// A refusal that says the installation is suspended, as such.
fn suspension(sender: &Sender<'_>, e: GithubError) -> GithubError {
    match (sender.credential().and_then(|c| c.installation), &e) {
        (Some(installation_id), GithubError::Credentials { status: 403, message })
            if message.to_ascii_lowercase().contains("suspended") =>
        {
            GithubError::InstallationSuspended { installation_id }
        }
        _ => e,
    }
}

/// The budget an answer states (`x-ratelimit-limit`, `-remaining`, `-reset`), if it states it.
fn read_budget(headers: &HeaderMap) -> Option<GithubBudget> {
    let number = |name: &str| header(headers, name).and_then(|v| v.parse::<u64>().ok());
    let (limit, remaining, reset) =
        (number("x-ratelimit-limit")?, number("x-ratelimit-remaining")?, number("x-ratelimit-reset")?);
    Some(GithubBudget { limit, remaining, reset: Timestamp(reset.saturating_mul(1000)) })
}

/// A user token's key in the client's per-token tables: a hash, never the token.
fn token_key(token: &GithubToken) -> [u8; 32] {
    sha2::Sha256::digest(token.expose_secret().as_bytes()).into()
}

/// An error octocrab raised before we saw a response: minting an installation token failed, or
/// the connection did.
fn transport_error(e: &octocrab::Error) -> GithubError {
    match e {
        octocrab::Error::GitHub { source, .. } if matches!(source.status_code.as_u16(), 401 | 403) => {
            let rate_limited = source.rate_limit_reset.is_some()
                && source.headers.as_ref().is_some_and(|h| header(h, "x-ratelimit-remaining") == Some("0"));
            if rate_limited {
                unavailable(UnavailableCause::RateLimited, None)
            } else {
                GithubError::Credentials { status: source.status_code.as_u16(), message: source.message.clone() }
            }
        }
        octocrab::Error::GitHub { source, .. } if source.status_code.is_server_error() => {
            unavailable(UnavailableCause::ServerError(source.status_code.as_u16()), None)
        }
        _ => unavailable(UnavailableCause::Connection, None),
    }
}

fn unavailable(cause: UnavailableCause, retry_after: Option<Duration>) -> GithubError {
    GithubError::Unavailable { cause, retry_after }
}

fn round_up_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Sorts a response into an answer or a failure class.
fn classify(
    path: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: Bytes,
    now: Timestamp,
) -> Result<Answer, GithubError> {
    let retry_after =
        header(headers, RETRY_AFTER.as_str()).and_then(|v| v.parse::<u64>().ok()).map(Duration::from_secs);
    let remaining_zero = header(headers, "x-ratelimit-remaining") == Some("0");
    let reset_in = header(headers, "x-ratelimit-reset")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|reset| Duration::from_secs(reset.saturating_sub(now.as_secs()).max(1)));
    let message = || serde_json::from_slice::<WireMessage>(&body).map(|m| m.message).unwrap_or_default();
    match status.as_u16() {
        200 => {
            let etag = header(headers, "etag").map(str::to_owned);
            let more = header(headers, "link").is_some_and(|l| l.split(',').any(|part| part.contains("rel=\"next\"")));
            Ok(Answer::Ok { body, etag, more })
        }
        304 => Ok(Answer::NotModified),
        404 => Ok(Answer::NotFound),
        301 | 302 | 307 | 308 => match header(headers, LOCATION.as_str()) {
            Some(location) => Ok(Answer::Moved { location: location.to_owned() }),
            None => Err(GithubError::Protocol { route: path.into(), detail: format!("{status} without location") }),
        },
        403 | 429 if remaining_zero => {
            Err(unavailable(UnavailableCause::RateLimited, retry_after.or(reset_in).or(Some(SECONDARY_DEFAULT_WAIT))))
        }
        429 => Err(unavailable(UnavailableCause::SecondaryRateLimit, retry_after.or(Some(SECONDARY_DEFAULT_WAIT)))),
        403 if retry_after.is_some() || message().to_ascii_lowercase().contains("rate limit") => {
            Err(unavailable(UnavailableCause::SecondaryRateLimit, retry_after.or(Some(SECONDARY_DEFAULT_WAIT))))
        }
        401 | 403 => Err(GithubError::Credentials { status: status.as_u16(), message: message() }),
        s if status.is_server_error() => Err(unavailable(UnavailableCause::ServerError(s), retry_after)),
        s => Err(GithubError::Protocol { route: path.into(), detail: format!("unexpected status {s}") }),
    }
}

fn decode<T: serde::de::DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, GithubError> {
    serde_json::from_slice(body).map_err(|e| GithubError::Protocol { route: path.into(), detail: e.to_string() })
}

/// The most pages of a repository listing read.
const MAX_REPO_PAGES: usize = 100;

/// Repositories asked for per page of a listing (GitHub's most).
const REPOS_PER_PAGE: u64 = 100;

/// A GitHub login as the per-login routes accept it; anything else cannot name a GitHub user.
fn valid_login(login: &str) -> bool {
    !login.is_empty() && login.len() <= 64 && login.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The path, relative to `base`, of a redirect target on the same API: only
/// `/repositories/{id}...` under `base` (scheme, host and port included; a GitHub Enterprise
/// base's `/api/v3` prefix too) is followed, never another host or route.
fn redirect_path(base: &url::Url, route: &str, location: &str) -> Result<String, GithubError> {
    let protocol = |detail: &str| GithubError::Protocol { route: route.into(), detail: detail.into() };
    let target = base.join(location).map_err(|_| protocol("unparsable redirect location"))?;
    if target.origin() != base.origin() {
        return Err(protocol("redirect to another host"));
    }
    let rest = target
        .path()
        .strip_prefix(base.path().trim_end_matches('/'))
        .filter(|rest| rest.starts_with("/repositories/"))
        .ok_or_else(|| protocol("redirect outside /repositories/"))?;
    Ok(match target.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    })
}

#[async_trait]
impl GithubApi for OctocrabGithub {
    fn budget(&self) -> Option<GithubBudget> {
        self.shared.as_ref().and_then(|c| *c.budget.lock())
    }

    fn installation_budgets(&self) -> Vec<(u64, GithubBudget)> {
        self.installations.as_ref().map(Installations::budgets).unwrap_or_default()
    }

    fn credentials_refused(&self) -> bool {
        let credential = match (&self.shared, &self.installations) {
            (Some(shared), _) => shared,
            (None, Some(installations)) => &installations.app,
            (None, None) => return false,
        };
        credential.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn installations_per_owner(&self) -> bool {
        self.installations.is_some()
    }

    fn forget_installations(&self, inv: &crate::core::invalidation::Invalidation) {
        use crate::core::invalidation::Invalidation;
        let Some(installations) = &self.installations else { return };
        match inv {
            // The account's installation itself may have changed (installed, removed, suspended,
            // given other repositories).
            Invalidation::Owner(owner) => installations.forget(Some(Some(*owner))),
            Invalidation::All => installations.forget(None),
            // The repository may have been given to its account's installation: forget every
            // "none covers it" (which ones name it is not known by id).
            Invalidation::Repo(_) => installations.forget(Some(None)),
            Invalidation::User(_) | Invalidation::UserOnRepo(..) | Invalidation::UserInOwner(..) => {}
        }
    }

    fn user_budget(&self, token: &GithubToken) -> Option<GithubBudget> {
        self.user_budgets.get(&token_key(token))
    }

    async fn repository(
        &self,
        coords: &RepoCoords,
        user_token: Option<&GithubToken>,
        etag: Option<&str>,
    ) -> Result<Fetched<Option<RepoInfo>>, GithubError> {
        let (sender, found) = match user_token {
            Some(token) => (self.user_sender(token)?, None),
            None => self.repo_sender(coords).await?,
        };
        let mut path = format!("/repos/{}/{}", coords.owner(), coords.name());
        let mut answer = self.get(&sender, &path, etag).await?;
        let mut redirected = false;
        if let Answer::Moved { location } = &answer {
            path = redirect_path(&self.base, &path, location)?;
            redirected = true;
            answer = self.get(&sender, &path, etag).await?;
        }
        match answer {
            Answer::Ok { body, etag, .. } => {
                let repo: WireRepo = decode(&path, &body)?;
                let info = RepoInfo {
                    id: RepoId(repo.id),
                    owner: OwnerId(repo.owner.id),
                    redirected,
                    role: repo.permissions.map(|p| p.grant()),
                };
                Ok(Fetched::Fresh { value: Some(info), etag })
            }
            Answer::NotModified => Ok(Fetched::NotModified),
            Answer::NotFound => {
                self.not_found(coords, found.as_deref()).await?;
                Ok(Fetched::Fresh { value: None, etag: None })
            }
            Answer::Moved { .. } => Err(GithubError::Protocol { route: path, detail: "redirected twice".into() }),
        }
    }

    async fn permission(
        &self,
        repo: PermissionTarget<'_>,
        login: &str,
        etag: Option<&str>,
    ) -> Result<Fetched<Option<PermissionInfo>>, GithubError> {
        if !valid_login(login) {
            return Ok(Fetched::Fresh { value: None, etag: None });
        }
        let path = repo.path(&format!("/collaborators/{login}/permission"));
        let (sender, _) = self.repo_sender(repo.coords()).await?;
        match self.get(&sender, &path, etag).await? {
            Answer::Ok { body, etag, .. } => {
                let p: WirePermission = decode(&path, &body)?;
                let info = PermissionInfo { user: p.user.as_ref().map(|u| UserId(u.id)), grant: p.grant() };
                Ok(Fetched::Fresh { value: Some(info), etag })
            }
            Answer::NotModified => Ok(Fetched::NotModified),
            Answer::NotFound => Ok(Fetched::Fresh { value: None, etag: None }),
            Answer::Moved { .. } => Err(GithubError::Protocol { route: path, detail: "unexpected redirect".into() }),
        }
    }

    async fn roster(
        &self,
        repo: PermissionTarget<'_>,
        least: Role,
        max_pages: usize,
        etag: Option<&str>,
    ) -> Result<Fetched<Roster>, GithubError> {
        let (sender, _) = self.repo_sender(repo.coords()).await?;
        let base = repo.path("/collaborators");
        let permission = match least {
            Role::Admin => "admin",
            Role::Maintain => "maintain",
            Role::Write => "push",
            Role::Triage => "triage",
            Role::Read => "pull",
        };
        // Revalidated page by page, each page conditional on its own ETag: every page 304 is
        // "unchanged". Any 200 after the first page starts the fetch over, whole (the pages
        // before it were not kept).
        let mut sent_tags: Vec<&str> = etag.map(|v| v.split(ROSTER_TAG_SEPARATOR).collect()).unwrap_or_default();
        let mut listed = Vec::new();
        let mut tags: Vec<Option<String>> = Vec::new();
        let mut page = 1;
        while page <= max_pages.max(1) {
            let path = format!("{base}?affiliation=all&permission={permission}&per_page=100&page={page}");
            let sent = sent_tags.get(page - 1).copied();
            let answer = match self.get(&sender, &path, sent).await {
                // Refused to these credentials (no `members` permission): ask per user.
                Err(GithubError::Credentials { status: 403, .. }) => {
                    return Ok(Fetched::Fresh { value: Roster::Refused, etag: None });
                }
                other => other?,
            };
            match answer {
                Answer::NotModified if sent.is_some() => {
                    if page == sent_tags.len() {
                        return Ok(Fetched::NotModified);
                    }
                    page += 1;
                }
                Answer::Ok { .. } if page > 1 && !sent_tags.is_empty() => {
                    // Changed past the first page: start over from the first, unconditionally.
                    sent_tags.clear();
                    page = 1;
                }
                Answer::Ok { body, etag, more } => {
                    sent_tags.clear();
                    let entries: Vec<WireCollaborator> = decode(&path, &body)?;
                    listed.extend(entries.iter().filter_map(|e| e.grant().map(|g| (UserId(e.id), g))));
                    tags.push(etag);
                    if !more {
                        // Revalidated later only if its last page is not full: then no change
                        // leaves every page as it was (one added anywhere lands on the last page
                        // or pushes an entry onto it). A full last page could gain a next page
                        // and stay the same itself.
                        let etag = if entries.len() < 100 {
                            tags.into_iter().collect::<Option<Vec<_>>>().map(|t| t.join(ROSTER_TAG_SEPARATOR))
                        } else {
                            None
                        };
                        return Ok(Fetched::Fresh { value: Roster::Listed(listed), etag });
                    }
                    page += 1;
                }
                Answer::NotFound => return Ok(Fetched::Fresh { value: Roster::Refused, etag: None }),
                Answer::NotModified | Answer::Moved { .. } => {
                    return Err(GithubError::Protocol { route: path, detail: "unexpected status".into() });
                }
            }
        }
        Ok(Fetched::Fresh { value: Roster::TooLarge, etag: None })
    }

    async fn user_repos(&self, token: &GithubToken) -> Result<Vec<ListedRepo>, GithubError> {
        let sender = self.user_sender(token)?;
        // Never partial: a repository missing from it would read as no role.
        self.list_repos(&sender, "/user/repos", None, |path, body| {
            decode::<Vec<WireListedRepo>>(path, body).map(|repos| (repos, None))
        })
        .await
    }

    async fn installation_repos(
        &self,
        owner: Option<&RepoCoords>,
        max_requests: usize,
    ) -> Result<Vec<ListedRepo>, GithubError> {
        let sender = match (&self.installations, owner) {
            // Only an installation found already: an account none covers is looked up by
            // repository, one by one, as ever.
            (Some(installations), Some(coords)) => match installations.known(coords).await {
                Some(found) if !found.suspended => Sender::Installation(installations.credential(found.id)?),
                _ => return Ok(Vec::new()),
            },
            _ => self.shared.as_ref().map(Sender::Shared).ok_or_else(no_credential)?,
        };
        self.list_repos(&sender, "/installation/repositories", Some(max_requests), |path, body| {
            decode::<WireInstallationRepos>(path, body).map(|page| (page.repositories, page.total_count))
        })
        .await
    }

    async fn user(&self, login: &str) -> Result<Option<GithubUser>, GithubError> {
        if !valid_login(login) {
            return Ok(None);
        }
        self.account_at(&format!("/users/{login}")).await
    }

    async fn account(&self, id: UserId) -> Result<Option<GithubUser>, GithubError> {
        match self.account_at(&format!("/user/{}", id.0)).await? {
            Some(user) if user.id != id => Err(GithubError::Protocol {
                route: "GET /user/{account_id}".into(),
                detail: "another id answered".into(),
            }),
            found => Ok(found),
        }
    }

    fn user_token_mode(&self) -> bool {
        !self.shared_credentials()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn class(status: u16, h: &[(&'static str, &str)], body: &str) -> Result<Answer, GithubError> {
        classify(
            "/x",
            StatusCode::from_u16(status).unwrap(),
            &headers(h),
            Bytes::from(body.to_owned()),
            Timestamp(1_000_000),
        )
    }

    #[test]
    fn primary_rate_limit_waits_for_reset() {
        let e = class(403, &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1090")], "{}").unwrap_err();
        assert_eq!(e, unavailable(UnavailableCause::RateLimited, Some(Duration::from_secs(90))));
    }

    #[test]
    fn secondary_rate_limit_honours_retry_after() {
        let e = class(429, &[("retry-after", "30")], "{}").unwrap_err();
        assert_eq!(e, unavailable(UnavailableCause::SecondaryRateLimit, Some(Duration::from_secs(30))));
        let e = class(403, &[], r#"{"message":"You have exceeded a secondary rate limit"}"#).unwrap_err();
        assert!(matches!(e, GithubError::Unavailable { cause: UnavailableCause::SecondaryRateLimit, .. }));
    }

    #[test]
    fn forbidden_without_rate_limit_signs_is_configuration() {
        let e =
            class(403, &[("x-ratelimit-remaining", "4999")], r#"{"message":"Resource not accessible by integration"}"#)
                .unwrap_err();
        assert!(matches!(e, GithubError::Credentials { status: 403, .. }));
        assert!(matches!(class(401, &[], "{}").unwrap_err(), GithubError::Credentials { status: 401, .. }));
    }

    #[test]
    fn not_found_is_a_fact_and_5xx_is_unavailable() {
        assert!(matches!(class(404, &[], "{}"), Ok(Answer::NotFound)));
        assert!(matches!(
            class(502, &[], ""),
            Err(GithubError::Unavailable { cause: UnavailableCause::ServerError(502), .. })
        ));
    }

    #[test]
    fn redirects_stay_on_our_base() {
        let github: url::Url = "https://api.github.com".parse().unwrap();
        let follow = |base: &url::Url, location: &str| redirect_path(base, "/r", location);
        assert_eq!(follow(&github, "https://api.github.com/repositories/42").unwrap(), "/repositories/42");
        assert_eq!(
            follow(&github, "https://api.github.com/repositories/42/collaborators?page=2").unwrap(),
            "/repositories/42/collaborators?page=2"
        );
        assert_eq!(follow(&github, "/repositories/42").unwrap(), "/repositories/42", "a relative location");
        for elsewhere in [
            "https://evil.example/repositories/42",
            "http://api.github.com/repositories/42",
            "https://api.github.com:8443/repositories/42",
            "https://api.github.com/user/repos",
            "https://api.github.com/repositories/../user",
            "//evil.example/repositories/42",
        ] {
            assert!(follow(&github, elsewhere).is_err(), "{elsewhere}");
        }
        // GitHub Enterprise Server: the API lives under /api/v3.
        let ghes: url::Url = "https://ghe.example.com/api/v3".parse().unwrap();
        assert_eq!(follow(&ghes, "https://ghe.example.com/api/v3/repositories/7").unwrap(), "/repositories/7");
        assert!(follow(&ghes, "https://ghe.example.com/repositories/7").is_err(), "outside the API's prefix");
    }

    #[test]
    fn logins_are_checked_before_use_in_a_path() {
        assert!(valid_login("octo-cat_1"));
        assert!(!valid_login("../admin"));
        assert!(!valid_login(""));
    }
}
