//! The command line's grammar (clap derive): every command and option, and nothing that is
//! parsed and then ignored.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ghauthz::{Capability, RepoCoords, Timestamp, Visibility};

#[derive(Debug, Parser)]
#[command(name = "ghauthz", version, about = "Who may view, edit, deploy and delete apps deployed from GitHub")]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct Global {
    /// World mode: serve this fixture world from a mock GitHub on 127.0.0.1.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) world: Option<PathBuf>,
    /// The store: an SQLite file or a postgres:// URL.
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) db: Option<String>,
    /// The clock in world mode (RFC 3339).
    #[arg(long, global = true, value_name = "RFC3339")]
    pub(crate) now: Option<String>,
    /// Signing keys for links and viewer sessions.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) keys: Option<PathBuf>,
    /// A policy file (TOML) that moves capabilities to other roles.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    /// Live mode: the GitHub REST API (default https://api.github.com).
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) github_api: Option<String>,
    /// Live mode, as a GitHub App: its id (with `--app-key`; across all of its installations
    /// unless `--installation` names one).
    #[arg(long, global = true, value_name = "ID", allow_negative_numbers = true)]
    pub(crate) app_id: Option<u64>,
    /// Live mode, as a GitHub App: its private key (PEM).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) app_key: Option<PathBuf>,
    /// Live mode, as a GitHub App: the one installation to act as (default: each repository
    /// through the installation on its owner's account).
    #[arg(long, global = true, value_name = "ID", allow_negative_numbers = true)]
    pub(crate) installation: Option<u64>,
    /// Live mode: Google's JWKS (default Google's own).
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) google_jwks: Option<String>,
    /// Live mode: an accepted Google OAuth client id (repeatable).
    #[arg(long, global = true, value_name = "ID")]
    pub(crate) google_client_id: Vec<String>,
}

/// The live-mode options, by flag.
pub(crate) const LIVE_OPTIONS: [&str; 6] =
    ["--github-api", "--app-id", "--app-key", "--installation", "--google-jwks", "--google-client-id"];

