//! What the library's own examples start from, so that each shows what it is about.

use std::sync::Arc;

use super::{MockGithub, World};
use crate::store::{MemoryStore, prelude::*};
use crate::{Authorizer, Clock as _, SystemClock};

/// `fixtures/worlds/acme.toml`, a mock GitHub serving it, and an authorizer over both with
/// the world's apps and viewers in an in-memory store.
///
/// # Panics
///
/// If the fixture does not load or the mock does not start: an example cannot go on.
#[allow(clippy::expect_used, reason = "an example's setup: nothing to do but stop")]
pub async fn acme() -> (World, MockGithub, Authorizer) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    let world = World::load(path).expect("acme.toml loads");
    let mock = MockGithub::start(world.clone()).await.expect("the mock starts");
    let store = Arc::new(MemoryStore::new());
    store.seed_once(&world.app_records(), SystemClock.now()).await.expect("the store seeds");
    let authz = Authorizer::builder(mock.github_config()).store(store).build().expect("the authorizer builds");
    (world, mock, authz)
}
