//! The viewer's sign-in pages and the app guard (docs/web.md), through the router itself
//! (`tower::ServiceExt::oneshot`): each rule a browser, a mail scanner or a forged request meets.
//! The same flows in a real browser are in `browser.rs`; the mail itself, over SMTP, in `mail.rs`.
#![cfg(all(feature = "http", feature = "world"))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use ghauthz::http::web::{Access, AppGuard, NONCE_COOKIE, PRE_COOKIE, SESSION_COOKIE, SignInPages};
use ghauthz::mail::{LinkMail, MailConfig, MailError, Mailer};
use ghauthz::store::MemoryStore;
use ghauthz::store::prelude::*;
use ghauthz::world::{MockGithub, World};
use ghauthz::{AppId, Authorizer, ChangedBy, Clock as _, ManualClock, Principal, SessionConfig, SessionKeys};
use http::{HeaderMap, Request, StatusCode};
use tower::ServiceExt as _;

use crate::common;

pub(crate) const PUBLIC: &str = "https://share.example";
const APP_URL: &str = "https://share.example/apps/{app}/";

/// Every message a [`Mailer`] was asked to send: to whom, for which app, and the link.
#[derive(Default, Clone)]
pub(crate) struct Outbox(Arc<Mutex<Vec<(String, String, String)>>>);

#[async_trait::async_trait]
impl Mailer for Outbox {
    async fn send_link(&self, mail: &LinkMail) -> Result<(), MailError> {
        let sent = (mail.to().as_str().to_owned(), mail.app().0.clone(), mail.expose_url().to_owned());
        self.0.lock().unwrap().push(sent);
        Ok(())
    }
}

impl Outbox {
    pub(crate) fn sent(&self) -> Vec<(String, String, String)> {
        self.0.lock().unwrap().clone()
    }

    /// The messages once there are `n` (the pages send in the background): at most 5 s.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<(String, String, String)> {
        common::wait_until("the link is sent", Duration::from_secs(5), || self.sent().len() >= n).await;
        self.sent()
    }

    /// The path of the last link sent (`/auth/link/...`).
    pub(crate) fn last_path(&self) -> String {
        let (_, _, url) = self.sent().pop().expect("a link was sent");
        url.strip_prefix(PUBLIC).unwrap().to_owned()
    }
}

pub(crate) struct Web {
    pub(crate) authz: Authorizer,
    pub(crate) pages: SignInPages,
    pub(crate) outbox: Outbox,
    pub(crate) clock: ManualClock,
    pub(crate) world: World,
    pub(crate) mock: Option<MockGithub>,
}

/// An authorizer over acme.toml with Google sign-in and a mailer that records, on the world's
/// clock, and its pages at [`PUBLIC`].
pub(crate) async fn web_at(public: &str) -> Web {
    let world = common::fixture("acme.toml");
    let clock = ManualClock::new(world.now().unwrap());
    let mock = MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone())).await.unwrap();
    let store = Arc::new(MemoryStore::new());
    store.seed_once(&world.app_records(), clock.now()).await.unwrap();
    let outbox = Outbox::default();
    let authz = Authorizer::builder(mock.github_config())
        .clock(Arc::new(clock.clone()))
        .store(store.clone())
        .sessions(SessionKeys::generate().unwrap(), SessionConfig::default())
        .google(mock.google_config().unwrap())
        .mail(MailConfig::new(Arc::new(outbox.clone()), public.parse().unwrap()))
        .build()
        .unwrap();
    let app_url = APP_URL.replace(PUBLIC, public);
    let pages = SignInPages::new(authz.clone(), public.parse().unwrap(), &app_url)
        .unwrap()
        .with_google_button("1234-test.apps.googleusercontent.com");
    Web { authz, pages, outbox, clock, world, mock: Some(mock) }
}

async fn web() -> Web {
    web_at(PUBLIC).await
}

