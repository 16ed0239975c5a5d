//! World mode: fixture worlds (`docs/world.md`) and the mock GitHub they are served by.
//!
//! A world describes GitHub's accounts, organizations, teams and repositories, and the apps a
//! control plane deployed. The library does not read it directly: [`MockGithub`] serves it on
//! 127.0.0.1 with GitHub's status codes, headers and JSON, and the real client is pointed at it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use ghauthz::world::{MockGithub, World};
//! use ghauthz::CheckRequest;
//! use ghauthz::{Authorizer, Capability, Principal};
//!
//! let world = World::from_toml_str(r#"
//!     version = 1
//!     [[users]]
//!     id = 1
//!     login = "alice"
//!     [[repos]]
//!     id = 10
//!     owner = "alice"
//!     name = "notes"
//!     private = true
//!     [[apps]]
//!     id = "notes"
//!     repo = "alice/notes"
//!     repo_id = 10
//!     branch = "main"
//!     main_file = "app.py"
//!     visibility = "private"
//!     deployed_by = "alice"
//! "#, ".").unwrap();
//! let mock = MockGithub::start(world.clone()).await.unwrap();
//! let authz = Authorizer::builder(mock.github_config()).build().unwrap();
//! let alice = Principal::github(world.user("alice").unwrap());
//! let decision = authz.check(&ghauthz::CheckRequest::new(&alice, &world.app("notes").unwrap(), Capability::Delete)).await.unwrap();
//! assert!(decision.is_allowed()); // the owner of a user-owned repository is admin
//! # }
//! ```

#[doc(hidden)]
pub mod doctest;
mod explain;
mod glob;
mod mock;
mod shapes;
mod table;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

pub use explain::{ExplainRow, explain};
pub use mock::MockGithub;
pub use table::{CaseResult, DecisionTable, TableError, TableReport};

use crate::core::email::Email;
use crate::core::ids::{App, AppId, GithubUser, RepoCoords, RepoId, UserId};
use crate::core::policy::{Role, RoleGrant, RoleName, Visibility};
use crate::core::time::Timestamp;
use crate::store::AppRecord;

/// A world file that could not be loaded: where, which field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct WorldError {
    /// The file, when loaded from one.
    pub file: Option<PathBuf>,
    /// 1-based line and column, where known.
    pub position: Option<(usize, usize)>,
    /// The field, as a path (`repos[2].roles.carol`), where known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl WorldError {
    /// A stable name: `bad_world`.
    pub fn kind(&self) -> &'static str {
        "bad_world"
    }
}

impl fmt::Display for WorldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "{}", p.display())?,
            None => f.write_str("world")?,
        }
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "`{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// `text` (the file at `file`, if it is one) as a `T`, or where, in which field, and what is
/// wrong: the line and field of a syntax or type error, never more of the text than the field.
fn from_toml<T: serde::de::DeserializeOwned>(text: &str, file: Option<&Path>) -> Result<T, WorldError> {
    let refused = |span: Option<Range<usize>>, field: Option<String>, message: &str| WorldError {
        file: file.map(Path::to_owned),
        position: span.map(|s| position(text, s.start)),
        field,
        message: message.to_owned(),
    };
    let de = toml::Deserializer::parse(text).map_err(|e| refused(e.span(), None, &without_values(e.message())))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        // `toml::Spanned` shows up in paths under private field names; they are not fields.
        // An unknown key ends the path: it is what was typed, so the field named is its table.
        let mut segments: Vec<serde_path_to_error::Segment> = e.path().iter().cloned().collect();
        if e.inner().message().starts_with("unknown field `") {
            segments.pop();
        }
        let path = segments.iter().fold(String::new(), |mut path, segment| {
            match segment {
                serde_path_to_error::Segment::Seq { index } => path.push_str(&format!("[{index}]")),
                serde_path_to_error::Segment::Map { key } | serde_path_to_error::Segment::Enum { variant: key } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                _ => path.push_str(".?"),
            }
            path
        });
        let path = path.split(".$__serde_spanned").next().filter(|p| !p.is_empty()).unwrap_or(".").to_owned();
        let inner = e.into_inner();
        refused(inner.span(), (path != ".").then_some(path), &without_values(inner.message()))
    })
}

/// What a world error says of a repository name that breaks the rule (the name is not repeated).
const REPO_NAME_RULE: &str = "expected 1 to 100 ASCII letters, digits, `-`, `_` and `.`, and neither `.` nor `..`";

