//! Google sign-in: a token signed as Google signs succeeds; every forgery and
//! malformation is refused with its own error, and nothing panics.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use crate::common;
use ghauthz::CheckRequest;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ghauthz::store::MemoryStore;
use ghauthz::world::MockGithub;
use ghauthz::{AppId, Authorizer, Capability, Clock, GoogleError, GoogleSignInError, Principal, Reason, Via};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const JWKS: &str = "/oauth2/v3/certs";

struct Env {
    authz: Authorizer,
    mock: MockGithub,
    now: u64,
}

async fn env() -> Env {
    let v = common::viewers_on(Arc::new(MemoryStore::new())).await;
    Env { now: v.clock.now().as_secs(), authz: v.authz, mock: v.mock }
}

fn claims(now: u64) -> Value {
    common::google_claims(now, "dana@example.com")
}

fn sign(claims: &Value) -> String {
    common::sign_google(claims, "google-test", "test-key-1")
}

fn sign_with(claims: &Value, key_name: &str, kid: &str) -> String {
    common::sign_google(claims, key_name, kid)
}

fn edit(now: u64, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut c = claims(now);
    f(c.as_object_mut().unwrap());
    sign(&c)
}

async fn refused(env: &Env, token: &str) -> GoogleError {
    match env.authz.google_sign_in(&AppId("dash".into()), token).await {
        Err(GoogleSignInError::Token(e)) => e,
        other => panic!("expected a refused token, got {other:?}"),
    }
}

#[tokio::test]
async fn a_token_signed_as_google_signs_in_an_invited_viewer() {
    let env = env().await;
    for iss in ["https://accounts.google.com", "accounts.google.com"] {
        let token = edit(env.now, |c| {
            c.insert("iss".into(), json!(iss));
        });
        let issued = env.authz.google_sign_in(&AppId("dash".into()), &token).await.unwrap();
        assert_eq!((issued.session.via(), issued.session.email().as_str()), (Via::Google, "dana@example.com"));
        let viewer = Principal::Viewer(env.authz.verify_session(issued.token.expose_secret()).unwrap());
        let d = env.authz.check(&CheckRequest::new(&viewer, &AppId("dash".into()), Capability::View)).await.unwrap();
        assert_eq!(d.reason(), &Reason::ViewerGrant { via: Via::Google });
    }
    assert_eq!(env.mock.requests(JWKS), 1, "the JWKS is cached for its max-age");
    let stranger = edit(env.now, |c| {
        c.insert("email".into(), json!("zed@example.com"));
    });
    assert_eq!(
        env.authz.google_sign_in(&AppId("dash".into()), &stranger).await.unwrap_err(),
        GoogleSignInError::SignIn(ghauthz::SignInRefusal::NotInvited)
    );
}

#[tokio::test]
async fn forged_algorithms_are_refused() {
    let env = env().await;
    let payload = URL_SAFE_NO_PAD.encode(claims(env.now).to_string());
    let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"test-key-1","typ":"JWT"}"#));
    assert_eq!(refused(&env, &none).await, GoogleError::WrongAlgorithm, "alg none");
    // HS256 keyed with the RSA public key (the classic confusion attack).
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(common::fixture_path("keys/google-test.jwks.json")).unwrap())
            .unwrap();
    let n = jwks["keys"][0]["n"].as_str().unwrap().to_owned();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("test-key-1".into());
    let hs = jsonwebtoken::encode(&header, &claims(env.now), &EncodingKey::from_secret(n.as_bytes())).unwrap();
    assert_eq!(refused(&env, &hs).await, GoogleError::WrongAlgorithm);
}

#[tokio::test]
async fn an_unknown_kid_costs_one_refetch_then_nothing() {
    let env = env().await;
    env.authz.google_sign_in(&AppId("dash".into()), &sign(&claims(env.now))).await.unwrap();
    let other = sign_with(&claims(env.now), "google-other", "test-key-unknown");
    assert_eq!(refused(&env, &other).await, GoogleError::UnknownKey);
    assert_eq!(env.mock.requests(JWKS), 2, "one refetch for the unknown kid");
    assert_eq!(refused(&env, &other).await, GoogleError::UnknownKey);
    assert_eq!(env.mock.requests(JWKS), 2, "refetching is rate-limited");
    let pem = std::fs::read(common::fixture_path("keys/google-test.pem")).unwrap();
    let no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims(env.now),
        &EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap();
    assert_eq!(refused(&env, &no_kid).await, GoogleError::MissingKid);
}

