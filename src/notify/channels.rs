//! The configured channels with their secrets read from the environment.
//! Secrets live as `SecretString` (a Slack URL included: whoever has it can
//! post to the channel), so `Debug` never shows them.

use secrecy::SecretString;

use crate::config::{ChannelConfig, ChannelKind, Config, ConfigError, SmtpTls};

/// A channel ready to send.
#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    pub config: ChannelConfig,
    pub target: ChannelTarget,
}

/// Where a channel sends, with its secrets.
#[derive(Debug, Clone)]
pub enum ChannelTarget {
    Webhook {
        url: reqwest::Url,
        secret: SecretString,
    },
    Slack {
        url: SecretString,
    },
    Email {
        host: String,
        port: u16,
        tls: SmtpTls,
        credentials: Option<(String, SecretString)>,
        from: String,
        to: Vec<String>,
    },
}

/// Reads every channel's secrets. A missing or empty variable is a
/// configuration error naming the key and the variable, never a value.
pub fn resolve_channels(
    config: &Config,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Channel>, ConfigError> {
    config
        .notify
        .channels
        .iter()
        .map(|(name, c)| {
            let read = |field: &str, var: &Option<String>, what: &str| {
                let var = var.as_deref().unwrap_or_default();
                crate::config::read_var(&lookup, format!("notify.{name}.{field}"), var, what)
            };
            let target = match c.kind {
                ChannelKind::Webhook => ChannelTarget::Webhook {
                    // Validated at load time.
                    url: reqwest::Url::parse(c.url.as_deref().unwrap_or_default()).map_err(
                        |e| ConfigError::invalid(format!("notify.{name}.url"), e.to_string()),
                    )?,
                    secret: SecretString::from(read(
                        "secret_env",
                        &c.secret_env,
                        "the webhook's signing secret",
                    )?),
                },
                ChannelKind::Slack => {
                    let url = read("url_env", &c.url_env, "the Slack incoming-webhook URL")?;
                    let parsed = reqwest::Url::parse(&url).map_err(|_| {
                        ConfigError::invalid(
                            format!("notify.{name}.url_env"),
                            "the variable does not hold a URL",
                        )
                    })?;
                    crate::config::check_transport(&parsed, false).map_err(|m| {
                        ConfigError::invalid(
                            format!("notify.{name}.url_env"),
                            format!("the URL {m}"),
                        )
                    })?;
                    ChannelTarget::Slack {
                        url: SecretString::from(url),
                    }
                }
                ChannelKind::Email => {
                    let smtp = c.smtp.as_deref().unwrap_or_default();
                    let (host, port) = smtp.rsplit_once(':').unwrap_or((smtp, "25"));
                    let credentials = match (&c.user_env, &c.password_env) {
                        (Some(_), Some(_)) => Some((
                            read("user_env", &c.user_env, "the SMTP user")?,
                            SecretString::from(read(
                                "password_env",
                                &c.password_env,
                                "the SMTP password",
                            )?),
                        )),
                        _ => None,
                    };
                    ChannelTarget::Email {
                        host: host.trim_matches(['[', ']']).to_owned(),
                        port: port.parse().unwrap_or(25),
                        tls: c.tls.unwrap_or_default(),
                        credentials,
                        from: c.from.clone().unwrap_or_default(),
                        to: c.to.clone(),
                    }
                }
            };
            Ok(Channel {
                name: name.clone(),
                config: c.clone(),
                target,
            })
        })
        .collect()
}
