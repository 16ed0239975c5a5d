//! A control plane's request path: for each page load, one `CheckRequest` by app id, answered
//! from memory when it can be (`check_cached`), else by `check`; a decision explains itself,
//! and an error means "could not decide", never an allow.
//!
//! ```sh
//! cargo run --example request_path --features world
//! ```
//!
//! It serves `fixtures/worlds/acme.toml` from a mock GitHub on 127.0.0.1; in production the
//! authorizer is built from `GithubConfig::new(GithubAuth::App { .. })` and a shared store.

use std::sync::Arc;

use ghauthz::store::{MemoryStore, prelude::*};
use ghauthz::world::{MockGithub, World};
use ghauthz::{AppId, Authorizer, Capability, CheckRequest, Clock as _, ErrorClass, Principal, SystemClock};

/// What a handler answers: the page, a redirect to sign in, a refusal with its reason, or a
/// retry later (never the page).
fn respond(request: &CheckRequest<'_>, answer: Result<ghauthz::Decision, ghauthz::CheckError>) -> String {
    match answer {
        Ok(d) if d.is_allowed() => {
            format!("200 ({}, {} ms old)", d.reason().kind(), d.age().as_millis())
        }
        Ok(d) if request.principal().is_some_and(|p| matches!(p, Principal::Anonymous)) => {
            format!("303 to sign-in ({})", d.reason().kind())
        }
        Ok(d) => format!("403 {}", serde_json::to_string(d.reason()).unwrap_or_default()),
        Err(e) => {
            let retry = e.retry_after().map_or(30, |d| d.as_secs());
            debug_assert_eq!(e.class(), ErrorClass::Unavailable);
            format!("503 retry after {retry} s ({})", e.kind())
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let world = World::load(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml"))?;
    let github = MockGithub::start(world.clone()).await?;
    let store = Arc::new(MemoryStore::new());
    store.seed_once(&world.app_records(), SystemClock.now()).await?;
    let authz = Authorizer::builder(github.github_config()).store(store).build()?;

    let dash = AppId("dash".into()); // private, on acme/dashboard
    let people = [
        ("carol (write)", Principal::github(world.user("carol").ok_or("no carol")?)),
        ("dave (triage)", Principal::github(world.user("dave").ok_or("no dave")?)),
        ("nobody", Principal::Anonymous),
    ];
    for _page_load in 0..2 {
        for (who, principal) in &people {
            for cap in [Capability::View, Capability::Deploy] {
                let request = CheckRequest::new(principal, &dash, cap);
                // The synchronous look first: no await, no allocation on a hit.
                let answer = match authz.check_cached(&request) {
                    Some(hit) => Ok(hit),
                    None => authz.check(&request).await,
                };
                println!("{who:14} {:6} -> {}", cap.as_str(), respond(&request, answer));
            }
        }
    }

    // An invited viewer signs in with an emailed link, then carries a session token.
    let link = authz.issue_link(&dash, "dana@example.com").await?;
    let session = authz.redeem_link(link.token.expose_secret(), Some(&dash)).await?;
    let request = CheckRequest::session(session.token.expose_secret(), &dash, Capability::View);
    println!("dana (viewer)  view   -> {}", respond(&request, authz.check(&request).await));
    let stats = authz.stats();
    println!("hits {}, GitHub requests {}", stats.hits, stats.misses);
    Ok(())
}
