//! Everything the command line prints, in one place: one JSON object on stdout (a table for
//! `explain` without `--json`), diagnostics on stderr, and the exit code (spec: 0 done, 1 bad
//! usage or input, 2 denied or rejected, 3 could not decide). Errors carry the library's own
//! kinds; nothing typed that may be a secret is repeated.

use std::process::{ExitCode, Termination};

use ghauthz::{
    Capability, CheckError, Decision, ErrorClass, GoogleSignInError, IssuedSession, LinkError, ManageError, Timestamp,
};
use serde_json::{Value, json};

/// Exit codes (docs/cli.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Allowed / done.
    Done = 0,
    /// Bad usage or bad input.
    Usage = 1,
    /// Denied / rejected.
    Denied = 2,
    /// Could not decide: unavailable or rate limited.
    Unavailable = 3,
}

/// The library's table: each error's class is its exit code.
impl From<ErrorClass> for Exit {
    fn from(class: ErrorClass) -> Self {
        match class {
            ErrorClass::Usage => Exit::Usage,
            ErrorClass::Denied => Exit::Denied,
            _ => Exit::Unavailable,
        }
    }
}

/// A command's result: what to print on stdout, the line for stderr, and the exit code.
pub(crate) struct Outcome {
    pub(crate) exit: Exit,
    pub(crate) stdout: String,
    /// Said on stderr as `ghauthz: <diagnostic>`.
    diagnostic: Option<String>,
}

impl Outcome {
    /// `text` as it is (help, version, the `explain` table), nothing on stderr.
    pub(crate) fn text(exit: Exit, text: String) -> Self {
        Self { exit, stdout: text, diagnostic: None }
    }

    /// `v` on stdout. A failure that is not an answer (bad usage or input, exit 1; could not
    /// decide, exit 3) also says its message on stderr; a denial (exit 2) is an answer and says
    /// nothing there.
    pub(crate) fn json(exit: Exit, v: &Value) -> Self {
        let diagnostic = match exit {
            Exit::Usage | Exit::Unavailable => v.get("message").and_then(Value::as_str).map(|message| {
                if v.get("error").and_then(Value::as_str) == Some("usage") {
                    format!("{message}; see `ghauthz --help`")
                } else {
                    message.to_owned()
                }
            }),
            Exit::Done | Exit::Denied => None,
        };
        Self { exit, stdout: v.to_string(), diagnostic }
    }

    pub(crate) fn error(exit: Exit, kind: &str, message: impl std::fmt::Display) -> Self {
        Self::json(exit, &json!({"error": kind, "message": message.to_string()}))
    }

    /// The same, saying `diagnostic` on stderr instead.
    pub(crate) fn saying(self, diagnostic: String) -> Self {
        Self { diagnostic: Some(diagnostic), ..self }
    }
}

impl Termination for Outcome {
    /// Prints what the command says and exits with its code.
    fn report(self) -> ExitCode {
        if let Some(diagnostic) = &self.diagnostic {
            // Messages can carry text from outside (a login, GitHub's own message): no control
            // character, and nothing that reorders or breaks the line, reaches the terminal.
            let mut shown = String::with_capacity(diagnostic.len());
            for c in diagnostic.chars() {
                let moves = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}');
                if c.is_control() || moves { shown.extend(c.escape_default()) } else { shown.push(c) }
            }
            say(Stream::Err, &format!("ghauthz: {shown}\n"));
        }
        if !self.stdout.is_empty() {
            let end = if self.stdout.ends_with('\n') { "" } else { "\n" };
            say(Stream::Out, &format!("{}{end}", self.stdout));
        }
        ExitCode::from(self.exit as u8)
    }
}

pub(crate) enum Stream {
    Out,
    Err,
}

/// Writes `text` whole, and never panics: a reader that went away (`| head`) or a closed stream
/// loses the output, not the exit code.
pub(crate) fn say(stream: Stream, text: &str) {
    use std::io::Write as _;
    let _ = match stream {
        Stream::Out => std::io::stdout().lock().write_all(text.as_bytes()).and_then(|()| std::io::stdout().flush()),
        Stream::Err => std::io::stderr().lock().write_all(text.as_bytes()),
    };
}

/// What went wrong on the command line, naming only the options this program defines: never a
/// value or an argument that was typed (it may be a token).
pub(crate) fn usage_message(e: &clap::Error) -> String {
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

pub(crate) fn decision_json(app: &str, action: Capability, principal: &str, d: &Decision) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("app".into(), json!(app));
        m.insert("action".into(), json!(action));
        m.insert("principal".into(), json!(principal));
    }
    v
}

pub(crate) fn error_json(e: &CheckError) -> Value {
    let mut v = json!({"error": e.kind(), "message": e.to_string()});
    if let Some(d) = e.retry_after() {
        v["retry_after"] = json!(d.as_secs());
    }
    v
}

pub(crate) fn session_json(s: &IssuedSession) -> Outcome {
    Outcome::json(
        Exit::Done,
        &json!({
            "session": s.token.expose_secret(), "app": s.session.app(), "email": s.session.email(),
            "expires_at": rfc3339(s.session.expires_at())
        }),
    )
}

pub(crate) fn google_error(e: &GoogleSignInError) -> Outcome {
    Outcome::json(e.class().into(), &json!({"error": e.kind(), "message": e.to_string()}))
}

pub(crate) fn link_error(e: &LinkError) -> Outcome {
    let mut v = json!({"error": e.kind(), "message": e.to_string()});
    if let LinkError::RateLimited { retry_after } = e {
        v["retry_after"] = json!(retry_after.as_secs());
    }
    Outcome::json(e.class().into(), &v)
}

pub(crate) fn manage_error(e: &ManageError) -> Outcome {
    match e {
        ManageError::Denied { decision, .. } => Outcome::json(
            e.class().into(),
            &json!({"error": e.kind(), "message": e.to_string(), "reason": decision.reason()}),
        ),
        ManageError::Check(c) => Outcome::json(c.class().into(), &error_json(c)),
        _ => Outcome::error(e.class().into(), e.kind(), e),
    }
}

pub(crate) fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339()
}
