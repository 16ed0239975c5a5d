//! A small control plane: its app pages behind ghauthz's guard, the viewer's sign-in pages beside
//! them, links sent through a local SMTP server. Over the acme fixture world and its mock GitHub.
//!
//! ```sh
//! python3 -m pip install aiosmtpd && python3 -m aiosmtpd -n -l 127.0.0.1:2525 &   # prints each message
//! cargo run --example control_plane --features world,http,smtp
//! ```
//!
//! Then open http://127.0.0.1:3000/apps/dash/ (private: the sign-in page), ask for a link for
//! dana@example.com, and open the link the SMTP server printed. `SMTP_PORT` and `LISTEN` change
//! the ports.

use std::sync::Arc;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use ghauthz::http::web::{Access, SignInPages};
use ghauthz::mail::{MailConfig, SmtpConfig, SmtpMailer, SmtpSecurity};
use ghauthz::store::MemoryStore;
use ghauthz::store::prelude::*;
use ghauthz::world::{MockGithub, World};
use ghauthz::{AppId, Authorizer, Clock as _, SystemClock};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let smtp_port: u16 = std::env::var("SMTP_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(2525);
    let public = format!("http://{listen}");

    // The world: who holds which role on which repository, the apps, their invited viewers.
    let world = World::load(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml"))?;
    let github = MockGithub::start(world.clone()).await?;
    let store = Arc::new(MemoryStore::new());
    store.seed_once(&world.app_records(), SystemClock.now()).await?;

    // Links go out through the SMTP server on this machine (plain SMTP is allowed to it alone).
    let smtp = SmtpConfig::new("127.0.0.1", smtp_port, SmtpSecurity::Plain, "Apps <apps@example.com>");
    let mail = MailConfig::new(Arc::new(SmtpMailer::new(smtp)?), public.parse()?);
    let mut authz = Authorizer::builder(github.github_config()).store(store).mail(mail);
    if let Some(google) = github.google_config() {
        authz = authz.google(google);
    }
    let authz = authz.build()?;

    // The pages, sending signed-in viewers to /apps/{app}/ on this host.
    let pages = SignInPages::new(authz.clone(), public.parse()?, &format!("{public}/apps/{{app}}/"))?;
    // The app is the path's second segment.
    let guard = pages.guard(|parts| parts.uri.path().split('/').nth(2).map(|s| AppId(s.to_owned())));
    let app = Router::new().route("/apps/{app}/", get(app_page)).layer(guard).merge(pages.router());

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("control plane on {public}: open {public}/apps/dash/ (private) or {public}/apps/site/ (public)");
    axum::serve(listener, app).await?;
    Ok(())
}

/// `s` with HTML's special characters escaped.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An app's page: only reached through the guard.
async fn app_page(access: Access) -> Html<String> {
    Html(format!(
        "<!doctype html><title>{app}</title><h1>{app}</h1><p>Signed in as {who}, by {why}.</p>\
         <form method=\"post\" action=\"/auth/logout\"><button>Sign out</button></form>",
        app = escape(&access.app().0),
        who = escape(&access.principal().label()),
        why = access.decision().reason().kind(),
    ))
}
