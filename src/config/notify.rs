//! `[notify]`: how long deliveries are retried, and the named channels
//! (`[notify.NAME]`), each with the events it wants. Channels are tables,
//! not an array, so `OFFBOARD__NOTIFY__NAME__KEY` overrides them like any
//! other key. Secrets (a webhook's signing secret, a Slack URL, SMTP
//! credentials) are named by environment variable, never written here.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, parse_duration};

/// Every event a channel may ask for.
pub const EVENT_KINDS: [&str; 6] = [
    "batch.halted",
    "batch.held",
    "batch.finished",
    "reconcile.failed",
    "dropfolder.file_failed",
    "provider.credentials_rejected",
];

/// `[notify]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct NotifyConfig {
    /// The first wait after a failed delivery; doubled each time, capped
    /// at an hour.
    pub retry_base_ms: u64,
    /// How long a delivery is retried before it is `dead`.
    pub retry_for: String,
    /// The channels, `[notify.NAME]`.
    #[serde(flatten)]
    pub channels: BTreeMap<String, ChannelConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            retry_base_ms: 1_000,
            retry_for: "24h".into(),
            channels: BTreeMap::new(),
        }
    }
}

/// What a channel speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// POST of the event's JSON, signed (`Offboard-Signature`).
    Webhook,
    /// A Slack incoming webhook (`text` and `blocks`).
    Slack,
    /// A mail over SMTP.
    Email,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Email => "email",
        }
    }
}

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// STARTTLS, required (the default).
    #[default]
    Starttls,
    /// Clear text: only to a server on this machine.
    None,
}

/// Which `batch.finished` events a channel gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishedWhen {
    /// Only when some request ended `needs_attention`, `failed` or `dead`.
    #[default]
    Problems,
    /// Every batch that finishes.
    Always,
}

/// `[notify.NAME]`: one channel. Keys that only one kind reads are
/// refused on the others.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub kind: ChannelKind,
    /// The events it wants (`batch.halted`, …).
    pub events: Vec<String>,
    /// `batch.finished` only with problems (default), or always.
    #[serde(default)]
    pub finished: FinishedWhen,
    /// Webhook: where to POST.
    #[serde(default)]
    pub url: Option<String>,
    /// Webhook: the variable holding the signing secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Slack: the variable holding the incoming-webhook URL (a secret).
    #[serde(default)]
    pub url_env: Option<String>,
    /// Email: `host:port` of the SMTP server.
    #[serde(default)]
    pub smtp: Option<String>,
    #[serde(default)]
    pub tls: Option<SmtpTls>,
    /// Email: variables holding the SMTP user and password (both or none).
    #[serde(default)]
    pub user_env: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    /// Webhook: lets `url` be `http://` to another host.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

impl NotifyConfig {
    pub fn retry_for(&self) -> Duration {
        // Validated at load time.
        parse_duration(&self.retry_for).unwrap_or(Duration::from_secs(86_400))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.retry_base_ms == 0 {
            return Err(ConfigError::invalid(
                "notify.retry_base_ms",
                "must be at least 1",
            ));
        }
        parse_duration(&self.retry_for)
            .map_err(|m| ConfigError::invalid("notify.retry_for", m.to_string()))?;
        for (name, channel) in &self.channels {
            channel.validate(name)?;
        }
        Ok(())
    }
}

