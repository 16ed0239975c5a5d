//! One GitHub App across its installations (`GithubAuth::App` without an installation), against
//! the mock GitHub's `[[installations]]`: each repository through the installation on its
//! owner's account, found with the App's JWT and kept; a token, budget and gate per
//! installation; no installation is a denial with its own reason; a suspended one fails closed.
#![cfg(feature = "world")]

use std::time::Duration;

use crate::common;
use ghauthz::CheckRequest;
use ghauthz::world::World;
use ghauthz::{Capability, CheckError, Decision, GithubError, NoAccessDetail, Reason};

const SECRET: &str = "It's a Secret to Everybody";

/// acme.toml with the App installed as `installations` (TOML) says.
fn installed(installations: &str) -> World {
    let installations = installations.to_owned();
    common::acme_with(move |t| t + &installations)
}

/// An authorizer acting as App 42 across the world's installations.
async fn app_env(world: World) -> common::Env {
    let pem = std::fs::read(common::fixture_path("keys/github-app-test.pem")).unwrap();
    let key = ghauthz::AppPrivateKey::from_pem(&pem).unwrap();
    let opts = common::Opts {
        github: Box::new(move |m| m.app_config(42, key.clone(), None)),
        webhook_secret: Some(SECRET),
        ..Default::default()
    };
    common::env_with(world, opts).await
}

/// `login`'s check of `cap` on `app`.
async fn ask(env: &common::Env, login: &str, app: &str, cap: Capability) -> Result<Decision, CheckError> {
    let (user, app) = (env.user(login), env.app(app));
    env.authz.check(&CheckRequest::new(&user, &app, cap)).await
}

async fn check(env: &common::Env, login: &str, app: &str, cap: Capability) -> Decision {
    ask(env, login, app, cap).await.unwrap()
}

fn minted(env: &common::Env, installation: u64) -> u64 {
    env.mock.requests(&format!("/app/installations/{installation}/access_tokens"))
}

fn detail(reason: &Reason) -> Option<NoAccessDetail> {
    match reason {
        Reason::NoAccess { detail } => Some(*detail),
        _ => None,
    }
}

/// Each repository goes through its owner's installation, found once per account with the
/// App's JWT; each installation mints its own token and spends its own budget; decisions are
/// the world's; a repository no installation covers is denied as `no_installation`, kept like
/// any negative fact.
#[tokio::test]
async fn each_repository_goes_through_its_owners_installation() {
    let env = app_env(installed(
        r#"
[[installations]]
id = 401
account = "acme"
repositories = ["dashboard", "website"]

[[installations]]
id = 402
account = "alice"
"#,
    ))
    .await;
    assert!(check(&env, "erin", "dash", Capability::Deploy).await.is_allowed());
    assert!(check(&env, "carol", "site", Capability::Edit).await.is_allowed());
    assert!(!check(&env, "carol", "dash", Capability::Deploy).await.is_allowed());
    assert!(check(&env, "alice", "notes", Capability::Delete).await.is_allowed());
    assert_eq!(env.mock.requests("/repos/acme/dashboard/installation"), 1, "{:?}", env.mock.request_counts());
    assert_eq!(env.mock.requests("/repos/acme/website/installation"), 0, "acme's installation was found already");
    assert_eq!(env.mock.requests("/repos/alice/notes/installation"), 1);
    assert_eq!((minted(&env, 401), minted(&env, 402)), (1, 1), "a token per installation, kept");
    let (acme, alice) =
        (env.mock.installation_rate_limit_remaining(401), env.mock.installation_rate_limit_remaining(402));
    assert!(acme < 5000 && alice < 5000, "each spent its own budget: {acme} {alice}");
    let budgets = env.authz.github_installation_budgets();
    let ids: Vec<u64> = budgets.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 2, "{budgets:?}");
    for (id, budget) in &budgets {
        assert_eq!(budget.remaining, env.mock.installation_rate_limit_remaining(*id), "installation {id}");
    }
    assert_eq!(env.authz.stats().github_budget, None, "no one budget across installations");

    // acme/legacy is not selected on acme's installation: no installation covers it.
    let d = check(&env, "erin", "legacy", Capability::View).await;
    assert_eq!(detail(d.reason()), Some(NoAccessDetail::NoInstallation), "{d:?}");
    assert_eq!(serde_json::to_value(&d).unwrap()["reason"]["detail"], "no_installation");
    let asked = env.mock.total_requests();
    let d = check(&env, "carol", "legacy", Capability::View).await;
    assert_eq!(detail(d.reason()), Some(NoAccessDetail::NoInstallation));
    assert_eq!(env.mock.total_requests(), asked, "kept, as any fact about the repository");
    assert_eq!(env.mock.installation_rate_limit_remaining(402), alice, "alice's budget paid for none of acme's");
}

