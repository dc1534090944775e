//! Worker configuration: a TOML file, overridden by `OFFBOARD__SECTION__KEY`
//! environment variables, validated once at start with errors that name the
//! offending key. Secrets are never in the file: only the names of the
//! environment variables that hold them. A provider connection's section
//! is read by the connectors' types (each kind's options in its folder);
//! its checks against the rest are here (`providers.rs`).

mod duration;
mod env;
mod model;
mod notify;
mod providers;
mod secrets;
mod transport;

use std::path::Path;

/// The `[retry]` and `[providers.NAME]` sections are read by the
/// connectors' own types.
pub use crate::connectors::{ProviderConfig, ResolvedProvider, RetryConfig, RetryOverride};
pub use duration::{DurationError, millis, parse_duration};
pub use model::{
    Config, DatabaseConfig, HttpConfig, IntakeConfig, JobsConfig, SafetyConfig, WorkerConfig,
    with_database,
};
pub use notify::{ChannelConfig, ChannelKind, EVENT_KINDS, FinishedWhen, NotifyConfig, SmtpTls};
pub(crate) use secrets::read_var;
pub use secrets::resolve_providers;
pub use transport::{InsecureTransport, check_transport};

/// Why the configuration cannot be used. Every variant names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("invalid configuration: {message}")]
    Shape { message: String },
    #[error("invalid configuration: `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("environment override {var}: {message}")]
    Override { var: String, message: String },
}

/// A key set on a kind that does not read it (`allowed` names the one
/// that does) is an error naming the key, rather than silently ignored.
pub(crate) fn only_for_kind(
    key: String,
    set: bool,
    is_allowed: bool,
    allowed: &str,
) -> Result<(), ConfigError> {
    if set && !is_allowed {
        return Err(ConfigError::invalid(
            key,
            format!("only applies to kind = \"{allowed}\""),
        ));
    }
    Ok(())
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Loads `path` (when given), applies the process environment's
    /// overrides and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, &vars)
    }

    /// As [`Config::load`], with the environment passed in (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        vars: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let (text, label) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?,
                p.display().to_string(),
            ),
            None => (String::new(), "<defaults>".to_owned()),
        };
        Self::from_toml_str(&text, &label, vars)
    }

    pub fn from_toml_str(
        text: &str,
        label: &str,
        vars: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: label.to_owned(),
                    message: e.to_string(),
                })?;
        let file = table.clone();
        env::apply_overrides(&mut table, vars)?;
        providers::check_misplaced(&table)?;
        let config = typed(table).map_err(|e| {
            let message = e.message().to_owned();
            // A misspelt variable is named as the user wrote it, not as
            // the field it did not match.
            match env::culprit(&file, vars, |t| typed(t).is_err()) {
                Some(var) => ConfigError::Override { var, message },
                None => ConfigError::Shape { message },
            }
        })?;
        config.validate()?;
        Ok(config)
    }
}

/// The table as typed configuration, or serde's error (whose message the
/// caller shows).
fn typed(table: toml::Table) -> Result<Config, toml::de::Error> {
    toml::Value::Table(table).try_into()
}

#[cfg(test)]
mod tests;
