//! `ghauthz explain`.

use ghauthz::world::ExplainRow;
use ghauthz::{App, Authorizer, Capability, ChangedBy, CheckError, Reason};
use serde_json::{Value, json};

use crate::cli::ExplainArgs;
use crate::context::Ctx;
use crate::output::{Exit, Outcome, decision_json, error_json};

pub(crate) async fn explain(ctx: &Ctx, args: &ExplainArgs) -> Outcome {
    // Every app is read once: the addresses invited anywhere are explained on each app shown.
    let all = match ctx.authz.apps().await.and_then(|records| {
        records.iter().map(|r| r.app().map_err(ghauthz::store::StoreError::from)).collect::<Result<Vec<App>, _>>()
    }) {
        Ok(all) => all,
        Err(e) => return Outcome::error(e.class().into(), e.kind(), &e),
    };
    let apps = match apps_to_explain(&all, args.app.as_deref()) {
        Ok(apps) => apps,
        Err(e) => return e,
    };
    let viewers = match invited_anywhere(&ctx.authz, &all).await {
        Ok(v) => v,
        Err(e) => return Outcome::json(e.class().into(), &error_json(&e)),
    };
    // Live mode knows no users but those named: it explains nobody signed in and the viewers.
    let principals = ctx.world.as_ref().map_or_else(|| vec![ghauthz::Principal::Anonymous], |w| w.principals());
    let rows = ghauthz::world::explain(&ctx.authz, &apps, &principals, &viewers).await;
    let exit = if rows.iter().any(|r| r.result.is_err()) { Exit::Unavailable } else { Exit::Done };
    if args.json {
        let decisions: Vec<Value> = rows
            .iter()
            .map(|r| match &r.result {
                Ok(d) => decision_json(&r.app.0, r.action, &r.principal, d),
                Err(e) => {
                    let mut v = error_json(e);
                    v["app"] = json!(r.app.0);
                    v["action"] = json!(r.action);
                    v["principal"] = json!(r.principal);
                    v
                }
            })
            .collect();
        return Outcome::json(exit, &json!({ "decisions": decisions }));
    }
    let mut table = vec![[
        "APP".to_owned(),
        "PRINCIPAL".to_owned(),
        "VIEW".to_owned(),
        "EDIT".to_owned(),
        "DEPLOY".to_owned(),
        "DELETE".to_owned(),
    ]];
    for chunk in rows.chunks(Capability::ALL.len()) {
        let mut line = [
            chunk[0].app.0.clone(),
            chunk[0].principal.clone(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ];
        for (slot, row) in line[2..].iter_mut().zip(chunk) {
            *slot = cell(row);
        }
        table.push(line);
    }
    let widths: Vec<usize> = (0..6).map(|i| table.iter().map(|l| l[i].len()).max().unwrap_or(0)).collect();
    let text = table
        .iter()
        .map(|l| {
            l.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n");
    Outcome::text(exit, text)
}

pub(crate) fn cell(row: &ExplainRow) -> String {
    match &row.result {
        Ok(d) => {
            let outcome = if d.is_allowed() { "allow" } else { "deny" };
            match d.reason() {
                Reason::GithubRole { role_name, .. } => format!("{outcome} {}", role_name.as_str()),
                r => format!("{outcome} {}", r.kind()),
            }
        }
        Err(e) => format!("error {}", e.kind()),
    }
}

/// The apps to explain: all of them, or the one `--app` names.
pub(crate) fn apps_to_explain(all: &[App], only: Option<&str>) -> Result<Vec<App>, Outcome> {
    match only {
        Some(id) => match all.iter().find(|a| a.id().0 == id) {
            Some(app) => Ok(vec![app.clone()]),
            None => Err(Outcome::error(Exit::Denied, "unknown_app", format!("no app `{id}`"))),
        },
        None => Ok(all.to_vec()),
    }
}

/// Every address invited to any app, once, ordered.
pub(crate) async fn invited_anywhere(authz: &Authorizer, apps: &[App]) -> Result<Vec<ghauthz::Email>, CheckError> {
    let mut all = std::collections::BTreeSet::new();
    for app in apps {
        match authz.viewers(&ChangedBy::Operator, app.id()).await {
            Ok(viewers) => all.extend(viewers),
            Err(ghauthz::ManageError::Check(e)) => return Err(e),
            // Deleted since it was listed (the operator is refused nothing else).
            Err(_) => {}
        }
    }
    Ok(all.into_iter().collect())
}
