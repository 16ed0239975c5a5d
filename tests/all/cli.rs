//! The command line contract (docs/cli.md): JSON on stdout, exit codes 0/1/2/3.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use crate::common;
use ghauthz::CheckRequest;

use std::process::Command;

use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", self.stdout))
    }
}

/// One `ghauthz` process: its arguments, what it reads on standard input, and its environment
/// (the webhook secret variables are cleared unless set here). The one way the tests run the
/// command line.
struct Cmd {
    args: Vec<String>,
    stdin: Vec<u8>,
    env: Vec<(String, String)>,
}

impl Cmd {
    fn new(args: &[&str]) -> Self {
        Self { args: args.iter().map(|a| (*a).to_owned()).collect(), stdin: Vec::new(), env: Vec::new() }
    }

    fn stdin(mut self, body: &[u8]) -> Self {
        self.stdin = body.to_vec();
        self
    }

    fn args(mut self, more: &[&str]) -> Self {
        self.args.extend(more.iter().map(|a| (*a).to_owned()));
        self
    }

    fn envs(mut self, env: &[(&str, &str)]) -> Self {
        self.env.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self
    }

    fn run(&self) -> Run {
        use std::io::Write as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_ghauthz"))
            .args(&self.args)
            .env_remove("GHAUTHZ_WEBHOOK_SECRET")
            .env_remove("GHAUTHZ_WEBHOOK_SECRET_PREVIOUS")
            .env_remove("GITHUB_TOKEN")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("runs");
        // A command that refuses before reading its input (no secret, say) closes the pipe early.
        if let Err(e) = child.stdin.take().unwrap().write_all(&self.stdin) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn ghauthz(args: &[&str]) -> Run {
    Cmd::new(args).run()
}

fn world(name: &str) -> String {
    common::fixture_path(&format!("worlds/{name}")).display().to_string()
}

#[test]
fn check_allow_prints_the_decision_and_exits_0() {
    let r = ghauthz(&[
        "check",
        "--world",
        &world("acme.toml"),
        "--app",
        "dash",
        "--action",
        "deploy",
        "--github-user",
        "erin",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v = r.json();
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["app"], "dash");
    assert_eq!(v["action"], "deploy");
    assert_eq!(v["principal"], "github:erin");
    assert_eq!(v["reason"]["kind"], "github_role");
    assert_eq!(v["reason"]["role"], "admin");
    assert_eq!(v["reason"]["role_name"], "admin");
    assert_eq!(v["source"], "github");
    assert_eq!(v["age_ms"], 0);
}

#[test]
fn check_deny_exits_2_with_the_reason() {
    let r = ghauthz(&[
        "check",
        "--world",
        &world("acme.toml"),
        "--app",
        "dash",
        "--action",
        "view",
        "--github-user",
        "dave",
    ]);
    assert_eq!(r.code, 2);
    let v = r.json();
    // The dashboard's roster lists `write` and up: dave (triage) is not on it.
    assert_eq!(
        (v["decision"].as_str(), v["reason"]["kind"].as_str(), v["reason"]["detail"].as_str()),
        (Some("deny"), Some("no_access"), Some("not_on_roster"))
    );
    assert_eq!(v["lookup"], "roster");
    let r = ghauthz(&[
        "check",
        "--world",
        &world("acme.toml"),
        "--app",
        "legacy",
        "--action",
        "view",
        "--github-user",
        "carol",
    ]);
    assert_eq!((r.code, r.json()["reason"]["kind"].as_str()), (2, Some("repo_replaced")));
    let r = ghauthz(&["check", "--world", &world("acme.toml"), "--app", "nope", "--action", "view", "--anonymous"]);
    assert_eq!((r.code, r.json()["reason"]["kind"].as_str()), (2, Some("unknown_app")));
}

#[test]
fn anonymous_sees_public_apps_only() {
    let r = ghauthz(&["check", "--world", &world("acme.toml"), "--app", "site", "--action", "view", "--anonymous"]);
    assert_eq!(
        (r.code, r.json()["reason"]["kind"].as_str(), r.json()["principal"].as_str()),
        (0, Some("public_app"), Some("anonymous"))
    );
    let r = ghauthz(&["check", "--world", &world("acme.toml"), "--app", "notes", "--action", "view", "--anonymous"]);
    assert_eq!((r.code, r.json()["reason"]["kind"].as_str()), (2, Some("no_access")));
}

#[test]
fn unavailable_exits_3_with_retry_after() {
    let r = ghauthz(&[
        "check",
        "--world",
        &world("faults.toml"),
        "--app",
        "busy",
        "--action",
        "view",
        "--github-user",
        "carol",
    ]);
    assert_eq!(r.code, 3, "{}", r.stdout);
    let v = r.json();
    assert_eq!(v["error"], "rate_limited");
    assert_eq!(v["retry_after"], 120);
    assert!(v.get("decision").is_none(), "never an allow");
}

#[test]
fn global_options_go_anywhere() {
    let r = ghauthz(&[
        "--world",
        &world("acme.toml"),
        "check",
        "--app",
        "notes",
        "--action",
        "edit",
        "--github-user",
        "alice",
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let r = ghauthz(&[
        "check",
        "--app",
        "notes",
        "--action",
        "edit",
        "--github-user",
        "alice",
        "--world",
        &world("acme.toml"),
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn now_moves_the_world_clock() {
    let r = ghauthz(&[
        "check",
        "--world",
        &world("acme.toml"),
        "--now",
        "2027-01-01T00:00:00Z",
        "--app",
        "dash",
        "--action",
        "edit",
        "--github-user",
        "carol",
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let r = ghauthz(&[
        "check",
        "--world",
        &world("acme.toml"),
        "--now",
        "tomorrow",
        "--app",
        "dash",
        "--action",
        "edit",
        "--github-user",
        "carol",
    ]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")));
}

#[test]
fn bad_usage_exits_1_with_json() {
    let cases: [&[&str]; 6] = [
        &["check", "--world", "W", "--app", "dash", "--action", "fly", "--anonymous"],
        &["check", "--world", "W", "--app", "dash", "--action", "view"],
        &["check", "--world", "W", "--app", "dash", "--action", "view", "--anonymous", "--github-user", "erin"],
        &["check", "--world", "W", "--app", "dash", "--action", "view", "--frobnicate"],
        &["check", "--world", "W", "--app", "dash", "--action", "view", "--github-user", "nobody-here"],
        &["check", "--now", "2027-01-01T00:00:00Z", "--app", "dash", "--action", "view", "--anonymous"],
    ];
    let w = world("acme.toml");
    for args in cases {
        let args: Vec<&str> = args.iter().map(|a| if *a == "W" { w.as_str() } else { a }).collect();
        let r = ghauthz(&args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stdout);
        assert!(r.json()["message"].as_str().is_some_and(|m| !m.is_empty()), "{args:?}");
    }
}

/// A time past year 9999 (an offset can carry the last day past it) would be written as
/// `+10000-...`, which is not RFC 3339: refused on the way in, from an option or a world file.
#[test]
fn times_after_year_9999_are_refused_on_the_way_in() {
    let w = world("acme.toml");
    for now in ["9999-12-31T23:00:00-02:00", "9999-12-31T23:59:59.999-00:01"] {
        let r = ghauthz(&["check", "--world", &w, "--now", now, "--app", "dash", "--action", "view", "--anonymous"]);
        assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")), "{now}: {}", r.stdout);
        assert!(r.json()["message"].as_str().unwrap().contains("after year 9999"), "{}", r.stdout);
        let r = ghauthz(&["audit", "--world", &w, "--since", now]);
        assert_eq!(r.code, 1, "{now}: {}", r.stdout);
    }
    let r = ghauthz(&["check", "--world", &w, "--now", "9999-12-31T23:59:59Z", "--app", "dash", "--action", "view"]);
    assert_eq!(r.code, 1, "the last second is taken; --anonymous is missing: {}", r.stdout);
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(common::fixture_path("worlds/acme.toml"))
        .unwrap()
        .replace("now = \"2026-11-22T10:00:00Z\"", "now = \"9999-12-31T23:00:00-02:00\"");
    let path = dir.path().join("late.toml");
    std::fs::write(&path, text.replace("../keys/", &format!("{}/", common::fixture_path("keys").display()))).unwrap();
    let r = ghauthz(&["check", "--world", path.to_str().unwrap(), "--app", "dash", "--action", "view", "--anonymous"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("bad_world")), "{}", r.stdout);
    assert!(r.json()["message"].as_str().unwrap().contains("`now`: expected an RFC 3339 time"), "{}", r.stdout);
    assert!(!r.stdout.contains("9999-12-31T23:00:00-02:00"), "the value is not repeated: {}", r.stdout);
}

#[test]
fn malformed_world_exits_1_with_line_and_field() {
    let bad = common::fixture_path("worlds/broken/unknown-login.toml").display().to_string();
    let r = ghauthz(&["check", "--world", &bad, "--app", "x", "--action", "view", "--anonymous"]);
    assert_eq!(r.code, 1);
    let v = r.json();
    assert_eq!(v["error"], "bad_world");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains(":13:") && msg.contains("repos[0].roles.carlo"), "{msg}");
    let r = ghauthz(&["explain", "--world", "/nonexistent/world.toml"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("bad_world")));
}

#[test]
fn explain_prints_a_table_and_json() {
    let r = ghauthz(&["explain", "--world", &world("acme.toml")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dash_bob = r.stdout.lines().find(|l| l.starts_with("dash ") && l.contains("github:bob")).unwrap();
    assert_eq!(
        dash_bob.split_whitespace().collect::<Vec<_>>(),
        ["dash", "github:bob", "allow", "maintain", "allow", "maintain", "deny", "maintain", "deny", "maintain"]
    );
    let r = ghauthz(&["explain", "--world", &world("acme.toml"), "--app", "site", "--json"]);
    assert_eq!(r.code, 0);
    let rows = r.json()["decisions"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 13 * 4, "anonymous, 11 users and the invited viewer, 4 capabilities");
    assert!(rows.iter().all(|d| d["app"] == "site" && d["decision"].is_string()));
    let r = ghauthz(&["explain", "--world", &world("acme.toml"), "--app", "nope"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("unknown_app")));
}

#[test]
fn explain_with_an_unavailable_github_exits_3() {
    let r = ghauthz(&["explain", "--world", &world("faults.toml"), "--app", "busy", "--json"]);
    assert_eq!(r.code, 3);
    assert!(r.json()["decisions"].as_array().unwrap().iter().any(|d| d["error"] == "rate_limited"));
}

#[test]
fn a_policy_file_moves_capabilities() {
    let dir = std::env::temp_dir().join(format!("ghauthz-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.toml");
    let (w, p) = (world("acme.toml"), policy.display().to_string());
    let bob_deploys = || {
        ghauthz(&[
            "check",
            "--world",
            &w,
            "--policy",
            &p,
            "--app",
            "dash",
            "--action",
            "deploy",
            "--github-user",
            "bob",
        ])
    };
    std::fs::write(&policy, "deploy = \"maintain\"\n").unwrap();
    let r = bob_deploys();
    assert_eq!(r.code, 0, "{}", r.stdout);
    std::fs::write(&policy, "deploy = \"root\"\n").unwrap();
    let r = bob_deploys();
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("bad_policy")));
    std::fs::remove_dir_all(&dir).ok();
}

fn db_in(dir: &tempfile::TempDir) -> String {
    dir.path().join("ghauthz.db").display().to_string()
}

#[test]
fn viewers_persist_in_the_db_across_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (w, db) = (world("acme.toml"), db_in(&dir));
    let list = || ghauthz(&["viewers", "list", "--world", &w, "--db", &db, "--app", "dash"]);
    assert_eq!(list().json()["viewers"], serde_json::json!(["dana@example.com"]), "seeded from the world");
    let r = ghauthz(&[
        "viewers",
        "add",
        "--world",
        &w,
        "--db",
        &db,
        "--app",
        "dash",
        "--email",
        "Eve@Example.com",
        "--github-user",
        "carol",
    ]);
    assert_eq!(
        (r.code, r.json()["added"].as_bool(), r.json()["email"].as_str()),
        (0, Some(true), Some("eve@example.com"))
    );
    let r = ghauthz(&["viewers", "remove", "--world", &w, "--db", &db, "--app", "dash", "--email", "dana@example.com"]);
    assert_eq!((r.code, r.json()["removed"].as_bool()), (0, Some(true)));
    assert_eq!(list().json()["viewers"], serde_json::json!(["eve@example.com"]), "a removed viewer stays removed");
}

#[test]
fn viewer_changes_are_authorized() {
    let dir = tempfile::tempdir().unwrap();
    let (w, db) = (world("acme.toml"), db_in(&dir));
    let r = ghauthz(&[
        "viewers",
        "add",
        "--world",
        &w,
        "--db",
        &db,
        "--app",
        "dash",
        "--email",
        "eve@example.com",
        "--github-user",
        "dave",
    ]);
    assert_eq!(
        (r.code, r.json()["error"].as_str(), r.json()["reason"]["detail"].as_str()),
        (2, Some("denied"), Some("not_on_roster"))
    );
    let r = ghauthz(&["viewers", "add", "--world", &w, "--db", &db, "--app", "dash", "--email", "eve@@example.com"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("invalid_email")));
    let r = ghauthz(&["viewers", "list", "--world", &w, "--db", &db, "--app", "nope"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("unknown_app")));
}

#[test]
fn check_and_explain_read_apps_from_the_db() {
    let dir = tempfile::tempdir().unwrap();
    let (w, db) = (world("acme.toml"), db_in(&dir));
    let r =
        ghauthz(&["check", "--world", &w, "--db", &db, "--app", "dash", "--action", "deploy", "--github-user", "erin"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let r = ghauthz(&["explain", "--world", &w, "--db", &db, "--json"]);
    assert_eq!(r.code, 0);
    let rows = r.json()["decisions"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 5 * 13 * 4, "5 apps; anonymous, 11 users and 1 invited viewer; 4 capabilities");
    let dana = |app: &str, action: &str| {
        rows.iter()
            .find(|d| d["app"] == app && d["principal"] == "viewer:dana@example.com" && d["action"] == action)
            .map(|d| (d["decision"].as_str().unwrap().to_owned(), d["reason"]["kind"].as_str().unwrap().to_owned()))
            .unwrap()
    };
    assert_eq!(dana("dash", "view"), ("allow".into(), "viewer_grant".into()), "invited to dash");
    assert_eq!(dana("dash", "edit"), ("deny".into(), "no_access".into()), "viewers only view");
    assert_eq!(dana("notes", "view"), ("deny".into(), "not_invited".into()));
    assert_eq!(dana("site", "view"), ("allow".into(), "public_app".into()));
}

#[test]
fn store_problems_are_exit_3_or_1() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_db = dir.path().join("text");
    std::fs::write(&not_a_db, "not sqlite, just some text that is long enough to look like a header").unwrap();
    let r = ghauthz(&[
        "check",
        "--world",
        &world("acme.toml"),
        "--db",
        &not_a_db.display().to_string(),
        "--app",
        "dash",
        "--action",
        "view",
        "--anonymous",
    ]);
    assert_eq!((r.code, r.json()["error"].as_str()), (3, Some("store_unavailable")), "{}", r.stdout);
    let r = ghauthz(&[
        "check",
        "--world",
        &world("acme.toml"),
        "--db",
        "postgres://localhost:notaport/x",
        "--app",
        "dash",
        "--action",
        "view",
        "--anonymous",
    ]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")), "a malformed URL: {}", r.stdout);
}

#[test]
fn a_world_with_a_bad_viewer_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("w.toml");
    let jwks = common::fixture_path("keys/google-test.jwks.json").display().to_string();
    let text = std::fs::read_to_string(common::fixture_path("worlds/acme.toml"))
        .unwrap()
        .replace("dana@example.com", "dana@@example.com")
        .replace("../keys/google-test.jwks.json", &jwks);
    std::fs::write(&bad, text).unwrap();
    let r = ghauthz(&["explain", "--world", &bad.display().to_string()]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("bad_world")));
    assert!(r.json()["message"].as_str().unwrap().contains("apps[1].viewers[0]"), "{}", r.stdout);
}

fn link_env() -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let keys = dir.path().join("keys").display().to_string();
    let globals = vec!["--world".into(), world("acme.toml"), "--db".into(), db, "--keys".into(), keys];
    (dir, globals)
}

fn run_with(globals: &[String], args: &[&str]) -> Run {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(globals.iter().map(String::as_str));
    ghauthz(&all)
}

#[test]
fn links_issue_inspect_redeem_and_sessions_check() {
    let (_dir, g) = link_env();
    let issued = run_with(&g, &["link", "issue", "--app", "dash", "--email", "DANA@example.com"]);
    assert_eq!(issued.code, 0, "{}", issued.stdout);
    let v = issued.json();
    assert_eq!((v["app"].as_str(), v["email"].as_str()), (Some("dash"), Some("dana@example.com")));
    assert_eq!(v["expires_at"], "2026-11-22T10:15:00Z", "15 minutes after the world's now");
    let token = v["token"].as_str().unwrap().to_owned();
    let r = run_with(&g, &["link", "inspect", &token]);
    assert_eq!((r.code, r.json()["email"].as_str()), (0, Some("dana@example.com")));
    let r = run_with(&g, &["link", "redeem", &token, "--app", "notes"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("wrong_app")));
    let r = run_with(&g, &["link", "redeem", &token]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let session = r.json()["session"].as_str().unwrap().to_owned();
    assert!(!r.stderr.contains(&token) && !r.stderr.contains(&session), "no token on stderr");
    let r = run_with(&g, &["link", "redeem", &token]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("already_used")));
    let r = run_with(&g, &["check", "--app", "dash", "--action", "view", "--viewer-session", &session]);
    assert_eq!(
        (r.code, r.json()["reason"]["kind"].as_str(), r.json()["reason"]["via"].as_str()),
        (0, Some("viewer_grant"), Some("email_link"))
    );
    let r = run_with(&g, &["check", "--app", "dash", "--action", "edit", "--viewer-session", &session]);
    assert_eq!(r.code, 2);
    let r = run_with(&g, &["viewers", "remove", "--app", "dash", "--email", "dana@example.com"]);
    assert_eq!(r.code, 0);
    let r = run_with(&g, &["check", "--app", "dash", "--action", "view", "--viewer-session", &session]);
    assert_eq!((r.code, r.json()["reason"]["kind"].as_str()), (2, Some("not_invited")));
    let r = run_with(&g, &["check", "--app", "dash", "--action", "view", "--viewer-session", "forged.token.here"]);
    assert_eq!(
        (r.code, r.json()["reason"]["kind"].as_str(), r.json()["reason"]["error"].as_str()),
        (2, Some("session_invalid"), Some("invalid"))
    );
}

#[test]
fn link_refusals_have_their_kinds() {
    let (_dir, g) = link_env();
    let r = run_with(&g, &["link", "issue", "--app", "dash", "--email", "mallory@example.com"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("not_invited")));
    assert!(r.json().get("token").is_none());
    for _ in 0..5 {
        assert_eq!(run_with(&g, &["link", "issue", "--app", "dash", "--email", "dana@example.com"]).code, 0);
    }
    let r = run_with(&g, &["link", "issue", "--app", "dash", "--email", "dana@example.com"]);
    assert_eq!(
        (r.code, r.json()["error"].as_str(), r.json()["retry_after"].as_u64()),
        (2, Some("rate_limited"), Some(900))
    );
    let r = run_with(&g, &["link", "inspect", "gl1_nonsense"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("invalid")));
    let later = run_with(&g, &["link", "issue", "--app", "site", "--email", "dana@example.com"]);
    assert_eq!(later.json()["error"], "not_invited", "invited to dash only");
}

#[test]
fn a_link_expires_between_commands() {
    let (_dir, g) = link_env();
    let token = run_with(&g, &["link", "issue", "--app", "dash", "--email", "dana@example.com"]).json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = run_with(&g, &["link", "redeem", &token, "--now", "2026-11-22T10:15:01Z"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("expired")));
    let r = run_with(&g, &["link", "redeem", &token, "--now", "2026-11-22T10:14:59Z"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn sixty_four_processes_redeeming_one_link_succeed_once() {
    let (_dir, g) = link_env();
    let token = run_with(&g, &["link", "issue", "--app", "dash", "--email", "dana@example.com"]).json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let children: Vec<_> = (0..64)
        .map(|_| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_ghauthz"));
            cmd.args(["link", "redeem", &token]).args(&g);
            cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
            cmd.spawn().expect("spawns")
        })
        .collect();
    let mut codes = std::collections::BTreeMap::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let kind = if out.status.code() == Some(0) {
            "ok".to_owned()
        } else {
            serde_json::from_slice::<Value>(&out.stdout)
                .map(|v| v["error"].as_str().unwrap_or("?").to_owned())
                .unwrap_or_default()
        };
        *codes.entry(kind).or_insert(0) += 1;
    }
    assert_eq!(codes.get("ok"), Some(&1), "{codes:?}");
    assert_eq!(codes.get("already_used"), Some(&63), "{codes:?}");
}

/// When `apps delete` or `accounts delete` exits, nothing it deleted is readable in any file of
/// the store. Repeated: whether the write-ahead log was left behind used to depend on how the
/// process's exit raced its connections' closing.
#[test]
fn deletions_leave_nothing_readable_in_the_store_files() {
    for round in 0..6 {
        let (_dir, g) = link_env();
        let db = std::path::PathBuf::from(&g[3]);
        let address = format!("canary{round}@example.org");
        let (reason_dash, reason_fresh) = (format!("reason-dash-{round}"), format!("reason-fresh-{round}"));
        let (branch, main_file, app) =
            (format!("branch-canary-{round}"), format!("main-canary-{round}.py"), format!("fresh-canary-{round}"));
        for args in [
            vec!["viewers", "add", "--app", "dash", "--email", &address],
            vec!["link", "issue", "--app", "dash", "--email", &address],
            vec![
                "support",
                "grant",
                "--app",
                "dash",
                "--hours",
                "2",
                "--reason",
                &reason_dash,
                "--github-user",
                "carol",
            ],
            vec![
                "apps",
                "deploy",
                "--app",
                &app,
                "--repo",
                "acme/dashboard",
                "--branch",
                &branch,
                "--main-file",
                &main_file,
                "--github-user",
                "erin",
            ],
            vec!["support", "grant", "--app", &app, "--hours", "2", "--reason", &reason_fresh, "--github-user", "erin"],
        ] {
            let r = run_with(&g, &args);
            assert_eq!(r.code, 0, "{args:?}: {}{}", r.stdout, r.stderr);
        }
        let left = |needles: &[&str]| {
            let needles: Vec<&[u8]> = needles.iter().map(|n| n.as_bytes()).collect();
            common::left_in_store_files(&db, &needles)
        };
        let seen: std::collections::BTreeSet<String> =
            left(&[&address, &reason_dash, &branch, &app]).into_iter().map(|(_, n)| n).collect();
        assert_eq!(seen.len(), 4, "the scan sees what was planted: {seen:?}");

        let r = run_with(&g, &["apps", "delete", "--app", "dash", "--github-user", "erin"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            left(&[&address, "dana@example.com", &reason_dash]),
            [],
            "round {round}: what `apps delete` deleted is still in the files"
        );

        let r = run_with(&g, &["accounts", "delete", "--github-user", "erin"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            left(&[&reason_fresh, &branch, &main_file, &app, "github:5", "dash"]),
            [],
            "round {round}: what `accounts delete` deleted is still in the files"
        );
    }
}

/// docs/cli.md: every delete and visibility change is on record, allowed or refused, an id no
/// app has included (for a GitHub user, as a check of it is).
#[test]
fn a_refused_delete_or_visibility_change_of_an_unknown_id_is_on_record() {
    let (_dir, g) = link_env();
    let r = run_with(&g, &["apps", "delete", "--app", "nosuch", "--github-user", "carol"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("unknown_app")));
    let r = run_with(&g, &["apps", "visibility", "--app", "nosuch", "--visibility", "public", "--github-user", "erin"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("unknown_app")));
    let events = run_with(&g, &["audit", "--app", "nosuch"]).json()["events"].clone();
    let seen: Vec<(&str, &str, &str, &str)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let f = |k: &str| e[k].as_str().unwrap_or("");
            (f("action"), f("actor"), f("outcome"), f("detail"))
        })
        .collect();
    assert_eq!(
        seen,
        [("visibility", "github:5", "denied", "unknown_app"), ("delete", "github:3", "denied", "unknown_app")],
        "newest first"
    );
    // The operator's refusal of an unknown id, and any refusal of an id no app could have, are
    // not written.
    let r = run_with(&g, &["apps", "delete", "--app", "other"]);
    assert_eq!(r.code, 2);
    assert_eq!(run_with(&g, &["audit", "--app", "other"]).json()["events"], serde_json::json!([]));
}

/// `apps deploy` refuses an id that could pass for another, a branch git refuses and a main
/// file outside the repository, naming the field and never the value.
#[test]
fn apps_deploy_refuses_spoofed_ids_and_files_outside_the_repository() {
    let (_dir, g) = link_env();
    let deploy = |app: &str, branch: &str, main_file: &str| {
        let args = ["apps", "deploy", "--app", app, "--repo", "acme/dashboard", "--branch", branch, "--main-file"];
        run_with(&g, &[&args[..], &[main_file, "--github-user", "erin"]].concat())
    };
    for (app, branch, main_file, field) in [
        ("da\u{202e}sh", "main", "app.py", "app id"),
        ("\u{feff}dash", "main", "app.py", "app id"),
        ("da\u{200b}sh", "main", "app.py", "app id"),
        ("x", "main", "/etc/passwd", "main_file"),
        ("x", "main", "../../x", "main_file"),
        ("x", "main", "src/../../x", "main_file"),
        ("x", "a..b", "app.py", "branch"),
        ("x", "a.lock", "app.py", "branch"),
    ] {
        let r = deploy(app, branch, main_file);
        assert_eq!(
            (r.code, r.json()["error"].as_str()),
            (1, Some("invalid_deployment")),
            "{app:?} {branch:?} {main_file:?}"
        );
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(field), "{message}");
        for value in [app, branch, main_file].into_iter().filter(|v| v.len() > 3 && *v != "main") {
            assert!(!r.stdout.contains(value) && !r.stderr.contains(value), "{value:?} repeated: {}", r.stdout);
        }
    }
    assert_eq!(run_with(&g, &["audit", "--app", "x"]).json()["events"], serde_json::json!([]), "nothing written");
    let r = deploy("fine-1", "feature/ui", "pages/app.py");
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn apps_and_accounts_delete() {
    let (_dir, g) = link_env();
    let r = run_with(&g, &["apps", "delete", "--app", "dash", "--github-user", "carol"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("denied")));
    let r = run_with(&g, &["apps", "delete", "--app", "dash", "--github-user", "erin"]);
    assert_eq!((r.code, r.json()["deleted"].as_str()), (0, Some("dash")));
    let r = run_with(&g, &["check", "--app", "dash", "--action", "view", "--github-user", "erin"]);
    assert_eq!((r.code, r.json()["reason"]["kind"].as_str()), (2, Some("unknown_app")), "deleted stays deleted");
    let r = run_with(&g, &["accounts", "delete", "--github-user", "carol"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.json()["deleted_apps"], serde_json::json!(["analytics", "site"]));
    assert_eq!(r.json()["github_id"], 3, "the identity deleted, as the store holds it");
    let r = run_with(&g, &["apps", "delete", "--app", "site"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("unknown_app")));
    // By id: an account the world (or GitHub) no longer knows by login.
    let r = run_with(&g, &["accounts", "delete", "--github-id", "1"]);
    assert_eq!(
        (r.code, &r.json()["deleted_apps"], &r.json()["github_user"]),
        (0, &serde_json::json!(["notes"]), &serde_json::Value::Null)
    );
    let r = run_with(&g, &["accounts", "delete"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")), "one of the two");
    // An id no store can hold is bad input, not a store failure.
    for id in ["9223372036854775808", "18446744073709551615", "18446744073709551616", "-1"] {
        let r = run_with(&g, &["accounts", "delete", "--github-id", id]);
        assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")), "{id}: {}", r.stdout);
        assert!(r.json()["message"].as_str().unwrap().contains("--github-id"), "{id}: {}", r.stdout);
    }
    let r = run_with(&g, &["accounts", "delete", "--github-id", "9223372036854775807"]);
    assert_eq!((r.code, &r.json()["deleted_apps"]), (0, &serde_json::json!([])), "the largest id a store holds");
    let r = run_with(&g, &["accounts", "delete", "--github-id", "1", "--github-user", "alice"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")), "not both");
}

#[test]
fn apps_deploy_show_visibility_list_and_audit() {
    let (_dir, g) = link_env();
    let deploy =
        ["apps", "deploy", "--app", "new", "--repo", "acme/dashboard", "--branch", "main", "--main-file", "a.py"];
    let r = run_with(&g, &[&deploy[..], &["--github-user", "bob"]].concat());
    assert_eq!((r.code, r.json()["reason"]["kind"].as_str()), (2, Some("github_role")), "maintain cannot deploy");
    let r = run_with(&g, &[&deploy[..], &["--github-user", "erin", "--visibility", "public"]].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let want = serde_json::json!({"app": "new", "repo": "acme/dashboard", "repo_id": 101, "branch": "main",
        "main_file": "a.py", "visibility": "public", "deployed_by": "github:5"});
    assert_eq!(r.json(), want);
    assert_eq!(run_with(&g, &["apps", "show", "--app", "new"]).json(), want, "the next command finds it in the store");
    let r = run_with(&g, &["check", "--app", "new", "--action", "view", "--anonymous"]);
    assert_eq!((r.code, r.json()["reason"]["kind"].as_str()), (0, Some("public_app")));
    let r = run_with(
        &g,
        &[
            "apps",
            "deploy",
            "--app",
            "new",
            "--repo",
            "acme/website",
            "--branch",
            "main",
            "--main-file",
            "a.py",
            "--github-user",
            "olga",
        ],
    );
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("app_exists")));

    let r = run_with(&g, &["apps", "visibility", "--app", "new", "--visibility", "private", "--github-user", "dave"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("denied")), "triage has no sharing");
    let r = run_with(&g, &["apps", "visibility", "--app", "new", "--visibility", "private", "--github-user", "carol"]);
    assert_eq!((r.code, r.json()["changed"].as_bool()), (0, Some(true)));
    let r = run_with(&g, &["apps", "list"]);
    let listed = r.json();
    let ids: Vec<&str> = listed["apps"].as_array().unwrap().iter().map(|a| a["app"].as_str().unwrap()).collect();
    assert_eq!(ids, ["analytics", "dash", "legacy", "new", "notes", "site"]);
    let r = run_with(&g, &["apps", "list", "--github-user", "carol", "--action", "edit"]);
    let listed = r.json();
    let ids: Vec<&str> = listed["apps"].as_array().unwrap().iter().map(|a| a["app"].as_str().unwrap()).collect();
    assert_eq!(ids, ["analytics", "dash", "new", "site"], "what carol may edit");
    let r = run_with(&g, &["apps", "list", "--github-user", "carol"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")), "a user needs an action");

    let r = run_with(&g, &["audit", "--app", "new"]);
    let seen: Vec<(String, String, String)> = r.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].to_string(), e["outcome"].to_string(), e["actor"].to_string()))
        .collect();
    let q = |s: &str| format!("\"{s}\"");
    assert_eq!(
        seen,
        [
            (q("visibility"), q("allowed"), q("github:3")),
            (q("visibility"), q("denied"), q("github:4")),
            (q("deploy"), q("denied"), q("github:7")),
            (q("deploy"), q("allowed"), q("github:5")),
            (q("deploy"), q("denied"), q("github:2")),
        ],
        "newest first"
    );
    let r = run_with(&g, &["audit", "--limit", "1"]);
    assert_eq!(r.json()["events"].as_array().unwrap().len(), 1);
    let r = run_with(&g, &["audit", "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(r.json()["events"], serde_json::json!([]));
    let r = run_with(&g, &["audit", "--since", "yesterday"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")));
}

#[test]
fn support_windows_from_the_command_line() {
    let (_dir, g) = link_env();
    let check = |agent: &str, cap: &str| {
        let r = run_with(&g, &["check", "--app", "dash", "--action", cap, "--support-agent", agent]);
        (r.code, r.json()["reason"]["kind"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(check("a7", "view"), (2, "no_access".to_owned()), "no window, no way in");
    let grant = ["support", "grant", "--app", "dash", "--hours", "2", "--reason", "ticket 4711", "--agent", "a7"];
    let r = run_with(&g, &[&grant[..], &["--github-user", "dave"]].concat());
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("denied")), "triage cannot edit");
    let r = run_with(
        &g,
        &[&grant[..], &["--capability", "view", "--capability", "edit", "--github-user", "carol"]].concat(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let w = r.json();
    assert_eq!((w["agent"].as_str(), w["granted_by"].as_str()), (Some("a7"), Some("github:3")));
    assert_eq!(w["capabilities"], serde_json::json!(["edit", "view"]));
    assert_eq!(
        (w["opened_at"].as_str(), w["ends_at"].as_str()),
        (Some("2026-11-22T10:00:00Z"), Some("2026-11-22T12:00:00Z"))
    );
    assert_eq!(check("a7", "edit"), (0, "support_window".to_owned()));
    assert_eq!(check("b8", "view"), (2, "no_access".to_owned()), "another agent");
    assert_eq!(check("a7", "deploy"), (2, "no_access".to_owned()), "never deploy");
    let r = run_with(
        &g,
        &["support", "grant", "--app", "dash", "--hours", "200", "--reason", "x", "--github-user", "carol"],
    );
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("invalid_support")), "at most 7 days");
    // A negative number is a bad value for its option, which is named (the value is not).
    let grant = ["support", "grant", "--app", "dash", "--reason", "x", "--github-user", "carol", "--hours", "-1"];
    for (option, args) in [("--hours", &grant[..]), ("--limit", &["audit", "--app", "dash", "--limit", "-5"][..])] {
        let r = run_with(&g, args);
        assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")), "{option}: {}", r.stdout);
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(&format!("`{option}")), "{message}");
        assert!(!message.contains("-1") && !message.contains("-5"), "{message}");
    }
    let r = run_with(&g, &["support", "list", "--app", "dash", "--github-user", "carol"]);
    assert_eq!(r.json()["windows"].as_array().unwrap().len(), 1);
    let r = run_with(&g, &["support", "revoke", "--app", "dash", "--agent", "a7"]);
    assert_eq!((r.code, r.json()["revoked"].as_u64()), (0, Some(1)));
    assert_eq!(check("a7", "view"), (2, "no_access".to_owned()), "revoked");
    let r = run_with(&g, &["audit", "--app", "dash", "--limit", "1"]);
    let e = &r.json()["events"][0];
    assert_eq!(
        (e["action"].as_str(), e["outcome"].as_str(), e["actor"].as_str()),
        (Some("support_check"), Some("denied"), Some("support:a7"))
    );
}

#[test]
fn mock_github_serves_a_world_until_terminated() {
    use std::io::{BufRead as _, Read as _, Write as _};
    let mut child = Command::new(env!("CARGO_BIN_EXE_ghauthz"))
        .args(["mock-github", "--world", &world("acme.toml")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    let api = ready["github_api"].as_str().unwrap().to_owned();
    assert!(ready["google_jwks"].as_str().unwrap().starts_with(&api), "{ready}");
    let get = |path: &str| {
        let host = api.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(host).unwrap();
        let token = ready["token"].as_str().unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: token {token}\r\nUser-Agent: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    };
    let repo = get("/repos/acme/dashboard");
    assert!(repo.starts_with("HTTP/1.1 200") && repo.contains("\"id\":101"), "{repo}");
    assert!(get("/oauth2/v3/certs").contains("\"keys\""));
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!((status.code(), rest.as_str()), (Some(0), ""), "one JSON object on stdout, the first line");
    let mut said = String::new();
    child.stderr.take().unwrap().read_to_string(&mut said).unwrap();
    assert_eq!(said, "ghauthz: mock GitHub stopped\n");
}

#[test]
fn test_runs_decision_tables() {
    let shipped = common::fixture_path("decisions/acme.toml");
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("report.xml");
    let r = ghauthz(&["test", shipped.to_str().unwrap(), "--junit", junit.to_str().unwrap()]);
    assert_eq!((r.code, r.json()["failed"].as_u64()), (0, Some(0)), "{}", r.stdout);
    assert!(r.json()["passed"].as_u64().unwrap() >= 30);
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let cases = doc.descendants().filter(|n| n.has_tag_name("testcase")).count() as u64;
    assert_eq!(Some(cases), r.json()["passed"].as_u64());

    let failing = dir.path().join("failing.toml");
    let world = common::fixture_path("worlds/acme.toml");
    std::fs::write(
        &failing,
        format!("version = 1\nworld = {world:?}\n[[case]]\nprincipal = \"github:carol\"\napp = \"dash\"\nallow = [\"deploy\"]\n"),
    )
    .unwrap();
    let r = ghauthz(&["test", failing.to_str().unwrap()]);
    assert_eq!((r.code, r.json()["failed"].as_u64()), (2, Some(1)));
    let f = &r.json()["failures"][0];
    assert_eq!(
        (f["capability"].as_str(), f["want"].as_str(), f["got"].as_str()),
        (Some("deploy"), Some("allow"), Some("deny:github_role"))
    );

    std::fs::write(&failing, format!("version = 1\nworld = {world:?}\nnow = \"soon\"\n")).unwrap();
    let r = ghauthz(&["test", failing.to_str().unwrap()]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("bad_table")));
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains(":3:") && message.contains("`now`"), "{message}");
    let r = ghauthz(&["test", shipped.to_str().unwrap(), "--world", &world.display().to_string()]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")), "the table names its world");
}

/// `ghauthz mock-github` in a process of its own, stopped when dropped.
struct MockProcess {
    child: std::process::Child,
    api: String,
    jwks: String,
    token: String,
}

impl MockProcess {
    fn start() -> Self {
        Self::start_with(&world("acme.toml"))
    }

    fn start_with(world: &str) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_ghauthz"))
            .args(["mock-github", "--world", world])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
        let field = |k: &str| ready[k].as_str().unwrap().to_owned();
        MockProcess { api: field("github_api"), jwks: field("google_jwks"), token: field("token"), child }
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Live mode as a GitHub App without `--installation`: each repository through the installation
/// on its owner's account; a repository none covers is denied as `no_installation`; a suspended
/// installation's check could not be decided (exit 3) and says why.
#[test]
fn live_mode_as_an_app_across_its_installations() {
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = common::fixture_path("keys").display().to_string();
    let text = std::fs::read_to_string(world("acme.toml")).unwrap().replace("\"../keys/", &format!("\"{keys_dir}/"))
        + "\n[[installations]]\nid = 401\naccount = \"acme\"\nrepositories = [\"dashboard\"]\n\n[[installations]]\nid = 402\naccount = \"alice\"\nsuspended = true\n";
    let world_file = dir.path().join("installed.toml");
    std::fs::write(&world_file, text).unwrap();
    let mock = MockProcess::start_with(&world_file.display().to_string());
    let db = dir.path().join("live.db").display().to_string();
    let app_key = common::fixture_path("keys/github-app-test.pem").display().to_string();
    let live = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--github-api", &mock.api, "--db", &db, "--app-id", "42", "--app-key", &app_key]);
        Cmd::new(&all).run()
    };
    let deploy = |app: &str, repo: &str| {
        live(&[
            "apps",
            "deploy",
            "--app",
            app,
            "--repo",
            repo,
            "--branch",
            "main",
            "--main-file",
            "a.py",
            "--github-user",
            "erin",
        ])
    };
    let r = deploy("dash", "acme/dashboard");
    assert_eq!((r.code, r.json()["repo_id"].as_u64()), (0, Some(101)), "{}{}", r.stdout, r.stderr);
    let r = live(&["check", "--app", "dash", "--action", "edit", "--github-user", "carol"]);
    assert_eq!((r.code, r.json()["reason"]["kind"].as_str()), (0, Some("github_role")), "{}{}", r.stdout, r.stderr);
    let r = live(&["check", "--app", "dash", "--action", "deploy", "--github-user", "carol"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    // acme/website is not selected on acme's installation: it cannot even be deployed.
    let r = deploy("site", "acme/website");
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("repo_not_found")), "{}{}", r.stdout, r.stderr);
    // alice's installation is suspended: nothing can be decided there.
    let r = deploy("notes", "alice/notes");
    assert_eq!((r.code, r.json()["error"].as_str()), (3, Some("installation_suspended")), "{}{}", r.stdout, r.stderr);
    // `--installation` alone is not an App.
    let r = Cmd::new(&["check", "--app", "dash", "--action", "view", "--anonymous", "--github-api", &mock.api])
        .args(&["--db", &db, "--installation", "401"])
        .run();
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")), "{}", r.stdout);
    assert!(r.json()["message"].as_str().unwrap().contains("--app-id"), "{}", r.stdout);
}

/// Live mode end to end, against `ghauthz mock-github` in another process: with an installation
/// token, and as a GitHub App.
#[test]
fn live_mode_against_a_mock_github_process() {
    let mock = MockProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db").display().to_string();
    let keys = dir.path().join("live.keys").display().to_string();
    let app_key = common::fixture_path("keys/github-app-test.pem").display().to_string();
    let token_auth: Vec<String> = vec![];
    let app_auth: Vec<String> =
        ["--app-id", "42", "--app-key", &app_key, "--installation", "7"].iter().map(|s| (*s).to_owned()).collect();
    for (i, auth) in [token_auth, app_auth].iter().enumerate() {
        let env: Vec<(&str, &str)> = if auth.is_empty() { vec![("GITHUB_TOKEN", mock.token.as_str())] } else { vec![] };
        let live = |args: &[&str]| {
            let mut all: Vec<&str> = args.to_vec();
            all.extend(["--github-api", &mock.api, "--db", &db, "--keys", &keys]);
            all.extend(auth.iter().map(String::as_str));
            Cmd::new(&all).envs(&env).run()
        };
        let app = format!("live{i}");
        let r = live(&[
            "apps",
            "deploy",
            "--app",
            &app,
            "--repo",
            "acme/dashboard",
            "--branch",
            "main",
            "--main-file",
            "a.py",
            "--github-user",
            "erin",
        ]);
        assert_eq!((r.code, r.json()["repo_id"].as_u64()), (0, Some(101)), "{}{}", r.stdout, r.stderr);
        assert_eq!(r.json()["deployed_by"].as_str(), Some("github:5"), "resolved through GitHub");
        let r = live(&["check", "--app", &app, "--action", "edit", "--github-user", "carol"]);
        assert_eq!((r.code, r.json()["reason"]["kind"].as_str()), (0, Some("github_role")), "{}", r.stderr);
        let r = live(&["check", "--app", &app, "--action", "deploy", "--github-user", "carol"]);
        assert_eq!(r.code, 2);
        let r = live(&["check", "--app", &app, "--action", "view", "--github-user", "nobody-here"]);
        assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("unknown_user")));
        let r = live(&["apps", "list"]);
        assert!(r.json()["apps"].as_array().unwrap().iter().any(|a| a["app"] == app.as_str()));
        live(&["viewers", "add", "--app", &app, "--email", "dana@example.com"]);
        let r = live(&["link", "issue", "--app", &app, "--email", "dana@example.com"]);
        assert_eq!((r.code, r.json().get("token")), (0, None), "no token printed in live mode unless asked");
        let r = live(&["link", "issue", "--app", &app, "--email", "dana@example.com", "--print-token"]);
        let link = r.json()["token"].as_str().unwrap().to_owned();
        let r = live(&["link", "redeem", &link]);
        assert_eq!((r.code, r.json()["email"].as_str()), (0, Some("dana@example.com")), "{}", r.stderr);
        let session = r.json()["session"].as_str().unwrap().to_owned();
        let r = live(&["check", "--app", &app, "--action", "view", "--viewer-session", &session]);
        assert_eq!((r.code, r.json()["reason"]["kind"].as_str()), (0, Some("viewer_grant")));
        let r = live(&["explain", "--app", &app, "--json"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let id_token = common::google_token(now, "dana@example.com");
        let r = live(&[
            "google",
            "sign-in",
            "--app",
            &app,
            "--id-token",
            &id_token,
            "--google-client-id",
            "1234-test.apps.googleusercontent.com",
            "--google-jwks",
            &mock.jwks,
        ]);
        assert_eq!((r.code, r.json()["email"].as_str()), (0, Some("dana@example.com")), "{}{}", r.stdout, r.stderr);
        let r = live(&["google", "sign-in", "--app", &app, "--id-token", &id_token]);
        assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")), "Google needs a client id");
    }
    // What is missing is named.
    let r =
        Cmd::new(&["check", "--app", "x", "--action", "view", "--anonymous", "--github-api", &mock.api, "--db", &db])
            .run();
    assert!(r.json()["message"].as_str().unwrap().contains("GITHUB_TOKEN"), "{}", r.stdout);
    assert!(r.stderr.starts_with("ghauthz: live mode needs GitHub credentials"), "said on stderr too: {}", r.stderr);
    // A token GitHub refuses is a configuration error: could not decide, and said so.
    let r =
        Cmd::new(&["check", "--app", "live0", "--action", "edit", "--github-user", "carol", "--github-api", &mock.api])
            .args(&["--db", &db])
            .envs(&[("GITHUB_TOKEN", "ghs_not_the_installation")])
            .run();
    assert_eq!((r.code, r.json()["error"].as_str()), (3, Some("github_credentials")), "{}", r.stdout);
    assert!(r.stderr.starts_with("ghauthz: "), "{}", r.stderr);
    assert!(!r.stdout.contains("ghs_not") && !r.stderr.contains("ghs_not"), "the token is never repeated");
    // A token no header can carry is refused before anything is sent (it used to panic inside
    // the GitHub client: exit 101, no JSON).
    let check = ["check", "--app", "live0", "--action", "edit", "--github-user", "carol", "--github-api", &mock.api];
    for token in ["ghs_sec\rret", "ghs_sec\nret", "ghs_sec\tret", "ghs_sec ret", "ghs_sec\u{7f}ret", "ghs_s\u{e9}cret"]
    {
        let r = Cmd::new(&check).args(&["--db", &db]).envs(&[("GITHUB_TOKEN", token)]).run();
        assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")), "{token:?}: {}{}", r.stdout, r.stderr);
        assert!(r.json()["message"].as_str().unwrap().contains("GITHUB_TOKEN"), "{}", r.stdout);
        assert!(!r.stdout.contains("ghs_s") && !r.stderr.contains("ghs_s"), "the token is never repeated");
    }
    let not_utf8 = {
        use std::os::unix::ffi::OsStrExt as _;
        std::ffi::OsStr::from_bytes(b"ghs_sec\xffret").to_owned()
    };
    let out = Command::new(env!("CARGO_BIN_EXE_ghauthz"))
        .args(check)
        .args(["--db", &db])
        .env("GITHUB_TOKEN", &not_utf8)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((out.status.code(), v["error"].as_str()), (Some(1), Some("usage")), "{v}");
    let r = Cmd::new(&["check", "--app", "x", "--action", "view", "--anonymous", "--github-api", &mock.api])
        .envs(&[("GITHUB_TOKEN", &mock.token)])
        .run();
    assert!(r.json()["message"].as_str().unwrap().contains("--db"), "{}", r.stdout);
    let r = Cmd::new(&["link", "redeem", "x", "--github-api", &mock.api, "--db", &db])
        .envs(&[("GITHUB_TOKEN", &mock.token)])
        .run();
    assert!(r.json()["message"].as_str().unwrap().contains("--keys"), "{}", r.stdout);
    let r = ghauthz(&[
        "check",
        "--app",
        "dash",
        "--action",
        "view",
        "--anonymous",
        "--world",
        &world("acme.toml"),
        "--github-api",
        "http://x",
    ]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")), "a live-mode option with --world");
}

fn google_token(email: &str) -> String {
    let world = ghauthz::world::World::load(common::fixture_path("worlds/acme.toml")).unwrap();
    common::google_token(world.now().unwrap().as_secs(), email)
}

#[test]
fn google_sign_in_and_google_checks() {
    let (_dir, g) = link_env();
    let r = run_with(&g, &["google", "sign-in", "--app", "dash", "--id-token", &google_token("dana@example.com")]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let session = r.json()["session"].as_str().unwrap().to_owned();
    let r = run_with(&g, &["check", "--app", "dash", "--action", "view", "--viewer-session", &session]);
    assert_eq!((r.code, r.json()["reason"]["via"].as_str()), (0, Some("google")));
    let r = run_with(
        &g,
        &["check", "--app", "dash", "--action", "view", "--google-id-token", &google_token("dana@example.com")],
    );
    assert_eq!((r.code, r.json()["reason"]["kind"].as_str()), (0, Some("viewer_grant")));
    let r = run_with(&g, &["google", "sign-in", "--app", "dash", "--id-token", &google_token("zed@example.com")]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("not_invited")));
    let r = run_with(&g, &["google", "sign-in", "--app", "dash", "--id-token", "not.a.token"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("invalid")));
}

/// `ghauthz` with `body` on standard input and `env` set.
fn ghauthz_stdin(args: &[&str], body: &[u8], env: &[(&str, &str)]) -> Run {
    Cmd::new(args).stdin(body).envs(env).run()
}

const HOOK_SECRET: &str = "It's a Secret to Everybody";

fn hook_signature(body: &[u8]) -> String {
    common::webhook_signature(HOOK_SECRET, body)
}

#[test]
fn webhook_applies_a_signed_delivery_once_and_refuses_a_bad_signature() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ghauthz.db").display().to_string();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{HOOK_SECRET}\n")).unwrap();
    let secret_file = secret_file.display().to_string();
    let w = world("acme.toml");
    let body = std::fs::read(common::fixture_path("webhooks/member_removed.json")).unwrap();
    let sig = hook_signature(&body);
    let args = |sig: &str| {
        vec![
            "webhook".to_owned(),
            "--world".into(),
            w.clone(),
            "--db".into(),
            db.clone(),
            "--event".into(),
            "member".into(),
            "--delivery".into(),
            "d-100".into(),
            "--signature".into(),
            sig.to_owned(),
        ]
    };
    let run = |args: Vec<String>, env: &[(&str, &str)]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ghauthz_stdin(&args, &body, env)
    };
    let mut with_file = args(&sig);
    with_file.extend(["--webhook-secret-file".to_owned(), secret_file.clone()]);
    let r = run(with_file, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json()["applied"], serde_json::json!([{"kind": "user_on_repo", "user": 3, "repo": 101}]));
    assert_eq!((r.json()["event"].as_str(), r.json()["delivery"].as_str()), (Some("member"), Some("d-100")));
    // The same delivery again, the secret from the environment this time: already seen.
    let r = run(args(&sig), &[("GHAUTHZ_WEBHOOK_SECRET", HOOK_SECRET)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!((r.json()["duplicate"].as_bool(), r.json()["applied"].clone()), (Some(true), serde_json::json!([])));
    for bad in [
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".to_owned(),
        sig[..sig.len() - 1].to_owned(),
        "sha1=d03207e4b030cf234e3447bac4d93add4c6643d8".to_owned(),
    ] {
        let r = run(args(&bad), &[("GHAUTHZ_WEBHOOK_SECRET", HOOK_SECRET)]);
        assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("bad_signature")), "{bad}: {}", r.stdout);
    }
    let r = run(args(&sig), &[]);
    assert_eq!(r.code, 1, "no secret is bad usage: {}", r.stdout);
    assert!(!r.stdout.contains(HOOK_SECRET) && !r.stderr.contains(HOOK_SECRET), "the secret is never printed");
}

#[test]
fn webhook_ignores_an_unknown_event() {
    let body = br#"{"action":"created"}"#;
    let r = ghauthz_stdin(
        &[
            "webhook",
            "--world",
            &world("acme.toml"),
            "--event",
            "star",
            "--delivery",
            "d-1",
            "--signature",
            &hook_signature(body),
        ],
        body,
        &[("GHAUTHZ_WEBHOOK_SECRET", HOOK_SECRET)],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json()["ignored"], "unknown_event");
}

/// A `--db` URL for a fresh schema of the test Postgres.
fn pg_db_url() -> Option<String> {
    let url = common::pg_url()?;
    let schema = common::fresh_schema();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&pool).await.unwrap();
        pool.close().await;
    });
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}options=-c%20search_path%3D{schema}"))
}

#[test]
fn a_postgres_db_is_shared_by_processes() {
    let Some(db) = pg_db_url() else { return };
    let w = world("acme.toml");
    let r = ghauthz(&["viewers", "add", "--world", &w, "--db", &db, "--app", "dash", "--email", "eve@example.com"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let r = ghauthz(&["viewers", "list", "--world", &w, "--db", &db, "--app", "dash"]);
    assert_eq!(r.json()["viewers"], serde_json::json!(["dana@example.com", "eve@example.com"]));
    let r = ghauthz(&["link", "issue", "--world", &w, "--db", &db, "--app", "dash", "--email", "eve@example.com"]);
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let r = ghauthz(&["link", "redeem", &token, "--world", &w, "--db", &db]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let r = ghauthz(&["link", "redeem", &token, "--world", &w, "--db", &db]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("already_used")));
    let r = ghauthz(&["check", "--world", &w, "--db", "postgres://postgres@127.0.0.1:1/none", "--app", "dash"]);
    assert_eq!(r.code, 1, "a principal is still required: {}", r.stdout);
    let r = ghauthz(&[
        "check",
        "--world",
        &w,
        "--db",
        "postgres://postgres@127.0.0.1:1/none",
        "--app",
        "dash",
        "--action",
        "view",
        "--anonymous",
    ]);
    assert_eq!((r.code, r.json()["error"].as_str()), (3, Some("store_unavailable")), "{}", r.stdout);
}

/// A service running on an SQLite file hears a `viewers remove` made by another process on the
/// same file (through the file's change log) and denies the removed viewer within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_removed_by_another_process_is_denied_by_a_running_service_within_a_second() {
    use std::sync::Arc;
    use std::time::Duration;

    use ghauthz::store::prelude::*;
    use ghauthz::{AppId, Authorizer, Capability, Clock as _, ManualClock, Source};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ghauthz.db");
    let world_file = world("acme.toml");
    let w = common::fixture("acme.toml");
    let clock = ManualClock::new(w.now().unwrap());
    let mock = ghauthz::world::MockGithub::start_with_clock(w.clone(), Arc::new(clock.clone())).await.unwrap();
    let store = ghauthz::store::SqliteStore::open(&db).await.unwrap();
    store.seed_once(&w.app_records(), clock.now()).await.unwrap();
    let service =
        Authorizer::builder(mock.github_config()).clock(Arc::new(clock)).store(Arc::new(store)).build().unwrap();
    common::wait_until("the service follows the file's change log", Duration::from_secs(5), || {
        service.stats().feed_listening
    })
    .await;
    let dash = AppId("dash".into());
    let link = service.issue_link(&dash, "dana@example.com").await.unwrap();
    let session = service.redeem_link(link.token.expose_secret(), None).await.unwrap().token.expose_secret().to_owned();
    for source in [Source::Store, Source::Cache] {
        let d = service.check(&CheckRequest::session(&session, &dash, Capability::View)).await.unwrap();
        assert_eq!((d.is_allowed(), d.source()), (true, source));
    }

    let keys = dir.path().join("keys.json").display().to_string();
    let db_arg = db.display().to_string();
    let r = tokio::task::spawn_blocking(move || {
        ghauthz(&[
            "viewers",
            "remove",
            "--world",
            &world_file,
            "--db",
            &db_arg,
            "--keys",
            &keys,
            "--app",
            "dash",
            "--email",
            "dana@example.com",
        ])
    })
    .await
    .unwrap();
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json()["removed"], true);
    let waited = common::wait_until_async("the service denies the removed viewer", Duration::from_secs(1), || async {
        !service.check(&CheckRequest::session(&session, &dash, Capability::View)).await.unwrap().is_allowed()
    })
    .await;
    eprintln!("denied {waited:?} after the other process's removal returned");
}

#[test]
fn check_fresh_reads_the_store_and_asks_github() {
    let r = ghauthz(&[
        "check",
        "--world",
        &world("acme.toml"),
        "--app",
        "dash",
        "--action",
        "view",
        "--github-user",
        "erin",
        "--fresh",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!((r.json()["decision"].as_str(), r.json()["source"].as_str()), (Some("allow"), Some("github")));
    let r = ghauthz(&[
        "check",
        "--world",
        &world("acme.toml"),
        "--app",
        "ghost",
        "--action",
        "view",
        "--anonymous",
        "--fresh",
    ]);
    assert_eq!((r.code, r.json()["reason"]["kind"].as_str()), (2, Some("unknown_app")));
}

/// The keys file holds the session keys: created readable by its owner only, through no
/// predictable temporary file; an existing one that is a symlink, readable by others or someone
/// else's is refused, and nothing of it is printed.
#[cfg(unix)]
#[test]
fn the_keys_file_is_owner_only_and_a_careless_one_is_refused() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let keys_arg = keys.display().to_string();
    let check = |keys: &str| {
        ghauthz(&[
            "check",
            "--world",
            &world("acme.toml"),
            "--keys",
            keys,
            "--app",
            "dash",
            "--action",
            "view",
            "--viewer-session",
            "x",
        ])
    };
    let r = check(&keys_arg);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o600);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["keys.json"], "no temporary file left behind");
    let secret = std::fs::read_to_string(&keys).unwrap();
    let refused = |r: Run, why: &str| {
        assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("bad_keys")), "{}{}", r.stdout, r.stderr);
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(why), "{message}");
        assert!(!r.stdout.contains(&secret) && !r.stderr.contains(&secret[..40]), "the file is not echoed");
    };
    // Readable by others.
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(check(&keys_arg), "chmod 600");
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(check(&keys_arg).code, 2, "accepted again");
    // A symlink to it.
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&keys, &link).unwrap();
    refused(check(&link.display().to_string()), "symlink");
    // Someone else's (the tests may run as root, which can give it away).
    if std::fs::metadata(&keys).unwrap().uid() == 0
        && std::process::Command::new("chown").args(["65534", &keys_arg]).status().unwrap().success()
    {
        refused(check(&keys_arg), "another user");
    }
}

/// A malformed keys file is refused with its line, column and field, in the format's own names,
/// and nothing the file holds is repeated: not a value, not a key it misspelled.
#[cfg(unix)]
#[test]
fn a_malformed_keys_file_is_refused_by_line_column_and_field_without_echoing_it() {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    let canary = "CANARYq7x";
    let good = format!("\"{}\"", "A".repeat(43));
    let cases = [
        (
            format!("{{\n  \"session_keys\": [\n    {{\"kid\": \"k1\", \"secret\": \"AAAA\" {canary}}}\n  ]\n}}"),
            "line 3, column",
            "not JSON",
        ),
        (
            format!("{{\"session_keys\": [{{\"kid\": \"k1\", \"secret\": [\"{canary}\"]}}]}}"),
            "`session_keys[0].secret`",
            "not of its type",
        ),
        (format!("{{\"session_keys\": [{{\"kid\": \"k1\", \"{canary}\": 1}}]}}"), "`session_keys[0]`", "missing"),
        (
            format!("{{\"session_keys\": [{{\"kid\": \"k1\", \"secret\": \"{canary}!!\"}}]}}"),
            "`session_keys[0].secret`",
            "base64url",
        ),
        (
            format!("{{\"session_keys\": [{{\"kid\": \"{canary}\", \"secret\": \"{}\"}}]}}", &canary[..8]),
            "`session_keys[0].secret`",
            "32 bytes",
        ),
        (
            format!(
                "{{\"session_keys\": [{{\"kid\": \"k\", \"secret\": {good}}}, {{\"kid\": \"k\", \"secret\": {good}}}]}}"
            ),
            "`session_keys`",
            "listed twice",
        ),
        (format!("{{\"session_keys\": [{{\"kid\": \"{canary}"), "line 1, column", "ends early"),
    ];
    for (i, (text, place, problem)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("keys{i}.json"));
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        let keys = path.display().to_string();
        let r = ghauthz(&[
            "check",
            "--world",
            &world("acme.toml"),
            "--keys",
            &keys,
            "--app",
            "dash",
            "--action",
            "view",
            "--viewer-session",
            "x",
        ]);
        assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("bad_keys")), "{text}: {}{}", r.stdout, r.stderr);
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(&keys) && message.contains(place) && message.contains(problem), "{text}: {message}");
        assert!(
            !r.stdout.contains(&canary[..6]) && !r.stderr.contains(&canary[..6]),
            "{text}: {}{}",
            r.stdout,
            r.stderr
        );
    }
}

/// During a rotation the webhook takes the current secret and the previous one: a delivery signed
/// with either applies; one signed with neither is refused; a third secret is bad usage.
#[test]
fn webhook_accepts_the_previous_secret_during_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (current, previous) = (dir.path().join("current"), dir.path().join("previous"));
    std::fs::write(&current, "the new secret\n").unwrap();
    std::fs::write(&previous, format!("{HOOK_SECRET}\n")).unwrap();
    let (current, previous) = (current.display().to_string(), previous.display().to_string());
    let body = std::fs::read(common::fixture_path("webhooks/member_removed.json")).unwrap();
    let sig = hook_signature(&body);
    let w = world("acme.toml");
    let run = |delivery: &str, files: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["webhook", "--world", &w, "--event", "member", "--delivery", delivery, "--signature", &sig];
        for f in files {
            args.extend(["--webhook-secret-file", f]);
        }
        ghauthz_stdin(&args, &body, env)
    };
    let r = run("d-1", &[&current, &previous], &[]);
    assert_eq!(r.code, 0, "signed with the previous secret: {}{}", r.stdout, r.stderr);
    let r = run("d-2", &[&current], &[]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("bad_signature")), "the current one alone refuses it");
    let env = [("GHAUTHZ_WEBHOOK_SECRET", "the new secret"), ("GHAUTHZ_WEBHOOK_SECRET_PREVIOUS", HOOK_SECRET)];
    assert_eq!(run("d-3", &[], &env).code, 0, "the same from the environment");
    let r = run("d-4", &[&current, &previous, &current], &[]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")));
}

