//! The policy: which repository role each capability needs. Pure; no I/O, no clock.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A repository role, ordered from least to most privileged. A custom repository role acts as
/// its base role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read: clone and pull.
    Read,
    /// Triage: read, and manage issues and pull requests.
    Triage,
    /// Write (push).
    Write,
    /// Maintain: write, and manage the repository without destructive actions.
    Maintain,
    /// Admin (repository owners and organization owners included).
    Admin,
}

impl Role {
    /// All roles, least privileged first.
    pub const ALL: [Role; 5] = [Role::Read, Role::Triage, Role::Write, Role::Maintain, Role::Admin];

    /// The role's name as GitHub writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Triage => "triage",
            Role::Write => "write",
            Role::Maintain => "maintain",
            Role::Admin => "admin",
        }
    }

    /// Parses GitHub's role names. Role names are open strings on GitHub's side: anything
    /// unknown (`none`, an empty string, a name GitHub adds later) is no role.
    ///
    /// ```
    /// use ghauthz::Role;
    /// assert_eq!(Role::parse("maintain"), Some(Role::Maintain));
    /// assert_eq!(Role::parse("none"), None);
    /// assert_eq!(Role::parse("superuser"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "read" | "pull" => Role::Read,
            "triage" => Role::Triage,
            "write" | "push" => Role::Write,
            "maintain" => Role::Maintain,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of the role GitHub reported: a standard role, or a custom role's own name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoleName {
    /// One of the five standard roles.
    Standard(Role),
    /// A custom repository role, by its name.
    Custom(Arc<str>),
}

impl RoleName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        match self {
            RoleName::Standard(r) => r.as_str(),
            RoleName::Custom(name) => name,
        }
    }
}

impl Serialize for RoleName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A user's effective role on a repository: the role that decides, and the name GitHub gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleGrant {
    /// The role that decides (a custom role's base).
    pub role: Role,
    /// The role's name as GitHub reported it.
    pub name: RoleName,
}

impl RoleGrant {
    /// A standard role.
    pub fn standard(role: Role) -> Self {
        Self { role, name: RoleName::Standard(role) }
    }
}

/// What may be done to an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// Open the app.
    View,
    /// Use the admin console: settings, secrets, reboot, logs, sharing.
    Edit,
    /// Deploy the app from its repository.
    Deploy,
    /// Delete the app (its viewers, links and sessions go with it).
    Delete,
}

impl Capability {
    /// All capabilities.
    pub const ALL: [Capability; 4] = [Capability::View, Capability::Edit, Capability::Deploy, Capability::Delete];

    /// The capability's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::View => "view",
            Capability::Edit => "edit",
            Capability::Deploy => "deploy",
            Capability::Delete => "delete",
        }
    }

    /// Whether this capability changes what runs, so that its facts must be recent
    /// (see [`CacheConfig::strict_max_age`](crate::CacheConfig::strict_max_age)).
    pub fn is_destructive(self) -> bool {
        matches!(self, Capability::Deploy | Capability::Delete)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Capability {
    type Err = UnknownCapability;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "view" => Ok(Capability::View),
            "edit" => Ok(Capability::Edit),
            "deploy" => Ok(Capability::Deploy),
            "delete" => Ok(Capability::Delete),
            _ => Err(UnknownCapability(s.to_owned())),
        }
    }
}

/// A capability name that is not `view`, `edit`, `deploy` or `delete`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability `{0}`: expected view, edit, deploy or delete")]
pub struct UnknownCapability(String);

/// Who may open an app without a role or an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Anyone, signed in or not.
    Public,
    /// Developers with a role, and invited viewers.
    Private,
}

/// A visibility other than `public` or `private` was named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown visibility `{0}`: expected public or private")]
pub struct UnknownVisibility(String);

impl std::str::FromStr for Visibility {
    type Err = UnknownVisibility;

