//! Roles inherited from GitHub, reached in every way GitHub grants them.
#![cfg(feature = "world")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use crate::common;
use ghauthz::CheckRequest;

use ghauthz::{
    CacheConfig, Capability, GithubUser, Lookup, NoAccessDetail, Policy, Principal, Reason, Role, Source, UserId,
};

#[tokio::test]
async fn org_owner_without_a_direct_role_deploys() {
    let env = common::env(common::fixture("acme.toml")).await;
    let d = env.authz.check(&CheckRequest::new(&env.user("olga"), &env.app("dash"), Capability::Deploy)).await.unwrap();
    assert!(d.is_allowed(), "{d:?}");
    assert!(matches!(d.reason(), Reason::GithubRole { role: Role::Admin, .. }));
}

#[tokio::test]
async fn team_maintain_edits_but_cannot_deploy() {
    let env = common::env(common::fixture("acme.toml")).await;
    let (bob, dash) = (env.user("bob"), env.app("dash"));
    assert!(env.authz.check(&CheckRequest::new(&bob, &dash, Capability::Edit)).await.unwrap().is_allowed());
    let deploy = env.authz.check(&CheckRequest::new(&bob, &dash, Capability::Deploy)).await.unwrap();
    assert!(!deploy.is_allowed());
    assert_eq!(
        deploy.reason(),
        &Reason::GithubRole {
            role: Role::Maintain,
            role_name: ghauthz::RoleName::Standard(Role::Maintain),
            required: Role::Admin
        }
    );
}

#[tokio::test]
async fn custom_role_on_write_edits_and_reports_its_name() {
    let env = common::env(common::fixture("acme.toml")).await;
    let d = env.authz.check(&CheckRequest::new(&env.user("rick"), &env.app("dash"), Capability::Edit)).await.unwrap();
    assert!(d.is_allowed());
    let Reason::GithubRole { role, role_name, .. } = d.reason() else { panic!("{d:?}") };
    assert_eq!((*role, role_name.as_str()), (Role::Write, "release-manager"));
}

#[tokio::test]
async fn triage_cannot_view_a_private_app() {
    // From the roster, which lists `write` and up: dave is not on it.
    let env = common::env(common::fixture("acme.toml")).await;
    let d = env.authz.check(&CheckRequest::new(&env.user("dave"), &env.app("dash"), Capability::View)).await.unwrap();
    assert!(!d.is_allowed());
    assert_eq!(d.reason(), &Reason::NoAccess { detail: NoAccessDetail::NotOnRoster });
    assert_eq!(d.lookup(), Some(Lookup::Roster));
    // Asked alone, GitHub names his role.
    let env = common::env_with(common::fixture("acme.toml"), common::per_user()).await;
    let d = env.authz.check(&CheckRequest::new(&env.user("dave"), &env.app("dash"), Capability::View)).await.unwrap();
    assert!(!d.is_allowed());
    assert!(matches!(d.reason(), Reason::GithubRole { role: Role::Triage, required: Role::Write, .. }));
    assert_eq!(d.lookup(), Some(Lookup::User));
}

#[tokio::test]
async fn owner_of_a_user_owned_repository_is_admin_and_others_are_not() {
    for rosters in [true, false] {
        let opts = common::Opts { cache: CacheConfig::default().with_rosters(rosters), ..Default::default() };
        let env = common::env_with(common::fixture("acme.toml"), opts).await;
        let notes = env.app("notes");
        assert!(
            env.authz
                .check(&CheckRequest::new(&env.user("alice"), &notes, Capability::Delete))
                .await
                .unwrap()
                .is_allowed()
        );
        let bob = env.authz.check(&CheckRequest::new(&env.user("bob"), &notes, Capability::View)).await.unwrap();
        let zed = env.authz.check(&CheckRequest::new(&env.user("zed"), &notes, Capability::View)).await.unwrap();
        assert!(!bob.is_allowed() && !zed.is_allowed());
        if rosters {
            // Neither is on the roster, which lists `write` and up.
            assert_eq!(bob.reason(), &Reason::NoAccess { detail: NoAccessDetail::NotOnRoster });
            assert_eq!(zed.reason(), &Reason::NoAccess { detail: NoAccessDetail::NotOnRoster });
        } else {
            assert!(matches!(bob.reason(), Reason::GithubRole { role: Role::Read, .. }));
            assert_eq!(zed.reason(), &Reason::NoAccess { detail: NoAccessDetail::NoRole });
        }
    }
}

