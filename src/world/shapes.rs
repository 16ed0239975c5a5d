//! The mock GitHub's answers, shaped as GitHub's own: every object carries the fields GitHub's
//! OpenAPI description requires of it (`simple-user`, `public-user`, `private-user`,
//! `collaborator`, `repository`, `full-repository`, `rate-limit-overview`), with the world's
//! values where the world says them and plausible fixed values elsewhere, URLs on the mock's own
//! base.

use serde_json::{Map, Value, json};

use super::WorldRepo;
use crate::core::policy::Role;

/// When every object the mock describes was created, pushed and updated.
const EPOCH: &str = "2020-01-01T00:00:00Z";

/// An account as the mock knows it: a user or an organization of the world.
#[derive(Debug, Clone, Copy)]
pub(super) struct Account<'a> {
    pub(super) login: &'a str,
    pub(super) id: u64,
    pub(super) organization: bool,
}

impl Account<'_> {
    fn kind(&self) -> &'static str {
        if self.organization { "Organization" } else { "User" }
    }

    fn node_id(&self) -> String {
        format!("{}_{}", if self.organization { "O" } else { "U" }, self.id)
    }
}

/// GitHub's `simple-user`: how an account appears inside another object.
pub(super) fn simple_user(base: &str, a: Account<'_>) -> Value {
    let user = format!("{base}/users/{}", a.login);
    json!({
        "login": a.login,
        "id": a.id,
        "node_id": a.node_id(),
        "avatar_url": format!("{base}/avatars/u/{}", a.id),
        "gravatar_id": "",
        "url": user,
        "html_url": format!("{base}/{}", a.login),
        "followers_url": format!("{user}/followers"),
        "following_url": format!("{user}/following{{/other_user}}"),
        "gists_url": format!("{user}/gists{{/gist_id}}"),
        "starred_url": format!("{user}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{user}/subscriptions"),
        "organizations_url": format!("{user}/orgs"),
        "repos_url": format!("{user}/repos"),
        "events_url": format!("{user}/events{{/privacy}}"),
        "received_events_url": format!("{user}/received_events"),
        "type": a.kind(),
        "user_view_type": "public",
        "site_admin": false
    })
}

/// GitHub's `installation`: the App's installation `id` on `account` (`selected` repositories or
/// `all`), suspended or not.
pub(super) fn installation(base: &str, id: u64, account: Account<'_>, selected: bool, suspended: bool) -> Value {
    json!({
        "id": id,
        "app_id": 1,
        "app_slug": "ghauthz-world",
        "target_id": account.id,
        "target_type": account.kind(),
        "single_file_name": null,
        "repository_selection": if selected { "selected" } else { "all" },
        "access_tokens_url": format!("{base}/app/installations/{id}/access_tokens"),
        "html_url": format!("{base}/settings/installations/{id}"),
        "repositories_url": format!("{base}/installation/repositories"),
        "events": ["installation", "installation_repositories", "member", "membership", "repository", "team"],
        "account": simple_user(base, account),
        "permissions": {"metadata": "read", "members": "read"},
        "created_at": EPOCH,
        "updated_at": EPOCH,
        "suspended_by": if suspended { simple_user(base, account) } else { Value::Null },
        "suspended_at": if suspended { json!(EPOCH) } else { Value::Null },
    })
}

/// GitHub's `public-user`: `GET /users/{login}` and `GET /user/{id}` of an account.
pub(super) fn public_user(base: &str, a: Account<'_>, public_repos: usize) -> Value {
    let mut v = simple_user(base, a);
    extend(
        &mut v,
        json!({
            "name": null,
            "company": null,
            "blog": "",
            "location": null,
            "email": null,
            "hireable": null,
            "bio": null,
            "twitter_username": null,
            "public_repos": public_repos,
            "public_gists": 0,
            "followers": 0,
            "following": 0,
            "created_at": EPOCH,
            "updated_at": EPOCH
        }),
    );
    v
}

/// GitHub's `private-user`: `GET /user`, the caller's own account.
pub(super) fn private_user(base: &str, a: Account<'_>, public_repos: usize, private_repos: usize) -> Value {
    let mut v = public_user(base, a, public_repos);
    extend(
        &mut v,
        json!({
            "private_gists": 0,
            "total_private_repos": private_repos,
            "owned_private_repos": private_repos,
            "disk_usage": 0,
            "collaborators": 0,
            "two_factor_authentication": true,
            "plan": {"name": "free", "space": 976_562_499, "collaborators": 0, "private_repos": 10_000}
        }),
    );
    v
}

/// The `permissions` hash of GitHub's base roles for `role`: each true when the role is at least
/// that one (`push` is write, `pull` is read).
pub(super) fn permissions(role: Option<Role>) -> Value {
    let at_least = |r: Role| role.is_some_and(|have| have >= r);
    json!({
        "admin": at_least(Role::Admin),
        "maintain": at_least(Role::Maintain),
        "push": at_least(Role::Write),
        "triage": at_least(Role::Triage),
        "pull": at_least(Role::Read)
    })
}

/// GitHub's `collaborator`: an account with its `permissions` on a repository and the name of
/// its role there.
pub(super) fn collaborator(base: &str, a: Account<'_>, role: Option<Role>, role_name: &str) -> Value {
    let mut v = simple_user(base, a);
    extend(&mut v, json!({"permissions": permissions(role), "role_name": role_name}));
    v
}

