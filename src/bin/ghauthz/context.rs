//! Where a command runs: world mode (a fixture world, its mock GitHub, a store seeded from it) or
//! live mode (GitHub's API with a token or a GitHub App, Google's keys, a store of record), and an
//! authorizer over them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ghauthz::store::{MemoryStore, Store};
use ghauthz::world::{MockGithub, World};
use ghauthz::{
    AppPrivateKey, Authorizer, AuthorizerBuilder, ChangedBy, Clock, GithubAuth, GithubConfig, GithubToken, GithubUser,
    GoogleConfig, ManualClock, Policy, Principal, SessionConfig, SessionKeys, SystemClock, WebhookSecret,
};

use crate::cli::{CheckArgs, Global, LIVE_OPTIONS};
use crate::input::{load_policy, parse_now, read_limited};
use crate::output::{Exit, Outcome, error_json};

/// Everything a command needs: an authorizer, and in world mode the world and its mock GitHub.
pub(crate) struct Ctx {
    pub(crate) authz: Authorizer,
    /// The world, in world mode.
    pub(crate) world: Option<World>,
    /// The store the authorizer works on, closed by [`Ctx::close`].
    store: Arc<dyn Store>,
    _mock: Option<MockGithub>,
}

/// What a command needs besides an authorizer.
pub(crate) struct Needs {
    /// It signs or verifies viewer sessions.
    pub(crate) keys: bool,
    /// It verifies Google ID tokens.
    pub(crate) google: bool,
    /// The webhook secrets, for `webhook`.
    pub(crate) webhook: Option<(WebhookSecret, Option<WebhookSecret>)>,
    /// `google sign-in`'s own strictness: `--require-authoritative`, `--hosted-domain`.
    pub(crate) google_strict: (bool, Option<String>),
    /// Where sign-in links are sent from, for `serve`.
    pub(crate) mail: Option<ghauthz::mail::MailConfig>,
}

/// The GitHub API live mode talks to unless `--github-api` says otherwise.
const GITHUB_API: &str = "https://api.github.com";

/// The longest `GITHUB_TOKEN` taken.
const MAX_TOKEN: usize = 4096;

/// Credentials go over `https`, or over `http` to this machine only (a mock, a local proxy).
fn check_url(flag: &str, url: &str) -> Result<(), Outcome> {
    let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|base| url.strip_prefix(base).is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/'])));
    if url.starts_with("https://") || local {
        Ok(())
    } else {
        Err(usage(format!("`{flag}`: expected an https:// URL, or http:// to 127.0.0.1, localhost or [::1]")))
    }
}

/// The largest GitHub App private key file read.
const MAX_APP_KEY: u64 = 64 * 1024;

fn usage(message: impl std::fmt::Display) -> Outcome {
    Outcome::error(Exit::Usage, "usage", message)
}

pub(crate) async fn ctx(g: &Global, needs: Needs) -> Result<Ctx, Outcome> {
    match &g.world {
        Some(path) => world_ctx(g, path, needs).await,
        None => live_ctx(g, needs).await,
    }
}

async fn world_ctx(g: &Global, path: &Path, needs: Needs) -> Result<Ctx, Outcome> {
    if let Some(flag) = g.given().into_iter().find(|f| LIVE_OPTIONS.contains(f)) {
        return Err(usage(format!("`{flag}` is a live-mode option: it is refused with `--world`")));
    }
    let world = World::load(path).map_err(|e| Outcome::error(Exit::Usage, e.kind(), &e))?;
    let now = match &g.now {
        Some(s) => Some(parse_now(s).map_err(usage)?),
        None => world.now(),
    };
    // Opened last: from here every way out closes it.
    let store: Arc<dyn Store> = match g.db.as_deref() {
        None => Arc::new(MemoryStore::new()),
        Some(location) => open_store(location).await?,
    };
    let clock: Arc<dyn Clock> = match now {
        Some(t) => Arc::new(ManualClock::new(t)),
        None => Arc::new(SystemClock),
    };
    let keys_path = g.keys.clone().unwrap_or_else(|| {
        let mut p = path.to_owned().into_os_string();
        p.push(".keys");
        PathBuf::from(p)
    });
    let started = async {
        let mock = MockGithub::start_with_clock(world.clone(), clock.clone())
            .await
            .map_err(|e| Outcome::error(Exit::Unavailable, "mock_github", e))?;
        // A store that was never seeded gets the world's apps and viewers, once; from then on the
        // store alone says which apps and viewers exist.
        store
            .seed_once(&world.app_records(), clock.now())
            .await
            .map_err(|e| Outcome::error(Exit::Unavailable, e.kind(), &e))?;
        let authz = Authorizer::builder(mock.github_config()).clock(clock);
        let authz = finish(g, authz, store.clone(), Some(&keys_path), mock.google_config(), needs)?;
        Ok((authz, mock))
    };
    match started.await {
        Ok((authz, mock)) => Ok(Ctx { authz, world: Some(world), store, _mock: Some(mock) }),
        Err(e) => {
            close(store).await;
            Err(e)
        }
    }
}

