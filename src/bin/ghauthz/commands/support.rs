//! `ghauthz support grant|revoke|list`.

use std::time::Duration;

use ghauthz::{
    AppId, Capability, MAX_AGENT_NAME, MAX_SUPPORT_REASON, MAX_SUPPORT_WINDOW, ManageError, SupportGrant, SupportWindow,
};
use serde_json::{Value, json};

use crate::cli::SupportCommand;
use crate::context::{Ctx, changed_by};
use crate::output::{Exit, Outcome, manage_error, rfc3339};

pub(crate) async fn run(ctx: &Ctx, cmd: SupportCommand) -> Outcome {
    match cmd {
        SupportCommand::Grant { app, hours, reason, capabilities, agent, github_user } => {
            let by = match changed_by(ctx, Some(&github_user)).await {
                Ok(by) => by,
                Err(e) => return e,
            };
            let capabilities = if capabilities.is_empty() { vec![Capability::View] } else { capabilities };
            let mut grant = SupportGrant::new(reason)
                .with_capabilities(capabilities)
                .with_duration(Duration::from_secs(hours.saturating_mul(3600)));
            if let Some(agent) = agent {
                grant = grant.for_agent(agent);
            }
            match ctx.authz.grant_support(&by, &AppId(app), &grant).await {
                Ok(window) => Outcome::json(Exit::Done, &window_json(&window)),
                Err(e) => refused(&e),
            }
        }
        SupportCommand::Revoke { app, agent, github_user } => {
            let by = match changed_by(ctx, github_user.as_deref()).await {
                Ok(by) => by,
                Err(e) => return e,
            };
            match ctx.authz.revoke_support(&by, &AppId(app.clone()), agent.as_deref()).await {
                Ok(revoked) => Outcome::json(Exit::Done, &json!({"app": app, "revoked": revoked})),
                Err(e) => refused(&e),
            }
        }
        SupportCommand::List { app, github_user } => {
            let by = match changed_by(ctx, github_user.as_deref()).await {
                Ok(by) => by,
                Err(e) => return e,
            };
            match ctx.authz.support_windows(&by, &AppId(app.clone())).await {
                Ok(windows) => {
                    let windows: Vec<Value> = windows.iter().map(window_json).collect();
                    Outcome::json(Exit::Done, &json!({"app": app, "windows": windows}))
                }
                Err(e) => manage_error(&e),
            }
        }
    }
}

/// A refusal; a refused field is named by the option that gave it.
fn refused(e: &ManageError) -> Outcome {
    let ManageError::InvalidSupport(field) = e else { return manage_error(e) };
    let why = match *field {
        "capabilities" => "`--capability` must be `view` or `edit`".to_owned(),
        "duration" => format!("`--hours` must be 1 to {}", MAX_SUPPORT_WINDOW.as_secs() / 3600),
        "agent" => format!("`--agent` must be 1 to {MAX_AGENT_NAME} bytes of ASCII letters, digits, `.`, `_` and `-`"),
        "reason" => {
            format!("`--reason` must be 1 to {MAX_SUPPORT_REASON} bytes, not blank, with no control character")
        }
        other => format!("`{other}` is refused"),
    };
    Outcome::error(Exit::Usage, e.kind(), format!("invalid support grant: {why}"))
}

fn window_json(w: &SupportWindow) -> Value {
    json!({
        "id": w.id.0,
        "app": w.app.0,
        "agent": w.agent,
        "capabilities": w.capabilities.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "opened_at": rfc3339(w.opened_at),
        "ends_at": rfc3339(w.ends_at),
        "reason": w.reason,
        "granted_by": w.granted_by,
        "revoked_at": w.revoked_at.map(rfc3339),
    })
}
