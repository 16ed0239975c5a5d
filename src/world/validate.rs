//! Checking a world file's contents: every rule of spec/world.md, each refusal naming the file,
//! line, column and field, never the value.

use super::*;

pub(super) struct Checker<'t> {
    pub(super) text: &'t str,
    pub(super) file: Option<PathBuf>,
}

impl Checker<'_> {
    pub(super) fn err(
        &self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> WorldError {
        WorldError {
            file: self.file.clone(),
            position: span.map(|s| position(self.text, s.start)),
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

/// A world's login names and the users they name, for looking users up while checking.
pub(super) struct Logins<'w> {
    pub(super) users: &'w [WorldUser],
    pub(super) by_login: &'w HashMap<String, usize>,
}

impl Logins<'_> {
    /// The id of the user a login (any case) names.
    pub(super) fn id(&self, ck: &Checker<'_>, s: &Spanned<String>, field: String) -> Result<UserId, WorldError> {
        self.by_login
            .get(&s.get_ref().to_ascii_lowercase())
            .map(|&i| self.users[i].id)
            .ok_or_else(|| ck.err(Some(s.span()), field, "an undeclared login: declare it under [[users]]"))
    }
}

/// The steps of [`World::validate`].
impl Checker<'_> {
    pub(super) fn version(&self, wf: &WorldFile) -> Result<(), WorldError> {
        if *wf.version.get_ref() != 1 {
            return Err(self.err(
                Some(wf.version.span()),
                "version",
                format!("unsupported version {}: expected 1", wf.version.get_ref()),
            ));
        }
        Ok(())
    }

    pub(super) fn now(&self, wf: &WorldFile) -> Result<Option<Timestamp>, WorldError> {
        Ok(match &wf.now {
            None => None,
            Some(s) => Some(timestamp(s.get_ref()).map_err(|m| self.err(Some(s.span()), "now", m))?),
        })
    }

    /// An id as GitHub issues them and the stores hold them: 1 to 2^63 - 1.
    pub(super) fn store_id(&self, id: &Spanned<u64>, field: String) -> Result<u64, WorldError> {
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
    pub(super) fn users(
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
    pub(super) fn orgs(
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

    pub(super) fn repos(
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
    pub(super) fn team_repos(&self, wf: &WorldFile, orgs: &[WorldOrg], repos: &[WorldRepo]) -> Result<(), WorldError> {
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

    pub(super) fn faults(&self, wf: &WorldFile) -> Result<Vec<WorldFault>, WorldError> {
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

    /// The App's installations: a declared account each (at most one per account, as GitHub
    /// installs an App once per account), unique positive ids, selected repositories of that
    /// account.
    pub(super) fn installations(
        &self,
        wf: &WorldFile,
        users: &[WorldUser],
        orgs: &[WorldOrg],
        repos: &[WorldRepo],
    ) -> Result<Vec<WorldInstallation>, WorldError> {
        let mut out: Vec<WorldInstallation> = Vec::new();
        for (i, spec) in wf.installations.iter().enumerate() {
            let id = *spec.id.get_ref();
            if id == 0 || out.iter().any(|o| o.id == id) {
                return Err(self.err(
                    Some(spec.id.span()),
                    format!("installations[{i}].id"),
                    "ids are unique and above 0",
                ));
            }
            let login = spec.account.get_ref();
            let account = orgs
                .iter()
                .find(|o| o.login.eq_ignore_ascii_case(login))
                .map(|o| (o.login.clone(), o.id, true))
                .or_else(|| {
                    users.iter().find(|u| u.login.eq_ignore_ascii_case(login)).map(|u| (u.login.clone(), u.id.0, false))
                });
            let Some((account, account_id, account_is_org)) = account else {
                return Err(self.err(
                    Some(spec.account.span()),
                    format!("installations[{i}].account"),
                    "an undeclared account: declare it under [[users]] or [[orgs]]",
                ));
            };
            if out.iter().any(|o| o.account_id == account_id && o.account_is_org == account_is_org) {
                return Err(self.err(
                    Some(spec.account.span()),
                    format!("installations[{i}].account"),
                    "an account has one installation at most",
                ));
            }
            let repositories = match &spec.repositories {
                None => None,
                Some(names) => {
                    let mut ids = Vec::new();
                    for (j, name) in names.iter().enumerate() {
                        let found = repos.iter().find(|r| {
                            r.owner_id == account_id
                                && r.owner_is_org == account_is_org
                                && r.name.eq_ignore_ascii_case(name.get_ref())
                        });
                        let Some(repo) = found else {
                            return Err(self.err(
                                Some(name.span()),
                                format!("installations[{i}].repositories[{j}]"),
                                "not a repository of the installation's account",
                            ));
                        };
                        ids.push(repo.id);
                    }
                    Some(ids)
                }
            };
            out.push(WorldInstallation {
                id,
                account,
                account_id,
                account_is_org,
                repositories,
                suspended: spec.suspended,
            });
        }
        Ok(out)
    }

    pub(super) fn google(&self, wf: &WorldFile, dir: &Path) -> Result<Option<WorldGoogle>, WorldError> {
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

    pub(super) fn apps(&self, wf: &WorldFile, logins: &Logins<'_>) -> Result<Vec<WorldApp>, WorldError> {
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