async fn live_ctx(g: &Global, needs: Needs) -> Result<Ctx, Outcome> {
    if g.now.is_some() {
        return Err(usage("`--now` is only accepted in world mode (with `--world`)"));
    }
    let Some(location) = g.db.as_deref() else {
        return Err(usage("live mode needs `--db PATH` (apps live in the store), or `--world FILE` for world mode"));
    };
    if needs.keys && g.keys.is_none() {
        return Err(usage("live mode needs `--keys FILE` for commands that sign or verify viewer sessions"));
    }
    let base = g.github_api.clone().unwrap_or_else(|| GITHUB_API.to_owned());
    for (flag, url) in [("--github-api", Some(&base)), ("--google-jwks", g.google_jwks.as_ref())] {
        if let Some(url) = url {
            check_url(flag, url)?;
        }
    }
    let auth = match (g.app_id, &g.app_key, g.installation) {
        // Without `--installation`: across all of the App's installations.
        (Some(app_id), Some(key), installation_id) => {
            let pem = std::fs::File::open(key)
                .and_then(|f| read_limited(f, MAX_APP_KEY))
                .map_err(|e| usage(format!("`--app-key`: cannot read `{}`: {e}", key.display())))?;
            let key = AppPrivateKey::from_pem(&pem)
                .map_err(|e| Outcome::error(Exit::Usage, e.kind(), format!("`--app-key`: {e}")))?;
            GithubAuth::App { app_id, key, installation_id }
        }
        (None, None, None) => match std::env::var("GITHUB_TOKEN") {
            Ok(token) if token.len() > MAX_TOKEN => {
                return Err(usage(format!(
                    "`GITHUB_TOKEN` is longer than {MAX_TOKEN} bytes (its value is not repeated)"
                )));
            }
            Ok(token) if !token.trim().is_empty() => {
                let token = GithubToken::new(token.trim().to_owned());
                if !token.is_well_formed() {
                    return Err(usage(
                        "`GITHUB_TOKEN` holds a character no token has: a space, a control character (CR, LF, ...) or non-ASCII (its value is not repeated)",
                    ));
                }
                GithubAuth::Token(token)
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(usage("`GITHUB_TOKEN` is not UTF-8 (its value is not repeated)"));
            }
            _ => {
                return Err(usage(
                    "live mode needs GitHub credentials: `GITHUB_TOKEN`, or a GitHub App with `--app-id` and `--app-key` (and `--installation` to act as one installation only)",
                ));
            }
        },
        (None, None, Some(_)) => return Err(usage("`--installation` needs `--app-id` and `--app-key`")),
        _ => return Err(usage("a GitHub App needs both `--app-id` and `--app-key`")),
    };
    let google = match (g.google_client_id.is_empty(), &g.google_jwks) {
        (true, Some(_)) => return Err(usage("`--google-jwks` needs `--google-client-id`")),
        (true, None) if needs.google => {
            return Err(usage("live mode needs `--google-client-id ID` (repeatable) to verify Google ID tokens"));
        }
        (true, None) => None,
        (false, jwks) => {
            let cfg = GoogleConfig::new(g.google_client_id.clone());
            Some(match jwks {
                Some(url) => cfg.with_jwks_url(url.clone()),
                None => cfg,
            })
        }
    };
    let store = open_store(location).await?;
    let authz = Authorizer::builder(GithubConfig::new(auth).with_api_base(base));
    match finish(g, authz, store.clone(), g.keys.as_deref(), google, needs) {
        Ok(authz) => Ok(Ctx { authz, world: None, store, _mock: None }),
        Err(e) => {
            close(store).await;
            Err(e)
        }
    }
}