/// An account the App is not installed on: every repository there is denied as
/// `no_installation`, after one lookup, and no token is minted for it.
#[tokio::test]
async fn an_account_without_the_app_is_no_installation() {
    let env = app_env(installed("[[installations]]\nid = 402\naccount = \"alice\"\n")).await;
    let d = check(&env, "erin", "dash", Capability::View).await;
    assert!(!d.is_allowed());
    assert_eq!(detail(d.reason()), Some(NoAccessDetail::NoInstallation), "{d:?}");
    assert_eq!(env.mock.requests("/repos/acme/dashboard/installation"), 1);
    assert_eq!(minted(&env, 402), 0, "nothing asked with alice's installation");
    assert!(check(&env, "alice", "notes", Capability::Edit).await.is_allowed());
}

/// A suspended installation's checks fail closed with an error that names it, and nothing is
/// minted for it; other installations' checks are unaffected. An installation suspended while
/// in use is found out from its token's refusal.
#[tokio::test]
async fn a_suspended_installation_fails_closed_and_the_others_go_on() {
    let healthy =
        "[[installations]]\nid = 401\naccount = \"acme\"\n\n[[installations]]\nid = 402\naccount = \"alice\"\n";
    let env = app_env(installed(&format!("{healthy}suspended = true\n"))).await;
    let e = ask(&env, "alice", "notes", Capability::Edit).await.unwrap_err();
    assert!(matches!(e, CheckError::Github(GithubError::InstallationSuspended { installation_id: 402 })), "{e:?}");
    assert_eq!(e.kind(), "installation_suspended");
    assert_eq!(minted(&env, 402), 0, "the lookup said it is suspended: nothing minted");
    assert!(check(&env, "erin", "dash", Capability::Deploy).await.is_allowed());

    // In use, then suspended: its token is refused, and the check says why.
    let env = app_env(installed(healthy)).await;
    assert!(check(&env, "alice", "notes", Capability::Edit).await.is_allowed());
    env.mock.set_world(installed(&format!("{healthy}suspended = true\n")));
    env.advance_secs(600); // past what the cache keeps
    let e = ask(&env, "alice", "notes", Capability::Edit).await.unwrap_err();
    assert!(matches!(e, CheckError::Github(GithubError::InstallationSuspended { installation_id: 402 })), "{e:?}");
    let minted_402 = minted(&env, 402);
    env.advance_secs(30); // past the check's own backoff
    let e = ask(&env, "alice", "notes", Capability::Edit).await.unwrap_err();
    assert_eq!(e.kind(), "installation_suspended", "found again, suspended: {e:?}");
    assert_eq!(minted(&env, 402), minted_402, "nothing more asked with its token");
    assert!(check(&env, "erin", "dash", Capability::Deploy).await.is_allowed(), "acme's installation is not held up");
    // Unsuspended: an `installation` delivery for alice's account brings it back at once.
    env.mock.set_world(installed(healthy));
    let body = br#"{"action":"unsuspend","installation":{"id":402,"account":{"id":1,"login":"alice"}}}"#;
    let headers = common::webhook_headers("installation", "d-unsuspend", SECRET, body);
    env.authz.handle_webhook(&headers, body).await.unwrap();
    env.advance_secs(30); // past the check's own backoff
    assert!(check(&env, "alice", "notes", Capability::Edit).await.is_allowed());
}