/// Nothing the CLI prints repeats an argument that may be a token, nor a line of a policy file:
/// usage errors name only the options this program defines, policy errors the file, line, column
/// and field.
#[test]
fn usage_and_policy_errors_echo_nothing_that_was_typed() {
    let token = "gl1_s0AEioYr1rr-tpwqMgGDCVKrxLpD3SMGimE8PbTFqos";
    let w = world("acme.toml");
    for args in [
        vec!["link", "inspect", token, "extra-secret-thing"],
        vec!["check", "--world", &w, "--app", "dash", "--action", token, "--anonymous"],
        vec!["check", "--world", &w, "--app", "dash", "--action", "view", "--anonymous", token],
        vec![token],
        vec!["check", "--world", &w, "--app", "dash", "--action", "view", "--anonymous", "--now", token],
    ] {
        let r = ghauthz(&args);
        assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")), "{args:?}: {}", r.stdout);
        for echoed in [token, "extra-secret-thing"] {
            assert!(
                !r.stdout.contains(echoed) && !r.stderr.contains(echoed),
                "{args:?} echoed: {}{}",
                r.stdout,
                r.stderr
            );
        }
    }
    let r = ghauthz(&["check", "--world", &w, "--app", "dash", "--action", "fly", "--anonymous"]);
    assert!(r.json()["message"].as_str().unwrap().contains("--action"), "names the option: {}", r.stdout);

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let check = || {
        ghauthz(&[
            "check",
            "--world",
            &w,
            "--policy",
            &policy.display().to_string(),
            "--app",
            "dash",
            "--action",
            "view",
            "--anonymous",
        ])
    };
    for (text, line, field) in [
        ("edit = \"write\"\ndeploy = \"hunter2-secret\"\n", "2:10", Some("deploy")),
        ("edit = \"write\"\nhunter2-secret = \"admin\"\n", "2:1", None),
        ("edit = \"write\"\n[[hunter2-secret\n", "2:", None),
    ] {
        std::fs::write(&policy, text).unwrap();
        let r = check();
        assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("bad_policy")), "{text}: {}", r.stdout);
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(&format!("policy.toml`:{line}")), "{text}: {message}");
        if let Some(field) = field {
            assert!(message.contains(&format!("field `{field}`")), "{text}: {message}");
        }
        assert!(!r.stdout.contains("hunter2") && !r.stderr.contains("hunter2"), "{text}: {}{}", r.stdout, r.stderr);
    }
}

