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

use super::{FaultStatus, World, WorldRepo, glob};
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
}

/// Who a request is from, by its `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Installation,
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
    /// with `key` and exchanges it for an installation token.
    pub fn app_config(
        &self,
        app_id: u64,
        key: crate::core::secret::AppPrivateKey,
        installation_id: u64,
    ) -> GithubConfig {
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

    /// What `x-ratelimit-remaining` says now.
    pub fn rate_limit_remaining(&self) -> u64 {
        self.state.current_limit().0
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

    fn current_limit(&self) -> (u64, Timestamp) {
        let mut l = self.limit.lock();
        let now = self.clock.now();
        if now >= l.1 {
            *l = (RATE_LIMIT, now.plus(WINDOW));
        }
        *l
    }

    fn spend(&self) -> (u64, Timestamp) {
        self.current_limit();
        let mut l = self.limit.lock();
        l.0 = l.0.saturating_sub(1);
        *l
    }

    fn caller(&self, headers: &HeaderMap) -> Caller {
        let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else { return Caller::Anonymous };
        let token = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("token ")).unwrap_or("");
        match token.strip_prefix("user:").and_then(|login| self.world().user(login)) {
            Some(u) => Caller::User(u.id),
            None if token.is_empty() => Caller::Anonymous,
            None if token == INSTALLATION_TOKEN => Caller::Installation,
            None => Caller::Refused,
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
            _ if !repo.private => true,
            Caller::Installation => true,
            Caller::User(u) => self.world().effective_role(u, repo).is_some(),
            Caller::Anonymous | Caller::Refused => false,
        }
    }
}

fn respond(
    status: StatusCode,
    limit: (u64, Timestamp),
    extra: &[(&str, String)],
    body: Option<&Value>,
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
    let body = body.map(|v| Body::from(v.to_string())).unwrap_or_else(Body::empty);
    b.body(body).unwrap_or_else(|_| Response::new(Body::empty()))
}

fn not_found() -> Value {
    json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"})
}

fn etag_of(body: &Value) -> String {
    let digest = Sha256::digest(body.to_string().as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag))
}

