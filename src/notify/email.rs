//! Email over SMTP (lettre): STARTTLS by default, clear text only to a
//! server on this machine (checked at load time). The subject names the
//! event and the batch; the body is the message's lines.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use super::{Message, NotifyError};
use crate::config::SmtpTls;

/// Where and how to send mail.
pub struct Smtp<'a> {
    pub host: &'a str,
    pub port: u16,
    pub tls: SmtpTls,
    pub credentials: Option<&'a (String, SecretString)>,
    pub from: &'a str,
    pub to: &'a [String],
    pub timeout: Duration,
}

/// The mail of `message`: subject `[offboard] TITLE`.
pub fn mail(smtp: &Smtp<'_>, message: &Message) -> Result<lettre::Message, NotifyError> {
    let address = |a: &str| {
        a.parse::<lettre::message::Mailbox>()
            .map_err(|e| NotifyError::Smtp(format!("address {a:?}: {e}")))
    };
    let mut builder = lettre::Message::builder()
        .from(address(smtp.from)?)
        .subject(format!("[offboard] {}", message.title));
    for to in smtp.to {
        builder = builder.to(address(to)?);
    }
    let mut body = message.lines.join("\n");
    body.push('\n');
    builder
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| NotifyError::Smtp(e.to_string()))
}

/// Sends `message` through the server.
pub async fn send(smtp: &Smtp<'_>, message: &Message) -> Result<(), NotifyError> {
    let mail = mail(smtp, message)?;
    let builder = match smtp.tls {
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(smtp.host)
            .map_err(|e| NotifyError::Smtp(e.to_string()))?,
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host),
    };
    let mut builder = builder.port(smtp.port).timeout(Some(smtp.timeout));
    if let Some((user, password)) = smtp.credentials {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_owned(),
        ));
    }
    builder
        .build()
        .send(mail)
        .await
        .map(|_| ())
        .map_err(|e| NotifyError::Smtp(e.to_string()))
}
