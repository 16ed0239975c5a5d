//! The viewer's way in, on the web: the sign-in pages under `/auth/` ([`SignInPages`]) and the
//! guard of a control plane's app routes ([`AppGuard`], a tower layer, and [`Access`], an axum
//! extractor).
//!
//! | route | does |
//! |---|---|
//! | `GET /auth/link/{token}` | inert: validates the link, shows the app and a Continue button (a form that POSTs; no script), sets the `__Host-ghauthz-pre` cookie bound to this link; a used, expired or revoked link says which and offers a new one |
//! | `HEAD /auth/link/{token}` | inert: no lookup, no cookie |
//! | `POST /auth/link/{token}` | redeems, only with the matching pre-session cookie and from this site's own page; sets `__Host-ghauthz-session` and redirects (303) to the app's URL |
//! | `POST /auth/link/{token}/renew` | sends a new link to the stored address of this one (from this site's own page) |
//! | `GET /auth/sign-in/{app}` | where [`AppGuard`] sends whoever is not signed in: an address field, Google's button where configured |
//! | `POST /auth/sign-in/{app}` | sends a link to the address if it is invited (the same answer either way) |
//! | `POST /auth/google` | Google Identity Services' callback: `credential`, `g_csrf_token` (cookie and body equal), `state` (the app) |
//! | `POST /auth/logout` | clears the session cookie |
//! | `GET /auth/style.css` | the pages' stylesheet |
//!
//! The app's URL comes from the template given to [`SignInPages::new`], never from the request.
//! `docs/web.md` tells the whole flow and the reasons behind each rule.

mod guard;
mod page;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::Digest as _;

pub use guard::{Access, AppGuard, Guarded};
pub use page::PageTexts;

use crate::authorizer::Authorizer;
use crate::core::ids::AppId;
use crate::core::time::Timestamp;
use crate::viewer::SendLinkError;
use crate::viewer::{GoogleSignInError, LinkError, SignInRefusal};
use page::{GoogleButton, Page, form, para};

/// The session cookie: what a signed-in viewer's browser holds.
pub const SESSION_COOKIE: &str = "__Host-ghauthz-session";
/// The pre-session cookie a link's page sets, bound to that link.
pub const PRE_COOKIE: &str = "__Host-ghauthz-pre";
/// The cookie the sign-in page sets with the `nonce` it gives Google's button: Google's callback
/// is taken only with an ID token carrying it.
pub const NONCE_COOKIE: &str = "__Host-ghauthz-nonce";
/// How long the sign-in page may be left open before Google's button is used.
const NONCE_TTL: Duration = Duration::from_secs(10 * 60);
/// How long a link's page may be left open before Continue: the pre-session cookie's lifetime
/// (the link's own end, if sooner).
pub const PRE_SESSION_TTL: Duration = Duration::from_secs(15 * 60);
/// The largest form a page takes (Google's credential is about 1-2 KiB).
const MAX_FORM: usize = 16 * 1024;
/// The longest link token looked up; longer is not one this service issued.
const MAX_TOKEN: usize = 256;
/// How many opened, not yet redeemed, links are remembered for the `unredeemed` count.
const MAX_OPENED: usize = 10_000;
/// How many links the pages may be sending at once; past it, asking for one answers 503 (to
/// anyone alike).
const MAX_SENDING: usize = 64;

/// The sign-in pages: where they are served, where apps are, the words, and Google's button.
/// Cheap to clone.
///
/// ```
/// # #[cfg(feature = "world")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
/// use ghauthz::http::web::SignInPages;
/// use ghauthz::AppId;
/// let pages = SignInPages::new(authz, "https://share.example".parse().unwrap(), "https://share.example/apps/{app}/")
///     .unwrap();
/// assert_eq!(pages.app_url(&AppId("dash".into())), "https://share.example/apps/dash/");
/// let control_plane: axum::Router = axum::Router::new().merge(pages.router());
/// # }
/// # #[cfg(not(feature = "world"))]
/// # fn main() {}
/// ```
#[derive(Clone)]
pub struct SignInPages {
    inner: Arc<Inner>,
}

