//! Caller keys: who may ask the decision point. A key is held as its SHA-256 digest only and
//! compared in constant time against every key held; a file of keys is readable by its owner
//! alone and can be read again while serving (rotation without a restart).

use std::fmt;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::class::ErrorClass;

/// The shortest key taken, in characters.
pub const MIN_KEY_LEN: usize = 32;

/// The largest keys file read.
const MAX_FILE: u64 = 1024 * 1024;

/// What a key may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// `POST /access/v1/evaluation` and `/evaluations`.
    Evaluate,
    /// The three searches under `/access/v1/search/`.
    Search,
    /// Everything a key may call.
    All,
}

impl Scope {
    /// Whether a key of this scope may call what `needed` names.
    pub fn admits(self, needed: Scope) -> bool {
        self == Scope::All || self == needed
    }

    fn parse(s: &str) -> Option<Scope> {
        match s {
            "evaluate" => Some(Scope::Evaluate),
            "search" => Some(Scope::Search),
            "all" => Some(Scope::All),
            _ => None,
        }
    }
}

/// The keys callers present as `Authorization: Bearer KEY`, each with its [`Scope`]. `Debug`
/// shows how many there are, nothing of them.
///
/// ```
/// use ghauthz::http::{ApiKeys, Scope};
/// let keys = ApiKeys::parse("# rotated 2026-12-01\nevaluate k1-0123456789abcdef0123456789abcdef\n").unwrap();
/// assert_eq!(keys.scope_of("k1-0123456789abcdef0123456789abcdef"), Some(Scope::Evaluate));
/// assert_eq!(keys.scope_of("k1-0123456789abcdef0123456789abcdeX"), None);
/// assert_eq!(ApiKeys::parse("all short").unwrap_err().kind(), "bad_api_keys");
/// ```
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Vec<([u8; 32], Scope)>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys").field("keys", &self.digests.len()).finish()
    }
}

/// A keys file that could not be taken. The message names the file's line, never its text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeysError {
    /// The file cannot be read.
    #[error("cannot read the keys file: {0}")]
    Read(#[source] std::io::Error),
    /// Others than its owner may read or write the file.
    #[error("the keys file is readable or writable by others than its owner (chmod 600 it)")]
    Permissions,
    /// The file is larger than 1 MiB.
    #[error("the keys file is larger than 1 MiB")]
    TooLarge,
    /// A line is not `SCOPE KEY` (scope `evaluate`, `search` or `all`; a key of at least 32
    /// printable ASCII characters).
    #[error("keys file line {line}: {problem}")]
    Line {
        /// The line, counted from 1.
        line: usize,
        /// What is wrong with it (never its text).
        problem: &'static str,
    },
    /// The file holds no key.
    #[error("the keys file holds no key")]
    Empty,
    /// No random source for a new key.
    #[error("no random source for a new key")]
    Random(#[source] getrandom::Error),
}

impl ApiKeysError {
    /// A short machine-readable name: `bad_api_keys`, or `no_random_source`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiKeysError::Random(_) => "no_random_source",
            _ => "bad_api_keys",
        }
    }

    /// What the error means to the caller: a file to fix ([`ErrorClass::Usage`]), or a machine
    /// that cannot make a key ([`ErrorClass::Unavailable`]).
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiKeysError::Random(_) => ErrorClass::Unavailable,
            _ => ErrorClass::Usage,
        }
    }
}

