//! Mail to account holders: SMTP when `MAIL_SERVER` is configured, otherwise the message (with its link) is
//! logged so that a development setup still works end to end.
//!
//! Sending happens in the background (`AppState::spawn`), after the request's database work, so a slow or failing
//! mail server neither delays the answer nor reveals through timing whether an address is registered.

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::AccountsConfig;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid MAIL_FROM address {0:?}: {1}")]
    From(String, String),
    #[error("cannot configure the SMTP relay {0:?}: {1}")]
    Relay(String, String),
}

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    Smtp {
        /// Boxed: the transport (a connection pool) is large and `Mailer` is cloned per message.
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        from: Mailbox,
    },
    /// No server configured: log instead of sending.
    Log,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailer::Smtp { from, .. } => write!(f, "Mailer::Smtp(from {from})"),
            Mailer::Log => f.write_str("Mailer::Log"),
        }
    }
}

impl Mailer {
    pub fn from_config(cfg: &AccountsConfig) -> Result<Mailer, MailError> {
        let Some(server) = cfg.mail_server.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(Mailer::Log);
        };
        let from: Mailbox = cfg
            .mail_from
            .parse()
            .map_err(|e: lettre::address::AddressError| {
                MailError::From(cfg.mail_from.clone(), e.to_string())
            })?;
        let mut builder = if cfg.mail_starttls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(server)
                .map_err(|e| MailError::Relay(server.to_owned(), e.to_string()))?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server)
        };
        builder = builder.port(cfg.mail_port);
        if let Some(user) = cfg.mail_username.as_deref().filter(|u| !u.is_empty()) {
            builder = builder.credentials(Credentials::new(
                user.to_owned(),
                cfg.mail_password.clone().unwrap_or_default(),
            ));
        }
        Ok(Mailer::Smtp {
            transport: Box::new(builder.build()),
            from,
        })
    }

    /// Sends (or logs) one plain-text message; failures are logged, never returned to a client.
    pub async fn send(&self, to: &str, subject: &str, body: String) {
        match self {
            Mailer::Log => {
                tracing::info!(to, subject, body = %body, "mail not configured (MAIL_SERVER unset): logging instead");
            }
            Mailer::Smtp { transport, from } => {
                let to_box: Mailbox = match to.parse() {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(to, error = %e, "not mailing an unparsable address");
                        return;
                    }
                };
                let message = Message::builder()
                    .from(from.clone())
                    .to(to_box)
                    .subject(subject)
                    .body(body);
                let message = match message {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot build mail");
                        return;
                    }
                };
                match transport.send(message).await {
                    Ok(_) => metrics::counter!("topoforge_mails_sent_total").increment(1),
                    Err(e) => {
                        metrics::counter!("topoforge_mail_failures_total").increment(1);
                        tracing::error!(to, subject, error = %e, "sending mail failed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_server_means_log() {
        assert!(matches!(
            Mailer::from_config(&AccountsConfig::default()),
            Ok(Mailer::Log)
        ));
    }

    #[test]
    fn bad_from_is_refused() {
        let cfg = AccountsConfig {
            mail_server: Some("smtp.example.com".into()),
            mail_from: "not an address".into(),
            ..AccountsConfig::default()
        };
        assert!(matches!(
            Mailer::from_config(&cfg),
            Err(MailError::From(..))
        ));
    }

    #[test]
    fn a_server_means_smtp() {
        let cfg = AccountsConfig {
            mail_server: Some("smtp.example.com".into()),
            mail_starttls: false,
            mail_port: 2525,
            ..AccountsConfig::default()
        };
        assert!(matches!(Mailer::from_config(&cfg), Ok(Mailer::Smtp { .. })));
    }
}
