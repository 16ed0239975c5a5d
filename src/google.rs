//! Google sign-in: ID tokens verified against Google's JWKS.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::BodyExt as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::core::email::Email;
use crate::core::time::{Clock, Timestamp};

/// Google's two spellings of its issuer.
const ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];
/// ID tokens are a few kilobytes; anything much larger is not one.
const MAX_TOKEN: usize = 16 * 1024;
const MAX_JWKS: usize = 256 * 1024;
/// How far ahead of the clock `iat` may be (seconds).
const MAX_IAT_AHEAD: u64 = 5 * 60;
/// The longest lifetime (`exp - iat`, seconds) accepted; Google's tokens live one hour.
const MAX_LIFETIME: u64 = 24 * 3600;

/// A JWT segment decoded as a JSON object whose keys are each written once; `what` names it in
/// the error.
fn segment(part: Option<&str>, what: &'static str) -> Result<serde_json::Map<String, serde_json::Value>, GoogleError> {
    let bytes = part.and_then(|p| URL_SAFE_NO_PAD.decode(p).ok()).ok_or(GoogleError::Malformed)?;
    match serde_json::from_slice::<UniqueObject>(&bytes) {
        Ok(UniqueObject(map)) => Ok(map),
        Err(e) if e.to_string().starts_with(DUPLICATE) => Err(GoogleError::DuplicateKey(what)),
        Err(_) => Err(GoogleError::Malformed),
    }
}

const DUPLICATE: &str = "duplicate key";

/// A JSON object that refuses a key written twice.
struct UniqueObject(serde_json::Map<String, serde_json::Value>);

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
                let mut map = serde_json::Map::new();
                while let Some((key, value)) = access.next_entry::<String, serde_json::Value>()? {
                    if map.contains_key(&key) {
                        return Err(serde::de::Error::custom(DUPLICATE));
                    }
                    map.insert(key, value);
                }
                Ok(UniqueObject(map))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Where Google's keys are and which audiences are ours.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GoogleConfig {
    /// Our OAuth client ids: the accepted `aud` values.
    pub(crate) client_ids: Vec<String>,
    pub(crate) jwks_url: String,
    pub(crate) leeway: Duration,
    pub(crate) refetch_interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) require_authoritative: bool,
    pub(crate) hosted_domain: Option<String>,
}

impl GoogleConfig {
    /// Google's JWKS. Default `https://www.googleapis.com/oauth2/v3/certs`.
    pub fn with_jwks_url(mut self, jwks_url: String) -> Self {
        self.jwks_url = jwks_url;
        self
    }

    /// Clock skew allowed on `exp` and `nbf`. Default 60 s.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Least time between two refetches caused by an unknown `kid`. Default 60 s.
    pub fn with_refetch_interval(mut self, refetch_interval: Duration) -> Self {
        self.refetch_interval = refetch_interval;
        self
    }

    /// Time allowed for fetching the JWKS. Default 5 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Accept an address only where Google is authoritative for it: an `@gmail.com` address, or
    /// one in the token's Workspace domain (`hd`, which Google sets only for its Workspace
    /// accounts). Off by default, as Streamlit accepts any address Google verified.
    pub fn with_require_authoritative(mut self, require_authoritative: bool) -> Self {
        self.require_authoritative = require_authoritative;
        self
    }

    /// Accept only this Workspace domain's accounts (`hd` equal to it, and the address in it);
    /// implies [`GoogleConfig::require_authoritative`]. Unset by default.
    pub fn with_hosted_domain(mut self, hosted_domain: impl Into<String>) -> Self {
        self.hosted_domain = Some(hosted_domain.into());
        self
    }

    /// Our OAuth client ids: the accepted `aud` values.
    pub fn client_ids(&self) -> &[String] {
        &self.client_ids
    }

    /// As set by [`GoogleConfig::with_jwks_url`].
    pub fn jwks_url(&self) -> &str {
        &self.jwks_url
    }

    /// As set by [`GoogleConfig::with_leeway`].
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// As set by [`GoogleConfig::with_refetch_interval`].
    pub fn refetch_interval(&self) -> Duration {
        self.refetch_interval
    }

    /// As set by [`GoogleConfig::with_timeout`].
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// As set by [`GoogleConfig::with_require_authoritative`].
    pub fn require_authoritative(&self) -> bool {
        self.require_authoritative
    }

