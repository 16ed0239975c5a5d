//! Gather, decide, record. A check gathers the facts it rests on into [`Facts`]; [`decide`]
//! alone makes its [`Decision`] from them, and [`audit_entry`] alone says what the audit log
//! receives for it. Both are pure: no I/O, the time given. Every path that answers "may this
//! principal do this?" (a hit, a miss, by app, by id, by session token, a support agent's check,
//! management, listings, `explain`, decision tables) calls these two; nothing else makes a
//! `Decision` or composes the audit entry of a decision.

use std::fmt;

use crate::core::audit::{Actor, AuditAction, AuditEvent, AuditOutcome};
use crate::core::decision::{Decision, Fact, NoAccessDetail, Outcome, Reason, Source, decide_github};
use crate::core::deployment::{MAX_DEPLOY_FIELD, valid_app_id};
use crate::core::email::Email;
use crate::core::ids::{App, AppId, AppView, GithubUser};
use crate::core::policy::{Capability, Need, Policy, Visibility};
use crate::core::principal::Principal;
use crate::core::session::{Session, SessionError};
use crate::core::support::{SupportWindow, decide_support, valid_agent_name};
use crate::core::time::Timestamp;

/// Who asks, as the decision sees them: a [`Principal`], or a session token that did not verify.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject<'a> {
    /// Nobody signed in.
    Anonymous,
    /// A GitHub user.
    Github(&'a GithubUser),
    /// A viewer with a verified session.
    Viewer(&'a Session),
    /// A support agent, by the name given.
    Support(&'a str),
    /// A session token that was refused: it names nobody.
    RefusedSession(SessionError),
}

impl<'a> Subject<'a> {
    /// The principal as the decision sees it.
    #[inline]
    pub(crate) fn of(principal: &'a Principal) -> Self {
        match principal {
            Principal::Anonymous => Subject::Anonymous,
            Principal::GithubUser { user, .. } => Subject::Github(user),
            Principal::Viewer(session) => Subject::Viewer(session),
            Principal::Support { agent } => Subject::Support(agent),
        }
    }
}

/// What is asked: a capability, or managing the app's viewers (the policy's `sharing` role).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asked {
    /// `view`, `edit`, `deploy` or `delete`.
    Capability(Capability),
    /// Managing the app's viewers.
    Sharing,
}

impl Asked {
    /// What the policy asks for it.
    #[inline]
    pub(crate) fn need(self, policy: &Policy) -> Need {
        match self {
            Asked::Capability(cap) => policy.need(cap),
            Asked::Sharing => policy.sharing_need(),
        }
    }

    /// `deploy` or `delete`: on record, and decided on facts no older than `strict_max_age`.
    #[inline]
    pub(crate) fn is_destructive(self) -> bool {
        matches!(self, Asked::Capability(cap) if cap.is_destructive())
    }
}

impl fmt::Display for Asked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Asked::Capability(cap) => f.write_str(cap.as_str()),
            Asked::Sharing => f.write_str("sharing"),
        }
    }
}