/// The app's id: the second segment of `/apps/{app}/...`.
pub(crate) fn app_of(parts: &http::request::Parts) -> Option<AppId> {
    parts.uri.path().split('/').nth(2).filter(|s| !s.is_empty()).map(|s| AppId(s.to_owned()))
}

/// A control plane: its app pages behind the guard, the sign-in pages beside them.
pub(crate) fn control_plane(pages: &SignInPages) -> Router {
    let guard: AppGuard = pages.guard(app_of);
    Router::new()
        .route(
            "/apps/{app}/",
            get(|access: Access| async move {
                axum::response::Html(format!(
                    "<!doctype html><title>{app}</title><h1 id=\"app\">{app}</h1><p id=\"who\">{who}</p>",
                    app = access.app().0,
                    who = access.principal().label()
                ))
            }),
        )
        .route(
            "/apps/{app}/cookies",
            get(|_: Access, headers: HeaderMap| async move {
                headers.get("cookie").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
            }),
        )
        .layer(guard)
        .merge(pages.router())
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// `name=value` of a cookie set, as a browser would send it back.
    fn cookie_pair(&self, name: &str) -> String {
        self.cookie(name).unwrap().split(';').next().unwrap().to_owned()
    }

    fn location(&self) -> &str {
        self.headers["location"].to_str().unwrap()
    }
}

async fn send(router: &Router, req: Request<Body>) -> Answer {
    let response = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    Answer { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

fn get_req(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::get(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).unwrap()
}

fn post_req(path: &str, headers: &[(&str, &str)], form: &str) -> Request<Body> {
    let mut b = Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(form.to_owned())).unwrap()
}

const SAME_ORIGIN: (&str, &str) = ("sec-fetch-site", "same-origin");

/// A link for dana on dash, sent through the pages' mailer: its path.
async fn dana_link(w: &Web) -> String {
    w.authz.send_link(&AppId("dash".into()), " Dana@Example.com").await.unwrap();
    w.outbox.last_path()
}

fn token_of(path: &str) -> &str {
    path.trim_start_matches("/auth/link/")
}

#[tokio::test]
async fn a_links_page_is_inert_on_get_and_head_and_binds_a_pre_session_cookie_to_the_link() {
    let w = web().await;
    let router = control_plane(&w.pages);
    let path = dana_link(&w).await;
    let (to, app, _) = w.outbox.sent().pop().unwrap();
    assert_eq!((to.as_str(), app.as_str()), ("dana@example.com", "dash"), "sent to the stored address");
    // A scanner fetches it, runs it, fetches it again: nothing is used up.
    let head = send(&router, Request::head(&path).body(Body::empty()).unwrap()).await;
    assert_eq!(head.status, 200);
    assert!(head.cookie(PRE_COOKIE).is_none() && head.body.is_empty(), "HEAD sets nothing");
    for _ in 0..3 {
        let page = send(&router, get_req(&path, &[])).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("dash") && page.body.contains("dana@example.com"), "{}", page.body);
        assert!(page.body.contains("<form method=\"post\">"), "a form that POSTs to the page's own URL");
        assert!(!page.body.contains("<script"), "no script submits it");
        let pre = page.cookie(PRE_COOKIE).unwrap();
        for flag in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Strict", "; Max-Age=900"] {
            assert!(pre.contains(flag), "{pre}");
        }
    }
    assert!(w.authz.inspect_link(token_of(&path)).await.is_ok(), "the link still works");
}