#[tokio::test]
async fn each_bad_claim_has_its_own_error() {
    let env = env().await;
    let now = env.now;
    let cases: Vec<(&str, String, GoogleError)> = vec![
        (
            "wrong iss",
            edit(now, |c| {
                c.insert("iss".into(), json!("https://evil.example"));
            }),
            GoogleError::WrongIssuer,
        ),
        (
            "wrong aud",
            edit(now, |c| {
                c.insert("aud".into(), json!("someone-else"));
            }),
            GoogleError::WrongAudience,
        ),
        (
            "missing aud",
            edit(now, |c| {
                c.remove("aud");
            }),
            GoogleError::BadClaim("aud".into()),
        ),
        (
            "missing iss",
            edit(now, |c| {
                c.remove("iss");
            }),
            GoogleError::BadClaim("iss".into()),
        ),
        (
            "missing sub",
            edit(now, |c| {
                c.remove("sub");
            }),
            GoogleError::BadClaim("sub".into()),
        ),
        (
            "missing exp",
            edit(now, |c| {
                c.remove("exp");
            }),
            GoogleError::BadClaim("exp".into()),
        ),
        (
            "expired beyond leeway",
            edit(now, |c| {
                c.insert("exp".into(), json!(now - 61));
            }),
            GoogleError::Expired,
        ),
        (
            "nbf in the future",
            edit(now, |c| {
                c.insert("nbf".into(), json!(now + 120));
            }),
            GoogleError::NotYetValid,
        ),
        (
            "exp as a string",
            edit(now, |c| {
                c.insert("exp".into(), json!((now + 3600).to_string()));
            }),
            GoogleError::BadClaim("exp".into()),
        ),
        (
            "email_verified false",
            edit(now, |c| {
                c.insert("email_verified".into(), json!(false));
            }),
            GoogleError::EmailUnverified,
        ),
        (
            "email_verified absent",
            edit(now, |c| {
                c.remove("email_verified");
            }),
            GoogleError::EmailUnverified,
        ),
        (
            "email_verified as a string",
            edit(now, |c| {
                c.insert("email_verified".into(), json!("true"));
            }),
            GoogleError::EmailUnverified,
        ),
        (
            "no email",
            edit(now, |c| {
                c.remove("email");
            }),
            GoogleError::BadEmail,
        ),
    ];
    for (what, token, want) in cases {
        assert_eq!(refused(&env, &token).await, want, "{what}");
    }
    let within_leeway = edit(now, |c| {
        c.insert("exp".into(), json!(now - 30));
    });
    assert!(
        env.authz.google_sign_in(&AppId("dash".into()), &within_leeway).await.is_ok(),
        "small clock skew is allowed"
    );
}

#[tokio::test]
async fn damaged_tokens_are_refused_without_panicking() {
    let env = env().await;
    let good = sign(&claims(env.now));
    let parts: Vec<&str> = good.split('.').collect();
    let mut forged = claims(env.now);
    forged["email"] = json!("erin@example.com");
    let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(forged.to_string()), parts[2]);
    assert_eq!(refused(&env, &tampered).await, GoogleError::BadSignature);
    let truncated = &good[..good.len() - 10];
    assert!(matches!(refused(&env, truncated).await, GoogleError::BadSignature | GoogleError::Malformed));
    assert_eq!(refused(&env, &"a".repeat(1 << 20)).await, GoogleError::Malformed, "1 MiB");
    assert_eq!(refused(&env, "!!!.@@@.###").await, GoogleError::Malformed, "not base64");
    assert_eq!(refused(&env, "").await, GoogleError::Malformed);
    assert_eq!(refused(&env, &format!("{}.{}", parts[0], parts[1])).await, GoogleError::Malformed, "two parts");
}

/// Signs a raw header and raw claims (JSON text, written as given) as Google would.
fn sign_raw(header: &str, claims: &str) -> String {
    let pem = std::fs::read(common::fixture_path("keys/google-test.pem")).unwrap();
    let key = EncodingKey::from_rsa_pem(&pem).unwrap();
    let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::RS256).unwrap();
    format!("{message}.{signature}")
}

