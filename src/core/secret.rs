//! Secrets: redacted `Debug`, no `Display`, no `Serialize`, an explicitly named accessor.

use std::fmt;

/// A GitHub token (installation token, personal access token or a user's OAuth token).
///
/// ```
/// use ghauthz::GithubToken;
/// let t = GithubToken::new("ghs_abc".to_owned());
/// assert_eq!(format!("{t:?}"), "GithubToken([redacted])");
/// assert_eq!(t.expose_secret(), "ghs_abc");
/// ```
#[derive(Clone)]
pub struct GithubToken(String);

impl GithubToken {
    /// Wraps a token.
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// The token itself. Call it only where the token is sent.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for GithubToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GithubToken([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let t = GithubToken::new("ghp_supersecret".to_owned());
        let shown = format!("{t:?} {:?}", Some(&t));
        assert!(!shown.contains("supersecret"), "{shown}");
    }
}

/// A GitHub App's private key.
#[derive(Clone)]
pub struct AppPrivateKey(jsonwebtoken::EncodingKey);

impl AppPrivateKey {
    /// Reads an RSA private key in PEM, as GitHub hands it out.
    pub fn from_pem(pem: &[u8]) -> Result<Self, InvalidKey> {
        jsonwebtoken::EncodingKey::from_rsa_pem(pem).map(Self).map_err(|_| InvalidKey)
    }

    /// The key, for signing. Call it only where the App's JWT is made.
    pub(crate) fn encoding_key(&self) -> &jsonwebtoken::EncodingKey {
        &self.0
    }
}

impl fmt::Debug for AppPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppPrivateKey([redacted])")
    }
}

/// A key that is not an RSA private key in PEM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a usable key")]
pub struct InvalidKey;

/// A single-use sign-in link token: what the mailer sends. Not `Clone`: it is handed out once.
pub struct LinkToken(String);

impl LinkToken {
    pub(crate) fn new(token: String) -> Self {
        Self(token)
    }

    /// The token itself. Call it only where the link is sent.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkToken([redacted])")
    }
}

/// A viewer session token (a JWT we signed): what the viewer's browser holds.
#[derive(Clone)]
pub struct SessionToken(String);

impl SessionToken {
    pub(crate) fn new(token: String) -> Self {
        Self(token)
    }

    /// The token itself. Call it only where it is handed to the viewer.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

/// A key that signs viewer sessions (HMAC-SHA256), with the id that names it in tokens.
#[derive(Clone)]
pub struct SessionKey {
    pub(crate) kid: String,
    pub(crate) secret: Vec<u8>,
}

impl SessionKey {
    /// A key from its id and at least 32 bytes of secret.
    pub fn new(kid: impl Into<String>, secret: Vec<u8>) -> Result<Self, InvalidKey> {
        let kid = kid.into();
        if secret.len() < 32 || kid.is_empty() || kid.len() > 64 {
            return Err(InvalidKey);
        }
        Ok(Self { kid, secret })
    }

    /// The key's id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The secret. Call it only to store the key.
    pub fn expose_secret(&self) -> &[u8] {
        &self.secret
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({:?}, [redacted])", self.kid)
    }
}

/// The secret GitHub signs webhook deliveries with (`X-Hub-Signature-256`).
///
/// ```
/// use ghauthz::WebhookSecret;
/// let s = WebhookSecret::new("It's a Secret to Everybody".into()).unwrap();
/// assert_eq!(format!("{s:?}"), "WebhookSecret([redacted])");
/// assert!(WebhookSecret::new(String::new()).is_err(), "an empty secret signs nothing");
/// ```
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// Wraps a secret; an empty one is refused.
    pub fn new(secret: String) -> Result<Self, InvalidKey> {
        if secret.is_empty() {
            return Err(InvalidKey);
        }
        Ok(Self(secret.into_bytes()))
    }

    /// The secret. Call it only to compute a signature.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn every_secret_is_redacted() {
        let link = LinkToken::new("gl1_supersecretlinktoken".into());
        let session = SessionToken::new("eyJsupersecret".into());
        let key = SessionKey::new("k1", vec![7; 32]).unwrap();
        let hook = WebhookSecret::new("supersecrethook".into()).unwrap();
        let shown = format!("{link:?} {session:?} {key:?} {hook:?}");
        assert!(!shown.contains("supersecret") && !shown.contains("7, 7"), "{shown}");
        assert!(SessionKey::new("k1", vec![0; 16]).is_err(), "short keys are refused");
    }
}