impl ChannelConfig {
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let key = |field: &str| format!("notify.{name}.{field}");
        crate::domain::ids::check_safe(name, &[]).map_err(|e| {
            ConfigError::invalid(format!("notify.{name}"), format!("channel name {e}"))
        })?;
        if self.events.is_empty() {
            return Err(ConfigError::invalid(
                key("events"),
                "must name at least one event",
            ));
        }
        for event in &self.events {
            if !EVENT_KINDS.contains(&event.as_str()) {
                return Err(ConfigError::invalid(
                    key("events"),
                    format!(
                        "unknown event {event:?} (one of {})",
                        EVENT_KINDS.join(", ")
                    ),
                ));
            }
        }
        let kind = self.kind;
        let only = |field: &str, set: bool, allowed: ChannelKind| {
            super::only_for_kind(key(field), set, kind == allowed, allowed.as_str())
        };
        only("url", self.url.is_some(), ChannelKind::Webhook)?;
        only(
            "secret_env",
            self.secret_env.is_some(),
            ChannelKind::Webhook,
        )?;
        only(
            "allow_insecure_http",
            self.allow_insecure_http,
            ChannelKind::Webhook,
        )?;
        only("url_env", self.url_env.is_some(), ChannelKind::Slack)?;
        for (field, set) in [
            ("smtp", self.smtp.is_some()),
            ("tls", self.tls.is_some()),
            ("user_env", self.user_env.is_some()),
            ("password_env", self.password_env.is_some()),
            ("from", self.from.is_some()),
            ("to", !self.to.is_empty()),
        ] {
            only(field, set, ChannelKind::Email)?;
        }
        let required = |field: &str, value: &Option<String>| {
            value
                .as_deref()
                .filter(|v| !v.trim().is_empty())
                .map(str::to_owned)
                .ok_or_else(|| ConfigError::invalid(key(field), "is required"))
        };
        let env_name = |field: &str, value: &Option<String>| match value {
            Some(var) if !super::model::is_env_name(var) => Err(ConfigError::invalid(
                key(field),
                "must name an environment variable (letters, digits, _)",
            )),
            _ => Ok(()),
        };
        match kind {
            ChannelKind::Webhook => {
                let url = required("url", &self.url)?;
                let url = reqwest::Url::parse(&url)
                    .map_err(|e| ConfigError::invalid(key("url"), format!("not a URL: {e}")))?;
                super::check_transport(&url, self.allow_insecure_http)
                    .map_err(|m| ConfigError::invalid(key("url"), m.to_string()))?;
                required("secret_env", &self.secret_env)?;
                env_name("secret_env", &self.secret_env)?;
            }
            ChannelKind::Slack => {
                required("url_env", &self.url_env)?;
                env_name("url_env", &self.url_env)?;
            }
            ChannelKind::Email => self.validate_email(&key)?,
        }
        Ok(())
    }

    fn validate_email(&self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let smtp = self
            .smtp
            .as_deref()
            .ok_or_else(|| ConfigError::invalid(key("smtp"), "is required (host:port)"))?;
        let (host, port) = smtp
            .rsplit_once(':')
            .ok_or_else(|| ConfigError::invalid(key("smtp"), "must be host:port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(ConfigError::invalid(key("smtp"), "must be host:port"));
        }
        if self.tls == Some(SmtpTls::None) && !super::transport::is_loopback_host(host) {
            return Err(ConfigError::invalid(
                key("tls"),
                "\"none\" is allowed only for a server on this machine (localhost, 127.0.0.0/8, ::1): mail and SMTP credentials would travel in clear text",
            ));
        }
        if self.user_env.is_some() != self.password_env.is_some() {
            return Err(ConfigError::invalid(
                key("password_env"),
                "user_env and password_env go together",
            ));
        }
        for (field, var) in [
            ("user_env", &self.user_env),
            ("password_env", &self.password_env),
        ] {
            if let Some(var) = var
                && !super::model::is_env_name(var)
            {
                return Err(ConfigError::invalid(
                    key(field),
                    "must name an environment variable (letters, digits, _)",
                ));
            }
        }
        let addresses = self.from.iter().chain(self.to.iter());
        for address in addresses {
            if address.parse::<lettre::Address>().is_err() {
                return Err(ConfigError::invalid(
                    key(if Some(address) == self.from.as_ref() {
                        "from"
                    } else {
                        "to"
                    }),
                    format!("{address:?} is not an email address"),
                ));
            }
        }
        if self.from.is_none() {
            return Err(ConfigError::invalid(key("from"), "is required"));
        }
        if self.to.is_empty() {
            return Err(ConfigError::invalid(
                key("to"),
                "must name at least one address",
            ));
        }
        Ok(())
    }

    /// Whether this channel gets `kind`; a `batch.finished` with no
    /// problem only with `finished = "always"`.
    pub fn wants(&self, kind: &str, problems: bool) -> bool {
        self.events.iter().any(|e| e == kind)
            && (kind != "batch.finished" || problems || self.finished == FinishedWhen::Always)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_toml_str(text, "t", &vars).map_err(|e| e.to_string())
    }

    const HOOK: &str = r#"
[notify]
retry_base_ms = 5
[notify.hr_webhook]
kind = "webhook"
url = "https://hris.internal/hooks/offboard"
secret_env = "HOOK_SECRET"
events = ["batch.halted"]
"#;

    #[test]
    fn channels_are_tables_that_env_overrides_reach() {
        let c = load(
            HOOK,
            &[(
                "OFFBOARD__NOTIFY__HR_WEBHOOK__URL",
                "https://other.internal/hook",
            )],
        )
        .unwrap();
        assert_eq!(c.notify.retry_base_ms, 5);
        let hook = &c.notify.channels["hr_webhook"];
        assert_eq!(hook.url.as_deref(), Some("https://other.internal/hook"));
        assert!(hook.wants("batch.halted", false));
        assert!(!hook.wants("batch.finished", true));
    }

    #[test]
    fn bad_channels_name_their_key() {
        let bad_event = HOOK.replace("batch.halted", "batch.exploded");
        assert!(
            load(&bad_event, &[])
                .unwrap_err()
                .contains("notify.hr_webhook.events")
        );
        let clear = HOOK.replace("https://hris", "http://hris");
        assert!(
            load(&clear, &[])
                .unwrap_err()
                .contains("notify.hr_webhook.url")
        );
        let mail = r#"
[notify.mail]
kind = "email"
smtp = "smtp.acme.example:25"
tls = "none"
from = "offboard@acme.example"
to = ["it@acme.example"]
events = ["batch.halted"]
"#;
        assert!(load(mail, &[]).unwrap_err().contains("notify.mail.tls"));
        let local = mail.replace("smtp.acme.example", "127.0.0.1");
        load(&local, &[]).unwrap();
        let misplaced = local.replace("tls = \"none\"", "tls = \"none\"\nurl_env = \"X\"");
        assert!(
            load(&misplaced, &[])
                .unwrap_err()
                .contains("notify.mail.url_env")
        );
    }

    /// The example file's channels, uncommented, are valid as written.
    #[test]
    fn the_example_channels_parse() {
        let text = include_str!("../../config/offboard.example.toml");
        // Only the [notify] section's lines and `public_url`.
        let mut in_notify = false;
        let uncommented: String = text
            .lines()
            .map(|l| {
                match l {
                    "[notify]" => in_notify = true,
                    "[jobs]" => in_notify = false,
                    _ => {}
                }
                let setting = |rest: &str| {
                    rest.starts_with("[notify.")
                        || rest.split('#').next().unwrap_or("").contains(" = ")
                };
                match l.strip_prefix("# ") {
                    Some(rest) if in_notify && setting(rest) => rest.to_owned(),
                    Some(rest) if rest.starts_with("public_url = ") => rest.to_owned(),
                    _ => l.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = load(&uncommented, &[]).unwrap();
        let names: Vec<&str> = c.notify.channels.keys().map(String::as_str).collect();
        assert_eq!(names, ["hr_webhook", "it_mail", "it_slack"]);
        assert_eq!(
            c.http.public_url.as_deref(),
            Some("https://offboard.acme.example")
        );
    }
}