async fn handle(State(state): State<Arc<MockState>>, method: Method, uri: Uri, headers: HeaderMap) -> Response<Body> {
    let response = answer(&state, method, uri, headers).await;
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
        return fault_response(state, status, retry_after).await;
    }
    if method == Method::POST {
        return installation_token(state, &path, &headers);
    }
    if path == GOOGLE_JWKS_PATH {
        return google_jwks(state);
    }
    if method != Method::GET {
        return respond(StatusCode::NOT_FOUND, state.spend(), &[], Some(&not_found()));
    }
    let caller = state.caller(&headers);
    if caller == Caller::Refused {
        let body = json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"});
        return respond(StatusCode::UNAUTHORIZED, state.spend(), &[], Some(&body));
    }
    let world = state.world();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (repo, rest) = match segs.as_slice() {
        ["users", login] => {
            let Some(body) = account_json(&world, login) else {
                return respond(StatusCode::NOT_FOUND, state.spend(), &[], Some(&not_found()));
            };
            return ok_or_not_modified(state, &headers, &body, &[]);
        }
        ["installation", "repositories"] => {
            if caller != Caller::Installation {
                let body = json!({"message": "A JSON web token could not be decoded", "documentation_url": "https://docs.github.com/rest"});
                return respond(StatusCode::UNAUTHORIZED, state.spend(), &[], Some(&body));
            }
            let (body, link) = installation_repos(state, &world, uri.query().unwrap_or(""));
            let link: Vec<(&str, String)> = link.into_iter().map(|l| ("link", l)).collect();
            return ok_or_not_modified(state, &headers, &body, &link);
        }
        ["user", "repos"] => {
            let Caller::User(user) = caller else {
                let body =
                    json!({"message": "Requires authentication", "documentation_url": "https://docs.github.com/rest"});
                return respond(StatusCode::UNAUTHORIZED, state.spend(), &[], Some(&body));
            };
            let (body, link) = user_repos(state, &world, user, uri.query().unwrap_or(""));
            let link: Vec<(&str, String)> = link.into_iter().map(|l| ("link", l)).collect();
            return ok_or_not_modified(state, &headers, &body, &link);
        }
        ["repos", owner, name, rest @ ..] => {
            let found =
                world.repos().iter().find(|r| r.owner.eq_ignore_ascii_case(owner) && r.name.eq_ignore_ascii_case(name));
            if let Some(r) = found {
                (r, rest)
            } else if let Some(r) = world.repos().iter().find(|r| {
                r.owner.eq_ignore_ascii_case(owner) && r.renamed_from.iter().any(|n| n.eq_ignore_ascii_case(name))
            }) {
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
                return respond(StatusCode::NOT_FOUND, state.spend(), &[], Some(&not_found()));
            }
        }
        ["repositories", id, rest @ ..] => match world.repos().iter().find(|r| r.id.0.to_string() == *id) {
            Some(r) => (r, rest),
            None => return respond(StatusCode::NOT_FOUND, state.spend(), &[], Some(&not_found())),
        },
        _ => return respond(StatusCode::NOT_FOUND, state.spend(), &[], Some(&not_found())),
    };
    if !state.can_see(caller, repo) {
        return respond(StatusCode::NOT_FOUND, state.spend(), &[], Some(&not_found()));
    }
    let body = match rest {
        [] => repo_json(state, repo, caller),
        ["collaborators", login, "permission"] => {
            if caller == Caller::Anonymous {
                let body =
                    json!({"message": "Requires authentication", "documentation_url": "https://docs.github.com/rest"});
                return respond(StatusCode::UNAUTHORIZED, state.spend(), &[], Some(&body));
            }
            match world.user(login) {
                Some(user) => permission_json(state, repo, user.id, &user.login),
                None => return respond(StatusCode::NOT_FOUND, state.spend(), &[], Some(&not_found())),
            }
        }
        _ => return respond(StatusCode::NOT_FOUND, state.spend(), &[], Some(&not_found())),
    };
    ok_or_not_modified(state, &headers, &body, &[])
}

/// 200 with `body` and its ETag, or 304 when the request's `If-None-Match` matches it.
fn ok_or_not_modified(
    state: &MockState,
    headers: &HeaderMap,
    body: &Value,
    extra: &[(&str, String)],
) -> Response<Body> {
    let etag = etag_of(body);
    if if_none_match(headers, &etag) {
        return respond(StatusCode::NOT_MODIFIED, state.current_limit(), &[("etag", etag)], None);
    }
    let mut headers: Vec<(&str, String)> = vec![("etag", etag)];
    headers.extend(extra.iter().cloned());
    respond(StatusCode::OK, state.spend(), &headers, Some(body))
}

/// `GET /users/{login}`: a user (or an organization) of the world, by login.
fn account_json(world: &World, login: &str) -> Option<Value> {
    if let Some(user) = world.user(login) {
        return Some(json!({"login": user.login, "id": user.id.0, "type": "User", "site_admin": false}));
    }
    let org = world.orgs().iter().find(|o| o.login.eq_ignore_ascii_case(login))?;
    Some(json!({"login": org.login, "id": org.id, "type": "Organization", "site_admin": false}))
}

/// `GET /user/repos?per_page=N&page=K`: the repositories `user` has a role on, by id, each with
/// its `permissions`.
fn user_repos(state: &MockState, world: &World, user: UserId, query: &str) -> (Value, Option<String>) {
    let mine: Vec<&WorldRepo> = world.repos().iter().filter(|r| world.effective_role(user, r).is_some()).collect();
    let (items, link) = paged(state, "/user/repos", query, mine, Caller::User(user));
    (Value::Array(items), link)
}

