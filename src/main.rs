//! The `ghauthz` command line (spec/cli.md): a thin shell over the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use ghauthz::store::{MemoryStore, PgStore, SqliteStore, Store, StoreError};
use ghauthz::world::{ExplainRow, MockGithub, World};
use ghauthz::{
    App, AppId, Authorizer, Capability, ChangedBy, CheckError, Clock, Consistency, Decision, GithubError, GoogleError,
    GoogleSignInError, IssuedSession, LinkError, ManageError, ManualClock, Policy, Principal, Reason, SessionConfig,
    SessionError, SessionKeys, SystemClock, Timestamp, UnavailableCause, WebhookError, WebhookOutcome, WebhookSecret,
};
use serde_json::{Value, json};

/// Exit codes (spec/cli.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Allowed / done.
    Done = 0,
    /// Bad usage or bad input.
    Usage = 1,
    /// Denied / rejected.
    Denied = 2,
    /// Could not decide: unavailable or rate limited.
    Unavailable = 3,
}

/// A command's result: what to print on stdout, and the exit code.
struct Outcome {
    exit: Exit,
    stdout: String,
}

impl Outcome {
    fn json(exit: Exit, v: &Value) -> Self {
        Self { exit, stdout: v.to_string() }
    }

    fn error(exit: Exit, kind: &str, message: impl std::fmt::Display) -> Self {
        Self::json(exit, &json!({"error": kind, "message": message.to_string()}))
    }
}

#[derive(Debug, Parser)]
#[command(name = "ghauthz", version, about = "Who may view, edit, deploy and delete apps deployed from GitHub")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// World mode: serve this fixture world from a mock GitHub on 127.0.0.1.
    #[arg(long, global = true, value_name = "FILE")]
    world: Option<PathBuf>,
    /// The store: an SQLite file or a postgres:// URL.
    #[arg(long, global = true, value_name = "PATH")]
    db: Option<String>,
    /// The clock in world mode (RFC 3339).
    #[arg(long, global = true, value_name = "RFC3339")]
    now: Option<String>,
    /// Signing keys for links and viewer sessions.
    #[arg(long, global = true, value_name = "FILE")]
    keys: Option<PathBuf>,
    /// A policy file (TOML) that moves capabilities to other roles.
    #[arg(long, global = true, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Live mode: the GitHub REST API's base URL.
    #[arg(long, global = true, value_name = "URL")]
    github_api: Option<String>,
    /// Live mode: a GitHub App's id.
    #[arg(long, global = true, value_name = "ID")]
    app_id: Option<u64>,
    /// Live mode: the GitHub App's private key (PEM).
    #[arg(long, global = true, value_name = "FILE")]
    app_key: Option<PathBuf>,
    /// Live mode: the GitHub App installation to act as.
    #[arg(long, global = true, value_name = "ID")]
    installation: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One decision.
    Check(CheckArgs),
    /// Every world user's decision on every app and capability.
    Explain(ExplainArgs),
    /// Manage an app's invited viewers.
    #[command(subcommand)]
    Viewers(ViewersCommand),
    /// Single-use sign-in links for invited viewers.
    #[command(subcommand)]
    Link(LinkCommand),
    /// Google sign-in for invited viewers.
    #[command(subcommand)]
    Google(GoogleCommand),
    /// Apps.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// Accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Verify and apply one GitHub webhook delivery (its body on standard input).
    Webhook(WebhookArgs),
}

