//! Checks: gather, decide, record. Each check gathers the facts its decision asks for (from
//! memory on a hit; from GitHub or the store past it), lets the core's `decide` make the
//! decision, and writes what the core's `audit_entry` says the audit log receives.

use std::fmt;
use std::sync::Arc;

use super::Authorizer;
use crate::cache::{Age, Consistency, Facts as FactCache, PermKey};
use crate::core::check::{AppSeen, Asked, Audited, Facts, Missing, Seen, Subject, audit_entry, decide};
use crate::core::decision::{Decision, Source};
use crate::core::ids::{App, AppId, UserId};
use crate::core::policy::Capability;
use crate::core::principal::Principal;
use crate::core::support::SupportWindow;
use crate::core::time::Timestamp;
use crate::error::CheckError;
use crate::store::StoreError;
use crate::telemetry;

/// One question for [`Authorizer::check`]: who asks (a [`Principal`], or a viewer's session
/// token), of which app (by id, as a control plane's request path knows it, or given whole), for
/// which [`Capability`], on facts how old ([`Consistency`]: cached unless made
/// [`fresh`](CheckRequest::fresh)).
///
/// ```
/// use ghauthz::{AppId, Capability, CheckRequest, Consistency, Principal};
/// let dash = AppId("dash".into());
/// let req = CheckRequest::new(&Principal::Anonymous, &dash, Capability::View);
/// assert_eq!((req.capability(), req.consistency()), (Capability::View, Consistency::Cached));
/// let token = "eyJ..."; // a viewer's session token, as the control plane's cookie holds it
/// let req = CheckRequest::session(token, &dash, Capability::View).fresh();
/// assert_eq!(req.consistency(), Consistency::Fresh);
/// assert!(!format!("{req:?}").contains(token), "a token is never printed");
/// ```
#[derive(Clone, Copy)]
pub struct CheckRequest<'a> {
    who: Who<'a>,
    app: AppRef<'a>,
    cap: Capability,
    consistency: Consistency,
}

/// Who asks.
#[derive(Clone, Copy)]
enum Who<'a> {
    Principal(&'a Principal),
    /// A viewer's session token: verified by the check (once, then remembered).
    Session(&'a str),
    /// A GitHub user known by id, and perhaps by the login the caller believes is theirs.
    GithubId(UserId, Option<&'a str>),
}

/// The app a [`CheckRequest`] is about: by id (read from the cache or the store), or given whole
/// (one the caller holds, or [`AppRecord::app`](crate::store::AppRecord::app) of a record
/// [`Authorizer::app`] returned). Made from `&AppId` or `&App`.
#[derive(Debug, Clone, Copy)]
pub enum AppRef<'a> {
    /// The app with this id; `unknown_app` (a denial) when there is none.
    Id(&'a AppId),
    /// The app itself, as its record said.
    App(&'a App),
}

impl<'a> From<&'a AppId> for AppRef<'a> {
    fn from(id: &'a AppId) -> Self {
        AppRef::Id(id)
    }
}

impl<'a> From<&'a App> for AppRef<'a> {
    fn from(app: &'a App) -> Self {
        AppRef::App(app)
    }
}

impl<'a> AppRef<'a> {
    /// The app's id.
    pub fn id(self) -> &'a AppId {
        match self {
            AppRef::Id(id) => id,
            AppRef::App(app) => app.id(),
        }
    }
}

impl<'a> CheckRequest<'a> {
    /// May `principal` do `cap` to `app` (an `&AppId` or an `&App`)?
    #[inline]
    pub fn new(principal: &'a Principal, app: impl Into<AppRef<'a>>, cap: Capability) -> Self {
        CheckRequest { who: Who::Principal(principal), app: app.into(), cap, consistency: Consistency::Cached }
    }

    /// May the viewer holding session `token` do `cap` to `app`? A token that does not verify is
    /// a denial (`session_invalid`, with its [`SessionError`](crate::SessionError)), never an
    /// error.
    #[inline]
    pub fn session(token: &'a str, app: impl Into<AppRef<'a>>, cap: Capability) -> Self {
        CheckRequest { who: Who::Session(token), app: app.into(), cap, consistency: Consistency::Cached }
    }