/// Every input has a bound: a world, policy, keys or secret file, or standard input, that goes on
/// and on (`/dev/zero`) is refused at once with a typed error, not read into memory.
#[cfg(unix)]
#[test]
fn endless_inputs_are_refused_fast() {
    let r = ghauthz(&["check", "--world", "/dev/zero", "--app", "dash", "--action", "view", "--anonymous"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("bad_world")), "{}", r.stdout);
    assert!(r.json()["message"].as_str().unwrap().contains("larger than"), "{}", r.stdout);
    let w = world("acme.toml");
    let base = ["check", "--world", w.as_str(), "--app", "dash", "--action", "view", "--anonymous"];
    let r = ghauthz(&[&base[..], &["--policy", "/dev/zero"]].concat());
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("bad_policy")), "{}", r.stdout);
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    std::fs::write(&keys, vec![b' '; 70 << 10]).unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let keys = keys.display().to_string();
    let r = ghauthz(&[
        "check",
        "--world",
        &w,
        "--app",
        "dash",
        "--action",
        "view",
        "--keys",
        &keys,
        "--viewer-session",
        "x",
    ]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("bad_keys")), "{}", r.stdout);
    assert!(r.json()["message"].as_str().unwrap().contains("larger than"), "{}", r.stdout);
    let hook = ["webhook", "--world", w.as_str(), "--event", "ping", "--delivery", "d-1", "--signature", "sha256=00"];
    let r = ghauthz(&[&hook[..], &["--webhook-secret-file", "/dev/zero"]].concat());
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")), "{}", r.stdout);
    let big = vec![b'x'; ghauthz::MAX_WEBHOOK_BODY + 1];
    let r = ghauthz_stdin(&hook, &big, &[("GHAUTHZ_WEBHOOK_SECRET", HOOK_SECRET)]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("too_large")), "{}", r.stdout);
}

