//! What the command line reads besides its arguments: the policy file, the clock's `--now`, the
//! webhook's secret and body. Each has a size bound, and an error that names the file, line,
//! column and field, never what it holds.

use std::path::PathBuf;

use anyhow::Context as _;

use ghauthz::{Policy, Timestamp, WebhookSecret};

use crate::output::{Exit, Outcome};

/// The most read of a policy file (64 KiB) and of a secret file (4 KiB).
pub(crate) const MAX_POLICY_FILE: u64 = 64 << 10;

pub(crate) const MAX_SECRET_FILE: u64 = 4 << 10;

/// Everything `from` holds, refused (`InvalidData`, "larger than N bytes") beyond `limit` bytes,
/// reading no further than that: `/dev/zero` fails fast.
pub(crate) fn read_limited(from: impl std::io::Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(from, limit + 1), &mut out)?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {limit} bytes")));
    }
    Ok(out)
}

/// A text file of at most `limit` bytes.
pub(crate) fn read_file(path: &std::path::Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_limited(std::fs::File::open(path)?, limit)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not text"))
}

/// The policy file. A malformed one is reported by file, line, column and field, never by its
/// contents.
pub(crate) fn load_policy(path: &std::path::Path) -> anyhow::Result<Policy> {
    let text = read_file(path, MAX_POLICY_FILE).with_context(|| format!("cannot read `{}`", path.display()))?;
    let de = toml::Deserializer::parse(&text).map_err(|e| policy_error(path, &text, e.span(), None))?;
    serde_path_to_error::deserialize(de)
        .map_err(|e| policy_error(path, &text, e.inner().span(), Some(e.path().to_string())))
}

pub(crate) fn policy_error(
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

/// An RFC 3339 time at or after 1970 (`--since`, `--now`); the error does not repeat it.
pub(crate) fn parse_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(s).map_err(|e| e.to_string())
}

/// `--now`: an RFC 3339 time at or after 1970.
pub(crate) fn parse_now(s: &str) -> Result<Timestamp, String> {
    // The value is not repeated: nothing typed is.
    parse_time(s).map_err(|e| format!("`--now` is {e}"))
}

/// The webhook's secret and, during a rotation, its previous one: from `--webhook-secret-file`
/// (once or twice) or `GHAUTHZ_WEBHOOK_SECRET` and `GHAUTHZ_WEBHOOK_SECRET_PREVIOUS`.
/// `None` when neither is given.
pub(crate) fn webhook_secret(files: &[PathBuf]) -> Result<Option<(WebhookSecret, Option<WebhookSecret>)>, Outcome> {
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
    match files {
        [] => match var("GHAUTHZ_WEBHOOK_SECRET")? {
            Some(current) => Ok(Some((current, var("GHAUTHZ_WEBHOOK_SECRET_PREVIOUS")?))),
            None => Ok(None),
        },
        [current] => Ok(Some((file(current)?, None))),
        [current, previous] => Ok(Some((file(current)?, Some(file(previous)?)))),
        _ => Err(usage("`--webhook-secret-file` at most twice: the current secret, then the previous one".into())),
    }
}
