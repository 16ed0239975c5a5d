//! The HTTP surface (feature `http`): an OpenID AuthZEN Authorization API 1.0 decision point,
//! GitHub's webhook receiver and health, as an [axum](https://docs.rs/axum) router a control
//! plane mounts in its own service, or `ghauthz serve` runs on its own.
//!
//! | route | who may call | what |
//! |---|---|---|
//! | `POST /access/v1/evaluation` | a key with [`Scope::Evaluate`] | one decision |
//! | `POST /access/v1/evaluations` | a key with [`Scope::Evaluate`] | a batch |
//! | `POST /access/v1/search/subject` | a key with [`Scope::Search`] | who may do an action to an app |
//! | `POST /access/v1/search/resource` | a key with [`Scope::Search`] | which apps a subject may do an action to |
//! | `POST /access/v1/search/action` | a key with [`Scope::Search`] | which actions a subject may do to an app |
//! | `GET /.well-known/authzen-configuration` | anyone | the metadata document |
//! | `POST /webhooks/github` | GitHub (its signature) | one webhook delivery |
//! | `GET /metrics` | anyone on the listener | Prometheus text ([`Service::with_metrics`]) |
//! | `GET /healthz` | anyone | 200 while the process serves |
//! | `GET /readyz` | anyone | 200 when the store answers, the change feed is heard and GitHub has not refused the credentials; 503 naming what fails |
//! | `/auth/...` | browsers | the viewer's sign-in pages ([`web`], [`Service::with_pages`]) |
//!
//! Every handler builds the library's own [`CheckRequest`](crate::CheckRequest)s: nothing is
//! decided here. The wire rules (`application/json` only, 1 MiB bodies, 400 never 422, unknown
//! fields ignored, `X-Request-ID` echoed, no value the caller sent in an error) are in
//! `docs/http.md`.
//!
//! ```
//! # #[cfg(feature = "world")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
//! use ghauthz::http::{ApiKeys, Service};
//! use tower::ServiceExt as _;
//! let (keys, key) = ApiKeys::generate().unwrap();
//! let service = Service::new(authz, keys, "https://authz.example".parse().unwrap());
//! let body = r#"{"subject": {"type": "github_user", "id": "3"},
//!               "action": {"name": "edit"}, "resource": {"type": "app", "id": "dash"}}"#;
//! let request = http::Request::post("/access/v1/evaluation")
//!     .header("authorization", format!("Bearer {key}"))
//!     .header("content-type", "application/json")
//!     .body(axum::body::Body::from(body))
//!     .unwrap();
//! let response = service.router().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//! let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
//! let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(answer["decision"], true); // carol has write on acme/dashboard
//! assert_eq!(answer["context"]["reason"]["kind"], "github_role");
//! # }
//! # #[cfg(not(feature = "world"))]
//! # fn main() {}
//! ```

mod authzen;
mod keys;
pub mod web;
mod wire;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower_http::request_id::PropagateRequestIdLayer;

pub use authzen::{MAX_BATCH, MAX_ID, MAX_PAGE};
pub use keys::{ApiKeys, ApiKeysError, MIN_KEY_LEN, Scope};
pub use wire::MAX_BODY;

use crate::authorizer::Authorizer;
use crate::core::ids::AppId;
use crate::webhook::WebhookOutcome;
use wire::WireError;

/// The decision point: an authorizer, the keys callers present, and the identifier it
/// publishes. Cheap to clone (one shared value); [`Service::set_keys`] replaces the keys for
/// every clone at once.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
    /// What `GET /metrics` answers, where it is served.
    metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
    /// The longest a request may take, its body read included.
    request_timeout: std::time::Duration,
    /// The viewer's sign-in pages, where mounted.
    pages: Option<web::SignInPages>,
}

/// The longest a request may take by default ([`Service::with_request_timeout`]).
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

struct Inner {
    authz: Authorizer,
    keys: parking_lot::RwLock<Arc<ApiKeys>>,
    /// The published identifier, without a trailing `/`.
    public_url: String,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("public_url", &self.inner.public_url).finish_non_exhaustive()
    }
}

impl Service {
    /// A decision point answering with `authz`, letting in callers with `keys`, published as
    /// `public_url` (the AuthZEN `policy_decision_point`: its query and fragment are dropped).
    pub fn new(authz: Authorizer, keys: ApiKeys, mut public_url: url::Url) -> Self {
        public_url.set_query(None);
        public_url.set_fragment(None);
        let public_url = public_url.as_str().trim_end_matches('/').to_owned();
        let inner = Inner { authz, keys: parking_lot::RwLock::new(Arc::new(keys)), public_url };
        Service { inner: Arc::new(inner), metrics: None, request_timeout: DEFAULT_REQUEST_TIMEOUT, pages: None }
    }

