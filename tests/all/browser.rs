//! The viewer's way in, in a real browser: headless Chromium driven over WebDriver (chromedriver,
//! through fantoccini) against the sign-in pages and the app guard served on 127.0.0.1 (the
//! router `ghauthz serve` mounts, beside a control plane's guarded app route). Each page is saved
//! as a screenshot under `target/screenshots/` for people to look at.
//!
//! Needs `GHAUTHZ_TEST_CHROMEDRIVER`, the path of chromedriver (`.ci/run` installs Debian's
//! `chromium` and `chromium-driver` and sets it); without it the test says it was skipped.
#![cfg(all(feature = "http", feature = "world"))]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use fantoccini::{Client, ClientBuilder, Locator};
use ghauthz::http::web::{NONCE_COOKIE, PRE_COOKIE, SESSION_COOKIE};
use ghauthz::{AppId, ChangedBy, Clock as _};

use crate::common;
use crate::web_pages::{Web, control_plane, web_at};

const DRIVER_ENV: &str = "GHAUTHZ_TEST_CHROMEDRIVER";

struct Driver {
    child: Child,
    client: Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver on a free port, and a headless Chromium session; `None` (skipped) without
/// `GHAUTHZ_TEST_CHROMEDRIVER`.
async fn driver() -> Option<Driver> {
    let Ok(path) = std::env::var(DRIVER_ENV) else {
        eprintln!("skipped: {DRIVER_ENV} is unset, so the browser tests do not run");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(&path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{DRIVER_ENV}={path} does not start: {e}"));
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "goog:chromeOptions": {"args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                                        "--window-size=1000,700"]}
    }))
    .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut last = None;
    for _ in 0..100 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
            Ok(client) => return Some(Driver { child, client }),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not answer: {last:?}");
}

/// Saves what the browser shows as `target/screenshots/{name}.png`.
async fn screenshot(client: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The control plane on 127.0.0.1 (its public URL the listener's), and a second origin on
/// 127.0.0.1 serving pages of another site: a form that posts to the first.
async fn servers() -> (Web, String, String, tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let w = web_at(&base).await;
    let router = control_plane(&w.pages);
    let plane = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_base = format!("http://{}", other.local_addr().unwrap());
    // `/post?to=URL&fields=a=1&b=2`: a page whose button posts those fields to URL.
    let site = Router::new().route(
        "/post",
        get(|uri: http::Uri| async move {
            let q: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
            let to = q.get("to").cloned().unwrap_or_default();
            let fields: String = q
                .get("fields")
                .map(|f| {
                    f.split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{v}\">"))
                        .collect()
                })
                .unwrap_or_default();
            axum::response::Html(format!(
                "<!doctype html><title>another site</title><form method=\"post\" action=\"{to}\">{fields}\
                 <button id=\"go\" type=\"submit\">Go</button></form>"
            ))
        }),
    );
    let elsewhere = tokio::spawn(async move { axum::serve(other, site).await.unwrap() });
    (w, base, other_base, plane, elsewhere)
}

/// A link for dana on dash: its full URL.
async fn link(w: &Web) -> String {
    w.authz.send_link(&AppId("dash".into()), "dana@example.com").await.unwrap();
    w.outbox.sent().pop().unwrap().2
}

async fn text(client: &Client) -> String {
    client.find(Locator::Css("body")).await.unwrap().text().await.unwrap()
}

/// The page's text once it holds `needle` (after a click, the next page may take a moment to
/// load): at most 10 s, then whatever it holds.
async fn text_with(client: &Client, needle: &str) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        if let Ok(body) = client.find(Locator::Css("body")).await {
            if let Ok(t) = body.text().await {
                if t.contains(needle) {
                    return t;
                }
                last = t;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

/// The URL once it is `want` (after a click): at most 10 s, then whatever it is.
async fn url_becomes(client: &Client, want: &str) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        last = client.current_url().await.unwrap().to_string();
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewers_way_in_works_in_a_real_browser() {
    let Some(driver) = driver().await else { return };
    let b = &driver.client;
    let (w, base, other, _plane, _elsewhere) = servers().await;
    let app_url = format!("{base}/apps/dash/");

    // The guard sends whoever is not signed in to the app's sign-in page.
    b.goto(&app_url).await.unwrap();
    assert_eq!(b.current_url().await.unwrap().as_str(), format!("{base}/auth/sign-in/dash"));
    assert!(text(b).await.contains("Sign in to view dash"));
    screenshot(b, "sign-in").await;
    // A public app lets the browser in.
    b.goto(&format!("{base}/apps/site/")).await.unwrap();
    assert_eq!(b.find(Locator::Id("app")).await.unwrap().text().await.unwrap(), "site");

    // A mail scanner opens the link, runs the page, and leaves: the link still works.
    let url = link(&w).await;
    let token = url.rsplit('/').next().unwrap().to_owned();
    b.goto(&url).await.unwrap();
    assert!(text(b).await.contains("You are signing in as dana@example.com"));
    screenshot(b, "link-page").await;
    let head = head_status(&url).await;
    assert_eq!(head, 200);
    assert!(w.authz.inspect_link(&token).await.is_ok(), "GET and HEAD used nothing up");

    // A form on another site that posts to the link, with the pre-session cookie in the
    // browser: refused, the link still usable.
    b.goto(&format!("{other}/post?to={}", encode(&url))).await.unwrap();
    b.find(Locator::Id("go")).await.unwrap().click().await.unwrap();
    let refused = text_with(b, "did not come from this site").await;
    assert!(refused.contains("did not come from this site"), "{refused}");
    screenshot(b, "cross-site-refused").await;
    assert!(w.authz.inspect_link(&token).await.is_ok(), "a cross-site POST used nothing up");

    // A person's click signs in and lands on the app's page.
    b.goto(&url).await.unwrap();
    b.find(Locator::Css("form button")).await.unwrap().click().await.unwrap();
    assert_eq!(url_becomes(b, &app_url).await, app_url);
    assert_eq!(b.find(Locator::Id("app")).await.unwrap().text().await.unwrap(), "dash");
    assert!(text(b).await.contains("dana@example.com"));
    screenshot(b, "app-page").await;
    let cookies = b.get_all_cookies().await.unwrap();
    let session = cookies.iter().find(|c| c.name() == SESSION_COOKIE).expect("the session cookie");
    assert_eq!(session.secure(), Some(true));
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.same_site(), Some(cookie::SameSite::Lax));
    assert_eq!(session.path(), Some("/"));
    assert!(session.domain().is_none_or(|d| d == "127.0.0.1"), "a host-only cookie");
    assert!(cookies.iter().all(|c| c.name() != PRE_COOKIE), "the pre-session cookie is gone");

    // A second use says the link was used, and offers a new one.
    b.goto(&url).await.unwrap();
    let used = text(b).await;
    assert!(used.contains("already used") && used.contains("Email me a new link"), "{used}");
    screenshot(b, "link-used").await;
    let before = w.outbox.sent().len();
    b.find(Locator::Css("form button")).await.unwrap().click().await.unwrap();
    assert!(text_with(b, "a new sign-in link is on its way").await.contains("a new sign-in link is on its way"));
    assert_eq!(w.outbox.wait_for(before + 1).await.last().unwrap().0, "dana@example.com");

    // Removed: the guard refuses her, with the reason.
    w.authz.remove_viewer(&ChangedBy::Operator, &AppId("dash".into()), "dana@example.com").await.unwrap();
    b.goto(&app_url).await.unwrap();
    let refused = text(b).await;
    assert!(refused.contains("not invited"), "{refused}");
    screenshot(b, "refused").await;
    w.authz.add_viewer(&ChangedBy::Operator, &AppId("dash".into()), "dana@example.com").await.unwrap();

    // An expired link says so.
    let late = link(&w).await;
    w.clock.advance(Duration::from_secs(16 * 60));
    b.goto(&late).await.unwrap();
    assert!(text(b).await.contains("This link has expired"));
    screenshot(b, "link-expired").await;

    // Google: the callback as Google Identity Services posts it (from another origin), the
    // double-submit token in a cookie on this origin and in the form.
    b.delete_all_cookies().await.unwrap();
    // Google's library sets the cookie from script, on the page's host (a cookie is the
    // host's, whatever the port).
    // The sign-in page gives the button a nonce (Google signs it into the token), and the
    // browser the same in a cookie.
    b.goto(&format!("{base}/auth/sign-in/dash")).await.unwrap();
    let cookies = b.get_all_cookies().await.unwrap();
    let nonce = cookies.iter().find(|c| c.name() == NONCE_COOKIE).expect("the nonce cookie").value().to_owned();
    b.goto(&format!("{other}/post")).await.unwrap();
    b.execute("document.cookie = 'g_csrf_token=f00dcafe1234; path=/'", vec![]).await.unwrap();
    let id_token = common::google_token_with_nonce(w.clock.now().as_secs(), "dana@example.com", &nonce);
    let fields = format!("credential={id_token}&g_csrf_token=f00dcafe1234&state=dash");
    b.goto(&format!("{other}/post?to={}&fields={}", encode(&format!("{base}/auth/google")), encode(&fields)))
        .await
        .unwrap();
    b.find(Locator::Id("go")).await.unwrap().click().await.unwrap();
    assert_eq!(url_becomes(b, &app_url).await, app_url, "{}", text(b).await);
    assert!(text(b).await.contains("dana@example.com"));
    // Without the cookie's twin in the form: 400, no session.
    b.delete_all_cookies().await.unwrap();
    let fields = format!("credential={id_token}&g_csrf_token=other&state=dash");
    b.goto(&format!("{other}/post?to={}&fields={}", encode(&format!("{base}/auth/google")), encode(&fields)))
        .await
        .unwrap();
    b.find(Locator::Id("go")).await.unwrap().click().await.unwrap();
    assert!(text_with(b, "could not be verified").await.contains("could not be verified"));
    screenshot(b, "google-refused").await;
    assert!(b.get_all_cookies().await.unwrap().iter().all(|c| c.name() != SESSION_COOKIE));
    driver.client.clone().close().await.unwrap();
}

/// A `HEAD` of `url`, as a link checker sends it: its status.
async fn head_status(url: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let url: url::Url = url.parse().unwrap();
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let path = url.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&host).unwrap();
        write!(s, "HEAD {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(!answer.to_ascii_lowercase().contains("set-cookie"), "{answer}");
        answer[9..12].parse().unwrap()
    })
    .await
    .unwrap()
}
