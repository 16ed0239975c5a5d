//! `ghauthz webhook`.

use ghauthz::WebhookOutcome;
use serde_json::{Value, json};

use crate::cli::WebhookArgs;
use crate::context::Ctx;
use crate::input::read_limited;
use crate::output::{Exit, Outcome};

/// `webhook`: the delivery's headers from the flags, its raw body from standard input.
pub(crate) async fn webhook(ctx: &Ctx, args: &WebhookArgs) -> Outcome {
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
        Err(e) => Outcome::error(e.class().into(), e.kind(), &e),
    }
}