    /// The longest a request may take, from its head's arrival to the answer, its body read
    /// included (default [`DEFAULT_REQUEST_TIMEOUT`], 30 s): past it, 408 `timeout` (a client
    /// that sends its body slowly holds a connection that long at most).
    pub fn with_request_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Serves `GET /metrics` to anyone who reaches the listener, answering what `render` returns
    /// (Prometheus' text exposition, as `metrics-exporter-prometheus`'s handle renders it).
    /// Without it there is no such route.
    pub fn with_metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics = Some(Arc::new(render));
        self
    }

    /// Serves the viewer's sign-in pages under `/auth/` ([`web::SignInPages`]) beside the
    /// decision routes, with the same request log, timeout and `X-Request-ID`.
    pub fn with_pages(mut self, pages: web::SignInPages) -> Self {
        self.pages = Some(pages);
        self
    }

    /// Replaces the keys callers may present (a rotation): requests from now on are let in by
    /// `keys` alone.
    pub fn set_keys(&self, keys: ApiKeys) {
        *self.inner.keys.write() = Arc::new(keys);
    }

    /// The authorizer answering.
    pub fn authz(&self) -> &Authorizer {
        &self.inner.authz
    }

    /// The published identifier (`policy_decision_point`), without a trailing `/`.
    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    fn keys(&self) -> Arc<ApiKeys> {
        self.inner.keys.read().clone()
    }

    /// The routes in the table above, with the wire rules: every answer carries the request's
    /// `X-Request-ID`, a path no route has is 404 and a method a route does not take is 405
    /// (both JSON), and each request is logged in one `tracing` line (method, route, status,
    /// time, request id: never a path's own text, a key, a token or an address).
    pub fn router(&self) -> Router {
        let router = match &self.metrics {
            Some(render) => {
                let render = render.clone();
                Router::new().route(
                    "/metrics",
                    get(move || async move {
                        ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], render()).into_response()
                    }),
                )
            }
            None => Router::new(),
        };
        let router = match &self.pages {
            Some(pages) => router.merge(pages.router()),
            None => router,
        };
        router
            .route("/access/v1/evaluation", post(authzen::evaluation))
            .route("/access/v1/evaluations", post(authzen::evaluations))
            .route("/access/v1/search/subject", post(authzen::search_subject))
            .route("/access/v1/search/resource", post(authzen::search_resource))
            .route("/access/v1/search/action", post(authzen::search_action))
            .route("/.well-known/authzen-configuration", get(authzen::metadata))
            .route("/webhooks/github", post(webhook))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .fallback(|| async { wire::not_found() })
            .method_not_allowed_fallback(|| async { wire::method_not_allowed() })
            .layer(axum::middleware::from_fn_with_state(self.request_timeout, bounded))
            .layer(axum::middleware::from_fn(log))
            .layer(PropagateRequestIdLayer::x_request_id())
            .with_state(self.clone())
    }
}

/// The request answered within `limit`, or 408.
async fn bounded(State(limit): State<std::time::Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => WireError::new(StatusCode::REQUEST_TIMEOUT, "timeout", "the request took too long").into_response(),
    }
}

/// One line per request, after it is answered.
async fn log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map_or("(none)", |p| p.as_str()).to_owned();
    // Echoed as sent; logged only when it is a plain identifier of at most 128 characters.
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
        .map(str::to_owned);
    let response = next.run(request).await;
    metrics::counter!("ghauthz_http_requests_total", "route" => route.clone(), "status" => response.status().as_str().to_owned())
        .increment(1);
    tracing::info!(
        target: "ghauthz::http",
        %method,
        route,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        request_id = id.as_deref().unwrap_or("-"),
        "request"
    );
    response
}

/// `POST /webhooks/github`: the delivery's signature is checked before anything else is done
/// with it; at most GitHub's 25 MB are read.
async fn webhook(State(service): State<Service>, headers: HeaderMap, body: Body) -> Response {
    // Nothing is read of a delivery that cannot verify, or that says it is too large.
    if !headers.contains_key("x-hub-signature-256") {
        return WireError::new(StatusCode::UNAUTHORIZED, "bad_signature", "the delivery was not applied")
            .into_response();
    }
    let declared = headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > crate::webhook::MAX_WEBHOOK_BODY as u64) {
        return WireError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the body is larger than GitHub sends")
            .into_response();
    }
    let Ok(body) = axum::body::to_bytes(body, crate::webhook::MAX_WEBHOOK_BODY).await else {
        return WireError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the body is larger than GitHub sends")
            .into_response();
    };
    match service.authz().handle_webhook(&headers, &body).await {
        Ok(WebhookOutcome::Applied(applied)) => wire::ok(&json!({"applied": applied.len()})),
        Ok(WebhookOutcome::Duplicate) => wire::ok(&json!({"applied": 0, "duplicate": true})),
        Ok(_) => wire::ok(&json!({"applied": 0, "ignored": true})),
        Err(e) => {
            let status = match e.class() {
                // The service's own configuration, not the sender's mistake.
                _ if matches!(e, crate::WebhookError::NotConfigured) => StatusCode::SERVICE_UNAVAILABLE,
                crate::ErrorClass::Usage => StatusCode::BAD_REQUEST,
                crate::ErrorClass::Denied => StatusCode::UNAUTHORIZED,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            WireError::new(status, e.kind(), "the delivery was not applied").into_response()
        }
    }
}

/// `GET /healthz`: the process serves.
async fn healthz() -> Response {
    wire::ok(&json!({"status": "serving"}))
}

/// `GET /readyz`: 200 when the store answers, the change feed is heard and GitHub has not
/// refused the credentials; otherwise 503 naming each part that fails.
async fn readyz(State(service): State<Service>) -> Response {
    let authz = service.authz();
    let mut failing = Vec::new();
    // One read of an id no app has: a round trip to the store.
    if authz.app(&AppId(String::new())).await.is_err() {
        failing.push("store");
    }
    let stats = authz.stats();
    if !stats.feed_listening {
        failing.push("feed");
    }
    if stats.github_credentials_refused {
        failing.push("github_credentials");
    }
    if failing.is_empty() {
        wire::ok(&json!({"ready": true}))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"ready": false, "failing": failing}))).into_response()
    }
}
