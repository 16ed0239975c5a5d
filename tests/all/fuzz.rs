//! Arbitrary bytes into every parser of untrusted input: Google ID tokens, session
//! tokens, link tokens, webhook headers, email addresses, world, policy and keys files. Each is
//! fed random text and single-byte mutations of a valid input; none may panic, each refusal is
//! a typed error with a stable kind, and a mutated token is never accepted. The case counts keep
//! the whole file to a few seconds in CI. An input that finds a bug is kept as a regression test
//! named after what it guards, beside the area's other tests.
#![cfg(all(feature = "world", feature = "sqlite"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use crate::common;
use ghauthz::CheckRequest;

use std::sync::{Arc, LazyLock};

use ghauthz::store::MemoryStore;
use ghauthz::world::World;
use ghauthz::{AppId, Clock as _, Email, Policy, SessionKeys};
use proptest::prelude::*;

/// One authorizer (with Google sign-in against the mock) for every case, and a valid token of
/// each kind to mutate.
struct Shared {
    rt: tokio::runtime::Runtime,
    env: common::Viewers,
    link: String,
    session: String,
    google: String,
}

static SHARED: LazyLock<Shared> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (env, link, session, google) = rt.block_on(async {
        let env = common::viewers_on(Arc::new(MemoryStore::new())).await;
        let issued = env.authz.issue_link(&dash(), "dana@example.com").await.unwrap();
        let link = issued.token.expose_secret().to_owned();
        let other = env.authz.issue_link(&dash(), "dana@example.com").await.unwrap();
        let session = env.authz.redeem_link(other.token.expose_secret(), None).await.unwrap();
        let session = session.token.expose_secret().to_owned();
        let google = common::google_token(env.clock.now().as_secs(), "dana@example.com");
        (env, link, session, google)
    });
    Shared { rt, env, link, session, google }
});

fn dash() -> AppId {
    AppId("dash".into())
}

/// `valid` with the byte at `at` (modulo its length) replaced by `with`; `None` if unchanged.
fn mutate(valid: &str, at: usize, with: u8) -> Option<String> {
    let mut bytes = valid.as_bytes().to_vec();
    let i = at % bytes.len();
    if bytes[i] == with {
        return None;
    }
    bytes[i] = with;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Text as an attacker sends it: arbitrary bytes (read as UTF-8, lossily), or printable ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "[ -~]{0,600}",
        // Token-shaped: three dot-separated base64url runs.
        "[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,80}",
    ]
}

