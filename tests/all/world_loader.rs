//! World files: every shipped world loads; bad ones fail with the line and the field.
#![cfg(feature = "world")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use crate::common;

use ghauthz::world::World;

fn err(text: &str) -> ghauthz::world::WorldError {
    World::from_toml_str(text, ".").unwrap_err()
}

#[test]
fn shipped_worlds_load() {
    for name in ["acme.toml", "faults.toml", "roles.toml"] {
        let w = common::fixture(name);
        assert!(!w.apps().is_empty(), "{name}");
    }
}

#[test]
fn unknown_login_names_line_and_field() {
    let e = World::load(common::fixture_path("worlds/broken/unknown-login.toml")).unwrap_err();
    assert_eq!(e.position.map(|p| p.0), Some(13), "{e}");
    assert_eq!(e.field.as_deref(), Some("repos[0].roles.carlo"));
    let shown = e.to_string();
    assert!(shown.contains("unknown-login.toml:13:") && e.message.contains("an undeclared login"), "{shown}");
    assert!(!e.message.contains("carlo"), "the field names the key; the message repeats nothing: {shown}");
}

#[test]
fn unknown_role_is_refused() {
    let e = World::load(common::fixture_path("worlds/broken/bad-role.toml")).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("repos[0].roles.bob"));
    assert!(e.message.starts_with("unknown role: expected admin"), "{e}");
    assert!(!e.to_string().contains("owner"), "the value is not repeated: {e}");
}

#[test]
fn syntax_errors_have_a_position() {
    let e = World::load(common::fixture_path("worlds/broken/syntax.toml")).unwrap_err();
    assert_eq!(e.position.map(|p| p.0), Some(5), "{e}");
}

#[test]
fn type_errors_name_the_field() {
    let e = err("version = 1\n[[users]]\nid = \"one\"\nlogin = \"a\"\n");
    assert_eq!(e.field.as_deref(), Some("users[0].id"), "{e}");
    assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
}

#[test]
fn unknown_fields_are_refused() {
    let e = err("version = 1\n[[users]]\nid = 1\nlogin = \"a\"\nemail = \"x\"\n");
    assert_eq!(
        (e.message.as_str(), e.field.as_deref()),
        ("unknown field, expected `id` or `login`", Some("users[0]")),
        "{e}"
    );
    assert!(!e.to_string().contains("email"), "what was typed is not repeated: {e}");
}

#[test]
fn semantic_mistakes_are_refused() {
    let cases = [
        ("version = 2\n", "version", "unsupported version"),
        ("version = 1\nnow = \"yesterday\"\n", "now", "RFC 3339"),
        (
            "version = 1\n[[users]]\nid = 1\nlogin = \"a\"\n[[users]]\nid = 1\nlogin = \"b\"\n",
            "users[1].id",
            "declared twice",
        ),
        (
            "version = 1\n[[users]]\nid = 1\nlogin = \"a\"\n[[repos]]\nid = 2\nowner = \"a\"\nname = \"r\"\nprivate = true\nroles = { a = \"custom:x:admin\" }\n",
            "repos[0].roles.a",
            "read, triage, write or maintain",
        ),
        (
            "version = 1\n[[users]]\nid = 1\nlogin = \"a\"\n[[orgs]]\nid = 1\nlogin = \"o\"\n",
            "orgs[0].id",
            "already used by another account",
        ),
        ("version = 1\n[[faults]]\npath = \"/x\"\nstatus = 418\n", "faults[0].status", "expected 500"),
        (
            "version = 1\n[[orgs]]\nid = 1\nlogin = \"o\"\nbase_permission = \"triage\"\n",
            "orgs[0].base_permission",
            "expected none",
        ),
        (
            "version = 1\n[[users]]\nid = 1\nlogin = \"a\"\n[[apps]]\nid = \"x\"\nrepo = \"a\"\nrepo_id = 1\nbranch = \"m\"\nmain_file = \"f\"\nvisibility = \"private\"\ndeployed_by = \"a\"\n",
            "apps[0].repo",
            "owner/name",
        ),
        (
            "version = 1\n[[orgs]]\nid = 1\nlogin = \"o\"\n[[orgs.teams]]\nid = 2\nslug = \"t\"\nrepos = { nope = \"read\" }\n",
            "orgs[0].teams[0].repos.nope",
            "no repository",
        ),
    ];
    for (text, field, needle) in cases {
        let e = err(text);
        assert_eq!(e.field.as_deref(), Some(field), "{text}: {e}");
        assert!(e.message.contains(needle), "{text}: {e}");
        assert!(e.position.is_some(), "{text}: {e}");
    }
}

#[test]
fn effective_role_takes_the_highest_grant() {
    let w = common::fixture("acme.toml");
    let dash = w.repos().iter().find(|r| r.name == "dashboard").unwrap();
    let role = |login: &str| w.effective_role(w.user(login).unwrap().id, dash).map(|g| g.role);
    use ghauthz::Role::*;
    assert_eq!(role("olga"), Some(Admin), "org owner");
    assert_eq!(role("bob"), Some(Maintain), "team beats base read");
    assert_eq!(role("mallory"), Some(Read), "base permission");
    assert_eq!(role("zed"), None);
}

