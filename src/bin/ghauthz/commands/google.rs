//! `ghauthz google sign-in`.

use ghauthz::AppId;

use crate::cli::GoogleCommand;
use crate::context::Ctx;
use crate::output::{Outcome, google_error, session_json};

pub(crate) async fn run(ctx: &Ctx, cmd: GoogleCommand) -> Outcome {
    let GoogleCommand::SignIn { app, id_token, .. } = cmd;
    match ctx.authz.google_sign_in(&AppId(app), &id_token).await {
        Ok(s) => session_json(&s),
        Err(e) => google_error(&e),
    }
}
