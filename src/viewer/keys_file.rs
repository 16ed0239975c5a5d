//! The keys file: the session keys as JSON (`{"session_keys": [{"kid", "secret"}]}`), read with
//! errors that say where and what, never what the file holds; and, with feature `keys-file`, a
//! file kept readable by its owner alone, created on first use.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{KeysFile, SessionKeys};
use crate::core::secret::SessionKey;

/// The most read of a keys file.
pub const MAX_KEYS_FILE: u64 = 64 << 10;

/// A keys file that could not be read: where, and what is wrong, never what the file holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{problem}", file.as_ref().map(|f| format!("keys file `{}`: ", f.display())).unwrap_or_default(), position(*line, *column, field.as_deref()))]
pub struct KeysFileError {
    file: Option<PathBuf>,
    line: Option<usize>,
    column: Option<usize>,
    field: Option<String>,
    problem: KeysFileProblem,
}

impl KeysFileError {
    /// `problem` at `position` (line, column) and `field`, where known.
    fn at(position: Option<(usize, usize)>, field: Option<String>, problem: KeysFileProblem) -> Self {
        let (line, column) = position.unzip();
        Self { file: None, line, column, field, problem }
    }

    /// A problem of the file as a whole, not of a place in it.
    #[cfg(feature = "keys-file")]
    fn whole(problem: KeysFileProblem) -> Self {
        Self::at(None, None, problem)
    }

    /// The same error, naming the file it came from.
    #[cfg(feature = "keys-file")]
    fn in_file(mut self, path: &Path) -> Self {
        self.file = Some(path.to_owned());
        self
    }

    /// The file, where it was read from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The 1-based line, where known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The 1-based column, where known.
    pub fn column(&self) -> Option<usize> {
        self.column
    }

    /// The field, as a path of the format's own names (`session_keys[1].secret`), where known.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// A stable name: `bad_keys`.
    pub fn kind(&self) -> &'static str {
        "bad_keys"
    }
}

/// What is wrong with a keys file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum KeysFileProblem {
    #[error("not JSON")]
    NotJson,
    #[error("the file ends early")]
    EndsEarly,
    #[error("missing, or not of its type")]
    Shape,
    #[error("not base64url without padding")]
    NotBase64,
    #[error("shorter than 32 bytes")]
    ShortSecret,
    #[error("empty, or longer than 64 bytes")]
    BadKid,
    #[error("no keys, or a key id listed twice")]
    NoKeysOrDuplicate,
    #[cfg(feature = "keys-file")]
    #[error("refused: it is a symlink")]
    Symlink,
    #[cfg(feature = "keys-file")]
    #[error("refused: not a regular file")]
    NotAFile,
    #[cfg(feature = "keys-file")]
    #[error("refused: it belongs to another user")]
    OtherOwner,
    #[cfg(feature = "keys-file")]
    #[error("refused: others may read or write it (mode {0:o}); `chmod 600` it")]
    OpenToOthers(u32),
    #[cfg(feature = "keys-file")]
    #[error("larger than {} bytes", MAX_KEYS_FILE)]
    TooLarge,
    #[cfg(feature = "keys-file")]
    #[error("not UTF-8 text")]
    NotText,
    #[cfg(feature = "keys-file")]
    #[error("cannot read it ({0})")]
    Unreadable(std::io::ErrorKind),
    #[cfg(feature = "keys-file")]
    #[error("cannot create it ({0})")]
    Uncreatable(std::io::ErrorKind),
    #[cfg(feature = "keys-file")]
    #[error("no random source for a fresh key")]
    NoRandomness,
    #[cfg(feature = "keys-file")]
    #[error("could neither read nor create it")]
    Raced,
}

fn position(line: Option<usize>, column: Option<usize>, field: Option<&str>) -> String {
    let mut out = String::new();
    if let (Some(l), Some(c)) = (line, column) {
        out.push_str(&format!("line {l}, column {c}, "));
    }
    if let Some(f) = field {
        out.push_str(&format!("`{f}`: "));
    }
    out
}

/// The path to where deserializing stopped, in the format's own names only: a key the format
/// does not define (which the file wrote) is not repeated.
fn defined_path(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                let name =
                    ["session_keys", "kid", "secret"].into_iter().find(|n| n == key).unwrap_or("(unknown field)");
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    (!out.is_empty()).then_some(out)
}

