//! GitHub failures: unavailable with `retry_after`, never an allow, never a cached
//! denial, no hammering while backing off, and recovery once the fault clears.
#![cfg(feature = "world")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use crate::common;
use ghauthz::CheckRequest;

use std::time::Duration;

use ghauthz::world::World;
use ghauthz::{Capability, CheckError, GithubError, Source, UnavailableCause};

fn fault_world(status: &str, retry_after: Option<u64>, times: u64) -> World {
    let retry = retry_after.map(|s| format!("retry_after = {s}\n")).unwrap_or_default();
    let text = format!(
        r#"
version = 1
now = "2026-11-22T10:00:00Z"
[[users]]
id = 3
login = "carol"
[[users]]
id = 4
login = "dave"
[[repos]]
id = 105
owner = "carol"
name = "flaky"
private = true
roles = {{ dave = "write" }}
[[faults]]
path = "/repos/carol/flaky/**"
status = {status}
times = {times}
{retry}
[[apps]]
id = "flaky"
repo = "carol/flaky"
repo_id = 105
branch = "main"
main_file = "app.py"
visibility = "private"
deployed_by = "carol"
"#
    );
    World::from_toml_str(&text, ".").unwrap()
}

struct Case {
    status: &'static str,
    retry_after: Option<u64>,
    times: u64,
    cause: UnavailableCause,
    want_retry_after: Option<Duration>,
    /// Requests the first, failing check may send (the original plus inline retries).
    first_check_requests: u64,
}

async fn run(case: Case) {
    let opts = common::Opts {
        github: Box::new(|m| {
            m.github_config()
                .with_request_timeout(Duration::from_millis(300))
                .with_retry_backoff(Duration::from_millis(20))
        }),
        ..Default::default()
    };
    let env = common::env_with(fault_world(case.status, case.retry_after, case.times), opts).await;
    let (dave, app) = (env.user("dave"), env.app("flaky"));
    let what = case.status;

    let err = env.authz.check(&CheckRequest::new(&dave, &app, Capability::View)).await.unwrap_err();
    let CheckError::Github(GithubError::Unavailable { cause, retry_after }) = &err else { panic!("{what}: {err:?}") };
    assert_eq!(*cause, case.cause, "{what}");
    if case.want_retry_after.is_some() {
        assert_eq!(*retry_after, case.want_retry_after, "{what}: retry_after where sent");
    }
    assert!(err.is_unavailable());
    let sent = env.mock.total_requests();
    assert_eq!(sent, case.first_check_requests, "{what}: requests in the failing check");

    // While backing off: no request, still unavailable, and no cached denial.
    for _ in 0..10 {
        let again = env.authz.check(&CheckRequest::new(&dave, &app, Capability::View)).await.unwrap_err();
        assert!(again.is_unavailable(), "{what}: {again:?}");
        assert!(again.retry_after().is_some(), "{what}: backing off says until when");
    }
    assert_eq!(env.mock.total_requests(), sent, "{what}: no request while backing off");
    assert!(
        env.authz.check_cached(&CheckRequest::new(&dave, &app, Capability::View)).is_none(),
        "{what}: nothing cached"
    );

    // The fault has cleared; once the wait is over the next check succeeds.
    env.advance_secs(case.want_retry_after.map_or(6, |d| d.as_secs() + 1));
    let d = env.authz.check(&CheckRequest::new(&dave, &app, Capability::View)).await.unwrap();
    assert_eq!((d.is_allowed(), d.source()), (true, Source::Github), "{what}");
}

#[tokio::test]
async fn bad_gateway_is_unavailable_then_recovers() {
    // max_retries = 1: the check retries a 5xx once, then gives up.
    run(Case {
        status: "502",
        retry_after: None,
        times: 2,
        cause: UnavailableCause::ServerError(502),
        want_retry_after: None,
        first_check_requests: 2,
    })
    .await;
}

#[tokio::test]
async fn a_single_5xx_is_retried_within_the_check() {
    let env = common::env(fault_world("503", None, 1)).await;
    let d = env.authz.check(&CheckRequest::new(&env.user("dave"), &env.app("flaky"), Capability::View)).await.unwrap();
    assert!(d.is_allowed());
    assert_eq!(env.mock.requests("/repos/carol/flaky"), 2);
}