struct Inner {
    authz: Authorizer,
    /// `scheme://host[:port]` of the public URL: what `Origin` must be.
    origin: String,
    /// The public URL without a trailing `/` (origin and the path the pages are nested under).
    base: String,
    /// The app's URL, `{app}` where the id goes.
    app_url: String,
    google: Option<GoogleButton>,
    texts: PageTexts,
    /// Links whose page was opened and not yet redeemed here, with when each expires.
    opened: parking_lot::Mutex<Opened>,
    /// Slots for links being sent in the background.
    sending: Arc<tokio::sync::Semaphore>,
}

struct Opened {
    links: HashMap<[u8; 32], Timestamp>,
    next_sweep: Timestamp,
}

impl Default for Opened {
    fn default() -> Self {
        Opened { links: HashMap::new(), next_sweep: Timestamp(0) }
    }
}

impl std::fmt::Debug for SignInPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInPages")
            .field("base", &self.inner.base)
            .field("app_url", &self.inner.app_url)
            .finish_non_exhaustive()
    }
}

/// Why the pages cannot be set up as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PagesConfigError {
    /// The public URL is not `http(s)://host`.
    #[error("the public URL must be an http:// or https:// URL with a host")]
    PublicUrl,
    /// The app URL template lacks `{app}`, or is not an `http(s)://` URL once filled in.
    #[error("the app URL template must hold `{{app}}` and be an http:// or https:// URL")]
    AppUrl,
}

impl PagesConfigError {
    /// `public_url` or `app_url_template`.
    pub fn kind(&self) -> &'static str {
        match self {
            PagesConfigError::PublicUrl => "public_url",
            PagesConfigError::AppUrl => "app_url_template",
        }
    }
}

impl SignInPages {
    /// Pages served at `public_url` (its origin, and the path they are nested under, if any: the
    /// link page is `{public_url}/auth/link/{token}`), sending viewers on to
    /// `app_url_template` with `{app}` replaced by the app's id (`https://{app}.apps.example`).
    ///
    /// The session cookie is a `__Host-` cookie of the pages' host: the app's routes must be
    /// served on that host for the browser to send it ([`AppGuard`]).
    ///
    /// # Errors
    ///
    /// [`PagesConfigError`]: a public URL that is not `http(s)://host`, a template without
    /// `{app}` or that is not an `http(s)://` URL once filled in.
    pub fn new(authz: Authorizer, public_url: url::Url, app_url_template: &str) -> Result<Self, PagesConfigError> {
        if !matches!(public_url.scheme(), "http" | "https") || public_url.host().is_none() {
            return Err(PagesConfigError::PublicUrl);
        }
        let origin = public_url.origin().ascii_serialization();
        let base = format!("{origin}{}", public_url.path().trim_end_matches('/'));
        let filled = app_url_template.replace("{app}", "app");
        let template_ok = app_url_template.contains("{app}")
            && filled.parse::<url::Url>().is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !template_ok {
            return Err(PagesConfigError::AppUrl);
        }
        let inner = Inner {
            authz,
            origin,
            base,
            app_url: app_url_template.to_owned(),
            google: None,
            texts: PageTexts::default(),
            opened: parking_lot::Mutex::new(Opened::default()),
            sending: Arc::new(tokio::sync::Semaphore::new(MAX_SENDING)),
        };
        Ok(SignInPages { inner: Arc::new(inner) })
    }

    fn inner_mut(&mut self) -> &mut Inner {
        // Set up before the first clone; a later call rebuilds the shared part.
        if Arc::get_mut(&mut self.inner).is_none() {
            let i = &*self.inner;
            self.inner = Arc::new(Inner {
                authz: i.authz.clone(),
                origin: i.origin.clone(),
                base: i.base.clone(),
                app_url: i.app_url.clone(),
                google: i.google.clone(),
                texts: i.texts.clone(),
                opened: parking_lot::Mutex::new(Opened::default()),
                sending: i.sending.clone(),
            });
        }
        Arc::get_mut(&mut self.inner).unwrap_or_else(|| unreachable!("just made unique"))
    }

    /// Shows Google's sign-in button, for `client_id` (one of the client ids the authorizer's
    /// [`GoogleConfig`](crate::GoogleConfig) accepts), on the sign-in page: that page's
    /// `Content-Security-Policy` then lets in Google's script, frame and style, and no other page's.
    pub fn with_google_button(mut self, client_id: impl Into<String>) -> Self {
        let login_uri = format!("{}/auth/google", self.inner.base);
        self.inner_mut().google = Some(GoogleButton { client_id: client_id.into(), login_uri });
        self
    }

