//! `ghauthz mock-github`: the world's mock GitHub (and Google JWKS) as a server of its own, for
//! any language's tests.

use std::sync::Arc;

use ghauthz::world::{MockGithub, World};
use ghauthz::{Clock, ManualClock, SystemClock};
use serde_json::json;

use super::stopped;
use crate::cli::{Global, MockGithubArgs};
use crate::input::parse_now;
use crate::output::{Exit, Outcome, Stream, say};

/// Serves until SIGINT or SIGTERM: prints `{"github_api", "google_jwks", "token"}` on its first
/// line once listening, its one JSON object; when it stops it says so on stderr and exits 0.
pub(crate) async fn run(g: &Global, args: &MockGithubArgs) -> Outcome {
    // It serves a world on a clock: no store, keys, policy or live GitHub to name.
    if let Some(flag) = g.given().into_iter().find(|f| !matches!(*f, "--world" | "--now")) {
        return Outcome::error(Exit::Usage, "usage", format!("`mock-github` takes no `{flag}`"));
    }
    let Some(path) = &g.world else {
        return Outcome::error(Exit::Usage, "usage", "`mock-github` needs `--world FILE`");
    };
    let world = match World::load(path) {
        Ok(world) => world,
        Err(e) => return Outcome::error(Exit::Usage, e.kind(), &e),
    };
    let now = match g.now.as_deref().map(parse_now).transpose() {
        Ok(now) => now.or(world.now()),
        Err(e) => return Outcome::error(Exit::Usage, "usage", e),
    };
    let clock: Arc<dyn Clock> = match now {
        Some(t) => Arc::new(ManualClock::new(t)),
        None => Arc::new(SystemClock),
    };
    let mock = match MockGithub::start_at(world, clock, args.listen).await {
        Ok(mock) => mock,
        Err(e) => {
            return Outcome::error(Exit::Unavailable, "mock_github", format!("cannot listen on {}: {e}", args.listen));
        }
    };
    let ready = json!({
        "github_api": mock.base_url(),
        "google_jwks": mock.google_jwks_url(),
        "token": mock.installation_token(),
    });
    say(Stream::Out, &format!("{ready}\n"));
    // The one JSON object is out: what follows goes to stderr only.
    if let Err(e) = stopped().await {
        return Outcome::text(Exit::Unavailable, String::new()).saying(format!("cannot wait for a signal: {e}"));
    }
    drop(mock);
    Outcome::text(Exit::Done, String::new()).saying("mock GitHub stopped".to_owned())
}