#[tokio::test]
async fn timeout_is_unavailable_then_recovers() {
    run(Case {
        status: "\"timeout\"",
        retry_after: None,
        times: 1,
        cause: UnavailableCause::Timeout,
        want_retry_after: None,
        first_check_requests: 1,
    })
    .await;
}

#[tokio::test]
async fn primary_rate_limit_waits_for_the_reset() {
    run(Case {
        status: "403",
        retry_after: None,
        times: 1,
        cause: UnavailableCause::RateLimited,
        want_retry_after: Some(Duration::from_secs(60)),
        first_check_requests: 1,
    })
    .await;
}

#[tokio::test]
async fn secondary_rate_limit_honours_retry_after() {
    run(Case {
        status: "429",
        retry_after: Some(30),
        times: 1,
        cause: UnavailableCause::SecondaryRateLimit,
        want_retry_after: Some(Duration::from_secs(30)),
        first_check_requests: 1,
    })
    .await;
}

#[tokio::test]
async fn a_rate_limit_holds_back_every_key_on_the_same_credentials() {
    let env = common::env(common::fixture("faults.toml")).await;
    let carol = env.user("carol");
    let err = env.authz.check(&CheckRequest::new(&carol, &env.app("busy"), Capability::View)).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    let before = env.mock.total_requests();
    // Another repository, untouched by the fault: still not asked while the limit lasts.
    let other = env.authz.check(&CheckRequest::new(&carol, &env.app("flaky"), Capability::View)).await.unwrap_err();
    assert!(other.is_unavailable());
    assert_eq!(env.mock.total_requests(), before);
}

#[tokio::test]
async fn the_flaky_fixture_recovers_after_its_two_failures() {
    let env = common::env(common::fixture("faults.toml")).await;
    let (carol, flaky) = (env.user("carol"), env.app("flaky"));
    assert!(env.authz.check(&CheckRequest::new(&carol, &flaky, Capability::Edit)).await.unwrap_err().is_unavailable());
    env.advance_secs(6);
    assert!(env.authz.check(&CheckRequest::new(&carol, &flaky, Capability::Edit)).await.unwrap().is_allowed());
}

/// At most `max_in_flight` requests are in flight at once per token: the others wait their
/// turn, and every check is still answered. Eight users' first checks at once (eight keys,
/// nothing coalesces) against a GitHub that holds each answer 200 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_per_token_are_bounded() {
    for (bound, most) in [(2, 2), (100, 8)] {
        let opts = common::Opts {
            github: Box::new(move |m| m.github_config().with_max_in_flight(bound)),
            ..common::per_user()
        };
        let env = common::env_with(common::fixture("acme.toml"), opts).await;
        // Per user, eight keys; the repository's identity first, so that only the eight roles
        // are asked at once.
        env.authz.check(&CheckRequest::new(&env.user("zed"), &env.app("dash"), Capability::Edit)).await.unwrap();
        env.mock.set_response_delay(Duration::from_millis(200));
        let logins = ["alice", "bob", "carol", "dave", "erin", "frank", "olga", "mallory"];
        let checks = logins.map(|login| {
            let (authz, user, app) = (env.authz.clone(), env.user(login), env.app("dash"));
            tokio::spawn(async move { authz.check(&CheckRequest::new(&user, &app, Capability::Edit)).await })
        });
        for check in checks {
            check.await.unwrap().unwrap();
        }
        assert_eq!(env.mock.most_in_flight(), most, "bound {bound}");
    }
}

/// `stats()` says the installation's budget as GitHub's last answer said it.
#[tokio::test]
async fn stats_say_the_budget_github_last_stated() {
    let env = common::env(common::fixture("acme.toml")).await;
    assert_eq!(env.authz.stats().github_budget, None, "nothing asked yet");
    env.authz.check(&CheckRequest::new(&env.user("carol"), &env.app("dash"), Capability::Edit)).await.unwrap();
    let budget = env.authz.stats().github_budget.expect("a budget");
    assert_eq!((budget.limit, budget.remaining), (5000, env.mock.rate_limit_remaining()));
    assert!(budget.reset > env.mock.clock().now(), "{budget:?}");
}
