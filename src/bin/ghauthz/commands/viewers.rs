//! `ghauthz viewers`.

use ghauthz::AppId;
use serde_json::json;

use crate::cli::ViewersCommand;
use crate::context::{Ctx, changed_by};
use crate::output::{Exit, Outcome, manage_error};

pub(crate) async fn viewers(ctx: &Ctx, cmd: ViewersCommand) -> Outcome {
    let (app, login) = match &cmd {
        ViewersCommand::Add(a) | ViewersCommand::Remove(a) => (&a.app, a.github_user.as_deref()),
        ViewersCommand::List(a) => (&a.app, a.github_user.as_deref()),
    };
    let by = match changed_by(ctx, login).await {
        Ok(by) => by,
        Err(e) => return e,
    };
    let app = AppId(app.clone());
    let result = match &cmd {
        ViewersCommand::Add(a) => ctx
            .authz
            .add_viewer(&by, &app, &a.email)
            .await
            .map(|c| json!({"app": c.app, "email": c.email, "added": c.changed})),
        ViewersCommand::Remove(a) => ctx
            .authz
            .remove_viewer(&by, &app, &a.email)
            .await
            .map(|c| json!({"app": c.app, "email": c.email, "removed": c.changed})),
        ViewersCommand::List(_) => ctx.authz.viewers(&by, &app).await.map(|v| json!({"app": app, "viewers": v})),
    };
    match result {
        Ok(v) => Outcome::json(Exit::Done, &v),
        Err(e) => manage_error(&e),
    }
}
