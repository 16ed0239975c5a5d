//! `ghauthz serve` as a process: its first line, its keys file (permissions, rotation on
//! SIGHUP), its stop on SIGTERM, and the AuthZEN decision files replayed against it over HTTP.
#![cfg(feature = "cli")]

use std::io::{BufRead as _, Read as _, Write as _};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::common;

const KEY: &str = "first-key-0123456789abcdef0123456789abcdef";
const NEW_KEY: &str = "second-key-0123456789abcdef0123456789abcde";

/// `ghauthz serve` in a process of its own; killed when dropped if still running.
struct Serve {
    child: Child,
    first: Value,
    url: String,
}

impl Serve {
    /// `ghauthz GLOBAL... serve --listen 127.0.0.1:0 OWN...`.
    fn start(global: &[&str], own: &[&str]) -> Result<Serve, (i32, String)> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ghauthz"))
            .args(global)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(own)
            .env_remove("GHAUTHZ_WEBHOOK_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let first: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if first.get("listening").is_none() {
            // A refusal: its JSON on stdout, as every command's; its message on stderr too.
            let status = child.wait().unwrap();
            let mut said = String::new();
            child.stderr.take().unwrap().read_to_string(&mut said).unwrap();
            return Err((status.code().unwrap_or(-1), format!("{line}{said}")));
        }
        let url = first["listening"].as_str().unwrap().to_owned();
        Ok(Serve { child, first, url })
    }

    /// One request on a connection of its own, `headers` being `Name: value` lines: the whole
    /// answer, head and body.
    fn exchange(&self, method: &str, path: &str, headers: &[String], body: &[u8]) -> String {
        let host = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(host).unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        for h in headers {
            head += &format!("{h}\r\n");
        }
        if !body.is_empty() {
            head += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
        }
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(b"\r\n").unwrap();
        s.write_all(body).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    }

    /// One POST of JSON with a bearer key: the status and the body as JSON.
    fn post(&self, path: &str, key: &str, body: &Value) -> (u16, Value) {
        let answer =
            self.exchange("POST", path, &[format!("Authorization: Bearer {key}")], body.to_string().as_bytes());
        let status = answer[9..12].parse().unwrap();
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Sends SIGHUP, then asks an evaluation with `key` until it answers `status` (5 s at most).
    fn hang_up_until(&self, key: &str, status: u16) -> bool {
        self.signal("HUP");
        (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(25));
            self.post("/access/v1/evaluation", key, &carol_edits_dash()).0 == status
        })
    }

    fn signal(&self, name: &str) {
        assert!(
            Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().unwrap().success()
        );
    }

    /// Sends SIGTERM and waits: the exit code and what was said on stderr.
    fn stop(self) -> (Option<i32>, String) {
        self.signal("TERM");
        self.exited()
    }

    /// Waits for the process to exit: its code and what it said on stderr.
    fn exited(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        let mut said = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut said).unwrap();
        (status.code(), said)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn world(name: &str) -> String {
    common::fixture_path(&format!("worlds/{name}")).display().to_string()
}

fn keys_file(dir: &std::path::Path, text: &str, mode: u32) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("keys");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.display().to_string()
}

fn carol_edits_dash() -> Value {
    json!({"subject": {"type": "github_user", "id": "3"}, "action": {"name": "edit"}, "resource": {"type": "app", "id": "dash"}})
}

