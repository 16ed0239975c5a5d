//! GitHub webhooks: signatures, replays, and what each event invalidates (fixtures/webhooks/).
#![cfg(feature = "world")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use crate::common;
use ghauthz::CheckRequest;

use std::collections::BTreeSet;

use ghauthz::{Capability, Invalidation, WebhookError, WebhookOutcome};
use serde::Deserialize;

const SECRET: &str = "It's a Secret to Everybody";

fn sign(secret: &str, body: &[u8]) -> String {
    common::webhook_signature(secret, body)
}

fn headers(event: &str, delivery: &str, signature: Option<(&str, &str)>) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("x-github-event", event.parse().unwrap());
    h.insert("x-github-delivery", delivery.parse().unwrap());
    h.insert("content-type", "application/json".parse().unwrap());
    if let Some((name, value)) = signature {
        h.insert(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    h
}

fn signed(event: &str, delivery: &str, body: &[u8]) -> http::HeaderMap {
    headers(event, delivery, Some(("x-hub-signature-256", &sign(SECRET, body))))
}

async fn env() -> common::Env {
    let opts = common::Opts { webhook_secret: Some(SECRET), ..Default::default() };
    common::env_with(common::fixture("acme.toml"), opts).await
}

/// Caches every world user's fact on every app.
async fn warm(env: &common::Env) {
    for user in env.world.users() {
        for app in env.world.apps() {
            env.authz.check(&CheckRequest::new(&env.user(&user.login), &app.app, Capability::Edit)).await.unwrap();
        }
    }
}

/// The (user/app) facts a check would answer from the cache now.
fn cached(env: &common::Env) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for user in env.world.users() {
        for app in env.world.apps() {
            if env.authz.check_cached(&CheckRequest::new(&env.user(&user.login), &app.app, Capability::Edit)).is_some()
            {
                out.insert(format!("{}/{}", user.login, app.app.id()));
            }
        }
    }
    out
}

fn everything(env: &common::Env) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for user in env.world.users() {
        for app in env.world.apps() {
            out.insert(format!("{}/{}", user.login, app.app.id()));
        }
    }
    out
}

#[tokio::test]
async fn githubs_published_signature_example_verifies() {
    let env = env().await;
    let body = b"Hello, World!";
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(sign(SECRET, body), sig, "the test's own signer agrees with GitHub");
    let h = headers("ping", "72d3162e-cc78-11e3-81ab-4c9367dc0958", Some(("x-hub-signature-256", sig)));
    let outcome = env.authz.handle_webhook(&h, body).await.unwrap();
    // Verified, but not JSON: a `ping` without its payload invalidates everything, to be safe.
    assert_eq!(outcome, WebhookOutcome::Applied(vec![Invalidation::All]));
    assert_eq!(env.authz.webhook_stats().malformed, 1);
}

#[tokio::test]
async fn a_wrong_missing_truncated_or_sha1_signature_is_rejected_without_touching_the_cache() {
    let env = env().await;
    warm(&env).await;
    let all = everything(&env);
    assert_eq!(cached(&env), all, "every fact is cached");
    let body = std::fs::read(common::fixture_path("webhooks/member_removed.json")).unwrap();
    let good = sign(SECRET, &body);
    let wrong_secret = sign("It's a Secret to Somebody", &body);
    let flipped = format!("{}{}", &good[..good.len() - 1], if good.ends_with('0') { '1' } else { '0' });
    let truncated = good[..good.len() - 2].to_owned();
    let sha1 = "sha1=d03207e4b030cf234e3447bac4d93add4c6643d8";
    type Case<'a> = (&'a str, Option<(&'a str, &'a str)>, WebhookError);
    let cases: Vec<Case> = vec![
        ("wrong secret", Some(("x-hub-signature-256", &wrong_secret)), WebhookError::BadSignature),
        ("one digit changed", Some(("x-hub-signature-256", &flipped)), WebhookError::BadSignature),
        ("missing", None, WebhookError::MissingSignature),
        ("truncated", Some(("x-hub-signature-256", &truncated)), WebhookError::MalformedSignature),
        ("empty", Some(("x-hub-signature-256", "sha256=")), WebhookError::MalformedSignature),
        ("no prefix", Some(("x-hub-signature-256", &good[7..])), WebhookError::MalformedSignature),
        ("sha-1 header only", Some(("x-hub-signature", sha1)), WebhookError::Sha1Only),
        ("sha-1 in the sha-256 header", Some(("x-hub-signature-256", sha1)), WebhookError::Sha1Only),
    ];
    let n = cases.len() as u64;
    for (what, sig, expected) in cases {
        let err = env.authz.handle_webhook(&headers("member", "d-1", sig), &body).await.unwrap_err();
        assert_eq!(err, expected, "{what}");
        assert_eq!(err.kind(), "bad_signature", "{what}");
        assert_eq!(cached(&env), all, "{what}: the cache is untouched");
    }
    // A body changed after signing fails too.
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let err = env.authz.handle_webhook(&signed("member", "d-1", &body), &tampered).await.unwrap_err();
    assert_eq!(err, WebhookError::BadSignature);
    assert_eq!(env.authz.webhook_stats().rejected, n + 1);
    // None of them recorded the delivery id: the genuine delivery still applies.
    let ok = env.authz.handle_webhook(&signed("member", "d-1", &body), &body).await.unwrap();
    assert_eq!(ok.applied(), [Invalidation::UserOnRepo(ghauthz::UserId(3), ghauthz::RepoId(101))]);
}