#[tokio::test]
async fn the_post_redeems_only_from_this_sites_page_with_the_links_own_pre_session_cookie() {
    let w = web().await;
    let router = control_plane(&w.pages);
    let path = dana_link(&w).await;
    let other = dana_link(&w).await;
    let pre = send(&router, get_req(&path, &[])).await.cookie_pair(PRE_COOKIE);
    let other_pre = send(&router, get_req(&other, &[])).await.cookie_pair(PRE_COOKIE);
    let refused: [(&str, Vec<(&str, &str)>); 8] = [
        ("no pre-session cookie", vec![SAME_ORIGIN]),
        ("another link's cookie", vec![SAME_ORIGIN, ("cookie", &other_pre)]),
        ("a cross-site POST", vec![("sec-fetch-site", "cross-site"), ("cookie", &pre)]),
        ("a same-site POST from another origin", vec![("sec-fetch-site", "same-site"), ("cookie", &pre)]),
        ("another Origin", vec![("origin", "https://evil.example"), ("cookie", &pre)]),
        ("Origin: null", vec![("origin", "null"), ("cookie", &pre)]),
        ("neither header", vec![("cookie", &pre)]),
        ("a forged cookie", vec![SAME_ORIGIN, ("cookie", "__Host-ghauthz-pre=99999999999.AAAA")]),
    ];
    for (what, headers) in &refused {
        let answer = send(&router, post_req(&path, headers, "")).await;
        assert_eq!(answer.status, 403, "{what}: {}", answer.body);
        assert!(answer.cookie(SESSION_COOKIE).is_none(), "{what}");
        assert!(w.authz.inspect_link(token_of(&path)).await.is_ok(), "{what}: the link is not used up");
    }
    // A person's click: the browser sends Sec-Fetch-Site and the cookie. `next` steers nothing.
    let steered = format!("{path}?next=https://evil.example/");
    let answer = send(&router, post_req(&steered, &[SAME_ORIGIN, ("cookie", &pre)], "")).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.location(), "https://share.example/apps/dash/");
    let session = answer.cookie(SESSION_COOKIE).unwrap();
    for flag in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Lax", "; Max-Age=3600"] {
        assert!(session.contains(flag), "{session}");
    }
    assert!(answer.cookie(PRE_COOKIE).unwrap().contains("Max-Age=0"), "the pre-session cookie is cleared");
    // Used: the page says so and offers a new link, to the stored address.
    let again = send(&router, post_req(&path, &[SAME_ORIGIN, ("cookie", &pre)], "")).await;
    assert_eq!(again.status, 410);
    assert!(again.body.contains("already used"), "{}", again.body);
    assert!(again.body.contains(&format!("action=\"{path}/renew\"")), "{}", again.body);
    // Without Sec-Fetch-Site, an Origin equal to the public URL's is this site.
    let other_answer = send(&router, post_req(&other, &[("origin", PUBLIC), ("cookie", &other_pre)], "")).await;
    assert_eq!(other_answer.status, 303, "{}", other_answer.body);
}

