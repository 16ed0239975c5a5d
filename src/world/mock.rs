//! The mock GitHub REST API that serves a world (docs/world.md, "What the mock GitHub answers").

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{FaultStatus, World, WorldRepo, glob, shapes};
use crate::clock::SystemClock;
use crate::core::ids::UserId;
use crate::core::policy::Role;
use crate::core::secret::GithubToken;
use crate::core::time::{Clock, ManualClock, Timestamp};
use crate::github::{GithubAuth, GithubConfig};

const RATE_LIMIT: u64 = 5000;
const WINDOW: Duration = Duration::from_secs(3600);
/// The token the mock treats as the installation's.
const INSTALLATION_TOKEN: &str = "ghs_world_installation";

/// A running mock GitHub, serving one world on 127.0.0.1. Stops when dropped.
#[derive(Debug)]
pub struct MockGithub {
    addr: SocketAddr,
    state: Arc<MockState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct MockState {
    world: parking_lot::RwLock<World>,
    clock: Arc<dyn Clock>,
    base: String,
    counts: Mutex<BTreeMap<String, u64>>,
    fault_hits: Mutex<Vec<u64>>,
    limit: Mutex<(u64, Timestamp)>,
    delay: Mutex<Duration>,
    /// How long the installation tokens it mints are valid (real time). Default one hour.
    token_lifetime: Mutex<Duration>,
    /// Answers given, for `x-github-request-id`.
    served: std::sync::atomic::AtomicU64,
    /// The port served, for `x-github-request-id`.
    addr_port: u16,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: std::sync::atomic::AtomicU64,
    most_in_flight: std::sync::atomic::AtomicU64,
    /// Answers charged against the budget since the start (a 304 is not).
    charged: std::sync::atomic::AtomicU64,
    /// Tokens minted for the world's `[[installations]]`: the installation, and when the token
    /// expires (the world's clock).
    tokens: Mutex<std::collections::HashMap<String, (u64, Timestamp)>>,
    /// Tokens minted so far (each token differs).
    minted: std::sync::atomic::AtomicU64,
    /// Each installation's own budget: what is left, and when it resets.
    budgets: Mutex<BTreeMap<u64, (u64, Timestamp)>>,
    /// Roster pages as rendered for the world they were computed from, by repository id and
    /// query: a large roster is asked for again after every invalidation, and it changes only
    /// with the world.
    rosters: Mutex<std::collections::HashMap<(crate::core::ids::RepoId, String), RosterPage>>,
}

/// A roster page as answered, for one world.
#[derive(Debug)]
struct RosterPage {
    world: World,
    body: Rendered,
    link: Vec<(&'static str, String)>,
}

/// The most roster pages kept rendered; past it they are all rendered afresh.
const MAX_ROSTER_PAGES: usize = 4096;

/// A 200 answer's body as sent, and the digest its ETags are made from.
#[derive(Debug, Clone)]
struct Rendered {
    text: bytes::Bytes,
    digest: [u8; 32],
}

impl Rendered {
    fn of(body: &Value) -> Self {
        let text = body.to_string();
        let digest = Sha256::digest(text.as_bytes()).into();
        Rendered { text: text.into(), digest }
    }
}

tokio::task_local! {
    /// Whose budget the request being answered spends: an installation's own, or (`None`) the
    /// world's one budget.
    static BUDGET: Option<u64>;
}

/// Who a request is from, by its `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    /// The installation's token: the world-wide one (`None`), or a token minted for one of the
    /// world's `[[installations]]`.
    Installation(Option<u64>),
    /// A token of a suspended installation: 403.
    Suspended,
    User(UserId),
    /// A token that is neither the installation's nor a declared user's: 401, as GitHub
    /// answers a bad token.
    Refused,
}

impl MockGithub {
    /// Serves `world` on a free port of 127.0.0.1, on the world's clock (its `now`, or the
    /// system clock).
    pub async fn start(world: World) -> std::io::Result<MockGithub> {
        let clock: Arc<dyn Clock> = match world.now() {
            Some(t) => Arc::new(ManualClock::new(t)),
            None => Arc::new(SystemClock),
        };
        Self::start_with_clock(world, clock).await
    }