/// Stricter than Google's own libraries: `iss` a string, `aud` ours alone, `iat` not ahead, a
/// lifetime of at most 24 h, no `crit` header, and no key written twice in the header or claims.
#[tokio::test]
async fn tokens_shaped_otherwise_than_google_shapes_them_are_refused() {
    let env = env().await;
    let now = env.now;
    let header = r#"{"alg":"RS256","kid":"test-key-1","typ":"JWT"}"#;
    let claims_text = |extra: &str| {
        format!(
            r#"{{"iss":"https://accounts.google.com","aud":"{}","sub":"110169484474386276334","email":"dana@example.com","email_verified":true,"iat":{now},"exp":{}{extra}}}"#,
            common::GOOGLE_AUD,
            now + 3600
        )
    };
    // The raw signer itself makes a token that signs in.
    assert!(env.authz.google_sign_in(&AppId("dash".into()), &sign_raw(header, &claims_text(""))).await.is_ok());
    let cases: Vec<(&str, String, GoogleError)> = vec![
        (
            "iss as an array",
            edit(now, |c| {
                c.insert("iss".into(), json!(["https://accounts.google.com"]));
            }),
            GoogleError::WrongIssuer,
        ),
        (
            "aud naming someone else too",
            edit(now, |c| {
                c.insert("aud".into(), json!([common::GOOGLE_AUD, "someone-else"]));
            }),
            GoogleError::WrongAudience,
        ),
        (
            "iat over 5 minutes ahead",
            edit(now, |c| {
                c.insert("iat".into(), json!(now + 301));
                c.insert("exp".into(), json!(now + 3901));
            }),
            GoogleError::IssuedInTheFuture,
        ),
        (
            "a lifetime over 24 hours",
            edit(now, |c| {
                c.insert("exp".into(), json!(now + 24 * 3600 + 1));
            }),
            GoogleError::LifetimeTooLong,
        ),
        (
            "no iat",
            edit(now, |c| {
                c.remove("iat");
            }),
            GoogleError::BadClaim("iat".into()),
        ),
        (
            "a crit header",
            sign_raw(r#"{"alg":"RS256","kid":"test-key-1","crit":["exp"]}"#, &claims_text("")),
            GoogleError::CriticalExtension,
        ),
        (
            "a second email",
            sign_raw(header, &claims_text(r#","email":"mallory@example.com""#)),
            GoogleError::DuplicateKey("claim"),
        ),
        (
            "a second kid",
            sign_raw(r#"{"alg":"RS256","kid":"test-key-1","kid":"other"}"#, &claims_text("")),
            GoogleError::DuplicateKey("header"),
        ),
    ];
    for (what, token, want) in cases {
        assert_eq!(refused(&env, &token).await, want, "{what}");
    }
    // An array of our client ids alone is still ours.
    let token = edit(now, |c| {
        c.insert("aud".into(), json!([common::GOOGLE_AUD]));
    });
    assert!(env.authz.google_sign_in(&AppId("dash".into()), &token).await.is_ok());
}

/// The option that accepts an address only where Google is authoritative for it (`@gmail.com`, or
/// in the token's Workspace domain `hd`), and optionally only one Workspace domain.
#[tokio::test]
async fn the_authoritative_option_accepts_only_what_google_vouches_for() {
    use ghauthz::{ChangedBy, GoogleConfig};
    let world = common::fixture("acme.toml");
    let clock = ghauthz::ManualClock::new(world.now().unwrap());
    let mock = MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone())).await.unwrap();
    let store: Arc<dyn ghauthz::store::Store> = Arc::new(MemoryStore::new());
    store.seed_once(&world.app_records(), clock.now()).await.unwrap();
    let build = |edit: &dyn Fn(GoogleConfig) -> GoogleConfig| {
        let google = edit(mock.google_config().unwrap());
        Authorizer::builder(mock.github_config())
            .clock(Arc::new(clock.clone()))
            .store(store.clone())
            .google(google)
            .build()
            .unwrap()
    };
    let now = clock.now().as_secs();
    let dash = AppId("dash".into());
    build(&|g| g).add_viewer(&ChangedBy::Operator, &dash, "dana.gmail@gmail.com").await.unwrap();
    let token = |email: &str, hd: Option<&str>| {
        let mut c = common::google_claims(now, email);
        if let Some(hd) = hd {
            c["hd"] = json!(hd);
        }
        sign(&c)
    };
    let plain = token("dana@example.com", None);
    let workspace = token("dana@example.com", Some("example.com"));
    let other_workspace = token("dana@example.com", Some("elsewhere.com"));
    let gmail = token("dana.gmail@gmail.com", None);
    let sign_in = |a: &Authorizer, t: &str| {
        let (a, t, dash) = (a.clone(), t.to_owned(), dash.clone());
        async move { a.google_sign_in(&dash, &t).await.map(|_| ()) }
    };
    let refused = Err(GoogleSignInError::Token(GoogleError::NotAuthoritative));
    let off = build(&|g| g);
    assert_eq!(sign_in(&off, &plain).await, Ok(()), "off by default");
    let on = build(&|g| g.with_require_authoritative(true));
    assert_eq!(sign_in(&on, &plain).await, refused, "no Workspace domain, not gmail");
    assert_eq!(sign_in(&on, &other_workspace).await, refused, "hd is not the address's domain");
    assert_eq!(sign_in(&on, &workspace).await, Ok(()));
    assert_eq!(sign_in(&on, &gmail).await, Ok(()));
    let pinned = build(&|g| g.with_hosted_domain("example.com"));
    assert_eq!(sign_in(&pinned, &workspace).await, Ok(()));
    assert_eq!(sign_in(&pinned, &gmail).await, refused, "only the pinned Workspace");
    assert_eq!(sign_in(&pinned, &plain).await, refused);
    assert_eq!(GoogleError::NotAuthoritative.kind(), "email_unverified");
}
