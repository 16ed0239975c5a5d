//! Checks: gather, decide, record. Each check gathers the facts its decision asks for (from
//! memory on a hit; from GitHub or the store past it), lets the core's `decide` make the
//! decision, and writes what the core's `audit_entry` says the audit log receives.

use std::sync::Arc;

use super::Authorizer;
use crate::cache::{Age, Consistency, Facts as FactCache, PermKey};
use crate::core::check::{AppSeen, Asked, Audited, Facts, Missing, Seen, Subject, audit_entry, decide};
use crate::core::decision::{Decision, Source};
use crate::core::ids::{App, AppId};
use crate::core::policy::Capability;
use crate::core::principal::Principal;
use crate::core::support::SupportWindow;
use crate::core::time::Timestamp;
use crate::error::CheckError;

impl Authorizer {
    /// May `principal` do `cap` to `app`? The app is given whole ([`Authorizer::check_app`](crate::Authorizer::check_app) takes
    /// an id). Answers from the cache when it can (see [`Authorizer::check_cached`](crate::Authorizer::check_cached)), otherwise
    /// asks GitHub (for a GitHub user) or the store (for a viewer); an anonymous check never asks.
    ///
    /// # Errors
    ///
    /// [`CheckError`](crate::CheckError) means "could not decide": treat it as a denial, and ask again after
    /// [`CheckError::retry_after`](crate::CheckError::retry_after). [`CheckError::Github`](crate::CheckError::Github) when GitHub is unavailable, rate
    /// limited, refuses the credentials or answers unexpectedly; [`CheckError::Store`](crate::CheckError::Store) when a
    /// viewer's grant cannot be read; [`CheckError::MissingUserToken`](crate::CheckError::MissingUserToken) in user-token mode, when
    /// GitHub must be asked and the principal carries no token. A denial is never an error: it is a
    /// [`Decision`](crate::Decision).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{Capability, Lookup, NoAccessDetail, Principal, Reason, Role};
    /// let dash = world.app("dash").unwrap(); // private, on acme/dashboard
    /// let carol = Principal::github(world.user("carol").unwrap()); // write there
    /// let d = authz.check(&carol, &dash, Capability::Edit).await.unwrap();
    /// assert!(d.is_allowed());
    /// assert!(matches!(d.reason(), Reason::GithubRole { role: Role::Write, required: Role::Write, .. }));
    /// // Answered from the repository's roster, which lists `write` and up ...
    /// assert_eq!(d.lookup(), Some(Lookup::Roster));
    /// // ... and which answers for dave (triage there) without another request.
    /// let dave = Principal::github(world.user("dave").unwrap());
    /// let d = authz.check(&dave, &dash, Capability::View).await.unwrap();
    /// assert!(!d.is_allowed());
    /// assert_eq!(d.reason(), &Reason::NoAccess { detail: NoAccessDetail::NotOnRoster });
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn check(&self, principal: &Principal, app: &App, cap: Capability) -> Result<Decision, CheckError> {
        if let Some(decision) = self.check_cached(principal, app, cap) {
            return Ok(decision);
        }
        // Boxed, as in `check_app_with`.
        Box::pin(self.check_recorded(principal, app, cap, Consistency::Cached)).await
    }

    /// [`Authorizer::check`](crate::Authorizer::check) for the app with this id; `unknown_app` (a denial) when there is none.
    /// What a control plane calls on every request: on a hit, the app record and the GitHub fact
    /// (or the viewer's grant) all come from memory ([`CacheConfig`](crate::CacheConfig)'s `# Staleness`).
    ///
    /// # Errors
    ///
    /// As [`Authorizer::check`](crate::Authorizer::check), and [`CheckError::Store`](crate::CheckError::Store) when the app's record cannot be read
    /// (the store unavailable, or a record that is not an app).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, Capability, Principal};
    /// let erin = Principal::github(world.user("erin").unwrap()); // admin on acme/dashboard
    /// assert!(authz.check_app(&erin, &AppId("dash".into()), Capability::Deploy).await.unwrap().is_allowed());
    /// let d = authz.check_app(&erin, &AppId("gone".into()), Capability::View).await.unwrap();
    /// assert_eq!((d.is_allowed(), d.reason().kind()), (false, "unknown_app"));
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn check_app(&self, principal: &Principal, app: &AppId, cap: Capability) -> Result<Decision, CheckError> {
        self.check_app_with(principal, app, cap, Consistency::Cached).await
    }