impl SessionKeys {
    /// Reads the keys file format (`{"session_keys": [{"kid", "secret" (base64url)}]}`).
    ///
    /// # Errors
    ///
    /// [`KeysFileError`], naming the line, column and field where they are known, and never
    /// repeating what the file holds.
    ///
    /// ```
    /// use ghauthz::SessionKeys;
    /// let err = SessionKeys::from_json("{\"session_keys\": [{\"kid\": \"k1\", \"secret\": 7}]}").unwrap_err();
    /// assert_eq!((err.line(), err.field()), (Some(1), Some("session_keys[0].secret")));
    /// assert_eq!(err.to_string(), "line 1, column 43, `session_keys[0].secret`: missing, or not of its type");
    /// ```
    pub fn from_json(text: &str) -> Result<Self, KeysFileError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let file: KeysFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = defined_path(e.path());
            let inner = e.into_inner();
            let problem = match inner.classify() {
                serde_json::error::Category::Eof => KeysFileProblem::EndsEarly,
                serde_json::error::Category::Data => KeysFileProblem::Shape,
                serde_json::error::Category::Syntax | serde_json::error::Category::Io => KeysFileProblem::NotJson,
            };
            KeysFileError::at(Some((inner.line(), inner.column())), field, problem)
        })?;
        de.end().map_err(|e| KeysFileError::at(Some((e.line(), e.column())), None, KeysFileProblem::NotJson))?;
        let at =
            |i: usize, what: &str, problem| KeysFileError::at(None, Some(format!("session_keys[{i}].{what}")), problem);
        let keys = file
            .session_keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                let secret =
                    URL_SAFE_NO_PAD.decode(k.secret).map_err(|_| at(i, "secret", KeysFileProblem::NotBase64))?;
                if k.kid.is_empty() || k.kid.len() > 64 {
                    return Err(at(i, "kid", KeysFileProblem::BadKid));
                }
                SessionKey::new(k.kid, secret).map_err(|_| at(i, "secret", KeysFileProblem::ShortSecret))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
            .map_err(|_| KeysFileError::at(None, Some("session_keys".into()), KeysFileProblem::NoKeysOrDuplicate))
    }

    /// The keys file at `path`: read it, or create it with one fresh key, so that a token issued
    /// by one process verifies in the next.
    ///
    /// # Security
    ///
    /// The file is created readable by its owner only, written through a temporary file created
    /// exclusively under an unpredictable name beside it, and linked into place only if no other
    /// process got there first (never through a symlink). An existing file that is a symlink, is
    /// readable or writable by others, or belongs to another user is refused; so is one larger
    /// than [`MAX_KEYS_FILE`].
    ///
    /// # Errors
    ///
    /// [`KeysFileError`], naming the file and, for a malformed one, the line, column and field.
    ///
    /// ```
    /// use ghauthz::SessionKeys;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("keys.json");
    /// let created = SessionKeys::load_or_create(&path).unwrap();
    /// let read = SessionKeys::load_or_create(&path).unwrap();
    /// assert_eq!(created.kids(), read.kids(), "the second call reads what the first wrote");
    /// ```
    #[cfg(feature = "keys-file")]
    pub fn load_or_create(path: &Path) -> Result<SessionKeys, KeysFileError> {
        use std::io::ErrorKind;
        let whole = |problem| KeysFileError::whole(problem).in_file(path);
        for _ in 0..3 {
            match read_keys_file(path) {
                Ok(text) => return SessionKeys::from_json(&text).map_err(|e| e.in_file(path)),
                Err(Unread::Io(ErrorKind::NotFound)) => {}
                Err(Unread::Io(kind)) => return Err(whole(KeysFileProblem::Unreadable(kind))),
                Err(Unread::Refused(problem)) => return Err(whole(problem)),
            }
            let keys = SessionKeys::generate().map_err(|_| whole(KeysFileProblem::NoRandomness))?;
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let uncreatable = |e: std::io::Error| whole(KeysFileProblem::Uncreatable(e.kind()));
            // `tempfile` creates it with O_EXCL under a random name, mode 0600 on Unix.
            let mut temp = tempfile::Builder::new().prefix(".ghauthz-keys-").tempfile_in(dir).map_err(uncreatable)?;
            std::io::Write::write_all(&mut temp, keys.to_json_with_secrets().as_bytes())
                .and_then(|()| temp.as_file().sync_all())
                .map_err(uncreatable)?;
            match temp.persist_noclobber(path) {
                Ok(_) => return Ok(keys),
                // Another process created it first (or something else is there): read that.
                Err(e) if e.error.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(uncreatable(e.error)),
            }
        }
        Err(whole(KeysFileProblem::Raced))
    }
}

/// Why a keys file's text was not had.
#[cfg(feature = "keys-file")]
enum Unread {
    Io(std::io::ErrorKind),
    Refused(KeysFileProblem),
}

/// The keys file's text, if it is a regular file of ours that nobody else may read or write.
#[cfg(feature = "keys-file")]
fn read_keys_file(path: &Path) -> Result<String, Unread> {
    use std::io::Read as _;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    let file = options.open(path).map_err(|e| {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            Unread::Refused(KeysFileProblem::Symlink)
        } else {
            Unread::Io(e.kind())
        }
    })?;
    let meta = file.metadata().map_err(|e| Unread::Io(e.kind()))?;
    if !meta.is_file() {
        return Err(Unread::Refused(KeysFileProblem::NotAFile));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if meta.uid() != rustix::process::geteuid().as_raw() {
            return Err(Unread::Refused(KeysFileProblem::OtherOwner));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(Unread::Refused(KeysFileProblem::OpenToOthers(meta.mode() & 0o777)));
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_KEYS_FILE + 1).read_to_end(&mut bytes).map_err(|e| Unread::Io(e.kind()))?;
    if bytes.len() as u64 > MAX_KEYS_FILE {
        return Err(Unread::Refused(KeysFileProblem::TooLarge));
    }
    String::from_utf8(bytes).map_err(|_| Unread::Refused(KeysFileProblem::NotText))
}