/// Ids the stores can hold (1 to 2^63 - 1): 0, or one beyond, is refused at load with its line and
/// field, instead of loading and then making every command report the store as broken.
#[test]
fn ids_the_stores_cannot_hold_are_refused_with_line_and_field() {
    let base = |user: &str, org: &str, team: &str, repo: &str, app_repo: &str| {
        format!(
            "version = 1\n[[users]]\nid = {user}\nlogin = \"a\"\n[[orgs]]\nid = {org}\nlogin = \"o\"\nmembers = [\"a\"]\n\
             [[orgs.teams]]\nid = {team}\nslug = \"t\"\n[[repos]]\nid = {repo}\nowner = \"o\"\nname = \"r\"\nprivate = true\n\
             [[apps]]\nid = \"x\"\nrepo = \"o/r\"\nrepo_id = {app_repo}\nbranch = \"main\"\nmain_file = \"a.py\"\n\
             visibility = \"private\"\ndeployed_by = \"a\"\n"
        )
    };
    assert!(World::from_toml_str(&base("1", "2", "3", "4", "4"), ".").is_ok());
    let max = i64::MAX.to_string();
    assert!(World::from_toml_str(&base(&max, "2", "3", "4", "4"), ".").is_ok(), "2^63 - 1 fits");
    let beyond = (i64::MAX as u64 + 1).to_string();
    for bad in ["0", beyond.as_str()] {
        for (text, field, line) in [
            (base(bad, "2", "3", "4", "4"), "users[0].id", 3),
            (base("1", bad, "3", "4", "4"), "orgs[0].id", 6),
            (base("1", "2", bad, "4", "4"), "orgs[0].teams[0].id", 10),
            (base("1", "2", "3", bad, "4"), "repos[0].id", 13),
            (base("1", "2", "3", "4", bad), "apps[0].repo_id", 20),
        ] {
            let e = err(&text);
            assert_eq!((e.field.as_deref(), e.position.map(|p| p.0)), (Some(field), Some(line)), "{bad}: {e}");
            assert!(e.message.contains("out of range"), "{e}");
        }
    }
}

/// A world's `[google]` can require addresses Google is authoritative for, and pin a Workspace
/// domain; the mock's Google configuration carries both.
#[tokio::test]
async fn a_world_can_require_authoritative_google_addresses() {
    let dir = common::fixture_path("worlds");
    let text = std::fs::read_to_string(dir.join("acme.toml"))
        .unwrap()
        .replace("[google]\n", "[google]\nrequire_authoritative = true\nhosted_domain = \"example.com\"\n");
    let world = World::from_toml_str(&text, &dir).unwrap();
    let google = world.google().unwrap();
    assert!(google.require_authoritative);
    assert_eq!(google.hosted_domain.as_deref(), Some("example.com"));
    let mock = ghauthz::world::MockGithub::start(world).await.unwrap();
    let cfg = mock.google_config().unwrap();
    assert_eq!((cfg.require_authoritative(), cfg.hosted_domain()), (true, Some("example.com")));
    let plain = World::load(dir.join("acme.toml")).unwrap();
    assert!(!plain.google().unwrap().require_authoritative, "off by default");
}

/// A malformed value is never repeated (it could be a token pasted in the wrong place): the
/// error names the file, line, column, field and what was expected.
#[test]
fn a_malformed_value_is_never_repeated() {
    let secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
    for (text, field, expected) in [
        (format!("version = \"{secret}\"\n"), "version", "invalid type: a string, expected u32"),
        (
            format!("version = 1\n[[users]]\nid = \"{secret}\"\nlogin = \"a\"\n"),
            "users[0].id",
            "invalid type: a string",
        ),
        (
            format!("version = 1\n[[users]]\nid = 1\nlogin = \"{secret}!\"\n"),
            "users[0].login",
            "expected a GitHub login",
        ),
        (
            format!(
                "version = 1\n[[users]]\nid = 1\nlogin = \"a\"\n[[repos]]\nid = 2\nowner = \"a\"\nname = \"r\"\nprivate = true\nroles = {{ a = \"{secret}\" }}\n"
            ),
            "repos[0].roles.a",
            "unknown role",
        ),
        (
            format!(
                "version = 1\n[[apps]]\nid = \"x\"\nrepo = \"a/r\"\nrepo_id = 1\nbranch = \"main\"\nmain_file = \"a.py\"\nvisibility = \"{secret}\"\ndeployed_by = \"a\"\n"
            ),
            "apps[0].visibility",
            "unknown variant, expected",
        ),
        (format!("version = 1\nnow = \"{secret}\"\n"), "now", "expected an RFC 3339 time"),
        (format!("version = 1\n{secret} = 1\n"), "", "unknown field, expected"),
        (format!("version = 1\nnow = \"{secret}\n"), "", ""),
        (
            format!("version = 1\n[[faults]]\npath = \"/x\"\nstatus = \"{secret}\"\n"),
            "faults[0].status",
            "expected 500",
        ),
        (format!("version = 1\n\"{secret}.more\" = 1\n"), "", "unknown field, expected"),
        (
            format!("version = 1\n[[users]]\n\"{secret}.x\" = 1\nid = 1\nlogin = \"a\"\n"),
            "users[0]",
            "unknown field, expected",
        ),
    ] {
        let e = err(&text);
        let shown = e.to_string();
        assert!(!shown.contains(secret) && !shown.contains("ghp_"), "{text}: repeated in {shown}");
        assert!(e.position.is_some(), "{text}: {shown}");
        if !field.is_empty() {
            assert_eq!(e.field.as_deref(), Some(field), "{shown}");
        }
        assert!(e.message.contains(expected), "{text}: {shown}");
    }
}

/// A missing field is named: the name is the program's, not the file's.
#[test]
fn a_missing_field_is_named() {
    let e = err("version = 1\n[[users]]\nid = 1\n");
    assert!(e.message.contains("missing field `login`"), "{e}");
}
