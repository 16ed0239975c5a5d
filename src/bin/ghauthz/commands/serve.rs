//! `ghauthz serve`: the HTTP surface (spec/http.md) until SIGINT or SIGTERM.

use std::time::Duration;

use ghauthz::http::web::SignInPages;
use ghauthz::http::{ApiKeys, Service};
use ghauthz::mail::{MailConfig, SmtpConfig, SmtpMailer, SmtpSecurity};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use super::stopped;
use crate::cli::ServeArgs;
use crate::context::Ctx;
use crate::output::{Exit, Outcome, Stream, say};

/// How long requests in flight may take to finish once a stop is asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves until SIGINT or SIGTERM: prints `{"listening", "api_key"?}` on its first line once
/// listening; then stops accepting, lets what is in flight finish (at most [`DRAIN`]) and exits 0.
/// `metrics`: the recorder, installed before the authorizer was built (so that what it reports
/// from its start is counted).
pub(crate) async fn run(ctx: &Ctx, args: &ServeArgs, metrics: PrometheusHandle) -> Outcome {
    let (keys, made) = match (&args.api_keys, ctx.world.is_some()) {
        (Some(path), _) => match ApiKeys::load(path) {
            Ok(keys) => (keys, None),
            Err(e) => return Outcome::error(e.class().into(), e.kind(), format!("`--api-keys`: {e}")),
        },
        (None, true) => match ApiKeys::generate() {
            Ok((keys, key)) => (keys, Some(key)),
            Err(e) => return Outcome::error(e.class().into(), e.kind(), &e),
        },
        (None, false) => return live_without_keys(),
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            return Outcome::error(Exit::Unavailable, "listen", format!("cannot listen on {}: {e}", args.listen));
        }
    };
    let listening = match listener.local_addr() {
        Ok(addr) => format!("http://{addr}"),
        Err(e) => return Outcome::error(Exit::Unavailable, "listen", format!("cannot listen: {e}")),
    };
    let public = match args.public_url.as_deref().unwrap_or(&listening).parse::<url::Url>() {
        Ok(url) if matches!(url.scheme(), "https" | "http") && url.host().is_some() => url,
        // The value is not repeated.
        _ => return Outcome::error(Exit::Usage, "usage", "`--public-url`: expected an http:// or https:// URL"),
    };
    let service = Service::new(ctx.authz.clone(), keys, public.clone()).with_metrics({
        let handle = metrics.clone();
        move || handle.render()
    });
    let service = match &args.app_url_template {
        Some(template) => match SignInPages::new(ctx.authz.clone(), public, template) {
            Ok(pages) => match ctx.authz.google_client_ids().first() {
                Some(client_id) => service.with_pages(pages.with_google_button(client_id.clone())),
                None => service.with_pages(pages),
            },
            Err(e) => return Outcome::error(Exit::Usage, "usage", format!("`--{}`: {e}", e.kind().replace('_', "-"))),
        },
        None => service,
    };
    // Histograms are folded in on a schedule, not on every render.
    let _upkeep = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            metrics.run_upkeep();
        }
    }));
    // Taken before the first line: a SIGHUP from then on reads the keys again (or, without a
    // keys file, is ignored), never ends the process.
    #[cfg(unix)]
    let _rotation = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangup) => on_hangup(service.clone(), args.api_keys.clone(), hangup),
        Err(e) => return Outcome::error(Exit::Unavailable, "signal", format!("cannot listen for SIGHUP: {e}")),
    };
    let mut first = json!({"listening": listening});
    if let Some(key) = made {
        first["api_key"] = json!(key);
    }
    say(Stream::Out, &format!("{first}\n"));
    // The one JSON object is out: what follows goes to stderr only.
    let limits = Limits {
        header_read_timeout: Duration::from_secs(args.header_read_timeout.max(1)),
        max_connections: args.max_connections.max(1),
    };
    let outcome = serve_until_stopped(listener, service.router(), limits).await;
    match outcome {
        Ok(()) => Outcome::text(Exit::Done, String::new()).saying("stopped".to_owned()),
        Err(e) => Outcome::text(Exit::Unavailable, String::new()).saying(e),
    }
}

/// What one connection may hold.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// The longest a request's head may take to arrive (hyper then closes the connection).
    header_read_timeout: Duration,
    /// The most connections served at once.
    max_connections: usize,
}

/// Accepts and serves connections (HTTP/1.1, keep-alive) until SIGINT or SIGTERM; then stops
/// accepting, lets what is in flight finish (at most [`DRAIN`]) and returns.
async fn serve_until_stopped(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: Limits,
) -> Result<(), String> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    let mut stop = std::pin::pin!(stopped());
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.map_err(|e| format!("the server failed: {e}"))?,
            r = &mut stop => { r.map_err(|e| format!("cannot wait for a signal: {e}"))?; break; }
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // A connection that failed before it was accepted (reset, out of descriptors for a
                // moment): the next one is waited for.
                Err(_) => { tokio::time::sleep(Duration::from_millis(10)).await; continue; }
            },
            r = &mut stop => { r.map_err(|e| format!("cannot wait for a signal: {e}"))?; break; }
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A connection that ends in an I/O error or a malformed request is the client's.
            let _ = connection.await;
            drop(slot);
        });
    }
    // No new connection from here on: the listener goes first.
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        say(Stream::Err, "requests still in flight after 10 s were dropped\n");
    }
    Ok(())
}