impl ApiKeys {
    /// Keys from the text of a keys file: one `SCOPE KEY` a line, blank lines and lines starting
    /// with `#` skipped.
    ///
    /// # Errors
    ///
    /// [`ApiKeysError::Line`] for a line that is not one, naming the line; [`ApiKeysError::Empty`]
    /// when no line holds a key.
    pub fn parse(text: &str) -> Result<Self, ApiKeysError> {
        let mut digests = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |problem| ApiKeysError::Line { line: n + 1, problem };
            let mut words = line.split_ascii_whitespace();
            let (Some(scope), Some(key), None) = (words.next(), words.next(), words.next()) else {
                return Err(bad("expected `SCOPE KEY`"));
            };
            let scope = Scope::parse(scope).ok_or(bad("the scope is not `evaluate`, `search` or `all`"))?;
            if key.len() < MIN_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad("a key is at least 32 printable ASCII characters"));
            }
            let d = digest(key);
            if digests.iter().any(|(held, _)| *held == d) {
                return Err(bad("the key is on an earlier line too"));
            }
            digests.push((d, scope));
        }
        if digests.is_empty() {
            return Err(ApiKeysError::Empty);
        }
        Ok(ApiKeys { digests })
    }

    /// Keys from a keys file, which its owner alone may read and write (on Unix).
    ///
    /// # Errors
    ///
    /// [`ApiKeysError::Permissions`] for a file others may read or write, and as
    /// [`ApiKeys::parse`].
    pub fn load(path: &Path) -> Result<Self, ApiKeysError> {
        use std::io::Read as _;
        let file = std::fs::File::open(path).map_err(ApiKeysError::Read)?;
        let meta = file.metadata().map_err(ApiKeysError::Read)?;
        if !meta.is_file() {
            return Err(ApiKeysError::Read(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(ApiKeysError::Permissions);
            }
        }
        if meta.len() > MAX_FILE {
            return Err(ApiKeysError::TooLarge);
        }
        let mut text = String::new();
        file.take(MAX_FILE + 1).read_to_string(&mut text).map_err(ApiKeysError::Read)?;
        if text.len() as u64 > MAX_FILE {
            return Err(ApiKeysError::TooLarge);
        }
        Self::parse(&text)
    }

    /// One new key of scope [`Scope::All`] (43 characters, 256 random bits), and the keys
    /// holding it: for a world-mode server's own run.
    ///
    /// # Errors
    ///
    /// [`ApiKeysError::Random`] when the machine has no random source.
    pub fn generate() -> Result<(Self, String), ApiKeysError> {
        use base64::Engine as _;
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(ApiKeysError::Random)?;
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Ok((ApiKeys { digests: vec![(digest(&key), Scope::All)] }, key))
    }

    /// The scope of the key `presented`, if it is one of these keys. Its digest is compared
    /// with every key's in constant time, and all of them are compared whatever matches.
    pub fn scope_of(&self, presented: &str) -> Option<Scope> {
        let presented = digest(presented);
        let mut found = None;
        for (held, scope) in &self.digests {
            if constant_time_eq::constant_time_eq_32(held, &presented) {
                found = Some(*scope);
            }
        }
        found
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether no key is held (then nobody is let in).
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    const K1: &str = "evaluate-only-key-0123456789abcdef";
    const K2: &str = "search-only-key-0123456789abcdefgh";

    #[test]
    fn each_key_has_its_scope_and_nothing_else_is_a_key() {
        let keys = ApiKeys::parse(&format!("evaluate {K1}\n\n# a comment\n  search {K2}  \n")).unwrap();
        assert_eq!((keys.scope_of(K1), keys.scope_of(K2)), (Some(Scope::Evaluate), Some(Scope::Search)));
        assert_eq!(keys.scope_of(&K1[1..]), None);
        assert_eq!(keys.scope_of(""), None);
        assert!(Scope::All.admits(Scope::Search) && !Scope::Evaluate.admits(Scope::Search));
        assert_eq!(format!("{keys:?}"), "ApiKeys { keys: 2 }");
    }

    #[test]
    fn a_bad_line_is_named_by_number_and_never_repeated() {
        let secret = "all sh0rt-secret";
        let err = ApiKeys::parse(&format!("# ok\n{secret}\n")).unwrap_err();
        assert!(matches!(err, ApiKeysError::Line { line: 2, .. }), "{err}");
        assert!(!err.to_string().contains("sh0rt"));
        for text in [format!("admin {K1}"), format!("all {K1} extra"), "all".to_owned(), format!("all {K1}\u{7f}")] {
            assert!(matches!(ApiKeys::parse(&text), Err(ApiKeysError::Line { line: 1, .. })), "{text:?}");
        }
        assert!(matches!(ApiKeys::parse("# nothing\n"), Err(ApiKeysError::Empty)));
        let twice = format!("evaluate {K1}\nall {K1}\n");
        assert!(matches!(ApiKeys::parse(&twice), Err(ApiKeysError::Line { line: 2, .. })), "a key is on one line");
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("all {K1}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(ApiKeys::load(&path), Err(ApiKeysError::Permissions)));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(ApiKeys::load(&path).unwrap().scope_of(K1), Some(Scope::All));
    }

    #[test]
    fn a_generated_key_is_long_and_admits_everything() {
        let (keys, key) = ApiKeys::generate().unwrap();
        assert!(key.len() >= MIN_KEY_LEN);
        assert_eq!(keys.scope_of(&key), Some(Scope::All));
        assert_ne!(ApiKeys::generate().unwrap().1, key);
    }
}