#[tokio::test]
async fn a_replayed_delivery_id_changes_nothing() {
    let env = env().await;
    warm(&env).await;
    let body = std::fs::read(common::fixture_path("webhooks/team_deleted.json")).unwrap();
    let h = signed("team", "5b0d3f7e-cc78-11e3-81ab-4c9367dc0958", &body);
    assert!(matches!(env.authz.handle_webhook(&h, &body).await.unwrap(), WebhookOutcome::Applied(_)));
    warm(&env).await;
    let before = cached(&env);
    assert_eq!(before, everything(&env));
    assert_eq!(env.authz.handle_webhook(&h, &body).await.unwrap(), WebhookOutcome::Duplicate);
    assert_eq!(cached(&env), before, "a redelivery drops nothing");
    let stats = env.authz.webhook_stats();
    assert_eq!((stats.applied, stats.duplicates), (1, 1));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    secret: String,
    delivery: Vec<ExpectedDelivery>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedDelivery {
    file: String,
    event: String,
    #[serde(default)]
    outcome: Option<String>,
    applied: Vec<Invalidation>,
    dropped: Vec<String>,
}

/// "carol/*", "*/dash", "bob/site" against every (user, app) of the world.
fn expand(env: &common::Env, patterns: &[String]) -> BTreeSet<String> {
    everything(env)
        .into_iter()
        .filter(|pair| {
            let (u, a) = pair.split_once('/').unwrap();
            patterns.iter().any(|p| {
                let (pu, pa) = p.split_once('/').unwrap();
                (pu == "*" || pu == u) && (pa == "*" || pa == a)
            })
        })
        .collect()
}

#[tokio::test]
async fn each_fixture_event_invalidates_what_it_should_and_no_more() {
    let text = std::fs::read_to_string(common::fixture_path("webhooks/expected.toml")).unwrap();
    let expected: Expected = toml::from_str(&text).unwrap();
    assert_eq!(expected.secret, SECRET);
    let listed: BTreeSet<&str> = expected.delivery.iter().map(|d| d.file.as_str()).collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(common::fixture_path("webhooks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".json"))
        .collect();
    assert_eq!(on_disk.iter().map(String::as_str).collect::<BTreeSet<_>>(), listed, "every fixture is checked");
    let env = env().await;
    for (i, d) in expected.delivery.iter().enumerate() {
        warm(&env).await;
        let all = everything(&env);
        assert_eq!(cached(&env), all, "{}: warm", d.file);
        let body = std::fs::read(common::fixture_path(&format!("webhooks/{}", d.file))).unwrap();
        let h = signed(&d.event, &format!("fixture-{i}"), &body);
        let outcome = env.authz.handle_webhook(&h, &body).await.unwrap();
        match d.outcome.as_deref() {
            None | Some("applied") => assert_eq!(outcome, WebhookOutcome::Applied(d.applied.clone()), "{}", d.file),
            Some("unknown_event") => assert_eq!(outcome, WebhookOutcome::UnknownEvent, "{}", d.file),
            Some(other) => panic!("{}: unknown outcome `{other}`", d.file),
        }
        let dropped: BTreeSet<String> = all.difference(&cached(&env)).cloned().collect();
        assert_eq!(dropped, expand(&env, &d.dropped), "{}: what it dropped", d.file);
    }
    let stats = env.authz.webhook_stats();
    let unknown = expected.delivery.iter().filter(|d| d.outcome.as_deref() == Some("unknown_event")).count() as u64;
    assert_eq!(stats.unknown_events, unknown);
    assert_eq!(stats.applied, expected.delivery.len() as u64 - unknown);
    assert_eq!(stats.malformed, 0, "every fixture carries the ids its event needs");
}

#[tokio::test]
async fn a_dropped_fact_is_fetched_anew_on_the_next_check() {
    let env = env().await;
    let (carol, dash) = (env.user("carol"), env.app("dash"));
    assert!(env.authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap().is_allowed());
    // GitHub removes carol from the repository, then tells us.
    env.mock.set_world(common::acme_without_carol_on_dashboard());
    let body = std::fs::read(common::fixture_path("webhooks/member_removed.json")).unwrap();
    env.authz.handle_webhook(&signed("member", "d-9", &body), &body).await.unwrap();
    let d = env.authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap();
    assert_eq!((d.source(), d.is_allowed()), (ghauthz::Source::Github, false));
}

#[tokio::test]
async fn a_known_event_without_its_ids_invalidates_everything() {
    let env = env().await;
    warm(&env).await;
    let body = br#"{"action":"removed","member":{"login":"carol"}}"#;
    let outcome = env.authz.handle_webhook(&signed("member", "d-2", body), body).await.unwrap();
    assert_eq!(outcome, WebhookOutcome::Applied(vec![Invalidation::All]));
    assert!(cached(&env).is_empty());
    assert_eq!(env.authz.webhook_stats().malformed, 1);
}

#[tokio::test]
async fn bad_headers_are_refused_and_an_unconfigured_authorizer_verifies_nothing() {
    let env = env().await;
    let body = b"{}";
    let mut h = signed("ping", "d-3", body);
    h.remove("x-github-event");
    assert_eq!(env.authz.handle_webhook(&h, body).await.unwrap_err(), WebhookError::MissingHeader("X-GitHub-Event"));
    let h = signed("ping", "not a guid!", body);
    assert_eq!(env.authz.handle_webhook(&h, body).await.unwrap_err(), WebhookError::InvalidDeliveryId);
    let plain = common::env(common::fixture("acme.toml")).await;
    let err = plain.authz.handle_webhook(&signed("ping", "d-4", body), body).await.unwrap_err();
    assert_eq!((err.clone(), err.kind()), (WebhookError::NotConfigured, "not_configured"));
}

/// Any JSON, within reason: what a payload of a known event could be.
fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z_]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("action".to_owned()),
            Just("id".to_owned()),
            Just("member".to_owned()),
            Just("repository".to_owned()),
            Just("organization".to_owned()),
            Just("owner".to_owned()),
            Just("installation".to_owned()),
            Just("account".to_owned()),
            Just("membership".to_owned()),
            Just("user".to_owned()),
            Just("sender".to_owned()),
            Just("changes".to_owned()),
            Just("repositories_added".to_owned()),
            Just("repositories_removed".to_owned()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(keys, inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One authorizer for every generated case (a mock GitHub each would cost more than the case).
static SHARED: std::sync::LazyLock<(tokio::runtime::Runtime, common::Env)> = std::sync::LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let env = rt.block_on(env());
    (rt, env)
});

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// Whatever a signed payload holds, a known event is applied (possibly as "everything") and
    /// nothing panics; the delivery is recorded once.
    #[test]
    fn any_signed_payload_of_a_known_event_is_applied_without_panicking(
        event in proptest::sample::select(ghauthz::WEBHOOK_EVENTS),
        payload in json_value(),
        raw in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        as_json in proptest::bool::ANY,
    ) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = format!("p-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let (rt, env) = &*SHARED;
        rt.block_on(async {
            let body = if as_json { serde_json::to_vec(&payload).unwrap() } else { raw };
            let first = env.authz.handle_webhook(&signed(event, &id, &body), &body).await;
            let again = env.authz.handle_webhook(&signed(event, &id, &body), &body).await;
            proptest::prop_assert!(matches!(first, Ok(WebhookOutcome::Applied(_))), "{first:?}");
            proptest::prop_assert_eq!(again, Ok(WebhookOutcome::Duplicate));
            Ok(())
        })?;
    }

    /// Whatever the signature header says, only the right digest is accepted, without a panic.
    #[test]
    fn any_wrong_signature_is_refused(sig in "[ -~]{0,80}") {
        let verifier = ghauthz::WebhookVerifier::new(ghauthz::WebhookSecret::new(SECRET.into()).unwrap());
        let body = b"{}";
        let result = verifier.verify(&headers("ping", "s-1", Some(("x-hub-signature-256", &sig))), body);
        if sig.trim() == sign(SECRET, body) {
            proptest::prop_assert!(result.is_ok());
        } else {
            proptest::prop_assert_eq!(result.unwrap_err().kind(), "bad_signature");
        }
    }
}

#[tokio::test]
async fn a_delivery_signed_with_the_previous_secret_is_accepted_during_a_rotation() {
    let secret = |s: &str| ghauthz::WebhookSecret::new(s.into()).unwrap();
    let world = common::fixture("acme.toml");
    let mock = ghauthz::world::MockGithub::start(world).await.unwrap();
    let build = |previous: Option<&str>| {
        let b = ghauthz::Authorizer::builder(mock.github_config()).webhook_secret(secret("the new secret"));
        match previous {
            Some(p) => b.previous_webhook_secret(secret(p)),
            None => b,
        }
        .build()
        .unwrap()
    };
    let body = std::fs::read(common::fixture_path("webhooks/ping.json")).unwrap();
    let (rotating, rotated) = (build(Some(SECRET)), build(None));
    assert!(rotating.handle_webhook(&signed("ping", "r-1", &body), &body).await.is_ok(), "the previous secret");
    let err = rotated.handle_webhook(&signed("ping", "r-2", &body), &body).await.unwrap_err();
    assert_eq!(err.kind(), "bad_signature", "once the previous secret is dropped");
    let other = build(Some("yet another secret"));
    assert_eq!(other.handle_webhook(&signed("ping", "r-3", &body), &body).await.unwrap_err().kind(), "bad_signature");
}

#[tokio::test]
async fn a_body_larger_than_github_sends_is_refused_before_it_is_read() {
    let env = env().await;
    let body = vec![b' '; ghauthz::MAX_WEBHOOK_BODY + 1];
    let err = env.authz.handle_webhook(&signed("ping", "big-1", &body), &body).await.unwrap_err();
    assert_eq!(err.kind(), "too_large");
    let body = vec![b' '; ghauthz::MAX_WEBHOOK_BODY];
    let err = env.authz.handle_webhook(&signed("ping", "big-2", &body), &body).await.err();
    assert_ne!(err.map(|e| e.kind()), Some("too_large"), "25 MB itself is what GitHub may send");
}

/// What each event and action of GitHub's published examples must invalidate, by kind; an event
/// not listed is one ghauthz does not act on.
fn expected_kinds(event: &str, action: &str) -> Option<&'static [&'static str]> {
    Some(match (event, action) {
        ("ping", _) | ("organization", "member_invited") | ("org_block", "unblocked") => &[],
        // Only the description or the default branch changed in these examples.
        ("repository", "edited") => &[],
        ("member", _) => &["user_on_repo"],
        ("membership", _) | ("organization", "member_added") | ("org_block", "blocked") => &["user_in_owner"],
        ("organization", "renamed") | ("installation", _) | ("fork", _) => &["owner"],
        ("repository", "created") | ("team", "created" | "deleted") => &["owner"],
        // Its `changes` is empty: what changed is not said, so the organization's facts go.
        ("team", "edited") => &["owner"],
        ("team", _) | ("team_add", _) | ("public", _) | ("repository", _) | ("installation_repositories", _) => {
            &["repo"]
        }
        ("github_app_authorization", _) => &["user"],
        _ => return None,
    })
}