/// World mode without keys: one key made for this run, on the first line; SIGTERM stops it,
/// exit 0, nothing more on stdout.
#[test]
fn serve_prints_its_address_and_key_then_stops_on_sigterm() {
    let serve =
        Serve::start(&["--world", &world("acme.toml")], &["--public-url", "https://authz.example/?x=1"]).unwrap();
    let key = serve.first["api_key"].as_str().unwrap().to_owned();
    assert_eq!(serve.first.as_object().unwrap().len(), 2, "{}", serve.first);
    let doc = serve.exchange("GET", "/.well-known/authzen-configuration", &[], b"");
    assert!(doc.contains(r#""policy_decision_point":"https://authz.example""#), "{doc}");
    let refused = Serve::start(&["--world", &world("acme.toml")], &["--public-url", "ftp://x"]).err().unwrap();
    assert_eq!(refused.0, 1, "{}", refused.1);
    serve.signal("HUP"); // no keys file: ignored, the process goes on
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (status, answer) = serve.post("/access/v1/evaluation", &key, &carol_edits_dash());
    assert_eq!((status, answer["decision"].clone()), (200, json!(true)));
    assert_eq!(serve.post("/access/v1/evaluation", KEY, &carol_edits_dash()).0, 401);
    // No webhook secret given: every delivery is refused, as the service's own lack.
    let headers =
        ["X-GitHub-Event: ping", "X-GitHub-Delivery: d-1", "X-Hub-Signature-256: sha256=00"].map(String::from);
    let answer = serve.exchange("POST", "/webhooks/github", &headers, b"{}");
    assert!(answer.starts_with("HTTP/1.1 503") && answer.contains("not_configured"), "{answer}");
    let (code, said) = serve.stop();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.ends_with("ghauthz: stopped\n"), "{said}");
}

/// A request in flight when SIGTERM arrives is answered before the process exits; new
/// connections are refused from then on.
#[test]
fn serve_drains_what_is_in_flight_on_sigterm() {
    let serve = Serve::start(&["--world", &world("acme.toml")], &[]).unwrap();
    let key = serve.first["api_key"].as_str().unwrap().to_owned();
    let host = serve.url.trim_start_matches("http://").to_owned();
    let body = carol_edits_dash().to_string();
    let (head, tail) = body.split_at(body.len() / 2);
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    write!(
        s,
        "POST /access/v1/evaluation HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        body.len()
    )
    .unwrap();
    s.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    serve.signal("TERM");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(std::net::TcpStream::connect(&host).is_err(), "no new connection once stopping");
    s.write_all(tail.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"decision\":true"), "{answer}");
    let (code, _) = serve.exited();
    assert_eq!(code, Some(0));
}

/// The keys file: readable by its owner alone, read again on SIGHUP (the old key is refused
/// from then on; a file that cannot be taken leaves the keys as they were).
#[test]
fn serve_takes_keys_from_an_owner_only_file_and_rotates_them_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let path = keys_file(dir.path(), &format!("# ops\nevaluate {KEY}\n"), 0o644);
    let (code, said) = Serve::start(&["--world", &world("acme.toml")], &["--api-keys", &path]).err().unwrap();
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("owner") && !said.contains(KEY), "{said}");

    let path = keys_file(dir.path(), &format!("# ops\nevaluate {KEY}\n"), 0o600);
    let serve = Serve::start(&["--world", &world("acme.toml")], &["--api-keys", &path]).unwrap();
    assert!(serve.first.get("api_key").is_none(), "no key made when a file gives them");
    assert_eq!(serve.post("/access/v1/evaluation", KEY, &carol_edits_dash()).0, 200);
    assert_eq!(serve.post("/access/v1/evaluation", NEW_KEY, &carol_edits_dash()).0, 401);

    keys_file(dir.path(), &format!("evaluate {NEW_KEY}\n"), 0o600);
    assert!(serve.hang_up_until(NEW_KEY, 200), "the new key is taken after SIGHUP");
    assert_eq!(serve.post("/access/v1/evaluation", KEY, &carol_edits_dash()).0, 401, "the old key is gone");

    // A file that cannot be taken: nobody is let in (a key meant to be removed may be in it).
    keys_file(dir.path(), "evaluate short\n", 0o600);
    assert!(serve.hang_up_until(NEW_KEY, 401), "a bad file fails closed");
    keys_file(dir.path(), &format!("evaluate {NEW_KEY}\n"), 0o600);
    assert!(serve.hang_up_until(NEW_KEY, 200), "the fixed file lets its keys in again");
    let (code, said) = serve.stop();
    assert_eq!(code, Some(0));
    assert!(said.contains("keys not read: keys file line 1") && !said.contains("short"), "{said}");
}

