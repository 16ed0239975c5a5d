//! GitHub's JSON, as it is sent: roles are open strings.

use serde::Deserialize;

use crate::core::policy::{Role, RoleGrant, RoleName};

#[derive(Debug, Deserialize)]
pub(super) struct WirePermission {
    pub(super) permission: String,
    #[serde(default)]
    pub(super) role_name: Option<String>,
    #[serde(default)]
    pub(super) user: Option<WireAccount>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireAccount {
    pub(super) id: u64,
    /// On the permission route's `user` (and a roster's entries): the base-role hash on the
    /// repository.
    #[serde(default)]
    pub(super) permissions: Option<WirePermissions>,
}

/// One entry of a roster (`GET /repos/{owner}/{repo}/collaborators`).
#[derive(Debug, Deserialize)]
pub(super) struct WireCollaborator {
    pub(super) id: u64,
    #[serde(default)]
    pub(super) permissions: Option<WirePermissions>,
    #[serde(default)]
    pub(super) role_name: Option<String>,
}

impl WireCollaborator {
    /// The entry's role: the highest its `permissions` hash grants (exact), named by its
    /// `role_name` where that names a custom role; none without a hash.
    pub(super) fn grant(&self) -> Option<RoleGrant> {
        let role = self.permissions.as_ref()?.grant()?.role;
        Some(match self.role_name.as_deref().filter(|n| !n.is_empty() && Role::parse(n).is_none()) {
            Some(custom) if !matches!(custom, "pull" | "push") => {
                RoleGrant { role, name: RoleName::Custom(custom.into()) }
            }
            _ => RoleGrant::standard(role),
        })
    }
}

/// One repository of `GET /user/repos`.
#[derive(Debug, Deserialize)]
pub(super) struct WireListedRepo {
    pub(super) id: u64,
    pub(super) full_name: String,
    pub(super) owner: WireAccount,
    #[serde(default)]
    pub(super) permissions: Option<WirePermissions>,
}

/// One page of `GET /installation/repositories`.
#[derive(Debug, Deserialize)]
pub(super) struct WireInstallationRepos {
    /// How many repositories the installation can see, over all pages.
    #[serde(default)]
    pub(super) total_count: Option<u64>,
    pub(super) repositories: Vec<WireListedRepo>,
}

/// `GET /users/{login}`.
#[derive(Debug, Deserialize)]
pub(super) struct WireUser {
    pub(super) id: u64,
    pub(super) login: String,
    #[serde(rename = "type", default)]
    pub(super) kind: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireRepo {
    pub(super) id: u64,
    pub(super) owner: WireAccount,
    #[serde(default)]
    pub(super) permissions: Option<WirePermissions>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WirePermissions {
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    maintain: bool,
    #[serde(default)]
    push: bool,
    #[serde(default)]
    triage: bool,
    #[serde(default)]
    pull: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireMessage {
    #[serde(default)]
    pub(super) message: String,
}

/// Legacy `permission` values: `admin`, `write` (maintain and write), `read` (triage and read).
fn legacy(role: Role) -> Role {
    match role {
        Role::Maintain => Role::Write,
        Role::Triage => Role::Read,
        r => r,
    }
}

/// The effective role from the collaborator-permission route. `permission` is the legacy base
/// role; `role_name` refines it (`maintain`, `triage`) or names a custom role, which acts as the
/// base. Anything unknown is no role; an inconsistent pair takes the lower role (fail closed).
pub(super) fn grant_from_permission(permission: &str, role_name: Option<&str>) -> Option<RoleGrant> {
    let base = match permission {
        "admin" | "write" | "read" => Role::parse(permission)?,
        _ => return None,
    };
    match role_name.filter(|n| !n.is_empty()) {
        None => Some(RoleGrant::standard(base)),
        Some(name) => match Role::parse(name).filter(|_| !matches!(name, "pull" | "push")) {
            Some(r) if legacy(r) == base => Some(RoleGrant::standard(r)),
            Some(r) => Some(RoleGrant::standard(r.min(base))),
            None => Some(RoleGrant { role: base, name: RoleName::Custom(name.into()) }),
        },
    }
}

impl WirePermission {
    /// The user's role from the permission route. Where GitHub sends the `user`'s `permissions`
    /// hash, the role is read from it, which is exact (a custom role based on `maintain` is
    /// `maintain`, one based on `triage` is `triage`; the legacy `permission` says `write` and
    /// `read` for them), named by `role_name`; otherwise from the legacy `permission`, refined by
    /// `role_name` ([`grant_from_permission`]). Where the hash and `permission` disagree on the
    /// base role, the lower of the two is taken (fail closed).
    pub(super) fn grant(&self) -> Option<RoleGrant> {
        let legacy_grant = grant_from_permission(&self.permission, self.role_name.as_deref());
        let Some(hash) = self.user.as_ref().and_then(|u| u.permissions.as_ref()) else { return legacy_grant };
        let (exact, named) = (hash.grant()?.role, legacy_grant?);
        let role = if legacy(exact) == legacy(named.role) { exact } else { exact.min(named.role) };
        Some(match named.name {
            RoleName::Custom(name) => RoleGrant { role, name: RoleName::Custom(name) },
            RoleName::Standard(_) => RoleGrant::standard(role),
        })
    }
}

impl WirePermissions {
    /// The highest role the `permissions` object grants.
    pub(super) fn grant(&self) -> Option<RoleGrant> {
        let role = if self.admin {
            Role::Admin
        } else if self.maintain {
            Role::Maintain
        } else if self.push {
            Role::Write
        } else if self.triage {
            Role::Triage
        } else if self.pull {
            Role::Read
        } else {
            return None;
        };
        Some(RoleGrant::standard(role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_open_strings() {
        assert_eq!(grant_from_permission("none", Some("")), None);
        assert_eq!(grant_from_permission("owner", None), None);
        assert_eq!(grant_from_permission("write", Some("maintain")).unwrap().role, Role::Maintain);
        assert_eq!(grant_from_permission("read", Some("triage")).unwrap().role, Role::Triage);
        assert_eq!(grant_from_permission("read", None).unwrap().role, Role::Read);
        let custom = grant_from_permission("write", Some("release-manager")).unwrap();
        assert_eq!(custom.role, Role::Write);
        assert_eq!(custom.name.as_str(), "release-manager");
    }

    #[test]
    fn inconsistent_pair_takes_the_lower_role() {
        assert_eq!(grant_from_permission("read", Some("admin")).unwrap().role, Role::Read);
    }

    #[test]
    fn decodes_documented_shapes() {
        let p: WirePermission = serde_json::from_str(
            r#"{"permission":"write","role_name":"write","user":{"login":"bob","id":2,"type":"User","site_admin":false}}"#,
        )
        .unwrap();
        assert_eq!(grant_from_permission(&p.permission, p.role_name.as_deref()).unwrap().role, Role::Write);
        let r: WireRepo = serde_json::from_str(
            r#"{"id":1,"owner":{"login":"a","id":9},"permissions":{"admin":false,"maintain":false,"push":true,"triage":true,"pull":true}}"#,
        )
        .unwrap();
        assert_eq!(r.permissions.unwrap().grant().unwrap().role, Role::Write);
    }

    #[test]
    fn the_permissions_hash_makes_a_custom_role_exact() {
        let answer = |permission: &str, role_name: &str, hash: &str| -> WirePermission {
            serde_json::from_str(&format!(
                r#"{{"permission":"{permission}","role_name":"{role_name}","user":{{"login":"t","id":10,"permissions":{hash}}}}}"#
            ))
            .unwrap()
        };
        let maintain = r#"{"admin":false,"maintain":true,"push":true,"triage":true,"pull":true}"#;
        let triage = r#"{"admin":false,"maintain":false,"push":false,"triage":true,"pull":true}"#;
        let none = r#"{"admin":false,"maintain":false,"push":false,"triage":false,"pull":false}"#;
        let g = answer("write", "deployer", maintain).grant().unwrap();
        assert_eq!((g.role, g.name.as_str()), (Role::Maintain, "deployer"), "custom on maintain");
        let g = answer("read", "labeler", triage).grant().unwrap();
        assert_eq!((g.role, g.name.as_str()), (Role::Triage, "labeler"), "custom on triage");
        assert_eq!(answer("write", "maintain", maintain).grant().unwrap().role, Role::Maintain);
        assert_eq!(answer("none", "", none).grant(), None);
        // A hash above what `permission` says is not believed beyond it.
        assert_eq!(answer("read", "read", maintain).grant().unwrap().role, Role::Read);
        // Without the hash, the legacy pair decides.
        let p: WirePermission = serde_json::from_str(r#"{"permission":"write","role_name":"deployer"}"#).unwrap();
        assert_eq!(p.grant().unwrap().role, Role::Write);
    }
}

/// An installation of the App (`GET /repos/{owner}/{repo}/installation`, `GET
/// /app/installations`).
#[derive(Debug, Deserialize)]
pub(super) struct WireInstallation {
    pub(super) id: u64,
    pub(super) account: WireAccount,
    /// `all` or `selected`.
    #[serde(default)]
    pub(super) repository_selection: String,
    #[serde(default)]
    pub(super) suspended_at: Option<String>,
}