#[tokio::test]
async fn the_session_cookie_opens_the_app_and_the_guard_refuses_once_the_viewer_is_removed() {
    let w = web().await;
    let router = control_plane(&w.pages);
    // Nobody signed in on a private app: to its sign-in page; a caller asking for JSON gets 401.
    let anonymous = send(&router, get_req("/apps/dash/", &[])).await;
    assert_eq!(
        (anonymous.status, anonymous.location()),
        (StatusCode::SEE_OTHER, "https://share.example/auth/sign-in/dash")
    );
    let json = send(&router, get_req("/apps/dash/", &[("accept", "application/json")])).await;
    assert_eq!(json.status, 401);
    assert!(json.body.contains("\"sign_in\":\"https://share.example/auth/sign-in/dash\""), "{}", json.body);
    // A public app lets anyone in.
    let site = send(&router, get_req("/apps/site/", &[])).await;
    assert_eq!(site.status, 200, "{}", site.body);
    // Dana signs in by link and opens dash.
    let path = dana_link(&w).await;
    let pre = send(&router, get_req(&path, &[])).await.cookie_pair(PRE_COOKIE);
    let signed = send(&router, post_req(&path, &[SAME_ORIGIN, ("cookie", &pre)], "")).await;
    let session = signed.cookie_pair(SESSION_COOKIE);
    let app = send(&router, get_req("/apps/dash/", &[("cookie", &session)])).await;
    assert_eq!(app.status, 200, "{}", app.body);
    assert!(app.body.contains("dana@example.com"), "{}", app.body);
    // Her session is for dash alone: on notes she is sent to sign in there; a public app opens
    // to her as to anyone.
    let notes = send(&router, get_req("/apps/notes/", &[("cookie", &session)])).await;
    assert_eq!(notes.status, 303);
    let site = send(&router, get_req("/apps/site/", &[("cookie", &session)])).await;
    assert_eq!(site.status, 200, "{}", site.body);
    // The app behind the guard never sees the sign-in cookies (the session, the pre-session
    // cookie, Google's nonce and double-submit token), in one header or several; its own
    // cookies pass, as sent.
    let cookies = format!("theme=dark; {session}; {pre}; {NONCE_COOKIE}=n0nce");
    let seen =
        send(&router, get_req("/apps/dash/cookies", &[("cookie", &cookies), ("cookie", "g_csrf_token=c5rf; lang=fr")]))
            .await;
    assert_eq!((seen.status, seen.body.as_str()), (StatusCode::OK, "theme=dark; lang=fr"));
    // Removed: the next request is refused, with the reason, as a page or as JSON.
    w.authz.remove_viewer(&ChangedBy::Operator, &AppId("dash".into()), "dana@example.com").await.unwrap();
    let page = send(&router, get_req("/apps/dash/", &[("cookie", &session)])).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("not invited"), "{}", page.body);
    let json = send(&router, get_req("/apps/dash/", &[("cookie", &session), ("accept", "application/json")])).await;
    assert_eq!(json.status, 403);
    assert!(json.body.contains("\"kind\":\"not_invited\""), "{}", json.body);
    // No such app: nobody signed in is sent to sign in, as for a private app (the guard tells
    // nobody which apps exist); a user the control plane signed in is told 404.
    assert_eq!(send(&router, get_req("/apps/nope/", &[])).await.location(), "https://share.example/auth/sign-in/nope");
    let mut req = get_req("/apps/nope/", &[]);
    req.extensions_mut().insert(Principal::github(w.world.user("carol").unwrap()));
    assert_eq!(send(&router, req).await.status, 404);
}

#[tokio::test]
async fn a_github_user_the_control_plane_authenticated_is_checked_by_their_role() {
    let w = web().await;
    let carol = Principal::github(w.world.user("carol").unwrap());
    let mallory = Principal::github(w.world.user("mallory").unwrap());
    let router = control_plane(&w.pages);
    let as_user = |p: Principal| {
        let mut req = get_req("/apps/dash/", &[("accept", "application/json")]);
        req.extensions_mut().insert(p);
        req
    };
    let allowed = send(&router, as_user(carol)).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert!(allowed.body.contains("carol"), "{}", allowed.body);
    let refused = send(&router, as_user(mallory)).await;
    assert_eq!(refused.status, 403, "no redirect for a user the control plane signed in: {}", refused.body);
    assert!(refused.body.contains("\"kind\":\"no_access\""), "{}", refused.body);
}

#[tokio::test]
async fn could_not_decide_is_503_never_a_pass() {
    let mut w = web().await;
    let router = control_plane(&w.pages);
    let carol = Principal::github(w.world.user("carol").unwrap());
    drop(w.mock.take()); // GitHub stops answering
    let mut req = get_req("/apps/dash/", &[]);
    req.extensions_mut().insert(carol);
    let answer = send(&router, req).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(!answer.body.contains("/apps/dash"), "{}", answer.body);
}

