//! `ghauthz accounts delete`.

use serde_json::json;

use crate::cli::AccountsCommand;
use crate::context::Ctx;
use crate::output::{Exit, Outcome, error_json};

pub(crate) async fn run(ctx: &Ctx, cmd: AccountsCommand) -> Outcome {
    let AccountsCommand::Delete { github_user } = cmd;
    let user = match ctx.user(&github_user).await {
        Ok(user) => user,
        Err(e) => return e,
    };
    match ctx.authz.delete_account(user.id).await {
        Ok(apps) => Outcome::json(Exit::Done, &json!({"github_user": github_user, "deleted_apps": apps})),
        Err(e) => Outcome::json(Exit::Unavailable, &error_json(&e)),
    }
}
