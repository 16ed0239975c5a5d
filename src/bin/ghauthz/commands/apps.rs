//! `ghauthz apps deploy|list|show|visibility|delete`.

use ghauthz::store::AppRecord;
use ghauthz::{AppId, Deployment, Principal};
use serde_json::{Value, json};

use crate::cli::AppsCommand;
use crate::context::{Ctx, changed_by};
use crate::output::{Exit, Outcome, manage_error};

pub(crate) async fn run(ctx: &Ctx, cmd: AppsCommand) -> Outcome {
    match cmd {
        AppsCommand::Deploy { app, repo, branch, main_file, visibility, github_user } => {
            let user = match ctx.user(&github_user).await {
                Ok(user) => user,
                Err(e) => return e,
            };
            let deployment = Deployment::new(AppId(app), repo, branch, main_file).with_visibility(visibility);
            match ctx.authz.deploy_app(&Principal::github(user), &deployment).await {
                Ok(record) => Outcome::json(Exit::Done, &record_json(&record)),
                Err(e) => manage_error(&e),
            }
        }
        AppsCommand::List { github_user: Some(login), action: Some(cap) } => {
            let user = match ctx.user(&login).await {
                Ok(user) => user,
                Err(e) => return e,
            };
            match ctx.authz.apps_for(&Principal::github(user), cap).await {
                Ok(apps) => list(ctx, |id| apps.iter().any(|a| a.id() == id)).await,
                Err(e) => Outcome::json(e.class().into(), &crate::output::error_json(&e)),
            }
        }
        AppsCommand::List { .. } => list(ctx, |_| true).await,
        AppsCommand::Show { app } => match ctx.authz.app(&AppId(app.clone())).await {
            Ok(Some(record)) => Outcome::json(Exit::Done, &record_json(&record)),
            Ok(None) => Outcome::error(Exit::Denied, "unknown_app", format!("no app `{app}`")),
            Err(e) => Outcome::error(e.class().into(), e.kind(), &e),
        },
        AppsCommand::Visibility { app, visibility, github_user } => {
            let by = match changed_by(ctx, github_user.as_deref()).await {
                Ok(by) => by,
                Err(e) => return e,
            };
            match ctx.authz.set_visibility(&by, &AppId(app.clone()), visibility).await {
                Ok(changed) => Outcome::json(
                    Exit::Done,
                    &json!({"app": app, "visibility": visibility.as_str(), "changed": changed}),
                ),
                Err(e) => manage_error(&e),
            }
        }
        AppsCommand::Delete { app, github_user } => {
            let by = match changed_by(ctx, github_user.as_deref()).await {
                Ok(by) => by,
                Err(e) => return e,
            };
            match ctx.authz.delete_app(&by, &AppId(app.clone())).await {
                Ok(()) => Outcome::json(Exit::Done, &json!({"deleted": app})),
                Err(e) => manage_error(&e),
            }
        }
    }
}

/// `{"apps": [...]}`: the records `shown` keeps, read at once, as `apps show` prints each.
async fn list(ctx: &Ctx, shown: impl Fn(&AppId) -> bool) -> Outcome {
    match ctx.authz.apps().await {
        Ok(records) => {
            let listed: Vec<Value> = records.iter().filter(|r| shown(&r.id)).map(record_json).collect();
            Outcome::json(Exit::Done, &json!({ "apps": listed }))
        }
        Err(e) => Outcome::error(e.class().into(), e.kind(), &e),
    }
}

/// An app's record as `apps deploy`, `list` and `show` print it; the deployer by login where the
/// world knows the id, else `github:<id>`.
fn record_json(r: &AppRecord) -> Value {
    json!({
        "app": r.id.0,
        "repo": format!("{}/{}", r.owner, r.repo),
        "repo_id": r.repo_id.0,
        "branch": r.branch,
        "main_file": r.main_file,
        "visibility": r.visibility.as_str(),
        // The identity recorded, in the audit log's form, in world and live mode alike: a login
        // can be renamed and reused.
        "deployed_by": format!("github:{}", r.deployed_by),
    })
}
