//! The mock GitHub is shaped like GitHub (docs/world.md): every answer of every route validates
//! against GitHub's own schema for that operation and status (its OpenAPI description, vendored
//! in `fixtures/github-openapi/`), and a GitHub client written by others (octocrab's typed
//! models) reads it. `.ci/run` drives `ghauthz mock-github` with PyGithub as well.
#![cfg(feature = "world")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failure stops the test")]

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};

use ghauthz::world::MockGithub;
use serde_json::Value;

use crate::common;

/// One answer, as it came over the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Header names in lower case, each with its values in order.
    headers: BTreeMap<String, Vec<String>>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.first()).map(String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `METHOD path` with `authorization` (raw bytes, sent as they are), over a connection of its own.
fn send(mock: &MockGithub, method: &str, path: &str, authorization: Option<&[u8]>) -> Answer {
    send_with(mock, method, path, authorization, "")
}

/// `send`, with more header lines (`Name: value\r\n` each).
fn send_with(mock: &MockGithub, method: &str, path: &str, authorization: Option<&[u8]>, more: &str) -> Answer {
    let mut s = std::net::TcpStream::connect(mock.addr()).unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: t\r\n{more}", mock.addr()).into_bytes();
    if let Some(auth) = authorization {
        request.extend_from_slice(b"Authorization: ");
        request.extend_from_slice(auth);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"Content-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(&request).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        headers.entry(name.to_ascii_lowercase()).or_default().push(value.trim().to_owned());
    }
    Answer { status, headers, body: body.to_owned() }
}

fn get(mock: &MockGithub, path: &str, token: Option<&str>) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    send(mock, "GET", path, auth.as_deref().map(str::as_bytes))
}

/// GitHub's response schemas, by `METHOD /path STATUS`, compiled with formats checked.
struct Schemas(BTreeMap<String, jsonschema::Validator>);

impl Schemas {
    fn load() -> Self {
        let text = std::fs::read_to_string(common::fixture_path("github-openapi/schemas.json")).unwrap();
        let all: Value = serde_json::from_str(&text).unwrap();
        let compiled = all["schemas"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, schema)| {
                let v = jsonschema::options().should_validate_formats(true).build(schema).unwrap();
                (key.clone(), v)
            })
            .collect();
        Schemas(compiled)
    }

    /// Checks `answer` against the schema of `operation` (`GET /repos/{owner}/{repo}`) for its
    /// status, or GitHub's `basic-error` where the description gives no body for that status;
    /// returns how many it checked.
    fn check(&self, operation: &str, answer: &Answer, what: &str) -> usize {
        let key = format!("{operation} {}", answer.status);
        // A status GitHub's description gives no body for (a 401 on a repository route, say)
        // carries GitHub's `basic-error`, as GitHub's own answers do.
        let Some(validator) = self.0.get(&key).or_else(|| self.0.get("basic-error")) else {
            panic!("no schema for {key}, nor basic-error");
        };
        let body = answer.json();
        let errors: Vec<String> =
            validator.iter_errors(&body).map(|e| format!("{} at {}", e, e.instance_path())).take(5).collect();
        assert!(errors.is_empty(), "{what}: {key}: {errors:#?}\n{}", answer.body);
        1
    }
}

