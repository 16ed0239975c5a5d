//! `ghauthz audit`.

use ghauthz::AppId;
use ghauthz::store::AuditFilter;
use serde_json::json;

use crate::cli::AuditArgs;
use crate::context::Ctx;
use crate::output::{Exit, Outcome, rfc3339};

pub(crate) async fn run(ctx: &Ctx, args: &AuditArgs) -> Outcome {
    let mut filter = AuditFilter::new();
    if let Some(app) = &args.app {
        filter = filter.for_app(AppId(app.clone()));
    }
    if let Some(since) = args.since {
        filter = filter.since(since);
    }
    if let Some(limit) = args.limit {
        filter = filter.limit(limit);
    }
    match ctx.authz.audit(&filter).await {
        Ok(events) => {
            let events: Vec<_> = events
                .iter()
                .map(|e| {
                    json!({
                        "at": rfc3339(e.at),
                        "app": e.app.0,
                        "actor": e.actor,
                        "action": e.action,
                        "outcome": e.outcome,
                        "email": e.email.as_ref().map(|m| m.as_str()),
                        "detail": e.detail,
                    })
                })
                .collect();
            Outcome::json(Exit::Done, &json!({ "events": events }))
        }
        Err(e) => Outcome::error(e.class().into(), e.kind(), &e),
    }
}
