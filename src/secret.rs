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
#[error("not an RSA private key in PEM")]
pub struct InvalidKey;
