//! Fault path globs: `*` matches within one segment, `**` any number of segments (zero included).

/// Whether `path` matches `pattern`.
pub(crate) fn matches(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.trim_end_matches('/').split('/').collect();
    let segs: Vec<&str> = path.split('?').next().unwrap_or("").trim_end_matches('/').split('/').collect();
    match_segments(&pat, &segs)
}

fn match_segments(pat: &[&str], segs: &[&str]) -> bool {
    match pat.split_first() {
        None => segs.is_empty(),
        Some((&"**", rest)) => (0..=segs.len()).any(|skip| match_segments(rest, &segs[skip..])),
        Some((p, rest)) => segs
            .split_first()
            .is_some_and(|(s, srest)| match_segment(p.as_bytes(), s.as_bytes()) && match_segments(rest, srest)),
    }
}

fn match_segment(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|skip| match_segment(rest, &s[skip..])),
        Some((c, rest)) => s.split_first().is_some_and(|(d, srest)| c == d && match_segment(rest, srest)),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn star_stays_within_a_segment() {
        assert!(matches("/repos/acme/flaky/*", "/repos/acme/flaky/collaborators"));
        assert!(!matches("/repos/acme/flaky/*", "/repos/acme/flaky/collaborators/bob/permission"));
        assert!(!matches("/repos/acme/flaky/*", "/repos/acme/flaky"));
        assert!(matches("/repos/acme/fl*", "/repos/acme/flaky"));
    }

    #[test]
    fn double_star_crosses_segments() {
        assert!(matches("/repos/acme/flaky/**", "/repos/acme/flaky"));
        assert!(matches("/repos/acme/flaky/**", "/repos/acme/flaky/collaborators/bob/permission"));
        assert!(matches("/**/permission", "/repositories/9/collaborators/bob/permission"));
        assert!(!matches("/repos/acme/other/**", "/repos/acme/flaky"));
    }
}