    /// The pages' words.
    pub fn with_texts(mut self, texts: PageTexts) -> Self {
        self.inner_mut().texts = texts;
        self
    }

    /// The app's URL, from the template alone.
    pub fn app_url(&self, app: &AppId) -> String {
        self.inner.app_url.replace("{app}", &app.0)
    }

    /// The sign-in page for `app` ([`AppGuard`] redirects there).
    pub fn sign_in_url(&self, app: &AppId) -> String {
        format!("{}/auth/sign-in/{}", self.inner.base, app.0)
    }

    /// The authorizer behind the pages.
    pub fn authz(&self) -> &Authorizer {
        &self.inner.authz
    }

    /// A guard for a control plane's app routes that finds the app with `app_of`
    /// ([`AppGuard::new`]).
    pub fn guard<F>(&self, app_of: F) -> AppGuard
    where
        F: Fn(&axum::http::request::Parts) -> Option<AppId> + Send + Sync + 'static,
    {
        AppGuard::new(self.clone(), app_of)
    }

    /// The routes in the table above, for a control plane to merge into its router (or nest
    /// under the path of the public URL). Every answer carries `Referrer-Policy: no-referrer`,
    /// `Cache-Control: no-store`, `X-Frame-Options: DENY` and a `Content-Security-Policy` without
    /// inline script; forms are read up to 16 KiB.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/auth/link/{token}", get(link_page).head(link_head).post(link_redeem))
            .route("/auth/link/{token}/renew", post(link_renew))
            .route("/auth/sign-in/{app}", get(sign_in_page).post(sign_in_send))
            .route("/auth/google", post(google))
            .route("/auth/logout", post(logout))
            .route("/auth/style.css", get(style))
            // Anything else under `/auth/`: the pages' own 404, with their headers.
            .route("/auth/{*rest}", axum::routing::any(unknown_page))
            .layer(DefaultBodyLimit::max(MAX_FORM))
            .layer(axum::middleware::from_fn(hardened))
            .with_state(self.clone())
    }

    fn page(&self, status: StatusCode, title: &str, body: &str) -> Page {
        let style = format!("{}/auth/style.css", path_of(&self.inner.base));
        Page::new(status, &self.inner.texts.lang, &style, title, body)
    }

    /// A page of one paragraph, titled with the app's sign-in title.
    fn notice(&self, status: StatusCode, app: Option<&AppId>, text: &str) -> Page {
        let title = match app {
            Some(app) => self.inner.texts.link_title.replace("{app}", &app.0),
            None => "Sign in".to_owned(),
        };
        self.page(status, &title, &para(text))
    }

    /// Whether the request is a form this site's own page submitted: `Sec-Fetch-Site:
    /// same-origin` where the browser sends it (with `Sec-Fetch-Mode: navigate` where it sends that:
    /// a script's `fetch` is not a form), else an `Origin` equal to the public URL's. Neither:
    /// refused.
    fn same_origin(&self, headers: &HeaderMap) -> bool {
        match headers.get("sec-fetch-site") {
            Some(site) => {
                site.as_bytes() == b"same-origin"
                    && headers.get("sec-fetch-mode").is_none_or(|mode| mode.as_bytes() == b"navigate")
            }
            None => headers.get(header::ORIGIN).is_some_and(|o| o.as_bytes() == self.inner.origin.as_bytes()),
        }
    }

    /// Runs `send` in the background, at most [`MAX_SENDING`] at once, so that the answer is the
    /// same, and as quick, whether or not a message goes out (the time an SMTP exchange takes would
    /// tell which addresses are invited). `false` when every slot is taken.
    fn send_in_background<F>(&self, send: F) -> bool
    where
        F: std::future::Future<Output = Result<crate::SentLink, SendLinkError>> + Send + 'static,
    {
        let Ok(slot) = self.inner.sending.clone().try_acquire_owned() else { return false };
        tokio::spawn(async move {
            if let Err(e) = send.await {
                tracing::info!(kind = e.kind(), "no link sent");
            }
            drop(slot);
        });
        true
    }

    fn cross_site(&self) -> Response {
        self.notice(StatusCode::FORBIDDEN, None, &self.inner.texts.cross_site).into_response()
    }

    /// The pre-session cookie for `token`, valid until `until`.
    fn pre_cookie(&self, token: &str, until: Timestamp) -> Option<HeaderValue> {
        let exp = until.as_secs();
        let tag = self.inner.authz.page_mac(&pre_data(token, exp))?;
        let max_age = Duration::from_millis(until.0.saturating_sub(self.inner.authz.now().0)).as_secs();
        let value = format!(
            "{PRE_COOKIE}={exp}.{}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}",
            URL_SAFE_NO_PAD.encode(tag)
        );
        HeaderValue::from_str(&value).ok()
    }

    /// Whether the request holds a pre-session cookie this service set for `token`, not expired.
    fn holds_pre_cookie(&self, headers: &HeaderMap, token: &str) -> bool {
        let Some(value) = cookie(headers, PRE_COOKIE) else { return false };
        let Some((exp, tag)) = value.split_once('.') else { return false };
        let (Ok(exp), Ok(tag)) = (exp.parse::<u64>(), URL_SAFE_NO_PAD.decode(tag)) else { return false };
        exp > self.inner.authz.now().as_secs() && self.inner.authz.page_mac_holds(&pre_data(token, exp), &tag)
    }

    /// The page for a link that does not work: which of used, expired, revoked or not valid, and,
    /// where a new one can be sent, the button that sends it (to the stored address of `token`).
    fn link_refused(&self, e: &LinkError, token: &str) -> Response {
        let t = &self.inner.texts;
        let (status, text, renew) = match e {
            LinkError::AlreadyUsed => (StatusCode::GONE, &t.used, true),
            LinkError::Expired => (StatusCode::GONE, &t.expired, true),
            LinkError::Revoked => (StatusCode::GONE, &t.revoked, true),
            LinkError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, &t.rate_limited, false),
            _ if e.class() == crate::ErrorClass::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, &t.unavailable, false)
            }
            _ => (StatusCode::NOT_FOUND, &t.invalid, false),
        };
        let mut body = para(text);
        if renew && self.inner.authz.sends_links() {
            let action = format!("{}/auth/link/{token}/renew", path_of(&self.inner.base));
            body.push_str(&form(Some(&action), &t.send_new, None));
        } else if renew {
            body.push_str(&para(&t.ask_developer));
        }
        self.page(status, "Sign in", &body).into_response()
    }

    /// Signs the browser in: the session cookie, and a 303 to the app's URL.
    fn signed_in(&self, issued: &crate::IssuedSession) -> Response {
        let max_age = issued.session.expires_at().since(self.inner.authz.now()).as_secs();
        let cookie = format!(
            "{SESSION_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}",
            issued.token.expose_secret()
        );
        let clear_pre = format!("{PRE_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
        let location = self.app_url(issued.session.app());
        let mut response = StatusCode::SEE_OTHER.into_response();
        let headers = response.headers_mut();
        for value in [cookie, clear_pre] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.append(header::SET_COOKIE, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&location) {
            headers.insert(header::LOCATION, v);
        }
        response
    }

    /// Counts a link's page opened, and remembers it until it is redeemed or expires.
    fn opened(&self, token: &str, expires_at: Timestamp) {
        crate::telemetry::link_page("opened", 1);
        let now = self.inner.authz.now();
        let mut opened = self.inner.opened.lock();
        sweep(&mut opened, now);
        if opened.links.len() < MAX_OPENED {
            opened.links.insert(sha2::Sha256::digest(token.as_bytes()).into(), expires_at);
        }
    }

    /// Counts a link redeemed from its page.
    fn redeemed(&self, token: &str) {
        crate::telemetry::link_page("redeemed", 1);
        let now = self.inner.authz.now();
        let mut opened = self.inner.opened.lock();
        opened.links.remove::<[u8; 32]>(&sha2::Sha256::digest(token.as_bytes()).into());
        sweep(&mut opened, now);
    }
}

