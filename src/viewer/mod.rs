//! Invited viewers' sign-in: single-use email links and viewer sessions.

mod keys_file;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use keys_file::{KeysFileError, MAX_KEYS_FILE};

use crate::core::email::{Email, EmailError};
use crate::core::ids::{AppId, GrantId};
use crate::core::secret::{InvalidKey, LinkToken, RandomnessUnavailable, SessionKey, SessionToken};
use crate::core::session::{Session, SessionError, Via};
use crate::core::time::Timestamp;
use crate::google::{GoogleError, GoogleIdentity, GoogleVerifier};
use crate::store::{
    Actor, AuditAction, AuditEvent, IssueLimit, IssueOutcome, LinkRecord, Redemption, Store, StoreError,
};

const LINK_PREFIX: &str = "gl1_";
const ISSUER: &str = "ghauthz";
const AUDIENCE: &str = "ghauthz:viewer";

/// Lifetimes and limits of sign-in links.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkConfig {
    pub(crate) ttl: Duration,
    pub(crate) issue_limit: IssueLimit,
}

impl LinkConfig {
    /// How long a link works after it is issued. Default 15 minutes.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How many links one (app, address) may be issued. Default 5 per 15 minutes.
    pub fn with_issue_limit(mut self, issue_limit: IssueLimit) -> Self {
        self.issue_limit = issue_limit;
        self
    }

    /// As set by [`LinkConfig::with_ttl`].
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// As set by [`LinkConfig::with_issue_limit`].
    pub fn issue_limit(&self) -> IssueLimit {
        self.issue_limit
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(15 * 60),
            issue_limit: IssueLimit { max: 5, window: Duration::from_secs(15 * 60) },
        }
    }
}

/// Lifetime of viewer sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    pub(crate) ttl: Duration,
}

impl SessionConfig {
    /// How long a session lasts. Default 1 hour.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// As set by [`SessionConfig::with_ttl`].
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(3600) }
    }
}

/// The keys that sign viewer sessions: the first signs, every listed key verifies, so that keys
/// can rotate. A token signed by a key no longer listed is refused.
#[derive(Debug, Clone)]
pub struct SessionKeys {
    keys: Vec<SessionKey>,
}

#[derive(Serialize, Deserialize)]
struct KeysFile {
    session_keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
struct KeyEntry {
    kid: String,
    secret: String,
}

fn random_bytes<const N: usize>() -> Result<[u8; N], RandomnessUnavailable> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|_| RandomnessUnavailable)?;
    Ok(buf)
}

impl SessionKeys {
    /// Keys from a list whose first key signs. Refuses an empty list and duplicate ids.
    pub fn new(keys: Vec<SessionKey>) -> Result<Self, InvalidKey> {
        let mut kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        kids.sort_unstable();
        kids.dedup();
        if keys.is_empty() || kids.len() != keys.len() {
            return Err(InvalidKey);
        }
        Ok(Self { keys })
    }

    /// One fresh random key.
    pub fn generate() -> Result<Self, RandomnessUnavailable> {
        Ok(Self { keys: vec![Self::fresh_key()?] })
    }

    /// A key of 32 random bytes under a random 12-character id: what [`SessionKey::new`] accepts.
    fn fresh_key() -> Result<SessionKey, RandomnessUnavailable> {
        let kid = URL_SAFE_NO_PAD.encode(random_bytes::<9>()?);
        Ok(SessionKey { kid, secret: random_bytes::<32>()?.to_vec() })
    }

    /// A new signing key; the others stay listed and keep verifying.
    pub fn rotate(&mut self) -> Result<(), RandomnessUnavailable> {
        self.keys.insert(0, Self::fresh_key()?);
        Ok(())
    }

    /// Stops listing the key `kid`: tokens it signed are refused from now on. The signing key
    /// cannot be retired.
    pub fn retire(&mut self, kid: &str) -> bool {
        let before = self.keys.len();
        if self.keys.first().is_some_and(|k| k.kid == kid) {
            return false;
        }
        self.keys.retain(|k| k.kid != kid);
        self.keys.len() != before
    }

