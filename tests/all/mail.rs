//! Sign-in links by email, over SMTP (`SmtpMailer`), to a real SMTP server: aiosmtpd, started by
//! each test (`tests/mail/smtp_sink.py`), which parses every message with Python's own email
//! package. The tests read the message as it arrived.
//!
//! Needs `GHAUTHZ_TEST_SMTP_PYTHON`, a Python with aiosmtpd (`.ci/run` sets it); without it every
//! test says it was skipped.
#![cfg(all(feature = "smtp", feature = "world"))]

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ghauthz::SendLinkError;
use ghauthz::mail::{MailConfig, SmtpConfig, SmtpMailer, SmtpSecurity};
use ghauthz::store::MemoryStore;
use ghauthz::store::prelude::*;
use ghauthz::world::MockGithub;
use ghauthz::{AppId, Authorizer, ChangedBy, Clock as _, ErrorClass, SystemClock};
use serde_json::Value;

use crate::common;

const PYTHON_ENV: &str = "GHAUTHZ_TEST_SMTP_PYTHON";

/// aiosmtpd on a port of its own, writing what arrives into a directory.
pub(crate) struct Sink {
    child: Child,
    dir: tempfile::TempDir,
    pub(crate) port: u16,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sink {
    /// `None` (skipped, said once) without `GHAUTHZ_TEST_SMTP_PYTHON`.
    pub(crate) fn start(tls: Option<(&PathBuf, &PathBuf)>) -> Option<Sink> {
        let Ok(python) = std::env::var(PYTHON_ENV) else {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| eprintln!("skipped: {PYTHON_ENV} is unset, so the SMTP tests do not run"));
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mail/smtp_sink.py");
        let mut cmd = Command::new(python);
        cmd.arg(script).arg(dir.path()).arg(port.to_string());
        if let Some((cert, key)) = tls {
            cmd.arg("--tls").arg(cert).arg(key).args(["links@example.com", "s3cret-password"]);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("the SMTP server starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "aiosmtpd did not start (is it installed for {PYTHON_ENV}?)");
        Some(Sink { child, dir, port })
    }

    /// The messages that arrived, in order.
    pub(crate) fn messages(&self) -> Vec<Value> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort_by_key(|p| p.file_stem().unwrap().to_str().unwrap().parse::<u32>().unwrap());
        files.iter().map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()).collect()
    }
}

/// An authorizer over acme.toml sending through `smtp`, links opening `https://share.example`.
async fn authz_with(smtp: SmtpConfig) -> (Authorizer, MockGithub) {
    let world = common::fixture("acme.toml");
    let mock = MockGithub::start(world.clone()).await.unwrap();
    let store = Arc::new(MemoryStore::new());
    store.seed_once(&world.app_records(), SystemClock.now()).await.unwrap();
    let mailer = SmtpMailer::new(smtp).unwrap();
    let authz = Authorizer::builder(mock.github_config())
        .store(store)
        .mail(MailConfig::new(Arc::new(mailer), "https://share.example".parse().unwrap()))
        .build()
        .unwrap();
    (authz, mock)
}

/// The token in the link a message carries.
pub(crate) fn token_in(text: &str) -> String {
    let start = text.find("https://share.example/auth/link/").expect("the link is in the message");
    let rest = &text[start + "https://share.example/auth/link/".len()..];
    rest.split(|c: char| c.is_whitespace()).next().unwrap().to_owned()
}

#[tokio::test]
async fn a_link_is_sent_in_one_call_to_the_stored_address_naming_the_app_and_the_expiry() {
    let Some(sink) = Sink::start(None) else { return };
    let smtp = SmtpConfig::new("127.0.0.1", sink.port, SmtpSecurity::Plain, "Apps <apps@example.com>");
    let (authz, _mock) = authz_with(smtp).await;
    let dash = AppId("dash".into());
    let sent = authz.send_link(&dash, "  Dana@Example.COM ").await.unwrap();
    assert_eq!(sent.email.as_str(), "dana@example.com");
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m["rcpt_tos"], serde_json::json!(["dana@example.com"]), "only ever to the stored address");
    assert_eq!(m["to"], "dana@example.com");
    assert_eq!(m["from"], "Apps <apps@example.com>");
    assert_eq!(m["subject"], "Your sign-in link for dash");
    assert_eq!(m["content_type"], "multipart/alternative", "plain text and HTML");
    let text = m["text"].as_str().unwrap();
    assert!(text.contains("view dash"), "{text}");
    assert!(text.contains("for 15 minutes (until "), "{text}");
    assert!(text.contains("If you did not ask for this link"), "{text}");
    let html = m["html"].as_str().unwrap();
    let token = token_in(text);
    assert!(html.contains(&format!("href=\"https://share.example/auth/link/{token}\"")), "{html}");
    assert!(!html.contains("<script") && !html.contains("<img"), "{html}");
    // The link that arrived is the one issued: it signs dana in to dash.
    let issued = authz.redeem_link(&token, Some(&dash)).await.unwrap();
    assert_eq!(issued.session.email().as_str(), "dana@example.com");
    // A new link in place of the used one goes to the same address.
    authz.send_link_again(&token).await.unwrap();
    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["rcpt_tos"], serde_json::json!(["dana@example.com"]));
    assert_ne!(token_in(messages[1]["text"].as_str().unwrap()), token, "a new link");
}