#[tokio::test]
async fn the_extractor_alone_asks_a_guard_in_the_extensions_and_refuses_without_one() {
    let w = web().await;
    let handler = |access: Access| async move { access.app().0.clone() };
    let bare = Router::new().route("/apps/{app}/", get(handler));
    assert_eq!(send(&bare, get_req("/apps/site/", &[])).await.status, 500, "no guard: never a pass");
    let with_guard = bare.clone().layer(axum::Extension(w.pages.guard(app_of)));
    let site = send(&with_guard, get_req("/apps/site/", &[])).await;
    assert_eq!((site.status, site.body.as_str()), (StatusCode::OK, "site"));
    assert_eq!(send(&with_guard, get_req("/apps/dash/", &[])).await.status, 303);
    // A route that asks for more than the layer in front granted: the guard nearest it decides.
    let editing = Router::new()
        .route("/apps/{app}/", get(|access: Access| async move { format!("{:?}", access.capability()) }))
        .layer(axum::Extension(w.pages.guard(app_of).requiring(ghauthz::Capability::Edit)))
        .layer(w.pages.guard(app_of));
    let public = send(&editing, get_req("/apps/site/", &[("accept", "application/json")])).await;
    assert_eq!(public.status, 401, "anyone may view site, nobody signed in may edit it: {}", public.body);
    let mut req = get_req("/apps/site/", &[]);
    req.extensions_mut().insert(Principal::github(w.world.user("carol").unwrap()));
    let carol = send(&editing, req).await;
    assert_eq!((carol.status, carol.body.as_str()), (StatusCode::OK, "Edit"));
}

#[tokio::test]
async fn used_expired_revoked_and_unknown_links_each_say_which_and_a_new_one_goes_to_the_stored_address() {
    let w = web().await;
    let router = control_plane(&w.pages);
    let path = dana_link(&w).await;
    w.clock.advance(Duration::from_secs(16 * 60));
    let expired = send(&router, get_req(&path, &[])).await;
    assert_eq!(expired.status, 410);
    assert!(expired.body.contains("expired"), "{}", expired.body);
    assert!(expired.cookie(PRE_COOKIE).is_none());
    // The new link: from this site's page only; the same words whatever happened.
    let renew = format!("{path}/renew");
    assert_eq!(send(&router, post_req(&renew, &[("sec-fetch-site", "cross-site")], "")).await.status, 403);
    let before = w.outbox.sent().len();
    let sent = send(&router, post_req(&renew, &[SAME_ORIGIN], "")).await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    let all = w.outbox.wait_for(before + 1).await;
    assert_eq!(all.len(), before + 1);
    assert_eq!(all[before].0, "dana@example.com");
    // Revoked: the invitation was removed after the link was issued.
    let fresh = w.outbox.last_path();
    w.authz.remove_viewer(&ChangedBy::Operator, &AppId("dash".into()), "dana@example.com").await.unwrap();
    let revoked = send(&router, get_req(&fresh, &[])).await;
    assert_eq!(revoked.status, 410);
    assert!(revoked.body.contains("withdrawn"), "{}", revoked.body);
    // Renewing a revoked link sends nothing (she is not invited) and says the same.
    let n = w.outbox.sent().len();
    let answer = send(&router, post_req(&format!("{fresh}/renew"), &[SAME_ORIGIN], "")).await;
    assert_eq!((answer.status, answer.body.clone()), (sent.status, sent.body.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(w.outbox.sent().len(), n);
    let unknown = send(&router, get_req("/auth/link/gl1_made-up", &[])).await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("not valid") && !unknown.body.contains("made-up"), "{}", unknown.body);
}

#[tokio::test]
async fn the_sign_in_page_sends_a_link_to_an_invited_address_and_says_the_same_for_anyone() {
    let w = web().await;
    let router = control_plane(&w.pages);
    let page = send(&router, get_req("/auth/sign-in/dash", &[])).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("type=\"email\"") && page.body.contains("g_id_signin"), "{}", page.body);
    assert!(page.body.contains("data-state=\"dash\""), "{}", page.body);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src https://accounts.google.com/gsi/client"), "{csp}");
    let invited = send(&router, post_req("/auth/sign-in/dash", &[SAME_ORIGIN], "email=+Dana%40Example.com")).await;
    let stranger = send(&router, post_req("/auth/sign-in/dash", &[SAME_ORIGIN], "email=zed%40example.com")).await;
    let no_app = send(&router, post_req("/auth/sign-in/nope", &[SAME_ORIGIN], "email=zed%40example.com")).await;
    assert_eq!(invited.status, 200);
    assert_eq!((stranger.status, &stranger.body), (invited.status, &invited.body), "not invited says the same");
    assert_eq!(no_app.status, 200, "{}", no_app.body);
    assert!(!stranger.body.contains("zed"), "the address is not repeated");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = w.outbox.wait_for(1).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].0.as_str(), sent[0].1.as_str()), ("dana@example.com", "dash"));
    let bad = send(&router, post_req("/auth/sign-in/dash", &[SAME_ORIGIN], "email=%3Cscript%3E")).await;
    assert_eq!(bad.status, 400);
    assert!(!bad.body.contains("<script>"), "{}", bad.body);
    let cross = send(
        &router,
        post_req("/auth/sign-in/dash", &[("origin", "https://evil.example")], "email=dana%40example.com"),
    )
    .await;
    assert_eq!(cross.status, 403);
    // A script's `fetch` from a page of this origin is not a form.
    let fetched = [SAME_ORIGIN, ("sec-fetch-mode", "cors")];
    assert_eq!(send(&router, post_req("/auth/sign-in/dash", &fetched, "email=dana%40example.com")).await.status, 403);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(w.outbox.sent().len(), 1, "nothing sent for a cross-site POST or a fetch");
}