/// Every example payload of `@octokit/webhooks-examples` 7.6.1 (329 payloads over 58 events,
/// `fixtures/webhooks/examples/`), signed and delivered: each event ghauthz acts on applies
/// exactly the kinds of invalidation its action calls for, none is taken for malformed (which
/// would invalidate everything), and every other event is ignored as unknown.
#[tokio::test]
async fn every_payload_github_publishes_is_understood() {
    #[derive(Deserialize)]
    struct Event {
        event: String,
        payloads: Vec<serde_json::Value>,
    }
    let text = std::fs::read(common::fixture_path("webhooks/examples/webhooks-examples.json")).unwrap();
    let events: Vec<Event> = serde_json::from_slice(&text).unwrap();
    assert_eq!((events.len(), events.iter().map(|e| e.payloads.len()).sum::<usize>()), (58, 329));
    let env = env().await;
    let (mut applied, mut acted_on) = (0, BTreeSet::new());
    for e in &events {
        for (i, payload) in e.payloads.iter().enumerate() {
            let body = serde_json::to_vec(payload).unwrap();
            let id = format!("example-{}-{i}", e.event.replace('_', "-"));
            let outcome = env.authz.handle_webhook(&signed(&e.event, &id, &body), &body).await.unwrap();
            let action = payload.get("action").and_then(|a| a.as_str()).unwrap_or("");
            let what = format!("{} {action} #{i}", e.event);
            match expected_kinds(&e.event, action) {
                Some(kinds) => {
                    let WebhookOutcome::Applied(invs) = &outcome else { panic!("{what}: {outcome:?}") };
                    let got: BTreeSet<String> = invs.iter().map(|inv| kind(inv).to_owned()).collect();
                    let want: BTreeSet<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
                    assert_eq!(got, want, "{what}: {invs:?}");
                    applied += 1;
                    acted_on.insert(e.event.clone());
                }
                None => assert_eq!(outcome, WebhookOutcome::UnknownEvent, "{what}"),
            }
        }
    }
    let stats = env.authz.webhook_stats();
    assert_eq!((stats.malformed, stats.applied), (0, applied), "{stats:?}");
    assert_eq!(acted_on.len(), ghauthz::WEBHOOK_EVENTS.len(), "an example of every event acted on: {acted_on:?}");
}