    /// The keys' ids, the signing key first.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    /// The keys file format, secrets included: write it only to a file only the service reads.
    pub fn to_json_with_secrets(&self) -> String {
        let file = KeysFile {
            session_keys: self
                .keys
                .iter()
                .map(|k| KeyEntry { kid: k.kid.clone(), secret: URL_SAFE_NO_PAD.encode(&k.secret) })
                .collect(),
        };
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    fn signing(&self) -> Option<&SessionKey> {
        self.keys.first()
    }

    fn find(&self, kid: &str) -> Option<&SessionKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

/// A link, issued: what the caller's mailer sends to [`IssuedLink::email`] (the stored address,
/// never what a requester typed).
#[derive(Debug)]
pub struct IssuedLink {
    /// The token to put in the link.
    pub token: LinkToken,
    /// The app.
    pub app: AppId,
    /// The invited address.
    pub email: Email,
    /// When it stops working.
    pub expires_at: Timestamp,
}

/// What inspecting a link tells, without using it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The app.
    pub app: AppId,
    /// The invited address.
    pub email: Email,
    /// When it stops working.
    pub expires_at: Timestamp,
}

/// A session, minted: the token to hand the viewer, and what it says.
#[derive(Debug)]
pub struct IssuedSession {
    /// The token.
    pub token: SessionToken,
    /// The verified session.
    pub session: Session,
}

/// A link sent: to whom, for which app, until when. The token went into the message alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentLink {
    /// The app.
    pub app: AppId,
    /// The stored address it was sent to.
    pub email: Email,
    /// When it stops working.
    pub expires_at: Timestamp,
}

/// Why a link was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendLinkError {
    /// The authorizer has no mailer ([`AuthorizerBuilder::mail`](crate::AuthorizerBuilder::mail)).
    #[error("no mailer is configured")]
    NotConfigured,
    /// No link was issued (not invited, rate limited, an unknown or invalid link, the store).
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The link was issued but the message was not sent; the link works if it reaches the
    /// address some other way, and another may be asked for.
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
}

impl SendLinkError {
    /// `mail_not_configured`, the [`LinkError`]'s kind, or the [`MailError`](crate::mail::MailError)'s.
    pub fn kind(&self) -> &'static str {
        match self {
            SendLinkError::NotConfigured => "mail_not_configured",
            SendLinkError::Link(e) => e.kind(),
            SendLinkError::Mail(e) => e.kind(),
        }
    }

    /// The class of what failed; no mailer configured is [`Usage`](crate::ErrorClass::Usage).
    pub fn class(&self) -> crate::ErrorClass {
        match self {
            SendLinkError::NotConfigured => crate::ErrorClass::Usage,
            SendLinkError::Link(e) => e.class(),
            SendLinkError::Mail(e) => e.class(),
        }
    }
}

/// Why a link was refused. Never carries the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Too many links for this (app, address) lately.
    #[error("too many links for this address; try again in {} s", retry_after.as_secs())]
    RateLimited {
        /// When one more may be issued.
        retry_after: Duration,
    },
    /// Past its lifetime.
    #[error("the link has expired")]
    Expired,
    /// Used up already.
    #[error("the link was already used")]
    AlreadyUsed,
    /// Not a link this service issued.
    #[error("the link is not valid")]
    Invalid,
    /// The invitation behind it was removed after it was issued.
    #[error("the invitation behind the link was removed")]
    Revoked,
    /// The link opens another app.
    #[error("the link is for another app")]
    WrongApp,
    /// The address was refused.
    #[error("invalid email address: {0}")]
    InvalidEmail(#[from] EmailError),
    /// What refuses any sign-in: the address not invited, no such app, no session minted, the
    /// store failing.
    #[error(transparent)]
    SignIn(#[from] SignInRefusal),
}

impl From<StoreError> for LinkError {
    fn from(e: StoreError) -> Self {
        LinkError::SignIn(SignInRefusal::Store(e))
    }
}

impl From<SessionError> for LinkError {
    fn from(e: SessionError) -> Self {
        LinkError::SignIn(SignInRefusal::Session(e))
    }
}

impl LinkError {
    /// The error's kind as written in JSON (`expired`, `already_used`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            LinkError::RateLimited { .. } => "rate_limited",
            LinkError::Expired => "expired",
            LinkError::AlreadyUsed => "already_used",
            LinkError::Invalid => "invalid",
            LinkError::Revoked => "revoked",
            LinkError::WrongApp => "wrong_app",
            LinkError::InvalidEmail(_) => "invalid_email",
            LinkError::SignIn(r) => r.kind(),
        }
    }
}

