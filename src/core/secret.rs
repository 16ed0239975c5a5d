//! Secrets: redacted `Debug`, no `Display`, no `Serialize`, an explicitly named accessor.

use std::fmt;

/// A secret's newtype, as every secret here is made: a redacted `Debug`, no `Display`, no
/// `Serialize`, and one accessor named `expose_secret` (visible as `$expose` says) so that every
/// use of the secret itself is easy to find. `Clone` only where the attributes derive it.
macro_rules! secret_type {
    (
        $(#[$meta:meta])*
        $expose:vis $name:ident($inner:ty) -> $exposed:ty, $expose_doc:literal
    ) => {
        $(#[$meta])*
        pub struct $name($inner);

        impl $name {
            #[doc = $expose_doc]
            $expose fn expose_secret(&self) -> &$exposed {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret_type! {
    /// A GitHub token (installation token, personal access token or a user's OAuth token).
    ///
    /// ```
    /// use ghauthz::GithubToken;
    /// let t = GithubToken::new("ghs_abc".to_owned());
    /// assert_eq!(format!("{t:?}"), "GithubToken([redacted])");
    /// assert_eq!(t.expose_secret(), "ghs_abc");
    /// ```
    #[derive(Clone)]
    pub GithubToken(String) -> str, "The token itself. Call it only where the token is sent."
}

impl GithubToken {
    /// Wraps a token.
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// Whether the token can be sent at all: not empty, and only visible ASCII (no space, no
    /// control character such as CR or LF, nothing beyond ASCII), as every token GitHub issues
    /// is. A token that is not is refused before any request, never sent.
    ///
    /// ```
    /// use ghauthz::GithubToken;
    /// assert!(GithubToken::new("ghs_abc".into()).is_well_formed());
    /// assert!(!GithubToken::new("ghs_abc\r\nX-Evil: 1".into()).is_well_formed());
    /// assert!(!GithubToken::new(String::new()).is_well_formed());
    /// ```
    pub fn is_well_formed(&self) -> bool {
        !self.0.is_empty() && self.0.bytes().all(|b| b.is_ascii_graphic())
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

secret_type! {
    /// A GitHub App's private key.
    #[derive(Clone)]
    pub(crate) AppPrivateKey(jsonwebtoken::EncodingKey) -> jsonwebtoken::EncodingKey,
        "The key, for signing. Call it only where the App's JWT is made."
}

impl AppPrivateKey {
    /// Reads an RSA private key in PEM, as GitHub hands it out.
    pub fn from_pem(pem: &[u8]) -> Result<Self, InvalidKey> {
        jsonwebtoken::EncodingKey::from_rsa_pem(pem).map(Self).map_err(|_| InvalidKey)
    }
}

/// A key or secret that cannot be used: not an RSA private key in PEM, a session key shorter than
/// 32 bytes or with an empty or overlong id, no session key or an id listed twice, an empty
/// webhook secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a usable key")]
pub struct InvalidKey;

/// The system's random source failed: no key, token or id could be drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system's random source failed")]
pub struct RandomnessUnavailable;

impl RandomnessUnavailable {
    /// A stable name: `no_randomness`.
    pub fn kind(&self) -> &'static str {
        "no_randomness"
    }
}

impl InvalidKey {
    /// A stable name: `invalid_key`.
    pub fn kind(&self) -> &'static str {
        "invalid_key"
    }
}

secret_type! {
    /// A single-use sign-in link token: what the mailer sends. Not `Clone`: it is handed out once.
    pub LinkToken(String) -> str, "The token itself. Call it only where the link is sent."
}

impl LinkToken {
    pub(crate) fn new(token: String) -> Self {
        Self(token)
    }
}

secret_type! {
    /// A viewer session token (a JWT we signed): what the viewer's browser holds.
    #[derive(Clone)]
    pub SessionToken(String) -> str, "The token itself. Call it only where it is handed to the viewer."
}

impl SessionToken {
    pub(crate) fn new(token: String) -> Self {
        Self(token)
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

secret_type! {
    /// The secret GitHub signs webhook deliveries with (`X-Hub-Signature-256`).
    ///
    /// ```
    /// use ghauthz::WebhookSecret;
    /// let s = WebhookSecret::new("It's a Secret to Everybody".into()).unwrap();
    /// assert_eq!(format!("{s:?}"), "WebhookSecret([redacted])");
    /// assert!(WebhookSecret::new(String::new()).is_err(), "an empty secret signs nothing");
    /// ```
    #[derive(Clone)]
    pub WebhookSecret(Vec<u8>) -> [u8], "The secret. Call it only to compute a signature."
}

impl WebhookSecret {
    /// Wraps a secret; an empty one is refused.
    pub fn new(secret: String) -> Result<Self, InvalidKey> {
        if secret.is_empty() {
            return Err(InvalidKey);
        }
        Ok(Self(secret.into_bytes()))
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
