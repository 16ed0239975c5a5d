//! Two control-plane replicas on one shared store: a viewer removed through one is refused by
//! the other at its next check, though the other had the grant in memory. (SQLite here, so that
//! the example needs nothing but a file; Postgres replicas hear each other the same way.)
//!
//! ```sh
//! cargo run --example replicas --features world,sqlite
//! ```

use ghauthz::store::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ghauthz::store::{SqliteStore, Store};
use ghauthz::world::{MockGithub, World};
use ghauthz::{
    AppId, Authorizer, Capability, ChangedBy, CheckRequest, Clock as _, SessionConfig, SessionKeys, Source, SystemClock,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let world = World::load(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml"))?;
    let github = MockGithub::start(world.clone()).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ghauthz.db");
    let first = SqliteStore::open(&path).await?;
    first.seed_once(&world.app_records(), SystemClock.now()).await?;
    // Every replica signs and verifies sessions with the same keys (in production, a keys file
    // or a secret store): a session minted by one is good on all.
    let keys = SessionKeys::generate()?;
    let replica = |store: SqliteStore| {
        let store: Arc<dyn Store> = Arc::new(store);
        Authorizer::builder(github.github_config())
            .store(store)
            .sessions(keys.clone(), SessionConfig::default())
            .build()
    };
    let (a, b) = (replica(first)?, replica(SqliteStore::open(&path).await?)?);

    let dash = AppId("dash".into());
    let link = a.issue_link(&dash, "dana@example.com").await?;
    let token = a.redeem_link(link.token.expose_secret(), Some(&dash)).await?.token;
    let request = CheckRequest::session(token.expose_secret(), &dash, Capability::View);
    b.check(&request).await?; // B verifies the session and reads the grant
    let cached = b.check(&request).await?;
    println!("replica B, before: {} from {:?}", cached.reason().kind(), cached.source());
    assert_eq!((cached.is_allowed(), cached.source()), (true, Source::Cache));

    a.remove_viewer(&ChangedBy::Operator, &dash, "dana@example.com").await?;
    let removed = Instant::now();
    loop {
        let d = b.check(&request).await?;
        if !d.is_allowed() {
            println!("replica B, after {:?}: {}", removed.elapsed(), d.reason().kind());
            break;
        }
        if removed.elapsed() > Duration::from_secs(5) {
            return Err("replica B still allows a removed viewer".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