/// Every route the mock answers, asked by every kind of caller about everything the world
/// holds, validates against GitHub's schema for that operation and status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_validates_against_githubs_schema() {
    let schemas = Schemas::load();
    let mut checked = BTreeMap::<String, usize>::new();
    for name in ["acme.toml", "roles.toml"] {
        let world = common::fixture(name);
        let mock = MockGithub::start(world.clone()).await.unwrap();
        let install = Some(mock.installation_token());
        let users: Vec<String> = world.users().iter().map(|u| u.login.clone()).collect();
        let tokens: Vec<(String, Option<String>)> =
            std::iter::once(("installation".to_owned(), install.map(str::to_owned)))
                .chain(std::iter::once(("anonymous".to_owned(), None)))
                .chain(users.iter().map(|l| (l.clone(), Some(mock.user_token(l).expose_secret().to_owned()))))
                .collect();
        let mut check = |operation: &str, answer: &Answer, what: String| {
            *checked.entry(format!("{operation} {}", answer.status)).or_default() +=
                schemas.check(operation, answer, &what);
        };
        for repo in world.repos() {
            for (who, token) in &tokens {
                let token = token.as_deref();
                for path in [format!("/repos/{}/{}", repo.owner, repo.name), format!("/repositories/{}", repo.id.0)] {
                    check("GET /repos/{owner}/{repo}", &get(&mock, &path, token), format!("{path} as {who}"));
                    for login in users.iter().chain(std::iter::once(&"nobody-here".to_owned())) {
                        let p = format!("{path}/collaborators/{login}/permission");
                        check(
                            "GET /repos/{owner}/{repo}/collaborators/{username}/permission",
                            &get(&mock, &p, token),
                            format!("{p} as {who}"),
                        );
                    }
                    for query in [
                        "",
                        "?affiliation=all&permission=push&per_page=100",
                        "?permission=pull&per_page=2&page=2",
                        "?affiliation=direct",
                        "?affiliation=outside",
                    ] {
                        let p = format!("{path}/collaborators{query}");
                        check(
                            "GET /repos/{owner}/{repo}/collaborators",
                            &get(&mock, &p, token),
                            format!("{p} as {who}"),
                        );
                    }
                }
                for old in &repo.renamed_from {
                    let p = format!("/repos/{}/{old}", repo.owner);
                    check("GET /repos/{owner}/{repo}", &get(&mock, &p, token), format!("{p} as {who}"));
                }
            }
        }
        let accounts: Vec<(String, u64)> = world
            .users()
            .iter()
            .map(|u| (u.login.clone(), u.id.0))
            .chain(world.orgs().iter().map(|o| (o.login.clone(), o.id)))
            .chain(std::iter::once(("nobody-here".to_owned(), 999_999)))
            .collect();
        for (who, token) in &tokens {
            let token = token.as_deref();
            for (login, id) in &accounts {
                check(
                    "GET /users/{username}",
                    &get(&mock, &format!("/users/{login}"), token),
                    format!("{login} as {who}"),
                );
                check("GET /user/{account_id}", &get(&mock, &format!("/user/{id}"), token), format!("{id} as {who}"));
            }
            check("GET /user", &get(&mock, "/user", token), format!("/user as {who}"));
            for page in 1..=3 {
                let p = format!("/user/repos?per_page=2&page={page}");
                check("GET /user/repos", &get(&mock, &p, token), format!("{p} as {who}"));
                let p = format!("/installation/repositories?per_page=2&page={page}");
                check("GET /installation/repositories", &get(&mock, &p, token), format!("{p} as {who}"));
            }
            check("GET /rate_limit", &get(&mock, "/rate_limit", token), format!("/rate_limit as {who}"));
        }
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOjF9.c2ln";
        for auth in [Some(format!("Bearer {jwt}")), Some(format!("bearer {jwt}")), Some("Bearer nope".to_owned()), None]
        {
            let a = send(&mock, "POST", "/app/installations/7/access_tokens", auth.as_deref().map(str::as_bytes));
            check("POST /app/installations/{installation_id}/access_tokens", &a, format!("{auth:?}"));
        }
    }
    // Every status met is one GitHub sends for that operation.
    let sent_by_github = |key: &str| {
        let (operation, status) = key.rsplit_once(' ').unwrap();
        match status {
            "200" | "201" | "404" | "401" => true,
            "301" => operation == "GET /repos/{owner}/{repo}",
            "403" => operation == "GET /user" || operation == "GET /repos/{owner}/{repo}/collaborators",
            _ => false,
        }
    };
    let odd: Vec<&String> = checked.keys().filter(|k| !sent_by_github(k)).collect();
    assert!(odd.is_empty(), "statuses GitHub does not send there: {odd:?}");
    // Every operation and status the mock sends a body for was met, and checked.
    for key in [
        "GET /repos/{owner}/{repo} 200",
        "GET /repos/{owner}/{repo} 301",
        "GET /repos/{owner}/{repo} 404",
        "GET /repos/{owner}/{repo}/collaborators 200",
        "GET /repos/{owner}/{repo}/collaborators/{username}/permission 200",
        "GET /repos/{owner}/{repo}/collaborators/{username}/permission 404",
        "GET /users/{username} 200",
        "GET /users/{username} 404",
        "GET /user/{account_id} 200",
        "GET /user/{account_id} 404",
        "GET /user 200",
        "GET /user 401",
        "GET /user 403",
        "GET /user/repos 200",
        "GET /user/repos 401",
        "GET /installation/repositories 200",
        "GET /installation/repositories 401",
        "GET /rate_limit 200",
        "POST /app/installations/{installation_id}/access_tokens 201",
        "POST /app/installations/{installation_id}/access_tokens 401",
    ] {
        assert!(checked.get(key).copied().unwrap_or(0) > 0, "{key} was never checked: {checked:#?}");
    }
}