/// The API addresses of a repository's parts, under its own address, as GitHub writes them.
const REPO_URLS: [(&str, &str); 36] = [
    ("forks_url", "/forks"),
    ("keys_url", "/keys{/key_id}"),
    ("collaborators_url", "/collaborators{/collaborator}"),
    ("teams_url", "/teams"),
    ("hooks_url", "/hooks"),
    ("issue_events_url", "/issues/events{/number}"),
    ("events_url", "/events"),
    ("assignees_url", "/assignees{/user}"),
    ("branches_url", "/branches{/branch}"),
    ("tags_url", "/tags"),
    ("blobs_url", "/git/blobs{/sha}"),
    ("git_tags_url", "/git/tags{/sha}"),
    ("git_refs_url", "/git/refs{/sha}"),
    ("trees_url", "/git/trees{/sha}"),
    ("statuses_url", "/statuses/{sha}"),
    ("languages_url", "/languages"),
    ("stargazers_url", "/stargazers"),
    ("contributors_url", "/contributors"),
    ("subscribers_url", "/subscribers"),
    ("subscription_url", "/subscription"),
    ("commits_url", "/commits{/sha}"),
    ("git_commits_url", "/git/commits{/sha}"),
    ("comments_url", "/comments{/number}"),
    ("issue_comment_url", "/issues/comments{/number}"),
    ("contents_url", "/contents/{+path}"),
    ("compare_url", "/compare/{base}...{head}"),
    ("merges_url", "/merges"),
    ("archive_url", "/{archive_format}{/ref}"),
    ("downloads_url", "/downloads"),
    ("issues_url", "/issues{/number}"),
    ("pulls_url", "/pulls{/number}"),
    ("milestones_url", "/milestones{/number}"),
    ("notifications_url", "/notifications{?since,all,participating}"),
    ("labels_url", "/labels{/name}"),
    ("releases_url", "/releases{/id}"),
    ("deployments_url", "/deployments"),
];

/// GitHub's `repository` (in listings) or, with `full`, `full-repository` (`GET
/// /repos/{owner}/{repo}`), owned by `owner`; `permissions`, the caller's, when GitHub sends them.
pub(super) fn repository(
    base: &str,
    r: &WorldRepo,
    owner: Account<'_>,
    permissions: Option<Value>,
    full: bool,
) -> Value {
    let full_name = format!("{}/{}", r.owner, r.name);
    let api = format!("{base}/repos/{full_name}");
    let html = format!("{base}/{full_name}");
    let mut v = json!({
        "id": r.id.0,
        "node_id": format!("R_{}", r.id.0),
        "name": r.name,
        "full_name": full_name,
        "owner": simple_user(base, owner),
        "private": r.private,
        "visibility": if r.private { "private" } else { "public" },
        "archived": r.archived,
        "disabled": false,
        "fork": false,
        "is_template": false,
        "description": null,
        "homepage": null,
        "language": null,
        "license": null,
        "mirror_url": null,
        "topics": [],
        "default_branch": "main",
        "html_url": html,
        "url": api,
        "clone_url": format!("{html}.git"),
        "git_url": format!("git://127.0.0.1/{full_name}.git"),
        "ssh_url": format!("git@127.0.0.1:{full_name}.git"),
        "svn_url": html,
    });
    extend(
        &mut v,
        json!({
        "has_issues": true,
        "has_projects": true,
        "has_wiki": true,
        "has_pages": false,
        "has_downloads": true,
        "has_discussions": false,
        "allow_forking": true,
        "web_commit_signoff_required": false,
        "forks": 0,
        "forks_count": 0,
        "stargazers_count": 0,
        "watchers": 0,
        "watchers_count": 0,
        "open_issues": 0,
        "open_issues_count": 0,
        "size": 0,
        "created_at": EPOCH,
        "updated_at": EPOCH,
        "pushed_at": EPOCH
        }),
    );
    for (key, tail) in REPO_URLS {
        v[key] = Value::String(format!("{api}{tail}"));
    }
    if full {
        extend(&mut v, json!({"network_count": 0, "subscribers_count": 0, "temp_clone_token": null}));
        if owner.organization {
            v["organization"] = simple_user(base, owner);
        }
    }
    if let Some(p) = permissions {
        v["permissions"] = p;
    }
    v
}

/// GitHub's `rate-limit-overview` (`GET /rate_limit`): the core budget as the mock counts it, and
/// the other resources untouched.
pub(super) fn rate_limit(limit: u64, remaining: u64, reset: u64) -> Value {
    let core =
        json!({"limit": limit, "remaining": remaining, "reset": reset, "used": limit - remaining, "resource": "core"});
    let untouched = |name: &str, limit: u64| json!({"limit": limit, "remaining": limit, "reset": reset, "used": 0, "resource": name});
    json!({
        "resources": {
            "core": core,
            "search": untouched("search", 30),
            "code_search": untouched("code_search", 10),
            "graphql": untouched("graphql", 5000),
            "integration_manifest": untouched("integration_manifest", 5000),
            "source_import": untouched("source_import", 100),
            "code_scanning_upload": untouched("code_scanning_upload", 1000),
            "actions_runner_registration": untouched("actions_runner_registration", 10_000),
            "scim": untouched("scim", 15_000),
            "dependency_snapshots": untouched("dependency_snapshots", 100),
            "audit_log": untouched("audit_log", 1750),
            "audit_log_streaming": untouched("audit_log_streaming", 15)
        },
        "rate": core
    })
}

/// Adds `more`'s fields to `v` (both objects).
fn extend(v: &mut Value, more: Value) {
    if let (Value::Object(v), Value::Object(more)) = (v, more) {
        let more: Map<String, Value> = more;
        v.extend(more);
    }
}
