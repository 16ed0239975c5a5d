//! Decision tables: the shipped tables pass through the runner `ghauthz test` uses, and the
//! runner reports failures, refuses bad files with line and field, and writes JUnit.
#![cfg(feature = "world")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use crate::common;
use ghauthz::CheckRequest;

use ghauthz::world::DecisionTable;
use ghauthz::{Capability, Reason};

/// The role and role name each GitHub-role decision of `default.toml` reports: (login, app,
/// role, role name). A custom role decides as its base role, read from the `permissions` hash.
const ROLES: [(&str, &str, &str, &str); 24] = [
    ("u-admin", "private", "admin", "admin"),
    ("u-org-owner", "private", "admin", "admin"),
    ("u-maintain", "private", "maintain", "maintain"),
    ("u-team-maintain", "private", "maintain", "maintain"),
    ("u-write", "private", "write", "write"),
    ("u-custom-maintain", "private", "maintain", "deployer"),
    ("u-custom-write", "private", "write", "release-manager"),
    ("u-triage", "private", "triage", "triage"),
    ("u-read", "private", "read", "read"),
    ("u-custom-triage", "private", "triage", "labeler"),
    ("u-custom-read", "private", "read", "reader"),
    ("u-base-write", "base", "write", "write"),
    ("u-admin", "public", "admin", "admin"),
    ("u-org-owner", "public", "admin", "admin"),
    ("u-maintain", "public", "maintain", "maintain"),
    ("u-team-maintain", "public", "maintain", "maintain"),
    ("u-write", "public", "write", "write"),
    ("u-custom-maintain", "public", "maintain", "deployer"),
    ("u-custom-write", "public", "write", "release-manager"),
    ("u-triage", "public", "triage", "triage"),
    ("u-read", "public", "read", "read"),
    ("u-custom-triage", "public", "triage", "labeler"),
    ("u-custom-read", "public", "read", "reader"),
    ("u-none", "public", "read", "read"),
];

#[tokio::test]
async fn the_default_policy_table_passes() {
    let table = DecisionTable::load(common::fixture_path("decisions/default.toml")).unwrap();
    assert!(table.checks() >= 100, "the table covers every role, visibility and capability");
    let report = table.run().await.unwrap();
    assert_eq!(report.failed, 0, "{:#?}", report.failures().collect::<Vec<_>>());
    assert_eq!(report.passed, table.checks());
}