    /// As set by [`GoogleConfig::with_hosted_domain`].
    pub fn hosted_domain(&self) -> Option<&str> {
        self.hosted_domain.as_deref()
    }
}

impl GoogleConfig {
    /// Google's JWKS, accepting tokens for `client_ids`.
    pub fn new(client_ids: Vec<String>) -> Self {
        Self {
            client_ids,
            jwks_url: "https://www.googleapis.com/oauth2/v3/certs".into(),
            leeway: Duration::from_secs(60),
            refetch_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            require_authoritative: false,
            hosted_domain: None,
        }
    }
}

/// Why a Google ID token was refused: one variant per failed check. Never carries the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GoogleError {
    /// Not a JWT (truncated, not base64, not JSON, or too large).
    #[error("not a well-formed ID token")]
    Malformed,
    /// The header names an algorithm other than RS256 (`none` and HS256 included).
    #[error("the token is not signed with RS256")]
    WrongAlgorithm,
    /// The header names no key.
    #[error("the token names no key (`kid`)")]
    MissingKid,
    /// No key with this `kid`, even after refetching Google's keys.
    #[error("no Google key has the token's `kid`")]
    UnknownKey,
    /// The signature does not verify (a tampered token, or another key).
    #[error("the token's signature does not verify")]
    BadSignature,
    /// A required claim is missing or has the wrong type.
    #[error("the token's claim `{0}` is missing or malformed")]
    BadClaim(String),
    /// `iss` is not Google.
    #[error("the token was not issued by Google")]
    WrongIssuer,
    /// `aud` is not one of our client ids.
    #[error("the token is for another audience")]
    WrongAudience,
    /// `exp` is past (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `email_verified` is not `true`.
    #[error("Google has not verified the address")]
    EmailUnverified,
    /// The address is not one we accept.
    #[error("the token's address is not acceptable")]
    BadEmail,
    /// Google's keys could not be fetched.
    #[error("google keys unavailable: {0}")]
    KeysUnavailable(String),
    /// The header or the claims name one key twice (which one counts would be a guess).
    #[error("the token names a {0} twice")]
    DuplicateKey(&'static str),
    /// The header has a `crit` parameter: an extension this verifier does not understand.
    #[error("the token requires an extension (`crit`) that is not understood")]
    CriticalExtension,
    /// `iat` is more than 5 minutes ahead of the clock.
    #[error("the token was issued in the future")]
    IssuedInTheFuture,
    /// Google is not authoritative for the address (not `@gmail.com`, nor in the token's
    /// Workspace domain), or it is not in the pinned Workspace domain
    /// ([`GoogleConfig::require_authoritative`], [`GoogleConfig::hosted_domain`]).
    #[error("Google does not vouch for this address")]
    NotAuthoritative,
    /// `exp - iat` is more than 24 hours: not a lifetime Google gives.
    #[error("the token's lifetime is longer than 24 hours")]
    LifetimeTooLong,
    /// The token's `nonce` is not the one the sign-in page gave this browser (a token minted
    /// for another browser, or replayed).
    #[error("the token's nonce is not this browser's")]
    WrongNonce,
}

impl GoogleError {
    /// The error's kind as written in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            GoogleError::Expired => "expired",
            GoogleError::EmailUnverified | GoogleError::NotAuthoritative => "email_unverified",
            GoogleError::KeysUnavailable(_) => "unavailable",
            _ => "invalid",
        }
    }
}

/// An identity Google vouched for: only the verifier makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleIdentity {
    sub: String,
    email: Email,
    nonce: Option<String>,
}

impl GoogleIdentity {
    /// Google's stable subject id.
    pub fn subject(&self) -> &str {
        &self.sub
    }

    /// The verified address.
    pub fn email(&self) -> &Email {
        &self.email
    }

    /// The token's `nonce` claim, as the page that showed Google's button set it.
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }
}

#[derive(Debug)]
struct CachedKeys {
    set: JwkSet,
    fetched_at: Timestamp,
    max_age: Duration,
}

/// Verifies Google ID tokens; caches Google's keys.
#[derive(Debug)]
pub(crate) struct GoogleVerifier {
    pub(crate) cfg: GoogleConfig,
    clock: Arc<dyn Clock>,
    http: octocrab::Octocrab,
    keys: tokio::sync::RwLock<Option<Arc<CachedKeys>>>,
    /// Held while fetching, so that concurrent fetches coalesce into one.
    fetching: tokio::sync::Mutex<Option<Timestamp>>,
}