/// A parser's message (serde's, toml's, serde_json's) without the values it quotes: `invalid
/// type: string "ghp_...", expected u32` is said `invalid type: a string, expected u32`, and
/// `unknown variant `x`, expected one of ...` `unknown variant, expected one of ...`. Nothing a
/// file holds is repeated, since it could be a secret (DESIGN §10); what was expected is said.
pub(crate) fn without_values(message: &str) -> String {
    /// serde's `Unexpected` kinds, longest first, as its messages write them.
    const KINDS: [&str; 18] = [
        "floating point",
        "newtype variant",
        "newtype struct",
        "tuple variant",
        "struct variant",
        "unit variant",
        "unit value",
        "Option value",
        "byte array",
        "character",
        "boolean",
        "integer",
        "string",
        "sequence",
        "bytes",
        "map",
        "enum",
        "unit",
    ];
    let message = message.trim_end();
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let kind = KINDS.iter().find(|k| rest.starts_with(*k)).map_or("a value", |k| k);
            // What was expected is written last, by the program, never by the file.
            let expected = rest.rfind(", expected ").map_or("", |at| &rest[at..]);
            return format!("{prefix}{}{kind}{expected}", if kind == "a value" { "" } else { "a " });
        }
    }
    // A missing or duplicated field is named by the program, not the file: kept.
    if message.starts_with("missing field `") || message.starts_with("duplicate field `") {
        return message.to_owned();
    }
    for (prefix, what) in [("unknown variant `", "unknown variant"), ("unknown field `", "unknown field")] {
        if message.starts_with(prefix) {
            let expected = message.rfind("`, expected ").map_or("", |at| &message[at + 1..]);
            return format!("{what}{expected}");
        }
    }
    // Any other message is the parser's own words; a quoted part may still be the file's.
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        match c {
            '`' | '"' if !quoted => {
                quoted = true;
                out.push_str("`…`");
            }
            '`' | '"' => quoted = false,
            _ if quoted => {}
            c => out.push(c),
        }
    }
    out
}

/// An RFC 3339 time from 1970 to the end of year 9999, or why not (the text is not repeated).
fn timestamp(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(s).map_err(|e| format!("expected an RFC 3339 time from 1970 to year 9999: {e}"))
}

fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