/// The largest SMTP password file read.
const MAX_PASSWORD_FILE: u64 = 4096;

/// The mailer `--smtp` asks for, if any, sending links that open the pages at `--public-url`.
pub(super) fn mail(args: &ServeArgs) -> Result<Option<MailConfig>, Outcome> {
    let usage = |m: &str| Outcome::error(Exit::Usage, "usage", m);
    let Some(smtp) = &args.smtp else {
        if args.mail_from.is_some() || args.smtp_user.is_some() {
            return Err(usage("`--mail-from` and `--smtp-user` need `--smtp URL`"));
        }
        return Ok(None);
    };
    let (Some(from), Some(public)) = (&args.mail_from, &args.public_url) else {
        return Err(usage("`--smtp` needs `--mail-from ADDRESS` and `--public-url URL` (where links point)"));
    };
    if args.app_url_template.is_none() {
        return Err(usage("`--smtp` needs `--app-url-template`: the links open the sign-in pages it mounts"));
    }
    // The value is not repeated: it may hold credentials.
    let bad_url = || usage("`--smtp`: expected smtps://HOST[:PORT], smtp+starttls://HOST[:PORT] or smtp://HOST[:PORT]");
    let url: url::Url = smtp.parse().map_err(|_| bad_url())?;
    let (security, default_port) = match url.scheme() {
        "smtps" => (SmtpSecurity::Tls, 465),
        "smtp+starttls" => (SmtpSecurity::StartTls, 587),
        "smtp" => (SmtpSecurity::Plain, 25),
        _ => return Err(bad_url()),
    };
    let host = url.host_str().ok_or_else(bad_url)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(usage("`--smtp`: give credentials with `--smtp-user` and `--smtp-password-file`, not in the URL"));
    }
    let mut config = SmtpConfig::new(host, url.port().unwrap_or(default_port), security, from.clone());
    if let (Some(user), Some(path)) = (&args.smtp_user, &args.smtp_password_file) {
        let file = std::fs::File::open(path).map_err(|e| usage(&format!("`--smtp-password-file`: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let meta = file.metadata().map_err(|e| usage(&format!("`--smtp-password-file`: {e}")))?;
            if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
                return Err(usage(
                    "`--smtp-password-file`: must be a regular file only its owner may read (chmod 600)",
                ));
            }
        }
        let text = crate::input::read_limited(file, MAX_PASSWORD_FILE)
            .map_err(|e| usage(&format!("`--smtp-password-file`: {e}")))?;
        let text = String::from_utf8(text).map_err(|_| usage("`--smtp-password-file`: not UTF-8"))?;
        let password = text.lines().next().unwrap_or_default().to_owned();
        if password.is_empty() {
            return Err(usage("`--smtp-password-file`: its first line is empty"));
        }
        config = config.with_credentials(user.clone(), password);
    }
    let mailer = SmtpMailer::new(config).map_err(|e| Outcome::error(e.class().into(), e.kind(), &e))?;
    let public: url::Url = public.parse().map_err(|_| usage("`--public-url`: expected an http:// or https:// URL"))?;
    Ok(Some(MailConfig::new(std::sync::Arc::new(mailer), public)))
}

/// Histogram buckets for `_seconds` metrics: 50 µs to 2.5 s.
const BUCKETS: &[f64] =
    &[0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// A Prometheus recorder for this process, histograms with buckets (not summaries).
pub(super) fn prometheus() -> Result<PrometheusHandle, Outcome> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| Outcome::error(Exit::Unavailable, "metrics", format!("cannot set up metrics: {e}")))?;
    ghauthz::telemetry::describe();
    Ok(handle)
}

/// Live mode without `--api-keys` would let nobody call it: refused, before anything is set up.
pub(super) fn live_without_keys() -> Outcome {
    Outcome::error(Exit::Usage, "usage", "live mode needs `--api-keys FILE`: nobody could call it")
}

/// Reads the keys file again on each SIGHUP: the new keys replace the old at once. A file that
/// cannot be taken leaves no key accepted (fail closed), and says why on stderr.
#[cfg(unix)]
fn on_hangup(
    service: Service,
    path: Option<std::path::PathBuf>,
    mut hangup: tokio::signal::unix::Signal,
) -> tokio_util::task::AbortOnDropHandle<()> {
    tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let Some(path) = &path else {
                say(Stream::Err, "SIGHUP: no keys file to read again (the key of this run stays)\n");
                continue;
            };
            match ApiKeys::load(path) {
                Ok(keys) => {
                    let n = keys.len();
                    service.set_keys(keys);
                    say(Stream::Err, &format!("keys read again: {n} held\n"));
                }
                Err(e) => {
                    // Fail closed: a key meant to be removed may still be in a file that cannot
                    // be read; nobody is let in until the file is fixed and SIGHUP sent again.
                    service.set_keys(ApiKeys::default());
                    say(Stream::Err, &format!("keys not read: {e}; no key is accepted until the file is fixed\n"));
                }
            }
        }
    }))
}