#[derive(Debug, Args)]
struct WebhookArgs {
    /// The event's name (`X-GitHub-Event`).
    #[arg(long, value_name = "NAME")]
    event: String,
    /// The delivery's id (`X-GitHub-Delivery`).
    #[arg(long, value_name = "ID")]
    delivery: String,
    /// The signature (`X-Hub-Signature-256`): `sha256=` and 64 hex digits.
    #[arg(long, value_name = "SIG")]
    signature: String,
    /// A file holding the webhook secret (a trailing newline is ignored); overrides
    /// `GHAUTHZ_WEBHOOK_SECRET`. Given twice during a rotation: the current secret, then the
    /// previous one (`GHAUTHZ_WEBHOOK_SECRET_PREVIOUS` without files).
    #[arg(long, value_name = "FILE")]
    webhook_secret_file: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum GoogleCommand {
    /// Verify a Google ID token and mint a viewer session.
    SignIn {
        /// The app's id.
        #[arg(long)]
        app: String,
        /// The Google ID token.
        #[arg(long, value_name = "TOKEN")]
        id_token: String,
        /// Accept only an address Google is authoritative for: `@gmail.com`, or in the token's
        /// Workspace domain (`hd`).
        #[arg(long)]
        require_authoritative: bool,
        /// Accept only this Workspace domain's accounts (implies `--require-authoritative`).
        #[arg(long, value_name = "DOMAIN")]
        hosted_domain: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AppsCommand {
    /// Delete an app: its viewers, links and sessions go; its coordinates are kept.
    Delete {
        /// The app's id.
        #[arg(long)]
        app: String,
        /// Authorize the deletion as this GitHub user (who needs `delete`); without it, the
        /// operator deletes.
        #[arg(long, value_name = "LOGIN")]
        github_user: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AccountsCommand {
    /// Delete an account and every app it deployed.
    Delete {
        /// The account, by login.
        #[arg(long, value_name = "LOGIN")]
        github_user: String,
    },
}

#[derive(Debug, Subcommand)]
enum LinkCommand {
    /// Issue a link for an invited address.
    Issue {
        /// The app's id.
        #[arg(long)]
        app: String,
        /// The invited address.
        #[arg(long)]
        email: String,
        /// Print the token (world mode always does: there is no mailer there).
        #[arg(long)]
        print_token: bool,
    },
    /// Validate a link without using it up.
    Inspect {
        /// The link's token.
        token: String,
    },
    /// Use the link up and mint a viewer session.
    Redeem {
        /// The link's token.
        token: String,
        /// Refuse a link for another app (`wrong_app`).
        #[arg(long)]
        app: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ViewersCommand {
    /// Invite an address.
    Add(ViewerArgs),
    /// Remove an invited address.
    Remove(ViewerArgs),
    /// List the invited addresses.
    List(ViewerListArgs),
}

#[derive(Debug, Args)]
struct ViewerArgs {
    /// The app's id.
    #[arg(long)]
    app: String,
    /// The address.
    #[arg(long)]
    email: String,
    /// Authorize the change as this GitHub user (who needs the `sharing` role); without it, the
    /// operator makes the change.
    #[arg(long, value_name = "LOGIN")]
    github_user: Option<String>,
}

#[derive(Debug, Args)]
struct ViewerListArgs {
    /// The app's id.
    #[arg(long)]
    app: String,
    /// Authorize the listing as this GitHub user.
    #[arg(long, value_name = "LOGIN")]
    github_user: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("principal").required(true).args(["github_user", "anonymous", "viewer_session", "google_id_token"])))]
struct CheckArgs {
    /// The app's id.
    #[arg(long)]
    app: String,
    /// view, edit, deploy or delete.
    #[arg(long)]
    action: Capability,
    /// A GitHub user, by login.
    #[arg(long, value_name = "LOGIN")]
    github_user: Option<String>,
    /// Nobody signed in.
    #[arg(long)]
    anonymous: bool,
    /// A viewer session minted by `link redeem` or `google sign-in`.
    #[arg(long, value_name = "TOKEN")]
    viewer_session: Option<String>,
    /// A Google ID token: `google sign-in` and the check in one command.
    #[arg(long, value_name = "TOKEN")]
    google_id_token: Option<String>,
    /// Rest on nothing cached: read the store and revalidate the GitHub fact first.
    #[arg(long)]
    fresh: bool,
}

#[derive(Debug, Args)]
struct ExplainArgs {
    /// Only this app.
    #[arg(long)]
    app: Option<String>,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Everything a command needs: the world, its mock GitHub, an authorizer pointed at it.
struct WorldCtx {
    world: World,
    authz: Authorizer,
    _mock: MockGithub,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            say(Stream::Out, &e.to_string());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // Never clap's own message: it repeats what was typed, which may be a token.
            let message = usage_message(&e);
            say(Stream::Err, &format!("ghauthz: {message}; see `ghauthz --help`\n"));
            say(Stream::Out, &format!("{}\n", json!({"error": "usage", "message": message})));
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    let outcome = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => Outcome::error(Exit::Unavailable, "runtime", e),
    };
    say(Stream::Out, &format!("{}\n", outcome.stdout));
    ExitCode::from(outcome.exit as u8)
}

enum Stream {
    Out,
    Err,
}

/// Writes `text` whole, and never panics: a reader that went away (`| head`) or a closed stream
/// loses the output, not the exit code.
fn say(stream: Stream, text: &str) {
    use std::io::Write as _;
    let _ = match stream {
        Stream::Out => std::io::stdout().lock().write_all(text.as_bytes()).and_then(|()| std::io::stdout().flush()),
        Stream::Err => std::io::stderr().lock().write_all(text.as_bytes()),
    };
}

async fn run(cli: Cli) -> Outcome {
    // Only commands that sign or verify viewer sessions read (or create) the keys file.
    let needs_keys = match &cli.command {
        Command::Link(_) | Command::Google(_) => true,
        Command::Check(args) => args.viewer_session.is_some() || args.google_id_token.is_some(),
        _ => false,
    };
    let webhook_secret = match &cli.command {
        Command::Webhook(args) => match webhook_secret(args) {
            Ok(secret) => Some(secret),
            Err(e) => return e,
        },
        _ => None,
    };
    // `google sign-in`'s own strictness, on top of the world's `[google]`.
    let google_strict = match &cli.command {
        Command::Google(GoogleCommand::SignIn { require_authoritative, hosted_domain, .. }) => {
            (*require_authoritative, hosted_domain.clone())
        }
        _ => (false, None),
    };
    let ctx = match world_ctx(&cli.global, needs_keys, webhook_secret, google_strict).await {
        Ok(ctx) => ctx,
        Err(e) => return e,
    };
    match cli.command {
        Command::Check(args) => match &args.google_id_token {
            Some(token) => check_google(&ctx, &args, token).await,
            None => check(&ctx, &args).await,
        },
        Command::Explain(args) => explain(&ctx, &args).await,
        Command::Viewers(cmd) => viewers(&ctx, cmd).await,
        Command::Link(cmd) => link(&ctx, cmd).await,
        Command::Google(GoogleCommand::SignIn { app, id_token, .. }) => {
            match ctx.authz.google_sign_in(&AppId(app), &id_token).await {
                Ok(s) => session_json(&s),
                Err(e) => google_error(&e),
            }
        }
        Command::Apps(AppsCommand::Delete { app, github_user }) => {
            let by = match changed_by(&ctx, github_user.as_deref()) {
                Ok(by) => by,
                Err(e) => return e,
            };
            match ctx.authz.delete_app(&by, &AppId(app.clone())).await {
                Ok(()) => Outcome::json(Exit::Done, &json!({"deleted": app})),
                Err(e) => manage_error(&e),
            }
        }
        Command::Accounts(AccountsCommand::Delete { github_user }) => {
            let Some(user) = ctx.world.user(&github_user) else {
                return Outcome::error(Exit::Usage, "unknown_user", format!("no user `{github_user}` in the world"));
            };
            match ctx.authz.delete_account(user.id).await {
                Ok(apps) => Outcome::json(Exit::Done, &json!({"github_user": github_user, "deleted_apps": apps})),
                Err(e) => Outcome::json(Exit::Unavailable, &error_json(&e)),
            }
        }
        Command::Webhook(args) => webhook(&ctx, &args).await,
    }
}

/// The webhook secret: `--webhook-secret-file`, else `GHAUTHZ_WEBHOOK_SECRET`.
/// The webhook's secret and, during a rotation, its previous one: from `--webhook-secret-file`
/// (once or twice) or `GHAUTHZ_WEBHOOK_SECRET` and `GHAUTHZ_WEBHOOK_SECRET_PREVIOUS`.
fn webhook_secret(args: &WebhookArgs) -> Result<(WebhookSecret, Option<WebhookSecret>), Outcome> {
    let usage = |m: String| Outcome::error(Exit::Usage, "usage", m);
    // `from` names where the secret came from, never what it holds.
    let secret = |text: String, from: &str| {
        let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
        WebhookSecret::new(text.to_owned()).map_err(|_| usage(format!("the webhook secret in {from} is empty")))
    };
    let file = |path: &PathBuf| {
        let text = read_file(path, MAX_SECRET_FILE)
            .map_err(|e| usage(format!("cannot read the webhook secret file `{}`: {e}", path.display())))?;
        secret(text, &format!("`{}`", path.display()))
    };
    let var = |name: &str| match std::env::var(name) {
        Ok(text) => secret(text, &format!("`{name}`")).map(Some),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(usage(format!("`{name}` is not UTF-8"))),
    };
    match args.webhook_secret_file.as_slice() {
        [] => {
            let current = var("GHAUTHZ_WEBHOOK_SECRET")?.ok_or_else(|| {
                usage("no webhook secret: pass `--webhook-secret-file` or set `GHAUTHZ_WEBHOOK_SECRET`".into())
            })?;
            Ok((current, var("GHAUTHZ_WEBHOOK_SECRET_PREVIOUS")?))
        }
        [current] => Ok((file(current)?, None)),
        [current, previous] => Ok((file(current)?, Some(file(previous)?))),
        _ => Err(usage("`--webhook-secret-file` at most twice: the current secret, then the previous one".into())),
    }
}

/// `webhook`: the delivery's headers from the flags, its raw body from standard input.
async fn webhook(ctx: &WorldCtx, args: &WebhookArgs) -> Outcome {
    let body = match read_limited(std::io::stdin(), ghauthz::MAX_WEBHOOK_BODY as u64) {
        Ok(body) => body,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Outcome::error(
                Exit::Usage,
                "too_large",
                "the body on standard input is larger than GitHub sends (25 MB)",
            );
        }
        Err(e) => return Outcome::error(Exit::Usage, "usage", format!("cannot read the body on standard input: {e}")),
    };
    let mut headers = http::HeaderMap::new();
    for (name, flag, value) in [
        ("x-github-event", "--event", &args.event),
        ("x-github-delivery", "--delivery", &args.delivery),
        ("x-hub-signature-256", "--signature", &args.signature),
    ] {
        match http::HeaderValue::from_str(value) {
            Ok(v) => {
                headers.insert(name, v);
            }
            // The value is not repeated: a signature is a secret's digest, and a control
            // character in it could rewrite the terminal.
            Err(_) => {
                return Outcome::error(
                    Exit::Usage,
                    "bad_request",
                    format!("`{flag}` holds a character a header cannot carry (a control character)"),
                );
            }
        }
    }
    let head = json!({"event": args.event, "delivery": args.delivery});
    let with = |mut v: Value, extra: Value| {
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        v
    };
    match ctx.authz.handle_webhook(&headers, &body).await {
        Ok(WebhookOutcome::Applied(invs)) => Outcome::json(Exit::Done, &with(head, json!({"applied": invs}))),
        Ok(WebhookOutcome::Duplicate) => {
            Outcome::json(Exit::Done, &with(head, json!({"applied": [], "duplicate": true})))
        }
        Ok(_) => Outcome::json(Exit::Done, &with(head, json!({"applied": [], "ignored": "unknown_event"}))),
        Err(e @ WebhookError::Store(_)) => Outcome::error(Exit::Unavailable, e.kind(), &e),
        Err(e) if e.kind() == "bad_signature" => Outcome::error(Exit::Denied, e.kind(), &e),
        Err(e) => Outcome::error(Exit::Usage, e.kind(), &e),
    }
}

async fn world_ctx(
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
            "live mode needs an app store (`--db`), which this version does not have yet; use `--world FILE`",
        ));
    };
    let world = World::load(path).map_err(|e| Outcome::error(Exit::Usage, "bad_world", e))?;
    let store = open_store(g.db.as_deref()).await?;
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
        load_or_create_keys(&keys_path).map_err(|e| Outcome::error(Exit::Usage, "bad_keys", format!("{e:#}")))?
    } else {
        SessionKeys::generate().map_err(|_| Outcome::error(Exit::Unavailable, "keys", "no random source"))?
    };
    let mock = MockGithub::start_with_clock(world.clone(), clock.clone())
        .await
        .map_err(|e| Outcome::error(Exit::Unavailable, "mock_github", e))?;
    // A store that was never seeded gets the world's apps and viewers, once; from then on the
    // store alone says which apps and viewers exist.
    store
        .seed_once(&world.app_records(), clock.now())
        .await
        .map_err(|e| Outcome::error(Exit::Unavailable, "store_unavailable", e))?;
    let authz = Authorizer::builder(mock.github_config())
        .policy(policy)
        .clock(clock)
        .store(store)
        .sessions(keys, SessionConfig::default());
    let authz = match mock.google_config() {
        Some(mut google) => {
            google.require_authoritative |= google_strict.0;
            google.hosted_domain = google_strict.1.or(google.hosted_domain);
            authz.google(google)
        }
        None => authz,
    };
    let authz = match webhook {
        Some((secret, Some(previous))) => authz.webhook_secret(secret).previous_webhook_secret(previous),
        Some((secret, None)) => authz.webhook_secret(secret),
        None => authz,
    };
    let authz = authz.build().map_err(|e| Outcome::error(Exit::Usage, "usage", e))?;
    Ok(WorldCtx { world, authz, _mock: mock })
}

