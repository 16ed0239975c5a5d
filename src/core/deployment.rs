//! What a deployment may name: the app id's alphabet, a branch git would accept, and a main file
//! inside the repository. Refused values are never deployed, so that no id, branch or path can
//! pass for another in a dashboard or the audit log, or point outside the repository.

/// The longest app id, branch or main file a deployment may name, in bytes.
pub const MAX_DEPLOY_FIELD: usize = 255;

/// What an app id must be, as errors say it (never with the value).
pub(crate) const APP_ID_RULE: &str =
    "an app id: 1 to 255 ASCII letters, digits, `-`, `_` and `.`, starting with a letter or a digit";

/// What a branch must be, as errors say it.
pub(crate) const BRANCH_RULE: &str = "a branch name git accepts (git check-ref-format), at most 255 bytes";

/// What a main file must be, as errors say it.
pub(crate) const MAIN_FILE_RULE: &str = "a relative path inside the repository (no leading `/`, no `.`, `..` or \
     empty component, no `\\`, control or invisible character), at most 255 bytes";

/// Whether `id` may be a new app's id: 1 to [`MAX_DEPLOY_FIELD`] ASCII letters, digits, `-`, `_`
/// and `.`, starting with a letter or a digit. Nothing else (no space, no non-ASCII letter that
/// looks like an ASCII one, no invisible or direction-changing character), so that one id cannot
/// pass for another.
///
/// ```
/// assert!(ghauthz::valid_app_id("dash-2.v1_a"));
/// for refused in ["", "-dash", ".dash", "da sh", "da\u{202e}sh", "d\u{430}sh", "\u{feff}dash", "da/sh"] {
///     assert!(!ghauthz::valid_app_id(refused), "{refused:?}");
/// }
/// ```
pub fn valid_app_id(id: &str) -> bool {
    id.len() <= MAX_DEPLOY_FIELD
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `branch` is a branch name git accepts (`git check-ref-format --branch`), no longer
/// than [`MAX_DEPLOY_FIELD`] bytes and holding no invisible formatting character:
///
/// - no control character, space, `~`, `^`, `:`, `?`, `*`, `[` or `\`;
/// - no `..`, no `@{`, and not `@` or `HEAD` alone;
/// - no empty component (`a//b`, a leading or trailing `/`), none that starts with `.` or ends
///   with `.lock`, and no `.` at the end;
/// - not starting with `-`.
///
/// ```
/// assert!(ghauthz::valid_branch("feature/new-ui"));
/// for refused in ["", "a..b", "-x", "a b", "x.lock", ".x", "a/", "a//b", "@", "HEAD", "a@{1}", "a\u{200b}b"] {
///     assert!(!ghauthz::valid_branch(refused), "{refused:?}");
/// }
/// ```
pub fn valid_branch(branch: &str) -> bool {
    let bad_char =
        |c: char| c.is_control() || invisible(c) || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\');
    !branch.is_empty()
        && branch.len() <= MAX_DEPLOY_FIELD
        && !branch.chars().any(bad_char)
        && !branch.contains("..")
        && !branch.contains("@{")
        && branch != "@"
        && branch != "HEAD"
        && !branch.starts_with('-')
        && !branch.ends_with('.')
        && branch.split('/').all(|part| !part.is_empty() && !part.starts_with('.') && !part.ends_with(".lock"))
}

/// Whether `path` is a file inside the repository: a relative path of at most
/// [`MAX_DEPLOY_FIELD`] bytes whose components are neither empty, `.` nor `..` (so no leading
/// `/`, no `//`, no trailing `/`), holding no `\`, no control character (NUL included) and no
/// invisible formatting character.
///
/// ```
/// assert!(ghauthz::valid_main_file("src/streamlit_app.py"));
/// for refused in ["", "/etc/passwd", "../../x", "src/../../x", "a//b", "./a", "a/", "a\\b", "a\0b", "\u{202e}yp.a"] {
///     assert!(!ghauthz::valid_main_file(refused), "{refused:?}");
/// }
/// ```
pub fn valid_main_file(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= MAX_DEPLOY_FIELD
        && !path.chars().any(|c| c.is_control() || invisible(c) || c == '\\')
        && path.split('/').all(|part| !matches!(part, "" | "." | ".."))
}

/// A character that changes how text around it reads, or passes for a plain space, without
/// showing itself: Unicode's format characters (bidi embeddings, overrides and isolates,
/// zero-width characters, the byte order mark, prepended concatenation marks, tags), every space
/// but U+0020 (no-break, ideographic, the en and em spaces, ...), the line and paragraph
/// separators, the blank braille pattern, the object replacement character and the
/// noncharacters U+FFFE and U+FFFF.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00A0}'
            | '\u{00AD}'
            | '\u{034F}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{115F}'..='\u{1160}'
            | '\u{1680}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{2000}'..='\u{200F}'
            | '\u{2028}'..='\u{202F}'
            | '\u{205F}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3000}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFC}'
            | '\u{FFFE}'..='\u{FFFF}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_character_a_spoof_uses_is_refused_everywhere() {
        let spoofs = ['\u{202E}', '\u{200B}', '\u{2066}', '\u{FEFF}', '\u{200D}', '\u{2069}', '\u{E0041}', '\u{00AD}'];
        let spaces = ['\u{00A0}', '\u{1680}', '\u{2002}', '\u{200A}', '\u{202F}', '\u{205F}', '\u{3000}', '\u{2800}'];
        for c in spoofs.into_iter().chain(spaces).chain(['\u{0600}', '\u{FFFC}', '\u{13430}']) {
            let s = format!("a{c}b");
            assert!(!valid_app_id(&s) && !valid_branch(&s) && !valid_main_file(&s), "{c:?}");
        }
    }

    #[test]
    fn lengths_are_bounded() {
        let long = "a".repeat(MAX_DEPLOY_FIELD);
        assert!(valid_app_id(&long) && valid_branch(&long) && valid_main_file(&long));
        let longer = "a".repeat(MAX_DEPLOY_FIELD + 1);
        assert!(!valid_app_id(&longer) && !valid_branch(&longer) && !valid_main_file(&longer));
    }

    #[test]
    fn unicode_letters_are_fine_in_a_branch_or_a_path_but_not_in_an_id() {
        assert!(valid_branch("fix/ünïcode") && valid_main_file("pages/données.py"));
        assert!(!valid_app_id("données"));
    }
}
