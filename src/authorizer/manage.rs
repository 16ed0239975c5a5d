//! Managing an app's viewers, and who may: the operator, or a GitHub user the policy allows.

use super::Authorizer;
use crate::cache::Consistency;
use crate::core::check::{AppSeen, Asked, Audited, Facts, Missing, Subject, decide};
use crate::core::decision::Decision;
use crate::core::email::{Email, EmailError};
use crate::core::ids::{AppId, RepoCoords, UserId};
use crate::core::principal::Principal;
use crate::error::CheckError;
use crate::store::{Actor, AuditAction, Change};

/// Who changes an app's viewers or deletes the app: the operator, or a principal the policy must
/// allow. The audit log ([`Authorizer::audit`](crate::Authorizer::audit)) records which: `operator` or `github:<id>`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ChangedBy {
    /// The control plane acting on its own authority (an admin tool, a migration): nothing is
    /// checked, and the change is recorded as `operator`. Never pass it on a user's behalf.
    Operator,
    /// A principal acting for themselves: allowed only for a GitHub user who holds the policy's
    /// `sharing` role (to manage viewers) or the `delete` capability (to delete) on the app's
    /// repository; anyone else is [`ManageError::Denied`].
    Principal(Principal),
}

/// What [`Authorizer::add_viewer`](crate::Authorizer::add_viewer) or [`Authorizer::remove_viewer`](crate::Authorizer::remove_viewer) did: the app, the address as
/// stored, and whether anything changed (both calls are idempotent, so retrying is safe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerChange {
    /// The app whose viewers were changed.
    pub app: AppId,
    /// The address as stored, trimmed and lowercased ([`Email::parse`]): send links to this one,
    /// not to what was typed.
    pub email: Email,
    /// Whether anything changed: `false` when adding an address already invited, or removing one
    /// that was not.
    pub changed: bool,
}

/// Why [`Authorizer::add_viewer`](crate::Authorizer::add_viewer), [`Authorizer::remove_viewer`](crate::Authorizer::remove_viewer), [`Authorizer::viewers`](crate::Authorizer::viewers),
/// [`Authorizer::deploy_app`](crate::Authorizer::deploy_app), [`Authorizer::set_visibility`](crate::Authorizer::set_visibility) or [`Authorizer::delete_app`](crate::Authorizer::delete_app) was
/// refused or could not be done; [`ManageError::kind`] names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// No app with this id in the store; nothing was changed.
    #[error("no app `{0}`")]
    UnknownApp(AppId),
    /// The address was refused by [`Email::parse`] (checked first, before the app is looked up);
    /// the [`EmailError`] says why.
    #[error("invalid email address: {0}")]
    InvalidEmail(#[from] EmailError),
    /// The principal may not do this to the app: below the role the policy asks for, a viewer, or
    /// nobody signed in. The decision says why, as a check would; nothing was changed.
    #[error("not allowed on `{app}` ({})", decision.reason().kind())]
    Denied {
        /// The app the change was refused on.
        app: AppId,
        /// The decision that refused it, with its [`Reason`](crate::Reason) (for example `github_role`, with the
        /// role found and the role required).
        decision: Box<Decision>,
    },
    /// Could not decide, or could not write: GitHub or the store failed ([`CheckError`](crate::CheckError)). A change
    /// may have been written before the store failed; retrying is safe.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// A deployment's `app`, `branch` or `main_file` (named) breaks its rule
    /// ([`valid_app_id`](crate::valid_app_id), [`valid_branch`](crate::valid_branch),
    /// [`valid_main_file`](crate::valid_main_file)); nothing was asked or written.
    #[error("invalid deployment: {}", deployment_rule(.0))]
    InvalidDeployment(&'static str),
    /// GitHub has no repository at the deployment's coordinates that may be seen.
    #[error("no repository `{0}` on GitHub")]
    RepoNotFound(RepoCoords),
    /// An app with this id is deployed from other coordinates; nothing was changed.
    #[error("an app `{0}` exists, deployed from elsewhere")]
    AppExists(AppId),
    /// A support grant's field (named) is refused: no capability, or `deploy` or `delete`; a
    /// duration of zero or over 7 days; an agent that is not an agent's name; an empty, overlong
    /// or control-character reason. Nothing was asked or written.
    #[error("invalid support grant: `{0}` is refused")]
    InvalidSupport(&'static str),
}

/// The rule a deployment's field breaks, for [`ManageError::InvalidDeployment`]'s message (the
/// value is not repeated).
fn deployment_rule(field: &str) -> String {
    use crate::core::deployment::{APP_ID_RULE, BRANCH_RULE, MAIN_FILE_RULE};
    let rule = match field {
        "app" => APP_ID_RULE,
        "branch" => BRANCH_RULE,
        "main_file" => MAIN_FILE_RULE,
        _ => "what the field's rule says",
    };
    format!("`{field}`: expected {rule}")
}

impl ManageError {
    /// A stable name, for logs and JSON: `unknown_app`, `invalid_email`, `denied` (the decision
    /// says why), `invalid_deployment`, `repo_not_found`, `app_exists`, `invalid_support`, or
    /// [`CheckError::kind`](crate::CheckError::kind).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, ChangedBy, Principal};
    /// let dave = ChangedBy::Principal(Principal::github(world.user("dave").unwrap())); // triage
    /// let err = authz.delete_app(&dave, &AppId("dash".into())).await.unwrap_err();
    /// assert_eq!(err.kind(), "denied");
    /// let err = authz.delete_app(&ChangedBy::Operator, &AppId("nope".into())).await.unwrap_err();
    /// assert_eq!(err.kind(), "unknown_app");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            ManageError::UnknownApp(_) => "unknown_app",
            ManageError::InvalidEmail(_) => "invalid_email",
            ManageError::Denied { .. } => "denied",
            ManageError::Check(e) => e.kind(),
            ManageError::InvalidDeployment(_) => "invalid_deployment",
            ManageError::RepoNotFound(_) => "repo_not_found",
            ManageError::AppExists(_) => "app_exists",
            ManageError::InvalidSupport(_) => "invalid_support",
        }
    }
}