// ---------- the file, as written ----------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorldFile {
    version: Spanned<u32>,
    #[serde(default)]
    now: Option<Spanned<String>>,
    #[serde(default)]
    users: Vec<UserSpec>,
    #[serde(default)]
    orgs: Vec<OrgSpec>,
    #[serde(default)]
    repos: Vec<RepoSpec>,
    #[serde(default)]
    faults: Vec<FaultSpec>,
    #[serde(default)]
    google: Option<GoogleSpec>,
    #[serde(default)]
    apps: Vec<AppSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSpec {
    id: Spanned<u64>,
    login: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgSpec {
    id: Spanned<u64>,
    login: Spanned<String>,
    #[serde(default)]
    owners: Vec<Spanned<String>>,
    #[serde(default)]
    members: Vec<Spanned<String>>,
    #[serde(default)]
    base_permission: Option<Spanned<String>>,
    #[serde(default)]
    teams: Vec<TeamSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamSpec {
    id: Spanned<u64>,
    slug: String,
    #[serde(default)]
    members: Vec<Spanned<String>>,
    #[serde(default)]
    repos: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepoSpec {
    id: Spanned<u64>,
    owner: Spanned<String>,
    name: Spanned<String>,
    private: bool,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    renamed_from: Vec<Spanned<String>>,
    #[serde(default)]
    roles: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FaultStatusSpec {
    Code(u16),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultSpec {
    path: Spanned<String>,
    status: Spanned<FaultStatusSpec>,
    #[serde(default)]
    retry_after: Option<u64>,
    #[serde(default)]
    times: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoogleSpec {
    client_ids: Vec<String>,
    jwks: String,
    #[serde(default)]
    max_age: Option<u64>,
    #[serde(default)]
    require_authoritative: bool,
    #[serde(default)]
    hosted_domain: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppSpec {
    id: Spanned<String>,
    repo: Spanned<String>,
    repo_id: Spanned<u64>,
    branch: Spanned<String>,
    main_file: Spanned<String>,
    visibility: Visibility,
    deployed_by: Spanned<String>,
    #[serde(default)]
    viewers: Vec<Spanned<String>>,
}

// ---------- the world, validated ----------

/// A GitHub account in the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldUser {
    /// Numeric id.
    pub id: UserId,
    /// Login, as written in the world (matched without regard to case).
    pub login: String,
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldOrg {
    /// Numeric id.
    pub id: u64,
    /// Login, unique among users and organizations (without regard to case).
    pub login: String,
    /// Organization owners (admin on every repository of the org).
    pub owners: Vec<UserId>,
    /// Members, owners included.
    pub members: Vec<UserId>,
    /// The role every member gets on the org's repositories; `None` for `none`. Default `read`,
    /// as on GitHub.
    pub base_permission: Option<Role>,
    /// The organization's teams, in file order.
    pub teams: Vec<WorldTeam>,
}

/// A team of an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldTeam {
    /// Numeric id.
    pub id: u64,
    /// The team's slug (`acme/platform` is slug `platform`).
    pub slug: String,
    /// The team's members, by user id.
    pub members: Vec<UserId>,
    /// Repository name (in the org) to the role the team grants.
    pub repos: BTreeMap<String, RoleGrant>,
}

/// A repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldRepo {
    /// Numeric id.
    pub id: RepoId,
    /// Owner login (a user or an organization).
    pub owner: String,
    /// Numeric id of the owner.
    pub owner_id: u64,
    /// Whether the owner is an organization.
    pub owner_is_org: bool,
    /// Repository name, under its owner.
    pub name: String,
    /// Private or public.
    pub private: bool,
    /// Whether the repository is archived (roles stay as declared).
    pub archived: bool,
    /// Earlier names under the same owner (they answer 301).
    pub renamed_from: Vec<String>,
    /// Direct collaborators.
    pub roles: BTreeMap<UserId, RoleGrant>,
}

/// What a fault answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultStatus {
    /// This HTTP status (500, 502, 503: server errors; 403: primary rate limit; 429: secondary).
    Http(u16),
    /// The connection hangs until the client gives up.
    Timeout,
}

/// A fault: requests whose path matches fail, `times` times or always.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldFault {
    /// Glob over the request path: `*` within one segment, `**` across segments (zero or more,
    /// so `/repos/acme/x/**` matches `/repos/acme/x` too).
    pub path: String,
    /// What it answers.
    pub status: FaultStatus,
    /// Sent as `retry-after` (seconds).
    pub retry_after: Option<u64>,
    /// How many matching requests fail; `None`: all.
    pub times: Option<u64>,
}

/// Google's side of the world (used by viewer sign-in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldGoogle {
    /// Accepted audiences.
    pub client_ids: Vec<String>,
    /// The JWKS file, resolved against the world file's folder.
    pub jwks: PathBuf,
    /// `Cache-Control` max-age the mock JWKS endpoint sends.
    pub max_age: Option<u64>,
    /// The JWKS, as read from the file.
    pub jwks_json: String,
    /// Accept only addresses Google is authoritative for (`GoogleConfig::require_authoritative`).
    pub require_authoritative: bool,
    /// Accept only this Workspace domain (`GoogleConfig::hosted_domain`).
    pub hosted_domain: Option<String>,
}

/// An app the control plane deployed.
#[derive(Debug, Clone)]
pub struct WorldApp {
    /// The app record.
    pub app: App,
    /// The branch the app runs from.
    pub branch: String,
    /// Main file.
    pub main_file: String,
    /// The GitHub identity the app belongs to.
    pub deployed_by: UserId,
    /// Invited viewers, normalized.
    pub viewers: Vec<Email>,
}

/// A loaded, validated world. Cheap to clone.
#[derive(Debug, Clone)]
pub struct World {
    inner: Arc<WorldData>,
}

#[derive(Debug)]
struct WorldData {
    now: Option<Timestamp>,
    users: Vec<WorldUser>,
    orgs: Vec<WorldOrg>,
    repos: Vec<WorldRepo>,
    faults: Vec<WorldFault>,
    google: Option<WorldGoogle>,
    apps: Vec<WorldApp>,
    by_login: HashMap<String, usize>,
}

struct Checker<'t> {
    text: &'t str,
    file: Option<PathBuf>,
}

impl Checker<'_> {
    fn err(&self, span: Option<Range<usize>>, field: impl Into<String>, message: impl Into<String>) -> WorldError {
        WorldError {
            file: self.file.clone(),
            position: span.map(|s| position(self.text, s.start)),
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

/// A world's login names and the users they name, for looking users up while checking.
struct Logins<'w> {
    users: &'w [WorldUser],
    by_login: &'w HashMap<String, usize>,
}

impl Logins<'_> {
    /// The id of the user a login (any case) names.
    fn id(&self, ck: &Checker<'_>, s: &Spanned<String>, field: String) -> Result<UserId, WorldError> {
        self.by_login
            .get(&s.get_ref().to_ascii_lowercase())
            .map(|&i| self.users[i].id)
            .ok_or_else(|| ck.err(Some(s.span()), field, "an undeclared login: declare it under [[users]]"))
    }
}

/// The steps of [`World::validate`].
impl Checker<'_> {
    fn version(&self, wf: &WorldFile) -> Result<(), WorldError> {
        if *wf.version.get_ref() != 1 {
            return Err(self.err(
                Some(wf.version.span()),
                "version",
                format!("unsupported version {}: expected 1", wf.version.get_ref()),
            ));
        }
        Ok(())
    }

    fn now(&self, wf: &WorldFile) -> Result<Option<Timestamp>, WorldError> {
        Ok(match &wf.now {
            None => None,
            Some(s) => Some(timestamp(s.get_ref()).map_err(|m| self.err(Some(s.span()), "now", m))?),
        })
    }

    /// An id as GitHub issues them and the stores hold them: 1 to 2^63 - 1.
    fn store_id(&self, id: &Spanned<u64>, field: String) -> Result<u64, WorldError> {
        let v = *id.get_ref();
        if v == 0 || i64::try_from(v).is_err() {
            return Err(self.err(
                Some(id.span()),
                field,
                format!("id {v} is out of range: expected 1 to {}", i64::MAX),
            ));
        }
        Ok(v)
    }

    /// The users, and each login's index among them; every id goes into `ids`.
    fn users(
        &self,
        wf: &WorldFile,
        ids: &mut HashSet<u64>,
    ) -> Result<(Vec<WorldUser>, HashMap<String, usize>), WorldError> {
        let mut users = Vec::new();
        let mut by_login = HashMap::new();
        for (i, u) in wf.users.iter().enumerate() {
            let login = u.login.get_ref();
            if login.is_empty() || !login.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(self.err(
                    Some(u.login.span()),
                    format!("users[{i}].login"),
                    "expected a GitHub login: ASCII letters, digits, `-` and `_`",
                ));
            }
            if by_login.insert(login.to_ascii_lowercase(), users.len()).is_some() {
                return Err(self.err(Some(u.login.span()), format!("users[{i}].login"), "the login is declared twice"));
            }
            self.store_id(&u.id, format!("users[{i}].id"))?;
            if !ids.insert(*u.id.get_ref()) {
                return Err(self.err(
                    Some(u.id.span()),
                    format!("users[{i}].id"),
                    format!("id {} declared twice", u.id.get_ref()),
                ));
            }
            users.push(WorldUser { id: UserId(*u.id.get_ref()), login: login.clone() });
        }
        Ok((users, by_login))
    }

    /// The organizations with their teams, and each login's index among them.
    fn orgs(
        &self,
        wf: &WorldFile,
        logins: &Logins<'_>,
        ids: &mut HashSet<u64>,
    ) -> Result<(Vec<WorldOrg>, HashMap<String, usize>), WorldError> {
        let mut orgs = Vec::new();
        let mut org_by_login = HashMap::new();
        for (i, o) in wf.orgs.iter().enumerate() {
            let login = o.login.get_ref().clone();
            if logins.by_login.contains_key(&login.to_ascii_lowercase())
                || org_by_login.contains_key(&login.to_ascii_lowercase())
            {
                return Err(self.err(Some(o.login.span()), format!("orgs[{i}].login"), "the login is already taken"));
            }
            self.store_id(&o.id, format!("orgs[{i}].id"))?;
            if !ids.insert(*o.id.get_ref()) {
                return Err(self.err(
                    Some(o.id.span()),
                    format!("orgs[{i}].id"),
                    format!("id {} already used by another account", o.id.get_ref()),
                ));
            }
            let owners = o
                .owners
                .iter()
                .enumerate()
                .map(|(j, s)| logins.id(self, s, format!("orgs[{i}].owners[{j}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let mut members = o
                .members
                .iter()
                .enumerate()
                .map(|(j, s)| logins.id(self, s, format!("orgs[{i}].members[{j}]")))
                .collect::<Result<Vec<_>, _>>()?;
            for owner in &owners {
                if !members.contains(owner) {
                    members.push(*owner);
                }
            }
            let base_permission = match &o.base_permission {
                None => Some(Role::Read),
                Some(s) => match s.get_ref().as_str() {
                    "none" => None,
                    "read" | "write" | "admin" => Role::parse(s.get_ref()),
                    _ => {
                        return Err(self.err(
                            Some(s.span()),
                            format!("orgs[{i}].base_permission"),
                            "expected none, read, write or admin",
                        ));
                    }
                },
            };
            let mut teams = Vec::new();
            for (t, team) in o.teams.iter().enumerate() {
                let tm = team
                    .members
                    .iter()
                    .enumerate()
                    .map(|(j, s)| logins.id(self, s, format!("orgs[{i}].teams[{t}].members[{j}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut repos = BTreeMap::new();
                for (name, role) in &team.repos {
                    let grant = parse_world_role(role.get_ref())
                        .map_err(|m| self.err(Some(role.span()), format!("orgs[{i}].teams[{t}].repos.{name}"), m))?;
                    repos.insert(name.clone(), grant);
                }
                let id = self.store_id(&team.id, format!("orgs[{i}].teams[{t}].id"))?;
                teams.push(WorldTeam { id, slug: team.slug.clone(), members: tm, repos });
            }
            org_by_login.insert(login.to_ascii_lowercase(), orgs.len());
            orgs.push(WorldOrg { id: *o.id.get_ref(), login, owners, members, base_permission, teams });
        }
        Ok((orgs, org_by_login))
    }

    fn repos(
        &self,
        wf: &WorldFile,
        logins: &Logins<'_>,
        orgs: &[WorldOrg],
        org_by_login: &HashMap<String, usize>,
    ) -> Result<Vec<WorldRepo>, WorldError> {
        let mut repos: Vec<WorldRepo> = Vec::new();
        for (i, r) in wf.repos.iter().enumerate() {
            let owner = r.owner.get_ref();
            let (owner_id, owner_is_org) = if let Some(&o) = org_by_login.get(&owner.to_ascii_lowercase()) {
                (orgs[o].id, true)
            } else {
                (logins.id(self, &r.owner, format!("repos[{i}].owner"))?.0, false)
            };
            RepoCoords::new(owner, r.name.get_ref())
                .map_err(|_| self.err(Some(r.name.span()), format!("repos[{i}].name"), REPO_NAME_RULE))?;
            self.store_id(&r.id, format!("repos[{i}].id"))?;
            if repos.iter().any(|x| x.id.0 == *r.id.get_ref()) {
                return Err(self.err(
                    Some(r.id.span()),
                    format!("repos[{i}].id"),
                    format!("repository id {} declared twice", r.id.get_ref()),
                ));
            }
            let taken = |name: &str| {
                repos.iter().any(|x| {
                    x.owner.eq_ignore_ascii_case(owner)
                        && (x.name.eq_ignore_ascii_case(name)
                            || x.renamed_from.iter().any(|n| n.eq_ignore_ascii_case(name)))
                })
            };
            if taken(r.name.get_ref()) {
                return Err(self.err(
                    Some(r.name.span()),
                    format!("repos[{i}].name"),
                    "the repository is declared twice under its owner",
                ));
            }
            for (j, old) in r.renamed_from.iter().enumerate() {
                if taken(old.get_ref()) || old.get_ref().eq_ignore_ascii_case(r.name.get_ref()) {
                    return Err(self.err(
                        Some(old.span()),
                        format!("repos[{i}].renamed_from[{j}]"),
                        "the earlier name already names a repository of the same owner",
                    ));
                }
            }
            let mut roles = BTreeMap::new();
            for (login, role) in &r.roles {
                let id =
                    logins.by_login.get(&login.to_ascii_lowercase()).map(|&u| logins.users[u].id).ok_or_else(|| {
                        self.err(
                            Some(role.span()),
                            format!("repos[{i}].roles.{login}"),
                            "an undeclared login: declare it under [[users]]",
                        )
                    })?;
                let grant = parse_world_role(role.get_ref())
                    .map_err(|m| self.err(Some(role.span()), format!("repos[{i}].roles.{login}"), m))?;
                roles.insert(id, grant);
            }
            repos.push(WorldRepo {
                id: RepoId(*r.id.get_ref()),
                owner: owner.clone(),
                owner_id,
                owner_is_org,
                name: r.name.get_ref().clone(),
                private: r.private,
                archived: r.archived,
                renamed_from: r.renamed_from.iter().map(|s| s.get_ref().clone()).collect(),
                roles,
            });
        }
        Ok(repos)
    }

    /// Teams may only name repositories of their organization.
    fn team_repos(&self, wf: &WorldFile, orgs: &[WorldOrg], repos: &[WorldRepo]) -> Result<(), WorldError> {
        for (i, org) in orgs.iter().enumerate() {
            for (t, team) in org.teams.iter().enumerate() {
                for name in team.repos.keys() {
                    if !repos
                        .iter()
                        .any(|r| r.owner.eq_ignore_ascii_case(&org.login) && r.name.eq_ignore_ascii_case(name))
                    {
                        let span = wf.orgs[i].teams[t].repos.get(name).map(Spanned::span);
                        return Err(self.err(
                            span,
                            format!("orgs[{i}].teams[{t}].repos.{name}"),
                            "names no repository of the organization",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn faults(&self, wf: &WorldFile) -> Result<Vec<WorldFault>, WorldError> {
        let mut faults = Vec::new();
        for (i, f) in wf.faults.iter().enumerate() {
            if !f.path.get_ref().starts_with('/') {
                return Err(self.err(Some(f.path.span()), format!("faults[{i}].path"), "a fault path starts with `/`"));
            }
            let status = match f.status.get_ref() {
                FaultStatusSpec::Code(c @ (500 | 502 | 503 | 403 | 429)) => FaultStatus::Http(*c),
                FaultStatusSpec::Word(w) if w == "timeout" => FaultStatus::Timeout,
                _ => {
                    return Err(self.err(
                        Some(f.status.span()),
                        format!("faults[{i}].status"),
                        "expected 500, 502, 503, 403, 429 or \"timeout\"",
                    ));
                }
            };
            faults.push(WorldFault {
                path: f.path.get_ref().clone(),
                status,
                retry_after: f.retry_after,
                times: f.times,
            });
        }
        Ok(faults)
    }

    fn google(&self, wf: &WorldFile, dir: &Path) -> Result<Option<WorldGoogle>, WorldError> {
        Ok(match &wf.google {
            None => None,
            Some(g) => {
                let jwks = dir.join(&g.jwks);
                let fail = |m: String| WorldError {
                    file: self.file.clone(),
                    position: None,
                    field: Some("google.jwks".into()),
                    message: m,
                };
                let text = read_bounded(&jwks, MAX_JWKS_FILE)
                    .map_err(|e| fail(format!("cannot read `{}`: {e}", jwks.display())))?;
                serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(&text).map_err(|e| {
                    fail(format!("`{}` is not a JWKS: {}", jwks.display(), without_values(&e.to_string())))
                })?;
                Some(WorldGoogle {
                    client_ids: g.client_ids.clone(),
                    jwks,
                    max_age: g.max_age,
                    jwks_json: text,
                    require_authoritative: g.require_authoritative,
                    hosted_domain: g.hosted_domain.clone(),
                })
            }
        })
    }

    fn apps(&self, wf: &WorldFile, logins: &Logins<'_>) -> Result<Vec<WorldApp>, WorldError> {
        let mut apps: Vec<WorldApp> = Vec::new();
        for (i, a) in wf.apps.iter().enumerate() {
            let repo_id = self.store_id(&a.repo_id, format!("apps[{i}].repo_id"))?;
            let coords: RepoCoords = a.repo.get_ref().parse().map_err(|_: crate::core::ids::InvalidRepoCoords| {
                self.err(Some(a.repo.span()), format!("apps[{i}].repo"), "expected `owner/name`, each 1 to 100 ASCII letters, digits, `-`, `_` and `.`, and neither `.` nor `..`")
            })?;
            let id = a.id.get_ref();
            // A world's apps are deployments: the same rules hold (the value is not repeated).
            if !crate::core::deployment::valid_app_id(id) {
                return Err(self.err(
                    Some(a.id.span()),
                    format!("apps[{i}].id"),
                    format!("expected {}", crate::core::deployment::APP_ID_RULE),
                ));
            }
            if apps.iter().any(|x| x.app.id().0 == *id) {
                return Err(self.err(Some(a.id.span()), format!("apps[{i}].id"), "the app id is declared twice"));
            }
            if !crate::core::deployment::valid_branch(a.branch.get_ref()) {
                return Err(self.err(
                    Some(a.branch.span()),
                    format!("apps[{i}].branch"),
                    format!("expected {}", crate::core::deployment::BRANCH_RULE),
                ));
            }
            if !crate::core::deployment::valid_main_file(a.main_file.get_ref()) {
                return Err(self.err(
                    Some(a.main_file.span()),
                    format!("apps[{i}].main_file"),
                    format!("expected {}", crate::core::deployment::MAIN_FILE_RULE),
                ));
            }
            let deployed_by = logins.id(self, &a.deployed_by, format!("apps[{i}].deployed_by"))?;
            let mut viewers: Vec<Email> = Vec::new();
            for (j, v) in a.viewers.iter().enumerate() {
                let email = Email::parse(v.get_ref()).map_err(|e| {
                    self.err(Some(v.span()), format!("apps[{i}].viewers[{j}]"), format!("invalid email: {e}"))
                })?;
                if !viewers.contains(&email) {
                    viewers.push(email);
                }
            }
            apps.push(WorldApp {
                app: App::new(AppId(id.clone()), coords, RepoId(repo_id), a.visibility),
                branch: a.branch.get_ref().clone(),
                main_file: a.main_file.get_ref().clone(),
                deployed_by,
                viewers,
            });
        }
        Ok(apps)
    }
}

/// Parses a world role: a standard role or `custom:<name>:<base>`.
fn parse_world_role(s: &str) -> Result<RoleGrant, String> {
    if let Some(rest) = s.strip_prefix("custom:") {
        let (name, base) =
            rest.rsplit_once(':').ok_or_else(|| "a custom role needs the form `custom:<name>:<base>`".to_owned())?;
        let base = match base {
            "read" | "triage" | "write" | "maintain" => Role::parse(base),
            _ => None,
        }
        .ok_or_else(|| "a custom role's base must be read, triage, write or maintain".to_owned())?;
        if name.is_empty() || Role::parse(name).is_some() {
            return Err("a custom role's name must be non-empty and not a standard role".to_owned());
        }
        return Ok(RoleGrant { role: base, name: RoleName::Custom(name.into()) });
    }
    match s {
        "read" | "triage" | "write" | "maintain" | "admin" => {
            Role::parse(s).map(RoleGrant::standard).ok_or_else(|| "unknown role".to_owned())
        }
        _ => Err("unknown role: expected admin, maintain, write, triage, read or custom:<name>:<base>".to_owned()),
    }
}

/// The largest world file read (8 MiB).
pub const MAX_WORLD_FILE: u64 = 8 << 20;

/// The largest JWKS file a world names (1 MiB).
pub const MAX_JWKS_FILE: u64 = 1 << 20;

/// A file's text, refused (`InvalidData`) if it is longer than `limit` bytes: read no further
/// than that, so that `/dev/zero` or a huge file fails fast.
fn read_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(std::fs::File::open(path)?, limit + 1), &mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {limit} bytes")));
    }
    Ok(text)
}

impl World {
    /// Loads a world file (at most [`MAX_WORLD_FILE`] bytes); relative paths inside it resolve against its folder.
    pub fn load(path: impl AsRef<Path>) -> Result<World, WorldError> {
        let path = path.as_ref();
        let text = read_bounded(path, MAX_WORLD_FILE).map_err(|e| WorldError {
            file: Some(path.to_owned()),
            position: None,
            field: None,
            message: format!("cannot read: {e}"),
        })?;
        let dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Self::parse(&text, &dir, Some(path.to_owned()))
    }

    /// Parses a world from TOML text; relative paths resolve against `dir`.
    pub fn from_toml_str(text: &str, dir: impl AsRef<Path>) -> Result<World, WorldError> {
        Self::parse(text, dir.as_ref(), None)
    }

    fn parse(text: &str, dir: &Path, file: Option<PathBuf>) -> Result<World, WorldError> {
        let wf: WorldFile = from_toml(text, file.as_deref())?;
        Self::validate(&Checker { text, file }, wf, dir)
    }

    /// Checks the parsed file in steps, each refusing with the line and field of what is wrong:
    /// the version and clock, the accounts (users, then organizations and their teams), the
    /// repositories, the teams' repositories, the faults, Google, and the apps.
    fn validate(ck: &Checker<'_>, wf: WorldFile, dir: &Path) -> Result<World, WorldError> {
        ck.version(&wf)?;
        let now = ck.now(&wf)?;
        let mut ids = HashSet::new();
        let (users, by_login) = ck.users(&wf, &mut ids)?;
        let logins = Logins { users: &users, by_login: &by_login };
        let (orgs, org_by_login) = ck.orgs(&wf, &logins, &mut ids)?;
        let repos = ck.repos(&wf, &logins, &orgs, &org_by_login)?;
        ck.team_repos(&wf, &orgs, &repos)?;
        let faults = ck.faults(&wf)?;
        let google = ck.google(&wf, dir)?;
        let apps = ck.apps(&wf, &logins)?;
        Ok(World { inner: Arc::new(WorldData { now, users, orgs, repos, faults, google, apps, by_login }) })
    }

    /// The world's fixed clock, if it sets `now`.
    pub fn now(&self) -> Option<Timestamp> {
        self.inner.now
    }

    /// Every declared user.
    pub fn users(&self) -> &[WorldUser] {
        &self.inner.users
    }

    /// The user with this login (case-insensitive), as a [`GithubUser`].
    pub fn user(&self, login: &str) -> Option<GithubUser> {
        self.inner.by_login.get(&login.to_ascii_lowercase()).map(|&i| {
            let u = &self.inner.users[i];
            GithubUser::new(u.id, u.login.clone())
        })
    }

    /// The world's organizations, in file order.
    pub fn orgs(&self) -> &[WorldOrg] {
        &self.inner.orgs
    }

    /// The world's repositories, in file order.
    pub fn repos(&self) -> &[WorldRepo] {
        &self.inner.repos
    }

    /// The failures the mock GitHub injects, in file order (the first that matches wins).
    pub fn faults(&self) -> &[WorldFault] {
        &self.inner.faults
    }

    /// Google's side, if the world has one.
    pub fn google(&self) -> Option<&WorldGoogle> {
        self.inner.google.as_ref()
    }

    /// Deployed apps.
    pub fn apps(&self) -> &[WorldApp] {
        &self.inner.apps
    }

    /// The world's apps as store records, with their viewers: what a store is seeded with.
    pub fn app_records(&self) -> Vec<(AppRecord, Vec<Email>)> {
        self.inner
            .apps
            .iter()
            .map(|a| {
                let record = AppRecord {
                    id: a.app.id().clone(),
                    owner: a.app.coords().owner().to_owned(),
                    repo: a.app.coords().name().to_owned(),
                    repo_id: a.app.repo_id(),
                    branch: a.branch.clone(),
                    main_file: a.main_file.clone(),
                    visibility: a.app.visibility(),
                    deployed_by: a.deployed_by,
                };
                (record, a.viewers.clone())
            })
            .collect()
    }

    /// Nobody signed in, then every declared user: the principals `explain` covers.
    pub fn principals(&self) -> Vec<crate::core::principal::Principal> {
        use crate::core::principal::Principal;
        std::iter::once(Principal::Anonymous)
            .chain(self.inner.users.iter().map(|u| Principal::github(GithubUser::new(u.id, u.login.clone()))))
            .collect()
    }

    /// The app with this id.
    pub fn app(&self, id: &str) -> Option<App> {
        self.inner.apps.iter().find(|a| a.app.id().0 == id).map(|a| a.app.clone())
    }

    /// The effective role of `user` on `repo`, as the mock GitHub computes it: the highest of
    /// ownership, org ownership, the org's base permission, the user's teams and the direct role.
    pub fn effective_role(&self, user: UserId, repo: &WorldRepo) -> Option<RoleGrant> {
        let mut best: Option<RoleGrant> = None;
        let mut offer = |g: RoleGrant| {
            if best.as_ref().is_none_or(|b| g.role >= b.role) {
                best = Some(g);
            }
        };
        if !repo.owner_is_org {
            if repo.owner_id == user.0 {
                offer(RoleGrant::standard(Role::Admin));
            }
        } else if let Some(org) = self.inner.orgs.iter().find(|o| o.id == repo.owner_id) {
            if org.members.contains(&user) {
                if let Some(base) = org.base_permission {
                    offer(RoleGrant::standard(base));
                }
            }
            for team in org.teams.iter().filter(|t| t.members.contains(&user)) {
                if let Some((_, g)) = team.repos.iter().find(|(n, _)| n.eq_ignore_ascii_case(&repo.name)) {
                    offer(g.clone());
                }
            }
            if org.owners.contains(&user) {
                offer(RoleGrant::standard(Role::Admin));
            }
        }
        if let Some(g) = repo.roles.get(&user) {
            offer(g.clone());
        }
        best
    }
}
