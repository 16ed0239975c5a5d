//! The world a command runs in: the fixture world, its mock GitHub, the store, the keys, and an
//! authorizer over them.

use std::path::PathBuf;
use std::sync::Arc;

use ghauthz::store::MemoryStore;
use ghauthz::world::{MockGithub, World};
use ghauthz::{
    Authorizer, ChangedBy, Clock, ManualClock, Policy, Principal, SessionConfig, SessionKeys, SystemClock,
    WebhookSecret,
};

use crate::cli::{CheckArgs, Global};
use crate::input::{load_policy, parse_now};
use crate::output::{Exit, Outcome};

/// Everything a command needs: the world, its mock GitHub, an authorizer pointed at it.
pub(crate) struct WorldCtx {
    pub(crate) world: World,
    pub(crate) authz: Authorizer,
    pub(crate) _mock: MockGithub,
}

pub(crate) async fn world_ctx(
    g: &Global,
    needs_keys: bool,
    webhook: Option<(WebhookSecret, Option<WebhookSecret>)>,
    google_strict: (bool, Option<String>),
) -> Result<WorldCtx, Outcome> {
    let Some(path) = &g.world else {
        if g.now.is_some() {
            return Err(Outcome::error(
                Exit::Usage,
                "usage",
                "`--now` is only accepted in world mode (with `--world`)",
            ));
        }
        return Err(Outcome::error(
            Exit::Usage,
            "usage",
            "live mode (without `--world`) is not available yet; use `--world FILE`",
        ));
    };
    let world = World::load(path).map_err(|e| Outcome::error(Exit::Usage, e.kind(), &e))?;
    let store = match g.db.as_deref() {
        None => Arc::new(MemoryStore::new()),
        Some(location) => ghauthz::store::open(location).await.map_err(|e| match e {
            ghauthz::store::StoreError::InvalidConfig(_) => {
                Outcome::error(Exit::Usage, "usage", format!("`--db`: {e}"))
            }
            e => Outcome::error(Exit::Unavailable, e.kind(), &e),
        })?,
    };
    let policy = match &g.policy {
        None => Policy::default(),
        Some(p) => load_policy(p).map_err(|e| Outcome::error(Exit::Usage, "bad_policy", format!("{e:#}")))?,
    };
    let now = match &g.now {
        Some(s) => Some(parse_now(s).map_err(|e| Outcome::error(Exit::Usage, "usage", e))?),
        None => world.now(),
    };
    let clock: Arc<dyn Clock> = match now {
        Some(t) => Arc::new(ManualClock::new(t)),
        None => Arc::new(SystemClock),
    };
    let keys_path = g.keys.clone().unwrap_or_else(|| {
        let mut p = path.clone().into_os_string();
        p.push(".keys");
        PathBuf::from(p)
    });
    let keys = if needs_keys {
        SessionKeys::load_or_create(&keys_path).map_err(|e| Outcome::error(Exit::Usage, e.kind(), e))?
    } else {
        SessionKeys::generate()
            .map_err(|e| Outcome::error(Exit::Unavailable, e.kind(), "no random source for a session key"))?
    };
    let mock = MockGithub::start_with_clock(world.clone(), clock.clone())
        .await
        .map_err(|e| Outcome::error(Exit::Unavailable, "mock_github", e))?;
    // A store that was never seeded gets the world's apps and viewers, once; from then on the
    // store alone says which apps and viewers exist.
    store
        .seed_once(&world.app_records(), clock.now())
        .await
        .map_err(|e| Outcome::error(Exit::Unavailable, e.kind(), &e))?;
    let authz = Authorizer::builder(mock.github_config())
        .policy(policy)
        .clock(clock)
        .store(store)
        .sessions(keys, SessionConfig::default());
    let authz = match mock.google_config() {
        Some(google) => {
            let strict = google.require_authoritative() || google_strict.0;
            let google = match google_strict.1 {
                Some(domain) => google.with_hosted_domain(domain),
                None => google,
            };
            authz.google(google.with_require_authoritative(strict))
        }
        None => authz,
    };
    let authz = match webhook {
        Some((secret, Some(previous))) => authz.webhook_secret(secret).previous_webhook_secret(previous),
        Some((secret, None)) => authz.webhook_secret(secret),
        None => authz,
    };
    let authz = authz.build().map_err(|e| Outcome::error(Exit::Unavailable, e.kind(), &e))?;
    Ok(WorldCtx { world, authz, _mock: mock })
}

pub(crate) fn changed_by(ctx: &WorldCtx, login: Option<&str>) -> Result<ChangedBy, Outcome> {
    match login {
        None => Ok(ChangedBy::Operator),
        Some(login) => ctx
            .world
            .user(login)
            .map(|u| ChangedBy::Principal(Principal::github(u)))
            .ok_or_else(|| Outcome::error(Exit::Usage, "unknown_user", format!("no user `{login}` in the world"))),
    }
}

pub(crate) fn principal_of(ctx: &WorldCtx, args: &CheckArgs) -> Result<Principal, Outcome> {
    if let Some(agent) = &args.support_agent {
        return Ok(Principal::support(agent.clone()));
    }
    match &args.github_user {
        Some(login) => ctx
            .world
            .user(login)
            .map(Principal::github)
            .ok_or_else(|| Outcome::error(Exit::Usage, "unknown_user", format!("no user `{login}` in the world"))),
        None => Ok(Principal::Anonymous),
    }
}