    /// May the GitHub user with this id do `cap` to `app`? For a caller that holds only an id
    /// (an AuthZEN subject): the account's login is learnt from GitHub
    /// (`GET /user/{account_id}`, remembered as long as a role is), and `login`, if given, must
    /// be that account's (compared without regard to case), or the decision is a denial
    /// (`no_access`, `login_mismatch`). An id no user has holds no role (`no_access`,
    /// `no_role`). Answered by [`Authorizer::check`]; [`Authorizer::check_cached`] answers
    /// `None`. In user-token mode, where checks carry each user's own token, build a
    /// [`Principal`] instead.
    #[inline]
    pub fn github_id(id: UserId, login: Option<&'a str>, app: impl Into<AppRef<'a>>, cap: Capability) -> Self {
        CheckRequest { who: Who::GithubId(id, login), app: app.into(), cap, consistency: Consistency::Cached }
    }

    /// The same request, resting on nothing cached ([`Consistency::Fresh`]): the app and any
    /// grant read from the store, a session verified in full, GitHub's fact revalidated (a
    /// conditional request, which spends no rate limit when nothing changed).
    #[inline]
    pub fn fresh(self) -> Self {
        self.with_consistency(Consistency::Fresh)
    }

    /// The same request, with facts as old as `consistency` allows.
    #[inline]
    pub fn with_consistency(self, consistency: Consistency) -> Self {
        CheckRequest { consistency, ..self }
    }

    /// The capability asked for.
    pub fn capability(&self) -> Capability {
        self.cap
    }

    /// How old the facts may be.
    pub fn consistency(&self) -> Consistency {
        self.consistency
    }

    /// The app asked about.
    pub fn app(&self) -> AppRef<'a> {
        self.app
    }

    /// The principal asking; `None` for a session token (which names nobody until verified)
    /// and for a GitHub id (whose account is looked up by the check).
    pub fn principal(&self) -> Option<&'a Principal> {
        match self.who {
            Who::Principal(p) => Some(p),
            Who::Session(_) | Who::GithubId(..) => None,
        }
    }
}

/// Shows who asks without anything personal or secret: never a viewer's address, never the
/// session token.
impl fmt::Debug for CheckRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self.who {
            // A viewer's address is personal: `viewer` only.
            Who::Principal(Principal::Viewer(_)) => "viewer".to_owned(),
            Who::Principal(p) => p.label(),
            Who::Session(_) => "session token (redacted)".to_owned(),
            Who::GithubId(id, _) => format!("github:{}", id.0),
        };
        f.debug_struct("CheckRequest")
            .field("who", &who)
            .field("app", &self.app.id())
            .field("capability", &self.cap)
            .field("consistency", &self.consistency)
            .finish()
    }
}

