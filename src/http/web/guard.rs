//! [`AppGuard`]: a tower layer that guards a control plane's app routes with the library's checks,
//! and [`Access`], the extractor a handler behind it reads the decision with.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use serde_json::json;

use super::{SESSION_COOKIE, SignInPages, cookie};
use crate::authorizer::CheckRequest;
use crate::core::decision::{Decision, NoAccessDetail, Reason};
use crate::core::ids::AppId;
use crate::core::policy::Capability;
use crate::core::principal::Principal;
use crate::mail::escape;

type AppOf = dyn Fn(&Parts) -> Option<AppId> + Send + Sync;

/// Guards a control plane's app routes: finds the app in the request (a function the control
/// plane gives), the principal (a [`Principal`] the control plane put in the request's
/// extensions for a GitHub user it authenticated itself; else the viewer's session cookie; else
/// nobody), and asks the library's check.
///
/// - Allowed: the request goes on, with an [`Access`] in its extensions.
/// - Nobody signed in (or a session that no longer holds) on a private app: 303 to the app's
///   sign-in page ([`SignInPages::sign_in_url`]), or 401 with JSON for a caller that asks for
///   JSON.
/// - Denied: 403 with the reason, as JSON (`Accept: application/json`) or a page.
/// - No app found in the request, or no such app: 404.
/// - Could not decide: 503 with `Retry-After` where known. Never a pass.
///
/// ```
/// # #[cfg(feature = "world")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
/// use axum::{Router, routing::get};
/// use ghauthz::AppId;
/// use ghauthz::http::web::{Access, SignInPages};
/// use tower::ServiceExt as _;
/// let pages = SignInPages::new(authz, "https://share.example".parse().unwrap(), "https://share.example/apps/{app}/")
///     .unwrap();
/// // The app is the path's second segment: /apps/{app}/...
/// let guard = pages.guard(|parts| parts.uri.path().split('/').nth(2).map(|s| AppId(s.to_owned())));
/// let app = Router::new()
///     .route("/apps/{app}/", get(|access: Access| async move { format!("hello from {}", access.app().0) }))
///     .layer(guard)
///     .merge(pages.router());
/// let request = http::Request::get("/apps/dash/").body(axum::body::Body::empty()).unwrap();
/// let response = app.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), 303); // dash is private: to its sign-in page
/// assert_eq!(response.headers()["location"], "https://share.example/auth/sign-in/dash");
/// # }
/// # #[cfg(not(feature = "world"))]
/// # fn main() {}
/// ```
#[derive(Clone)]
pub struct AppGuard {
    pages: SignInPages,
    app_of: Arc<AppOf>,
    capability: Capability,
}

impl std::fmt::Debug for AppGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppGuard").field("capability", &self.capability).finish_non_exhaustive()
    }
}

/// What the guard let through: the app, the capability asked, who asked, and the decision that
/// allowed it.
#[derive(Debug, Clone)]
pub struct Access {
    app: AppId,
    capability: Capability,
    principal: Principal,
    decision: Decision,
}

impl Access {
    /// The app.
    pub fn app(&self) -> &AppId {
        &self.app
    }

    /// The capability the guard asked for.
    pub fn capability(&self) -> Capability {
        self.capability
    }

    /// Who was let in: the control plane's own GitHub user, a signed-in viewer, or nobody (a
    /// public app).
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The decision that let them in, with its reason.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }
}

impl AppGuard {
    /// A guard asking for [`Capability::View`] on the app `app_of` finds in the request (`None`:
    /// 404), sending whoever is not signed in to `pages`' sign-in page.
    pub fn new<F>(pages: SignInPages, app_of: F) -> Self
    where
        F: Fn(&Parts) -> Option<AppId> + Send + Sync + 'static,
    {
        AppGuard { pages, app_of: Arc::new(app_of), capability: Capability::View }
    }

    /// Asks for `capability` instead of `view`.
    pub fn requiring(mut self, capability: Capability) -> Self {
        self.capability = capability;
        self
    }

