//! The app's life through the facade: deploy, visibility, delete, and the audit log that records
//! each step, allowed or refused.

use super::checks::CheckRequest;
use super::{Authorizer, ChangedBy, ManageError};
use crate::cache::{Age, Consistency};
use crate::core::check::{AppSeen, Asked, Audited, Facts, Seen, Subject, audit_entry, decide};
use crate::core::decision::{Fact, Source};
use crate::core::deployment::{valid_app_id, valid_branch, valid_main_file};
use crate::core::ids::{App, AppId, RepoCoords, UserId};
use crate::core::policy::{Capability, Visibility};
use crate::core::principal::Principal;
use crate::error::CheckError;
use crate::store::{Actor, AppRecord, AuditAction, AuditEvent, Change, DeployOutcome, StoreError, StoreFailure};

/// What a deploy asks.
const DEPLOY: Asked = Asked::Capability(Capability::Deploy);

/// What [`Authorizer::deploy_app`](crate::Authorizer::deploy_app) is asked to deploy: an app id, the repository's coordinates,
/// the branch and main file, and the visibility (private unless set).
///
/// ```
/// use ghauthz::{AppId, Deployment, RepoCoords, Visibility};
/// let d = Deployment::new(AppId("dash".into()), RepoCoords::new("acme", "dashboard").unwrap(), "main", "app.py")
///     .with_visibility(Visibility::Public);
/// assert_eq!((d.app().0.as_str(), d.branch(), d.visibility()), ("dash", "main", Visibility::Public));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Deployment {
    app: AppId,
    repo: RepoCoords,
    branch: String,
    main_file: String,
    visibility: Visibility,
}

impl Deployment {
    /// A private app `app` running `main_file` from `branch` of the repository at `repo`.
    pub fn new(app: AppId, repo: RepoCoords, branch: impl Into<String>, main_file: impl Into<String>) -> Self {
        Deployment { app, repo, branch: branch.into(), main_file: main_file.into(), visibility: Visibility::Private }
    }

    /// The same deployment, with this visibility.
    pub fn with_visibility(mut self, visibility: Visibility) -> Self {
        self.visibility = visibility;
        self
    }

    /// The app's id.
    pub fn app(&self) -> &AppId {
        &self.app
    }

    /// The repository's coordinates, as given.
    pub fn repo(&self) -> &RepoCoords {
        &self.repo
    }

    /// The branch.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The main file.
    pub fn main_file(&self) -> &str {
        &self.main_file
    }

    /// Public or private.
    pub fn visibility(&self) -> Visibility {
        self.visibility
    }

    /// The first field that breaks its rule.
    fn invalid_field(&self) -> Option<&'static str> {
        if !valid_app_id(&self.app.0) {
            Some("app")
        } else if !valid_branch(&self.branch) {
            Some("branch")
        } else if !valid_main_file(&self.main_file) {
            Some("main_file")
        } else {
            None
        }
    }
}