#[tokio::test]
async fn github_role_decisions_report_the_role_and_its_name() {
    // Per user, and from rosters under a policy that counts `read` (so that they list it).
    let counts_read: ghauthz::Policy = toml::from_str(r#"view = "read""#).unwrap();
    for (rosters, policy) in [(false, ghauthz::Policy::default()), (true, counts_read)] {
        let cache = ghauthz::CacheConfig::default().with_rosters(rosters);
        let env =
            common::env_with(common::fixture("roles.toml"), common::Opts { cache, policy, ..Default::default() }).await;
        for (login, app, role, role_name) in ROLES {
            // `edit` is decided by the role on every app (`view` of a public app is `public_app`).
            let d =
                env.authz.check(&CheckRequest::new(&env.user(login), &env.app(app), Capability::Edit)).await.unwrap();
            if rosters && login == "u-none" {
                // GitHub answers `read` for anyone on a public repository; its roster lists
                // only those granted a role.
                assert_eq!(d.reason(), &Reason::NoAccess { detail: ghauthz::NoAccessDetail::NotOnRoster });
                continue;
            }
            let Reason::GithubRole { role: got, role_name: got_name, .. } = d.reason() else {
                panic!("{login} on {app} (rosters {rosters}): {:?}", d.reason())
            };
            assert_eq!((got.as_str(), got_name.as_str()), (role, role_name), "{login} on {app} (rosters {rosters})");
        }
    }
}

#[tokio::test]
async fn the_example_table_passes() {
    let table = DecisionTable::load(common::fixture_path("decisions/acme.toml")).unwrap();
    let report = table.run().await.unwrap();
    assert_eq!(report.failed, 0, "{:#?}", report.failures().collect::<Vec<_>>());
}

/// A table in a temporary folder beside a copy of the acme world.
fn table(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let world = std::fs::read_to_string(common::fixture_path("worlds/acme.toml")).unwrap();
    let keys = common::fixture_path("keys/google-test.jwks.json");
    std::fs::write(
        dir.path().join("acme.toml"),
        world.replace("../keys/google-test.jwks.json", keys.to_str().unwrap()),
    )
    .unwrap();
    let path = dir.path().join("table.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[tokio::test]
async fn a_failing_table_lists_its_failures() {
    let (_dir, path) = table(
        r#"version = 1
world = "acme.toml"

[[case]]
name = "wrong on purpose"
principal = "github:carol"
app = "dash"
allow = ["view", "deploy"]
reason = "github_role"
"#,
    );
    let report = DecisionTable::load(&path).unwrap().run().await.unwrap();
    assert_eq!((report.passed, report.failed), (1, 1));
    let failure = report.failures().next().unwrap();
    assert_eq!(
        (failure.case.as_str(), failure.capability, failure.want.as_str(), failure.got.as_str()),
        ("wrong on purpose", Capability::Deploy, "allow:github_role", "deny:github_role")
    );
}

/// A check that cannot decide fails, and says why.
#[tokio::test]
async fn a_check_that_cannot_decide_is_a_failure_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("table.toml");
    let world = common::fixture_path("worlds/faults.toml");
    let text = format!(
        "version = 1\nworld = {world:?}\n[[case]]\nprincipal = \"github:carol\"\napp = \"busy\"\nallow = [\"view\"]\n",
        world = world.to_str().unwrap()
    );
    std::fs::write(&path, text).unwrap();
    let report = DecisionTable::load(&path).unwrap().run().await.unwrap();
    assert_eq!((report.passed, report.failed), (0, 1));
    let failure = report.failures().next().unwrap();
    assert_eq!(failure.got, "error:rate_limited");
    assert!(failure.reason.starts_with("could not decide: github"), "{failure:?}");
}

#[test]
fn bad_tables_are_refused_with_line_and_field() {
    for (text, line, field) in [
        ("version = 2\nworld = \"acme.toml\"\n", 1, "version"),
        ("version = 1\nworld = \"nowhere.toml\"\n", 2, "world"),
        (
            "version = 1\nworld = \"acme.toml\"\n[[case]]\nprincipal = \"github:nobody\"\napp = \"dash\"\nallow = [\"view\"]\n",
            4,
            "case[0].principal",
        ),
        (
            "version = 1\nworld = \"acme.toml\"\n[[case]]\nprincipal = \"anonymous\"\napp = \"nope\"\nallow = [\"view\"]\n",
            5,
            "case[0].app",
        ),
        (
            "version = 1\nworld = \"acme.toml\"\n[[case]]\nprincipal = \"anonymous\"\napp = \"dash\"\nallow = [\"view\"]\ndeny = [\"view\"]\n",
            7,
            "case[0].deny[0]",
        ),
        (
            "version = 1\nworld = \"acme.toml\"\n[[case]]\nprincipal = \"anonymous\"\napp = \"dash\"\nallow = [\"fly\"]\n",
            6,
            "case[0].allow[0]",
        ),
        (
            "version = 1\nworld = \"acme.toml\"\n[[case]]\nprincipal = \"anonymous\"\napp = \"dash\"\nallow = [\"view\"]\nreason = \"because\"\n",
            7,
            "case[0].reason",
        ),
        (
            "version = 1\nworld = \"acme.toml\"\n[[support]]\napp = \"dash\"\ncapabilities = [\"deploy\"]\nhours = 2\n",
            5,
            "support[0].capabilities[0]",
        ),
        ("version = 1\nworld = \"acme.toml\"\nsurprise = 1\n", 3, "unknown field, expected one of `version`"),
    ] {
        let (_dir, path) = table(text);
        let err = DecisionTable::load(&path).unwrap_err();
        let detail = err.detail();
        assert_eq!(err.kind(), "bad_table");
        assert_eq!(detail.position.map(|p| p.0), Some(line), "{text}: {err}");
        // Every refusal names its field, or says what it expected; none repeats what was typed.
        let named = detail.field.as_deref().is_some_and(|f| f.contains(field)) || detail.message.contains(field);
        assert!(named, "{text}: {err}");
    }
}

#[tokio::test]
async fn junit_output_has_one_case_per_check() {
    let (_dir, path) = table(
        r#"version = 1
world = "acme.toml"

[[case]]
name = "a <tricky> & \"quoted\" name"
principal = "github:carol"
app = "dash"
allow = ["view", "deploy"]
"#,
    );
    let report = DecisionTable::load(&path).unwrap().run().await.unwrap();
    let xml = report.to_junit("table.toml");
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(cases.len(), 2);
    assert!(cases.iter().all(|c| c.attribute("classname") == Some("a <tricky> & \"quoted\" name")));
    let failed: Vec<_> = cases.iter().filter(|c| c.children().any(|n| n.has_tag_name("failure"))).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attribute("name"), Some("github:carol dash deploy"));
    let suites = doc.root_element();
    assert_eq!((suites.attribute("tests"), suites.attribute("failures")), (Some("2"), Some("1")));
}

/// The report is well-formed XML whatever the case names hold: characters outside XML 1.0's
/// `Char` production (U+FFFE, U+FFFF, control characters) are dropped.
#[tokio::test]
async fn junit_output_is_well_formed_whatever_a_case_name_holds() {
    let (_dir, path) = table(
        "version = 1\nworld = \"acme.toml\"\n\n[[case]]\nname = \"a\\uFFFEb\\uFFFFc\\u0001d\\u0085e\\u00e9\\U0001F600\"\n\
         principal = \"github:carol\"\napp = \"dash\"\nallow = [\"view\", \"deploy\"]\n",
    );
    let report = DecisionTable::load(&path).unwrap().run().await.unwrap();
    let xml = report.to_junit("t\u{FFFF}able");
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("not well-formed ({e}): {xml:?}"));
    let names: Vec<_> =
        doc.descendants().filter(|n| n.has_tag_name("testcase")).map(|c| c.attribute("classname")).collect();
    assert_eq!(names, [Some("abcde\u{e9}\u{1F600}"); 2]);
}