/// Why a Google sign-in was refused. Never carries the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GoogleSignInError {
    /// The ID token was refused.
    #[error(transparent)]
    Token(#[from] GoogleError),
    /// Google sign-in is not configured.
    #[error("google sign-in is not configured")]
    NotConfigured,
    /// What refuses any sign-in: the address not invited, no such app, no session minted, the
    /// store failing.
    #[error(transparent)]
    SignIn(#[from] SignInRefusal),
}

impl From<StoreError> for GoogleSignInError {
    fn from(e: StoreError) -> Self {
        GoogleSignInError::SignIn(SignInRefusal::Store(e))
    }
}

impl From<SessionError> for GoogleSignInError {
    fn from(e: SessionError) -> Self {
        GoogleSignInError::SignIn(SignInRefusal::Session(e))
    }
}

impl GoogleSignInError {
    /// The error's kind as written in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            GoogleSignInError::Token(e) => e.kind(),
            GoogleSignInError::NotConfigured => "not_configured",
            GoogleSignInError::SignIn(r) => r.kind(),
        }
    }
}

/// What refuses a viewer's sign-in however the address was proven (an emailed link or Google):
/// the one type [`LinkError`] and [`GoogleSignInError`] share.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignInRefusal {
    /// The address is not invited to the app.
    #[error("the address is not invited to this app")]
    NotInvited,
    /// No app with this id.
    #[error("no app `{0}`")]
    UnknownApp(AppId),
    /// The session could not be minted.
    #[error(transparent)]
    Session(SessionError),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// No token or session id could be drawn: the system's random source failed.
    #[error(transparent)]
    NoRandomness(RandomnessUnavailable),
}

impl From<RandomnessUnavailable> for LinkError {
    fn from(e: RandomnessUnavailable) -> Self {
        LinkError::SignIn(SignInRefusal::NoRandomness(e))
    }
}

impl From<RandomnessUnavailable> for SignInRefusal {
    fn from(e: RandomnessUnavailable) -> Self {
        SignInRefusal::NoRandomness(e)
    }
}

impl From<SessionError> for SignInRefusal {
    fn from(e: SessionError) -> Self {
        SignInRefusal::Session(e)
    }
}