/// The app a check is about, as it was seen.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AppSeen<'a> {
    /// The app, as the cache or the store holds it (or as a deploy would record it).
    Known(&'a AppId, AppView),
    /// No app has this id.
    Unknown(&'a AppId),
    /// An app to deploy, or to manage (its visibility, its viewers, its deletion, its support
    /// windows): only a GitHub user may, and their decision rests on the app itself
    /// ([`Missing::App`], then [`AppSeen::Managed`]); anyone else is refused before anything is
    /// looked up.
    Changing(&'a AppId),
    /// The app a GitHub user manages, as the store holds it: decided as [`AppSeen::Known`] is,
    /// except that an id deploys refuse ([`refused_id`]) is no obstacle (an app stored before
    /// the rule may still be changed and deleted; only checks never allow it `deploy` or
    /// `delete`).
    Managed(&'a AppId, AppView),
}

impl<'a> AppSeen<'a> {
    /// The app looked up by `id`: [`AppSeen::Known`] if found, else [`AppSeen::Unknown`].
    pub(crate) fn looked_up(found: Option<&'a App>, id: &'a AppId) -> Self {
        match found {
            Some(app) => AppSeen::Known(app.id(), app.view()),
            None => AppSeen::Unknown(id),
        }
    }

    /// The app's id.
    pub(crate) fn id(self) -> &'a AppId {
        match self {
            AppSeen::Known(id, _) | AppSeen::Managed(id, _) | AppSeen::Unknown(id) | AppSeen::Changing(id) => id,
        }
    }
}

/// A fact with where it came from and how old it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen<T> {
    pub(crate) value: T,
    pub(crate) source: Source,
    /// Time since its source confirmed it, in milliseconds (zero when asked during this check).
    pub(crate) age_ms: u64,
}

impl<T> Seen<T> {
    /// `value`, asked of `source` during this check.
    #[inline]
    pub(crate) fn now(value: T, source: Source) -> Self {
        Seen { value, source, age_ms: 0 }
    }

    /// `value`, from the cache, confirmed `age_ms` ago.
    #[inline]
    pub(crate) fn cached(value: T, age_ms: u64) -> Self {
        Seen { value, source: Source::Cache, age_ms }
    }
}

/// What a check rests on. A check gathers only what [`decide`] asks for ([`Missing`]): a
/// GitHub user's fact, a viewer's grant, or the app's support windows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    pub(crate) app: AppSeen<'a>,
    /// What GitHub says of the user and the app's repository.
    pub(crate) github: Option<Seen<&'a Fact>>,
    /// Whether the grant the viewer's session was minted under still invites its address.
    pub(crate) grant: Option<Seen<bool>>,
    /// The app's support windows.
    pub(crate) windows: Option<Seen<&'a [SupportWindow]>>,
}

impl<'a> Facts<'a> {
    /// The app alone: nothing else gathered yet.
    #[inline]
    pub(crate) fn of(app: AppSeen<'a>) -> Self {
        Facts { app, github: None, grant: None, windows: None }
    }

    /// The same facts, with GitHub's fact.
    #[inline]
    pub(crate) fn with_github(self, fact: Seen<&'a Fact>) -> Self {
        Facts { github: Some(fact), ..self }
    }

    /// The same facts, with the viewer's grant.
    #[inline]
    pub(crate) fn with_grant(self, grant: Seen<bool>) -> Self {
        Facts { grant: Some(grant), ..self }
    }

    /// The same facts, with the app's support windows.
    #[inline]
    pub(crate) fn with_windows(self, windows: Seen<&'a [SupportWindow]>) -> Self {
        Facts { windows: Some(windows), ..self }
    }
}

/// The fact [`decide`] needs and was not given: gather it, then ask again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// The app itself: the repository a deploy names, or the app a GitHub user manages.
    App,
    /// GitHub's fact about the user and the app's repository.
    Github,
    /// The viewer's grant.
    Grant,
    /// The app's support windows.
    Windows,
}

/// Whether `id` is an app id no check of `deploy` or `delete` ever allows and no entry is
/// written for: empty, longer than [`MAX_DEPLOY_FIELD`] bytes, or holding a control character.
/// An app stored before deployments kept to the app-id alphabet ([`valid_app_id`]) may have an
/// id outside it: it is checked, listed, changed, deleted and audited as any other, unless its
/// id is refused here.
#[inline]
pub(crate) fn refused_id(id: &AppId) -> bool {
    let s = id.0.as_str();
    s.is_empty() || s.len() > MAX_DEPLOY_FIELD || s.chars().any(char::is_control)
}