/// A table's malformed value is never repeated in its error (`version = "ghp_..."` used to give
/// `invalid type: string "ghp_..."`): the file, line, column, field and expected type are.
#[test]
fn a_malformed_value_in_a_table_is_never_repeated() {
    let secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
    for text in [
        format!("version = \"{secret}\"\nworld = \"acme.toml\"\n"),
        format!("version = 1\nworld = \"acme.toml\"\nnow = \"{secret}\"\n"),
        format!(
            "version = 1\nworld = \"acme.toml\"\n[[case]]\nprincipal = \"github:{secret}\"\napp = \"dash\"\nallow = [\"view\"]\n"
        ),
        format!(
            "version = 1\nworld = \"acme.toml\"\n[[case]]\nprincipal = \"anonymous\"\napp = \"{secret}\"\nallow = [\"view\"]\n"
        ),
        format!(
            "version = 1\nworld = \"acme.toml\"\n[[case]]\nprincipal = \"anonymous\"\napp = \"dash\"\nallow = [\"{secret}\"]\n"
        ),
        format!(
            "version = 1\nworld = \"acme.toml\"\n[[case]]\nprincipal = \"anonymous\"\napp = \"dash\"\ndeny = [\"view\"]\nreason = \"{secret}\"\n"
        ),
    ] {
        let (_dir, path) = table(&text);
        let err = DecisionTable::load(&path).unwrap_err();
        let shown = err.to_string();
        assert!(!shown.contains(secret) && !shown.contains("ghp_"), "{text}: repeated in {shown}");
        assert!(err.detail().position.is_some() && err.detail().field.is_some(), "{text}: {shown}");
    }
    let (_dir, path) = table(&format!("version = \"{secret}\"\nworld = \"acme.toml\"\n"));
    let shown = DecisionTable::load(&path).unwrap_err().to_string();
    assert!(shown.contains(":1:11: `version`: invalid type: a string, expected u32"), "{shown}");
}
