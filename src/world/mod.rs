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
mod validate;

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
use validate::{Checker, Logins};

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
    #[serde(default)]
    installations: Vec<InstallationSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallationSpec {
    id: Spanned<u64>,
    account: Spanned<String>,
    #[serde(default)]
    repositories: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    suspended: bool,
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

/// An installation of the GitHub App on one account (spec/world.md, "Installations").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldInstallation {
    /// Numeric id.
    pub id: u64,
    /// The login of the user or organization it is installed on.
    pub account: String,
    /// The account's numeric id.
    pub account_id: u64,
    /// Whether the account is an organization.
    pub account_is_org: bool,
    /// The selected repositories' ids; `None`: every repository of the account.
    pub repositories: Option<Vec<RepoId>>,
    /// Whether it is suspended (its tokens answer 403).
    pub suspended: bool,
}

impl WorldInstallation {
    /// Whether the installation reaches `repo`.
    pub fn covers(&self, repo: &WorldRepo) -> bool {
        repo.owner_id == self.account_id
            && repo.owner_is_org == self.account_is_org
            && self.repositories.as_ref().is_none_or(|ids| ids.contains(&repo.id))
    }
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
    installations: Vec<WorldInstallation>,
    by_login: HashMap<String, usize>,
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
    /// Whether `other` is this very world (a clone of it), not merely an equal one.
    pub(crate) fn is(&self, other: &World) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

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
        let installations = ck.installations(&wf, &users, &orgs, &repos)?;
        let data = WorldData { now, users, orgs, repos, faults, google, apps, installations, by_login };
        Ok(World { inner: Arc::new(data) })
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

    /// The GitHub App's installations, in file order: none means one installation over every
    /// repository (spec/world.md, "Installations").
    pub fn installations(&self) -> &[WorldInstallation] {
        &self.inner.installations
    }

    /// The installation that covers `repo`, if the world declares installations.
    pub fn installation_of(&self, repo: &WorldRepo) -> Option<&WorldInstallation> {
        self.inner.installations.iter().find(|i| i.covers(repo))
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