/// `GET /installation/repositories?per_page=N&page=K`: every repository of the world (the
/// installation sees them all), by id, as `{"total_count", "repositories"}`.
fn installation_repos(state: &MockState, world: &World, query: &str) -> (Value, Option<String>) {
    let all: Vec<&WorldRepo> = world.repos().iter().collect();
    let total = all.len();
    let (items, link) = paged(state, "/installation/repositories", query, all, Caller::Installation);
    (json!({"total_count": total, "repositories": items}), link)
}

/// One page of `repos`, by id, as GitHub pages (30 a page by default, at most 100, pages from
/// 1), with the `link` header naming the next and last pages when there are more.
fn paged(
    state: &MockState,
    route: &str,
    query: &str,
    mut repos: Vec<&WorldRepo>,
    caller: Caller,
) -> (Vec<Value>, Option<String>) {
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let per_page = param("per_page").unwrap_or(30).clamp(1, 100);
    let page = param("page").unwrap_or(1).max(1);
    repos.sort_by_key(|r| r.id);
    let last = repos.len().div_ceil(per_page).max(1);
    let items = repos
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|r| repo_json(state, r, caller))
        .collect();
    let link = (page < last).then(|| {
        let url = |p: usize| format!("<{}{route}?per_page={per_page}&page={p}>", state.base);
        format!("{}; rel=\"next\", {}; rel=\"last\"", url(page + 1), url(last))
    });
    (items, link)
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
    let jwt = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.split('.').count() == 3 && t.starts_with("eyJ"));
    if !jwt {
        let body = json!({"message": "A JSON web token could not be decoded", "documentation_url": "https://docs.github.com/rest"});
        return respond(StatusCode::UNAUTHORIZED, state.spend(), &[], Some(&body));
    }
    // The token's expiry is read against the real clock by the client.
    let expires = chrono::Utc::now() + chrono::Duration::hours(1);
    let body = json!({
        "token": INSTALLATION_TOKEN,
        "expires_at": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "permissions": {"metadata": "read", "members": "read"},
        "repository_selection": "all"
    });
    respond(StatusCode::CREATED, state.spend(), &[], Some(&body))
}

async fn fault_response(state: &MockState, status: FaultStatus, retry_after: Option<u64>) -> Response<Body> {
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

fn owner_json(state: &MockState, repo: &WorldRepo) -> Value {
    json!({
        "login": repo.owner,
        "id": repo.owner_id,
        "type": if repo.owner_is_org { "Organization" } else { "User" },
        "url": format!("{}/users/{}", state.base, repo.owner),
        "site_admin": false
    })
}

fn repo_json(state: &MockState, repo: &WorldRepo, caller: Caller) -> Value {
    let mut v = json!({
        "id": repo.id.0,
        "node_id": format!("R_{}", repo.id.0),
        "name": repo.name,
        "full_name": format!("{}/{}", repo.owner, repo.name),
        "owner": owner_json(state, repo),
        "private": repo.private,
        "visibility": if repo.private { "private" } else { "public" },
        "archived": repo.archived,
        "html_url": format!("https://github.com/{}/{}", repo.owner, repo.name),
        "url": format!("{}/repos/{}/{}", state.base, repo.owner, repo.name),
        "default_branch": "main"
    });
    if let Caller::User(u) = caller {
        let role = state.world().effective_role(u, repo).map(|g| g.role);
        let at_least = |r: Role| role.is_some_and(|have| have >= r);
        v["permissions"] = json!({
            "admin": at_least(Role::Admin),
            "maintain": at_least(Role::Maintain),
            "push": at_least(Role::Write),
            "triage": at_least(Role::Triage),
            "pull": at_least(Role::Read)
        });
    }
    v
}

fn permission_json(state: &MockState, repo: &WorldRepo, user: UserId, login: &str) -> Value {
    let (permission, role_name) = match state.world().effective_role(user, repo) {
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
    json!({
        "permission": permission,
        "role_name": role_name,
        "user": {"login": login, "id": user.0, "type": "User", "site_admin": false}
    })
}