impl Authorizer {
    /// Deploys an app: `by` must hold `deploy` on the repository at the deployment's coordinates,
    /// judged on a fact no older than the cache's `strict_max_age` (60 s by default), and the app
    /// is recorded with the repository id GitHub reports now (a renamed repository is followed
    /// to its id), so that a later replacement at those coordinates is caught (`repo_replaced`).
    /// Deploying an existing app id again from the same coordinates and the same repository is a
    /// redeploy (nothing changes; it is audited); an app id deployed from elsewhere, or whose
    /// repository was replaced at its coordinates, is [`ManageError::AppExists`]: a replaced
    /// repository's new owner cannot take the app, its viewers and its windows over. Every
    /// attempt that is decided is audited ([`AuditAction::Deploy`]), allowed or refused.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).build().unwrap();
    /// use ghauthz::{AppId, Deployment, Principal, RepoCoords};
    /// let repo = RepoCoords::new("acme", "dashboard").unwrap();
    /// let erin = Principal::github(world.user("erin").unwrap()); // admin on acme/dashboard
    /// let app = authz.deploy_app(&erin, &Deployment::new(AppId("new".into()), repo.clone(), "main", "app.py")).await.unwrap();
    /// assert_eq!(app.repo_id.0, 101);
    /// let bob = Principal::github(world.user("bob").unwrap()); // maintain
    /// let err = authz.deploy_app(&bob, &Deployment::new(AppId("other".into()), repo, "main", "app.py")).await.unwrap_err();
    /// assert_eq!(err.kind(), "denied");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    ///
    /// # Errors
    ///
    /// - [`ManageError::InvalidDeployment`]: an app id outside [`valid_app_id`]'s alphabet, a
    ///   branch git would refuse ([`valid_branch`]) or a main file outside the repository
    ///   ([`valid_main_file`]); nothing is asked or written.
    /// - [`ManageError::RepoNotFound`]: GitHub has no repository there that may be seen (audited).
    /// - [`ManageError::Denied`]: `by` may not deploy it; the decision says why (audited).
    /// - [`ManageError::AppExists`]: an app with this id is deployed from other coordinates, or
    ///   from a repository since replaced at them (audited).
    /// - [`ManageError::Check`]: GitHub or the store failed; nothing was decided.
    ///
    /// # Security
    ///
    /// The repository is named by coordinates, which GitHub may have given to another
    /// repository: the id is what is recorded and what later checks compare.
    pub async fn deploy_app(&self, by: &Principal, deployment: &Deployment) -> Result<AppRecord, ManageError> {
        if let Some(field) = deployment.invalid_field() {
            return Err(ManageError::InvalidDeployment(field));
        }
        let id = deployment.app();
        let Principal::GithubUser { user, token } = by else {
            // Only GitHub users deploy: anyone else is refused before anything is looked up.
            let (subject, seen) = (Subject::of(by), AppSeen::Changing(id));
            let decision = decide(&self.inner.policy, subject, &Facts::of(seen), DEPLOY, self.inner.clock.now())
                .map_err(|_| CheckError::Undecided)?;
            self.record_decision(subject, seen, Audited::Refusal(AuditAction::Deploy, &decision)).await?;
            return Err(ManageError::Denied { app: id.clone(), decision: Box::new(decision) });
        };
        let actor = Actor::Github(user.id);
        let event = |at| AuditEvent::new(at, &actor, id, AuditAction::Deploy);
        // A refusal's entry is the user's until the app exists: their account's deletion clears it.
        let refuse = |on| async move {
            match audit_entry(Subject::of(by), AppSeen::Changing(id), on, self.inner.clock.now()) {
                Some(entry) => self.record(&entry, Some(user.id)).await,
                None => Ok(()),
            }
        };
        let token = match (self.inner.cache.facts.user_token_mode(), token) {
            (true, None) => return Err(CheckError::MissingUserToken { login: user.login.clone() }.into()),
            (true, Some(t)) => Some(t),
            (false, _) => None,
        };
        let Some(repo_id) = self.inner.cache.facts.repository_id(deployment.repo(), token, Age::Strict).await? else {
            refuse(Audited::DeployRefused("repo_not_found")).await?;
            return Err(ManageError::RepoNotFound(deployment.repo().clone()));
        };
        let app = App::new(id.clone(), deployment.repo().clone(), repo_id, deployment.visibility());
        let decision = self.decide_gathering(by, &app, DEPLOY, Consistency::Cached, true).await?;
        if !decision.is_allowed() {
            refuse(Audited::Refusal(AuditAction::Deploy, &decision)).await?;
            return Err(ManageError::Denied { app: id.clone(), decision: Box::new(decision) });
        }
        let record = AppRecord {
            id: id.clone(),
            owner: deployment.repo().owner().to_owned(),
            repo: deployment.repo().name().to_owned(),
            repo_id,
            branch: deployment.branch().to_owned(),
            main_file: deployment.main_file().to_owned(),
            visibility: deployment.visibility(),
            deployed_by: user.id,
        };
        let deployed = event(self.inner.clock.now()).with_detail(record.coordinates());
        let outcome = self.inner.store.deploy_app(&record, &deployed).await;
        // Forgotten here even if the store failed: the deploy may have committed.
        self.inner.cache.apply_change(&Change::App { app: id.clone() });
        match outcome.map_err(CheckError::from)? {
            DeployOutcome::Deployed => Ok(record),
            DeployOutcome::Redeployed(record) => Ok(record),
            DeployOutcome::Exists(_) => {
                refuse(Audited::DeployRefused("app_exists")).await?;
                Err(ManageError::AppExists(id.clone()))
            }
        }
    }

