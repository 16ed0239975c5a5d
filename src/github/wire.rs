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
}