/// The `Authorization` scheme is matched without regard to case (RFC 9110 §11.1), as GitHub
/// does; a token that is not UTF-8, an unknown token and an unknown scheme are bad credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheme_is_case_insensitive_and_bad_credentials_are_refused() {
    let mock = MockGithub::start(common::fixture("acme.toml")).await.unwrap();
    let token = mock.installation_token();
    for scheme in ["Bearer", "bearer", "BEARER", "token", "Token"] {
        let a = send(&mock, "GET", "/repos/acme/dashboard", Some(format!("{scheme} {token}").as_bytes()));
        assert_eq!(a.status, 200, "{scheme}: {}", a.body);
        let a = send(&mock, "GET", "/user", Some(format!("{scheme} user:carol").as_bytes()));
        assert_eq!((a.status, a.json()["login"].as_str()), (200, Some("carol")), "{scheme}");
    }
    for bad in [
        &b"Bearer ghs_\xff\xfe"[..],
        b"Bearer user:carol\xc3\xa9",
        b"Bearer ghs_unknown",
        b"Basic dXNlcjpwYXNz",
        b"Bearer user:nobody-here",
    ] {
        let a = send(&mock, "GET", "/repos/acme/website", Some(bad));
        assert_eq!(
            (a.status, a.json()["message"].as_str()),
            (401, Some("Bad credentials")),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(send(&mock, "GET", "/repos/acme/website", None).status, 200, "anonymous sees a public repository");
}

/// Paged answers name every relation that applies, as GitHub's `link` header does, keeping the
/// request's other parameters; `GET /user/repos` is ordered by full name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_name_every_relation_and_user_repos_go_by_full_name() {
    let world = common::fixture("acme.toml");
    let mock = MockGithub::start(world.clone()).await.unwrap();
    let carol = mock.user_token("carol");
    let carol = Some(carol.expose_secret());
    let all = get(&mock, "/user/repos?per_page=100", carol).json();
    let names: Vec<&str> = all.as_array().unwrap().iter().map(|r| r["full_name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.to_ascii_lowercase());
    assert_eq!(names, sorted, "by full name");
    assert!(names.len() >= 3, "{names:?}");
    let n = names.len();
    let relations = |page: usize| -> BTreeMap<String, usize> {
        let a = get(&mock, &format!("/user/repos?per_page=1&page={page}"), carol);
        let Some(link) = a.header("link") else { return BTreeMap::new() };
        link.split(", ")
            .map(|part| {
                let (url, rel) = part.split_once("; rel=").unwrap();
                assert!(url.starts_with(&format!("<{}/user/repos?", mock.base_url())), "{url}");
                let page = url.trim_end_matches('>').rsplit_once("page=").unwrap().1.parse().unwrap();
                (rel.trim_matches('"').to_owned(), page)
            })
            .collect()
    };
    let rels = |pairs: &[(&str, usize)]| pairs.iter().map(|(r, p)| ((*r).to_owned(), *p)).collect::<BTreeMap<_, _>>();
    assert_eq!(relations(1), rels(&[("next", 2), ("last", n)]));
    assert_eq!(relations(2), rels(&[("first", 1), ("prev", 1), ("next", 3), ("last", n)]));
    assert_eq!(relations(n), rels(&[("first", 1), ("prev", n - 1)]));
    let a = get(
        &mock,
        "/repos/acme/dashboard/collaborators?permission=push&per_page=1&page=2",
        Some(mock.installation_token()),
    );
    assert!(a.header("link").unwrap().contains("permission=push&per_page=1&page=3"), "{:?}", a.header("link"));
}

/// Every answer names its request (`x-github-request-id`); `GET /rate_limit` says the budget
/// the other answers spend and spends none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_a_request_id_and_rate_limit_costs_nothing() {
    let mock = MockGithub::start(common::fixture("acme.toml")).await.unwrap();
    let token = Some(mock.installation_token());
    let mut ids = std::collections::BTreeSet::new();
    for path in ["/repos/acme/dashboard", "/repos/acme/nothing", "/rate_limit", "/oauth2/v3/certs", "/nowhere"] {
        let a = get(&mock, path, token);
        assert!(ids.insert(a.header("x-github-request-id").expect(path).to_owned()), "{path}: the id is new");
    }
    let before = get(&mock, "/rate_limit", token).json();
    let again = get(&mock, "/rate_limit", token).json();
    assert_eq!(before["resources"]["core"]["remaining"], again["resources"]["core"]["remaining"], "free to ask");
    assert_eq!(before["rate"], before["resources"]["core"]);
    let spent = get(&mock, "/repos/acme/dashboard", token);
    let remaining: u64 = spent.header("x-ratelimit-remaining").unwrap().parse().unwrap();
    assert_eq!(get(&mock, "/rate_limit", token).json()["resources"]["core"]["remaining"], remaining);
}

/// octocrab's typed models, written by others from GitHub's description, read the mock's answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_client_written_by_others_reads_every_answer() {
    let world = common::fixture("acme.toml");
    let mock = MockGithub::start(world.clone()).await.unwrap();
    let client = |token: &str| {
        octocrab::Octocrab::builder()
            .base_uri(mock.base_url())
            .unwrap()
            .personal_token(token.to_owned())
            .build()
            .unwrap()
    };
    let install = client(mock.installation_token());
    let repo = install.repos("acme", "dashboard").get().await.unwrap();
    assert_eq!((repo.id.0, repo.full_name.as_deref(), repo.private), (101, Some("acme/dashboard"), Some(true)));
    assert_eq!(repo.owner.unwrap().login, "acme");
    let olga = install.users("olga").profile().await.unwrap();
    assert_eq!((olga.login.as_str(), olga.id.0), ("olga", 7));
    let rate = install.ratelimit().get().await.unwrap();
    assert_eq!(rate.resources.core.limit, 5000);
    let roster = install
        .repos("acme", "dashboard")
        .list_collaborators()
        .permission(octocrab::params::teams::Permission::Push)
        .per_page(100)
        .send()
        .await
        .unwrap();
    let mut logins: Vec<&str> = roster.items.iter().map(|c| c.author.login.as_str()).collect();
    logins.sort_unstable();
    assert_eq!(logins, ["bob", "carol", "erin", "olga", "rick", "tina"], "push and above");
    let carol = client(mock.user_token("carol").expose_secret());
    let me = carol.current().user().await.unwrap();
    assert_eq!((me.login.as_str(), me.id.0), ("carol", 3));
    let mine = carol.current().list_repos_for_authenticated_user().per_page(100).send().await.unwrap();
    assert!(mine.items.iter().any(|r| r.full_name.as_deref() == Some("acme/website")));
}