/// Closes `store`, bounded, so that a connection some task still holds cannot keep the command
/// alive.
async fn close(store: Arc<dyn Store>) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), store.close()).await;
}

async fn open_store(location: &str) -> Result<Arc<dyn Store>, Outcome> {
    ghauthz::store::open(location).await.map_err(|e| match e {
        ghauthz::store::StoreError::InvalidConfig(_) => usage(format!("`--db`: {e}")),
        e => Outcome::error(e.class().into(), e.kind(), &e),
    })
}

/// What both modes share: the policy, the store, the session keys, Google, the webhook secrets.
fn finish(
    g: &Global,
    authz: AuthorizerBuilder,
    store: Arc<dyn Store>,
    keys_path: Option<&Path>,
    google: Option<GoogleConfig>,
    needs: Needs,
) -> Result<Authorizer, Outcome> {
    let policy = match &g.policy {
        None => Policy::default(),
        Some(p) => load_policy(p).map_err(|e| Outcome::error(Exit::Usage, "bad_policy", format!("{e:#}")))?,
    };
    let keys = match keys_path {
        Some(path) if needs.keys => {
            SessionKeys::load_or_create(path).map_err(|e| Outcome::error(Exit::Usage, e.kind(), e))?
        }
        _ => SessionKeys::generate()
            .map_err(|e| Outcome::error(Exit::Unavailable, e.kind(), "no random source for a session key"))?,
    };
    let authz = authz.policy(policy).store(store).sessions(keys, SessionConfig::default());
    let authz = match google {
        Some(google) => {
            let strict = google.require_authoritative() || needs.google_strict.0;
            let google = match needs.google_strict.1 {
                Some(domain) => google.with_hosted_domain(domain),
                None => google,
            };
            authz.google(google.with_require_authoritative(strict))
        }
        None => authz,
    };
    let authz = match needs.webhook {
        Some((secret, Some(previous))) => authz.webhook_secret(secret).previous_webhook_secret(previous),
        Some((secret, None)) => authz.webhook_secret(secret),
        None => authz,
    };
    let authz = match needs.mail {
        Some(mail) => authz.mail(mail),
        None => authz,
    };
    authz.build().map_err(|e| Outcome::error(e.class().into(), e.kind(), &e))
}

impl Ctx {
    /// Closes the store, whatever the command's outcome: everything written is then in the
    /// store's files and nothing else (an SQLite store's write-ahead log is folded in and
    /// removed).
    pub(crate) async fn close(self) {
        let Ctx { authz, store, .. } = self;
        drop(authz);
        close(store).await;
    }

    /// The GitHub user with this login: declared in the world (world mode), or as GitHub says
    /// now (live mode).
    pub(crate) async fn user(&self, login: &str) -> Result<GithubUser, Outcome> {
        let unknown = |whom: &str| Outcome::error(Exit::Usage, "unknown_user", format!("no user `{login}` {whom}"));
        match &self.world {
            Some(world) => world.user(login).ok_or_else(|| unknown("in the world")),
            None => match self.authz.github_user(login).await {
                Ok(Some(user)) => Ok(user),
                Ok(None) => Err(unknown("on GitHub")),
                Err(e) => Err(Outcome::json(e.class().into(), &error_json(&e))),
            },
        }
    }
}

pub(crate) async fn changed_by(ctx: &Ctx, login: Option<&str>) -> Result<ChangedBy, Outcome> {
    match login {
        None => Ok(ChangedBy::Operator),
        Some(login) => Ok(ChangedBy::Principal(Principal::github(ctx.user(login).await?))),
    }
}

pub(crate) async fn principal_of(ctx: &Ctx, args: &CheckArgs) -> Result<Principal, Outcome> {
    if let Some(agent) = &args.support_agent {
        return Ok(Principal::support(agent.clone()));
    }
    match &args.github_user {
        Some(login) => Ok(Principal::github(ctx.user(login).await?)),
        None => Ok(Principal::Anonymous),
    }
}
