//! The default policy as a table (fixtures/decisions/default.toml), through the mock GitHub and
//! the real client.
#![cfg(feature = "world")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use crate::common;

use ghauthz::{Capability, Principal, Reason};
use serde::Deserialize;

#[derive(Deserialize)]
struct Table {
    world: String,
    rows: Vec<Row>,
}

#[derive(Deserialize)]
struct Row {
    principal: String,
    app: String,
    role: Option<String>,
    role_name: Option<String>,
    view: String,
    edit: String,
    deploy: String,
    delete: String,
}

#[tokio::test]
async fn default_policy_decision_table() {
    let path = common::fixture_path("decisions/default.toml");
    let table: Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let world = ghauthz::world::World::load(path.parent().unwrap().join(&table.world)).unwrap();
    let env = common::env(world).await;
    let mut checked = 0;
    for row in &table.rows {
        let principal = if row.principal == "anonymous" { Principal::Anonymous } else { env.user(&row.principal) };
        let app = env.app(&row.app);
        for (cap, cell) in [
            (Capability::View, &row.view),
            (Capability::Edit, &row.edit),
            (Capability::Deploy, &row.deploy),
            (Capability::Delete, &row.delete),
        ] {
            let (want_decision, want_kind) = cell.split_once(':').unwrap();
            let d = env.authz.check(&principal, &app, cap).await.unwrap();
            let what = format!("{} on {} {cap}", row.principal, row.app);
            let got = if d.is_allowed() { "allow" } else { "deny" };
            assert_eq!(got, want_decision, "{what}: {:?}", d.reason());
            assert_eq!(d.reason().kind(), want_kind, "{what}");
            if let Reason::GithubRole { role, role_name, .. } = d.reason() {
                assert_eq!(Some(role.as_str()), row.role.as_deref(), "{what}: role");
                assert_eq!(Some(role_name.as_str()), row.role_name.as_deref(), "{what}: role_name");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, table.rows.len() * 4);
    assert!(checked >= 100, "the table covers every role, visibility and capability");
}
