//! `ghauthz apps delete`.

use ghauthz::AppId;
use serde_json::json;

use crate::cli::AppsCommand;
use crate::context::{WorldCtx, changed_by};
use crate::output::{Exit, Outcome, manage_error};

pub(crate) async fn run(ctx: &WorldCtx, cmd: AppsCommand) -> Outcome {
    let AppsCommand::Delete { app, github_user } = cmd;
    let by = match changed_by(ctx, github_user.as_deref()) {
        Ok(by) => by,
        Err(e) => return e,
    };
    match ctx.authz.delete_app(&by, &AppId(app.clone())).await {
        Ok(()) => Outcome::json(Exit::Done, &json!({"deleted": app})),
        Err(e) => manage_error(&e),
    }
}