fn kind(inv: &Invalidation) -> &'static str {
    match inv {
        Invalidation::User(_) => "user",
        Invalidation::UserOnRepo(..) => "user_on_repo",
        Invalidation::UserInOwner(..) => "user_in_owner",
        Invalidation::Repo(_) => "repo",
        Invalidation::Owner(_) => "owner",
        _ => "all",
    }
}

/// Opt-in: while webhooks are heard (a delivery applied within the last hour), facts live the
/// longer lifetimes; before the first delivery and an hour after the last, the ordinary ones.
#[tokio::test]
async fn longer_lifetimes_apply_only_while_webhooks_are_heard() {
    use ghauthz::{CacheConfig, Source};
    use std::time::Duration;
    let minutes = |m: u64| Duration::from_secs(60 * m);
    let cache = CacheConfig::default().with_lifetimes_while_webhooks_heard(minutes(30), minutes(10));
    let opts = common::Opts { webhook_secret: Some(SECRET), cache, ..Default::default() };
    let env = common::env_with(common::fixture("acme.toml"), opts).await;
    let (carol, zed, dash) = (env.user("carol"), env.user("zed"), env.app("dash"));
    let source = |p: ghauthz::Principal| {
        let (authz, dash) = (env.authz.clone(), dash.clone());
        async move { authz.check(&CheckRequest::new(&p, &dash, Capability::View)).await.unwrap().source() }
    };
    let erin = env.user("erin");
    // Nothing heard yet: a role lives 5 minutes.
    assert_eq!(source(carol.clone()).await, Source::Github);
    env.advance_secs(200);
    assert_eq!(source(erin.clone()).await, Source::Github, "erin's role, confirmed before anything is heard");
    env.advance_secs(101);
    assert_eq!(source(carol.clone()).await, Source::Github, "the ordinary lifetime");
    // A ping is heard: the role fetched now lives 30 minutes, "no role" 10.
    let ping = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    env.authz.handle_webhook(&signed("ping", "p-1", ping), ping).await.unwrap();
    // zed's "no role", from the roster carol's check just fetched.
    assert_eq!(source(zed.clone()).await, Source::Cache);
    env.advance_secs(9 * 60);
    assert_eq!((source(carol.clone()).await, source(zed.clone()).await), (Source::Cache, Source::Cache));
    // erin's role was confirmed before anything was heard: past its ordinary lifetime, it is
    // answered anew, from the roster fetched at the ping (9 minutes old), not kept (10:41 old).
    let d = env.authz.check(&CheckRequest::new(&erin, &dash, Capability::View)).await.unwrap();
    assert_eq!(d.age(), Duration::from_secs(9 * 60), "confirmed before: the ordinary lifetime");
    env.advance_secs(2 * 60);
    assert_eq!(source(zed.clone()).await, Source::Github, "no role: 10 minutes");
    env.advance_secs(18 * 60);
    assert_eq!(source(carol.clone()).await, Source::Cache, "29 minutes old");
    let d = env.authz.check(&CheckRequest::new(&carol, &dash, Capability::Deploy)).await.unwrap();
    assert_eq!(d.source(), Source::Github, "deploy still rests on a fact at most 60 s old");
    // 59 minutes after the delivery, a role fetched lives 30 minutes ...
    env.advance_secs(30 * 60);
    assert_eq!(source(carol.clone()).await, Source::Github, "30 minutes old: fetched again");
    // ... until an hour after the delivery: nothing heard since, the ordinary lifetimes again.
    env.advance_secs(6 * 60);
    assert_eq!(source(carol.clone()).await, Source::Github, "6 minutes old, 5 minutes again");
}
