//! One file per command; [`run`] sets up the world the command needs and dispatches.

mod accounts;
mod apps;
mod audit;
mod check;
mod explain;
mod google;
mod link;
mod mock_github;
mod serve;
mod support;
mod test;
mod viewers;
mod webhook;

use crate::cli::{Cli, Command, GoogleCommand};
use crate::context::{Needs, ctx};
use crate::input::webhook_secret;
use crate::output::Outcome;

/// Runs the command: only what it needs is read (the keys file only by commands that sign or
/// verify viewer sessions, the webhook secret only by `webhook` and `serve`).
pub(crate) async fn run(cli: Cli) -> Outcome {
    // The mock serves a world; it needs no authorizer, store or keys.
    if let Command::MockGithub(args) = &cli.command {
        return mock_github::run(&cli.global, args).await;
    }
    // A decision table names its own world, policy and clock.
    if let Command::Test(args) = &cli.command {
        return test::run(&cli.global, args).await;
    }
    let mut metrics = None;
    if let Command::Serve(args) = &cli.command {
        if args.api_keys.is_none() && cli.global.world.is_none() {
            return serve::live_without_keys();
        }
        match serve::prometheus() {
            Ok(handle) => metrics = Some(handle),
            Err(e) => return e,
        }
    }
    let needs_keys = match &cli.command {
        Command::Link(_) | Command::Google(_) | Command::Serve(_) => true,
        Command::Check(args) => args.viewer_session.is_some() || args.google_id_token.is_some(),
        _ => false,
    };
    let webhook_secret = match &cli.command {
        Command::Webhook(args) => match webhook_secret(&args.webhook_secret_file) {
            Ok(Some(secret)) => Some(secret),
            Ok(None) => {
                return Outcome::error(
                    crate::output::Exit::Usage,
                    "usage",
                    "no webhook secret: pass `--webhook-secret-file` or set `GHAUTHZ_WEBHOOK_SECRET`",
                );
            }
            Err(e) => return e,
        },
        // Optional for `serve`: without one, its webhook route refuses every delivery.
        Command::Serve(args) => match webhook_secret(&args.webhook_secret_file) {
            Ok(secret) => secret,
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
    let needs_google = match &cli.command {
        Command::Google(_) => true,
        Command::Check(args) => args.google_id_token.is_some(),
        _ => false,
    };
    let mail = match &cli.command {
        Command::Serve(args) => match serve::mail(args) {
            Ok(mail) => mail,
            Err(e) => return e,
        },
        _ => None,
    };
    let needs = Needs { keys: needs_keys, google: needs_google, webhook: webhook_secret, google_strict, mail };
    let ctx = match ctx(&cli.global, needs).await {
        Ok(ctx) => ctx,
        Err(e) => return e,
    };
    let outcome = match cli.command {
        Command::Check(args) => check::run(&ctx, &args).await,
        Command::Explain(args) => explain::explain(&ctx, &args).await,
        Command::Viewers(cmd) => viewers::viewers(&ctx, cmd).await,
        Command::Link(cmd) => link::link(&ctx, cmd).await,
        Command::Google(cmd) => google::run(&ctx, cmd).await,
        Command::Apps(cmd) => apps::run(&ctx, cmd).await,
        Command::Audit(args) => audit::run(&ctx, &args).await,
        Command::Support(cmd) => support::run(&ctx, cmd).await,
        Command::MockGithub(args) => mock_github::run(&cli.global, &args).await,
        Command::Test(args) => test::run(&cli.global, &args).await,
        Command::Accounts(cmd) => accounts::run(&ctx, cmd).await,
        Command::Webhook(args) => webhook::webhook(&ctx, &args).await,
        Command::Serve(args) => match metrics {
            Some(metrics) => serve::run(&ctx, &args, metrics).await,
            None => Outcome::error(crate::output::Exit::Unavailable, "metrics", "no metrics recorder"),
        },
    };
    ctx.close().await;
    outcome
}

/// Until SIGINT or (on Unix) SIGTERM.
pub(super) async fn stopped() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
