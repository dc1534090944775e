//! The typed configuration and its validation rules.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, parse_duration};
use crate::domain::ids::check_safe;

/// The whole worker configuration (`config/offboard.example.toml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub worker: WorkerConfig,
    pub retry: RetryConfig,
    pub intake: IntakeConfig,
    /// Named provider connections, `[providers.NAME]`.
    pub providers: BTreeMap<String, ProviderConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (created when missing).
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://offboard.db".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Requests processed at the same time by one process.
    pub concurrency: usize,
    /// How often a worker proves it is alive to the queue.
    pub heartbeat_secs: u64,
    /// Heartbeats a worker may miss before its jobs are given to another.
    pub missed_heartbeats: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            heartbeat_secs: 30,
            missed_heartbeats: 2,
        }
    }
}

impl WorkerConfig {
    /// How long a request's claim lives without renewal: the same window
    /// after which the queue hands a silent worker's jobs to another, so a
    /// recovered job finds the dead worker's claim expired.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs * self.missed_heartbeats as u64)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First backoff delay; doubled per attempt, with full jitter.
    pub base_ms: u64,
    /// Longest backoff delay.
    pub cap_ms: u64,
    /// Attempts per request before it is `dead`.
    pub max_attempts: u32,
    /// Waits up to this long happen in place; longer ones reschedule the job.
    pub inline_wait_max_ms: u64,
}

impl RetryConfig {
    fn validate(&self, section: &str) -> Result<(), ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::invalid(
                format!("{section}.max_attempts"),
                "must be at least 1",
            ));
        }
        if self.base_ms == 0 {
            return Err(ConfigError::invalid(
                format!("{section}.base_ms"),
                "must be at least 1",
            ));
        }
        if self.cap_ms < self.base_ms {
            return Err(ConfigError::invalid(
                format!("{section}.cap_ms"),
                "must be at least base_ms",
            ));
        }
        Ok(())
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            base_ms: 500,
            cap_ms: 60_000,
            max_attempts: 10,
            inline_wait_max_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// How long a successful request answers for a resubmission of it.
    pub dedupe_window: String,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            dedupe_window: "24h".into(),
        }
    }
}

impl IntakeConfig {
    pub fn dedupe_window(&self) -> Duration {
        // Validated at load time.
        parse_duration(&self.dedupe_window).unwrap_or(Duration::from_secs(86_400))
    }
}

/// Which provider API a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Aitronos,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Aitronos => "aitronos",
        }
    }
}

/// How the token is presented to the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthScheme {
    /// `X-API-Key: <token>` (Aitronos API keys).
    ApiKey,
    /// `Authorization: Bearer <token>`.
    Bearer,
}

/// One named provider connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    pub base_url: String,
    /// Name of the environment variable holding the token.
    pub token_env: String,
    #[serde(default)]
    pub auth: Option<AuthScheme>,
    /// Users never touched by this connection; reported as `skipped`.
    #[serde(default)]
    pub protected_users: Vec<String>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Client-side rate limit for this connection (shared by all workers of
    /// the process); unset means no limit.
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// Calls that may go out at once after a quiet spell (default 1).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Calls in flight at once to this connection; unset means no cap.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Overrides of `[retry]` for this connection.
    #[serde(default)]
    pub retry: Option<RetryOverride>,
}

/// Per-connection overrides of the global retry policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryOverride {
    pub base_ms: Option<u64>,
    pub cap_ms: Option<u64>,
    pub max_attempts: Option<u32>,
    pub inline_wait_max_ms: Option<u64>,
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

fn default_timeout_ms() -> u64 {
    30_000
}

impl ProviderConfig {
    /// The retry policy for this connection: the global one with this
    /// connection's overrides.
    pub fn retry_policy(&self, global: &RetryConfig) -> RetryConfig {
        let o = self.retry.clone().unwrap_or_default();
        RetryConfig {
            base_ms: o.base_ms.unwrap_or(global.base_ms),
            cap_ms: o.cap_ms.unwrap_or(global.cap_ms),
            max_attempts: o.max_attempts.unwrap_or(global.max_attempts),
            inline_wait_max_ms: o.inline_wait_max_ms.unwrap_or(global.inline_wait_max_ms),
        }
    }

    pub fn auth_scheme(&self) -> AuthScheme {
        self.auth.unwrap_or(match self.kind {
            ProviderKind::Aitronos => AuthScheme::ApiKey,
        })
    }
}

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.database.url.starts_with("sqlite:") {
            return Err(ConfigError::invalid(
                "database.url",
                format!(
                    "{:?} is not supported: use sqlite://PATH",
                    self.database.url
                ),
            ));
        }
        if self.worker.concurrency == 0 || self.worker.concurrency > 1024 {
            return Err(ConfigError::invalid(
                "worker.concurrency",
                "must be between 1 and 1024",
            ));
        }
        if self.worker.heartbeat_secs == 0 {
            return Err(ConfigError::invalid(
                "worker.heartbeat_secs",
                "must be at least 1",
            ));
        }
        if self.worker.missed_heartbeats == 0 {
            return Err(ConfigError::invalid(
                "worker.missed_heartbeats",
                "must be at least 1",
            ));
        }
        if self.retry.max_attempts == 0 {
            return Err(ConfigError::invalid(
                "retry.max_attempts",
                "must be at least 1",
            ));
        }
        if self.retry.base_ms == 0 || self.retry.cap_ms < self.retry.base_ms {
            return Err(ConfigError::invalid(
                "retry.cap_ms",
                "base_ms must be at least 1 and cap_ms at least base_ms",
            ));
        }
        parse_duration(&self.intake.dedupe_window)
            .map_err(|m| ConfigError::invalid("intake.dedupe_window", m))?;
        for (name, provider) in &self.providers {
            provider.validate(name)?;
            provider
                .retry_policy(&self.retry)
                .validate(&format!("providers.{name}.retry"))?;
        }
        Ok(())
    }
}

impl ProviderConfig {
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let key = |field: &str| format!("providers.{name}.{field}");
        check_safe(name, &[]).map_err(|e| {
            ConfigError::invalid(format!("providers.{name}"), format!("connection name {e}"))
        })?;
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| ConfigError::invalid(key("base_url"), format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(ConfigError::invalid(
                key("base_url"),
                "must be an http:// or https:// URL",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::invalid(
                key("base_url"),
                "must not carry a query or fragment",
            ));
        }
        let env_ok = !self.token_env.is_empty()
            && self
                .token_env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !env_ok {
            return Err(ConfigError::invalid(
                key("token_env"),
                "must name an environment variable (letters, digits, _)",
            ));
        }
        if self.timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                key("timeout_ms"),
                "timeouts must be positive",
            ));
        }
        Ok(())
    }
}