/// 16 random bytes, base64url: a nonce for Google's button.
fn random_nonce() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Counts as `unredeemed` the opened links that expired unused, and forgets them (at most every
/// 10 s).
fn sweep(opened: &mut Opened, now: Timestamp) {
    if now < opened.next_sweep {
        return;
    }
    opened.next_sweep = now.plus(Duration::from_secs(10));
    let before = opened.links.len();
    opened.links.retain(|_, expires_at| *expires_at > now);
    let gone = before - opened.links.len();
    if gone > 0 {
        crate::telemetry::link_page("unredeemed", gone as u64);
    }
}

/// What the pre-session cookie's MAC covers: the link's digest and the cookie's end.
fn pre_data(token: &str, exp: u64) -> Vec<u8> {
    let mut data = b"pre\0".to_vec();
    data.extend_from_slice(&sha2::Sha256::digest(token.as_bytes()));
    data.extend_from_slice(&exp.to_be_bytes());
    data
}

/// The path part of `base` (`https://a.example/cp` gives `/cp`; no path gives ``).
fn path_of(base: &str) -> &str {
    base.find("://").and_then(|i| base[i + 3..].find('/').map(|j| &base[i + 3 + j..])).unwrap_or("")
}

/// The value of the cookie `name`, the first if sent twice.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Every answer under `/auth/` hardened ([`page::harden`]).
async fn hardened(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    page::harden(response.headers_mut());
    response
}

async fn unknown_page(State(pages): State<SignInPages>) -> Response {
    pages.notice(StatusCode::NOT_FOUND, None, &pages.inner.texts.invalid).into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], page::STYLE).into_response()
}