#[tokio::test]
async fn googles_callback_needs_its_double_submit_token_and_the_nonce_the_sign_in_page_gave() {
    let w = web().await;
    let router = control_plane(&w.pages);
    let now = w.clock.now().as_secs();
    // The sign-in page gives Google's button a nonce, and the browser the same in a cookie.
    let page = send(&router, get_req("/auth/sign-in/dash", &[])).await;
    let nonce_cookie = page.cookie(NONCE_COOKIE).unwrap();
    for flag in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=None", "; Max-Age=600"] {
        assert!(nonce_cookie.contains(flag), "{nonce_cookie}");
    }
    let pair = page.cookie_pair(NONCE_COOKIE);
    let nonce = pair.split_once('=').unwrap().1.to_owned();
    assert!(page.body.contains(&format!("data-nonce=\"{nonce}\"")), "{}", page.body);
    let token = common::google_token_with_nonce(now, "dana@example.com", &nonce);
    let form = |csrf: &str, credential: &str, state: &str| {
        format!("credential={credential}&g_csrf_token={csrf}&state={state}")
    };
    let both = format!("g_csrf_token=abc; {pair}");
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u16);
    let cases: [Case; 9] = [
        ("no cookie", vec![], form("abc", &token, "dash"), 400),
        ("no body token", vec![("cookie", &both)], form("", &token, "dash"), 400),
        ("unequal", vec![("cookie", &both)], form("abd", &token, "dash"), 400),
        ("no state", vec![("cookie", &both)], form("abc", &token, ""), 400),
        ("no nonce cookie", vec![("cookie", "g_csrf_token=abc")], form("abc", &token, "dash"), 400),
        (
            "a token without the nonce",
            vec![("cookie", &both)],
            form("abc", &common::google_token(now, "dana@example.com"), "dash"),
            400,
        ),
        (
            "another browser's nonce",
            vec![("cookie", "g_csrf_token=abc; __Host-ghauthz-nonce=someone-elses")],
            form("abc", &token, "dash"),
            400,
        ),
        ("a forged ID token", vec![("cookie", &both)], form("abc", "eyJhbGciOiJub25lIn0.e30.", "dash"), 400),
        (
            "not invited",
            vec![("cookie", &both)],
            form("abc", &common::google_token_with_nonce(now, "zed@example.com", &nonce), "dash"),
            403,
        ),
    ];
    for (what, headers, body, status) in cases {
        let answer = send(&router, post_req("/auth/google", &headers, &body)).await;
        assert_eq!(answer.status.as_u16(), status, "{what}: {}", answer.body);
        assert!(answer.cookie(SESSION_COOKIE).is_none(), "{what}");
    }
    // As Google posts it: cross-site (no same-origin rule here), the token in both places.
    let headers = [("cookie", both.as_str()), ("sec-fetch-site", "cross-site")];
    let answer = send(&router, post_req("/auth/google", &headers, &form("abc", &token, "dash"))).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.location(), "https://share.example/apps/dash/");
    assert!(answer.cookie(NONCE_COOKIE).unwrap().contains("Max-Age=0"), "the nonce is used up");
    let session = answer.cookie_pair(SESSION_COOKIE);
    assert_eq!(send(&router, get_req("/apps/dash/", &[("cookie", &session)])).await.status, 200);
}

