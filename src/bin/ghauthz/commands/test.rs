//! `ghauthz test FILE [--junit FILE]`: a decision table, run against its world.

use ghauthz::world::DecisionTable;

use crate::cli::{Global, TestArgs};
use crate::output::{Exit, Outcome};

pub(crate) async fn run(g: &Global, args: &TestArgs) -> Outcome {
    // The table names its world, policy and clock: options that would name others are refused.
    if let Some(flag) = g.given().first() {
        return Outcome::error(
            Exit::Usage,
            "usage",
            format!("`test` takes no `{flag}`: the table names its world, policy and clock"),
        );
    }
    let table = match DecisionTable::load(&args.file) {
        Ok(table) => table,
        Err(e) => return Outcome::error(Exit::Usage, e.kind(), &e),
    };
    let report = match table.run().await {
        Ok(report) => report,
        // The table loaded; its run could not start (the mock GitHub, a support window).
        Err(e) => return Outcome::error(Exit::Unavailable, "mock_github", &e),
    };
    if let Some(path) = &args.junit {
        let suite = args.file.display().to_string();
        if let Err(e) = std::fs::write(path, report.to_junit(&suite)) {
            return Outcome::error(Exit::Usage, "usage", format!("cannot write `{}`: {e}", path.display()));
        }
    }
    let exit = if report.failed == 0 { Exit::Done } else { Exit::Denied };
    Outcome::json(exit, &report.to_json())
}