    /// Makes `app` public or private: `by` needs the policy's `sharing` role (that of `edit` by
    /// default), or is the operator. Returns whether anything changed; a change is audited
    /// ([`AuditAction::Visibility`]), and so is a refusal. Every replica hears of it through
    /// the store's change feed; this one forgets the app before the call returns.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, ChangedBy, Principal, Visibility};
    /// let dash = AppId("dash".into());
    /// assert!(authz.set_visibility(&ChangedBy::Operator, &dash, Visibility::Public).await.unwrap());
    /// let dave = ChangedBy::Principal(Principal::github(world.user("dave").unwrap())); // triage
    /// assert_eq!(authz.set_visibility(&dave, &dash, Visibility::Private).await.unwrap_err().kind(), "denied");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    ///
    /// # Errors
    ///
    /// [`ManageError::UnknownApp`], [`ManageError::Denied`] (audited), or
    /// [`ManageError::Check`] when GitHub or the store failed.
    pub async fn set_visibility(
        &self,
        by: &ChangedBy,
        app: &AppId,
        visibility: Visibility,
    ) -> Result<bool, ManageError> {
        let actor = self.authorize_app(by, app, Asked::Sharing, Some(AuditAction::Visibility)).await?;
        let event = AuditEvent::new(self.inner.clock.now(), &actor, app, AuditAction::Visibility)
            .with_detail(visibility.as_str());
        let changed = self.inner.store.set_visibility(app, visibility, &event).await;
        self.inner.cache.apply_change(&Change::App { app: app.clone() });
        changed.map_err(CheckError::from)?.ok_or_else(|| ManageError::UnknownApp(app.clone()))
    }

    /// Deletes an app as DESIGN's data-deletion rules say: its viewer grants, outstanding links
    /// and sessions, and every address it held (its audit entries stay, without addresses); one
    /// record of its coordinates is kept. `by` needs `delete` (judged on a fact no older than
    /// `strict_max_age`), or is the operator. The deletion is audited ([`AuditAction::Delete`]),
    /// and so is a refusal. Every replica hears of it; this one forgets the app before the call
    /// returns.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, ChangedBy, Principal};
    /// let erin = ChangedBy::Principal(Principal::github(world.user("erin").unwrap())); // admin
    /// authz.delete_app(&erin, &AppId("dash".into())).await.unwrap();
    /// assert!(authz.app(&AppId("dash".into())).await.unwrap().is_none());
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    ///
    /// # Errors
    ///
    /// [`ManageError::UnknownApp`], [`ManageError::Denied`] (audited), or
    /// [`ManageError::Check`] when GitHub or the store failed (the deletion may have been
    /// written; retrying is safe).
    pub async fn delete_app(&self, by: &ChangedBy, app: &AppId) -> Result<(), ManageError> {
        let actor =
            self.authorize_app(by, app, Asked::Capability(Capability::Delete), Some(AuditAction::Delete)).await?;
        let event = AuditEvent::new(self.inner.clock.now(), &actor, app, AuditAction::Delete);
        let deleted = self.inner.store.delete_app(app, &event).await;
        self.inner.cache.apply_change(&Change::App { app: app.clone() });
        match deleted.map_err(CheckError::from)? {
            true => Ok(()),
            false => Err(ManageError::UnknownApp(app.clone())),
        }
    }