    /// [`Authorizer::check_app`](crate::Authorizer::check_app) with the facts as old as `consistency` allows:
    /// [`Consistency::Fresh`](crate::Consistency::Fresh) reads the app and the grant from the store and revalidates the GitHub
    /// fact first (a conditional request, which spends no rate limit when nothing changed), for a
    /// decision that must rest on nothing cached.
    ///
    /// # Errors
    ///
    /// As [`Authorizer::check_app`](crate::Authorizer::check_app).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, Capability, Consistency, Principal, Source};
    /// let (carol, dash) = (Principal::github(world.user("carol").unwrap()), AppId("dash".into()));
    /// authz.check_app(&carol, &dash, Capability::Edit).await.unwrap(); // asks GitHub, caches
    /// let cached = authz.check_app_with(&carol, &dash, Capability::Edit, Consistency::Cached).await.unwrap();
    /// assert_eq!(cached.source(), Source::Cache);
    /// let fresh = authz.check_app_with(&carol, &dash, Capability::Edit, Consistency::Fresh).await.unwrap();
    /// assert_eq!(fresh.source(), Source::Github);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn check_app_with(
        &self,
        principal: &Principal,
        app: &AppId,
        cap: Capability,
        consistency: Consistency,
    ) -> Result<Decision, CheckError> {
        if consistency == Consistency::Cached {
            if let Some(decision) = self.check_app_cached(principal, app, cap) {
                return Ok(decision);
            }
        }
        // Boxed: the hit's future stays a few words instead of carrying the slow path's state.
        Box::pin(self.check_app_uncached(principal, app, cap, consistency)).await
    }

    /// [`Authorizer::check_app_with`](crate::Authorizer::check_app_with) past the hit: the app from the store if need be, then the
    /// check.
    async fn check_app_uncached(
        &self,
        principal: &Principal,
        id: &AppId,
        cap: Capability,
        consistency: Consistency,
    ) -> Result<Decision, CheckError> {
        match self.app_with(id, consistency).await? {
            Some(app) => self.check_recorded(principal, &app, cap, consistency).await,
            None => {
                let facts = Facts::of(AppSeen::Unknown(id));
                self.recorded(Subject::of(principal), &facts, Asked::Capability(cap)).await
            }
        }
    }

    /// [`Authorizer::check_app`](crate::Authorizer::check_app) if it needs neither GitHub nor the store: synchronous, lock-free
    /// and allocation-free on a hit, for a path that cannot await. `None` means `check_app` would
    /// ask: call it then.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, Capability, Principal, Source};
    /// let (erin, dash) = (Principal::github(world.user("erin").unwrap()), AppId("dash".into()));
    /// assert!(authz.check_app_cached(&erin, &dash, Capability::Edit).is_none()); // nothing cached yet
    /// authz.check_app(&erin, &dash, Capability::Edit).await.unwrap();
    /// let hit = authz.check_app_cached(&erin, &dash, Capability::Edit).unwrap();
    /// assert!(hit.is_allowed());
    /// assert_eq!(hit.source(), Source::Cache);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn check_app_cached(&self, principal: &Principal, id: &AppId, cap: Capability) -> Option<Decision> {
        if cap.is_destructive() {
            return None; // recorded: never answered from memory alone
        }
        let inner = &*self.inner;
        let (subject, asked, now) = (Subject::of(principal), Asked::Capability(cap), inner.clock.now());
        // A GitHub user's first look: the app table's copy, then the hit table.
        if let Subject::Github(_) = subject {
            if let Some(view) = inner.cache.records.app_view(id, now) {
                return self.decide_in_memory(subject, AppSeen::Known(id, view), None, asked, now);
            }
        }
        inner
            .cache
            .records
            .with_app(id, now, |app, stamp| {
                self.decide_in_memory(subject, AppSeen::Known(app.id(), app.view()), Some(stamp), asked, now)
            })
            .flatten()
    }

    /// May the viewer holding session `token` do `cap` to the app with this id? A token that does
    /// not verify is a denial (`session_invalid`, with its [`SessionError`](crate::SessionError)); an unknown app is
    /// `unknown_app`. A viewer may only `view`, only the app the session is for, and only while the
    /// grant it was minted under stands. On a hit nothing is verified again
    /// ([`Authorizer::verify_session`](crate::Authorizer::verify_session)) and nothing is read from the store.
    ///
    /// # Errors
    ///
    /// [`CheckError::Store`](crate::CheckError::Store) when the app or the grant cannot be read. A bad token is a denial, not
    /// an error.
    ///
    /// # Security
    ///
    /// A token is verified in full (signature under a listed key, issuer, audience, expiry on the
    /// authorizer's clock) the first time; after that it is confirmed by comparing it whole, in
    /// constant time. Tokens are never logged.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, Capability, Reason, Via};
    /// let dash = AppId("dash".into());
    /// let link = authz.issue_link(&dash, "dana@example.com").await.unwrap(); // dana is invited to dash
    /// let token = authz.redeem_link(link.token.expose_secret(), Some(&dash)).await.unwrap().token;
    /// let token = token.expose_secret();
    /// let d = authz.check_session(token, &dash, Capability::View).await.unwrap();
    /// assert_eq!(d.reason(), &Reason::ViewerGrant { via: Via::EmailLink });
    /// let forged = authz.check_session("eyJhbGciOiJub25lIn0.e30.", &dash, Capability::View).await.unwrap();
    /// assert_eq!(forged.reason().kind(), "session_invalid");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn check_session(&self, token: &str, app: &AppId, cap: Capability) -> Result<Decision, CheckError> {
        self.check_session_with(token, app, cap, Consistency::Cached).await
    }

    /// [`Authorizer::check_session`](crate::Authorizer::check_session) with the facts as old as `consistency` allows:
    /// [`Consistency::Fresh`](crate::Consistency::Fresh) verifies the token in full and reads the app and the grant from the
    /// store, for a decision that must rest on nothing cached.
    ///
    /// # Errors
    ///
    /// As [`Authorizer::check_session`](crate::Authorizer::check_session).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, Capability, Consistency, Source};
    /// let dash = AppId("dash".into());
    /// let link = authz.issue_link(&dash, "dana@example.com").await.unwrap(); // dana is invited to dash
    /// let token = authz.redeem_link(link.token.expose_secret(), Some(&dash)).await.unwrap().token;
    /// let token = token.expose_secret();
    /// authz.check_session(token, &dash, Capability::View).await.unwrap(); // verifies, reads, caches
    /// let cached = authz.check_session_with(token, &dash, Capability::View, Consistency::Cached).await.unwrap();
    /// assert_eq!(cached.source(), Source::Cache);
    /// let fresh = authz.check_session_with(token, &dash, Capability::View, Consistency::Fresh).await.unwrap();
    /// assert_eq!(fresh.source(), Source::Store);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn check_session_with(
        &self,
        token: &str,
        app: &AppId,
        cap: Capability,
        consistency: Consistency,
    ) -> Result<Decision, CheckError> {
        if consistency == Consistency::Cached {
            if let Some(decision) = self.check_session_cached(token, app, cap) {
                return Ok(decision);
            }
        }
        // Boxed, as in `check_app_with`.
        Box::pin(self.check_session_uncached(token, app, cap, consistency)).await
    }

    /// [`Authorizer::check_session_with`](crate::Authorizer::check_session_with) past the hit: the token verified, the app and the
    /// grant from the store if need be.
    async fn check_session_uncached(
        &self,
        token: &str,
        id: &AppId,
        cap: Capability,
        consistency: Consistency,
    ) -> Result<Decision, CheckError> {
        let asked = Asked::Capability(cap);
        match self.verify_session_with(token, consistency) {
            Ok(session) => match self.app_with(id, consistency).await? {
                Some(app) => self.check_recorded(&Principal::Viewer(session), &app, cap, consistency).await,
                None => self.recorded(Subject::Viewer(&session), &Facts::of(AppSeen::Unknown(id)), asked).await,
            },
            Err(error) => {
                // The app is looked up only where the refusal may be on record (`deploy` and
                // `delete` of an app that exists): a token that does not verify names nobody,
                // and an id no app has could be any text.
                let app = match asked.is_destructive() {
                    true => self.app_with(id, consistency).await?,
                    false => None,
                };
                let seen = match &app {
                    Some(app) => AppSeen::Known(app.id(), app.view()),
                    None => AppSeen::Unknown(id),
                };
                self.recorded(Subject::RefusedSession(error), &Facts::of(seen), asked).await
            }
        }
    }

    /// [`Authorizer::check_session`](crate::Authorizer::check_session) if the token was verified before and the app and the grant are
    /// cached: synchronous, lock-free and allocation-free. `None` means `check_session` would
    /// verify or read: call it then.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, Capability};
    /// let dash = AppId("dash".into());
    /// let link = authz.issue_link(&dash, "dana@example.com").await.unwrap(); // dana is invited to dash
    /// let token = authz.redeem_link(link.token.expose_secret(), Some(&dash)).await.unwrap().token;
    /// let token = token.expose_secret();
    /// assert!(authz.check_session_cached(token, &dash, Capability::View).is_none()); // never verified here
    /// authz.check_session(token, &dash, Capability::View).await.unwrap();
    /// assert!(authz.check_session_cached(token, &dash, Capability::View).unwrap().is_allowed());
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn check_session_cached(&self, token: &str, app: &AppId, cap: Capability) -> Option<Decision> {
        if cap.is_destructive() {
            return None; // recorded: never answered from memory alone
        }
        let inner = &*self.inner;
        let (asked, now) = (Asked::Capability(cap), inner.clock.now());
        inner
            .cache
            .sessions
            .with(token, now, |session| {
                inner.cache.records.with_app(app, now, |app, stamp| {
                    let seen = AppSeen::Known(app.id(), app.view());
                    self.decide_in_memory(Subject::Viewer(session), seen, Some(stamp), asked, now)
                })
            })
            .flatten()
            .flatten()
    }

    /// The app with this id, from the cache or the store; `None` if there is none. What to pass to
    /// [`Authorizer::check`](crate::Authorizer::check) when the app is needed whole (its coordinates, its visibility).
    ///
    /// # Errors
    ///
    /// [`CheckError::Store`](crate::CheckError::Store) if the store cannot answer, or holds a record that is not an app.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::AppId;
    /// let dash = authz.app(&AppId("dash".into())).await.unwrap().unwrap();
    /// assert_eq!(dash.coords().to_string(), "acme/dashboard");
    /// assert!(authz.app(&AppId("nope".into())).await.unwrap().is_none());
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn app(&self, id: &AppId) -> Result<Option<App>, CheckError> {
        self.app_with(id, Consistency::Cached).await
    }

    pub(super) async fn app_with(&self, id: &AppId, consistency: Consistency) -> Result<Option<App>, CheckError> {
        let inner = &*self.inner;
        if consistency == Consistency::Cached {
            if let Some(app) = inner.cache.records.with_app(id, inner.clock.now(), |app, _| app.clone()) {
                return Ok(Some(app));
            }
        }
        Ok(self.load_app(id).await?.map(|(app, _)| app))
    }

    /// Reads the app from the store, and remembers it; with its cache stamp if it stayed.
    async fn load_app(&self, id: &AppId) -> Result<Option<(App, Option<u64>)>, CheckError> {
        let inner = &*self.inner;
        let started = inner.cache.records.begin();
        let Some(record) = inner.store.app(id).await? else { return Ok(None) };
        let app = record.app().map_err(|e| CheckError::Store(e.into()))?;
        let stamp = inner.cache.records.remember_app(app.clone(), started, inner.clock.now());
        Ok(Some((app, stamp)))
    }

    /// The answer if it needs no request: anonymous and public-view checks, and cache hits that are
    /// fresh enough for `cap` (`deploy` and `delete` take facts no older than `strict_max_age`).
    /// Synchronous, allocation-free on a hit; `None` means [`Authorizer::check`](crate::Authorizer::check) would ask GitHub
    /// (or, for a viewer, the store).
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{Capability, Principal};
    /// let (bob, dash) = (Principal::github(world.user("bob").unwrap()), world.app("dash").unwrap());
    /// assert!(authz.check_cached(&Principal::Anonymous, &dash, Capability::View).is_some()); // never asks
    /// assert!(authz.check_cached(&bob, &dash, Capability::Edit).is_none());
    /// authz.check(&bob, &dash, Capability::Edit).await.unwrap();
    /// assert!(authz.check_cached(&bob, &dash, Capability::Edit).unwrap().is_allowed());
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    #[inline]
    pub fn check_cached(&self, principal: &Principal, app: &App, cap: Capability) -> Option<Decision> {
        if cap.is_destructive() {
            return None; // recorded: never answered from memory alone
        }
        let seen = AppSeen::Known(app.id(), app.view());
        self.decide_in_memory(Subject::of(principal), seen, None, Asked::Capability(cap), self.inner.clock.now())
    }

    /// The decision from what memory holds: `None` where a fact it needs is not there (or not
    /// fresh enough). `stamp`: the cache stamp of the app's record, where the caller already
    /// looked it up. Synchronous, allocation-free on a hit.
    #[inline]
    fn decide_in_memory(
        &self,
        subject: Subject<'_>,
        app: AppSeen<'_>,
        stamp: Option<u64>,
        asked: Asked,
        now: Timestamp,
    ) -> Option<Decision> {
        if let Subject::Support(_) = subject {
            return None; // every support check is on record: never answered from memory alone
        }
        let policy = &self.inner.policy;
        let facts = Facts::of(app);
        match decide(policy, subject, &facts, asked, now) {
            Ok(decision) => Some(decision),
            Err(Missing::Github) => {
                let (Subject::Github(user), AppSeen::Known(_, view)) = (subject, app) else { return None };
                let key = PermKey { user: user.id, repo: view.repo_id };
                let decide = |fact: Seen<&_>| decide(policy, subject, &facts.with_github(fact), asked, now).ok();
                self.inner.cache.facts.cached(&key, view, age_for(asked, Consistency::Cached), now, decide).flatten()
            }
            Err(Missing::Grant) => self.grant_in_memory(subject, &facts, stamp, asked, now),
            Err(Missing::App | Missing::Windows) => None,
        }
    }

    /// A viewer's decision from the grant in memory: kept out of line, so that the GitHub user's
    /// hit stays short.
    #[inline(never)]
    fn grant_in_memory(
        &self,
        subject: Subject<'_>,
        facts: &Facts<'_>,
        stamp: Option<u64>,
        asked: Asked,
        now: Timestamp,
    ) -> Option<Decision> {
        let Subject::Viewer(session) = subject else { return None };
        let records = &self.inner.cache.records;
        let stamp = stamp.or_else(|| records.with_app(facts.app.id(), now, |_, stamp| stamp))?;
        let read_at = records.grant_live(session.grant(), stamp)?;
        let grant = Seen::cached(true, now.millis_since(read_at));
        decide(&self.inner.policy, subject, &facts.with_grant(grant), asked, now).ok()
    }

    /// A check past the hit, decided and on record (`deploy` and `delete`, and every support
    /// agent's check, allowed or denied) before it is answered: a check that cannot be recorded
    /// is not answered. What the public checks call past their hit.
    pub(super) async fn check_recorded(
        &self,
        principal: &Principal,
        app: &App,
        cap: Capability,
        consistency: Consistency,
    ) -> Result<Decision, CheckError> {
        let asked = Asked::Capability(cap);
        let decision = self.decide_gathering(principal, app, asked, consistency).await?;
        let seen = AppSeen::Known(app.id(), app.view());
        self.record_decision(Subject::of(principal), seen, Audited::Check(asked, &decision)).await?;
        Ok(decision)
    }

    /// Decides from `facts` alone (no fact gathered), and records the decision as a check.
    async fn recorded(&self, subject: Subject<'_>, facts: &Facts<'_>, asked: Asked) -> Result<Decision, CheckError> {
        let decision = decide(&self.inner.policy, subject, facts, asked, self.inner.clock.now())
            .map_err(|_| CheckError::Undecided)?;
        self.record_decision(subject, facts.app, Audited::Check(asked, &decision)).await?;
        Ok(decision)
    }

    /// Writes what the audit log receives, if anything (the core's `audit_entry` says).
    pub(super) async fn record_decision(
        &self,
        subject: Subject<'_>,
        app: AppSeen<'_>,
        on: Audited<'_>,
    ) -> Result<(), CheckError> {
        match audit_entry(subject, app, on, self.inner.clock.now()) {
            Some(entry) => Ok(self.inner.store.record(&entry, None).await?),
            None => Ok(()),
        }
    }

    /// The decision for `principal` on `app`, gathering what it asks for: from memory unless
    /// `consistency` is fresh, else from GitHub (a GitHub user's role), or from the store (a
    /// viewer's grant, a support agent's windows). Not recorded.
    pub(super) async fn decide_gathering(
        &self,
        principal: &Principal,
        app: &App,
        asked: Asked,
        consistency: Consistency,
    ) -> Result<Decision, CheckError> {
        let inner = &*self.inner;
        let subject = Subject::of(principal);
        let facts = Facts::of(AppSeen::Known(app.id(), app.view()));
        let now = inner.clock.now();
        let missing = match decide(&inner.policy, subject, &facts, asked, now) {
            Ok(decision) => return Ok(decision),
            Err(missing) => missing,
        };
        if consistency == Consistency::Cached {
            if let Some(decision) = self.decide_in_memory(subject, facts.app, None, asked, now) {
                return Ok(decision);
            }
        }
        let decision = match (missing, principal) {
            (Missing::Github, Principal::GithubUser { user, token }) => {
                let key = PermKey { user: user.id, repo: app.repo_id() };
                let token = match (inner.cache.facts.user_token_mode(), token) {
                    (true, None) => return Err(CheckError::MissingUserToken { login: user.login.clone() }),
                    (true, Some(t)) => Some(t),
                    (false, _) => None,
                };
                let (entry, source) =
                    inner.cache.facts.load(key, app, user, token, age_for(asked, consistency)).await?;
                let now = inner.clock.now();
                decide(
                    &inner.policy,
                    subject,
                    &facts.with_github(FactCache::seen(&entry.core, source, now)),
                    asked,
                    now,
                )
            }
            (Missing::Grant, Principal::Viewer(session)) => {
                let grant = self.gather_grant(session, app, consistency).await?;
                decide(&inner.policy, subject, &facts.with_grant(grant), asked, inner.clock.now())
            }
            (Missing::Windows, Principal::Support { .. }) => {
                let (windows, source, age_ms) = self.gather_windows(app, consistency).await?;
                let seen = Seen { value: &windows[..], source, age_ms };
                decide(&inner.policy, subject, &facts.with_windows(seen), asked, inner.clock.now())
            }
            _ => Err(missing),
        };
        decision.map_err(|_| CheckError::Undecided)
    }

    /// Whether the grant a viewer's session was minted under still invites its address: from
    /// the cache while the store's feed is heard, otherwise read from the store now.
    async fn gather_grant(
        &self,
        session: &crate::core::session::Session,
        app: &App,
        consistency: Consistency,
    ) -> Result<Seen<bool>, CheckError> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        let mut stamp = None;
        if consistency == Consistency::Cached {
            // The app's stamp is taken before the grant is read, so that a removal applied after
            // the read forgets what the read found.
            stamp = match inner.cache.records.with_app(app.id(), now, |_, stamp| stamp) {
                Some(stamp) => match inner.cache.records.grant_live(session.grant(), stamp) {
                    Some(read_at) => return Ok(Seen::cached(true, now.millis_since(read_at))),
                    None => Some(stamp),
                },
                None => self.load_app(app.id()).await?.and_then(|(_, stamp)| stamp),
            };
        }
        let standing = inner.store.grant(app.id(), session.email()).await? == Some(session.grant());
        if let (true, Some(stamp)) = (standing, stamp) {
            inner.cache.records.remember_grant(session.grant(), stamp, now);
        }
        Ok(Seen::now(standing, Source::Store))
    }

    /// The app's support windows: cached as viewer grants are, read from the store when not
    /// cached or when `consistency` is fresh; with their source and age.
    async fn gather_windows(
        &self,
        app: &App,
        consistency: Consistency,
    ) -> Result<(Arc<[SupportWindow]>, Source, u64), CheckError> {
        let (records, now) = (&self.inner.cache.records, self.inner.clock.now());
        // Taken before the store is read: a change applied meanwhile forgets the app entry, and
        // windows remembered under its stamp are never served.
        let stamp = match consistency {
            Consistency::Cached => records.with_app(app.id(), now, |_, stamp| stamp),
            Consistency::Fresh => None,
        };
        if let Some((windows, read_at)) = stamp.and_then(|s| records.windows(app.id(), s)) {
            return Ok((windows, Source::Cache, now.millis_since(read_at)));
        }
        let windows: Arc<[SupportWindow]> = self.inner.store.support_windows(app.id()).await?.into();
        if let Some(stamp) = stamp {
            records.remember_windows(app.id(), stamp, now, windows.clone());
        }
        Ok((windows, Source::Store, 0))
    }
}

/// How old a fact may be for `asked` under `consistency`: `deploy` and `delete` take facts no
/// older than `strict_max_age`.
#[inline]
fn age_for(asked: Asked, consistency: Consistency) -> Age {
    match consistency {
        Consistency::Fresh => Age::Fresh,
        Consistency::Cached if asked.is_destructive() => Age::Strict,
        Consistency::Cached => Age::Ordinary,
    }
}