/// `--db`: an SQLite file (created if absent) or a `postgres://` URL (its schema migrated);
/// without it, a store in memory for this command.
async fn open_store(db: Option<&str>) -> Result<Arc<dyn Store>, Outcome> {
    match db {
        None => Ok(Arc::new(MemoryStore::new())),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            match PgStore::connect(url).await {
                Ok(s) => Ok(Arc::new(s)),
                Err(e @ StoreError::InvalidConfig(_)) => Err(Outcome::error(Exit::Usage, "usage", e)),
                Err(e) => Err(Outcome::error(Exit::Unavailable, "store_unavailable", e)),
            }
        }
        // Anything else that looks like a URL or a connection string is refused without being
        // repeated (it may hold a password), rather than taken for a file name.
        Some(url) if !url.starts_with("sqlite://") && looks_like_a_url(url) => Err(Outcome::error(
            Exit::Usage,
            "usage",
            "`--db`: expected an SQLite file, a `sqlite://` URL or a `postgres://` URL",
        )),
        Some(path) => SqliteStore::open(path.strip_prefix("sqlite://").unwrap_or(path))
            .await
            .map(|s| Arc::new(s) as Arc<dyn Store>)
            .map_err(|e| Outcome::error(Exit::Unavailable, "store_unavailable", e)),
    }
}

