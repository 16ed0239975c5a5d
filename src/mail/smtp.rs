//! [`SmtpMailer`]: links sent over SMTP with lettre, over TLS or STARTTLS (plain text to this
//! machine alone).

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{LinkMail, MailError, Mailer};

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SmtpSecurity {
    /// TLS from the first byte (SMTPS, port 465 by convention).
    Tls,
    /// A plain connection upgraded with `STARTTLS`, which the server must offer: nothing is sent
    /// before the upgrade (port 587 by convention).
    StartTls,
    /// No encryption: allowed only to a server on this machine (a loopback address or
    /// `localhost`), such as a local relay; anything else is refused when the mailer is made.
    Plain,
}

/// Where and how to send: the server, its protection, the sender, and credentials if the server
/// asks for them. [`Debug`](std::fmt::Debug) leaves the password out.
#[derive(Clone)]
pub struct SmtpConfig {
    host: String,
    port: u16,
    security: SmtpSecurity,
    from: String,
    credentials: Option<(String, String)>,
    root_certificate: Option<Vec<u8>>,
    timeout: Duration,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("from", &self.from)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

impl SmtpConfig {
    /// A server at `host:port`, reached with `security`, sending as `from` (an address, or
    /// `Name <address>`). Commands time out after 30 s.
    pub fn new(host: impl Into<String>, port: u16, security: SmtpSecurity, from: impl Into<String>) -> Self {
        SmtpConfig {
            host: host.into(),
            port,
            security,
            from: from.into(),
            credentials: None,
            root_certificate: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// Signs in to the server as `user` with `password` (sent only over TLS, or over the plain
    /// connection to this machine).
    pub fn with_credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Trusts the certificate authority in `pem` (a private CA's) besides the system's roots.
    pub fn with_root_certificate(mut self, pem: Vec<u8>) -> Self {
        self.root_certificate = Some(pem);
        self
    }

    /// How long any one SMTP command may take (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Sends each link as a message with a plain-text and an HTML part, over one SMTP server.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use ghauthz::mail::{MailConfig, SmtpConfig, SmtpMailer, SmtpSecurity};
/// let smtp = SmtpConfig::new("smtp.example.com", 587, SmtpSecurity::StartTls, "Apps <apps@example.com>")
///     .with_credentials("apps@example.com", std::env::var("SMTP_PASSWORD").unwrap());
/// let mailer = SmtpMailer::new(smtp).unwrap();
/// let mail = MailConfig::new(std::sync::Arc::new(mailer), "https://apps.example".parse().unwrap());
/// # }
/// ```
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer").field("from", &self.from.email.to_string()).finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for `config`. Nothing is sent or connected to yet.
    ///
    /// # Errors
    ///
    /// [`MailError::Config`]: the sender does not parse, plain text to a host other than this
    /// machine, or a certificate or TLS setting that cannot work.
    pub fn new(config: SmtpConfig) -> Result<Self, MailError> {
        let from: Mailbox =
            config.from.parse().map_err(|_| MailError::Config("the sender's address does not parse".into()))?;
        let tls = |host: &str| -> Result<TlsParameters, MailError> {
            let mut builder = TlsParameters::builder(host.to_owned());
            if let Some(pem) = &config.root_certificate {
                let cert = Certificate::from_pem(pem)
                    .map_err(|_| MailError::Config("the root certificate does not parse".into()))?;
                builder = builder.add_root_certificate(cert);
            }
            builder.build_rustls().map_err(|_| MailError::Config("TLS cannot be set up".into()))
        };
        let security = match config.security {
            SmtpSecurity::Tls => Tls::Wrapper(tls(&config.host)?),
            SmtpSecurity::StartTls => Tls::Required(tls(&config.host)?),
            SmtpSecurity::Plain if is_this_machine(&config.host) => Tls::None,
            SmtpSecurity::Plain => {
                return Err(MailError::Config(
                    "plain SMTP is allowed to this machine only; use TLS or STARTTLS for another host".into(),
                ));
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .tls(security)
            .timeout(Some(config.timeout));
        if let Some((user, password)) = config.credentials {
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(SmtpMailer { transport: builder.build(), from })
    }
}

/// A loopback address or `localhost`.
fn is_this_machine(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send_link(&self, mail: &LinkMail) -> Result<(), MailError> {
        let to: Mailbox = mail
            .to()
            .as_str()
            .parse()
            .map_err(|_| MailError::Refused("the stored address is not one SMTP can carry".into()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject())
            .multipart(MultiPart::alternative_plain_html(mail.text(), mail.html()))
            .map_err(|_| MailError::Config("the message cannot be built".into()))?;
        match self.transport.send(message).await {
            Ok(_) => {
                tracing::info!(app = %mail.app(), "link sent");
                Ok(())
            }
            // The server's own words may repeat the address: only the status is kept.
            Err(e) if e.is_permanent() => {
                let status = e.status().map_or_else(String::new, |c| format!(" ({c})"));
                Err(MailError::Refused(format!("the server refused it for good{status}")))
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out".to_owned()
                } else if e.is_tls() {
                    "TLS failed".to_owned()
                } else if let Some(code) = e.status() {
                    format!("the server failed for now ({code})")
                } else {
                    "the connection failed".to_owned()
                };
                tracing::warn!(app = %mail.app(), reason = %what, "link not sent");
                Err(MailError::Unavailable(what))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_goes_to_this_machine_alone() {
        let plain = |host: &str| SmtpMailer::new(SmtpConfig::new(host, 25, SmtpSecurity::Plain, "a@example.com"));
        assert!(plain("127.0.0.1").is_ok());
        assert!(plain("localhost").is_ok());
        assert!(plain("[::1]").is_ok());
        assert_eq!(plain("smtp.example.com").unwrap_err().kind(), "mail_config");
        assert_eq!(plain("10.0.0.1").unwrap_err().kind(), "mail_config");
    }

    #[test]
    fn the_password_stays_out_of_debug() {
        let config = SmtpConfig::new("smtp.example.com", 587, SmtpSecurity::StartTls, "a@example.com")
            .with_credentials("apps", "hunter2-secret");
        assert!(!format!("{config:?}").contains("hunter2"));
        let sender = SmtpConfig::new("127.0.0.1", 25, SmtpSecurity::Plain, "not an address");
        assert_eq!(SmtpMailer::new(sender).unwrap_err().kind(), "mail_config");
    }
}