    /// Serves `world` with `clock` (share it with the authorizer under test).
    pub async fn start_with_clock(world: World, clock: Arc<dyn Clock>) -> std::io::Result<MockGithub> {
        Self::start_at(world, clock, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Serves `world` with `clock` on `addr` (port 0: a free one), for a mock that runs on its
    /// own (`ghauthz mock-github`).
    pub async fn start_at(world: World, clock: Arc<dyn Clock>, addr: SocketAddr) -> std::io::Result<MockGithub> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let reset = clock.now().plus(WINDOW);
        let faults = world.faults().len();
        let state = Arc::new(MockState {
            world: parking_lot::RwLock::new(world),
            clock,
            base: format!("http://{addr}"),
            counts: Mutex::new(BTreeMap::new()),
            fault_hits: Mutex::new(vec![0; faults]),
            limit: Mutex::new((RATE_LIMIT, reset)),
            delay: Mutex::new(Duration::ZERO),
            token_lifetime: Mutex::new(Duration::from_secs(3600)),
            served: std::sync::atomic::AtomicU64::new(0),
            addr_port: addr.port(),
            in_flight: std::sync::atomic::AtomicU64::new(0),
            most_in_flight: std::sync::atomic::AtomicU64::new(0),
            charged: std::sync::atomic::AtomicU64::new(0),
            tokens: Mutex::new(std::collections::HashMap::new()),
            minted: std::sync::atomic::AtomicU64::new(0),
            budgets: Mutex::new(BTreeMap::new()),
            rosters: Mutex::new(std::collections::HashMap::new()),
        });
        let router = axum::Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "mock github stopped");
            }
        });
        Ok(MockGithub { addr, state, task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        self.state.base.clone()
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The clock the mock computes rate-limit resets with.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.state.clock.clone()
    }

    /// The installation token this mock accepts (`GITHUB_TOKEN` for a client in
    /// installation-token mode); user tokens are `user:<login>`.
    pub fn installation_token(&self) -> &'static str {
        INSTALLATION_TOKEN
    }

    /// The URL of the mock Google JWKS endpoint.
    pub fn google_jwks_url(&self) -> String {
        format!("{}{GOOGLE_JWKS_PATH}", self.base_url())
    }

    /// A client configuration for installation-token mode against this mock.
    pub fn github_config(&self) -> GithubConfig {
        GithubConfig::new(GithubAuth::Token(GithubToken::new(INSTALLATION_TOKEN.to_owned())))
            .with_api_base(self.base_url())
    }

    /// A client configuration for GitHub App mode against this mock: the client signs an App JWT
    /// with `key` and exchanges it for an installation token, of `installation_id`, or (`None`)
    /// of whichever of the world's `[[installations]]` covers the repository asked about.
    pub fn app_config(
        &self,
        app_id: u64,
        key: crate::core::secret::AppPrivateKey,
        installation_id: impl Into<Option<u64>>,
    ) -> GithubConfig {
        let installation_id = installation_id.into();
        GithubConfig::new(GithubAuth::App { app_id, key, installation_id }).with_api_base(self.base_url())
    }

    /// Google sign-in against this mock's JWKS endpoint, for the world's client ids; `None` if
    /// the world has no `[google]` section.
    pub fn google_config(&self) -> Option<crate::google::GoogleConfig> {
        let world = self.state.world();
        let google = world.google()?;
        let mut cfg = crate::google::GoogleConfig::new(google.client_ids.clone());
        cfg.jwks_url = self.google_jwks_url();
        cfg.require_authoritative = google.require_authoritative;
        cfg.hosted_domain = google.hosted_domain.clone();
        Some(cfg)
    }

    /// A client configuration for user-token mode against this mock.
    pub fn user_token_config(&self) -> GithubConfig {
        GithubConfig::new(GithubAuth::UserTokens).with_api_base(self.base_url())
    }

    /// The token the mock accepts as `login`'s own (`user:<login>`).
    pub fn user_token(&self, login: &str) -> GithubToken {
        GithubToken::new(format!("user:{login}"))
    }

    /// Requests served for exactly this path (query excluded).
    pub fn requests(&self, path: &str) -> u64 {
        self.state.counts.lock().get(path).copied().unwrap_or(0)
    }

    /// Requests served whose path matches a fault-style glob.
    pub fn requests_matching(&self, pattern: &str) -> u64 {
        self.state.counts.lock().iter().filter(|(p, _)| glob::matches(pattern, p)).map(|(_, n)| n).sum()
    }

    /// Every request served.
    pub fn total_requests(&self) -> u64 {
        self.state.counts.lock().values().sum()
    }

    /// Requests per path.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.state.counts.lock().clone()
    }

    /// Serves `world` from now on, as if GitHub had changed (roles granted or removed,
    /// repositories renamed). Faults are counted afresh.
    pub fn set_world(&self, world: World) {
        *self.state.fault_hits.lock() = vec![0; world.faults().len()];
        *self.state.world.write() = world;
    }

    /// Holds every answer for `delay` after computing it, so that an answer can be in flight
    /// while something else happens.
    pub fn set_response_delay(&self, delay: Duration) {
        *self.state.delay.lock() = delay;
    }

    /// How long the installation tokens minted from now on are valid, by the real clock (against
    /// which clients read `expires_at`). Default one hour, as on GitHub.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *self.state.token_lifetime.lock() = lifetime;
    }

    /// The most requests it was ever answering at once (a request counts from its arrival until
    /// its answer, delay included, is handed back).
    pub fn most_in_flight(&self) -> u64 {
        self.state.most_in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Answers charged against the rate limit since the mock started, every window together (a
    /// 304, a fault's answer, `GET /rate_limit` and the JWKS are not).
    pub fn charged_requests(&self) -> u64 {
        self.state.charged.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What `x-ratelimit-remaining` says now (the world's one budget).
    pub fn rate_limit_remaining(&self) -> u64 {
        self.state.current_limit().0
    }

    /// What `x-ratelimit-remaining` says now to the tokens of installation `id` (each of the
    /// world's `[[installations]]` spends a budget of its own).
    pub fn installation_rate_limit_remaining(&self, id: u64) -> u64 {
        let now = self.state.clock.now();
        match self.state.budgets.lock().get(&id) {
            Some(&(left, reset)) if now < reset => left,
            _ => RATE_LIMIT,
        }
    }
}

impl Drop for MockGithub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockState {
    fn world(&self) -> World {
        self.world.read().clone()
    }

    /// The budget the request being answered spends ([`BUDGET`]), as it stands.
    fn current_limit(&self) -> (u64, Timestamp) {
        self.with_budget(|l| *l)
    }

    fn spend(&self) -> (u64, Timestamp) {
        self.charged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.with_budget(|l| {
            l.0 = l.0.saturating_sub(1);
            *l
        })
    }

    /// `f` on the request's budget, renewed first if its window has passed.
    fn with_budget<T>(&self, f: impl FnOnce(&mut (u64, Timestamp)) -> T) -> T {
        let now = self.clock.now();
        let renew = |l: &mut (u64, Timestamp)| {
            if now >= l.1 {
                *l = (RATE_LIMIT, now.plus(WINDOW));
            }
        };
        match BUDGET.try_with(|b| *b).ok().flatten() {
            Some(installation) => {
                let mut budgets = self.budgets.lock();
                let l = budgets.entry(installation).or_insert((RATE_LIMIT, now.plus(WINDOW)));
                renew(l);
                f(l)
            }
            None => {
                let mut l = self.limit.lock();
                renew(&mut l);
                f(&mut l)
            }
        }
    }

    /// The budget an `Authorization` header spends: a minted installation token's own, while it
    /// is valid (an expired one's refusal is not charged to the installation).
    fn budget_of(&self, headers: &HeaderMap) -> Option<u64> {
        let (_, token) = authorization(headers).ok().flatten()?;
        let now = self.clock.now();
        self.tokens.lock().get(token).filter(|(_, expires)| now < *expires).map(|(installation, _)| *installation)
    }

    /// Who sent the request: by its `Authorization` header ([`authorization`]), whose scheme
    /// (`Bearer` or `token`) is matched without regard to case, as GitHub does (RFC 9110
    /// §11.1). A header that is not visible ASCII (not UTF-8, say), an unknown scheme or an
    /// unknown token is refused.
    fn caller(&self, headers: &HeaderMap) -> Caller {
        let (scheme, token) = match authorization(headers) {
            Err(NotAscii) => return Caller::Refused,
            Ok(None) => return Caller::Anonymous,
            Ok(Some(parts)) => parts,
        };
        if !scheme.eq_ignore_ascii_case("bearer") && !scheme.eq_ignore_ascii_case("token") {
            return Caller::Refused;
        }
        match token.strip_prefix("user:").and_then(|login| self.world().user(login)) {
            Some(u) => Caller::User(u.id),
            None if token.is_empty() => Caller::Anonymous,
            None if token == INSTALLATION_TOKEN => Caller::Installation(None),
            None => match self.tokens.lock().get(token).copied() {
                Some((_, expires)) if self.clock.now() >= expires => Caller::Refused,
                Some((id, _)) if self.world().installations().iter().any(|i| i.id == id && i.suspended) => {
                    Caller::Suspended
                }
                Some((id, _)) => Caller::Installation(Some(id)),
                None => Caller::Refused,
            },
        }
    }

    /// The fault that answers this request, if one is still active; it is used up by one.
    fn fault(&self, path: &str) -> Option<(FaultStatus, Option<u64>)> {
        let world = self.world();
        let mut hits = self.fault_hits.lock();
        for (i, f) in world.faults().iter().enumerate() {
            if glob::matches(&f.path, path) && f.times.is_none_or(|t| hits[i] < t) {
                hits[i] += 1;
                return Some((f.status, f.retry_after));
            }
        }
        None
    }

    fn can_see(&self, caller: Caller, repo: &WorldRepo) -> bool {
        match caller {
            // An installation's token sees its installation's repositories alone, public or not.
            Caller::Installation(Some(id)) => self.world().installations().iter().any(|i| i.id == id && i.covers(repo)),
            _ if !repo.private => true,
            Caller::Installation(None) => true,
            Caller::User(u) => self.world().effective_role(u, repo).is_some(),
            Caller::Anonymous | Caller::Refused | Caller::Suspended => false,
        }
    }
}

fn respond(
    status: StatusCode,
    limit: (u64, Timestamp),
    extra: &[(&str, String)],
    body: Option<&Value>,
) -> Response<Body> {
    respond_text(status, limit, extra, body.map(|v| bytes::Bytes::from(v.to_string())))
}

fn respond_text(
    status: StatusCode,
    limit: (u64, Timestamp),
    extra: &[(&str, String)],
    body: Option<bytes::Bytes>,
) -> Response<Body> {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .header("x-ratelimit-limit", RATE_LIMIT.to_string())
        .header("x-ratelimit-remaining", limit.0.to_string())
        .header("x-ratelimit-used", (RATE_LIMIT - limit.0).to_string())
        .header("x-ratelimit-reset", limit.1.as_secs().to_string())
        .header("x-ratelimit-resource", "core");
    for (k, v) in extra {
        b = b.header(*k, v.as_str());
    }
    let body = body.map(Body::from).unwrap_or_else(Body::empty);
    b.body(body).unwrap_or_else(|_| Response::new(Body::empty()))
}

fn not_found() -> Value {
    json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"})
}

/// The ETag of `body` as fetched with `token` (the `Authorization` header's token, empty for an
/// anonymous caller): tied to the token, as GitHub's are, so that a 304 is answered only to the
/// token that fetched the tag.
fn etag_of(body: &Rendered, token: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update((token.len() as u64).to_be_bytes());
    hash.update(token);
    hash.update(body.digest);
    let hex: String = hash.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// An `Authorization` header that is not visible ASCII.
struct NotAscii;

/// The request's `Authorization` header as (scheme, token), both trimmed (the token empty when
/// the header has a scheme alone); `None` without one, or with an empty one.
fn authorization(headers: &HeaderMap) -> Result<Option<(&str, &str)>, NotAscii> {
    let Some(value) = headers.get("authorization") else { return Ok(None) };
    let value = value.to_str().map_err(|_| NotAscii)?.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    Ok(Some((scheme, token.trim())))
}

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag))
}

async fn handle(State(state): State<Arc<MockState>>, method: Method, uri: Uri, headers: HeaderMap) -> Response<Body> {
    use std::sync::atomic::Ordering::SeqCst;
    /// Counts the request out when its answer is handed back, or the client goes away.
    struct Answering<'a>(&'a std::sync::atomic::AtomicU64);
    impl Drop for Answering<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, SeqCst);
        }
    }
    let now_in_flight = state.in_flight.fetch_add(1, SeqCst) + 1;
    state.most_in_flight.fetch_max(now_in_flight, SeqCst);
    let _answering = Answering(&state.in_flight);
    let budget = state.budget_of(&headers);
    let mut response = BUDGET.scope(budget, answer(&state, method, uri, headers)).await;
    // Every answer names its request, as GitHub's do (`x-github-request-id`).
    let n = state.served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("C0DE:{:04X}:{:X}:{:X}:6756A1B2", state.addr_port, n, n.wrapping_mul(2_654_435_761) & 0xFF_FFFF);
    if let Ok(id) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-github-request-id", id);
    }
    let delay = *state.delay.lock();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