/// Live mode without keys would let nobody call it: it refuses to start.
#[test]
fn serve_in_live_mode_needs_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite").display().to_string();
    let keys = dir.path().join("session.keys").display().to_string();
    let (code, said) = Serve::start(&["--db", &db, "--keys", &keys], &[]).err().unwrap();
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("--api-keys"), "{said}");
}

/// The AuthZEN decision files (fixtures/authzen/, the interop runner's format) replayed against
/// `serve` over each world they were written for.
#[test]
fn the_authzen_decision_files_pass_against_serve() {
    for (file, w) in [("acme.json", "acme.toml"), ("roles.json", "roles.toml")] {
        let serve = Serve::start(&["--world", &world(w)], &[]).unwrap();
        let key = serve.first["api_key"].as_str().unwrap().to_owned();
        let text = std::fs::read_to_string(common::fixture_path(&format!("authzen/{file}"))).unwrap();
        let decisions: Value = serde_json::from_str(&text).unwrap();
        let mut passed = 0;
        for case in decisions["evaluation"].as_array().unwrap() {
            let (status, answer) = serve.post("/access/v1/evaluation", &key, &case["request"]);
            assert_eq!(status, 200);
            assert_eq!(answer["decision"], case["expected"], "{file}: {} -> {answer}", case["request"]);
            passed += 1;
        }
        for case in decisions["evaluations"].as_array().unwrap() {
            let (status, answer) = serve.post("/access/v1/evaluations", &key, &case["request"]);
            assert_eq!(status, 200);
            let got: Vec<Value> =
                answer["evaluations"].as_array().unwrap().iter().map(|e| json!({"decision": e["decision"]})).collect();
            assert_eq!(Value::from(got), case["expected"], "{file}: {}", case["request"]);
            passed += 1;
        }
        assert!(passed >= 30, "{file}: {passed}");
        assert_eq!(serve.stop().0, Some(0));
    }
}