/// `google sign-in --require-authoritative` and `--hosted-domain`: Google must vouch for the
/// address (the option that requires an authoritative address).
#[test]
fn google_sign_in_can_require_what_google_vouches_for() {
    let (_dir, g) = link_env();
    let now = common::fixture("acme.toml").now().unwrap().as_secs();
    let mut claims = common::google_claims(now, "dana@example.com");
    let plain = common::sign_google(&claims, "google-test", "test-key-1");
    claims["hd"] = serde_json::json!("example.com");
    let workspace = common::sign_google(&claims, "google-test", "test-key-1");
    let sign_in = |token: &str, extra: &[&str]| {
        run_with(&g, &[&["google", "sign-in", "--app", "dash", "--id-token", token][..], extra].concat())
    };
    assert_eq!(sign_in(&plain, &[]).code, 0, "off by default");
    let r = sign_in(&plain, &["--require-authoritative"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("email_unverified")), "{}", r.stdout);
    assert_eq!(sign_in(&workspace, &["--require-authoritative"]).code, 0);
    assert_eq!(sign_in(&workspace, &["--hosted-domain", "example.com"]).code, 0);
    let r = sign_in(&workspace, &["--hosted-domain", "elsewhere.com"]);
    assert_eq!((r.code, r.json()["error"].as_str()), (2, Some("email_unverified")), "{}", r.stdout);
}