/// Whether a `--db` value is a URL or a connection string rather than a file: a scheme (letters
/// before a `:` that comes before any `/`, as in `mysql://` or `postgres:user@host`), or
/// `key=value` words (`host=db password=...`).
fn looks_like_a_url(value: &str) -> bool {
    let scheme = value.split_once(':').is_some_and(|(before, _)| {
        !before.is_empty() && before.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    });
    scheme || (value.contains('=') && value.contains(char::is_whitespace))
}

/// The keys file: read it, or create it with one fresh key, so that a token issued by one command
/// verifies in the next. It is created readable by its owner only, written through a temporary
/// file created exclusively under an unpredictable name beside it, and linked into place only if
/// no other process got there first (never through a symlink). An existing keys file that is a
/// symlink, is readable or writable by others, or belongs to another user is refused.
fn load_or_create_keys(path: &std::path::Path) -> anyhow::Result<SessionKeys> {
    for _ in 0..3 {
        match read_keys_file(path) {
            Ok(text) => {
                return SessionKeys::from_json(&text)
                    .map_err(|e| anyhow::anyhow!("keys file `{}`: {e}", path.display()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("keys file `{}`", path.display())),
        }
        let keys = SessionKeys::generate().map_err(|_| anyhow::anyhow!("no random source for a session key"))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        // `tempfile` creates it with O_EXCL under a random name, mode 0600 on Unix.
        let mut temp = tempfile::Builder::new()
            .prefix(".ghauthz-keys-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temporary file in `{}`", dir.display()))?;
        std::io::Write::write_all(&mut temp, keys.to_json_with_secrets().as_bytes())
            .and_then(|()| temp.as_file().sync_all())
            .with_context(|| format!("cannot write a temporary file in `{}`", dir.display()))?;
        match temp.persist_noclobber(path) {
            Ok(_) => return Ok(keys),
            // Another process created it first (or something else is there): read that instead.
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.error).with_context(|| format!("cannot create `{}`", path.display())),
        }
    }
    anyhow::bail!("keys file `{}`: could neither read nor create it", path.display())
}