/// `HEAD /auth/link/{token}`: inert. No lookup, no cookie: what a scanner's probe gets.
async fn link_head() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], ()).into_response()
}

/// `GET /auth/link/{token}`: inert. The link is inspected, never used up.
async fn link_page(State(pages): State<SignInPages>, Path(token): Path<String>) -> Response {
    if token.len() > MAX_TOKEN {
        return pages.link_refused(&LinkError::Invalid, "");
    }
    let info = match pages.inner.authz.inspect_link(&token).await {
        Ok(info) => info,
        Err(e) => return pages.link_refused(&e, &token),
    };
    let t = &pages.inner.texts;
    let until = info.expires_at.min(pages.inner.authz.now().plus(PRE_SESSION_TTL));
    let Some(cookie) = pages.pre_cookie(&token, until) else {
        return pages.notice(StatusCode::SERVICE_UNAVAILABLE, Some(&info.app), &t.unavailable).into_response();
    };
    pages.opened(&token, info.expires_at);
    let body = format!(
        "{}{}",
        para(&t.link_body.replace("{app}", &info.app.0).replace("{email}", info.email.as_str())),
        form(None, &t.continue_button.replace("{app}", &info.app.0), None)
    );
    pages
        .page(StatusCode::OK, &t.link_title.replace("{app}", &info.app.0), &body)
        .with_header(header::SET_COOKIE, cookie)
        .into_response()
}

/// `POST /auth/link/{token}`: a person's Continue. Redeems only from this site's own page, with
/// the pre-session cookie that page set for this link.
async fn link_redeem(State(pages): State<SignInPages>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    if !pages.same_origin(&headers) {
        return pages.cross_site();
    }
    if token.len() > MAX_TOKEN {
        return pages.link_refused(&LinkError::Invalid, "");
    }
    if !pages.holds_pre_cookie(&headers, &token) {
        return pages.notice(StatusCode::FORBIDDEN, None, &pages.inner.texts.open_again).into_response();
    }
    match pages.inner.authz.redeem_link(&token, None).await {
        Ok(issued) => {
            pages.redeemed(&token);
            pages.signed_in(&issued)
        }
        Err(e) => pages.link_refused(&e, &token),
    }
}

/// `POST /auth/link/{token}/renew`: a new link to the stored address of this one. The answer is
/// the same whether or not one was sent (not invited any more, too many lately).
async fn link_renew(State(pages): State<SignInPages>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    if !pages.same_origin(&headers) {
        return pages.cross_site();
    }
    let t = &pages.inner.texts;
    if !pages.inner.authz.sends_links() {
        return pages.notice(StatusCode::NOT_FOUND, None, &t.ask_developer).into_response();
    }
    if token.len() > MAX_TOKEN {
        return pages.link_refused(&LinkError::Invalid, "");
    }
    let authz = pages.inner.authz.clone();
    if !pages.send_in_background(async move { authz.send_link_again(&token).await }) {
        return pages.notice(StatusCode::SERVICE_UNAVAILABLE, None, &t.unavailable).into_response();
    }
    pages.notice(StatusCode::OK, None, &t.sent).into_response()
}

