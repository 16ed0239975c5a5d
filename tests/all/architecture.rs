//! The shape of the code, read from the source: the core imports nothing outside
//! itself, and no module depends on another that depends back on it, directly or around a cycle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, with its module path (`core::policy`, `store`, ...).
fn modules() -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, prefix: &[String], out: &mut Vec<(String, PathBuf)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            if path.is_dir() && prefix.is_empty() && name == "bin" {
                // The command line is a crate of its own, over the library's public API.
                continue;
            } else if path.is_dir() {
                walk(&path, &[prefix, &[name]].concat(), out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let segments = match name.as_str() {
                    "mod" | "lib" | "main" => prefix.to_vec(),
                    _ => [prefix, &[name]].concat(),
                };
                out.push((segments.join("::"), path));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut out);
    out
}

/// The code of a file, without its comments (docs may link anywhere).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The crate paths a file names (`crate::a::b::C` as `a::b::C`), `$crate` in macros included.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let tail = &rest[at + "crate::".len()..];
        let end = tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
        out.push(tail[..end].trim_end_matches(':').to_owned());
        rest = tail;
    }
    out
}

#[test]
fn the_core_imports_nothing_outside_itself() {
    let mut outside = Vec::new();
    for (module, path) in modules().into_iter().filter(|(m, _)| m == "core" || m.starts_with("core::")) {
        for named in crate_paths(&code(&path)) {
            if named != "core" && !named.starts_with("core::") {
                outside.push(format!("{module} names crate::{named}"));
            }
        }
        assert!(!code(&path).contains("super::super"), "{module} reaches above the core through `super::super`");
    }
    assert!(outside.is_empty(), "the core must import nothing outside itself: {outside:#?}");
}

#[test]
fn the_core_does_no_io() {
    for (module, path) in modules().into_iter().filter(|(m, _)| m.starts_with("core")) {
        let code = code(&path);
        for io in ["tokio", "sqlx", "octocrab", "async fn", "std::fs", "std::net", "reqwest", "quanta"] {
            assert!(!code.contains(io), "{module} uses `{io}`: the core does no I/O");
        }
    }
}

/// The layer a module belongs to, for the dependency graph: a top-level module, or one of the
/// core's own modules (so that a cycle inside the core shows too).
fn layer(module: &str) -> String {
    let mut parts = module.split("::");
    match (parts.next(), parts.next()) {
        (Some("core"), Some(sub)) => format!("core::{sub}"),
        (Some(top), _) => top.to_owned(),
        (None, _) => String::new(),
    }
}

#[test]
fn no_module_depends_on_itself_around_a_cycle() {
    let modules = modules();
    let layers: BTreeSet<String> = modules.iter().map(|(m, _)| layer(m)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in &modules {
        let from = layer(module);
        if from.is_empty() {
            continue; // lib.rs and main.rs re-export and wire everything.
        }
        for named in crate_paths(&code(path)) {
            let to = layer(&named);
            // `crate::Authorizer` and the like name a re-export at the root: resolve none.
            if to != from && layers.contains(&to) {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some([&path[at..], &[node.to_owned()]].concat());
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        let cycle = visit(node, &graph, &mut Vec::new(), &mut done);
        assert!(cycle.is_none(), "a module cycle: {}", cycle.unwrap_or_default().join(" -> "));
    }
    assert!(graph.get("core::decision").is_some_and(|d| d.contains("core::policy")), "the graph was read: {graph:?}");
}

/// Gather, decide, record (DESIGN §6): no `Decision` is made, and no entry recording a decision
/// is composed, outside the core's `decide` and `audit_entry`. A check's facts are gathered
/// elsewhere; the policy's verdicts and the audit log's rules live in `core::check` alone (with
/// the verdict helpers it calls in `core::decision` and `core::support`).
#[test]
fn only_the_core_decides_and_composes_what_the_audit_log_receives_of_a_decision() {
    let deciders = ["core::check", "core::decision", "core::support"];
    let makers = ["Decision::new(", "Decision::github(", "decide_github(", "decide_support(", "Decision {"];
    // A refusal, a check's entry and a support check's entry: what only `audit_entry` writes
    // (the store reads them back, and lists every action and outcome).
    let composers = ["AuditOutcome::Denied", "AuditAction::Check", "AuditAction::SupportCheck"];
    let mut outside = Vec::new();
    for (module, path) in modules() {
        let code = code(&path);
        // `&Decision {` is a signature returning a reference (`-> &Decision {`), never a literal.
        let makes = |m: &str| code.match_indices(m).any(|(at, _)| !code[..at].ends_with('&'));
        for maker in makers.iter().filter(|m| makes(m)) {
            if !deciders.contains(&module.as_str()) {
                outside.push(format!("{module} makes a decision (`{maker}`)"));
            }
        }
        for composer in composers.iter().filter(|c| code.contains(**c)) {
            if !matches!(module.as_str(), "core::check" | "core::audit") && !module.starts_with("store") {
                outside.push(format!("{module} composes an entry of a decision (`{composer}`)"));
            }
        }
    }
    assert!(outside.is_empty(), "only the core decides, and says what the audit log receives: {outside:#?}");
    let check = code(&modules().into_iter().find(|(m, _)| m == "core::check").unwrap().1);
    assert!(
        check.contains("pub(crate) fn decide(") && check.contains("pub(crate) fn audit_entry("),
        "the two were read"
    );
}