/// `GET /metrics`: Prometheus text with what the library and the service counted, histograms
/// with buckets.
#[test]
fn serve_exports_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("webhook-secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let serve =
        Serve::start(&["--world", &world("acme.toml")], &["--webhook-secret-file", secret.to_str().unwrap()]).unwrap();
    let key = serve.first["api_key"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(serve.post("/access/v1/evaluation", &key, &carol_edits_dash()).0, 200);
    }
    let dave = json!({"subject": {"type": "github_user", "id": "4"}, "action": {"name": "deploy"}, "resource": {"type": "app", "id": "dash"}});
    assert_eq!(serve.post("/access/v1/evaluation", &key, &dave).1["decision"], false);
    let body = br#"{"action":"edited","member":{"id":3},"repository":{"id":101}}"#;
    let headers = [
        "X-GitHub-Event: member".to_owned(),
        "X-GitHub-Delivery: d-1".to_owned(),
        format!("X-Hub-Signature-256: {}", common::webhook_signature("s3cret", body)),
    ];
    let answer = serve.exchange("POST", "/webhooks/github", &headers, body);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let text = serve.exchange("GET", "/metrics", &[], b"");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let value = |series: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value(r#"ghauthz_decisions_total{action="edit",outcome="allow"}"#), 3.0);
    assert_eq!(value(r#"ghauthz_decisions_total{action="deploy",outcome="deny"}"#), 1.0);
    assert_eq!(value(r#"ghauthz_cache_lookups_total{result="hit"}"#), 2.0);
    assert!(value(r#"ghauthz_github_requests_total{status="200"}"#) >= 3.0);
    assert!(value("ghauthz_github_rate_limit_remaining") > 0.0);
    assert_eq!(value("ghauthz_change_feed_listening"), 1.0);
    assert_eq!(value(r#"ghauthz_webhook_deliveries_total{event="member",outcome="applied"}"#), 1.0);
    assert_eq!(value(r#"ghauthz_decision_duration_seconds_count{action="edit"}"#), 3.0);
    assert!(text.contains(r#"ghauthz_decision_duration_seconds_bucket{action="edit",le="0.001"}"#), "{text}");
    assert!(text.contains("ghauthz_http_requests_total{route=\"/access/v1/evaluation\",status=\"200\"} 4"), "{text}");
    assert!(!text.contains(&key), "no key in the metrics");
    assert_eq!(serve.stop().0, Some(0));
}

/// `--app-url-template` mounts the sign-in pages; a template, or a mail option, that cannot work
/// is refused before listening.
#[test]
fn serve_mounts_the_sign_in_pages_with_an_app_url_template() {
    let acme = world("acme.toml");
    for own in [
        vec!["--app-url-template", "https://apps.example/"],
        vec!["--smtp", "smtp://127.0.0.1:2525"],
        vec!["--smtp", "smtp://127.0.0.1:2525", "--mail-from", "a@example.com"],
        vec!["--smtp", "smtp://127.0.0.1:2525", "--mail-from", "a@example.com", "--public-url", "https://x.example"],
        vec![
            "--smtp",
            "smtp://mail.example.com:25",
            "--mail-from",
            "a@example.com",
            "--public-url",
            "https://x.example",
        ],
        vec![
            "--smtp",
            "smtps://user:pw@mail.example.com",
            "--mail-from",
            "a@example.com",
            "--public-url",
            "https://x.example",
        ],
        vec!["--mail-from", "a@example.com"],
    ] {
        let refused = Serve::start(&["--world", &acme], &own).err().unwrap_or_else(|| panic!("{own:?} was taken"));
        assert_eq!(refused.0, 1, "{own:?}: {}", refused.1);
        assert!(!refused.1.contains("pw@"), "the URL is not repeated: {}", refused.1);
    }
    let serve =
        Serve::start(&["--world", &acme], &["--app-url-template", "https://share.example/apps/{app}/"]).unwrap();
    let page = serve.exchange("GET", "/auth/sign-in/dash", &[], b"");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let lower = page.to_ascii_lowercase();
    assert!(lower.contains("referrer-policy: no-referrer") && lower.contains("x-frame-options: deny"), "{page}");
    assert!(page.contains("g_id_signin"), "the world's Google client: the button shows: {page}");
    assert!(!page.contains("type=\"email\""), "no mailer: no address field: {page}");
    let head = serve.exchange("HEAD", "/auth/link/gl1_made-up", &[], b"");
    assert!(head.starts_with("HTTP/1.1 200") && !lower_has_cookie(&head), "{head}");
}

fn lower_has_cookie(answer: &str) -> bool {
    answer.to_ascii_lowercase().contains("set-cookie")
}

/// The whole way in through `serve`: a link asked for on the sign-in page goes out over SMTP (to
/// aiosmtpd), and the link that arrived signs the browser in. Needs `GHAUTHZ_TEST_SMTP_PYTHON`.
#[test]
fn serve_sends_a_link_over_smtp_that_signs_in() {
    let Some(sink) = crate::mail::Sink::start(None) else { return };
    let smtp = format!("smtp://127.0.0.1:{}", sink.port);
    let own = [
        "--app-url-template",
        "https://share.example/apps/{app}/",
        "--public-url",
        "https://share.example",
        "--smtp",
        &smtp,
        "--mail-from",
        "Apps <apps@example.com>",
    ];
    let serve = Serve::start(&["--world", &world("acme.toml")], &own).unwrap();
    let origin = "Origin: https://share.example".to_owned();
    let form = ["Content-Type: application/x-www-form-urlencoded".to_owned(), origin.clone()];
    let asked = exchange_form(&serve, "/auth/sign-in/dash", &form, "email=Dana%40Example.com");
    assert!(asked.starts_with("HTTP/1.1 200"), "{asked}");
    let messages = (0..100)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            sink.messages()
        })
        .find(|m| !m.is_empty())
        .unwrap_or_default();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["rcpt_tos"], json!(["dana@example.com"]));
    let token = crate::mail::token_in(messages[0]["text"].as_str().unwrap());
    let page = serve.exchange("GET", &format!("/auth/link/{token}"), &[], b"");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let pre = page
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let done = serve.exchange("POST", &format!("/auth/link/{token}"), &[origin, format!("Cookie: {pre}")], b"");
    assert!(done.starts_with("HTTP/1.1 303"), "{done}");
    let lower = done.to_ascii_lowercase();
    assert!(lower.contains("location: https://share.example/apps/dash/"), "{done}");
    assert!(lower.contains("set-cookie: __host-ghauthz-session="), "{done}");
    // Counted: the page opened, the link redeemed from it, the message sent.
    let text = serve.exchange("GET", "/metrics", &[], b"");
    for series in [
        r#"ghauthz_link_pages_total{event="opened"} 1"#,
        r#"ghauthz_link_pages_total{event="redeemed"} 1"#,
        r#"ghauthz_link_mails_total{outcome="sent"} 1"#,
        r#"ghauthz_link_redemptions_total{outcome="redeemed"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == series), "no `{series}` in:\n{text}");
    }
}

/// A POST of a form body on a connection of its own: the whole answer.
fn exchange_form(serve: &Serve, path: &str, headers: &[String], body: &str) -> String {
    let mut headers = headers.to_vec();
    headers.push(format!("Content-Length: {}", body.len()));
    let host = serve.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in &headers {
        head += &format!("{h}\r\n");
    }
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(b"\r\n").unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

/// The connection bounds take sane values only: zero, or past what a timer or a semaphore can
/// hold, is a usage error, not a crash.
#[test]
fn serve_refuses_connection_bounds_out_of_range() {
    for bad in [
        ["--max-connections", "0"],
        ["--max-connections", "18446744073709551615"],
        ["--header-read-timeout", "0"],
        ["--header-read-timeout", "18446744073709551615"],
    ] {
        let (code, said) = Serve::start(&["--world", &world("acme.toml")], &bad).err().unwrap();
        assert_eq!(code, 1, "{bad:?}: {said}");
    }
}

/// A client that sends a request's head slowly holds its connection `--header-read-timeout` at
/// most; past `--max-connections`, a connection waits until another ends.
#[test]
fn serve_bounds_slow_heads_and_the_number_of_connections() {
    use std::time::{Duration, Instant};
    let serve =
        Serve::start(&["--world", &world("acme.toml")], &["--header-read-timeout", "1", "--max-connections", "1"])
            .unwrap();
    let host = serve.url.trim_start_matches("http://").to_owned();
    // A head never finished: the connection is closed after about a second.
    let mut slow = std::net::TcpStream::connect(&host).unwrap();
    write!(slow, "GET /healthz HTTP/1.1\r\nHost: {host}\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(started.elapsed() < Duration::from_secs(5), "closed within the bound: {:?}", started.elapsed());
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    // One connection held open: a second is not served until it ends.
    let serve =
        Serve::start(&["--world", &world("acme.toml")], &["--header-read-timeout", "30", "--max-connections", "1"])
            .unwrap();
    let host = serve.url.trim_start_matches("http://").to_owned();
    let held = std::net::TcpStream::connect(&host).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut waiting = std::net::TcpStream::connect(&host).unwrap();
    write!(waiting, "GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    waiting.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut first = [0u8; 1];
    assert!(waiting.read(&mut first).is_err(), "not served while the one slot is held");
    drop(held);
    waiting.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    waiting.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "served once the slot is free: {answer}");
}
