//! Sending a sign-in link by email: the message ([`LinkMail`]), the [`Mailer`] that delivers it,
//! and, with the `smtp` feature, [`SmtpMailer`] over SMTP (lettre). Give the authorizer one with
//! [`AuthorizerBuilder::mail`](crate::AuthorizerBuilder::mail) and
//! [`Authorizer::send_link`](crate::Authorizer::send_link) issues and sends in one call
//! ([`SentLink`](crate::SentLink), or a [`SendLinkError`](crate::SendLinkError)).
//!
//! A link goes only ever to the stored address of the invitation it opens, never to an address
//! a requester typed: [`LinkMail::to`] is that address, and nothing else is offered.

#[cfg(feature = "smtp")]
mod smtp;

use std::fmt::Write as _;
use std::sync::Arc;

#[cfg(feature = "smtp")]
pub use smtp::{SmtpConfig, SmtpMailer, SmtpSecurity};

use crate::core::email::Email;
use crate::core::ids::AppId;
use crate::core::time::Timestamp;

/// The message that carries one sign-in link: to the invitation's stored address, naming the app
/// and when the link stops working. Its [`Debug`](std::fmt::Debug) leaves the link and the
/// address out.
pub struct LinkMail {
    to: Email,
    app: AppId,
    url: String,
    expires_at: Timestamp,
    valid_for: std::time::Duration,
    texts: Arc<MailTexts>,
}

impl std::fmt::Debug for LinkMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the link nor the address goes into logs.
        f.debug_struct("LinkMail")
            .field("to", &"[redacted]")
            .field("app", &self.app)
            .field("url", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl LinkMail {
    pub(crate) fn new(
        to: Email,
        app: AppId,
        url: String,
        expires_at: Timestamp,
        valid_for: std::time::Duration,
        texts: Arc<MailTexts>,
    ) -> Self {
        LinkMail { to, app, url, expires_at, valid_for, texts }
    }

    /// The invitation's stored address: the only address the link may be sent to.
    pub fn to(&self) -> &Email {
        &self.to
    }

    /// The app the link opens.
    pub fn app(&self) -> &AppId {
        &self.app
    }

    /// When the link stops working.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// The link itself (it holds the single-use token): put it in the message, nowhere else.
    pub fn expose_url(&self) -> &str {
        &self.url
    }

    /// The subject line.
    pub fn subject(&self) -> String {
        self.texts.subject.replace("{app}", self.app.0.as_str())
    }

    /// The plain-text body.
    pub fn text(&self) -> String {
        let t = &self.texts;
        let mut body = String::new();
        let _ = writeln!(body, "{}\n", t.intro.replace("{app}", &self.app.0));
        let _ = writeln!(body, "{}\n", self.url);
        let _ = writeln!(body, "{}\n", self.validity());
        let _ = writeln!(body, "{}", t.not_requested);
        body
    }

    /// The HTML body: the same words, the link as a button; no image, no script, no external
    /// asset.
    pub fn html(&self) -> String {
        let t = &self.texts;
        let url = escape(&self.url);
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{subject}</title></head>\n\
             <body style=\"font-family: sans-serif; line-height: 1.5; max-width: 36em\">\n\
             <p>{intro}</p>\n\
             <p><a href=\"{url}\" style=\"display: inline-block; padding: 0.6em 1.2em; background: #1f6feb; color: #ffffff; \
             text-decoration: none; border-radius: 6px\">{button}</a></p>\n\
             <p>{validity}</p>\n\
             <p style=\"font-size: 0.9em; color: #555555\">{fallback}<br><span style=\"word-break: break-all\">{url}</span></p>\n\
             <p style=\"font-size: 0.9em; color: #555555\">{not_requested}</p>\n\
             </body></html>\n",
            subject = escape(&self.subject()),
            intro = escape(&t.intro.replace("{app}", &self.app.0)),
            button = escape(&t.button.replace("{app}", &self.app.0)),
            validity = escape(&self.validity()),
            fallback = escape(&t.fallback),
            not_requested = escape(&t.not_requested),
        )
    }

    /// "It works once, for 15 minutes, until 2026-12-04 16:45 UTC."
    fn validity(&self) -> String {
        let minutes = self.valid_for.as_secs().div_ceil(60);
        let until = chrono::DateTime::from_timestamp((self.expires_at.0 / 1000) as i64, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default();
        self.texts.validity.replace("{minutes}", &minutes.to_string()).replace("{until}", &until)
    }
}

/// The words of the link's email, configurable (an operator's own product name, another
/// language). `{app}` stands for the app's id wherever it appears; in
/// [`validity`](MailTexts::validity), `{minutes}` for the link's lifetime and `{until}` for when
/// it ends (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MailTexts {
    /// The subject line.
    pub subject: String,
    /// The opening line.
    pub intro: String,
    /// The button's words (HTML).
    pub button: String,
    /// How long the link works.
    pub validity: String,
    /// Above the link written out, under the button (HTML).
    pub fallback: String,
    /// The line for whoever did not ask for the link.
    pub not_requested: String,
}