impl Authorizer {
    /// Answers `request`: may this principal (or the viewer holding this session token) do this
    /// to this app? From memory when the facts there are fresh enough (see
    /// [`Authorizer::check_cached`]), otherwise asking GitHub (for a GitHub user's role) or the
    /// store (for the app, a viewer's grant, a support agent's windows); nobody signed in is
    /// decided without asking anything. `deploy` and `delete` are decided on facts no older than
    /// `strict_max_age`, and are on record in the audit log, allowed or denied, as is every
    /// support agent's check; a check that cannot be recorded is not answered.
    ///
    /// # Errors
    ///
    /// [`CheckError`] means "could not decide": treat it as a denial, and ask again after
    /// [`CheckError::retry_after`]. [`CheckError::Github`] when GitHub is unavailable, rate
    /// limited, refuses the credentials or answers unexpectedly; [`CheckError::Store`] when the
    /// app, a grant or the windows cannot be read, or the audit log written;
    /// [`CheckError::MissingUserToken`] in user-token mode, when GitHub must be asked and the
    /// principal carries no token. A denial is never an error: it is a [`Decision`].
    ///
    /// # Security
    ///
    /// A session token is verified in full (signature under a listed key, issuer, audience,
    /// expiry on the authorizer's clock) the first time; after that it is confirmed by comparing
    /// it whole, in constant time. Tokens are never logged.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, Capability, CheckRequest, Lookup, NoAccessDetail, Principal, Reason, Role, Source, Via};
    /// let dash = AppId("dash".into()); // private, on acme/dashboard
    /// let carol = Principal::github(world.user("carol").unwrap()); // write there
    /// let d = authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit)).await.unwrap();
    /// assert!(d.is_allowed());
    /// assert!(matches!(d.reason(), Reason::GithubRole { role: Role::Write, required: Role::Write, .. }));
    /// // Answered from the repository's roster, which lists `write` and up ...
    /// assert_eq!(d.lookup(), Some(Lookup::Roster));
    /// // ... and which answers for dave (triage there) without another request.
    /// let dave = Principal::github(world.user("dave").unwrap());
    /// let d = authz.check(&CheckRequest::new(&dave, &dash, Capability::View)).await.unwrap();
    /// assert_eq!(d.reason(), &Reason::NoAccess { detail: NoAccessDetail::NotOnRoster });
    /// // Fresh: revalidated with GitHub rather than answered from memory.
    /// let d = authz.check(&CheckRequest::new(&carol, &dash, Capability::Edit).fresh()).await.unwrap();
    /// assert_eq!(d.source(), Source::Github);
    /// // A viewer's session, as a redeemed link mints it (dana is invited to dash).
    /// let link = authz.issue_link(&dash, "dana@example.com").await.unwrap();
    /// let token = authz.redeem_link(link.token.expose_secret(), Some(&dash)).await.unwrap().token;
    /// let req = CheckRequest::session(token.expose_secret(), &dash, Capability::View);
    /// assert_eq!(authz.check(&req).await.unwrap().reason(), &Reason::ViewerGrant { via: Via::EmailLink });
    /// let forged = CheckRequest::session("eyJhbGciOiJub25lIn0.e30.", &dash, Capability::View);
    /// assert_eq!(authz.check(&forged).await.unwrap().reason().kind(), "session_invalid");
    /// let gone = authz.check(&CheckRequest::new(&carol, &AppId("gone".into()), Capability::View)).await.unwrap();
    /// assert_eq!(gone.reason().kind(), "unknown_app");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn check(&self, request: &CheckRequest<'_>) -> Result<Decision, CheckError> {
        if let Who::GithubId(id, login) = request.who {
            return Box::pin(self.check_github_id(id, login, request)).await;
        }
        if request.consistency == Consistency::Cached {
            if let Some(decision) = self.check_cached(request) {
                telemetry::cache_lookup(true);
                telemetry::decision(request.cap, Some(decision.is_allowed()));
                return Ok(decision);
            }
        }
        telemetry::cache_lookup(false);
        // Boxed: the hit's future stays a few words instead of carrying the slow path's state.
        let decided = Box::pin(self.check_uncached(request)).await;
        telemetry::decision(request.cap, decided.as_ref().ok().map(Decision::is_allowed));
        decided
    }

    /// [`Authorizer::check`] if it needs neither GitHub nor the store: synchronous, lock-free
    /// and allocation-free on a hit, for a path that cannot await. `None` means `check` would
    /// ask (or record: `deploy`, `delete` and support agents' checks are never answered from
    /// memory alone, nor is a fresh request): call it then. Nobody signed in is always answered.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, Capability, CheckRequest, Principal, Source};
    /// let (erin, dash) = (Principal::github(world.user("erin").unwrap()), AppId("dash".into()));
    /// let req = CheckRequest::new(&erin, &dash, Capability::Edit);
    /// assert!(authz.check_cached(&req).is_none()); // nothing cached yet
    /// authz.check(&req).await.unwrap();
    /// let hit = authz.check_cached(&req).unwrap();
    /// assert_eq!((hit.is_allowed(), hit.source()), (true, Source::Cache));
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    #[inline]
    pub fn check_cached(&self, request: &CheckRequest<'_>) -> Option<Decision> {
        let CheckRequest { who, app, cap, consistency } = *request;
        if cap.is_destructive() || consistency == Consistency::Fresh {
            return None; // recorded, or resting on nothing cached: never answered from memory
        }
        let inner = &*self.inner;
        let (asked, now) = (Asked::Capability(cap), inner.clock.now());
        match (who, app) {
            (Who::Principal(principal), AppRef::App(app)) => {
                self.decide_in_memory(Subject::of(principal), AppSeen::Known(app.id(), app.view()), None, asked, now)
            }
            (Who::Principal(principal), AppRef::Id(id)) => {
                let subject = Subject::of(principal);
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
            (Who::Session(token), app) => self.session_in_memory(token, app.id(), asked, now),
            (Who::GithubId(..), _) => None,
        }
    }

    /// A check by GitHub id: the account looked up, then the check of that user; a login that
    /// names another account, or an id no user has, decided on that fact.
    async fn check_github_id(
        &self,
        id: UserId,
        login: Option<&str>,
        request: &CheckRequest<'_>,
    ) -> Result<Decision, CheckError> {
        let age = match request.consistency {
            Consistency::Fresh => Age::Fresh,
            Consistency::Cached => Age::Ordinary,
        };
        let (found, source, age_ms) = self.github_account(id, login, age).await?;
        let fact = match found {
            Ok(user) => {
                let principal = Principal::github(user);
                return self.check(&CheckRequest { who: Who::Principal(&principal), ..*request }).await;
            }
            Err(fact) => fact,
        };
        let user = crate::core::ids::GithubUser::new(id, login.unwrap_or_default());
        // As any check: an app handed in is taken as it is, unless the request is fresh.
        let found = match request.app {
            AppRef::App(app) if request.consistency == Consistency::Cached => Some(app.clone()),
            AppRef::App(_) | AppRef::Id(_) => self.app_with(request.app.id(), request.consistency).await?,
        };
        let seen = AppSeen::looked_up(found.as_ref(), request.app.id());
        let facts = Facts::of(seen).with_github(Seen { value: &fact, source, age_ms });
        self.recorded(Subject::Github(&user), &facts, Asked::Capability(request.cap)).await
    }

    /// A viewer's session check from memory: the token verified before, the app and the grant
    /// cached. Kept out of line, so that the GitHub user's hit stays short.
    #[inline(never)]
    fn session_in_memory(&self, token: &str, id: &AppId, asked: Asked, now: Timestamp) -> Option<Decision> {
        let cache = &self.inner.cache;
        cache
            .sessions
            .with(token, now, |session| {
                cache.records.with_app(id, now, |app, stamp| {
                    let seen = AppSeen::Known(app.id(), app.view());
                    self.decide_in_memory(Subject::Viewer(session), seen, Some(stamp), asked, now)
                })
            })
            .flatten()
            .flatten()
    }

    /// [`Authorizer::check`] past the hit: the token verified, the app from the store if need
    /// be, then the check, on record where it must be.
    async fn check_uncached(&self, request: &CheckRequest<'_>) -> Result<Decision, CheckError> {
        let CheckRequest { who, app, cap, consistency } = *request;
        let asked = Asked::Capability(cap);
        let principal = match who {
            Who::Principal(principal) => std::borrow::Cow::Borrowed(principal),
            Who::GithubId(id, login) => return Box::pin(self.check_github_id(id, login, request)).await,
            Who::Session(token) => match self.verify_session_with(token, consistency) {
                Ok(session) => std::borrow::Cow::Owned(Principal::Viewer(session)),
                Err(error) => {
                    // The app is looked up only where the refusal may be on record (`deploy`
                    // and `delete` of an app that exists): a token that does not verify names
                    // nobody, and an id no app has could be any text.
                    let found = match asked.is_destructive() {
                        false => None,
                        true => self.app_with(app.id(), consistency).await?,
                    };
                    let seen = AppSeen::looked_up(found.as_ref(), app.id());
                    return self.recorded(Subject::RefusedSession(error), &Facts::of(seen), asked).await;
                }
            },
        };
        match app {
            // A fresh request rests on the app as the store holds it now, not as it was handed in.
            AppRef::App(app) if consistency == Consistency::Cached => {
                self.check_recorded(&principal, app, cap, consistency).await
            }
            AppRef::App(_) | AppRef::Id(_) => match self.app_with(app.id(), consistency).await? {
                Some(app) => self.check_recorded(&principal, &app, cap, consistency).await,
                None => self.recorded(Subject::of(&principal), &Facts::of(AppSeen::Unknown(app.id())), asked).await,
            },
        }
    }

    /// The app with this id as checks take it, from memory while it is held, else from the
    /// store (and remembered).
    pub(super) async fn app_with(&self, id: &AppId, consistency: Consistency) -> Result<Option<App>, StoreError> {
        let inner = &*self.inner;
        if consistency == Consistency::Cached {
            if let Some(app) = inner.cache.records.with_app(id, inner.clock.now(), |app, _| app.clone()) {
                return Ok(Some(app));
            }
        }
        Ok(self.load_app(id).await?.map(|(app, _)| app))
    }

    /// Reads the app from the store, and remembers it; with its cache stamp if it stayed.
    async fn load_app(&self, id: &AppId) -> Result<Option<(App, Option<u64>)>, StoreError> {
        let inner = &*self.inner;
        let started = inner.cache.records.begin();
        let Some(record) = inner.store.app(id).await? else { return Ok(None) };
        let app = record.app()?;
        let stamp = inner.cache.records.remember_app(app.clone(), started, inner.clock.now());
        Ok(Some((app, stamp)))
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
        let policy = &self.inner.policy;
        let facts = Facts::of(app);
        match (subject, app) {
            // Every support check is on record: never answered from memory alone.
            (Subject::Support(_), _) => return None,
            // A GitHub user's hit: the fact first, so that the common case decides once.
            (Subject::Github(user), AppSeen::Known(_, view) | AppSeen::Managed(_, view)) => {
                let key = PermKey { user: user.id, repo: view.repo_id };
                let decide = |fact: Seen<&_>| decide(policy, subject, &facts.with_github(fact), asked, now).ok();
                let age = age_for(asked, Consistency::Cached);
                if let Some(decision) = self.inner.cache.facts.cached(&key, view, age, now, decide).flatten() {
                    return Some(decision);
                }
            }
            _ => {}
        }
        match decide(policy, subject, &facts, asked, now) {
            Ok(decision) => Some(decision),
            Err(Missing::Grant) => self.grant_in_memory(subject, &facts, stamp, asked, now),
            Err(Missing::App | Missing::Github | Missing::Windows) => None,
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
        let decision = self.decide_gathering(principal, app, asked, consistency, false).await?;
        let seen = AppSeen::Known(app.id(), app.view());
        self.record_decision(Subject::of(principal), seen, Audited::Check(asked, &decision)).await?;
        Ok(decision)
    }

    /// The decision [`Authorizer::check`] makes, gathered the same way, and recorded nowhere:
    /// for reports (`explain`, decision tables), which must not write the audit log (an
    /// invited address would otherwise land on every app's entries).
    #[cfg(feature = "world")]
    pub(crate) async fn check_unrecorded(
        &self,
        principal: &Principal,
        app: &App,
        cap: Capability,
    ) -> Result<Decision, CheckError> {
        if let Some(decision) = self.check_cached(&CheckRequest::new(principal, app, cap)) {
            return Ok(decision);
        }
        self.decide_gathering(principal, app, Asked::Capability(cap), Consistency::Cached, false).await
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
    /// viewer's grant, a support agent's windows). Not recorded. `managed`: the app is being
    /// changed by a GitHub user ([`AppSeen::Managed`]), not checked.
    pub(super) async fn decide_gathering(
        &self,
        principal: &Principal,
        app: &App,
        asked: Asked,
        consistency: Consistency,
        managed: bool,
    ) -> Result<Decision, CheckError> {
        let inner = &*self.inner;
        let subject = Subject::of(principal);
        let seen = match managed {
            true => AppSeen::Managed(app.id(), app.view()),
            false => AppSeen::Known(app.id(), app.view()),
        };
        let facts = Facts::of(seen);
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