/// An ETag is tied to the token that fetched it, as on GitHub: the same tag from another token
/// gets the whole answer (and spends), from the same token a free 304.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etag_answers_304_only_to_the_token_that_fetched_it() {
    let mock = MockGithub::start(common::fixture("acme.toml")).await.unwrap();
    let install = format!("Bearer {}", mock.installation_token());
    let first = send(&mock, "GET", "/users/olga", Some(install.as_bytes()));
    let tag = first.header("etag").unwrap().to_owned();
    let again = send_with(&mock, "GET", "/users/olga", Some(install.as_bytes()), &format!("If-None-Match: {tag}\r\n"));
    assert_eq!((again.status, again.body.as_str()), (304, ""));
    for other in ["Bearer user:carol", "Bearer user:olga"] {
        let a = send_with(&mock, "GET", "/users/olga", Some(other.as_bytes()), &format!("If-None-Match: {tag}\r\n"));
        assert_eq!(a.status, 200, "{other}");
        assert_eq!(a.json(), first.json(), "the same body, under a tag of its own");
        assert_ne!(a.header("etag"), Some(tag.as_str()));
    }
}

pub(crate) mod differential {
    //! The roster and the permission route agree, for every (user, repository) of random worlds:
    //! teams, base permissions, owners, direct and custom roles, public and private
    //! repositories. A roster entry's `permissions` hash and `role_name` are the permission
    //! route's, a user is on the unfiltered roster exactly when the world gives them a role,
    //! and `permission=push` keeps exactly those whose hash has `push`.