/// What may be a secret is not repeated however it comes in: a webhook header value carrying a
/// control character, a database URL of another scheme or with a bad parameter (it may hold a
/// password); and an empty secret names where it came from.
#[test]
fn values_that_may_be_secrets_are_not_repeated_in_errors() {
    let canary = "CANARYk2v";
    let w = world("acme.toml");
    let body = std::fs::read(common::fixture_path("webhooks/ping.json")).unwrap();
    let secret = [("GHAUTHZ_WEBHOOK_SECRET", HOOK_SECRET)];
    for flag in ["--signature", "--delivery", "--event"] {
        let mut args =
            vec!["webhook", "--world", &w, "--event", "ping", "--delivery", "d-1", "--signature", "sha256=0"];
        let bad = format!("{canary}\r");
        let at = args.iter().position(|a| *a == flag).unwrap() + 1;
        args[at] = &bad;
        let r = ghauthz_stdin(&args, &body, &secret);
        assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("bad_request")), "{flag}: {}", r.stdout);
        assert!(r.json()["message"].as_str().unwrap().contains(flag), "{}", r.stdout);
        assert!(!r.stdout.contains(canary) && !r.stderr.contains(canary), "{flag}: {}{}", r.stdout, r.stderr);
    }
    for db in [
        format!("mysql://u:{canary}@h/db"),
        format!("postgres://u:p@127.0.0.1:1/db?sslmode={canary}"),
        format!("postgres:u:{canary}@h"),
        format!("host=db password={canary}"),
    ] {
        let r = ghauthz(&["check", "--world", &w, "--db", &db, "--app", "dash", "--action", "view", "--anonymous"]);
        assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")), "{db}: {}", r.stdout);
        assert!(!r.stdout.contains(canary) && !r.stderr.contains(canary), "{db}: {}{}", r.stdout, r.stderr);
    }
    let r = ghauthz_stdin(
        &["webhook", "--world", &w, "--event", "ping", "--delivery", "d-1", "--signature", "sha256=0"],
        &body,
        &[("GHAUTHZ_WEBHOOK_SECRET", "")],
    );
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.json()["message"].as_str().unwrap().contains("`GHAUTHZ_WEBHOOK_SECRET` is empty"), "{}", r.stdout);
}