const SESSION_KINDS: &[&str] = &["invalid", "expired", "retired_key", "wrong_app", "signing"];
const LINK_KINDS: &[&str] = &["invalid", "expired", "already_used", "revoked", "wrong_app", "not_invited"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_text_as_a_session_token_is_refused_with_a_kind(token in text()) {
        let s = &*SHARED;
        let err = s.env.authz.verify_session(&token).unwrap_err();
        prop_assert!(SESSION_KINDS.contains(&err.kind()), "{err:?}");
        prop_assert!(s.env.authz.check_cached(&CheckRequest::session(&token, &dash(), ghauthz::Capability::View)).is_none());
    }

    #[test]
    fn a_session_token_changed_in_one_byte_is_refused(at in any::<usize>(), with in 0x20u8..0x7f) {
        let s = &*SHARED;
        let Some(token) = mutate(&s.session, at, with) else { return Ok(()) };
        let err = s.env.authz.verify_session(&token).unwrap_err();
        prop_assert!(SESSION_KINDS.contains(&err.kind()), "{err:?}");
    }

    #[test]
    fn any_text_as_a_link_is_refused_with_a_kind(token in text()) {
        let s = &*SHARED;
        let err = s.rt.block_on(s.env.authz.inspect_link(&token)).unwrap_err();
        prop_assert_eq!(err.kind(), "invalid");
        let err = s.rt.block_on(s.env.authz.redeem_link(&token, Some(&dash()))).unwrap_err();
        prop_assert_eq!(err.kind(), "invalid");
    }

    #[test]
    fn a_link_changed_in_one_byte_is_refused_and_the_real_one_stays_unused(
        at in any::<usize>(),
        with in 0x20u8..0x7f,
    ) {
        let s = &*SHARED;
        let Some(token) = mutate(&s.link, at, with) else { return Ok(()) };
        let err = s.rt.block_on(s.env.authz.redeem_link(&token, Some(&dash()))).unwrap_err();
        prop_assert!(LINK_KINDS.contains(&err.kind()), "{err:?}");
        prop_assert!(s.rt.block_on(s.env.authz.inspect_link(&s.link)).is_ok(), "the real link is still unused");
    }

    #[test]
    fn any_text_as_a_google_id_token_is_refused_with_a_kind(token in text()) {
        let s = &*SHARED;
        let err = s.rt.block_on(s.env.authz.google_sign_in(&dash(), &token)).unwrap_err();
        let ghauthz::GoogleSignInError::Token(e) = &err else { panic!("{err:?}") };
        prop_assert!(!e.kind().is_empty());
    }

    #[test]
    fn a_google_id_token_changed_in_one_byte_is_refused(at in any::<usize>(), with in 0x20u8..0x7f) {
        let s = &*SHARED;
        let Some(token) = mutate(&s.google, at, with) else { return Ok(()) };
        let err = s.rt.block_on(s.env.authz.google_sign_in(&dash(), &token)).unwrap_err();
        prop_assert!(matches!(err, ghauthz::GoogleSignInError::Token(_)), "{err:?}");
    }

    #[test]
    fn any_text_as_an_email_address_is_parsed_or_refused_with_a_kind(input in text()) {
        match Email::parse(&input) {
            Ok(email) => {
                prop_assert!(email.as_str().len() <= 254 && email.as_str().is_ascii());
                prop_assert_eq!(Email::parse(email.as_str()).unwrap(), email.clone(), "normal form is stable");
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn any_text_as_a_keys_file_is_read_or_refused(input in text()) {
        let _ = SessionKeys::from_json(&input);
    }

    #[test]
    fn a_keys_file_changed_in_one_byte_is_read_or_refused(at in any::<usize>(), with in any::<u8>()) {
        static VALID: LazyLock<String> =
            LazyLock::new(|| SessionKeys::generate().unwrap().to_json_with_secrets());
        if let Some(text) = mutate(&VALID, at, with) {
            let _ = SessionKeys::from_json(&text);
        }
    }

    #[test]
    fn any_text_as_a_policy_is_read_or_refused(input in text()) {
        let _ = toml::from_str::<Policy>(&input);
    }

    #[test]
    fn any_text_as_a_world_is_loaded_or_refused_with_its_position(input in text()) {
        if let Err(e) = World::from_toml_str(&input, std::env::temp_dir()) {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn a_world_changed_in_one_byte_is_loaded_or_refused(at in any::<usize>(), with in any::<u8>()) {
        static ACME: LazyLock<String> =
            LazyLock::new(|| std::fs::read_to_string(common::fixture_path("worlds/acme.toml")).unwrap());
        if let Some(text) = mutate(&ACME, at, with) {
            if let Err(e) = World::from_toml_str(&text, common::fixture_path("worlds")) {
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    /// Whatever the headers hold, verification answers with a typed refusal (or, for the right
    /// signature, accepts) and never panics.
    #[test]
    fn any_webhook_headers_are_verified_or_refused_with_a_kind(
        event in "[ -~]{0,80}",
        delivery in "[ -~]{0,120}",
        signature in "[ -~]{0,100}",
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let verifier = ghauthz::WebhookVerifier::new(ghauthz::WebhookSecret::new("s".into()).unwrap());
        let mut headers = http::HeaderMap::new();
        for (name, value) in [("x-github-event", &event), ("x-github-delivery", &delivery), ("x-hub-signature-256", &signature)] {
            if let Ok(v) = http::HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        }
        if let Err(e) = verifier.verify(&headers, &body) {
            prop_assert!(["bad_signature", "bad_request", "too_large"].contains(&e.kind()), "{e:?}");
        }
    }
}

proptest! {
    // Each case signs with RSA, which is slow in a debug build: fewer cases.
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Signed claims of any shape: the verifier refuses what it does not understand, and never
    /// panics on a claim of an unexpected type.
    #[test]
    fn any_signed_google_claims_are_judged_without_panicking(
        claims in proptest::collection::btree_map(
            prop_oneof![
                Just("iss".to_owned()), Just("aud".to_owned()), Just("sub".to_owned()), Just("email".to_owned()),
                Just("email_verified".to_owned()), Just("iat".to_owned()), Just("exp".to_owned()),
                Just("hd".to_owned()), Just("nbf".to_owned()), "[a-z]{1,6}",
            ],
            prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(|f| serde_json::json!(f)),
                "[ -~]{0,40}".prop_map(serde_json::Value::from),
                proptest::collection::vec("[ -~]{0,20}", 0..3).prop_map(serde_json::Value::from),
            ],
            0..10,
        ),
    ) {
        let s = &*SHARED;
        let claims = serde_json::Value::Object(claims.into_iter().collect());
        let token = common::sign_google(&claims, "google-test", "test-key-1");
        if let Err(err) = s.rt.block_on(s.env.authz.google_sign_in(&dash(), &token)) {
            prop_assert!(!err.kind().is_empty());
        }
    }
}