impl Default for MailTexts {
    fn default() -> Self {
        MailTexts {
            subject: "Your sign-in link for {app}".into(),
            intro: "You were invited to view {app}. Open this link to sign in:".into(),
            button: "Sign in to {app}".into(),
            validity: "The link works once, for {minutes} minutes (until {until}).".into(),
            fallback: "If the button does not work, copy this address into your browser:".into(),
            not_requested: "If you did not ask for this link, you can ignore this message: \
                            nobody can use the link without access to this mailbox."
                .into(),
        }
    }
}

/// Why a message was not sent. Never carries the link or a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// The mail server could not be reached, or failed for now: ask again later.
    #[error("the mail server is unavailable: {0}")]
    Unavailable(String),
    /// The mail server refused the message for good (the recipient, the sender, the credentials).
    #[error("the mail server refused the message: {0}")]
    Refused(String),
    /// The mailer's configuration cannot work (an address that does not parse, plain text to a
    /// host other than this machine).
    #[error("the mailer's configuration cannot work: {0}")]
    Config(String),
}

impl MailError {
    /// `mail_unavailable`, `mail_refused` or `mail_config`.
    pub fn kind(&self) -> &'static str {
        match self {
            MailError::Unavailable(_) => "mail_unavailable",
            MailError::Refused(_) => "mail_refused",
            MailError::Config(_) => "mail_config",
        }
    }

    /// A server that failed for now is [`Unavailable`](crate::ErrorClass::Unavailable); a refusal
    /// or a configuration that cannot work is [`Usage`](crate::ErrorClass::Usage): the operator
    /// must fix it.
    pub fn class(&self) -> crate::ErrorClass {
        match self {
            MailError::Unavailable(_) => crate::ErrorClass::Unavailable,
            MailError::Refused(_) | MailError::Config(_) => crate::ErrorClass::Usage,
        }
    }
}

/// What delivers a sign-in link. [`SmtpMailer`] (feature `smtp`) sends over SMTP; implement it
/// for a provider's API. The message is already addressed: send it to [`LinkMail::to`] alone.
#[async_trait::async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Delivers `mail` to [`LinkMail::to`].
    ///
    /// # Errors
    ///
    /// [`MailError`]: unavailable for now, refused, or a configuration that cannot work.
    async fn send_link(&self, mail: &LinkMail) -> Result<(), MailError>;
}

/// Where the authorizer's links are sent from: the mailer, the address the sign-in pages are
/// served at (a link is `{pages}/auth/link/{token}`), and the words.
#[derive(Clone)]
pub struct MailConfig {
    pub(crate) mailer: Arc<dyn Mailer>,
    pub(crate) pages: String,
    pub(crate) texts: Arc<MailTexts>,
}

impl std::fmt::Debug for MailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailConfig").field("pages", &self.pages).finish_non_exhaustive()
    }
}

impl MailConfig {
    /// Links sent by `mailer`, opening the sign-in pages at `pages` (the origin, and the path
    /// they are nested under, if any: `https://apps.example` gives
    /// `https://apps.example/auth/link/{token}`). Its query and fragment are dropped.
    pub fn new(mailer: Arc<dyn Mailer>, mut pages: url::Url) -> Self {
        pages.set_query(None);
        pages.set_fragment(None);
        let pages = pages.as_str().trim_end_matches('/').to_owned();
        MailConfig { mailer, pages, texts: Arc::new(MailTexts::default()) }
    }

    /// The message's words.
    pub fn with_texts(mut self, texts: MailTexts) -> Self {
        self.texts = Arc::new(texts);
        self
    }

    pub(crate) fn link_url(&self, token: &str) -> String {
        format!("{}/auth/link/{token}", self.pages)
    }
}

/// `s` with HTML's special characters escaped, for text and attribute values alike.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(app: &str) -> LinkMail {
        LinkMail::new(
            Email::parse("dana@example.com").unwrap(),
            AppId(app.into()),
            "https://apps.example/auth/link/gl1_abc".into(),
            Timestamp(1_796_401_500_000),
            std::time::Duration::from_secs(15 * 60),
            Arc::new(MailTexts::default()),
        )
    }

    #[test]
    fn the_message_names_the_app_the_expiry_and_the_line_for_who_did_not_ask() {
        let m = mail("dash");
        assert_eq!(m.subject(), "Your sign-in link for dash");
        let text = m.text();
        assert!(text.contains("view dash"), "{text}");
        assert!(text.contains("https://apps.example/auth/link/gl1_abc"));
        assert!(text.contains("for 15 minutes (until 2026-12-04 "), "{text}");
        assert!(text.contains("If you did not ask for this link"));
        let html = m.html();
        assert!(html.contains("href=\"https://apps.example/auth/link/gl1_abc\""));
        assert!(!html.contains("<script") && !html.contains("<img"));
        assert!(!format!("{m:?}").contains("gl1_abc"), "the link stays out of Debug");
    }

    #[test]
    fn what_the_html_says_is_escaped() {
        let html = mail("a<b>&\"c").html();
        assert!(html.contains("a&lt;b&gt;&amp;&quot;c") && !html.contains("a<b>"));
    }
}