impl Global {
    /// The global options given, by flag, in the order they are declared.
    pub(crate) fn given(&self) -> Vec<&'static str> {
        [
            ("--world", self.world.is_some()),
            ("--db", self.db.is_some()),
            ("--now", self.now.is_some()),
            ("--keys", self.keys.is_some()),
            ("--policy", self.policy.is_some()),
            ("--github-api", self.github_api.is_some()),
            ("--app-id", self.app_id.is_some()),
            ("--app-key", self.app_key.is_some()),
            ("--installation", self.installation.is_some()),
            ("--google-jwks", self.google_jwks.is_some()),
            ("--google-client-id", !self.google_client_id.is_empty()),
        ]
        .into_iter()
        .filter(|(_, given)| *given)
        .map(|(flag, _)| flag)
        .collect()
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
    /// Apps: deploy, list, show, change visibility, delete.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// The audit log, newest first.
    Audit(AuditArgs),
    /// Support windows: open, revoke, list.
    #[command(subcommand)]
    Support(SupportCommand),
    /// Serve the world's mock GitHub REST API (and Google JWKS) until interrupted.
    MockGithub(MockGithubArgs),
    /// Run a decision table against its world.
    Test(TestArgs),
    /// Accounts: delete one and every app it deployed.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Verify and apply one GitHub webhook delivery (its body on standard input).
    Webhook(WebhookArgs),
    /// Serve the HTTP surface: AuthZEN 1.0 decisions, GitHub's webhooks, health.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) listen: std::net::SocketAddr,
    /// The callers' keys: `SCOPE KEY` a line (scope `evaluate`, `search` or `all`), in a file
    /// its owner alone may read; read again on SIGHUP. Required in live mode.
    #[arg(long, value_name = "FILE")]
    pub(crate) api_keys: Option<PathBuf>,
    /// The identifier published as `policy_decision_point` (default: the listen URL).
    #[arg(long, value_name = "URL")]
    pub(crate) public_url: Option<String>,
    /// A file holding GitHub's webhook secret (as for `webhook`; given twice during a rotation).
    /// Without one (and without `GHAUTHZ_WEBHOOK_SECRET`), `/webhooks/github` refuses every
    /// delivery.
    #[arg(long, value_name = "FILE")]
    pub(crate) webhook_secret_file: Vec<PathBuf>,
    /// How long a connection may take to send a request's head (a slow client holds a
    /// connection that long at most), in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) header_read_timeout: u64,
    /// The most connections served at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = max_connections)]
    pub(crate) max_connections: usize,
    /// The app's URL, `{app}` where its id goes (`https://{app}.apps.example`): mounts the
    /// viewer's sign-in pages under `/auth/`, which send signed-in viewers there.
    #[arg(long, value_name = "TEMPLATE")]
    pub(crate) app_url_template: Option<String>,
    /// Sends sign-in links through this SMTP server: `smtps://HOST[:PORT]` (TLS, 465),
    /// `smtp+starttls://HOST[:PORT]` (STARTTLS, 587), or `smtp://HOST[:PORT]` (plain, to this
    /// machine only, 25). Needs `--mail-from` and `--public-url`.
    #[arg(long, value_name = "URL")]
    pub(crate) smtp: Option<String>,
    /// The sender of sign-in links (`apps@example.com` or `Apps <apps@example.com>`).
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) mail_from: Option<String>,
    /// The SMTP user name; the password is read from `--smtp-password-file`.
    #[arg(long, value_name = "USER", requires = "smtp_password_file")]
    pub(crate) smtp_user: Option<String>,
    /// A file holding the SMTP password (its first line).
    #[arg(long, value_name = "FILE", requires = "smtp_user")]
    pub(crate) smtp_password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// The decision table (TOML, format version 1).
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// Also write JUnit XML here.
    #[arg(long, value_name = "FILE")]
    pub(crate) junit: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct MockGithubArgs {
    /// The address to listen on (default: a free port of 127.0.0.1).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub(crate) listen: std::net::SocketAddr,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SupportCommand {
    /// Open a support window: the GitHub user needs `edit` on the app.
    Grant {
        /// The app's id.
        #[arg(long)]
        app: String,
        /// How long it stays open, in hours (1 to 168).
        #[arg(long, value_name = "H", allow_negative_numbers = true)]
        hours: u64,
        /// Why (shown to whoever lists the windows).
        #[arg(long)]
        reason: String,
        /// view or edit (repeatable; default view).
        #[arg(long = "capability", value_name = "CAP")]
        capabilities: Vec<Capability>,
        /// Admit only this agent (default: any agent).
        #[arg(long, value_name = "NAME")]
        agent: Option<String>,
        /// Who opens it, by login.
        #[arg(long, value_name = "LOGIN")]
        github_user: String,
    },
    /// Revoke the app's open support windows (only this agent's, with `--agent`).
    Revoke {
        /// The app's id.
        #[arg(long)]
        app: String,
        /// Only the windows for this agent.
        #[arg(long, value_name = "NAME")]
        agent: Option<String>,
        /// Authorize the revocation as this GitHub user (who needs `edit`); without it, the
        /// operator revokes.
        #[arg(long, value_name = "LOGIN")]
        github_user: Option<String>,
    },
    /// The app's support windows, open or not.
    List {
        /// The app's id.
        #[arg(long)]
        app: String,
        /// Authorize the listing as this GitHub user (who needs `edit`).
        #[arg(long, value_name = "LOGIN")]
        github_user: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Only this app's entries.
    #[arg(long)]
    pub(crate) app: Option<String>,
    /// Only entries at or after this time.
    #[arg(long, value_name = "RFC3339", value_parser = crate::input::parse_time)]
    pub(crate) since: Option<Timestamp>,
    /// At most this many entries (the newest).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub(crate) limit: Option<u32>,
}

#[derive(Debug, Args)]
pub(crate) struct WebhookArgs {
    /// The event's name (`X-GitHub-Event`).
    #[arg(long, value_name = "NAME")]
    pub(crate) event: String,
    /// The delivery's id (`X-GitHub-Delivery`).
    #[arg(long, value_name = "ID")]
    pub(crate) delivery: String,
    /// The signature (`X-Hub-Signature-256`): `sha256=` and 64 hex digits.
    #[arg(long, value_name = "SIG")]
    pub(crate) signature: String,
    /// A file holding the webhook secret (a trailing newline is ignored); overrides
    /// `GHAUTHZ_WEBHOOK_SECRET`. Given twice during a rotation: the current secret, then the
    /// previous one (`GHAUTHZ_WEBHOOK_SECRET_PREVIOUS` without files).
    #[arg(long, value_name = "FILE")]
    pub(crate) webhook_secret_file: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GoogleCommand {
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
pub(crate) enum AppsCommand {
    /// Deploy an app: the GitHub user needs `deploy` on the repository; the repository id GitHub
    /// reports now is recorded.
    Deploy {
        /// The app's id.
        #[arg(long)]
        app: String,
        /// The repository, `OWNER/NAME`.
        #[arg(long, value_name = "OWNER/NAME")]
        repo: RepoCoords,
        /// The branch the app runs from.
        #[arg(long)]
        branch: String,
        /// The app's main file.
        #[arg(long)]
        main_file: String,
        /// public or private (default private).
        #[arg(long, default_value = "private")]
        visibility: Visibility,
        /// The deployer, by login.
        #[arg(long, value_name = "LOGIN")]
        github_user: String,
    },
    /// Every app in the store, or the apps a GitHub user may do something to.
    List {
        /// Only the apps this GitHub user may `--action`.
        #[arg(long, value_name = "LOGIN", requires = "action")]
        github_user: Option<String>,
        /// view, edit, deploy or delete (with `--github-user`).
        #[arg(long, requires = "github_user")]
        action: Option<Capability>,
    },
    /// One app's record.
    Show {
        /// The app's id.
        #[arg(long)]
        app: String,
    },
    /// Make an app public or private.
    Visibility {
        /// The app's id.
        #[arg(long)]
        app: String,
        /// public or private.
        #[arg(long)]
        visibility: Visibility,
        /// Authorize the change as this GitHub user (who needs the `sharing` role); without it,
        /// the operator changes it.
        #[arg(long, value_name = "LOGIN")]
        github_user: Option<String>,
    },
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
pub(crate) enum AccountsCommand {
    /// Delete an account and every app it deployed.
    #[command(group(clap::ArgGroup::new("account").required(true).args(["github_user", "github_id"])))]
    Delete {
        /// The account, by login (resolved to its id now: in the world, or on GitHub).
        #[arg(long, value_name = "LOGIN")]
        github_user: Option<String>,
        /// The account, by its numeric GitHub id (for an account GitHub no longer has, or whose
        /// login has since been taken by someone else).
        #[arg(long, value_name = "ID", allow_negative_numbers = true)]
        github_id: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum LinkCommand {
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
pub(crate) enum ViewersCommand {
    /// Invite an address.
    Add(ViewerArgs),
    /// Remove an invited address.
    Remove(ViewerArgs),
    /// List the invited addresses.
    List(ViewerListArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ViewerArgs {
    /// The app's id.
    #[arg(long)]
    pub(crate) app: String,
    /// The address.
    #[arg(long)]
    pub(crate) email: String,
    /// Authorize the change as this GitHub user (who needs the `sharing` role); without it, the
    /// operator makes the change.
    #[arg(long, value_name = "LOGIN")]
    pub(crate) github_user: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ViewerListArgs {
    /// The app's id.
    #[arg(long)]
    pub(crate) app: String,
    /// Authorize the listing as this GitHub user.
    #[arg(long, value_name = "LOGIN")]
    pub(crate) github_user: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("principal").required(true).args(["github_user", "anonymous", "viewer_session", "google_id_token", "support_agent"])))]
pub(crate) struct CheckArgs {
    /// The app's id.
    #[arg(long)]
    pub(crate) app: String,
    /// view, edit, deploy or delete.
    #[arg(long)]
    pub(crate) action: Capability,
    /// A GitHub user, by login.
    #[arg(long, value_name = "LOGIN")]
    pub(crate) github_user: Option<String>,
    /// Nobody signed in.
    #[arg(long)]
    pub(crate) anonymous: bool,
    /// A viewer session minted by `link redeem` or `google sign-in`.
    #[arg(long, value_name = "TOKEN")]
    pub(crate) viewer_session: Option<String>,
    /// A Google ID token: `google sign-in` and the check in one command.
    #[arg(long, value_name = "TOKEN")]
    pub(crate) google_id_token: Option<String>,
    /// A member of the platform's support staff, by name: allowed only inside a support window.
    #[arg(long, value_name = "NAME")]
    pub(crate) support_agent: Option<String>,
    /// Rest on nothing cached: read the store and revalidate the GitHub fact first.
    #[arg(long)]
    pub(crate) fresh: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// Only this app.
    #[arg(long)]
    pub(crate) app: Option<String>,
    /// JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `--max-connections`: 1 to 1,000,000 (past that, a semaphore cannot hold them).
fn max_connections(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err("a number of connections from 1 to 1000000".to_owned()),
    }
}
