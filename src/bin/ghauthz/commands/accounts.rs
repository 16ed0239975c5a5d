//! `ghauthz accounts delete`.

use serde_json::json;

use crate::cli::AccountsCommand;
use crate::context::WorldCtx;
use crate::output::{Exit, Outcome, error_json};

pub(crate) async fn run(ctx: &WorldCtx, cmd: AccountsCommand) -> Outcome {
    let AccountsCommand::Delete { github_user } = cmd;
    let Some(user) = ctx.world.user(&github_user) else {
        return Outcome::error(Exit::Usage, "unknown_user", format!("no user `{github_user}` in the world"));
    };
    match ctx.authz.delete_account(user.id).await {
        Ok(apps) => Outcome::json(Exit::Done, &json!({"github_user": github_user, "deleted_apps": apps})),
        Err(e) => Outcome::json(Exit::Unavailable, &error_json(&e)),
    }
}