/// The keys file's text, if it is a regular file of ours that nobody else may read or write.
fn read_keys_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind};
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    let file = options.open(path).map_err(|e| {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            Error::new(ErrorKind::PermissionDenied, "refused: it is a symlink")
        } else {
            e
        }
    })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "refused: not a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if meta.uid() != rustix::process::geteuid().as_raw() {
            return Err(Error::new(ErrorKind::PermissionDenied, "refused: it belongs to another user"));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("refused: others may read or write it (mode {:o}); `chmod 600` it", meta.mode() & 0o777),
            ));
        }
    }
    String::from_utf8(read_limited(file, MAX_KEYS_FILE)?).map_err(|_| Error::new(ErrorKind::InvalidData, "not text"))
}

/// The most read of a policy or keys file (64 KiB) and of a secret file (4 KiB).
const MAX_POLICY_FILE: u64 = 64 << 10;
const MAX_KEYS_FILE: u64 = 64 << 10;
const MAX_SECRET_FILE: u64 = 4 << 10;

/// Everything `from` holds, refused (`InvalidData`, "larger than N bytes") beyond `limit` bytes,
/// reading no further than that: `/dev/zero` fails fast.
fn read_limited(from: impl std::io::Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(from, limit + 1), &mut out)?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {limit} bytes")));
    }
    Ok(out)
}

/// A text file of at most `limit` bytes.
fn read_file(path: &std::path::Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_limited(std::fs::File::open(path)?, limit)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not text"))
}

/// What went wrong on the command line, naming only the options this program defines: never a
/// value or an argument that was typed (it may be a token).
fn usage_message(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let defined = |kind: ContextKind| match e.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.join(", "),
        _ => String::new(),
    };
    // Where the typed argument stands on the command line (1 is the first after the program),
    // found by comparing: the position is said, the argument is not.
    let position = |kind: ContextKind| {
        let typed = defined(kind);
        std::env::args_os()
            .skip(1)
            .position(|a| a.to_str().is_some_and(|a| a == typed || a.split_once('=').is_some_and(|(k, _)| k == typed)))
            .map_or_else(String::new, |i| format!(" (argument {})", i + 1))
    };
    let option = defined(ContextKind::InvalidArg);
    match e.kind() {
        ErrorKind::UnknownArgument => {
            format!("an unexpected argument{} (not shown)", position(ContextKind::InvalidArg))
        }
        ErrorKind::InvalidSubcommand => {
            format!("an unknown command{} (not shown)", position(ContextKind::InvalidSubcommand))
        }
        ErrorKind::InvalidUtf8 if option.is_empty() => "an argument that is not UTF-8 (not shown)".to_owned(),
        ErrorKind::InvalidUtf8 => format!("a value for `{option}` that is not UTF-8 (not shown)"),
        ErrorKind::InvalidValue if matches!(e.get(ContextKind::InvalidValue), Some(ContextValue::String(v)) if v.is_empty()) =>
        {
            format!("`{option}` needs a value")
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => format!("an invalid value (not shown) for `{option}`"),
        ErrorKind::MissingRequiredArgument => format!("missing required arguments: {option}"),
        ErrorKind::ArgumentConflict if option == defined(ContextKind::PriorArg) => format!("`{option}` given twice"),
        ErrorKind::ArgumentConflict => format!("`{option}` cannot be used with `{}`", defined(ContextKind::PriorArg)),
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            "a command is needed".to_owned()
        }
        ErrorKind::TooManyValues | ErrorKind::TooFewValues | ErrorKind::WrongNumberOfValues => {
            format!("the wrong number of values for `{}`", defined(ContextKind::InvalidArg))
        }
        _ => "bad usage".to_owned(),
    }
}