/// A policy that grants something to `read` has its rosters list `read` and up.
#[tokio::test]
async fn base_permission_reaches_members_only() {
    let policy: Policy = toml::from_str(r#"view = "read""#).unwrap();
    for rosters in [true, false] {
        let cache = CacheConfig::default().with_rosters(rosters);
        let opts = common::Opts { cache, policy: policy.clone(), ..Default::default() };
        let env = common::env_with(common::fixture("acme.toml"), opts).await;
        let dash = env.app("dash");
        let mallory = env.authz.check(&CheckRequest::new(&env.user("mallory"), &dash, Capability::View)).await.unwrap();
        assert!(mallory.is_allowed(), "{mallory:?}");
        assert!(matches!(mallory.reason(), Reason::GithubRole { role: Role::Read, .. }));
        let zed = env.authz.check(&CheckRequest::new(&env.user("zed"), &dash, Capability::View)).await.unwrap();
        assert_eq!(zed.reason().kind(), "no_access");
        assert!(!zed.is_allowed());
        let lookup = if rosters { Lookup::Roster } else { Lookup::User };
        assert_eq!((mallory.lookup(), zed.lookup()), (Some(lookup), Some(lookup)));
    }
}

#[tokio::test]
async fn a_moved_capability_follows_the_policy() {
    let policy: Policy = toml::from_str(r#"deploy = "maintain""#).unwrap();
    let env = common::env_with(common::fixture("acme.toml"), common::Opts { policy, ..Default::default() }).await;
    let d = env.authz.check(&CheckRequest::new(&env.user("bob"), &env.app("dash"), Capability::Deploy)).await.unwrap();
    assert!(d.is_allowed(), "{d:?}");
    assert!(toml::from_str::<Policy>(r#"deploy = "owner""#).is_err(), "unknown roles are refused");
    assert!(toml::from_str::<Policy>(r#"deplyo = "admin""#).is_err(), "unknown fields are refused");
}

#[tokio::test]
async fn a_renamed_repository_is_followed() {
    let env = common::env(common::fixture("acme.toml")).await;
    let d =
        env.authz.check(&CheckRequest::new(&env.user("carol"), &env.app("analytics"), Capability::Edit)).await.unwrap();
    assert!(d.is_allowed(), "{d:?}");
    assert_eq!(d.source(), Source::Github);
    assert_eq!(env.mock.requests("/repos/acme/analytics"), 1, "the old name answers 301");
    assert_eq!(env.mock.requests("/repositories/103"), 1, "the redirect is followed");
    assert_eq!(env.mock.requests("/repositories/103/collaborators"), 1, "and the id route is asked");
    assert_eq!((d.lookup(), env.authz.stats().roster_requests), (Some(Lookup::Roster), 1));
    let env = common::env_with(common::fixture("acme.toml"), common::per_user()).await;
    let d =
        env.authz.check(&CheckRequest::new(&env.user("carol"), &env.app("analytics"), Capability::Edit)).await.unwrap();
    assert!(d.is_allowed(), "{d:?}");
    assert_eq!(env.mock.requests("/repositories/103/collaborators/carol/permission"), 1, "per user too");
}

#[tokio::test]
async fn a_replaced_repository_is_denied_even_to_its_new_admin() {
    let env = common::env(common::fixture("acme.toml")).await;
    let d =
        env.authz.check(&CheckRequest::new(&env.user("carol"), &env.app("legacy"), Capability::View)).await.unwrap();
    assert!(!d.is_allowed());
    assert_eq!(d.reason(), &Reason::RepoReplaced { deployed: ghauthz::RepoId(150), current: ghauthz::RepoId(104) });
    assert_eq!(
        env.mock.requests_matching("/repos/acme/legacy/collaborators/**"),
        0,
        "no permission asked of the wrong repository"
    );
}

#[tokio::test]
async fn public_apps_are_open_without_asking_github() {
    let env = common::env(common::fixture("acme.toml")).await;
    let site = env.app("site");
    for p in [Principal::Anonymous, env.user("zed")] {
        let d = env.authz.check(&CheckRequest::new(&p, &site, Capability::View)).await.unwrap();
        assert_eq!((d.is_allowed(), d.reason().kind(), d.source()), (true, "public_app", Source::Store));
    }
    assert!(
        !env.authz
            .check(&CheckRequest::new(&Principal::Anonymous, &site, Capability::Edit))
            .await
            .unwrap()
            .is_allowed()
    );
    assert_eq!(env.mock.total_requests(), 0);
}

#[tokio::test]
async fn a_login_that_now_belongs_to_someone_else_fails_closed() {
    // The control plane still knows user 999 as "erin", but GitHub says "erin" is user 5.
    let stale = Principal::github(GithubUser::new(UserId(999), "erin"));
    let env = common::env_with(common::fixture("acme.toml"), common::per_user()).await;
    let d = env.authz.check(&CheckRequest::new(&stale, &env.app("dash"), Capability::Delete)).await.unwrap();
    assert!(!d.is_allowed());
    assert_eq!(d.reason(), &Reason::NoAccess { detail: NoAccessDetail::LoginMismatch });
    // A roster names users by id: user 999 is not on it, whatever the login.
    let env = common::env(common::fixture("acme.toml")).await;
    let d = env.authz.check(&CheckRequest::new(&stale, &env.app("dash"), Capability::Delete)).await.unwrap();
    assert_eq!((d.is_allowed(), d.reason()), (false, &Reason::NoAccess { detail: NoAccessDetail::NotOnRoster }));
}

#[tokio::test]
async fn an_unknown_login_has_no_access() {
    let ghost = Principal::github(GithubUser::new(UserId(4242), "ghost"));
    let env = common::env_with(common::fixture("acme.toml"), common::per_user()).await;
    let d = env.authz.check(&CheckRequest::new(&ghost, &env.app("dash"), Capability::View)).await.unwrap();
    assert_eq!(d.reason(), &Reason::NoAccess { detail: NoAccessDetail::NoRole });
    let env = common::env(common::fixture("acme.toml")).await;
    let d = env.authz.check(&CheckRequest::new(&ghost, &env.app("dash"), Capability::View)).await.unwrap();
    assert_eq!(d.reason(), &Reason::NoAccess { detail: NoAccessDetail::NotOnRoster });
}

#[tokio::test]
async fn user_token_mode_reads_the_repository_permissions() {
    let opts = common::Opts { github: Box::new(|m| m.user_token_config()), ..Default::default() };
    let env = common::env_with(common::fixture("acme.toml"), opts).await;
    let dash = env.app("dash");
    let bob = env.world.user("bob").unwrap();
    let with_token = Principal::github_with_token(bob.clone(), env.mock.user_token("bob"));
    let d = env.authz.check(&CheckRequest::new(&with_token, &dash, Capability::Edit)).await.unwrap();
    assert!(d.is_allowed(), "{d:?}");
    assert!(matches!(d.reason(), Reason::GithubRole { role: Role::Maintain, .. }));
    assert_eq!(env.mock.requests("/repos/acme/dashboard"), 1, "one request gives identity and role");
    // A private repository the user cannot see answers 404: no access.
    let zed = Principal::github_with_token(env.world.user("zed").unwrap(), env.mock.user_token("zed"));
    let d = env.authz.check(&CheckRequest::new(&zed, &dash, Capability::View)).await.unwrap();
    assert_eq!(d.reason().kind(), "no_access");
    // A miss without the user's token cannot be answered in this mode.
    let err = env
        .authz
        .check(&CheckRequest::new(&Principal::github(env.world.user("carol").unwrap()), &dash, Capability::View))
        .await
        .unwrap_err();
    assert!(matches!(err, ghauthz::CheckError::MissingUserToken { .. }));
}

#[tokio::test]
async fn user_token_mode_detects_a_replaced_repository() {
    let opts = common::Opts { github: Box::new(|m| m.user_token_config()), ..Default::default() };
    let env = common::env_with(common::fixture("acme.toml"), opts).await;
    let carol = Principal::github_with_token(env.world.user("carol").unwrap(), env.mock.user_token("carol"));
    let d = env.authz.check(&CheckRequest::new(&carol, &env.app("legacy"), Capability::View)).await.unwrap();
    assert_eq!(d.reason().kind(), "repo_replaced");
}

#[tokio::test]
async fn github_app_mode_mints_an_installation_token() {
    let pem = std::fs::read(common::fixture_path("keys/github-app-test.pem")).unwrap();
    let key = ghauthz::AppPrivateKey::from_pem(&pem).unwrap();
    assert_eq!(format!("{key:?}"), "AppPrivateKey([redacted])");
    let opts = common::Opts { github: Box::new(move |m| m.app_config(42, key.clone(), 7)), ..Default::default() };
    let env = common::env_with(common::fixture("acme.toml"), opts).await;
    let d = env.authz.check(&CheckRequest::new(&env.user("erin"), &env.app("dash"), Capability::Deploy)).await.unwrap();
    assert!(d.is_allowed(), "{d:?}");
    assert_eq!(env.mock.requests("/app/installations/7/access_tokens"), 1);
    env.authz.check(&CheckRequest::new(&env.user("carol"), &env.app("dash"), Capability::Edit)).await.unwrap();
    assert_eq!(env.mock.requests("/app/installations/7/access_tokens"), 1, "the installation token is reused");
    assert!(ghauthz::AppPrivateKey::from_pem(b"not a key").is_err());
}

/// An App's installation token is kept while it has more than 5 minutes to live, and replaced
/// before that: a token that expires in 10 minutes serves every request; one that expires in 4
/// is replaced before each.
#[tokio::test]
async fn github_app_mode_renews_its_token_minutes_before_it_expires() {
    let pem = std::fs::read(common::fixture_path("keys/github-app-test.pem")).unwrap();
    let key = ghauthz::AppPrivateKey::from_pem(&pem).unwrap();
    for (minutes, renewed_each_time) in [(10, false), (4, true)] {
        let key = key.clone();
        let opts = common::Opts { github: Box::new(move |m| m.app_config(42, key.clone(), 7)), ..Default::default() };
        let env = common::env_with(common::fixture("acme.toml"), opts).await;
        env.mock.set_token_lifetime(std::time::Duration::from_secs(60 * minutes));
        for (login, app) in [("erin", "dash"), ("alice", "notes"), ("carol", "site")] {
            env.authz.check(&CheckRequest::new(&env.user(login), &env.app(app), Capability::Edit)).await.unwrap();
        }
        let minted = env.mock.requests("/app/installations/7/access_tokens");
        let asked = env.mock.total_requests() - minted;
        assert!(asked >= 3, "{:?}", env.mock.request_counts());
        let want = if renewed_each_time { asked } else { 1 };
        assert_eq!(minted, want, "a token good for {minutes} minutes, {asked} requests");
    }
}

/// A token no HTTP header can carry is refused before anything is sent, never passed to the
/// client (which panics on it), whether it is the installation's or a user's own.
#[tokio::test]
async fn a_token_no_header_can_carry_is_refused_before_it_is_sent() {
    let mock = ghauthz::world::MockGithub::start(common::fixture("acme.toml")).await.unwrap();
    for bad in ["ghs_a\r\nX-Injected: 1", "ghs_a\nb", "ghs_a\u{0}b", "ghs a", "", "ghs_\u{e9}"] {
        let cfg = ghauthz::GithubConfig::new(ghauthz::GithubAuth::Token(ghauthz::GithubToken::new(bad.into())))
            .with_api_base(mock.base_url());
        let err = ghauthz::Authorizer::builder(cfg).build().unwrap_err();
        assert_eq!(err.kind(), "github_client", "{bad:?}");
        assert!(!err.to_string().contains("ghs_"), "the token is not repeated: {err}");
    }
    assert_eq!(mock.total_requests(), 0, "nothing was sent");

    let opts = common::Opts { github: Box::new(|m| m.user_token_config()), ..Default::default() };
    let env = common::env_with(common::fixture("acme.toml"), opts).await;
    let bob = env.world.user("bob").unwrap();
    let before = env.mock.total_requests();
    for bad in ["user:bob\r\n", "user:bob\rx", "user: bob"] {
        let with_token = Principal::github_with_token(bob.clone(), ghauthz::GithubToken::new(bad.into()));
        let err =
            env.authz.check(&CheckRequest::new(&with_token, &env.app("dash"), Capability::Edit)).await.unwrap_err();
        assert_eq!(err.kind(), "malformed_token", "{bad:?}: {err:?}");
    }
    assert_eq!(env.mock.total_requests(), before, "nothing was sent");
}

/// An API base that is no http(s) URL is refused when the authorizer is built, not at the first
/// check.
#[tokio::test]
async fn an_api_base_that_is_no_url_is_refused_at_build() {
    for base in ["not a url", "ftp://ghe.example.com/api/v3", "https://", "/api/v3"] {
        let cfg = ghauthz::GithubConfig::new(ghauthz::GithubAuth::Token(ghauthz::GithubToken::new("ghs_x".into())))
            .with_api_base(base);
        let err = ghauthz::Authorizer::builder(cfg).build().unwrap_err();
        assert_eq!(err.kind(), "github_client", "{base}");
    }
}