#[tokio::test]
async fn nothing_is_sent_to_an_address_that_is_not_invited_and_a_refusal_is_reported_as_one() {
    let Some(sink) = Sink::start(None) else { return };
    let smtp = SmtpConfig::new("127.0.0.1", sink.port, SmtpSecurity::Plain, "apps@example.com");
    let (authz, _mock) = authz_with(smtp).await;
    let dash = AppId("dash".into());
    let err = authz.send_link(&dash, "zed@example.com").await.unwrap_err();
    assert_eq!(err.kind(), "not_invited");
    assert!(sink.messages().is_empty(), "nothing sent");
    // The server refuses the recipient: refused, for good (not a retry).
    authz.add_viewer(&ChangedBy::Operator, &dash, "refuse@example.com").await.unwrap();
    let err = authz.send_link(&dash, "refuse@example.com").await.unwrap_err();
    assert!(matches!(err, SendLinkError::Mail(_)), "{err:?}");
    assert_eq!((err.kind(), err.class()), ("mail_refused", ErrorClass::Usage));
    assert!(!format!("{err}").contains("refuse@"), "the server's words are not repeated: {err}");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn starttls_is_required_and_verified_before_credentials_or_the_link_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status();
    let Some(sink) = Sink::start(Some((&cert, &key))) else { return };
    assert!(made.expect("openssl makes the server's certificate").success());
    let smtp = SmtpConfig::new("127.0.0.1", sink.port, SmtpSecurity::StartTls, "apps@example.com")
        .with_credentials("links@example.com", "s3cret-password")
        .with_timeout(Duration::from_secs(10));
    // The server's certificate is not trusted: nothing is sent.
    let (untrusting, _mock) = authz_with(smtp.clone()).await;
    let err = untrusting.send_link(&AppId("dash".into()), "dana@example.com").await.unwrap_err();
    assert_eq!((err.kind(), err.class()), ("mail_unavailable", ErrorClass::Unavailable), "{err}");
    assert!(sink.messages().is_empty());
    // Trusted (a private CA's certificate): sent over TLS, signed in.
    let (authz, _mock2) = authz_with(smtp.with_root_certificate(std::fs::read(&cert).unwrap())).await;
    authz.send_link(&AppId("dash".into()), "dana@example.com").await.unwrap();
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["tls"], true);
    assert_eq!(messages[0]["login"], "links@example.com");
    // Wrong credentials: refused.
    let wrong = SmtpConfig::new("127.0.0.1", sink.port, SmtpSecurity::StartTls, "apps@example.com")
        .with_credentials("links@example.com", "wrong")
        .with_root_certificate(std::fs::read(&cert).unwrap());
    let (refused, _mock3) = authz_with(wrong).await;
    let err = refused.send_link(&AppId("dash".into()), "dana@example.com").await.unwrap_err();
    assert_eq!(err.kind(), "mail_refused", "{err}");
    assert_eq!(sink.messages().len(), 1);
}