    use super::*;
    use proptest::prelude::*;

    const ROLES: [&str; 9] = [
        "admin",
        "maintain",
        "write",
        "triage",
        "read",
        "custom:c-maintain:maintain",
        "custom:c-write:write",
        "custom:c-triage:triage",
        "custom:c-read:read",
    ];
    const USERS: usize = 6;
    const REPOS: usize = 4;

    #[derive(Debug, Clone)]
    pub(crate) struct Spec {
        owners: Vec<bool>,
        members: Vec<bool>,
        base: &'static str,
        teams: Vec<(Vec<bool>, Vec<Option<usize>>)>,
        repos: Vec<(bool, bool, Vec<Option<usize>>)>,
    }

    pub(crate) fn spec() -> impl Strategy<Value = Spec> {
        let flags = || proptest::collection::vec(any::<bool>(), USERS);
        let grants = |n| proptest::collection::vec(proptest::option::weighted(0.4, 0..ROLES.len()), n);
        (
            flags(),
            flags(),
            prop_oneof![Just("none"), Just("read"), Just("write"), Just("admin")],
            proptest::collection::vec((flags(), grants(REPOS)), 0..3),
            proptest::collection::vec((any::<bool>(), any::<bool>(), grants(USERS)), REPOS),
        )
            .prop_map(|(owners, members, base, teams, repos)| Spec { owners, members, base, teams, repos })
    }