/// The policy file. A malformed one is reported by file, line, column and field, never by its
/// contents.
fn load_policy(path: &std::path::Path) -> anyhow::Result<Policy> {
    let text = read_file(path, MAX_POLICY_FILE).with_context(|| format!("cannot read `{}`", path.display()))?;
    let de = toml::Deserializer::parse(&text).map_err(|e| policy_error(path, &text, e.span(), None))?;
    serde_path_to_error::deserialize(de)
        .map_err(|e| policy_error(path, &text, e.inner().span(), Some(e.path().to_string())))
}

fn policy_error(
    path: &std::path::Path,
    text: &str,
    span: Option<std::ops::Range<usize>>,
    field: Option<String>,
) -> anyhow::Error {
    let (line, column) = span
        .map(|s| {
            let before = &text[..s.start.min(text.len())];
            (before.matches('\n').count() + 1, before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1)
        })
        .unwrap_or((1, 1));
    // Only a field this program defines is named: an unknown one is what was typed.
    const FIELDS: [&str; 5] = ["view", "edit", "deploy", "delete", "sharing"];
    let field = match field.filter(|f| f != ".") {
        Some(f) if FIELDS.contains(&f.as_str()) => format!(" field `{f}`:"),
        Some(_) => " an unknown field:".to_owned(),
        None => String::new(),
    };
    anyhow::anyhow!(
        "`{}`:{line}:{column}:{field} not a policy (the fields are view, edit, deploy, delete and sharing; each a \
         role: read, triage, write, maintain or admin)",
        path.display()
    )
}

fn parse_now(s: &str) -> Result<Timestamp, String> {
    // The value is not repeated: nothing typed is.
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| format!("`--now` is not an RFC 3339 time: {e}"))?;
    u64::try_from(t.timestamp_millis()).map(Timestamp).map_err(|_| "`--now` is before 1970".to_owned())
}

/// The principal of `check`; a refused viewer session is a denial, not an error.
fn principal(ctx: &WorldCtx, args: &CheckArgs) -> Result<Result<Principal, SessionError>, Outcome> {
    if let Some(token) = &args.viewer_session {
        return Ok(ctx.authz.verify_session(token).map(Principal::Viewer));
    }
    principal_of(ctx, args).map(Ok)
}

fn session_json(s: &IssuedSession) -> Outcome {
    Outcome::json(
        Exit::Done,
        &json!({
            "session": s.token.expose_secret(), "app": s.session.app(), "email": s.session.email(),
            "expires_at": rfc3339(s.session.expires_at())
        }),
    )
}

fn google_error(e: &GoogleSignInError) -> Outcome {
    let exit = match e {
        GoogleSignInError::Store(_) | GoogleSignInError::Token(GoogleError::KeysUnavailable(_)) => Exit::Unavailable,
        GoogleSignInError::NotConfigured => Exit::Usage,
        _ => Exit::Denied,
    };
    Outcome::json(exit, &json!({"error": e.kind(), "message": e.to_string()}))
}

fn principal_of(ctx: &WorldCtx, args: &CheckArgs) -> Result<Principal, Outcome> {
    match &args.github_user {
        Some(login) => ctx
            .world
            .user(login)
            .map(Principal::github)
            .ok_or_else(|| Outcome::error(Exit::Usage, "unknown_user", format!("no user `{login}` in the world"))),
        None => Ok(Principal::Anonymous),
    }
}

fn decision_json(app: &str, action: Capability, principal: &str, d: &Decision) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("app".into(), json!(app));
        m.insert("action".into(), json!(action));
        m.insert("principal".into(), json!(principal));
    }
    v
}

fn error_json(e: &CheckError) -> Value {
    let kind = match e {
        CheckError::Github(GithubError::Unavailable {
            cause: UnavailableCause::RateLimited | UnavailableCause::SecondaryRateLimit,
            ..
        }) => "rate_limited",
        CheckError::Github(GithubError::Unavailable { .. }) => "unavailable",
        CheckError::Github(GithubError::Credentials { .. }) => "github_credentials",
        CheckError::Github(_) => "github_protocol",
        CheckError::Store(_) => "store_unavailable",
        _ => "unavailable",
    };
    let mut v = json!({"error": kind, "message": e.to_string()});
    if let Some(d) = e.retry_after() {
        v["retry_after"] = json!(d.as_secs());
    }
    v
}