    /// The guard's answer for a request's head: its [`Access`], or the response that refuses it.
    ///
    /// # Errors
    ///
    /// The refusal, ready to send: 303/401, 403, 404 or 503 as [`AppGuard`] says.
    pub async fn admit(&self, parts: &Parts) -> Result<Access, Response> {
        let json = wants_json(parts);
        let Some(app) = (self.app_of)(parts) else {
            return Err(refusal(json, StatusCode::NOT_FOUND, "unknown_app", "No such app.", None));
        };
        let authz = self.pages.authz();
        let given = parts.extensions.get::<Principal>();
        let session = cookie(&parts.headers, SESSION_COOKIE)
            .or_else(|| parts.extensions.get::<StrippedSession>().map(|s| s.0.as_str()))
            .filter(|t| !t.is_empty());
        let anonymous = Principal::Anonymous;
        let request = match (given, session) {
            (Some(principal), _) => CheckRequest::new(principal, &app, self.capability),
            (None, Some(token)) => CheckRequest::session(token, &app, self.capability),
            (None, None) => CheckRequest::new(&anonymous, &app, self.capability),
        };
        let mut decision = match authz.check(&request).await {
            Ok(d) => d,
            Err(e) => return Err(undecided(json, &e)),
        };
        // A session that does not hold here (expired, retired, another app's) is nobody signed
        // in: a public app still opens.
        let mut session = session;
        if given.is_none() && session.is_some() && matches!(decision.reason(), Reason::SessionInvalid { .. }) {
            session = None;
            decision = match authz.check(&CheckRequest::new(&anonymous, &app, self.capability)).await {
                Ok(d) => d,
                Err(e) => return Err(undecided(json, &e)),
            };
        }
        if decision.is_allowed() {
            let principal = match (given, session) {
                (Some(p), _) => p.clone(),
                (None, Some(token)) => authz.verify_session(token).map_or(Principal::Anonymous, Principal::Viewer),
                (None, None) => Principal::Anonymous,
            };
            return Ok(Access { app, capability: self.capability, principal, decision });
        }
        let kind = decision.reason().kind();
        let reason = serde_json::to_value(decision.reason()).unwrap_or_else(|_| json!({"kind": kind}));
        // Nobody signed in is sent to sign in, for an app that does not exist too: what the guard
        // answers tells nobody which apps exist.
        let to_sign_in = given.is_none()
            && session.is_none()
            && matches!(decision.reason(), Reason::NoAccess { detail: NoAccessDetail::Anonymous } | Reason::UnknownApp);
        if to_sign_in {
            let url = self.pages.sign_in_url(&app);
            let mut response = if json {
                (StatusCode::UNAUTHORIZED, axum::Json(json!({"kind": "sign_in_required", "sign_in": url})))
                    .into_response()
            } else {
                let mut r = StatusCode::SEE_OTHER.into_response();
                if let Ok(v) = HeaderValue::from_str(&url) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            };
            super::page::harden(response.headers_mut());
            return Err(response);
        }
        if matches!(decision.reason(), Reason::UnknownApp) {
            return Err(refusal(json, StatusCode::NOT_FOUND, kind, "No such app.", Some(reason)));
        }
        Err(refusal(json, StatusCode::FORBIDDEN, kind, &words(decision.reason()), Some(reason)))
    }
}