/// The policy's decision: may `subject` do what is `asked` of the app in `facts`, at `now`?
/// `Err` names the fact to gather first (never for an anonymous check, nor for a GitHub user
/// viewing a public app).
///
/// - No app: `unknown_app` (a refused session token: `session_invalid`).
/// - A check of `deploy` or `delete` on an app whose id deploys refuse ([`refused_id`]):
///   `unknown_app`, except for a support agent, whose windows never grant either (managing such
///   an app, [`AppSeen::Managed`], is decided as any other).
/// - A GitHub user: their role against the policy ([`Facts::github`]); a public app's `view` is
///   open to anyone.
/// - A viewer: a session for this app and unexpired, `view` only, and the grant it was minted
///   under standing ([`Facts::grant`]).
/// - A support agent: an open window that admits them and names the capability
///   ([`Facts::windows`]); never `deploy`, `delete` or managing viewers.
/// - Nobody: a public app's `view`.
///
/// The decision's source and age are those of the fact that decided; the app's record alone
/// decides as [`Source::Store`], age zero.
#[inline]
pub(crate) fn decide(
    policy: &Policy,
    subject: Subject<'_>,
    facts: &Facts<'_>,
    asked: Asked,
    now: Timestamp,
) -> Result<Decision, Missing> {
    let record = |outcome, reason| Ok(Decision::new(outcome, reason, Source::Store, 0));
    let deny = |detail| record(Outcome::Deny, Reason::NoAccess { detail });
    if let Subject::RefusedSession(error) = subject {
        return record(Outcome::Deny, Reason::SessionInvalid { error });
    }
    let (id, app, checked) = match facts.app {
        AppSeen::Known(id, app) => (id, app, true),
        AppSeen::Managed(id, app) => (id, app, false),
        AppSeen::Unknown(_) => return record(Outcome::Deny, Reason::UnknownApp),
        AppSeen::Changing(_) => {
            return match subject {
                Subject::Github(_) => Err(Missing::App),
                Subject::Viewer(_) => deny(NoAccessDetail::ViewOnly),
                Subject::Support(_) => deny(NoAccessDetail::NoSupportWindow),
                Subject::Anonymous | Subject::RefusedSession(_) => deny(NoAccessDetail::Anonymous),
            };
        }
    };
    let need = asked.need(policy);
    if checked && asked.is_destructive() && refused_id(id) && !matches!(subject, Subject::Support(_)) {
        // Such an app is never deployed or deleted through a check.
        return record(Outcome::Deny, Reason::UnknownApp);
    }
    let public_view = need.open_on_public && app.visibility == Visibility::Public;
    // A login that names another account is refused whatever else: the caller does not know
    // whom it asks about (gathered only where it must be, and for a check by GitHub id).
    let login_refused = matches!(facts.github.map(|s| s.value), Some(Fact::LoginMismatch));
    match subject {
        Subject::Github(_) if public_view && !login_refused => record(Outcome::Allow, Reason::PublicApp),
        Subject::Github(_) => {
            let seen = facts.github.ok_or(Missing::Github)?;
            let (outcome, reason) = decide_github(need, app.repo_id, app.visibility, seen.value);
            Ok(Decision::github(outcome, reason, seen.source, seen.age_ms, seen.value.lookup()))
        }
        Subject::Anonymous if public_view => record(Outcome::Allow, Reason::PublicApp),
        Subject::Anonymous => deny(NoAccessDetail::Anonymous),
        Subject::Viewer(session) => {
            let invalid = |error| record(Outcome::Deny, Reason::SessionInvalid { error });
            if session.expires_at() <= now {
                invalid(SessionError::Expired)
            } else if session.app() != id {
                invalid(SessionError::WrongApp)
            } else if !need.open_on_public {
                deny(NoAccessDetail::ViewOnly)
            } else if public_view {
                record(Outcome::Allow, Reason::PublicApp)
            } else {
                let seen = facts.grant.ok_or(Missing::Grant)?;
                let (outcome, reason) = match seen.value {
                    true => (Outcome::Allow, Reason::ViewerGrant { via: session.via() }),
                    false => (Outcome::Deny, Reason::NotInvited),
                };
                Ok(Decision::new(outcome, reason, seen.source, seen.age_ms))
            }
        }
        Subject::Support(agent) => {
            let grantable = need.capability.filter(|c| !c.is_destructive());
            if grantable.is_none() {
                return deny(NoAccessDetail::NoSupportWindow);
            }
            if public_view {
                return record(Outcome::Allow, Reason::PublicApp);
            }
            let seen = facts.windows.ok_or(Missing::Windows)?;
            let (outcome, reason) = decide_support(seen.value, agent, grantable, app.visibility, now);
            Ok(Decision::new(outcome, reason, seen.source, seen.age_ms))
        }
        Subject::RefusedSession(error) => record(Outcome::Deny, Reason::SessionInvalid { error }),
    }
}