fn max_age(headers: &http::HeaderMap) -> Duration {
    headers
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').find_map(|d| d.trim().strip_prefix("max-age=")?.parse::<u64>().ok()))
        .map_or(Duration::ZERO, Duration::from_secs)
}

/// Why the Google sign-in client (its HTTP client, for Google's keys) could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the google sign-in client")]
pub struct GoogleBuildError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl GoogleBuildError {
    /// A stable name: `google_client`.
    pub fn kind(&self) -> &'static str {
        "google_client"
    }
}

impl GoogleVerifier {
    pub(crate) fn new(cfg: GoogleConfig, clock: Arc<dyn Clock>) -> Result<Self, GoogleBuildError> {
        // octocrab's client is a plain hyper + rustls client for any host (it adds credentials
        // only for api.github.com, and it has none here).
        let http = octocrab::Octocrab::builder().build().map_err(|e| GoogleBuildError(Box::new(e)))?;
        Ok(Self { cfg, clock, http, keys: tokio::sync::RwLock::new(None), fetching: tokio::sync::Mutex::new(None) })
    }

    async fn fetch(&self) -> Result<Arc<CachedKeys>, GoogleError> {
        let unavailable = |e: String| GoogleError::KeysUnavailable(e);
        let exchange = async {
            let resp = self.http._get(self.cfg.jwks_url.as_str()).await.map_err(|e| unavailable(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            if !parts.status.is_success() {
                return Err(unavailable(format!("status {}", parts.status)));
            }
            let body = http_body_util::Limited::new(body, MAX_JWKS)
                .collect()
                .await
                .map_err(|_| unavailable("body".into()))?
                .to_bytes();
            let set: JwkSet = serde_json::from_slice(&body).map_err(|e| unavailable(e.to_string()))?;
            Ok(Arc::new(CachedKeys { set, fetched_at: self.clock.now(), max_age: max_age(&parts.headers) }))
        };
        let keys =
            tokio::time::timeout(self.cfg.timeout, exchange).await.map_err(|_| unavailable("timeout".into()))??;
        *self.keys.write().await = Some(keys.clone());
        Ok(keys)
    }

    /// The cached keys while fresh; otherwise one fetch shared by all callers.
    async fn current_keys(&self) -> Result<Arc<CachedKeys>, GoogleError> {
        let fresh = |k: &Arc<CachedKeys>| self.clock.now().since(k.fetched_at) < k.max_age;
        if let Some(k) = self.keys.read().await.as_ref().filter(|k| fresh(k)) {
            return Ok(k.clone());
        }
        let _guard = self.fetching.lock().await;
        if let Some(k) = self.keys.read().await.as_ref().filter(|k| fresh(k)) {
            return Ok(k.clone());
        }
        self.fetch().await
    }

    /// The key `kid`; an unknown one causes one refetch, at most once per refetch interval.
    async fn key(&self, kid: &str) -> Result<DecodingKey, GoogleError> {
        let find = |k: &CachedKeys| k.set.find(kid).map(DecodingKey::from_jwk);
        let keys = self.current_keys().await?;
        if let Some(key) = find(&keys) {
            return key.map_err(|_| GoogleError::UnknownKey);
        }
        let mut last = self.fetching.lock().await;
        // Someone may have refetched while we waited.
        if let Some(key) = self.keys.read().await.as_ref().and_then(|k| find(k)) {
            return key.map_err(|_| GoogleError::UnknownKey);
        }
        let now = self.clock.now();
        if last.is_some_and(|t| now.since(t) < self.cfg.refetch_interval) {
            return Err(GoogleError::UnknownKey);
        }
        *last = Some(now);
        let keys = self.fetch().await?;
        find(&keys).ok_or(GoogleError::UnknownKey)?.map_err(|_| GoogleError::UnknownKey)
    }

    pub(crate) async fn verify(&self, token: &str) -> Result<GoogleIdentity, GoogleError> {
        if token.len() > MAX_TOKEN {
            return Err(GoogleError::Malformed);
        }
        // The header and the claims as written, each key once: jsonwebtoken cannot even parse
        // `alg: none` (a wrong algorithm, not a malformed token), and serde keeps the last of two
        // equal keys (which would let a second `email` win).
        let mut segments = token.split('.');
        let header = segment(segments.next(), "header")?;
        let payload = segment(segments.next(), "claim")?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("RS256") {
            return Err(if header.contains_key("alg") { GoogleError::WrongAlgorithm } else { GoogleError::Malformed });
        }
        if header.contains_key("crit") {
            return Err(GoogleError::CriticalExtension);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| GoogleError::Malformed)?;
        let kid = header.kid.ok_or(GoogleError::MissingKid)?;
        let key = self.key(&kid).await?;
        // RS256 is fixed here, never read from the token. `exp` and `nbf` are checked below on
        // the injected clock.
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&self.cfg.client_ids);
        v.set_issuer(&ISSUERS);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_exp = false;
        v.validate_nbf = false;
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &v).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature => GoogleError::BadSignature,
                    K::InvalidAudience => GoogleError::WrongAudience,
                    K::InvalidIssuer => GoogleError::WrongIssuer,
                    K::MissingRequiredClaim(c) => GoogleError::BadClaim(c.clone()),
                    K::InvalidAlgorithm => GoogleError::WrongAlgorithm,
                    K::Json(_) => GoogleError::BadClaim("(type)".into()),
                    _ => GoogleError::Malformed,
                }
            })?;
        // The signature verified over these very claims; they are read as parsed above, each key
        // once, and held to Google's own shape: `iss` a string (not an array holding it), `aud`
        // ours alone.
        let _verified = data;
        let c = payload;
        if !c.get("iss").and_then(|v| v.as_str()).is_some_and(|iss| ISSUERS.contains(&iss)) {
            return Err(GoogleError::WrongIssuer);
        }
        let ours = |v: &serde_json::Value| v.as_str().is_some_and(|a| self.cfg.client_ids.iter().any(|c| c == a));
        let aud_ours = match c.get("aud") {
            Some(serde_json::Value::Array(all)) => !all.is_empty() && all.iter().all(ours),
            Some(one) => ours(one),
            None => false,
        };
        if !aud_ours {
            return Err(GoogleError::WrongAudience);
        }
        let bad = |name: &str| GoogleError::BadClaim(name.to_owned());
        let number = |name: &str| c.get(name).map(|v| v.as_u64().ok_or_else(|| bad(name))).transpose();
        let sub = c.get("sub").and_then(|v| v.as_str()).filter(|s| !s.is_empty()).ok_or_else(|| bad("sub"))?;
        let exp = number("exp")?.ok_or_else(|| bad("exp"))?;
        let now = self.clock.now().as_secs();
        let leeway = self.cfg.leeway.as_secs();
        if exp.saturating_add(leeway) <= now {
            return Err(GoogleError::Expired);
        }
        if number("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(GoogleError::NotYetValid);
        }
        let iat = number("iat")?.ok_or_else(|| bad("iat"))?;
        if iat > now.saturating_add(MAX_IAT_AHEAD) {
            return Err(GoogleError::IssuedInTheFuture);
        }
        if exp.saturating_sub(iat) > MAX_LIFETIME {
            return Err(GoogleError::LifetimeTooLong);
        }
        if c.get("email_verified") != Some(&serde_json::Value::Bool(true)) {
            return Err(GoogleError::EmailUnverified);
        }
        let email = c.get("email").and_then(|v| v.as_str()).ok_or(GoogleError::BadEmail)?;
        let email = Email::parse(email).map_err(|_| GoogleError::BadEmail)?;
        if self.cfg.require_authoritative || self.cfg.hosted_domain.is_some() {
            let hd = c.get("hd").and_then(|v| v.as_str()).map(str::to_ascii_lowercase);
            let domain = email.as_str().rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
            let vouched = match (&self.cfg.hosted_domain, &hd) {
                (Some(pinned), Some(hd)) => hd.eq_ignore_ascii_case(pinned) && domain == hd,
                (Some(_), None) => false,
                (None, Some(hd)) => domain == hd,
                (None, None) => domain == "gmail.com",
            };
            if !vouched {
                return Err(GoogleError::NotAuthoritative);
            }
        }
        let nonce = match c.get("nonce") {
            None => None,
            Some(v) => Some(v.as_str().ok_or_else(|| bad("nonce"))?.to_owned()),
        };
        Ok(GoogleIdentity { sub: sub.to_owned(), email, nonce })
    }
}