/// Could not decide: 503, with `Retry-After` where known.
fn undecided(json: bool, e: &crate::CheckError) -> Response {
    let mut response = refusal(
        json,
        StatusCode::SERVICE_UNAVAILABLE,
        e.kind(),
        "Access could not be checked just now; try again in a moment.",
        None,
    );
    if let Some(s) = e.retry_after().map(|d| d.as_secs().max(1)) {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    response
}

/// A denial's reason in a sentence of the guard's own (never a value the request carried).
fn words(reason: &Reason) -> String {
    match reason {
        Reason::NotInvited => "Your address is not invited to this app.".into(),
        Reason::NoAccess { detail: NoAccessDetail::ViewOnly } => "Invited viewers may only view this app.".into(),
        Reason::NoAccess { .. } => "You have no access to this app.".into(),
        Reason::GithubRole { .. } => "Your role on the app's repository does not allow this.".into(),
        Reason::RepoReplaced { .. } => "The app's repository was replaced since it was deployed.".into(),
        _ => "You may not do this.".into(),
    }
}

/// Whether the caller asks for JSON rather than a page.
fn wants_json(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

/// A refusal: JSON `{"kind", "message", "reason"?}` or a small page, never cached.
fn refusal(json: bool, status: StatusCode, kind: &str, message: &str, reason: Option<serde_json::Value>) -> Response {
    let mut response = if json {
        let mut body = json!({"kind": kind, "message": message});
        if let Some(r) = reason {
            body["reason"] = r;
        }
        (status, axum::Json(body)).into_response()
    } else {
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
             <body><main><h1>{title}</h1><p>{message}</p><p><small>{kind}</small></p></main></body></html>\n",
            title = status.canonical_reason().unwrap_or("Refused"),
            message = escape(message),
            kind = escape(kind),
        );
        let mut r = (status, html).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        r
    };
    super::page::harden(response.headers_mut());
    response
}

impl<S> tower_layer::Layer<S> for AppGuard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guarded { guard: self.clone(), inner }
    }
}

/// A service behind an [`AppGuard`].
#[derive(Clone, Debug)]
pub struct Guarded<S> {
    guard: AppGuard,
    inner: S,
}

impl<S> tower_service::Service<Request<Body>> for Guarded<S>
where
    S: tower_service::Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The service that was made ready is the one called; its clone waits for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            match guard.admit(&parts).await {
                Ok(access) => {
                    parts.extensions.insert(access);
                    // The app behind the guard never sees the viewer's session or pre-session
                    // cookie (a guard further in finds the session where only the crate looks).
                    if let Some(token) = cookie(&parts.headers, SESSION_COOKIE).map(str::to_owned) {
                        parts.extensions.insert(StrippedSession(token));
                    }
                    without_our_cookies(&mut parts.headers);
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(refused) => Ok(refused),
            }
        })
    }
}

/// The session cookie a guard took out of the request, for a guard further in.
#[derive(Clone)]
struct StrippedSession(String);

/// `headers` without the sign-in cookies (the session, the pre-session cookie, Google's
/// nonce and its double-submit token): `Cookie` headers rebuilt from the others, byte for byte
/// (a value beyond ASCII is kept as sent).
fn without_our_cookies(headers: &mut axum::http::HeaderMap) {
    const OURS: [&[u8]; 4] =
        [SESSION_COOKIE.as_bytes(), super::PRE_COOKIE.as_bytes(), super::NONCE_COOKIE.as_bytes(), b"g_csrf_token"];
    let ours = |pair: &[u8]| {
        let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
        OURS.contains(&name)
    };
    let kept: Vec<Vec<u8>> = headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty() && !ours(pair))
        .map(<[u8]>::to_vec)
        .collect();
    headers.remove(header::COOKIE);
    if let Ok(v) = HeaderValue::from_bytes(&kept.join(&b"; "[..])) {
        if !kept.is_empty() {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// The access a guard grants the request. An [`AppGuard`] in the request's extensions
/// (`.layer(axum::Extension(guard))`, nearest the route) is asked, whatever a layer in front
/// granted (it may ask for more, such as `edit`); else the [`Access`] the [`AppGuard`] layer in
/// front of the route granted; with neither it refuses with 500: never a pass.
impl<S: Send + Sync> FromRequestParts<S> for Access {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(guard) = parts.extensions.get::<AppGuard>().cloned() else {
            if let Some(access) = parts.extensions.get::<Access>() {
                return Ok(access.clone());
            }
            return Err(refusal(
                wants_json(parts),
                StatusCode::INTERNAL_SERVER_ERROR,
                "not_guarded",
                "This route is not behind the app guard.",
                None,
            ));
        };
        guard.admit(parts).await
    }
}