/// What the audit log is asked to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audited<'a> {
    /// A check's decision ([`AuditAction::Check`], [`AuditAction::SupportCheck`]).
    Check(Asked, &'a Decision),
    /// A change (deploy, visibility, delete, viewers, support windows) the decision refused.
    Refusal(AuditAction, &'a Decision),
    /// A deploy refused for what it found, the policy allowing it or not yet asked: no
    /// repository GitHub shows there (`repo_not_found`), or the id taken (`app_exists`).
    DeployRefused(&'static str),
}

/// What the audit log receives, at `at`, for `subject` on `app`; `None`: nothing is written.
///
/// - Every support agent's check, allowed or denied ([`AuditAction::SupportCheck`]), unless
///   its id is no app's and could be no app's ([`refused_id`]).
/// - Anyone else's check of `deploy` or `delete` ([`AuditAction::Check`]), except of an id
///   [`refused_id`] refuses, and, for an id no app has, only a GitHub user's, and only of an
///   id that could become an app's ([`valid_app_id`]): anyone else (nobody, a session) could
///   fill the log with ids of their choosing.
/// - A refused change, with the reason's kind, by the same rules for an id no app has.
///
/// An entry names a viewer's address only on the app the session is for (the app's deletion
/// clears it), and a support agent by a name that is an agent's name (else `invalid-name`).
pub(crate) fn audit_entry(
    subject: Subject<'_>,
    app: AppSeen<'_>,
    on: Audited<'_>,
    at: Timestamp,
) -> Option<AuditEvent> {
    let id = app.id();
    let known = !matches!(app, AppSeen::Unknown(_));
    let outcome = |d: &Decision| if d.is_allowed() { AuditOutcome::Allowed } else { AuditOutcome::Denied };
    let (action, outcome, detail) = match on {
        Audited::Check(asked, decision) => {
            let kind = decision.reason().kind();
            if let Subject::Support(agent) = subject {
                if !known && refused_id(id) {
                    return None;
                }
                let actor = Actor::Support(audited_agent(agent).into());
                let event = AuditEvent::new(at, &actor, id, AuditAction::SupportCheck);
                return Some(event.with_outcome(outcome(decision)).with_detail(format!("{asked}: {kind}")));
            }
            if !asked.is_destructive() || refused_id(id) {
                return None;
            }
            (AuditAction::Check, outcome(decision), format!("{asked}: {kind}"))
        }
        Audited::Refusal(_, decision) if decision.is_allowed() => return None,
        Audited::Refusal(action, decision) => (action, AuditOutcome::Denied, decision.reason().kind().to_owned()),
        Audited::DeployRefused(why) => (AuditAction::Deploy, AuditOutcome::Denied, why.to_owned()),
    };
    let (actor, email) = match (subject, known) {
        (Subject::Github(user), true) => (Actor::Github(user.id), None),
        // An id no app has: a GitHub user's, if the id could become an app's; nobody else's.
        (Subject::Github(user), false) if valid_app_id(&id.0) => (Actor::Github(user.id), None),
        (_, false) => return None,
        // A deploy's refusal belongs to no app whose deletion would clear an address.
        (Subject::Viewer(session), true) if matches!(app, AppSeen::Known(..)) => viewer_on(session, id),
        (Subject::Viewer(_) | Subject::RefusedSession(_), true) => (Actor::Viewer, None),
        (Subject::Support(agent), true) => (Actor::Support(audited_agent(agent).into()), None),
        (Subject::Anonymous, true) => (Actor::Anonymous, None),
    };
    let mut event = AuditEvent::new(at, &actor, id, action).with_outcome(outcome).with_detail(detail);
    if let Some(email) = email {
        event = event.with_email(email);
    }
    Some(event)
}

/// A viewer in the audit log of `app`: the session's address only if the session is for `app`.
fn viewer_on<'a>(session: &'a Session, app: &AppId) -> (Actor, Option<&'a Email>) {
    (Actor::Viewer, (session.app() == app).then(|| session.email()))
}

/// An agent's name as the audit log writes it: a name that is not an agent's name (it could be
/// anything, an address included) is written as `invalid-name`.
pub(crate) fn audited_agent(agent: &str) -> &str {
    if valid_agent_name(agent) { agent } else { "invalid-name" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::decision::Lookup;
    use crate::core::ids::{GrantId, RepoId, SupportId, UserId};
    use crate::core::policy::{Role, RoleGrant};
    use crate::core::session::Via;

    const NOW: Timestamp = Timestamp(10_000);

    fn dash() -> AppId {
        AppId("dash".into())
    }

    fn view(visibility: Visibility) -> AppView {
        AppView { repo_id: RepoId(7), visibility, coords_fp: 1 }
    }

    fn session(app: &str, expires_at: u64) -> Session {
        Session {
            app: AppId(app.into()),
            email: Email::parse("dana@example.com").unwrap(),
            grant: GrantId(3),
            via: Via::EmailLink,
            expires_at: Timestamp(expires_at),
        }
    }

    fn decide_on(subject: Subject<'_>, facts: &Facts<'_>, cap: Capability) -> Result<Decision, Missing> {
        decide(&Policy::default(), subject, facts, Asked::Capability(cap), NOW)
    }

    #[test]
    fn a_github_user_is_decided_by_the_fact_gathered_with_its_source_and_age() {
        let (id, user) = (dash(), GithubUser::new(UserId(2), "bob"));
        let private = Facts::of(AppSeen::Known(&id, view(Visibility::Private)));
        let subject = Subject::Github(&user);
        assert_eq!(decide_on(subject, &private, Capability::Edit), Err(Missing::Github));
        let fact = Fact::Rostered(Some(RoleGrant::standard(Role::Write)));
        let d = decide_on(subject, &private.with_github(Seen::cached(&fact, 1_500)), Capability::Edit).unwrap();
        assert!(d.is_allowed());
        assert_eq!((d.source(), d.age().as_millis(), d.lookup()), (Source::Cache, 1_500, Some(Lookup::Roster)));
        let d = decide_on(subject, &private.with_github(Seen::now(&fact, Source::Github)), Capability::Deploy).unwrap();
        assert_eq!((d.is_allowed(), d.source(), d.age().as_millis()), (false, Source::Github, 0));
        // A public app's view needs no fact.
        let public = Facts::of(AppSeen::Known(&id, view(Visibility::Public)));
        assert_eq!(decide_on(subject, &public, Capability::View).unwrap().reason(), &Reason::PublicApp);
        assert_eq!(decide_on(subject, &public, Capability::Edit), Err(Missing::Github));
    }

    #[test]
    fn a_viewer_needs_a_live_session_for_this_app_view_only_and_a_standing_grant() {
        let id = dash();
        let private = Facts::of(AppSeen::Known(&id, view(Visibility::Private)));
        let live = session("dash", 20_000);
        let kind = |s: &Session, f: &Facts<'_>, cap| decide_on(Subject::Viewer(s), f, cap).map(|d| d.reason().clone());
        assert_eq!(kind(&live, &private, Capability::View), Err(Missing::Grant));
        let expired = session("dash", NOW.0);
        assert_eq!(
            kind(&expired, &private, Capability::View),
            Ok(Reason::SessionInvalid { error: SessionError::Expired })
        );
        let other = session("site", 20_000);
        assert_eq!(
            kind(&other, &private, Capability::View),
            Ok(Reason::SessionInvalid { error: SessionError::WrongApp })
        );
        assert_eq!(kind(&live, &private, Capability::Edit), Ok(Reason::NoAccess { detail: NoAccessDetail::ViewOnly }));
        let granted = private.with_grant(Seen::cached(true, 4_000));
        let d = decide_on(Subject::Viewer(&live), &granted, Capability::View).unwrap();
        assert_eq!(d.reason(), &Reason::ViewerGrant { via: Via::EmailLink });
        assert_eq!((d.source(), d.age().as_millis()), (Source::Cache, 4_000), "the grant's own age");
        let gone = private.with_grant(Seen::now(false, Source::Store));
        assert_eq!(kind(&live, &gone, Capability::View), Ok(Reason::NotInvited));
    }

    #[test]
    fn a_support_agent_needs_a_window_and_never_gets_deploy_delete_or_sharing() {
        let id = dash();
        let private = Facts::of(AppSeen::Known(&id, view(Visibility::Private)));
        let window = SupportWindow {
            id: SupportId(9),
            app: id.clone(),
            agent: None,
            capabilities: vec![Capability::View, Capability::Edit],
            opened_at: Timestamp(0),
            ends_at: Timestamp(50_000),
            reason: "ticket".into(),
            granted_by: "operator".into(),
            revoked_at: None,
        };
        let agent = Subject::Support("a7");
        assert_eq!(decide_on(agent, &private, Capability::Edit), Err(Missing::Windows));
        for cap in [Capability::Deploy, Capability::Delete] {
            let d = decide_on(agent, &private, cap).unwrap();
            assert_eq!(d.reason(), &Reason::NoAccess { detail: NoAccessDetail::NoSupportWindow }, "{cap}");
        }
        let sharing = decide(&Policy::default(), agent, &private, Asked::Sharing, NOW).unwrap();
        assert!(!sharing.is_allowed());
        let windows = [window];
        let d = decide_on(agent, &private.with_windows(Seen::cached(&windows[..], 700)), Capability::Edit).unwrap();
        assert_eq!(d.reason(), &Reason::SupportWindow { window: SupportId(9), ends_at: Timestamp(50_000) });
        assert_eq!(d.age().as_millis(), 700);
    }

    #[test]
    fn unknown_ids_refused_ids_and_refused_tokens() {
        let (id, user) = (dash(), GithubUser::new(UserId(2), "bob"));
        let unknown = Facts::of(AppSeen::Unknown(&id));
        assert_eq!(
            decide_on(Subject::Github(&user), &unknown, Capability::View).unwrap().reason(),
            &Reason::UnknownApp
        );
        let refused = Subject::RefusedSession(SessionError::Invalid);
        let d = decide_on(refused, &unknown, Capability::View).unwrap();
        assert_eq!(d.reason(), &Reason::SessionInvalid { error: SessionError::Invalid }, "the token decides first");
        let odd = AppId("dash\n".into());
        let known = Facts::of(AppSeen::Known(&odd, view(Visibility::Private)));
        let d = decide_on(Subject::Github(&user), &known, Capability::Delete).unwrap();
        assert_eq!(d.reason(), &Reason::UnknownApp, "an id deploys refuse is never deleted through a check");
        assert_eq!(decide_on(Subject::Github(&user), &known, Capability::Edit), Err(Missing::Github));
        let managed = Facts::of(AppSeen::Managed(&odd, view(Visibility::Private)));
        let admin = Fact::Role(Some(RoleGrant::standard(Role::Admin)));
        let d = decide_on(
            Subject::Github(&user),
            &managed.with_github(Seen::now(&admin, Source::Github)),
            Capability::Delete,
        );
        assert!(d.unwrap().is_allowed(), "an app stored under such an id may still be deleted by its admin");
    }

    #[test]
    fn only_github_users_change_apps() {
        let (id, user) = (dash(), GithubUser::new(UserId(2), "bob"));
        let changing = Facts::of(AppSeen::Changing(&id));
        assert_eq!(decide_on(Subject::Github(&user), &changing, Capability::Deploy), Err(Missing::App));
        let live = session("dash", 20_000);
        let detail = |s| match decide_on(s, &changing, Capability::Deploy).unwrap().reason() {
            Reason::NoAccess { detail } => *detail,
            other => panic!("{other:?}"),
        };
        assert_eq!(detail(Subject::Viewer(&live)), NoAccessDetail::ViewOnly);
        assert_eq!(detail(Subject::Support("a7")), NoAccessDetail::NoSupportWindow);
        assert_eq!(detail(Subject::Anonymous), NoAccessDetail::Anonymous);
    }

    #[test]
    fn the_audit_log_receives_destructive_checks_support_checks_and_refusals() {
        let (id, user) = (dash(), GithubUser::new(UserId(2), "bob"));
        let known = AppSeen::Known(&id, view(Visibility::Private));
        let deny = Decision::new(Outcome::Deny, Reason::NoAccess { detail: NoAccessDetail::NoRole }, Source::Store, 0);
        let check = |s, app, cap| audit_entry(s, app, Audited::Check(Asked::Capability(cap), &deny), NOW);
        // `view` and `edit` checks are not on record; `deploy` and `delete` are.
        assert!(check(Subject::Github(&user), known, Capability::Edit).is_none());
        let e = check(Subject::Github(&user), known, Capability::Delete).unwrap();
        assert_eq!((e.actor.as_str(), e.action, e.outcome), ("github:2", AuditAction::Check, AuditOutcome::Denied));
        assert_eq!(e.detail.as_deref(), Some("delete: no_access"));
        // Every support check, named by a valid name only.
        let e = check(Subject::Support("dana@example.com"), known, Capability::View).unwrap();
        assert_eq!((e.actor.as_str(), e.action), ("support:invalid-name", AuditAction::SupportCheck));
        // An id no app has: a GitHub user's check of an id that could be an app's, nobody else's.
        let nowhere = AppId("nowhere".into());
        let unknown = AppSeen::Unknown(&nowhere);
        assert!(check(Subject::Github(&user), unknown, Capability::Delete).is_some());
        assert!(check(Subject::Anonymous, unknown, Capability::Delete).is_none());
        let junk = AppId("no such app".into());
        assert!(check(Subject::Github(&user), AppSeen::Unknown(&junk), Capability::Delete).is_none());
        // A viewer's address on this app only.
        let live = session("dash", 20_000);
        let e = check(Subject::Viewer(&live), known, Capability::Delete).unwrap();
        assert_eq!(e.email.as_ref().map(Email::as_str), Some("dana@example.com"));
        let site = AppId("site".into());
        let e = check(Subject::Viewer(&live), AppSeen::Known(&site, view(Visibility::Private)), Capability::Delete);
        assert_eq!(e.unwrap().email, None);
        // A refusal is written; an allowed change is the change's own entry.
        let refusal = audit_entry(Subject::Github(&user), known, Audited::Refusal(AuditAction::Visibility, &deny), NOW);
        assert_eq!(refusal.unwrap().detail.as_deref(), Some("no_access"));
        let allow = Decision::new(Outcome::Allow, Reason::PublicApp, Source::Store, 0);
        assert!(
            audit_entry(Subject::Github(&user), known, Audited::Refusal(AuditAction::Visibility, &allow), NOW)
                .is_none()
        );
    }
}