    /// ```
    /// use ghauthz::Visibility;
    /// assert_eq!("public".parse::<Visibility>().unwrap(), Visibility::Public);
    /// assert!("secret".parse::<Visibility>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Visibility::Public, Visibility::Private]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownVisibility(s.to_owned()))
    }
}

impl Visibility {
    /// `public` or `private`.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }
}

/// The least repository role each capability needs.
///
/// The default is the table in the README: `write` views private apps and edits, `admin` deploys and
/// deletes. Loads from TOML (or any serde format); fields left out keep their default, unknown
/// fields and unknown roles are refused.
///
/// ```
/// use ghauthz::{Capability, Policy, Role};
/// let policy: Policy = toml::from_str(r#"deploy = "maintain""#).unwrap();
/// assert_eq!(policy.required(Capability::Deploy), Role::Maintain);
/// assert_eq!(policy.required(Capability::Delete), Role::Admin);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Policy {
    /// Least role that opens a private app (public apps are open to everyone).
    pub(crate) view: Role,
    /// Least role that edits.
    pub(crate) edit: Role,
    /// Least role that deploys.
    pub(crate) deploy: Role,
    /// Least role that deletes.
    pub(crate) delete: Role,
    /// Least role that manages an app's invited viewers; unset, it is whatever `edit` needs
    /// (sharing is part of the admin console).
    pub(crate) sharing: Option<Role>,
}

impl Default for Policy {
    fn default() -> Self {
        Self { view: Role::Write, edit: Role::Write, deploy: Role::Admin, delete: Role::Admin, sharing: None }
    }
}

/// What a check requires: the least role, whether public apps are open to it, and whether its
/// facts must be recent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Need {
    pub(crate) required: Role,
    /// Public apps are open to anyone for it (it is `view`).
    pub(crate) open_on_public: bool,
    pub(crate) strict: bool,
    /// The capability asked for; `None` for managing viewers (the `sharing` role).
    pub(crate) capability: Option<Capability>,
}

impl Policy {
    /// The policy with `cap` moved to `role`.
    ///
    /// ```
    /// use ghauthz::{Capability, Policy, Role};
    /// let policy = Policy::default().with(Capability::Deploy, Role::Maintain);
    /// assert_eq!(policy.required(Capability::Deploy), Role::Maintain);
    /// ```
    pub fn with(mut self, cap: Capability, role: Role) -> Self {
        *match cap {
            Capability::View => &mut self.view,
            Capability::Edit => &mut self.edit,
            Capability::Deploy => &mut self.deploy,
            Capability::Delete => &mut self.delete,
        } = role;
        self
    }

    /// The policy with managing invited viewers moved to `role` (by default it follows `edit`).
    pub fn with_sharing(mut self, role: Role) -> Self {
        self.sharing = Some(role);
        self
    }

    /// The least role that manages an app's invited viewers.
    pub fn sharing(&self) -> Role {
        self.sharing.unwrap_or(self.edit)
    }

    /// The lowest role the policy grants anything to: a user below it may do nothing a GitHub
    /// role decides.
    pub(crate) fn least_role(&self) -> Role {
        [self.view, self.edit, self.deploy, self.delete, self.sharing()].into_iter().min().unwrap_or(Role::Admin)
    }

    /// The least role `cap` needs.
    pub fn required(&self, cap: Capability) -> Role {
        match cap {
            Capability::View => self.view,
            Capability::Edit => self.edit,
            Capability::Deploy => self.deploy,
            Capability::Delete => self.delete,
        }
    }

    #[inline]
    pub(crate) fn need(&self, cap: Capability) -> Need {
        Need {
            required: self.required(cap),
            open_on_public: cap == Capability::View,
            strict: cap.is_destructive(),
            capability: Some(cap),
        }
    }

    pub(crate) fn sharing_need(&self) -> Need {
        Need { required: self.sharing(), open_on_public: false, strict: false, capability: None }
    }
}