    /// The apps `principal` may `cap`, ordered by id: a dashboard's list. Each app is decided
    /// as [`Authorizer::check`](crate::Authorizer::check) decides it, so a listing warms the cache for the checks that
    /// follow:
    ///
    /// - installation or App mode: one listing of the installation's repositories (a request
    ///   per 100) says which repository answers at each app's coordinates, then each app's
    ///   check, at most 8 at once, asks only for the user's role on each repository, coalesced
    ///   and cached as every check's requests are; a warm listing asks nothing;
    /// - user-token mode, for a GitHub user with their token: one paged `GET /user/repos` (100
    ///   repositories a page) answers for every repository the user has a role on; an app whose
    ///   repository that listing shows under other coordinates is checked one by one.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{Capability, Principal};
    /// let carol = Principal::github(world.user("carol").unwrap());
    /// let editable: Vec<String> =
    ///     authz.apps_for(&carol, Capability::Edit).await.unwrap().iter().map(|a| a.id().0.clone()).collect();
    /// assert_eq!(editable, ["analytics", "dash", "site"]);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    ///
    /// # Errors
    ///
    /// [`CheckError`](crate::CheckError) when GitHub or the store cannot answer for some app: a listing is never
    /// answered in part.
    pub async fn apps_for(&self, principal: &Principal, cap: Capability) -> Result<Vec<App>, CheckError> {
        let apps =
            self.apps().await?.iter().map(|r| r.app().map_err(StoreError::from)).collect::<Result<Vec<_>, _>>()?;
        let asked = Asked::Capability(cap);
        let mut unsure = Vec::new();
        let mut allowed = Vec::new();
        match principal {
            Principal::GithubUser { token: Some(token), .. } if self.inner.cache.facts.user_token_mode() => {
                let listed = self.inner.cache.facts.user_repos(token).await?;
                for app in apps {
                    let by_id = listed.iter().find(|r| r.id == app.repo_id());
                    let at_coords = listed.iter().find(|r| r.coords == *app.coords());
                    let fact = match (by_id, at_coords) {
                        (Some(r), Some(_)) if r.coords == *app.coords() => Fact::Role(r.role.clone().flatten()),
                        // Renamed or moved: what answers at the coordinates now is asked.
                        (Some(_), _) => {
                            unsure.push(app);
                            continue;
                        }
                        (None, Some(other)) => Fact::Replaced { current: other.id },
                        (None, None) => Fact::Role(None),
                    };
                    let (subject, seen) = (Subject::of(principal), AppSeen::Known(app.id(), app.view()));
                    let facts = Facts::of(seen).with_github(Seen::now(&fact, Source::Github));
                    let decision = decide(&self.inner.policy, subject, &facts, asked, self.inner.clock.now())
                        .map_err(|_| CheckError::Undecided)?;
                    self.record_decision(subject, seen, Audited::Check(asked, &decision)).await?;
                    if decision.is_allowed() {
                        allowed.push(app);
                    }
                }
            }
            Principal::GithubUser { .. } if !self.inner.cache.facts.user_token_mode() => {
                // Which repository answers at each app's coordinates, from the installation's
                // listing; without it (a token that may not list), each is looked up alone.
                let coords: Vec<RepoCoords> = apps.iter().map(|a| a.coords().clone()).collect();
                if let Err(e) = self.inner.cache.facts.learn_repos(&coords).await {
                    tracing::debug!(error = %e, "installation repositories not listed: each is looked up");
                }
                unsure = apps;
            }
            _ => unsure = apps,
        }
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
        let mut checks = tokio::task::JoinSet::new();
        for app in unsure {
            let (authz, principal, limit) = (self.clone(), principal.clone(), limit.clone());
            checks.spawn(async move {
                let _turn = limit.acquire_owned().await;
                let decision = authz.check(&CheckRequest::new(&principal, &app, cap)).await;
                (app, decision)
            });
        }
        // The first failure is answered once every check has ended. Dropping the listing aborts
        // the checks still running; a load another caller waits on goes on for that caller.
        let mut failed = None;
        while let Some(joined) = checks.join_next().await {
            let (app, decision) = match joined {
                Ok(done) => done,
                Err(e) => match e.try_into_panic() {
                    // A check that panicked panics here, as it would have without the task.
                    Ok(panic) => std::panic::resume_unwind(panic),
                    // Cancelled by the runtime shutting down: this app could not be decided.
                    Err(e) => {
                        let why = StoreFailure::caused_by("a listing's check was cancelled", e);
                        failed = failed.or(Some(CheckError::Store(StoreError::Unavailable(why))));
                        continue;
                    }
                },
            };
            match decision {
                Ok(d) if d.is_allowed() => allowed.push(app),
                Ok(_) => {}
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        allowed.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(allowed)
    }

    /// The GitHub user whose login is `login` now, by id, asked of GitHub (`GET /users/{login}`)
    /// at every call: a login can be renamed and reused, so resolve it when a person names
    /// themselves, and keep the id. `None` if there is no such user (or it is an organization).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config()).build().unwrap();
    /// let carol = authz.github_user("carol").await.unwrap().unwrap();
    /// assert_eq!(carol.id.0, 3);
    /// assert!(authz.github_user("acme").await.unwrap().is_none(), "an organization");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    ///
    /// # Errors
    ///
    /// [`CheckError::Github`](crate::CheckError::Github) when GitHub cannot answer.
    pub async fn github_user(&self, login: &str) -> Result<Option<crate::core::ids::GithubUser>, CheckError> {
        self.inner.cache.facts.user(login).await
    }

    /// The app's record as the store holds it (coordinates, repository id, branch, main file,
    /// visibility, deployer), read from the store; [`AppRecord::app`] gives the [`App`] a
    /// [`CheckRequest`](crate::CheckRequest) takes. A check by id needs neither: it reads the
    /// app itself, from memory while it is held.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// let dash = authz.app(&ghauthz::AppId("dash".into())).await.unwrap().unwrap();
    /// assert_eq!((dash.branch.as_str(), dash.main_file.as_str()), ("main", "streamlit_app.py"));
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the store fails.
    pub async fn app(&self, id: &AppId) -> Result<Option<AppRecord>, StoreError> {
        self.inner.store.app(id).await
    }

    /// Every app's record as the store holds it, ordered by id, in one read (for listings).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// let ids: Vec<String> = authz.apps().await.unwrap().into_iter().map(|r| r.id.0).collect();
    /// assert_eq!(ids, ["analytics", "dash", "legacy", "notes", "site"]);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the store fails.
    pub async fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        self.inner.store.apps().await
    }

    /// Appends `event`; see [`AuditStore::record`](crate::store::AuditStore::record).
    pub(super) async fn record(&self, event: &AuditEvent, owner: Option<UserId>) -> Result<(), CheckError> {
        Ok(self.inner.store.record(event, owner).await?)
    }
}