#[tokio::test]
async fn logout_clears_the_session_cookie_from_this_sites_page_only() {
    let w = web().await;
    let router = control_plane(&w.pages);
    assert_eq!(send(&router, post_req("/auth/logout", &[("sec-fetch-site", "cross-site")], "")).await.status, 403);
    let out = send(&router, post_req("/auth/logout", &[SAME_ORIGIN], "")).await;
    assert_eq!(out.status, 200);
    let cleared = out.cookie(SESSION_COOKIE).unwrap();
    assert!(cleared.starts_with("__Host-ghauthz-session=;") && cleared.contains("Max-Age=0"), "{cleared}");
}

#[tokio::test]
async fn every_page_and_refusal_carries_the_hardening_headers() {
    let w = web().await;
    let router = control_plane(&w.pages);
    let path = dana_link(&w).await;
    let requests = [
        get_req(&path, &[]),
        Request::head(&path).body(Body::empty()).unwrap(),
        post_req(&path, &[], ""),
        get_req("/auth/link/gl1_nope", &[]),
        get_req("/auth/sign-in/dash", &[]),
        post_req("/auth/google", &[], ""),
        post_req("/auth/logout", &[SAME_ORIGIN], ""),
        get_req("/auth/style.css", &[]),
        get_req("/apps/dash/", &[]),
        get_req("/apps/nope/", &[]),
        get_req("/auth/nothing/here", &[]),
        post_req("/auth/link/gl1_x/renew/more", &[], ""),
    ];
    for req in requests {
        let what = format!("{} {}", req.method(), req.uri());
        let a = send(&router, req).await;
        assert!(a.headers.contains_key("referrer-policy"), "{what}: {:?}", a.headers);
        assert_eq!(a.headers["referrer-policy"], "no-referrer", "{what}");
        assert_eq!(a.headers["cache-control"], "no-store", "{what}");
        assert_eq!(a.headers["x-frame-options"], "DENY", "{what}");
        let csp = a.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"), "{what}: {csp}");
        if !what.contains("sign-in") {
            assert!(!csp.contains("script-src"), "{what}: no script at all: {csp}");
        }
    }
}

#[tokio::test]
async fn pages_nested_under_a_path_point_their_forms_and_links_there() {
    let w = web_at("https://cp.example/viewers").await;
    let router = Router::new().nest("/viewers", w.pages.router());
    w.authz.send_link(&AppId("dash".into()), "dana@example.com").await.unwrap();
    let (_, _, url) = w.outbox.sent().pop().unwrap();
    let path = url.strip_prefix("https://cp.example").unwrap().to_owned();
    assert!(path.starts_with("/viewers/auth/link/gl1_"), "{path}");
    let page = send(&router, get_req(&path, &[])).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("href=\"/viewers/auth/style.css\""), "{}", page.body);
    let pre = page.cookie_pair(PRE_COOKIE);
    let done = send(&router, post_req(&path, &[("origin", "https://cp.example"), ("cookie", &pre)], "")).await;
    assert_eq!(done.status, 303, "{}", done.body);
}