/// One installation's rate limit closes its own gate only: its next check fails without a
/// request, while another installation's checks are asked and answered.
#[tokio::test]
async fn one_installations_exhausted_budget_never_blocks_another() {
    let env = app_env(installed(
        r#"
[[installations]]
id = 401
account = "acme"

[[installations]]
id = 402
account = "alice"

[[faults]]
path = "/repos/alice/notes"
status = 403
retry_after = 600
"#,
    ))
    .await;
    let e = ask(&env, "alice", "notes", Capability::Edit).await.unwrap_err();
    assert_eq!(e.kind(), "rate_limited", "{e:?}");
    let asked = env.mock.requests("/repos/alice/notes");
    let e = ask(&env, "alice", "notes", Capability::Edit).await.unwrap_err();
    assert!(
        matches!(e, CheckError::Github(GithubError::Unavailable { cause: ghauthz::UnavailableCause::BackingOff, .. })),
        "{e:?}"
    );
    assert_eq!(env.mock.requests("/repos/alice/notes"), asked, "alice's installation waits out its limit");
    let before = env.mock.total_requests();
    let d = check(&env, "erin", "dash", Capability::Deploy).await;
    assert!(d.is_allowed(), "{d:?}");
    assert!(env.mock.total_requests() > before, "acme's check was asked of GitHub");
}

/// Installation tokens are kept for their hour and replaced five minutes before it ends, by the
/// authorizer's clock: a check an hour and more after the first mint still holds a token GitHub
/// accepts.
#[tokio::test]
async fn installation_tokens_are_renewed_across_the_hour() {
    let env = app_env(installed("[[installations]]\nid = 401\naccount = \"acme\"\n")).await;
    let mut mints = Vec::new();
    for minutes in [0, 30, 26, 10, 20] {
        env.clock.advance(Duration::from_secs(60 * minutes));
        // Every step is past what the cache keeps: each check asks GitHub.
        let d = check(&env, "erin", "dash", Capability::Deploy).await;
        assert!(d.is_allowed(), "after {minutes} more minutes: {d:?}");
        mints.push(minted(&env, 401));
    }
    // 0 and 30 minutes: the first token; 56: renewed; 66: that one still; 86: still (30 min old).
    assert_eq!(mints, [1, 1, 2, 2, 2]);
}

/// Discovery is undone by deliveries: a repository given to the account's installation is
/// covered at once, with no wait for what was kept to expire.
#[tokio::test]
async fn a_repository_given_to_the_installation_is_covered_on_the_delivery() {
    let selected = |repos: &str| {
        installed(&format!("[[installations]]\nid = 401\naccount = \"acme\"\nrepositories = [{repos}]\n"))
    };
    let env = app_env(selected(r#""dashboard""#)).await;
    let d = check(&env, "carol", "site", Capability::Edit).await;
    assert_eq!(detail(d.reason()), Some(NoAccessDetail::NoInstallation), "{d:?}");
    env.mock.set_world(selected(r#""dashboard", "website""#));
    assert_eq!(
        detail(check(&env, "carol", "site", Capability::Edit).await.reason()),
        Some(NoAccessDetail::NoInstallation),
        "kept"
    );
    let body = br#"{"action":"added","installation":{"id":401,"account":{"id":5000,"login":"acme"}},"repository_selection":"selected","repositories_added":[{"id":102,"name":"website","full_name":"acme/website"}],"repositories_removed":[]}"#;
    let headers = common::webhook_headers("installation_repositories", "d-added", SECRET, body);
    env.authz.handle_webhook(&headers, body).await.unwrap();
    let d = check(&env, "carol", "site", Capability::Edit).await;
    assert!(d.is_allowed(), "{d:?}");
}

/// A check by GitHub id before any installation is in use: the account is looked up with an
/// installation from `GET /app/installations`, the first not suspended.
#[tokio::test]
async fn an_account_lookup_needs_no_repository() {
    let env = app_env(installed(
        "[[installations]]\nid = 401\naccount = \"acme\"\nsuspended = true\n\n[[installations]]\nid = 402\naccount = \"alice\"\n",
    ))
    .await;
    let carol = env.authz.github_user("carol").await.unwrap().unwrap();
    assert_eq!(carol.id.0, 3);
    assert_eq!(env.mock.requests("/app/installations"), 1);
    assert_eq!((minted(&env, 401), minted(&env, 402)), (0, 1), "asked with alice's installation");
    assert!(env.authz.github_user("acme").await.unwrap().is_none(), "an organization");
    assert_eq!(env.mock.requests("/app/installations"), 1, "an installation in use is reused");
}
