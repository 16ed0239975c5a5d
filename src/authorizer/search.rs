//! Searches: who may act on an app (the repository's roster, nobody signed in, invited viewers),
//! and a GitHub user known by id made a principal. Each subject found is decided by the core's
//! `decide`, on the roster's facts.

use super::Authorizer;
use crate::cache::{Age, Consistency};
use crate::core::check::{AppSeen, Asked, Facts, Seen, Subject, decide};
use crate::core::decision::Fact;
use crate::core::email::Email;
use crate::core::ids::{AppId, GithubUser, UserId};
use crate::core::policy::Capability;
use crate::core::principal::Principal;
use crate::error::CheckError;

/// Who may do something to an app ([`Authorizer::subjects_for`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Subjects {
    /// Anybody may, signed in or not (`view` of a public app): the lists below are those who
    /// may by a role or an invitation besides.
    pub anyone: bool,
    /// The GitHub users whose role on the repository allows it, by id, in order.
    pub github_users: Vec<UserId>,
    /// The invited viewers' addresses (`view` of a private app only), in order.
    pub viewers: Vec<Email>,
}

impl Authorizer {
    /// Who may do `cap` to the app: the GitHub users its repository's roster lists with a role
    /// the policy allows `cap` to (each decided as their check would be, on the roster's facts;
    /// `deploy` and `delete` on a roster no older than `strict_max_age`), whether anybody may,
    /// and for `view` of a private app the invited viewers. Support agents are not listed: a
    /// window names at most one agent, and is read with [`Authorizer::support_windows`]. An
    /// app that does not exist: nobody. Nothing is written to the audit log (a report, like
    /// `explain`).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, Capability, UserId};
    /// let dash = AppId("dash".into()); // private, on acme/dashboard
    /// let deployers = authz.subjects_for(&dash, Capability::Deploy).await.unwrap();
    /// assert!(deployers.github_users.contains(&UserId(5)) && !deployers.github_users.contains(&UserId(3)));
    /// let viewers = authz.subjects_for(&dash, Capability::View).await.unwrap();
    /// assert!(!viewers.anyone && viewers.viewers.iter().any(|e| e.as_str() == "dana@example.com"));
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    ///
    /// # Errors
    ///
    /// [`CheckError::NoRoster`] where GitHub does not list who holds a role on the repository
    /// (a roster refused or too large, rosters off, user-token mode): never a partial list.
    /// Otherwise as [`Authorizer::check`].
    pub async fn subjects_for(&self, app: &AppId, cap: Capability) -> Result<Subjects, CheckError> {
        let Some(app) = self.app_with(app, Consistency::Cached).await? else {
            return Ok(Subjects::default());
        };
        let (policy, now, asked) = (&self.inner.policy, self.inner.clock.now(), Asked::Capability(cap));
        let seen = AppSeen::Known(app.id(), app.view());
        let undecided = |_| CheckError::Undecided;
        let mut subjects = Subjects {
            anyone: decide(policy, Subject::Anonymous, &Facts::of(seen), asked, now).map_err(undecided)?.is_allowed(),
            ..Subjects::default()
        };
        let age = if cap.is_destructive() { Age::Strict } else { Age::Ordinary };
        let (roster, source, age_ms) =
            self.inner.cache.facts.roster_of(&app, age).await?.ok_or(CheckError::NoRoster)?;
        for (id, grant) in roster {
            let user = GithubUser::new(id, "");
            let fact = Fact::Rostered(Some(grant));
            let facts = Facts::of(seen).with_github(Seen { value: &fact, source, age_ms });
            if decide(policy, Subject::Github(&user), &facts, asked, now).map_err(undecided)?.is_allowed() {
                subjects.github_users.push(id);
            }
        }
        if cap == Capability::View && !subjects.anyone {
            subjects.viewers = self.inner.store.viewers(app.id()).await?;
            subjects.viewers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        }
        Ok(subjects)
    }

    /// The GitHub user with this id as a principal, their login learnt from GitHub
    /// (`GET /user/{account_id}`, remembered as long as a role is); `None` when no user has the
    /// id, or when `login` is given and is not that account's (compared without regard to case).
    /// For a caller that holds only an id; a check takes one directly
    /// ([`CheckRequest::github_id`](crate::CheckRequest::github_id)).
    ///
    /// # Errors
    ///
    /// [`CheckError::Github`] when GitHub cannot answer.
    pub async fn github_principal(&self, id: UserId, login: Option<&str>) -> Result<Option<Principal>, CheckError> {
        Ok(self.github_account(id, login, Age::Ordinary).await?.0.ok().map(Principal::github))
    }

    /// The account with this id, or the fact a check decides on when there is none or `login`
    /// names another (no role; a login mismatch), with where it came from and its age.
    pub(super) async fn github_account(
        &self,
        id: UserId,
        login: Option<&str>,
        age: Age,
    ) -> Result<(Result<GithubUser, Fact>, crate::core::decision::Source, u64), CheckError> {
        let (account, source, age_ms) = self.inner.cache.facts.account(id, age).await?;
        let found = match account {
            Some(user) if login.is_none_or(|l| l.eq_ignore_ascii_case(&user.login)) => Ok(user),
            Some(_) => Err(Fact::LoginMismatch),
            None => Err(Fact::Role(None)),
        };
        Ok((found, source, age_ms))
    }
}
