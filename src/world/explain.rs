//! `explain`: every principal's decision on every app, each by the production check.

use crate::core::email::Email;
use crate::core::ids::{App, AppId};
use crate::core::policy::Capability;
use crate::core::principal::Principal;
use crate::error::CheckError;

/// One line of [`explain`]: a principal, an app, a capability, and the decision (or why there is
/// none).
#[derive(Debug, Clone)]
pub struct ExplainRow {
    /// The app.
    pub app: AppId,
    /// The principal, as written in output (`github:<login>`, `anonymous`).
    pub principal: String,
    /// The capability.
    pub action: crate::core::policy::Capability,
    /// The decision, or why none could be made.
    pub result: Result<crate::core::decision::Decision, crate::error::CheckError>,
}

/// The decision of every principal on every app and every capability, in the order given
/// (apps, then principals, then `view`, `edit`, `deploy`, `delete`); then, for each app, every
/// address in `viewers` as if that viewer had signed in to that app (`viewer:<address>`). Each
/// is decided as [`Authorizer::check`](crate::Authorizer::check) decides it, from the same
/// facts, and written nowhere: a report does not enter the audit log.
pub async fn explain(
    authz: &crate::Authorizer,
    apps: &[App],
    principals: &[Principal],
    viewers: &[Email],
) -> Vec<ExplainRow> {
    let mut rows = Vec::new();
    for app in apps {
        for p in principals {
            for cap in Capability::ALL {
                let result = authz.check_unrecorded(p, app, cap).await;
                rows.push(ExplainRow { app: app.id().clone(), principal: p.label(), action: cap, result });
            }
        }
        for email in viewers {
            for cap in Capability::ALL {
                let result = match authz.session_for(app.id(), email).await {
                    Ok(session) => authz.check_unrecorded(&Principal::Viewer(session), app, cap).await,
                    Err(e) => Err(CheckError::Store(e)),
                };
                rows.push(ExplainRow {
                    app: app.id().clone(),
                    principal: format!("viewer:{email}"),
                    action: cap,
                    result,
                });
            }
        }
    }
    rows
}
