//! `ghauthz link`.

use ghauthz::AppId;
use serde_json::json;

use crate::cli::LinkCommand;
use crate::context::Ctx;
use crate::output::{Exit, Outcome, link_error, rfc3339, session_json};

pub(crate) async fn link(ctx: &Ctx, cmd: LinkCommand) -> Outcome {
    match cmd {
        LinkCommand::Issue { app, email, print_token } => match ctx.authz.issue_link(&AppId(app), &email).await {
            Ok(l) => {
                let mut v = json!({"app": l.app, "email": l.email, "expires_at": rfc3339(l.expires_at)});
                // World mode has no mailer: the token is printed there, and in live mode only
                // when asked for.
                if print_token || ctx.world.is_some() {
                    v["token"] = json!(l.token.expose_secret());
                }
                Outcome::json(Exit::Done, &v)
            }
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