async fn answer(state: &MockState, method: Method, uri: Uri, headers: HeaderMap) -> Response<Body> {
    let path = uri.path().to_owned();
    *state.counts.lock().entry(path.clone()).or_insert(0) += 1;
    if let Some((status, retry_after)) = state.fault(&path) {
        return fault_response(state, status, retry_after, is_roster(&path)).await;
    }
    if method == Method::POST {
        return installation_token(state, &path, &headers);
    }
    if let Some(lookup) = installation_lookup(state, &path, &headers) {
        return lookup;
    }
    if path == GOOGLE_JWKS_PATH {
        return google_jwks(state);
    }
    if method != Method::GET {
        return respond(StatusCode::NOT_FOUND, state.spend(), &[], Some(&not_found()));
    }
    let caller = state.caller(&headers);
    if caller == Caller::Refused {
        return error(state, StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    if caller == Caller::Suspended {
        return error(state, StatusCode::FORBIDDEN, "This installation has been suspended");
    }
    let world = state.world();
    let query = uri.query().unwrap_or("");
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (repo, rest) = match segs.as_slice() {
        ["rate_limit"] => {
            // As on GitHub, asking costs nothing.
            let (remaining, reset) = state.current_limit();
            let body = shapes::rate_limit(RATE_LIMIT, remaining, reset.as_secs());
            return respond(StatusCode::OK, (remaining, reset), &[], Some(&body));
        }
        ["users", login] => {
            let Some(account) = account_by_login(&world, login) else { return missing(state) };
            let body = shapes::public_user(&state.base, account, public_repos(&world, account));
            return ok_or_not_modified(state, &headers, &body, &[]);
        }
        ["user", id] if *id != "repos" => {
            let Some(account) = id.parse::<u64>().ok().and_then(|id| account_by_id(&world, id)) else {
                return missing(state);
            };
            let body = shapes::public_user(&state.base, account, public_repos(&world, account));
            return ok_or_not_modified(state, &headers, &body, &[]);
        }
        ["user"] => {
            let user = match caller {
                Caller::User(user) => user,
                Caller::Installation(_) => {
                    return error(state, StatusCode::FORBIDDEN, "Resource not accessible by integration");
                }
                _ => return error(state, StatusCode::UNAUTHORIZED, "Requires authentication"),
            };
            let Some(account) = account_by_id(&world, user.0) else { return missing(state) };
            let owned = |private: bool| {
                world.repos().iter().filter(|r| r.owner_id == user.0 && !r.owner_is_org && r.private == private).count()
            };
            let body = shapes::private_user(&state.base, account, owned(false), owned(true));
            return ok_or_not_modified(state, &headers, &body, &[]);
        }
        ["installation", "repositories"] => {
            let Caller::Installation(installation) = caller else {
                return error(state, StatusCode::UNAUTHORIZED, "A JSON web token could not be decoded");
            };
            let all: Vec<&WorldRepo> = world.repos().iter().filter(|r| state.can_see(caller, r)).collect();
            let total = all.len();
            let selection = installation
                .and_then(|id| world.installations().iter().find(|i| i.id == id))
                .map_or("all", |i| if i.repositories.is_some() { "selected" } else { "all" });
            let (items, link) =
                paged(state, "/installation/repositories", query, all, |r| repo_json(state, &world, r, caller, false));
            let body = json!({"total_count": total, "repository_selection": selection, "repositories": items});
            return ok_or_not_modified(state, &headers, &body, &link);
        }
        ["user", "repos"] => {
            let Caller::User(user) = caller else {
                return error(state, StatusCode::UNAUTHORIZED, "Requires authentication");
            };
            // GitHub's default order: by full name, ascending.
            let mut mine: Vec<&WorldRepo> =
                world.repos().iter().filter(|r| world.effective_role(user, r).is_some()).collect();
            mine.sort_by_cached_key(|r| (format!("{}/{}", r.owner, r.name).to_ascii_lowercase(), r.id));
            let (items, link) =
                paged(state, "/user/repos", query, mine, |r| repo_json(state, &world, r, caller, false));
            return ok_or_not_modified(state, &headers, &Value::Array(items), &link);
        }
        ["repos", owner, name, rest @ ..] => {
            let found =
                world.repos().iter().find(|r| r.owner.eq_ignore_ascii_case(owner) && r.name.eq_ignore_ascii_case(name));
            if let Some(r) = found {
                (r, rest)
            } else if let Some(r) = world.repos().iter().find(|r| {
                r.owner.eq_ignore_ascii_case(owner) && r.renamed_from.iter().any(|n| n.eq_ignore_ascii_case(name))
            }) {
                // As on GitHub, a repository the caller cannot see is not there, renamed or not.
                if !state.can_see(caller, r) {
                    return missing(state);
                }
                let mut location = format!("{}/repositories/{}", state.base, r.id);
                for s in rest {
                    location.push('/');
                    location.push_str(s);
                }
                let body = json!({"message": "Moved Permanently", "url": location, "documentation_url": "https://docs.github.com/v3/#http-redirects"});
                return respond(
                    StatusCode::MOVED_PERMANENTLY,
                    state.spend(),
                    &[("location", location.clone())],
                    Some(&body),
                );
            } else {
                return missing(state);
            }
        }
        ["repositories", id, rest @ ..] => match world.repos().iter().find(|r| r.id.0.to_string() == *id) {
            Some(r) => (r, rest),
            None => return missing(state),
        },
        _ => return missing(state),
    };
    if !state.can_see(caller, repo) {
        return missing(state);
    }
    match rest {
        [] => ok_or_not_modified(state, &headers, &repo_json(state, &world, repo, caller, true), &[]),
        ["collaborators"] => roster(state, &world, repo, caller, query, &headers),
        ["collaborators", login, "permission"] => {
            if caller == Caller::Anonymous {
                return error(state, StatusCode::UNAUTHORIZED, "Requires authentication");
            }
            match world.user(login) {
                Some(user) => ok_or_not_modified(state, &headers, &permission_json(state, &world, repo, user.id), &[]),
                None => missing(state),
            }
        }
        _ => missing(state),
    }
}

/// A GitHub error answer: `message`, the documentation's address and the status, spending one.
fn error(state: &MockState, status: StatusCode, message: &str) -> Response<Body> {
    let body =
        json!({"message": message, "documentation_url": "https://docs.github.com/rest", "status": status.as_str()});
    respond(status, state.spend(), &[], Some(&body))
}

/// 404, as GitHub answers a route or an object the caller may not see.
fn missing(state: &MockState) -> Response<Body> {
    respond(StatusCode::NOT_FOUND, state.spend(), &[], Some(&not_found()))
}

/// 200 with `body` and its ETag, or 304 when the request's `If-None-Match` matches it.
fn ok_or_not_modified(
    state: &MockState,
    headers: &HeaderMap,
    body: &Value,
    extra: &[(&str, String)],
) -> Response<Body> {
    ok_or_not_modified_rendered(state, headers, &Rendered::of(body), extra)
}

fn ok_or_not_modified_rendered(
    state: &MockState,
    headers: &HeaderMap,
    body: &Rendered,
    extra: &[(&str, String)],
) -> Response<Body> {
    // Only callers that are not refused get this far: their header is visible ASCII.
    let token = authorization(headers).ok().flatten().map_or("", |(_, token)| token);
    let etag = etag_of(body, token.as_bytes());
    if if_none_match(headers, &etag) {
        return respond(StatusCode::NOT_MODIFIED, state.current_limit(), &[("etag", etag)], None);
    }
    let mut headers: Vec<(&str, String)> = vec![("etag", etag)];
    headers.extend(extra.iter().cloned());
    respond_text(StatusCode::OK, state.spend(), &headers, Some(body.text.clone()))
}

/// The world's user or organization with this login (without regard to case).
fn account_by_login<'w>(world: &'w World, login: &str) -> Option<shapes::Account<'w>> {
    if let Some(u) = world.users().iter().find(|u| u.login.eq_ignore_ascii_case(login)) {
        return Some(shapes::Account { login: &u.login, id: u.id.0, organization: false });
    }
    let org = world.orgs().iter().find(|o| o.login.eq_ignore_ascii_case(login))?;
    Some(shapes::Account { login: &org.login, id: org.id, organization: true })
}

