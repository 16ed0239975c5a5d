//! `ghauthz check`.

use ghauthz::{AppId, Authorizer, Capability, CheckRequest, Consistency, Principal, Reason, SessionError};
use serde_json::json;

use crate::cli::CheckArgs;
use crate::context::{Ctx, principal_of};
use crate::output::{Exit, Outcome, decision_json, error_json, google_error};

/// One decision: for a Google ID token, sign in and then check with the session.
pub(crate) async fn run(ctx: &Ctx, args: &CheckArgs) -> Outcome {
    match &args.google_id_token {
        Some(token) => check_google(ctx, args, token).await,
        None => check(ctx, args).await,
    }
}

pub(crate) async fn check(ctx: &Ctx, args: &CheckArgs) -> Outcome {
    let principal = match principal(ctx, args).await {
        Ok(Ok(p)) => p,
        Ok(Err(error)) => {
            let v = json!({
                "decision": "deny", "app": args.app, "action": args.action, "principal": "viewer",
                "reason": Reason::SessionInvalid { error }, "source": "store", "age_ms": 0
            });
            return Outcome::json(Exit::Denied, &v);
        }
        Err(e) => return e,
    };
    decide(&ctx.authz, &principal, &AppId(args.app.clone()), args.action, consistency(args)).await
}

pub(crate) fn consistency(args: &CheckArgs) -> Consistency {
    if args.fresh { Consistency::Fresh } else { Consistency::Cached }
}

/// `check --google-id-token`: sign in, then check with the session.
pub(crate) async fn check_google(ctx: &Ctx, args: &CheckArgs, id_token: &str) -> Outcome {
    let app = AppId(args.app.clone());
    match ctx.authz.google_sign_in(&app, id_token).await {
        Ok(issued) => {
            decide(&ctx.authz, &Principal::Viewer(issued.session), &app, args.action, consistency(args)).await
        }
        Err(e) => google_error(&e),
    }
}

pub(crate) async fn decide(
    authz: &Authorizer,
    principal: &Principal,
    app: &AppId,
    cap: Capability,
    consistency: Consistency,
) -> Outcome {
    match authz.check(&CheckRequest::new(principal, app, cap).with_consistency(consistency)).await {
        Ok(d) => {
            let exit = if d.is_allowed() { Exit::Done } else { Exit::Denied };
            Outcome::json(exit, &decision_json(&app.0, cap, &principal.label(), &d))
        }
        Err(e) => Outcome::json(e.class().into(), &error_json(&e)).saying(format!("could not decide: {e}")),
    }
}

/// The principal of `check`; a refused viewer session is a denial, not an error.
pub(crate) async fn principal(ctx: &Ctx, args: &CheckArgs) -> Result<Result<Principal, SessionError>, Outcome> {
    if let Some(token) = &args.viewer_session {
        return Ok(ctx.authz.verify_session(token).map(Principal::Viewer));
    }
    principal_of(ctx, args).await.map(Ok)
}
