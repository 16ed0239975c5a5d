//! Everything logged while issuing, redeeming and signing in, at TRACE level from every crate,
//! holds no token. One test per file: it installs the process's global subscriber.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use ghauthz::store::SqliteStore;
use ghauthz::{AppId, Clock};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_redeem_and_sign_in_log_no_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let dir = tempfile::tempdir().unwrap();
    let v = common::viewers_on(Arc::new(SqliteStore::open(dir.path().join("db")).await.unwrap())).await;
    let authz = v.authz;
    let dash = AppId("dash".into());

    let link = authz.issue_link(&dash, "dana@example.com").await.unwrap();
    let link_token = link.token.expose_secret().to_owned();
    authz.inspect_link(&link_token).await.unwrap();
    let session = authz.redeem_link(&link_token, None).await.unwrap().token.expose_secret().to_owned();
    let _ = authz.redeem_link(&link_token, None).await;

    let id_token = common::google_token(v.clock.now().as_secs(), "dana@example.com");
    let google_session = authz.google_sign_in(&dash, &id_token).await.unwrap().token.expose_secret().to_owned();

    // The HTTP surface's line per request: a session token as the subject, a key as the caller.
    #[cfg(feature = "http")]
    let key = {
        use tower::ServiceExt as _;
        let (keys, key) = ghauthz::http::ApiKeys::generate().unwrap();
        let service = ghauthz::http::Service::new(authz.clone(), keys, "https://pdp.example".parse().unwrap());
        let body = serde_json::json!({
            "subject": {"type": "viewer_session", "id": session},
            "action": {"name": "view"},
            "resource": {"type": "app", "id": "dash"},
        });
        let request = http::Request::post("/access/v1/evaluation")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .header("x-request-id", "req-7")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        assert_eq!(service.router().oneshot(request).await.unwrap().status(), 200);
        key
    };
    #[cfg(not(feature = "http"))]
    let key = String::from("(no http)");

    // The sign-in pages: a link's page and its redemption, Google's callback, all through the
    // service's router (one log line each): the link, the cookies and the ID token stay out.
    #[cfg(feature = "http")]
    let (page_link, page_session, page_id_token) = {
        use tower::ServiceExt as _;
        let pages = ghauthz::http::web::SignInPages::new(
            authz.clone(),
            "https://share.example".parse().unwrap(),
            "https://share.example/apps/{app}/",
        )
        .unwrap()
        .with_google_button(common::GOOGLE_AUD);
        let (keys, _) = ghauthz::http::ApiKeys::generate().unwrap();
        let router = ghauthz::http::Service::new(authz.clone(), keys, "https://share.example".parse().unwrap())
            .with_pages(pages)
            .router();
        let link = authz.issue_link(&dash, "dana@example.com").await.unwrap();
        let token = link.token.expose_secret().to_owned();
        let path = format!("/auth/link/{token}");
        let page =
            router.clone().oneshot(http::Request::get(&path).body(axum::body::Body::empty()).unwrap()).await.unwrap();
        let pre = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let redeem = http::Request::post(&path)
            .header("sec-fetch-site", "same-origin")
            .header("cookie", &pre)
            .body(axum::body::Body::empty())
            .unwrap();
        let signed = router.clone().oneshot(redeem).await.unwrap();
        assert_eq!(signed.status(), 303);
        let cookie = signed.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let sign_in = http::Request::get("/auth/sign-in/dash").body(axum::body::Body::empty()).unwrap();
        let sign_in = router.clone().oneshot(sign_in).await.unwrap();
        let nonce =
            sign_in.headers().get("set-cookie").map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
        let nonce = nonce.unwrap_or_default();
        let bound = common::google_token_with_nonce(
            v.clock.now().as_secs(),
            "dana@example.com",
            nonce.split_once('=').map_or("", |(_, n)| n),
        );
        let form = format!("credential={bound}&g_csrf_token=c5rf&state=dash");
        let google = http::Request::post("/auth/google")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", format!("g_csrf_token=c5rf; {nonce}"))
            .body(axum::body::Body::from(form))
            .unwrap();
        assert_eq!(router.clone().oneshot(google).await.unwrap().status(), 303);
        let form = "email=dana%40example.com";
        let asked = http::Request::post("/auth/sign-in/dash")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .body(axum::body::Body::from(form))
            .unwrap();
        router.oneshot(asked).await.unwrap();
        (token, cookie.split_once('=').unwrap().1.to_owned(), bound)
    };
    #[cfg(not(feature = "http"))]
    let (page_link, page_session, page_id_token) =
        (String::from("(no http)"), String::from("(no http)"), String::from("(no http)"));

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    #[cfg(feature = "http")]
    assert!(log.contains("route=\"/access/v1/evaluation\"") && log.contains("req-7"), "the request's line: {log}");
    #[cfg(feature = "http")]
    assert!(log.contains("route=\"/auth/link/{token}\""), "the page's line: {log}");
    for event in ["link issued", "link redeemed", "google sign-in"] {
        assert!(log.contains(event), "the capture works: `{event}` is logged");
    }
    for (what, secret) in [
        ("link token", link_token.as_str()),
        ("link token body", &link_token[4..]),
        ("session", session.as_str()),
        ("google session", google_session.as_str()),
        ("google id token", id_token.as_str()),
        ("google id token signature", id_token.rsplit('.').next().unwrap()),
        ("installation token", "ghs_world_installation"),
        ("api key", key.as_str()),
        ("viewer address", "dana@example.com"),
        ("link token on its page", page_link.as_str()),
        ("session cookie set by a page", page_session.as_str()),
        ("ID token posted to a page", page_id_token.as_str()),
    ] {
        assert!(!log.contains(secret), "the {what} reached the log");
    }
}