/// The world's user or organization with this numeric id.
fn account_by_id(world: &World, id: u64) -> Option<shapes::Account<'_>> {
    if let Some(u) = world.users().iter().find(|u| u.id.0 == id) {
        return Some(shapes::Account { login: &u.login, id, organization: false });
    }
    let org = world.orgs().iter().find(|o| o.id == id)?;
    Some(shapes::Account { login: &org.login, id, organization: true })
}

/// How many public repositories `account` owns.
fn public_repos(world: &World, account: shapes::Account<'_>) -> usize {
    world
        .repos()
        .iter()
        .filter(|r| r.owner_id == account.id && r.owner_is_org == account.organization && !r.private)
        .count()
}

/// The account that owns `repo`.
fn owner_of<'r>(repo: &'r WorldRepo) -> shapes::Account<'r> {
    shapes::Account { login: &repo.owner, id: repo.owner_id, organization: repo.owner_is_org }
}

/// The value of query parameter `name`, if given.
fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// One page of `items` as GitHub pages (30 a page by default, at most 100, pages from 1), and
/// the `link` header naming every relation that applies (`first` and `prev` after the first
/// page, `next` and `last` before the last), keeping the request's other parameters.
fn paged<T>(
    state: &MockState,
    route: &str,
    query: &str,
    items: Vec<T>,
    mut shape: impl FnMut(T) -> Value,
) -> (Vec<Value>, Vec<(&'static str, String)>) {
    let number = |name: &str| param(query, name).and_then(|v| v.parse::<usize>().ok());
    let per_page = number("per_page").unwrap_or(30).clamp(1, 100);
    let page = number("page").unwrap_or(1).max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let shown = items.into_iter().skip((page - 1).saturating_mul(per_page)).take(per_page).map(&mut shape).collect();
    let kept: String = query
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("page=") && !kv.starts_with("per_page="))
        .map(|kv| format!("{kv}&"))
        .collect();
    let url = |p: usize| format!("<{}{route}?{kept}per_page={per_page}&page={p}>", state.base);
    let mut relations = Vec::new();
    if page > 1 {
        relations.push(format!("{}; rel=\"prev\"", url((page - 1).min(last))));
    }
    if page < last {
        relations.push(format!("{}; rel=\"next\"", url(page + 1)));
        relations.push(format!("{}; rel=\"last\"", url(last)));
    }
    if page > 1 {
        relations.push(format!("{}; rel=\"first\"", url(1)));
    }
    let link = if relations.is_empty() { Vec::new() } else { vec![("link", relations.join(", "))] };
    (shown, link)
}

