//! Email addresses, normalized once on the way in. Pure; no I/O.

use std::fmt;

use serde::Serialize;

/// The longest address accepted, in bytes, after normalization.
pub const MAX_EMAIL_LEN: usize = 254;

/// A normalized email address: trimmed, lowercased, exactly one `@`, ASCII only (the domain
/// through IDNA), at most 254 bytes.
///
/// ```
/// use ghauthz::Email;
/// assert_eq!(Email::parse("  Dana@Example.COM ").unwrap().as_str(), "dana@example.com");
/// assert_eq!(Email::parse("dana@bücher.example").unwrap().as_str(), "dana@xn--bcher-kva.example");
/// assert!(Email::parse("\"dana\"@example.com").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Email(String);

/// Why an address was refused. The address itself is not repeated: it may be anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmailError {
    /// Nothing but whitespace.
    #[error("the address is empty")]
    Empty,
    /// Whitespace or a control character inside the address.
    #[error("the address contains whitespace or a control character")]
    Whitespace,
    /// Not exactly one `@` (a full-width `＠` is not one).
    #[error("the address must contain exactly one `@`")]
    At,
    /// A quoted local part (`"a b"@example.com`).
    #[error("quoted local parts are not accepted")]
    Quoted,
    /// The part before `@` is empty, not ASCII, or has characters or dots an address may not.
    #[error("the part before `@` is not a plain ASCII local part")]
    LocalPart,
    /// The domain is not a valid (internationalized) host name with at least two labels.
    #[error("the part after `@` is not a valid domain")]
    Domain,
    /// Longer than 254 bytes.
    #[error("the address is longer than 254 bytes")]
    TooLong,
}

impl EmailError {
    /// A stable name: `invalid_email` (the variant says what is wrong).
    pub fn kind(&self) -> &'static str {
        "invalid_email"
    }
}

fn atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Email {
    /// Normalizes and validates an address.
    pub fn parse(input: &str) -> Result<Email, EmailError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(EmailError::Empty);
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError::Whitespace);
        }
        if s.starts_with('"') || s.contains('"') {
            return Err(EmailError::Quoted);
        }
        let mut parts = s.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(EmailError::At);
        };
        if local.is_empty()
            || local.len() > 64
            || !local.bytes().all(|b| atext(b) || b == b'.')
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
        {
            return Err(EmailError::LocalPart);
        }
        let domain = idna::domain_to_ascii(domain).map_err(|_| EmailError::Domain)?;
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 || !labels.iter().all(|l| valid_label(l)) {
            return Err(EmailError::Domain);
        }
        let email = format!("{}@{}", local.to_ascii_lowercase(), domain);
        if email.len() > MAX_EMAIL_LEN {
            return Err(EmailError::TooLong);
        }
        Ok(Email(email))
    }

    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Email {
    type Err = EmailError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Email::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        Email::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}")).0
    }

    fn err(input: &str) -> EmailError {
        Email::parse(input).expect_err(input)
    }

    #[test]
    fn case_and_surrounding_space_are_normalized() {
        assert_eq!(ok("DANA@EXAMPLE.COM"), "dana@example.com");
        assert_eq!(ok(" \t dana@example.com \n"), "dana@example.com");
        assert_eq!(ok("first.last+tag@sub.example.co.uk"), "first.last+tag@sub.example.co.uk");
    }

    #[test]
    fn exactly_one_at() {
        assert_eq!(err("dana＠example.com"), EmailError::At, "full-width at sign");
        assert_eq!(err("dana@evil@example.com"), EmailError::At);
        assert_eq!(err("dana.example.com"), EmailError::At);
    }

    #[test]
    fn quoted_local_parts_are_refused() {
        assert_eq!(err("\"dana\"@example.com"), EmailError::Quoted);
        assert_eq!(err("\"a@b\"@example.com"), EmailError::Quoted);
    }

    #[test]
    fn whitespace_and_control_characters_are_refused() {
        assert_eq!(err("da na@example.com"), EmailError::Whitespace);
        assert_eq!(err("dana@exa\u{0}mple.com"), EmailError::Whitespace);
        assert_eq!(err("dana\r\n@example.com"), EmailError::Whitespace);
        assert_eq!(err("dana@example.com\u{7f}x"), EmailError::Whitespace);
        assert_eq!(err("   "), EmailError::Empty);
    }

    #[test]
    fn local_part_is_plain_ascii() {
        assert_eq!(err("dänä@example.com"), EmailError::LocalPart);
        assert_eq!(err(".dana@example.com"), EmailError::LocalPart);
        assert_eq!(err("da..na@example.com"), EmailError::LocalPart);
        assert_eq!(err("@example.com"), EmailError::LocalPart);
        assert_eq!(err("da(na)@example.com"), EmailError::LocalPart);
    }

    #[test]
    fn idn_domains_become_ascii() {
        assert_eq!(ok("dana@BÜCHER.example"), "dana@xn--bcher-kva.example");
        assert_eq!(ok("dana@xn--bcher-kva.example"), "dana@xn--bcher-kva.example");
        assert_eq!(ok("dana@ｅｘａｍｐｌｅ.com"), "dana@example.com", "full-width letters map to ASCII");
        assert_eq!(err("dana@localhost"), EmailError::Domain);
        assert_eq!(err("dana@-bad.example"), EmailError::Domain);
        assert_eq!(err("dana@exa_mple.com"), EmailError::Domain);
        assert_eq!(err("dana@"), EmailError::Domain);
    }

    #[test]
    fn over_long_addresses_are_refused() {
        let label = "a".repeat(60);
        let long = format!("dana@{label}.{label}.{label}.{label}.example");
        assert!(long.len() > MAX_EMAIL_LEN);
        assert_eq!(err(&long), EmailError::TooLong);
        assert_eq!(err(&format!("{}@example.com", "a".repeat(65))), EmailError::LocalPart);
        let fits = format!("{}@{}.example", "a".repeat(64), "b".repeat(60));
        assert_eq!(ok(&fits).len(), fits.len());
    }
}
