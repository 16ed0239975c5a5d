//! Sign-in: links, Google, sessions and their keys, passed through to the viewer module.

use super::Authorizer;
use crate::cache::Consistency;
use crate::core::ids::AppId;
use crate::core::session::{Session, SessionError};
use crate::google::GoogleIdentity;
use crate::viewer::{GoogleSignInError, IssuedLink, IssuedSession, LinkError, LinkInfo, SessionKeys};

impl Authorizer {
    /// Issues a single-use sign-in link to `app` for an invited address, rate-limited per (app,
    /// address) ([`AuthorizerBuilder::links`](crate::AuthorizerBuilder::links)). Send it to [`IssuedLink::email`], the stored
    /// address, never to what a requester typed; it works until [`IssuedLink::expires_at`].
    ///
    /// # Errors
    ///
    /// Fails with [`LinkError`](crate::LinkError): `InvalidEmail` if the address does not parse; `SignIn(UnknownApp)`
    /// if there is no such app; `SignIn(NotInvited)` if the address is not invited (a sign-in page
    /// should answer the same either way, so as not to tell who is invited); `RateLimited` with
    /// `retry_after` past the limit; `SignIn(NoRandomness)` if no token could be drawn; `SignIn(Store(..))`
    /// if the store fails.
    ///
    /// # Security
    ///
    /// Only the token's SHA-256 is stored, so a copy of the store opens nothing; the token itself
    /// is in the returned [`LinkToken`](crate::LinkToken) alone (redacted `Debug`), and never
    /// logged.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::AppId;
    /// let dash = AppId("dash".into());
    /// let link = authz.issue_link(&dash, " Dana@Example.com").await.unwrap();
    /// assert_eq!(link.email.as_str(), "dana@example.com"); // send it here
    /// let err = authz.issue_link(&dash, "mallory@example.com").await.unwrap_err();
    /// assert_eq!(err.kind(), "not_invited");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn issue_link(&self, app: &AppId, email: &str) -> Result<IssuedLink, LinkError> {
        self.inner.signin.issue(&*self.inner.store, self.inner.clock.now(), app, email).await
    }

    /// Issues a sign-in link, as [`Authorizer::issue_link`](crate::Authorizer::issue_link) does,
    /// and sends it to the invitation's stored address with the mailer given to
    /// [`AuthorizerBuilder::mail`](crate::AuthorizerBuilder::mail): one call. The token goes into
    /// the message alone.
    ///
    /// # Errors
    ///
    /// [`SendLinkError`](crate::SendLinkError): `NotConfigured` without a mailer; `Link`
    /// with [`Authorizer::issue_link`](crate::Authorizer::issue_link)'s errors (nothing sent);
    /// `Mail` if the link was issued but the message was not sent.
    pub async fn send_link(&self, app: &AppId, email: &str) -> Result<crate::SentLink, crate::SendLinkError> {
        self.inner.signin.send(&*self.inner.store, self.inner.clock.now(), app, email).await
    }

    /// Sends a new link in place of `token`, a link this service issued whether used, expired or
    /// revoked, to the address that link was sent to (never another): what a link's page offers
    /// when the link no longer works. Rate-limited as issuing is.
    ///
    /// # Errors
    ///
    /// As [`Authorizer::send_link`](crate::Authorizer::send_link); `Link(Invalid)` if `token` is
    /// not a link this service issued (or one since deleted), `Link(SignIn(NotInvited))` if the
    /// invitation was removed.
    pub async fn send_link_again(&self, token: &str) -> Result<crate::SentLink, crate::SendLinkError> {
        self.inner.signin.send_again(&*self.inner.store, self.inner.clock.now(), token).await
    }

    /// A MAC of `data` under the signing session key, labelled apart from sessions (for the
    /// sign-in pages' pre-session cookie); `None` without a signing key.
    #[cfg(feature = "http")]
    pub(crate) fn page_mac(&self, data: &[u8]) -> Option<[u8; 32]> {
        self.inner.signin.page_mac(data)
    }

    /// The authorizer's clock, read.
    #[cfg(feature = "http")]
    pub(crate) fn now(&self) -> crate::core::time::Timestamp {
        self.inner.clock.now()
    }

    /// Whether `tag` is [`Authorizer::page_mac`] of `data` under any listed session key.
    #[cfg(feature = "http")]
    pub(crate) fn page_mac_holds(&self, data: &[u8], tag: &[u8]) -> bool {
        self.inner.signin.page_mac_holds(data, tag)
    }

    /// Whether links can be sent ([`AuthorizerBuilder::mail`](crate::AuthorizerBuilder::mail)).
    pub fn sends_links(&self) -> bool {
        self.inner.signin.mail.is_some()
    }

    /// The Google client ids whose ID tokens are accepted ([`AuthorizerBuilder::google`](crate::AuthorizerBuilder::google));
    /// none without Google sign-in.
    pub fn google_client_ids(&self) -> &[String] {
        self.inner.signin.google.as_ref().map_or(&[], |g| g.cfg.client_ids())
    }

    /// Validates a link without using it up: what answering a GET may do (mail scanners fetch every
    /// link they see). Show a page whose button POSTs to [`Authorizer::redeem_link`](crate::Authorizer::redeem_link).
    ///
    /// # Errors
    ///
    /// Fails with [`LinkError`](crate::LinkError): `Invalid` (not a link this service issued), `AlreadyUsed`,
    /// `Expired`, `Revoked` (the invitation was removed, or renewed, since the link was issued), or
    /// `SignIn(Store(..))` if the store fails.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::AppId;
    /// let link = authz.issue_link(&AppId("dash".into()), "dana@example.com").await.unwrap();
    /// let token = link.token.expose_secret();
    /// let info = authz.inspect_link(token).await.unwrap();
    /// assert_eq!((info.app.0.as_str(), info.email.as_str()), ("dash", "dana@example.com"));
    /// assert!(authz.inspect_link(token).await.is_ok(), "inspecting uses nothing up");
    /// assert!(authz.redeem_link(token, None).await.is_ok());
    /// assert_eq!(authz.inspect_link("gl1_made-up").await.unwrap_err().kind(), "invalid");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn inspect_link(&self, token: &str) -> Result<LinkInfo, LinkError> {
        self.inner.signin.inspect(&*self.inner.store, self.inner.clock.now(), token).await
    }

    /// Uses the link up and mints a viewer session: what the POST does. With `expected_app` (the
    /// app whose page the link was opened on), a link for another app is refused (`wrong_app`) and
    /// not used up.
    ///
    /// # Errors
    ///
    /// Fails with [`LinkError`](crate::LinkError): as [`Authorizer::inspect_link`](crate::Authorizer::inspect_link); `AlreadyUsed` for all but one of
    /// concurrent redemptions; `WrongApp`; `SignIn(Session(..))` if the session cannot be signed.
    /// What a redemption that fails *unavailable* did is said at
    /// [`AuthorizerBuilder::store_timeout`](crate::AuthorizerBuilder::store_timeout).
    ///
    /// # Security
    ///
    /// The store enforces single use atomically: of any number of concurrent redemptions of one
    /// link, on any number of replicas, exactly one succeeds. The session carries the id of the
    /// grant the link was issued under, so that removing the viewer ends it.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, LinkError};
    /// let dash = AppId("dash".into());
    /// let link = authz.issue_link(&dash, "dana@example.com").await.unwrap();
    /// let token = link.token.expose_secret();
    /// let notes = AppId("notes".into());
    /// assert_eq!(authz.redeem_link(token, Some(&notes)).await.unwrap_err(), LinkError::WrongApp);
    /// let issued = authz.redeem_link(token, Some(&dash)).await.unwrap(); // not used up by the above
    /// assert_eq!(issued.session.app(), &dash);
    /// assert_eq!(authz.redeem_link(token, Some(&dash)).await.unwrap_err(), LinkError::AlreadyUsed);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn redeem_link(&self, token: &str, expected_app: Option<&AppId>) -> Result<IssuedSession, LinkError> {
        let redeemed = self.inner.signin.redeem(&*self.inner.store, self.inner.clock.now(), token, expected_app).await;
        crate::telemetry::link_redemption(match &redeemed {
            Ok(_) => "redeemed",
            Err(e) => e.kind(),
        });
        redeemed
    }

    /// Verifies a Google ID token and, if its verified address is invited to `app`, mints a viewer
    /// session for it. Needs [`AuthorizerBuilder::google`](crate::AuthorizerBuilder::google).
    ///
    /// # Errors
    ///
    /// Fails with [`GoogleSignInError`](crate::GoogleSignInError): `NotConfigured` without [`AuthorizerBuilder::google`](crate::AuthorizerBuilder::google);
    /// `Token` with the [`GoogleError`](crate::GoogleError) of the first check the token failed
    /// (its `KeysUnavailable` when Google's keys cannot be fetched); `SignIn(UnknownApp)`,
    /// `SignIn(NotInvited)`; `SignIn(Store(..))` if the store fails; `SignIn(Session(..))` if the
    /// session cannot be signed.
    ///
    /// # Security
    ///
    /// RS256 only, under Google's published keys; `aud` must be one of the configured client ids,
    /// `email_verified` exactly `true`, the lifetime at most 24 hours. The ID token is neither
    /// logged nor kept.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::prelude::*;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let google_id_token = |email: &str| {
    /// #     let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    /// #     let claims = serde_json::json!({
    /// #         "iss": "https://accounts.google.com", "aud": "1234-test.apps.googleusercontent.com",
    /// #         "sub": "110169484474386276334", "email": email, "email_verified": true,
    /// #         "iat": now, "exp": now + 3600,
    /// #     });
    /// #     let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    /// #     header.kid = Some("test-key-1".into());
    /// #     let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/keys/google-test.pem")).unwrap();
    /// #     jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
    /// # };
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config())
    /// #     .store(store)
    /// #     .google(mock.google_config().unwrap())
    /// #     .build()
    /// #     .unwrap();
    /// use ghauthz::{AppId, Via};
    /// let dash = AppId("dash".into());
    /// let id_token = google_id_token("dana@example.com"); // signed as Google signs
    /// let issued = authz.google_sign_in(&dash, &id_token).await.unwrap();
    /// assert_eq!(issued.session.via(), Via::Google);
    /// let stranger = google_id_token("zed@example.com");
    /// assert_eq!(authz.google_sign_in(&dash, &stranger).await.unwrap_err().kind(), "not_invited");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn google_sign_in(&self, app: &AppId, id_token: &str) -> Result<IssuedSession, GoogleSignInError> {
        self.inner.signin.google_sign_in(&*self.inner.store, self.inner.clock.now(), app, id_token, None).await
    }

    /// [`Authorizer::google_sign_in`], holding the ID token to the `nonce` the page that showed
    /// Google's button gave this browser (and Google signed into the token): a token minted for
    /// another browser, or replayed from elsewhere, is refused.
    ///
    /// # Errors
    ///
    /// As [`Authorizer::google_sign_in`](crate::Authorizer::google_sign_in); `Token(WrongNonce)`
    /// (kind `invalid`) when the token's `nonce` is not `nonce` (compared in constant time), or
    /// `nonce` is empty.
    pub async fn google_sign_in_with_nonce(
        &self,
        app: &AppId,
        id_token: &str,
        nonce: &str,
    ) -> Result<IssuedSession, GoogleSignInError> {
        let now = self.inner.clock.now();
        self.inner.signin.google_sign_in(&*self.inner.store, now, app, id_token, Some(nonce)).await
    }

    /// Verifies a Google ID token alone: who Google says signed in, with no grant lookup and no
    /// session (for a flow of your own, such as asking an operator to invite the address).
    ///
    /// # Errors
    ///
    /// [`GoogleSignInError::NotConfigured`](crate::GoogleSignInError::NotConfigured) without [`AuthorizerBuilder::google`](crate::AuthorizerBuilder::google);
    /// [`GoogleSignInError::Token`](crate::GoogleSignInError::Token) with the [`GoogleError`](crate::GoogleError) of the first check
    /// the token failed.
    ///
    /// # Security
    ///
    /// Verified as [`Authorizer::google_sign_in`](crate::Authorizer::google_sign_in) verifies; the token is neither logged nor kept.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::prelude::*;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// # let google_id_token = |email: &str| {
    /// #     let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    /// #     let claims = serde_json::json!({
    /// #         "iss": "https://accounts.google.com", "aud": "1234-test.apps.googleusercontent.com",
    /// #         "sub": "110169484474386276334", "email": email, "email_verified": true,
    /// #         "iat": now, "exp": now + 3600,
    /// #     });
    /// #     let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    /// #     header.kid = Some("test-key-1".into());
    /// #     let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/keys/google-test.pem")).unwrap();
    /// #     jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
    /// # };
    /// # let authz = ghauthz::Authorizer::builder(mock.github_config())
    /// #     .store(store)
    /// #     .google(mock.google_config().unwrap())
    /// #     .build()
    /// #     .unwrap();
    /// let identity = authz.verify_google_id_token(&google_id_token("zed@example.com")).await.unwrap();
    /// assert_eq!(identity.email().as_str(), "zed@example.com"); // invited or not
    /// assert_eq!(authz.verify_google_id_token("not-a-token").await.unwrap_err().kind(), "invalid");
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub async fn verify_google_id_token(&self, id_token: &str) -> Result<GoogleIdentity, GoogleSignInError> {
        self.inner.signin.google_identity(id_token).await
    }

    /// Verifies a viewer session token this service signed, and gives the [`Session`] it holds, for
    /// [`Principal::Viewer`](crate::Principal::Viewer). A token verified before is confirmed from memory (see the `sessions`
    /// row of [`CacheConfig`](crate::CacheConfig)'s `# Staleness`). Whether the session's grant still stands is for a
    /// check to say.
    ///
    /// # Errors
    ///
    /// Fails with [`SessionError`](crate::SessionError): `Invalid` (malformed, over 4 KiB, not HS256, a bad signature,
    /// another issuer or audience), `RetiredKey` (signed by a key no longer listed), `Expired` (at
    /// or past its `exp`, on the authorizer's clock).
    ///
    /// # Security
    ///
    /// The algorithm is fixed, never taken from the token, and the key is found by `kid` among the
    /// listed keys only. Tokens are never logged.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (world, mock, authz) = ghauthz::world::doctest::acme().await;
    /// use ghauthz::{AppId, Capability, Principal, SessionError};
    /// use ghauthz::CheckRequest;
    /// let dash = AppId("dash".into());
    /// let link = authz.issue_link(&dash, "dana@example.com").await.unwrap(); // dana is invited to dash
    /// let token = authz.redeem_link(link.token.expose_secret(), Some(&dash)).await.unwrap().token;
    /// let token = token.expose_secret();
    /// let session = authz.verify_session(token).unwrap();
    /// assert_eq!(session.email().as_str(), "dana@example.com");
    /// let viewer = Principal::Viewer(session);
    /// assert!(authz.check(&CheckRequest::new(&viewer, &dash, Capability::View)).await.unwrap().is_allowed());
    /// assert_eq!(authz.verify_session("not-a-session").unwrap_err(), SessionError::Invalid);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn verify_session(&self, token: &str) -> Result<Session, SessionError> {
        self.verify_session_with(token, Consistency::Cached)
    }

    pub(super) fn verify_session_with(&self, token: &str, consistency: Consistency) -> Result<Session, SessionError> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        if consistency == Consistency::Cached {
            if let Some(session) = inner.cache.sessions.with(token, now, Session::clone) {
                return Ok(session);
            }
        }
        let started = inner.cache.sessions.begin();
        let session = inner.signin.verify(now, token)?;
        inner.cache.sessions.remember(token, session.clone(), started, now);
        Ok(session)
    }

    /// Replaces the keys that sign and verify viewer sessions, to rotate them or to retire a key:
    /// the first key signs from now on, and a session signed by a key no longer listed is refused
    /// from the next check on, even if it was verified before. Set the same keys on every replica.
    ///
    /// ```
    /// # #[cfg(feature = "world")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/worlds/acme.toml");
    /// # let world = ghauthz::world::World::load(path).unwrap();
    /// # let mock = ghauthz::world::MockGithub::start(world.clone()).await.unwrap();
    /// # use ghauthz::store::prelude::*;
    /// # let store = std::sync::Arc::new(ghauthz::store::MemoryStore::new());
    /// # store.seed_once(&world.app_records(), ghauthz::Clock::now(&ghauthz::SystemClock)).await.unwrap();
    /// use ghauthz::{AppId, Authorizer, SessionConfig, SessionError, SessionKeys};
    /// let mut keys = SessionKeys::generate().unwrap();
    /// let authz = Authorizer::builder(mock.github_config())
    ///     .store(store)
    ///     .sessions(keys.clone(), SessionConfig::default())
    ///     .build()
    ///     .unwrap();
    /// let dash = AppId("dash".into());
    /// let link = authz.issue_link(&dash, "dana@example.com").await.unwrap(); // dana is invited to dash
    /// let token = authz.redeem_link(link.token.expose_secret(), Some(&dash)).await.unwrap().token;
    /// let token = token.expose_secret();
    /// let old = keys.kids()[0].to_owned();
    /// keys.rotate().unwrap(); // a new signing key; the old one still verifies
    /// authz.set_session_keys(keys.clone());
    /// assert!(authz.verify_session(token).is_ok());
    /// keys.retire(&old);
    /// authz.set_session_keys(keys);
    /// assert_eq!(authz.verify_session(token).unwrap_err(), SessionError::RetiredKey);
    /// # }
    /// # #[cfg(not(feature = "world"))]
    /// # fn main() {}
    /// ```
    pub fn set_session_keys(&self, keys: SessionKeys) {
        *self.inner.signin.keys.write() = keys;
        self.inner.cache.sessions.keys_changed();
    }

    /// The session a redeemed link would give `email` on `app` now, under the grant the store
    /// holds (its token is not signed: the check does not read it) (world mode: `explain` and decision tables check a signed-in viewer through
    /// the production path).
    #[cfg(feature = "world")]
    pub(crate) async fn session_for(
        &self,
        app: &AppId,
        email: &crate::core::email::Email,
    ) -> Result<Session, crate::store::StoreError> {
        // An address the store does not invite gets the session of a viewer whose invitation was
        // since removed: one under a grant id no store issues (they count from 1).
        let grant = self.inner.store.grant(app, email).await?.unwrap_or(crate::core::ids::GrantId(0));
        let expires_at = self.inner.clock.now().plus(self.inner.signin.sessions.ttl);
        let via = crate::core::session::Via::EmailLink;
        Ok(Session { app: app.clone(), email: email.clone(), grant, via, expires_at })
    }
}