impl SignInRefusal {
    /// A stable name: `not_invited`, `unknown_app`, `session`, or [`StoreError::kind`].
    pub fn kind(&self) -> &'static str {
        match self {
            SignInRefusal::NotInvited => "not_invited",
            SignInRefusal::UnknownApp(_) => "unknown_app",
            SignInRefusal::Session(_) => "session",
            SignInRefusal::Store(e) => e.kind(),
            SignInRefusal::NoRandomness(e) => e.kind(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    app: String,
    via: Via,
    iat: u64,
    exp: u64,
    jti: String,
    /// The grant the session was minted under.
    gid: u64,
}

fn link_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `token` has the shape of a link this service issues (checked before any lookup).
fn well_formed_link(token: &str) -> bool {
    token.len() == LINK_PREFIX.len() + 43
        && token.starts_with(LINK_PREFIX)
        && token[LINK_PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Links and sessions: the sign-in half of the authorizer.
#[derive(Debug)]
pub(crate) struct SignIn {
    pub(crate) links: LinkConfig,
    pub(crate) keys: parking_lot::RwLock<SessionKeys>,
    pub(crate) sessions: SessionConfig,
    pub(crate) google: Option<GoogleVerifier>,
    pub(crate) mail: Option<crate::mail::MailConfig>,
}

/// What a sign-in page's MAC covers is prefixed with this: nothing a session's JWT signs starts
/// so (a JWT's signing input starts with its base64url header).
#[cfg(any(feature = "http", test))]
const PAGE_MAC_LABEL: &[u8] = b"ghauthz-page-mac\0";

impl SignIn {
    /// A MAC of `data` under the signing session key (HMAC-SHA256, labelled apart from sessions):
    /// what a sign-in page binds a cookie to, verifiable on every replica that holds the keys.
    #[cfg(any(feature = "http", test))]
    pub(crate) fn page_mac(&self, data: &[u8]) -> Option<[u8; 32]> {
        use hmac::Mac as _;
        let keys = self.keys.read();
        let key = keys.signing()?;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key.secret).ok()?;
        mac.update(PAGE_MAC_LABEL);
        mac.update(data);
        Some(mac.finalize().into_bytes().into())
    }

    /// Whether `tag` is the MAC of `data` under any listed session key, compared in constant time
    /// against every key (so a rotation does not void a page opened a moment before).
    #[cfg(any(feature = "http", test))]
    pub(crate) fn page_mac_holds(&self, data: &[u8], tag: &[u8]) -> bool {
        use hmac::Mac as _;
        let keys = self.keys.read();
        let mut holds = false;
        for key in &keys.keys {
            let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key.secret) else { continue };
            mac.update(PAGE_MAC_LABEL);
            mac.update(data);
            holds |= mac.verify_slice(tag).is_ok();
        }
        holds
    }

    /// Issues a link and sends it to the invitation's stored address.
    pub(crate) async fn send(
        &self,
        store: &dyn Store,
        now: Timestamp,
        app: &AppId,
        email: &str,
    ) -> Result<SentLink, SendLinkError> {
        let mail = self.mail.as_ref().ok_or(SendLinkError::NotConfigured)?;
        let link = self.issue(store, now, app, email).await?;
        let message = crate::mail::LinkMail::new(
            link.email.clone(),
            link.app.clone(),
            mail.link_url(link.token.expose_secret()),
            link.expires_at,
            self.links.ttl,
            mail.texts.clone(),
        );
        let sent = mail.mailer.send_link(&message).await;
        crate::telemetry::link_mail(if sent.is_ok() { "sent" } else { "failed" });
        sent?;
        Ok(SentLink { app: link.app, email: link.email, expires_at: link.expires_at })
    }

    /// Sends a new link in place of `token`, one this service issued (used, expired or revoked
    /// alike), to the address it was sent to.
    pub(crate) async fn send_again(
        &self,
        store: &dyn Store,
        now: Timestamp,
        token: &str,
    ) -> Result<SentLink, SendLinkError> {
        if self.mail.is_none() {
            return Err(SendLinkError::NotConfigured);
        }
        if !well_formed_link(token) {
            return Err(LinkError::Invalid.into());
        }
        let old = store.link(&link_hash(token)).await.map_err(LinkError::from)?.ok_or(LinkError::Invalid)?;
        self.send(store, now, &old.app, old.email.as_str()).await
    }

    pub(crate) async fn google_identity(&self, id_token: &str) -> Result<GoogleIdentity, GoogleSignInError> {
        let verifier = self.google.as_ref().ok_or(GoogleSignInError::NotConfigured)?;
        Ok(verifier.verify(id_token).await?)
    }

    pub(crate) async fn google_sign_in(
        &self,
        store: &dyn Store,
        now: Timestamp,
        app: &AppId,
        id_token: &str,
        nonce: Option<&str>,
    ) -> Result<IssuedSession, GoogleSignInError> {
        let identity = self.google_identity(id_token).await?;
        if let Some(expected) = nonce {
            let held = identity.nonce().unwrap_or_default();
            if expected.is_empty() || !constant_time_eq::constant_time_eq(held.as_bytes(), expected.as_bytes()) {
                return Err(GoogleError::WrongNonce.into());
            }
        }
        if store.app(app).await?.is_none() {
            return Err(SignInRefusal::UnknownApp(app.clone()).into());
        }
        let Some(grant) = store.grant(app, identity.email()).await? else {
            tracing::info!(app = %app, "google sign-in refused: not invited");
            return Err(SignInRefusal::NotInvited.into());
        };
        let session = self.mint(now, app, identity.email(), grant, Via::Google)?;
        // On record before the session is handed out: a sign-in the audit cannot hold is refused.
        let event = AuditEvent::new(now, &Actor::Viewer, app, AuditAction::GoogleSignIn).with_email(identity.email());
        store.record(&event, None).await?;
        tracing::info!(app = %app, "google sign-in");
        Ok(session)
    }

    pub(crate) async fn issue(
        &self,
        store: &dyn Store,
        now: Timestamp,
        app: &AppId,
        email: &str,
    ) -> Result<IssuedLink, LinkError> {
        let email = Email::parse(email)?;
        if store.app(app).await?.is_none() {
            return Err(SignInRefusal::UnknownApp(app.clone()).into());
        }
        let token = format!("{LINK_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()?));
        let expires_at = now.plus(self.links.ttl);
        let record = LinkRecord {
            hash: link_hash(&token),
            app: app.clone(),
            email: email.clone(),
            issued_at: now,
            expires_at,
            used_at: None,
            grant: None,
        };
        match store.issue_link(&record, self.links.issue_limit).await? {
            IssueOutcome::Issued => {
                tracing::info!(app = %app, "link issued");
                Ok(IssuedLink { token: LinkToken::new(token), app: app.clone(), email, expires_at })
            }
            IssueOutcome::NotInvited => Err(SignInRefusal::NotInvited.into()),
            IssueOutcome::RateLimited { retry_at } => {
                Err(LinkError::RateLimited { retry_after: Duration::from_secs(retry_at.since(now).as_secs().max(1)) })
            }
        }
    }

    /// The link, if it would redeem now; nothing is used up.
    async fn usable_link(&self, store: &dyn Store, now: Timestamp, token: &str) -> Result<LinkRecord, LinkError> {
        if !well_formed_link(token) {
            return Err(LinkError::Invalid);
        }
        let link = store.link(&link_hash(token)).await?.ok_or(LinkError::Invalid)?;
        if link.used_at.is_some() {
            return Err(LinkError::AlreadyUsed);
        }
        if link.expires_at <= now {
            return Err(LinkError::Expired);
        }
        // The grant it was issued under must still be the one that invites the address: a link
        // outlives neither its grant's removal nor a later re-invitation.
        if link.grant.is_none() || store.grant(&link.app, &link.email).await? != link.grant {
            return Err(LinkError::Revoked);
        }
        Ok(link)
    }

    pub(crate) async fn inspect(&self, store: &dyn Store, now: Timestamp, token: &str) -> Result<LinkInfo, LinkError> {
        let link = self.usable_link(store, now, token).await?;
        Ok(LinkInfo { app: link.app, email: link.email, expires_at: link.expires_at })
    }

    pub(crate) async fn redeem(
        &self,
        store: &dyn Store,
        now: Timestamp,
        token: &str,
        expected_app: Option<&AppId>,
    ) -> Result<IssuedSession, LinkError> {
        let link = self.usable_link(store, now, token).await?;
        if expected_app.is_some_and(|a| *a != link.app) {
            return Err(LinkError::WrongApp);
        }
        if !store.use_link(&Redemption::new(link.hash, now)).await? {
            tracing::info!(app = %link.app, "link redemption lost a race");
            // Lost a race, or the link changed since it was read: say what it is now.
            return Err(self.usable_link(store, now, token).await.err().unwrap_or(LinkError::AlreadyUsed));
        }
        tracing::info!(app = %link.app, "link redeemed");
        let grant = link.grant.ok_or(LinkError::Revoked)?;
        Ok(self.mint(now, &link.app, &link.email, grant, Via::EmailLink)?)
    }

    pub(crate) fn mint(
        &self,
        now: Timestamp,
        app: &AppId,
        email: &Email,
        grant: GrantId,
        via: Via,
    ) -> Result<IssuedSession, SignInRefusal> {
        let keys = self.keys.read();
        let key = keys.signing().ok_or(SessionError::Signing)?;
        let expires_at = now.plus(self.sessions.ttl);
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: email.as_str().into(),
            app: app.0.clone(),
            via,
            iat: now.as_secs(),
            exp: expires_at.as_secs(),
            jti: URL_SAFE_NO_PAD.encode(random_bytes::<16>()?),
            gid: grant.0,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&key.secret))
            .map_err(|_| SessionError::Signing)?;
        let session =
            Session { app: app.clone(), email: email.clone(), grant, via, expires_at: Timestamp(claims.exp * 1000) };
        Ok(IssuedSession { token: SessionToken::new(token), session })
    }

    pub(crate) fn verify(&self, now: Timestamp, token: &str) -> Result<Session, SessionError> {
        if token.len() > 4096 {
            return Err(SessionError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| SessionError::Invalid)?;
        if header.alg != Algorithm::HS256 {
            return Err(SessionError::Invalid);
        }
        let kid = header.kid.ok_or(SessionError::Invalid)?;
        let keys = self.keys.read();
        let key = keys.find(&kid).ok_or(SessionError::RetiredKey)?;
        // The algorithm is fixed here, never taken from the token. Expiry is checked below on
        // the injected clock, not jsonwebtoken's.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = false;
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&key.secret), &validation)
            .map_err(|_| SessionError::Invalid)?;
        let claims = data.claims;
        let expires_at = Timestamp(claims.exp.saturating_mul(1000));
        if expires_at <= now {
            return Err(SessionError::Expired);
        }
        let email = Email::parse(&claims.sub).map_err(|_| SessionError::Invalid)?;
        Ok(Session { app: AppId(claims.app), email, grant: GrantId(claims.gid), via: claims.via, expires_at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signin() -> SignIn {
        SignIn {
            links: LinkConfig::default(),
            keys: parking_lot::RwLock::new(SessionKeys::generate().unwrap()),
            sessions: SessionConfig::default(),
            google: None,
            mail: None,
        }
    }

    #[test]
    fn a_pages_mac_holds_under_any_listed_key_and_for_its_own_data_alone() {
        let s = signin();
        let tag = s.page_mac(b"link-a").unwrap();
        assert!(s.page_mac_holds(b"link-a", &tag));
        assert!(!s.page_mac_holds(b"link-b", &tag), "bound to its data");
        assert!(!s.page_mac_holds(b"link-a", &tag[..31]), "the whole tag");
        let mut keys = s.keys.read().clone();
        let old = keys.kids()[0].to_owned();
        keys.rotate().unwrap();
        *s.keys.write() = keys.clone();
        assert!(s.page_mac_holds(b"link-a", &tag), "a rotation keeps an open page working");
        keys.retire(&old);
        *s.keys.write() = keys;
        assert!(!s.page_mac_holds(b"link-a", &tag), "a retired key verifies nothing");
    }

    const NOW: Timestamp = Timestamp(1_795_000_000_000);

    #[test]
    fn a_minted_session_verifies_until_it_expires() {
        let s = signin();
        let email = Email::parse("dana@example.com").unwrap();
        let issued = s.mint(NOW, &AppId("dash".into()), &email, GrantId(1), Via::EmailLink).unwrap();
        let session = s.verify(NOW, issued.token.expose_secret()).unwrap();
        assert_eq!((session.app().0.as_str(), session.email(), session.via()), ("dash", &email, Via::EmailLink));
        let later = NOW.plus(Duration::from_secs(3600));
        assert_eq!(s.verify(later, issued.token.expose_secret()), Err(SessionError::Expired));
    }

    #[test]
    fn rotation_keeps_old_sessions_and_retirement_ends_them() {
        let s = signin();
        let email = Email::parse("dana@example.com").unwrap();
        let old = s.mint(NOW, &AppId("dash".into()), &email, GrantId(1), Via::Google).unwrap();
        let old_kid = s.keys.read().kids()[0].to_owned();
        s.keys.write().rotate().unwrap();
        assert!(s.verify(NOW, old.token.expose_secret()).is_ok(), "the previous key still verifies");
        let signing = s.keys.read().kids()[0].to_owned();
        assert!(!s.keys.write().retire(&signing), "the signing key cannot be retired");
        assert!(s.keys.write().retire(&old_kid));
        assert_eq!(s.verify(NOW, old.token.expose_secret()), Err(SessionError::RetiredKey));
    }

    #[test]
    fn tampered_and_foreign_tokens_are_invalid() {
        let s = signin();
        let email = Email::parse("dana@example.com").unwrap();
        let t = s
            .mint(NOW, &AppId("dash".into()), &email, GrantId(1), Via::EmailLink)
            .unwrap()
            .token
            .expose_secret()
            .to_owned();
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap().replace("dash", "bank");
        parts[1] = URL_SAFE_NO_PAD.encode(payload);
        assert_eq!(s.verify(NOW, &parts.join(".")), Err(SessionError::Invalid), "tampered payload");
        let other = signin();
        let foreign = other.mint(NOW, &AppId("dash".into()), &email, GrantId(1), Via::EmailLink).unwrap();
        assert_eq!(s.verify(NOW, foreign.token.expose_secret()), Err(SessionError::RetiredKey), "unknown kid");
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"x"}"#), parts[1]);
        assert_eq!(s.verify(NOW, &none), Err(SessionError::Invalid), "alg none");
        assert_eq!(s.verify(NOW, "garbage"), Err(SessionError::Invalid));
        assert_eq!(s.verify(NOW, &"a".repeat(1 << 20)), Err(SessionError::Invalid), "1 MiB");
    }

    #[test]
    fn keys_file_round_trips() {
        let mut keys = SessionKeys::generate().unwrap();
        keys.rotate().unwrap();
        let again = SessionKeys::from_json(&keys.to_json_with_secrets()).unwrap();
        assert_eq!(again.kids(), keys.kids());
        assert!(SessionKeys::from_json(r#"{"session_keys": []}"#).is_err());
        assert!(SessionKeys::from_json("nope").is_err());
    }

    #[test]
    fn link_tokens_are_checked_for_shape_first() {
        assert!(well_formed_link(&format!("{LINK_PREFIX}{}", "A".repeat(43))));
        assert!(!well_formed_link("gl1_short"));
        assert!(!well_formed_link(&format!("xx1_{}", "A".repeat(43))));
    }
}