impl Authorizer {
    /// Invites `email` to `app`: a new grant, under which the address can sign in
    /// ([`Authorizer::issue_link`](crate::Authorizer::issue_link), [`Authorizer::google_sign_in`](crate::Authorizer::google_sign_in)). `by` must hold the policy's
    /// `sharing` role (what `edit` needs, GitHub `write` by default) unless it is
    /// [`ChangedBy::Operator`]. Inviting an address already invited changes nothing. Audited.
    ///
    /// # Errors
    ///
    /// Fails with [`ManageError`]: `InvalidEmail` if the address does not parse (checked first);
    /// `UnknownApp`; `Denied` with the decision, when `by` lacks the role; `Check` when the
    /// decision could not be made or the store could not write (GitHub or the store failed).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, ChangedBy, Principal};
    /// let dash = AppId("dash".into());
    /// let carol = ChangedBy::Principal(Principal::github(world.user("carol").unwrap())); // write
    /// let change = authz.add_viewer(&carol, &dash, " Eve@Example.com").await.unwrap();
    /// assert!(change.changed);
    /// assert_eq!(change.email.as_str(), "eve@example.com");
    /// let dave = ChangedBy::Principal(Principal::github(world.user("dave").unwrap())); // triage
    /// assert_eq!(authz.add_viewer(&dave, &dash, "zed@example.com").await.unwrap_err().kind(), "denied");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn add_viewer(&self, by: &ChangedBy, app: &AppId, email: &str) -> Result<ViewerChange, ManageError> {
        let (email, actor) = self.authorize_sharing(by, app, email).await?;
        let now = self.inner.clock.now();
        let changed = self.inner.store.add_viewer(app, &email, &actor, now).await.map_err(CheckError::from)?;
        Ok(ViewerChange { app: app.clone(), email, changed })
    }

    /// Removes `email` from `app`'s viewers; authorized as [`Authorizer::add_viewer`](crate::Authorizer::add_viewer). The grant
    /// ends for good: links issued under it are `revoked`, and sessions minted under it open
    /// nothing from the next check on, here and on every replica, even if the address is invited
    /// again. Removing an address that is not invited changes nothing. Audited.
    ///
    /// # Errors
    ///
    /// Fails with [`ManageError`]: `InvalidEmail` if the address does not parse (checked first);
    /// `UnknownApp`; `Denied` with the decision, when `by` lacks the role; `Check` when the
    /// decision could not be made or the store could not write (GitHub or the store failed). After
    /// a `Check` error the removal may have been written: this authorizer forgets the app's grants
    /// anyway, and removing again is safe.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, ChangedBy};
    /// let dash = AppId("dash".into());
    /// let link = authz.issue_link(&dash, "dana@example.com").await.unwrap();
    /// let removed = authz.remove_viewer(&ChangedBy::Operator, &dash, "dana@example.com").await.unwrap();
    /// assert!(removed.changed);
    /// assert_eq!(authz.inspect_link(link.token.expose_secret()).await.unwrap_err().kind(), "revoked");
    /// assert!(!authz.remove_viewer(&ChangedBy::Operator, &dash, "dana@example.com").await.unwrap().changed);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn remove_viewer(&self, by: &ChangedBy, app: &AppId, email: &str) -> Result<ViewerChange, ManageError> {
        let (email, actor) = self.authorize_sharing(by, app, email).await?;
        let now = self.inner.clock.now();
        let removed = self.inner.store.remove_viewer(app, &email, &actor, now).await;
        // Forgotten here even if the store failed: the removal may have committed.
        self.inner.cache.apply_change(&Change::App { app: app.clone() });
        let changed = removed.map_err(CheckError::from)?;
        Ok(ViewerChange { app: app.clone(), email, changed })
    }

    /// `app`'s invited addresses, as stored; authorized as [`Authorizer::add_viewer`](crate::Authorizer::add_viewer), since the
    /// list is personal data.
    ///
    /// # Errors
    ///
    /// Fails with [`ManageError`]: `UnknownApp`; `Denied` with the decision, when `by` lacks the
    /// role; `Check` when the decision could not be made or the store could not be read.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, ChangedBy, Principal};
    /// let dash = AppId("dash".into());
    /// let list = authz.viewers(&ChangedBy::Operator, &dash).await.unwrap();
    /// assert_eq!(list.iter().map(|e| e.as_str()).collect::<Vec<_>>(), ["dana@example.com"]);
    /// let nobody = ChangedBy::Principal(Principal::Anonymous);
    /// assert_eq!(authz.viewers(&nobody, &dash).await.unwrap_err().kind(), "denied");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn viewers(&self, by: &ChangedBy, app: &AppId) -> Result<Vec<Email>, ManageError> {
        self.authorize_app(by, app, Asked::Sharing, None).await?;
        Ok(self.inner.store.viewers(app).await.map_err(CheckError::from)?)
    }

    async fn authorize_sharing(&self, by: &ChangedBy, app: &AppId, email: &str) -> Result<(Email, Actor), ManageError> {
        let email = Email::parse(email)?;
        let actor = self.authorize_app(by, app, Asked::Sharing, None).await?;
        Ok((email, actor))
    }

    /// Deletes an account: every app the GitHub identity `user` deployed, with everything deleting
    /// an app removes, and the records kept of its earlier deleted apps. Returns the ids of the
    /// apps deleted. Nothing is checked here: the control plane calls this on the account holder's
    /// authenticated request.
    ///
    /// # Errors
    ///
    /// [`CheckError::Store`](crate::CheckError::Store) if the store fails; which apps went is then unknown, so this
    /// authorizer forgets every cached app and grant. Calling again is safe.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::AppId;
    /// let erin = world.user("erin").unwrap(); // deployed dash and legacy
    /// let mut gone = authz.delete_account(erin.id).await.unwrap();
    /// gone.sort();
    /// assert_eq!(gone, [AppId("dash".into()), AppId("legacy".into())]);
    /// assert!(authz.app(&AppId("dash".into())).await.unwrap().is_none());
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn delete_account(&self, user: UserId) -> Result<Vec<AppId>, CheckError> {
        let deleted = self.inner.store.delete_account(user, self.inner.clock.now()).await;
        // Its apps went, and so did the support windows it opened on other apps (which the
        // store does not name here): forget every app, as a rare deletion may.
        self.inner.cache.apply_change(&Change::All);
        Ok(deleted?)
    }

    /// Who may change the app with this id as `asked`: the operator, or a GitHub user the policy
    /// allows; anyone else is refused before anything is looked up. The app is read from the
    /// store, not the cache: a change is judged on the app as it is now (an id deleted and
    /// deployed elsewhere since is judged on its new repository). A refusal is on record as
    /// `action` denied, where an action is given; a support agent's attempt is on record as its
    /// checks are.
    pub(super) async fn authorize_app(
        &self,
        by: &ChangedBy,
        id: &AppId,
        asked: Asked,
        action: Option<AuditAction>,
    ) -> Result<Actor, ManageError> {
        let app = self.app_with(id, Consistency::Fresh).await.map_err(CheckError::from)?;
        let ChangedBy::Principal(principal) = by else {
            return app.map(|_| Actor::Operator).ok_or_else(|| ManageError::UnknownApp(id.clone()));
        };
        let (policy, subject, now) = (&self.inner.policy, Subject::of(principal), self.inner.clock.now());
        let (seen, decision) = match &app {
            None => {
                let seen = AppSeen::Unknown(id);
                (seen, decide(policy, subject, &Facts::of(seen), asked, now))
            }
            Some(app) => {
                let seen = AppSeen::Known(id, app.view());
                match decide(policy, subject, &Facts::of(AppSeen::Changing(id)), asked, now) {
                    Err(Missing::App) => {
                        (seen, Ok(self.decide_gathering(principal, app, asked, Consistency::Cached, true).await?))
                    }
                    refused => {
                        let refused = refused.map_err(|_| CheckError::Undecided)?;
                        if let Subject::Support(_) = subject {
                            // On record as every support agent's check is.
                            self.record_decision(subject, seen, Audited::Check(asked, &refused)).await?;
                        }
                        (seen, Ok(refused))
                    }
                }
            }
        };
        let decision = decision.map_err(|_| CheckError::Undecided)?;
        if let (Some(action), false) = (action, decision.is_allowed()) {
            self.record_decision(subject, seen, Audited::Refusal(action, &decision)).await?;
        }
        match (principal, app) {
            (_, None) => Err(ManageError::UnknownApp(id.clone())),
            (Principal::GithubUser { user, .. }, Some(_)) if decision.is_allowed() => Ok(Actor::Github(user.id)),
            _ => Err(ManageError::Denied { app: id.clone(), decision: Box::new(decision) }),
        }
    }
}