/// `GET /auth/sign-in/{app}`: the address field (where links can be sent) and Google's button
/// (where configured). The same page for any well-formed app id: it tells nothing of which apps
/// exist.
async fn sign_in_page(State(pages): State<SignInPages>, Path(app): Path<String>) -> Response {
    if !crate::valid_app_id(&app) {
        return pages.notice(StatusCode::NOT_FOUND, None, &pages.inner.texts.invalid).into_response();
    }
    let t = &pages.inner.texts;
    let mut body = para(&t.sign_in_body.replace("{app}", &app));
    if pages.inner.authz.sends_links() {
        body.push_str(&form(None, &t.email_button, Some(&t.email_label)));
    }
    let google = pages.inner.google.as_ref().filter(|_| !pages.inner.authz.google_client_ids().is_empty());
    let mut nonce_cookie = None;
    if let Some(button) = google {
        let Ok(nonce) = random_nonce() else {
            return pages.notice(StatusCode::SERVICE_UNAVAILABLE, None, &t.unavailable).into_response();
        };
        body.push_str(&page::google_button(button, &app, &nonce));
        // Sent back on Google's cross-site POST: `SameSite=None`, and `__Host-` so that no
        // other host can set it.
        let cookie =
            format!("{NONCE_COOKIE}={nonce}; Path=/; Secure; HttpOnly; SameSite=None; Max-Age={}", NONCE_TTL.as_secs());
        nonce_cookie = HeaderValue::from_str(&cookie).ok();
    }
    if !pages.inner.authz.sends_links() && google.is_none() {
        body.push_str(&para(&t.ask_developer));
    }
    let page = pages.page(StatusCode::OK, &t.sign_in_title.replace("{app}", &app), &body);
    match nonce_cookie {
        Some(cookie) => page.with_google().with_header(header::SET_COOKIE, cookie).into_response(),
        None => page.into_response(),
    }
}

#[derive(serde::Deserialize)]
struct AddressForm {
    #[serde(default)]
    email: String,
}

/// `POST /auth/sign-in/{app}`: a link to the address, if it is invited to the app. The answer
/// is the same whether or not it is (or the app exists); the address is not repeated.
async fn sign_in_send(
    State(pages): State<SignInPages>,
    Path(app): Path<String>,
    headers: HeaderMap,
    form: Result<axum::Form<AddressForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !pages.same_origin(&headers) {
        return pages.cross_site();
    }
    let t = &pages.inner.texts;
    if !crate::valid_app_id(&app) {
        return pages.notice(StatusCode::NOT_FOUND, None, &t.invalid).into_response();
    }
    let Ok(axum::Form(form)) = form else {
        return pages.notice(StatusCode::BAD_REQUEST, None, &t.bad_email).into_response();
    };
    let app = AppId(app);
    if !pages.inner.authz.sends_links() {
        return pages.notice(StatusCode::NOT_FOUND, Some(&app), &t.ask_developer).into_response();
    }
    if crate::Email::parse(&form.email).is_err() {
        return pages.notice(StatusCode::BAD_REQUEST, Some(&app), &t.bad_email).into_response();
    }
    let (authz, to) = (pages.inner.authz.clone(), app.clone());
    if !pages.send_in_background(async move { authz.send_link(&to, &form.email).await }) {
        return pages.notice(StatusCode::SERVICE_UNAVAILABLE, Some(&app), &t.unavailable).into_response();
    }
    pages.notice(StatusCode::OK, Some(&app), &t.sign_in_sent.replace("{app}", &app.0)).into_response()
}

#[derive(serde::Deserialize)]
struct GoogleForm {
    #[serde(default)]
    credential: String,
    #[serde(default)]
    g_csrf_token: String,
    #[serde(default)]
    state: String,
}