    /// The world, as a world file says it: users u0..u5 (u0 owns the user-owned repositories),
    /// the organization `org`, and repositories r0..r3.
    pub(crate) fn world_text(s: &Spec) -> String {
        let pick = |flags: &[bool]| -> String {
            flags
                .iter()
                .enumerate()
                .filter(|(_, f)| **f)
                .map(|(i, _)| format!("\"u{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut t = String::from("version = 1\n");
        for i in 0..USERS {
            t.push_str(&format!("[[users]]\nid = {}\nlogin = \"u{i}\"\n", i + 1));
        }
        t.push_str(&format!(
            "[[orgs]]\nid = 5000\nlogin = \"org\"\nowners = [{}]\nmembers = [{}]\nbase_permission = \"{}\"\n",
            pick(&s.owners),
            pick(&s.members),
            s.base
        ));
        for (k, (members, grants)) in s.teams.iter().enumerate() {
            let repos: Vec<String> = grants
                .iter()
                .enumerate()
                .filter(|(r, g)| g.is_some() && s.repos[*r].0)
                .map(|(r, g)| format!("r{r} = \"{}\"", ROLES[g.unwrap_or(0)]))
                .collect();
            t.push_str(&format!(
                "[[orgs.teams]]\nid = {}\nslug = \"t{k}\"\nmembers = [{}]\nrepos = {{ {} }}\n",
                7000 + k,
                pick(members),
                repos.join(", ")
            ));
        }
        for (r, (in_org, private, grants)) in s.repos.iter().enumerate() {
            let roles: Vec<String> =
                grants.iter().enumerate().filter_map(|(u, g)| g.map(|g| format!("u{u} = \"{}\"", ROLES[g]))).collect();
            t.push_str(&format!(
                "[[repos]]\nid = {}\nowner = \"{}\"\nname = \"r{r}\"\nprivate = {private}\nroles = {{ {} }}\n",
                100 + r,
                if *in_org { "org" } else { "u0" },
                roles.join(", ")
            ));
        }
        t
    }

    fn agree(s: &Spec) -> Result<(), TestCaseError> {
        let text = world_text(s);
        let world = ghauthz::world::World::from_toml_str(&text, ".")
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let mock = rt.block_on(MockGithub::start(world.clone())).unwrap();
        let install = Some(mock.installation_token());
        for repo in world.repos() {
            let base = format!("/repos/{}/{}", repo.owner, repo.name);
            let roster = get(&mock, &format!("{base}/collaborators?per_page=100"), install).json();
            let pushers = get(&mock, &format!("{base}/collaborators?permission=push&per_page=100"), install).json();
            let ids = |list: &Value| -> Vec<u64> {
                list.as_array().unwrap().iter().map(|c| c["id"].as_u64().unwrap()).collect()
            };
            let mut pushing = Vec::new();
            for user in world.users() {
                let route = get(&mock, &format!("{base}/collaborators/{}/permission", user.login), install).json();
                let entry = roster.as_array().unwrap().iter().find(|c| c["id"] == user.id.0);
                let role = world.effective_role(user.id, repo);
                prop_assert_eq!(
                    entry.is_some(),
                    role.is_some(),
                    "{} on {}: on the roster\n{}",
                    user.login,
                    repo.name,
                    text
                );
                if let Some(entry) = entry {
                    prop_assert_eq!(
                        &entry["permissions"],
                        &route["user"]["permissions"],
                        "{} on {}\n{}",
                        user.login,
                        repo.name,
                        text
                    );
                    prop_assert_eq!(
                        &entry["role_name"],
                        &route["role_name"],
                        "{} on {}\n{}",
                        user.login,
                        repo.name,
                        text
                    );
                    if entry["permissions"]["push"] == true {
                        pushing.push(user.id.0);
                    }
                }
            }
            prop_assert_eq!(ids(&pushers), pushing, "permission=push on {}\n{}", repo.name, text);
        }
        drop(mock);
        rt.shutdown_background();
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn the_roster_agrees_with_the_permission_route(s in spec()) {
            agree(&s)?;
        }
    }
}

/// acme.toml with three installations of the App: on acme (two repositories selected), on
/// alice (all hers), and on carol (suspended).
fn acme_installed() -> ghauthz::world::World {
    common::acme_with(|t| {
        t + r#"
[[installations]]
id = 401
account = "acme"
repositories = ["dashboard", "website"]

[[installations]]
id = 402
account = "alice"

[[installations]]
id = 403
account = "carol"
suspended = true
"#
    })
}

const JWT: &str = "Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOjF9.c2ln";

/// Each installation mints tokens of its own (a new one at every call, valid one hour by the
/// world's clock) that see its repositories alone and spend its own budget; a suspended one is
/// refused; the three lookups find the installation of a repository, an organization or a user;
/// every answer validates against GitHub's schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installations_mint_their_own_tokens_see_their_own_repositories_and_spend_their_own_budget() {
    let schemas = Schemas::load();
    let world = acme_installed();
    let clock = ghauthz::ManualClock::new(world.now().unwrap());
    let mock = MockGithub::start_with_clock(world, std::sync::Arc::new(clock.clone())).await.unwrap();
    let mint = |id: u64| send(&mock, "POST", &format!("/app/installations/{id}/access_tokens"), Some(JWT.as_bytes()));
    let first = mint(401);
    schemas.check("POST /app/installations/{installation_id}/access_tokens", &first, "mint 401");
    assert_eq!((first.status, first.json()["repository_selection"].as_str()), (201, Some("selected")));
    let second = mint(401);
    let (acme, acme2) =
        (first.json()["token"].as_str().unwrap().to_owned(), second.json()["token"].as_str().unwrap().to_owned());
    assert_ne!(acme, acme2, "a new token at every call");
    let expires = chrono::DateTime::parse_from_rfc3339(first.json()["expires_at"].as_str().unwrap()).unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!((3590..=3600).contains(&(expires.timestamp() - now)), "one hour, read against the real clock");
    let alice = mint(402).json()["token"].as_str().unwrap().to_owned();
    let suspended = mint(403);
    schemas.check("POST /app/installations/{installation_id}/access_tokens", &suspended, "mint 403");
    assert_eq!(suspended.status, 403);
    let unknown = mint(499);
    schemas.check("POST /app/installations/{installation_id}/access_tokens", &unknown, "mint 499");
    assert_eq!(unknown.status, 404);

    // Its own repositories, private or public; any other answers 404, as on GitHub.
    for (path, token, status) in [
        ("/repos/acme/dashboard", &acme, 200),
        ("/repos/acme/website", &acme, 200),
        ("/repos/acme/legacy", &acme, 404),
        // Renamed (acme/analytics is now analytics-v2) but not selected: no redirect to tell
        // that it exists, or its id.
        ("/repos/acme/analytics", &acme, 404),
        ("/repos/alice/notes", &acme, 404),
        ("/repos/alice/notes", &alice, 200),
        ("/repos/acme/dashboard", &alice, 404),
        ("/repos/acme/dashboard/collaborators", &acme, 200),
        ("/repos/acme/dashboard/collaborators", &alice, 404),
    ] {
        let a = get(&mock, path, Some(token));
        assert_eq!(a.status, status, "{path} with {}: {}", &token[..12], a.body);
    }
    let listed = get(&mock, "/installation/repositories", Some(&acme));
    schemas.check("GET /installation/repositories", &listed, "acme's repositories");
    let body = listed.json();
    let names: Vec<&str> =
        body["repositories"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dashboard", "website"]);
    assert_eq!(listed.json()["repository_selection"], "selected");

    // Budgets: acme's requests spend acme's, not alice's; the answer says acme's.
    let before = (mock.installation_rate_limit_remaining(401), mock.installation_rate_limit_remaining(402));
    let a = get(&mock, "/repos/acme/dashboard", Some(&acme2));
    assert_eq!(a.header("x-ratelimit-remaining").unwrap(), (before.0 - 1).to_string());
    assert_eq!(mock.installation_rate_limit_remaining(401), before.0 - 1);
    assert_eq!(mock.installation_rate_limit_remaining(402), before.1, "alice's budget untouched");

    // Past its hour, a token answers 401; a new one works.
    clock.advance(std::time::Duration::from_secs(3600));
    let left = mock.installation_rate_limit_remaining(401);
    assert_eq!(get(&mock, "/repos/acme/dashboard", Some(&acme)).status, 401);
    assert_eq!(mock.installation_rate_limit_remaining(401), left, "an expired token's refusal is not charged");
    let fresh = mint(401).json()["token"].as_str().unwrap().to_owned();
    assert_eq!(get(&mock, "/repos/acme/dashboard", Some(&fresh)).status, 200);
    assert_eq!(get(&mock, "/repos/acme/dashboard", Some(&acme)).status, 401, "still refused once forgotten");

    // The lookups (App JWT): a repository's, an organization's, a user's installation.
    for (operation, path, status, id) in [
        ("GET /repos/{owner}/{repo}/installation", "/repos/acme/dashboard/installation", 200, Some(401)),
        ("GET /repos/{owner}/{repo}/installation", "/repos/acme/legacy/installation", 404, None),
        ("GET /repos/{owner}/{repo}/installation", "/repos/alice/notes/installation", 200, Some(402)),
        ("GET /orgs/{org}/installation", "/orgs/acme/installation", 200, Some(401)),
        ("GET /users/{username}/installation", "/users/alice/installation", 200, Some(402)),
        ("GET /users/{username}/installation", "/users/carol/installation", 200, Some(403)),
    ] {
        let a = send(&mock, "GET", path, Some(JWT.as_bytes()));
        assert_eq!(a.status, status, "{path}: {}", a.body);
        if status == 200 {
            schemas.check(operation, &a, path);
            assert_eq!(a.json()["id"].as_u64(), id, "{path}");
        }
    }
    let all = send(&mock, "GET", "/app/installations", Some(JWT.as_bytes()));
    assert_eq!(all.status, 200);
    // GitHub's description inlines this route's `installation` with its account as
    // `allOf: [simple-user, enterprise]`, which no account can be (its `installation` component,
    // and every other route's, says `anyOf`): each item is checked against the component, as
    // the repository lookup's 200 carries it.
    for item in all.json().as_array().unwrap() {
        let one = Answer { status: 200, headers: all.headers.clone(), body: item.to_string() };
        schemas.check("GET /repos/{owner}/{repo}/installation", &one, "an item of GET /app/installations");
    }
    let ids: Vec<u64> = all.json().as_array().unwrap().iter().map(|i| i["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [401, 402, 403]);
    assert_eq!(get(&mock, "/app/installations", Some(&fresh)).status, 401, "the App's JWT only");
    let carol = send(&mock, "GET", "/users/carol/installation", Some(JWT.as_bytes())).json();
    assert!(carol["suspended_at"].is_string(), "{carol}");
    assert_eq!(
        send(&mock, "GET", "/orgs/acme/installation", Some(format!("Bearer {fresh}").as_bytes())).status,
        401,
        "an installation token is not the App's JWT"
    );
}

/// What a world may say of installations: a declared account, one installation per account,
/// unique ids, repositories of that account.
#[test]
fn a_world_refuses_installations_that_cannot_be() {
    let with = |extra: &str| {
        let text = std::fs::read_to_string(common::fixture_path("worlds/acme.toml")).unwrap() + extra;
        ghauthz::world::World::from_toml_str(&text, common::fixture_path("worlds"))
    };
    for (extra, field) in [
        ("[[installations]]\nid = 1\naccount = \"nobody-here\"\n", "installations[0].account"),
        ("[[installations]]\nid = 0\naccount = \"acme\"\n", "installations[0].id"),
        (
            "[[installations]]\nid = 1\naccount = \"acme\"\n[[installations]]\nid = 1\naccount = \"alice\"\n",
            "installations[1].id",
        ),
        (
            "[[installations]]\nid = 1\naccount = \"acme\"\n[[installations]]\nid = 2\naccount = \"ACME\"\n",
            "installations[1].account",
        ),
        (
            "[[installations]]\nid = 1\naccount = \"acme\"\nrepositories = [\"notes\"]\n",
            "installations[0].repositories[0]",
        ),
    ] {
        let err = with(extra).unwrap_err();
        assert_eq!(err.field.as_deref(), Some(field), "{extra}: {err}");
    }
    let world = with("[[installations]]\nid = 7\naccount = \"Acme\"\n").unwrap();
    let dashboard = world.repos().iter().find(|r| r.name == "dashboard").unwrap();
    assert_eq!(world.installation_of(dashboard).map(|i| i.id), Some(7));
    let notes = world.repos().iter().find(|r| r.name == "notes").unwrap();
    assert!(world.installation_of(notes).is_none(), "alice's repository: no installation covers it");
}
