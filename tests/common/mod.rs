//! Shared set-up: a world, its mock GitHub, and an authorizer on a manual clock.
#![allow(dead_code, unreachable_pub, reason = "each test file uses a different part")]

use std::path::PathBuf;
use std::sync::Arc;

use ghauthz::world::{MockGithub, World};
use ghauthz::{App, Authorizer, CacheConfig, GithubConfig, ManualClock, Policy, Principal, Timestamp};

pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
}

pub fn fixture(name: &str) -> World {
    World::load(fixture_path(&format!("worlds/{name}"))).expect("fixture world loads")
}

pub struct Env {
    pub world: World,
    pub mock: MockGithub,
    pub authz: Authorizer,
    pub clock: ManualClock,
}

impl Env {
    pub fn user(&self, login: &str) -> Principal {
        Principal::github(self.world.user(login).expect("user in world"))
    }

    pub fn app(&self, id: &str) -> App {
        self.world.app(id).expect("app in world")
    }

    pub fn advance_secs(&self, s: u64) {
        self.clock.advance(std::time::Duration::from_secs(s));
    }
}

pub struct Opts {
    pub policy: Policy,
    pub cache: CacheConfig,
    pub github: Box<dyn Fn(&MockGithub) -> GithubConfig>,
}

impl Default for Opts {
    fn default() -> Self {
        Self { policy: Policy::default(), cache: CacheConfig::default(), github: Box::new(|m| m.github_config()) }
    }
}

pub async fn env(world: World) -> Env {
    env_with(world, Opts::default()).await
}

pub async fn env_with(world: World, opts: Opts) -> Env {
    let clock = ManualClock::new(world.now().unwrap_or(Timestamp(1_795_000_000_000)));
    let mock = MockGithub::start_with_clock(world.clone(), Arc::new(clock.clone())).await.expect("mock starts");
    let authz = Authorizer::builder((opts.github)(&mock))
        .policy(opts.policy)
        .cache(opts.cache)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("authorizer builds");
    Env { world, mock, authz, clock }
}