/// `POST /auth/google`: Google Identity Services' callback. Its double-submit token must be in
/// the cookie and the body, equal; then the ID token is verified and the address's invitation to
/// the app named in `state` looked up.
async fn google(
    State(pages): State<SignInPages>,
    headers: HeaderMap,
    form: Result<axum::Form<GoogleForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let t = &pages.inner.texts;
    let bad = || pages.notice(StatusCode::BAD_REQUEST, None, &t.google_bad_request).into_response();
    let Ok(axum::Form(form)) = form else { return bad() };
    let Some(csrf) = cookie(&headers, "g_csrf_token") else { return bad() };
    if csrf.is_empty()
        || form.g_csrf_token.is_empty()
        || !constant_time_eq::constant_time_eq(csrf.as_bytes(), form.g_csrf_token.as_bytes())
    {
        return bad();
    }
    if !crate::valid_app_id(&form.state) || form.credential.is_empty() {
        return bad();
    }
    // The nonce the sign-in page gave this browser, which Google signed into the token.
    let Some(nonce) = cookie(&headers, NONCE_COOKIE).filter(|n| !n.is_empty()) else { return bad() };
    let app = AppId(form.state);
    match pages.inner.authz.google_sign_in_with_nonce(&app, &form.credential, nonce).await {
        Ok(issued) => {
            let mut response = pages.signed_in(&issued);
            let clear = format!("{NONCE_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=None; Max-Age=0");
            if let Ok(v) = HeaderValue::from_str(&clear) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            response
        }
        Err(GoogleSignInError::NotConfigured) => {
            pages.notice(StatusCode::NOT_FOUND, None, &t.ask_developer).into_response()
        }
        Err(GoogleSignInError::SignIn(SignInRefusal::NotInvited | SignInRefusal::UnknownApp(_))) => pages
            .notice(StatusCode::FORBIDDEN, Some(&app), &t.google_not_invited.replace("{app}", &app.0))
            .into_response(),
        Err(e) if e.class() == crate::ErrorClass::Unavailable => {
            pages.notice(StatusCode::SERVICE_UNAVAILABLE, Some(&app), &t.unavailable).into_response()
        }
        Err(_) => bad(),
    }
}

/// `POST /auth/logout`: clears the session cookie (from this site's own page).
async fn logout(State(pages): State<SignInPages>, headers: HeaderMap) -> Response {
    if !pages.same_origin(&headers) {
        return pages.cross_site();
    }
    let clear = format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0");
    let page = pages.notice(StatusCode::OK, None, &pages.inner.texts.signed_out);
    match HeaderValue::from_str(&clear) {
        Ok(v) => page.with_header(header::SET_COOKIE, v).into_response(),
        Err(_) => page.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorder that keeps the `ghauthz_link_pages_total` counts by `event`.
    #[derive(Default)]
    struct Counts(Arc<parking_lot::Mutex<HashMap<String, u64>>>);

    struct Counter(Arc<parking_lot::Mutex<HashMap<String, u64>>>, String);

    impl metrics::CounterFn for Counter {
        fn increment(&self, value: u64) {
            *self.0.lock().entry(self.1.clone()).or_default() += value;
        }
        fn absolute(&self, _: u64) {}
    }

    impl metrics::Recorder for Counts {
        fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
            let event = key.labels().find(|l| l.key() == "event").map_or_else(String::new, |l| l.value().to_owned());
            metrics::Counter::from_arc(Arc::new(Counter(self.0.clone(), format!("{}/{event}", key.name()))))
        }
        fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            metrics::Gauge::noop()
        }
        fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
            metrics::Histogram::noop()
        }
    }

    #[test]
    fn an_opened_link_left_to_expire_is_counted_unredeemed_once_and_a_redeemed_one_never() {
        let counts = Counts::default();
        let seen = counts.0.clone();
        metrics::with_local_recorder(&counts, || {
            let mut opened = Opened::default();
            let t = |s: u64| Timestamp(s * 1000);
            opened.links.insert([1; 32], t(100)); // expires at 100 s
            opened.links.insert([2; 32], t(500));
            sweep(&mut opened, t(95));
            sweep(&mut opened, t(101)); // within 10 s of the last sweep: not yet
            assert_eq!(opened.links.len(), 2);
            sweep(&mut opened, t(200));
            assert_eq!(opened.links.len(), 1, "the expired one is forgotten");
            opened.links.remove(&[2; 32]); // redeemed
            sweep(&mut opened, t(1000));
            sweep(&mut opened, t(2000));
        });
        let seen = seen.lock();
        assert_eq!(seen.get("ghauthz_link_pages_total/unredeemed"), Some(&1), "{seen:?}");
    }
}
