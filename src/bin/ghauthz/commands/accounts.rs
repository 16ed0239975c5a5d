//! `ghauthz accounts delete`.

use ghauthz::UserId;
use serde_json::json;

use crate::cli::AccountsCommand;
use crate::context::Ctx;
use crate::output::{Exit, Outcome, error_json};

pub(crate) async fn run(ctx: &Ctx, cmd: AccountsCommand) -> Outcome {
    let AccountsCommand::Delete { github_user, github_id } = cmd;
    let id = match (&github_user, github_id) {
        // No store holds an id beyond a signed 64-bit integer (GitHub's ids are far below it).
        (_, Some(id)) if i64::try_from(id).is_err() => {
            return Outcome::error(
                Exit::Usage,
                "usage",
                format!("`--github-id`: at most {} (no store holds more)", i64::MAX),
            );
        }
        (_, Some(id)) => UserId(id),
        (Some(login), None) => match ctx.user(login).await {
            Ok(user) => user.id,
            Err(e) => return e,
        },
        (None, None) => return Outcome::error(Exit::Usage, "usage", "`--github-user` or `--github-id` is needed"),
    };
    match ctx.authz.delete_account(id).await {
        Ok(apps) => {
            Outcome::json(Exit::Done, &json!({"github_user": github_user, "github_id": id.0, "deleted_apps": apps}))
        }
        Err(e) => Outcome::json(e.class().into(), &error_json(&e)),
    }
}
