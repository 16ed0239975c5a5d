//! Identities: numeric GitHub ids, repository coordinates, apps.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::core::policy::Visibility;

/// A GitHub user id. Logins are renamed and reused; the id is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub u64);

/// A GitHub repository id, stable across renames and transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RepoId(pub u64);

/// The id of a GitHub account that owns repositories (a user or an organization).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OwnerId(pub u64);

/// One invitation of one address to one app. Every invitation gets a new id, never reused: a
/// link or a session carries the id of the grant it came from, and opens nothing once that grant
/// has ended, even if the same address is invited again (that is another grant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GrantId(pub u64);

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A GitHub user as the control plane knows them: the stable id, and the login used to address
/// GitHub's per-login routes.
///
/// GitHub answers permission questions by login; the answer names the user id it is about, and a
/// check fails closed when that id is not [`GithubUser::id`] (the login was renamed and reused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubUser {
    /// The stable numeric id.
    pub id: UserId,
    /// The current login.
    pub login: String,
}

impl GithubUser {
    /// A user from their id and current login.
    ///
    /// ```
    /// use ghauthz::{GithubUser, UserId};
    /// let alice = GithubUser::new(UserId(1), "alice");
    /// assert_eq!(alice.login, "alice");
    /// ```
    pub fn new(id: UserId, login: impl Into<String>) -> Self {
        Self { id, login: login.into() }
    }
}

/// Where a repository lives: `owner/name`. Compared case-insensitively, as GitHub does.
#[derive(Debug, Clone, Eq)]
pub struct RepoCoords {
    owner: String,
    name: String,
}

/// Why `owner/name` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid repository `{input}`: expected `owner/name` with letters, digits, `-`, `_` or `.`")]
pub struct InvalidRepoCoords {
    input: String,
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl RepoCoords {
    /// Coordinates from an owner login and a repository name.
    ///
    /// ```
    /// use ghauthz::RepoCoords;
    /// let c = RepoCoords::new("acme", "dashboard").unwrap();
    /// assert_eq!(c.to_string(), "acme/dashboard");
    /// assert!(RepoCoords::new("acme", "../x").is_err());
    /// ```
    pub fn new(owner: &str, name: &str) -> Result<Self, InvalidRepoCoords> {
        if valid_segment(owner) && valid_segment(name) {
            Ok(Self { owner: owner.to_owned(), name: name.to_owned() })
        } else {
            Err(InvalidRepoCoords { input: format!("{owner}/{name}") })
        }
    }

    /// The owner login.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The repository name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A fingerprint of the lowercased coordinates, used to tie a cached fact to the coordinates
    /// it was verified at: SipHash under keys drawn at random once per process, so that nobody
    /// can choose a repository name whose fingerprint equals another's.
    pub(crate) fn fingerprint(&self) -> u64 {
        static KEYS: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
        KEYS.get_or_init(std::hash::RandomState::new).hash_one(self)
    }
}

impl std::str::FromStr for RepoCoords {
    type Err = InvalidRepoCoords;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((owner, name)) => Self::new(owner, name),
            None => Err(InvalidRepoCoords { input: s.to_owned() }),
        }
    }
}

impl PartialEq for RepoCoords {
    fn eq(&self, other: &Self) -> bool {
        self.owner.eq_ignore_ascii_case(&other.owner) && self.name.eq_ignore_ascii_case(&other.name)
    }
}

impl Hash for RepoCoords {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.owner.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
        state.write_u8(b'/');
        for b in self.name.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

impl fmt::Display for RepoCoords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// The control plane's id of a deployed app.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AppId(pub String);

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A deployed app, as the control plane recorded it at deploy time.
///
/// Cheap to clone. Build it once per app and reuse it: the coordinates' fingerprint is computed
/// here, not on every check.
#[derive(Debug, Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

#[derive(Debug)]
struct AppInner {
    id: AppId,
    coords: RepoCoords,
    coords_fp: u64,
    repo_id: RepoId,
    visibility: Visibility,
}

impl App {
    /// An app deployed from `coords`, whose repository had id `repo_id` at deploy time.
    ///
    /// ```
    /// use ghauthz::{App, AppId, RepoId, Visibility};
    /// let app = App::new(AppId("dash".into()), "acme/dashboard".parse().unwrap(), RepoId(101), Visibility::Private);
    /// assert_eq!(app.repo_id(), RepoId(101));
    /// ```
    pub fn new(id: AppId, coords: RepoCoords, repo_id: RepoId, visibility: Visibility) -> Self {
        let coords_fp = coords.fingerprint();
        Self { inner: Arc::new(AppInner { id, coords, coords_fp, repo_id, visibility }) }
    }

    /// The app's id.
    pub fn id(&self) -> &AppId {
        &self.inner.id
    }

    /// The repository coordinates recorded at deploy time.
    pub fn coords(&self) -> &RepoCoords {
        &self.inner.coords
    }

    /// The repository id recorded at deploy time.
    pub fn repo_id(&self) -> RepoId {
        self.inner.repo_id
    }

    /// Who may view the app without a role or an invitation.
    pub fn visibility(&self) -> Visibility {
        self.inner.visibility
    }

    pub(crate) fn coords_fingerprint(&self) -> u64 {
        self.inner.coords_fp
    }

    /// What a GitHub user's check needs of the app.
    #[inline]
    pub(crate) fn view(&self) -> AppView {
        AppView { repo_id: self.repo_id(), visibility: self.visibility(), coords_fp: self.coords_fingerprint() }
    }
}

/// What a GitHub user's check needs of an app: the repository recorded at deploy time, the
/// coordinates' fingerprint and the visibility. Small enough to be copied out of a cache line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AppView {
    pub(crate) repo_id: RepoId,
    pub(crate) visibility: Visibility,
    pub(crate) coords_fp: u64,
}

/// A support window's id: never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SupportId(pub u64);

impl fmt::Display for SupportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coords(s: &str) -> RepoCoords {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn a_fingerprint_ignores_case_and_tells_coordinates_apart() {
        assert_eq!(coords("Acme/Dashboard").fingerprint(), coords("acme/dashboard").fingerprint());
        assert_ne!(coords("acme/dashboard").fingerprint(), coords("acme/dashboard2").fingerprint());
        assert_ne!(coords("acme/dashboard").fingerprint(), coords("acmed/ashboard").fingerprint());
    }

    #[test]
    fn a_fingerprint_is_keyed_not_a_public_function_of_the_name() {
        // An unkeyed hash (FxHash, or SipHash under fixed keys) lets anyone compute fingerprints
        // offline and search for a name that collides with another's.
        let c = coords("acme/dashboard");
        let unkeyed = [
            std::hash::BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(&c),
            std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(&c),
        ];
        assert!(!unkeyed.contains(&c.fingerprint()));
    }
}