async fn check(ctx: &WorldCtx, args: &CheckArgs) -> Outcome {
    let principal = match principal(ctx, args) {
        Ok(Ok(p)) => p,
        Ok(Err(error)) => {
            let v = json!({
                "decision": "deny", "app": args.app, "action": args.action, "principal": "viewer",
                "reason": Reason::SessionInvalid { error }, "source": "store", "age_ms": 0
            });
            return Outcome::json(Exit::Denied, &v);
        }
        Err(e) => return e,
    };
    decide(&ctx.authz, &principal, &AppId(args.app.clone()), args.action, consistency(args)).await
}

fn consistency(args: &CheckArgs) -> Consistency {
    if args.fresh { Consistency::Fresh } else { Consistency::Cached }
}

/// `check --google-id-token`: sign in, then check with the session.
async fn check_google(ctx: &WorldCtx, args: &CheckArgs, id_token: &str) -> Outcome {
    let app = AppId(args.app.clone());
    match ctx.authz.google_sign_in(&app, id_token).await {
        Ok(issued) => {
            decide(&ctx.authz, &Principal::Viewer(issued.session), &app, args.action, consistency(args)).await
        }
        Err(e) => google_error(&e),
    }
}

async fn decide(
    authz: &Authorizer,
    principal: &Principal,
    app: &AppId,
    cap: Capability,
    consistency: Consistency,
) -> Outcome {
    match authz.check_app_with(principal, app, cap, consistency).await {
        Ok(d) => {
            let exit = if d.is_allowed() { Exit::Done } else { Exit::Denied };
            Outcome::json(exit, &decision_json(&app.0, cap, &principal.label(), &d))
        }
        Err(e) => {
            say(Stream::Err, &format!("ghauthz: could not decide: {e}\n"));
            Outcome::json(Exit::Unavailable, &error_json(&e))
        }
    }
}

/// Every address invited to any app, once, ordered.
async fn invited_anywhere(authz: &Authorizer) -> Result<Vec<ghauthz::Email>, CheckError> {
    let mut all = std::collections::BTreeSet::new();
    for app in authz.apps().await? {
        match authz.viewers(&ChangedBy::Operator, app.id()).await {
            Ok(viewers) => all.extend(viewers),
            Err(ghauthz::ManageError::Check(e)) => return Err(e),
            // Deleted since it was listed (the operator is refused nothing else).
            Err(_) => {}
        }
    }
    Ok(all.into_iter().collect())
}

async fn apps_to_explain(authz: &Authorizer, only: Option<&str>) -> Result<Vec<App>, Outcome> {
    let unavailable = |e: CheckError| Outcome::json(Exit::Unavailable, &error_json(&e));
    match only {
        Some(id) => match authz.app(&AppId(id.to_owned())).await.map_err(unavailable)? {
            Some(app) => Ok(vec![app]),
            None => Err(Outcome::error(Exit::Denied, "unknown_app", format!("no app `{id}`"))),
        },
        None => authz.apps().await.map_err(unavailable),
    }
}

fn changed_by(ctx: &WorldCtx, login: Option<&str>) -> Result<ChangedBy, Outcome> {
    match login {
        None => Ok(ChangedBy::Operator),
        Some(login) => ctx
            .world
            .user(login)
            .map(|u| ChangedBy::Principal(Principal::github(u)))
            .ok_or_else(|| Outcome::error(Exit::Usage, "unknown_user", format!("no user `{login}` in the world"))),
    }
}

fn manage_error(e: &ManageError) -> Outcome {
    match e {
        ManageError::UnknownApp(_) => Outcome::error(Exit::Denied, "unknown_app", e),
        ManageError::InvalidEmail(_) => Outcome::error(Exit::Usage, "invalid_email", e),
        ManageError::Denied { decision, .. } => Outcome::json(
            Exit::Denied,
            &json!({"error": "denied", "message": e.to_string(), "reason": decision.reason()}),
        ),
        ManageError::Check(c) => Outcome::json(Exit::Unavailable, &error_json(c)),
        _ => Outcome::error(Exit::Unavailable, "unavailable", e),
    }
}