/// A reader that goes away before the output is written (`ghauthz explain | head -0`) costs the
/// output, never a panic: the exit code is the command's own.
#[test]
fn a_closed_standard_output_is_no_panic() {
    for args in [vec!["explain", "--world", &world("acme.toml"), "--json"], vec!["no-such-command"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ghauthz"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(if args[0] == "explain" { 0 } else { 1 }), "{args:?}: {stderr}");
    }
}

/// Usage errors say what is wrong, and where, without repeating what was typed: an option given
/// twice, an option without its value, an unexpected argument or command by its position.
#[test]
fn usage_errors_say_what_and_where_without_the_argument() {
    let w = world("acme.toml");
    let canary = "CANARYz9w";
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec!["check", "--world", &w, "--app", "dash", "--action", "view", "--viewer-session"],
            "`--viewer-session <TOKEN>` needs a value",
        ),
        (
            vec![
                "check",
                "--world",
                &w,
                "--db",
                "a",
                "--db",
                canary,
                "--app",
                "dash",
                "--action",
                "view",
                "--anonymous",
            ],
            "`--db <PATH>` given twice",
        ),
        (
            vec!["check", "--world", &w, canary, "--app", "dash", "--action", "view", "--anonymous"],
            "an unexpected argument (argument 4)",
        ),
        (vec![canary, "--world", &w], "an unknown command (argument 1)"),
    ];
    for (args, said) in cases {
        let r = ghauthz(&args);
        assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("usage")), "{args:?}: {}", r.stdout);
        assert!(r.json()["message"].as_str().unwrap().contains(said), "{args:?}: {}", r.stdout);
        assert!(!r.stdout.contains(canary) && !r.stderr.contains(canary), "{args:?}: {}{}", r.stdout, r.stderr);
    }
}

/// A diagnostic carries what was typed where a message names it (an unknown login): no control
/// character, nor one that reorders the line, reaches the terminal as it is.
#[test]
fn diagnostics_on_stderr_show_control_characters_escaped() {
    let login = "eve\u{1b}[31m\u{202e}x";
    let r = ghauthz(&[
        "check",
        "--world",
        &world("acme.toml"),
        "--app",
        "dash",
        "--action",
        "view",
        "--github-user",
        login,
    ]);
    assert_eq!((r.code, r.json()["error"].as_str()), (1, Some("unknown_user")));
    assert!(r.stderr.starts_with("ghauthz: "), "{}", r.stderr);
    assert!(!r.stderr.contains('\u{1b}') && !r.stderr.contains('\u{202e}'), "{:?}", r.stderr);
    assert!(r.stderr.contains("\\u{1b}[31m\\u{202e}x"), "{:?}", r.stderr);
}