/// `GET /repos/{owner}/{name}/collaborators`: the repository's roster, every user with an
/// effective role, by id, each with its `permissions` and `role_name`; `permission=P` keeps the
/// users whose hash has `P` true, `affiliation=direct` those with a direct role and
/// `affiliation=outside` those of them who are not members of the owning organization. The
/// installation may ask, and a user with push access; anyone else is refused.
fn roster(
    state: &MockState,
    world: &World,
    repo: &WorldRepo,
    caller: Caller,
    query: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    match caller {
        Caller::Installation(_) => {}
        Caller::User(u) if world.effective_role(u, repo).is_some_and(|g| g.role >= Role::Write) => {}
        Caller::User(_) => {
            return error(state, StatusCode::FORBIDDEN, "Must have push access to view repository collaborators.");
        }
        Caller::Anonymous | Caller::Refused | Caller::Suspended => {
            return error(state, StatusCode::UNAUTHORIZED, "Requires authentication");
        }
    }
    let least = match param(query, "permission") {
        None => None,
        Some("pull") => Some(Role::Read),
        Some("triage") => Some(Role::Triage),
        Some("push") => Some(Role::Write),
        Some("maintain") => Some(Role::Maintain),
        Some("admin") => Some(Role::Admin),
        Some(_) => return error(state, StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed"),
    };
    let affiliation = param(query, "affiliation").unwrap_or("all");
    if !matches!(affiliation, "all" | "direct" | "outside") {
        return error(state, StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    }
    let key = (repo.id, query.to_owned());
    // Copied out, so that the lock is not held while the answer is made.
    let kept = state.rosters.lock().get(&key).filter(|p| p.world.is(world)).map(|p| (p.body.clone(), p.link.clone()));
    if let Some((body, link)) = kept {
        return ok_or_not_modified_rendered(state, headers, &body, &link);
    }
    let org = world.orgs().iter().find(|o| repo.owner_is_org && o.id == repo.owner_id);
    // Only these can hold a role on it (`World::effective_role`'s sources): the organization's
    // members, owners and team members, or the owning user; and its direct collaborators.
    let candidates: std::collections::HashSet<UserId> = match org {
        Some(o) => o
            .members
            .iter()
            .chain(&o.owners)
            .chain(o.teams.iter().flat_map(|t| &t.members))
            .chain(repo.roles.keys())
            .copied()
            .collect(),
        None => std::iter::once(UserId(repo.owner_id)).chain(repo.roles.keys().copied()).collect(),
    };
    let mut users: Vec<_> = world
        .users()
        .iter()
        .filter(|u| candidates.contains(&u.id))
        .filter_map(|u| world.effective_role(u.id, repo).map(|g| (u, g)))
        .filter(|(_, g)| least.is_none_or(|least| g.role >= least))
        .filter(|(u, _)| match affiliation {
            "all" => true,
            direct => {
                let member = org.is_some_and(|o| o.members.contains(&u.id) || o.owners.contains(&u.id));
                repo.roles.contains_key(&u.id) && (direct == "direct" || !member)
            }
        })
        .collect();
    users.sort_by_key(|(u, _)| u.id);
    let route = format!("/repos/{}/{}/collaborators", repo.owner, repo.name);
    let (items, link) = paged(state, &route, query, users, |(u, g)| {
        let account = shapes::Account { login: &u.login, id: u.id.0, organization: false };
        shapes::collaborator(&state.base, account, Some(g.role), g.name.as_str())
    });
    let body = Rendered::of(&Value::Array(items));
    let mut pages = state.rosters.lock();
    if pages.len() >= MAX_ROSTER_PAGES {
        pages.clear();
    }
    pages.insert(key, RosterPage { world: world.clone(), body: body.clone(), link: link.clone() });
    drop(pages);
    ok_or_not_modified_rendered(state, headers, &body, &link)
}

/// Where the mock serves the world's Google JWKS.
const GOOGLE_JWKS_PATH: &str = "/oauth2/v3/certs";

/// Google's JWKS, with the world's `Cache-Control` max-age; 404 when the world has no Google.
fn google_jwks(state: &MockState) -> Response<Body> {
    let world = state.world();
    let Some(google) = world.google() else {
        return respond(StatusCode::NOT_FOUND, state.current_limit(), &[], Some(&not_found()));
    };
    let cache = format!("public, max-age={}, must-revalidate, no-transform", google.max_age.unwrap_or(0));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json; charset=UTF-8")
        .header("cache-control", cache)
        .body(Body::from(google.jwks_json.clone()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// `POST /app/installations/{id}/access_tokens`: GitHub App authentication (an extension of
/// docs/world.md, which describes no App). Any App JWT (three dot-separated parts) gets the
/// installation token the other routes accept; anything else is 401.
fn installation_token(state: &MockState, path: &str, headers: &HeaderMap) -> Response<Body> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if !matches!(segs.as_slice(), ["app", "installations", id, "access_tokens"] if id.parse::<u64>().is_ok()) {
        return respond(StatusCode::NOT_FOUND, state.spend(), &[], Some(&not_found()));
    }
    if !app_jwt(headers) {
        let body = json!({"message": "A JSON web token could not be decoded", "documentation_url": "https://docs.github.com/rest"});
        return respond(StatusCode::UNAUTHORIZED, state.spend(), &[], Some(&body));
    }
    let id: u64 = segs[2].parse().unwrap_or_default();
    let world = state.world();
    if world.installations().is_empty() {
        // The token's expiry is read against the real clock by the client.
        let lifetime = chrono::Duration::from_std(*state.token_lifetime.lock()).unwrap_or(chrono::Duration::hours(1));
        let expires = chrono::Utc::now() + lifetime;
        let body = json!({
            "token": INSTALLATION_TOKEN,
            "expires_at": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "permissions": {"metadata": "read", "members": "read"},
            "repository_selection": "all"
        });
        return respond(StatusCode::CREATED, state.spend(), &[], Some(&body));
    }
    let Some(installation) = world.installations().iter().find(|i| i.id == id) else {
        return respond(StatusCode::NOT_FOUND, state.spend(), &[], Some(&not_found()));
    };
    if installation.suspended {
        let body = json!({"message": "This installation has been suspended", "documentation_url": "https://docs.github.com/rest"});
        return respond(StatusCode::FORBIDDEN, state.spend(), &[], Some(&body));
    }
    // A token of its own, different at every call, valid one hour by the world's clock. Its
    // `expires_at` says the same hour against the real clock, which clients read it against
    // (as GitHub's, and as the world-wide token's above).
    let n = state.minted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let token = format!("ghs_inst{id}_{n:08}");
    let now = state.clock.now();
    let expires = now.plus(Duration::from_secs(3600));
    let mut tokens = state.tokens.lock();
    // An expired token is refused as an unknown one is: it need not be kept.
    tokens.retain(|_, (_, until)| now < *until);
    tokens.insert(token.clone(), (id, expires));
    drop(tokens);
    let expires_at = chrono::Utc::now() + chrono::Duration::hours(1);
    let body = json!({
        "token": token,
        "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "permissions": {"metadata": "read", "members": "read"},
        "repository_selection": if installation.repositories.is_some() { "selected" } else { "all" },
    });
    respond(StatusCode::CREATED, state.spend(), &[], Some(&body))
}

/// Whether the request carries an App JWT (three dot-separated parts, `Bearer`).
fn app_jwt(headers: &HeaderMap) -> bool {
    authorization(headers)
        .ok()
        .flatten()
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .is_some_and(|(_, t)| t.split('.').count() == 3 && t.starts_with("eyJ"))
}

/// `GET /repos/{owner}/{repo}/installation`, `/orgs/{org}/installation` and
/// `/users/{user}/installation` (App JWT): the installation that covers it, or 404; `GET
/// /app/installations`: every installation, by id. `None`: not one of these routes, or a world
/// without `[[installations]]` (the routes are then unknown).
fn installation_lookup(state: &MockState, path: &str, headers: &HeaderMap) -> Option<Response<Body>> {
    let world = state.world();
    if world.installations().is_empty() {
        return None;
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let refused = || {
        let body = json!({"message": "A JSON web token could not be decoded", "documentation_url": "https://docs.github.com/rest"});
        Some(respond(StatusCode::UNAUTHORIZED, state.spend(), &[], Some(&body)))
    };
    let shape = |i: &crate::world::WorldInstallation| {
        let account = shapes::Account { login: &i.account, id: i.account_id, organization: i.account_is_org };
        shapes::installation(&state.base, i.id, account, i.repositories.is_some(), i.suspended)
    };
    if segs.as_slice() == ["app", "installations"] {
        if !app_jwt(headers) {
            return refused();
        }
        // Every installation on one page (a world declares few).
        let mut all: Vec<_> = world.installations().iter().collect();
        all.sort_by_key(|i| i.id);
        let body = Value::Array(all.into_iter().map(shape).collect());
        return Some(respond(StatusCode::OK, state.spend(), &[], Some(&body)));
    }
    let found = match segs.as_slice() {
        ["repos", owner, name, "installation"] => world
            .repos()
            .iter()
            .find(|r| r.owner.eq_ignore_ascii_case(owner) && r.name.eq_ignore_ascii_case(name))
            .and_then(|r| world.installation_of(r)),
        ["orgs", login, "installation"] => {
            world.installations().iter().find(|i| i.account_is_org && i.account.eq_ignore_ascii_case(login))
        }
        ["users", login, "installation"] => {
            world.installations().iter().find(|i| !i.account_is_org && i.account.eq_ignore_ascii_case(login))
        }
        _ => return None,
    };
    if !app_jwt(headers) {
        return refused();
    }
    let Some(i) = found else {
        return Some(respond(StatusCode::NOT_FOUND, state.spend(), &[], Some(&not_found())));
    };
    Some(respond(StatusCode::OK, state.spend(), &[], Some(&shape(i))))
}

/// Whether `path` is a repository's roster (`/repos/{owner}/{name}/collaborators`, or by id).
fn is_roster(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(parts.as_slice(), ["repos", _, _, "collaborators"] | ["repositories", _, "collaborators"])
}

/// The answer of a `[[faults]]` entry. A 403 on a roster is GitHub's refusal to credentials
/// without the organization `members` permission (charged, the budget not exhausted); elsewhere
/// it is the primary rate limit.
async fn fault_response(
    state: &MockState,
    status: FaultStatus,
    retry_after: Option<u64>,
    roster: bool,
) -> Response<Body> {
    let mut extra = Vec::new();
    if let Some(s) = retry_after {
        extra.push(("retry-after", s.to_string()));
    }
    match status {
        FaultStatus::Timeout => {
            // Hang until the client gives up (bounded, so that nothing outlives a test run).
            tokio::time::sleep(Duration::from_secs(120)).await;
            respond(StatusCode::GATEWAY_TIMEOUT, state.current_limit(), &extra, None)
        }
        FaultStatus::Http(403) if roster => {
            let body = json!({
                "message": "Resource not accessible by integration",
                "documentation_url": "https://docs.github.com/rest/collaborators/collaborators#list-repository-collaborators",
                "status": "403"
            });
            respond(StatusCode::FORBIDDEN, state.spend(), &extra, Some(&body))
        }
        FaultStatus::Http(403) => {
            let reset = state.clock.now().plus(Duration::from_secs(retry_after.unwrap_or(60)));
            let body = json!({
                "message": "API rate limit exceeded for installation ID 1.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
            });
            respond(StatusCode::FORBIDDEN, (0, reset), &extra, Some(&body))
        }
        FaultStatus::Http(429) => {
            let body = json!({
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
            });
            respond(StatusCode::TOO_MANY_REQUESTS, state.current_limit(), &extra, Some(&body))
        }
        FaultStatus::Http(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            respond(status, state.current_limit(), &extra, Some(&json!({"message": "Server Error"})))
        }
    }
}

/// The repository object (`full-repository` for `GET /repos/{owner}/{name}`, `repository` in
/// listings); for a user caller with the user's `permissions` (all false without a role).
fn repo_json(state: &MockState, world: &World, repo: &WorldRepo, caller: Caller, full: bool) -> Value {
    let permissions = match caller {
        Caller::User(u) => Some(shapes::permissions(world.effective_role(u, repo).map(|g| g.role))),
        _ => None,
    };
    shapes::repository(&state.base, repo, owner_of(repo), permissions, full)
}

/// `GET .../collaborators/{login}/permission`: the legacy base role, the role's name, and the
/// user as a `collaborator` with its `permissions`.
fn permission_json(state: &MockState, world: &World, repo: &WorldRepo, user: UserId) -> Value {
    let grant = world.effective_role(user, repo);
    let (permission, role_name) = match &grant {
        Some(g) => {
            let legacy = match g.role {
                Role::Admin => "admin",
                Role::Maintain | Role::Write => "write",
                Role::Triage | Role::Read => "read",
            };
            (legacy.to_owned(), g.name.as_str().to_owned())
        }
        None if repo.private => ("none".to_owned(), String::new()),
        None => ("read".to_owned(), "read".to_owned()),
    };
    let role = match &grant {
        Some(g) => Some(g.role),
        None if repo.private => None,
        None => Some(Role::Read),
    };
    let login = world.users().iter().find(|u| u.id == user).map_or("", |u| u.login.as_str());
    let account = shapes::Account { login, id: user.0, organization: false };
    json!({
        "permission": permission,
        "role_name": role_name,
        "user": shapes::collaborator(&state.base, account, role, &role_name)
    })
}