async fn viewers(ctx: &WorldCtx, cmd: ViewersCommand) -> Outcome {
    let (app, login) = match &cmd {
        ViewersCommand::Add(a) | ViewersCommand::Remove(a) => (&a.app, a.github_user.as_deref()),
        ViewersCommand::List(a) => (&a.app, a.github_user.as_deref()),
    };
    let by = match changed_by(ctx, login) {
        Ok(by) => by,
        Err(e) => return e,
    };
    let app = AppId(app.clone());
    let result = match &cmd {
        ViewersCommand::Add(a) => ctx
            .authz
            .add_viewer(&by, &app, &a.email)
            .await
            .map(|c| json!({"app": c.app, "email": c.email, "added": c.changed})),
        ViewersCommand::Remove(a) => ctx
            .authz
            .remove_viewer(&by, &app, &a.email)
            .await
            .map(|c| json!({"app": c.app, "email": c.email, "removed": c.changed})),
        ViewersCommand::List(_) => ctx.authz.viewers(&by, &app).await.map(|v| json!({"app": app, "viewers": v})),
    };
    match result {
        Ok(v) => Outcome::json(Exit::Done, &v),
        Err(e) => manage_error(&e),
    }
}

fn rfc3339(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(t.0).unwrap_or(i64::MAX))
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn link_error(e: &LinkError) -> Outcome {
    let exit = match e {
        LinkError::Store(_) => Exit::Unavailable,
        LinkError::InvalidEmail(_) => Exit::Usage,
        _ => Exit::Denied,
    };
    let mut v = json!({"error": e.kind(), "message": e.to_string()});
    if let LinkError::RateLimited { retry_after } = e {
        v["retry_after"] = json!(retry_after.as_secs());
    }
    Outcome::json(exit, &v)
}

async fn link(ctx: &WorldCtx, cmd: LinkCommand) -> Outcome {
    match cmd {
        LinkCommand::Issue { app, email, print_token: _ } => match ctx.authz.issue_link(&AppId(app), &email).await {
            // World mode has no mailer: the token is printed.
            Ok(l) => Outcome::json(
                Exit::Done,
                &json!({"app": l.app, "email": l.email, "token": l.token.expose_secret(), "expires_at": rfc3339(l.expires_at)}),
            ),
            Err(e) => link_error(&e),
        },
        LinkCommand::Inspect { token } => match ctx.authz.inspect_link(&token).await {
            Ok(l) => {
                Outcome::json(Exit::Done, &json!({"app": l.app, "email": l.email, "expires_at": rfc3339(l.expires_at)}))
            }
            Err(e) => link_error(&e),
        },
        LinkCommand::Redeem { token, app } => {
            let expected = app.map(AppId);
            match ctx.authz.redeem_link(&token, expected.as_ref()).await {
                Ok(s) => session_json(&s),
                Err(e) => link_error(&e),
            }
        }
    }
}

fn cell(row: &ExplainRow) -> String {
    match &row.result {
        Ok(d) => {
            let outcome = if d.is_allowed() { "allow" } else { "deny" };
            match d.reason() {
                Reason::GithubRole { role_name, .. } => format!("{outcome} {}", role_name.as_str()),
                r => format!("{outcome} {}", r.kind()),
            }
        }
        Err(e) => format!("error {}", error_json(e)["error"].as_str().unwrap_or("unavailable")),
    }
}

async fn explain(ctx: &WorldCtx, args: &ExplainArgs) -> Outcome {
    let apps = match apps_to_explain(&ctx.authz, args.app.as_deref()).await {
        Ok(apps) => apps,
        Err(e) => return e,
    };
    let viewers = match invited_anywhere(&ctx.authz).await {
        Ok(v) => v,
        Err(e) => return Outcome::json(Exit::Unavailable, &error_json(&e)),
    };
    let rows = ghauthz::world::explain(&ctx.authz, &apps, &ctx.world.principals(), &viewers).await;
    let exit = if rows.iter().any(|r| r.result.is_err()) { Exit::Unavailable } else { Exit::Done };
    if args.json {
        let decisions: Vec<Value> = rows
            .iter()
            .map(|r| match &r.result {
                Ok(d) => decision_json(&r.app.0, r.action, &r.principal, d),
                Err(e) => {
                    let mut v = error_json(e);
                    v["app"] = json!(r.app.0);
                    v["action"] = json!(r.action);
                    v["principal"] = json!(r.principal);
                    v
                }
            })
            .collect();
        return Outcome::json(exit, &json!({ "decisions": decisions }));
    }
    let mut table = vec![[
        "APP".to_owned(),
        "PRINCIPAL".to_owned(),
        "VIEW".to_owned(),
        "EDIT".to_owned(),
        "DEPLOY".to_owned(),
        "DELETE".to_owned(),
    ]];
    for chunk in rows.chunks(Capability::ALL.len()) {
        let mut line = [
            chunk[0].app.0.clone(),
            chunk[0].principal.clone(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ];
        for (slot, row) in line[2..].iter_mut().zip(chunk) {
            *slot = cell(row);
        }
        table.push(line);
    }
    let widths: Vec<usize> = (0..6).map(|i| table.iter().map(|l| l[i].len()).max().unwrap_or(0)).collect();
    let text = table
        .iter()
        .map(|l| {
            l.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n");
    Outcome { exit, stdout: text }
}
