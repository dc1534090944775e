//! The typed configuration and its validation rules.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, parse_duration};
use crate::connectors::{ProviderConfig, RetryConfig};
use crate::domain::Role;
use crate::domain::role::UnknownRole;
use crate::identity::{Cidr, TrustedProxy};

/// The whole worker configuration (`config/offboard.example.toml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub worker: WorkerConfig,
    pub retry: RetryConfig,
    pub intake: IntakeConfig,
    pub http: HttpConfig,
    pub jobs: JobsConfig,
    pub safety: SafetyConfig,
    pub retention: RetentionConfig,
    /// Notification channels, `[notify.NAME]`.
    pub notify: super::notify::NotifyConfig,
    /// Named provider connections, `[providers.NAME]`.
    pub providers: BTreeMap<String, ProviderConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (created when missing, one machine) or
    /// `postgres://USER@HOST:PORT/DB` (many workers on many machines).
    pub url: String,
    /// Environment variable holding the PostgreSQL password, so it never
    /// sits in the config file or the URL.
    pub password_env: Option<String>,
    /// Connections of each of this process's two pools (apalis's queue,
    /// our tables): up to twice this many in all.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://offboard.db".into(),
            password_env: None,
            max_connections: 8,
        }
    }
}

impl DatabaseConfig {
    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")
    }

    /// The URL without its password, for messages and logs.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// The same server URL naming database `name` instead (query kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{server}/{name}{query}")
}

/// Drops the password of a `scheme://user:password@host` URL, and of a
/// `?password=` (or `&password=`) query parameter, which PostgreSQL's
/// drivers read too.
pub(super) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", pairs.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
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

/// The HTTP API of `offboard serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
    /// Environment variable holding the API's bearer token; the API refuses
    /// to start while it is unset.
    pub token_env: String,
    /// Largest accepted upload, in bytes (413 beyond).
    pub max_upload_bytes: u64,
    /// From a connection's start (or its last answer) to the end of the
    /// next request's headers; past it the connection is closed.
    pub header_read_timeout_ms: u64,
    /// From a request's start to its answer's headers (408 beyond); a
    /// streamed answer (a report) is not cut once it has started.
    pub request_timeout_ms: u64,
    /// Open connections at once; one more is answered 503.
    pub max_connections: usize,
    /// How long a stop waits for open API requests before closing them.
    pub shutdown_grace_ms: u64,
    /// Serve `/readyz` and `/metrics` without the token (probes and
    /// scrapers carry none).
    pub public_probes: bool,
    /// Single sign-on through a proxy in front of the API.
    pub trusted_proxy: Option<TrustedProxyConfig>,
    /// A web console session ends after this long without a request.
    pub session_idle: String,
    /// Where people reach the console (`https://offboard.acme.example`);
    /// links in notifications start here.
    pub public_url: Option<String>,
}

impl HttpConfig {
    pub fn session_idle(&self) -> Duration {
        // Validated at load time.
        parse_duration(&self.session_idle).unwrap_or(Duration::from_secs(1800))
    }
}

/// `[http.trusted_proxy]`: a proxy (oauth2-proxy, an SSO gateway) names
/// the person in a header, believed only from the proxy's own addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedProxyConfig {
    /// The header that names the person, e.g. `X-Forwarded-Email`.
    pub header: String,
    /// The proxy's source addresses or networks (`10.0.0.5`, `10.0.0.0/8`);
    /// the header is ignored from anywhere else.
    pub from: Vec<String>,
    /// People (`alice@acme.example`) or domains (`*@acme.example`) and
    /// their roles; a person matching neither is refused.
    #[serde(default)]
    pub roles: BTreeMap<String, String>,
}

impl TrustedProxyConfig {
    /// The validated proxy, or the key and message of the first bad value.
    pub fn parse(&self) -> Result<TrustedProxy, ConfigError> {
        let key = |k: &str| format!("http.trusted_proxy.{k}");
        let header_ok = !self.header.is_empty()
            && self
                .header
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !header_ok {
            return Err(ConfigError::invalid(key("header"), "must be a header name"));
        }
        if self.from.is_empty() {
            return Err(ConfigError::invalid(
                key("from"),
                "must list the proxy's addresses: the header is believed only from them",
            ));
        }
        let from = self
            .from
            .iter()
            .map(|c| Cidr::parse(c).map_err(|m| ConfigError::invalid(key("from"), m.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let mut roles = BTreeMap::new();
        for (who, role) in &self.roles {
            let role: Role = role.parse().map_err(|e: UnknownRole| {
                ConfigError::invalid(key(&format!("roles.{who}")), e.to_string())
            })?;
            roles.insert(who.clone(), role);
        }
        Ok(TrustedProxy::new(&self.header, from, roles))
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            token_env: "OFFBOARD_API_TOKEN".into(),
            max_upload_bytes: 50 * 1024 * 1024,
            header_read_timeout_ms: 10_000,
            request_timeout_ms: 300_000,
            max_connections: 256,
            shutdown_grace_ms: 10_000,
            public_probes: false,
            trusted_proxy: None,
            session_idle: "30m".into(),
            public_url: None,
        }
    }
}

/// Caps that keep a wrong file from doing harm before a person looks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SafetyConfig {
    /// A batch with more requests than this (a CSV, a reconciliation, the
    /// requests a retry reopens, a released preview) is `halted` and waits
    /// for `offboard approve`.
    pub max_batch_requests: u64,
    /// A CSV batch older than this is not retried without `--force`: the
    /// people in it may have come back meanwhile.
    pub retry_max_age: String,
    /// A held preview not released within this is cancelled.
    pub hold_ttl: String,
    /// A halted batch is never approved by the actor who submitted it
    /// (nor who retried or released it), and `run --yes` approves nothing
    /// above the cap.
    pub four_eyes: bool,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        Self {
            max_batch_requests: 500,
            retry_max_age: "72h".into(),
            hold_ttl: "7d".into(),
            four_eyes: true,
        }
    }
}

impl SafetyConfig {
    pub fn retry_max_age(&self) -> Duration {
        // Validated at load time.
        parse_duration(&self.retry_max_age).unwrap_or(Duration::from_secs(72 * 3600))
    }

    pub fn hold_ttl(&self) -> Duration {
        parse_duration(&self.hold_ttl).unwrap_or(Duration::from_secs(7 * 86_400))
    }
}

/// How long the record of a finished batch is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Finished batches older than this many days are purged (with their
    /// requests, checkpoints and audit events), leaving one `purged`
    /// record each; open, halted and held batches never are.
    pub keep_days: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { keep_days: 400 }
    }
}

/// Where declarative job specs (drop folders, schedules) live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    pub dir: String,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self { dir: "jobs".into() }
    }
}

pub(super) fn is_env_name(var: &str) -> bool {
    !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.database.url.starts_with("sqlite:") && !self.database.is_postgres() {
            return Err(ConfigError::invalid(
                "database.url",
                format!(
                    "{:?} is not supported: use sqlite://PATH or postgres://USER@HOST/DB",
                    self.database.display_url()
                ),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::invalid(
                "database.max_connections",
                "must be at least 1",
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
            .map_err(|m| ConfigError::invalid("intake.dedupe_window", m.to_string()))?;
        parse_duration(&self.safety.retry_max_age)
            .map_err(|m| ConfigError::invalid("safety.retry_max_age", m.to_string()))?;
        parse_duration(&self.safety.hold_ttl)
            .map_err(|m| ConfigError::invalid("safety.hold_ttl", m.to_string()))?;
        self.http
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| {
                ConfigError::invalid("http.listen", format!("not an address:port: {e}"))
            })?;
        if !is_env_name(&self.http.token_env) {
            return Err(ConfigError::invalid(
                "http.token_env",
                "must name an environment variable (letters, digits, _)",
            ));
        }
        for (key, value) in [
            ("http.max_upload_bytes", self.http.max_upload_bytes),
            (
                "http.header_read_timeout_ms",
                self.http.header_read_timeout_ms,
            ),
            ("http.request_timeout_ms", self.http.request_timeout_ms),
            ("http.max_connections", self.http.max_connections as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be positive"));
            }
        }
        parse_duration(&self.http.session_idle)
            .map_err(|m| ConfigError::invalid("http.session_idle", m.to_string()))?;
        if let Some(proxy) = &self.http.trusted_proxy {
            proxy.parse()?;
        }
        if let Some(public) = &self.http.public_url {
            let url = reqwest::Url::parse(public)
                .map_err(|e| ConfigError::invalid("http.public_url", format!("not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
                return Err(ConfigError::invalid(
                    "http.public_url",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        self.notify.validate()?;
        if self.retention.keep_days == 0 {
            return Err(ConfigError::invalid(
                "retention.keep_days",
                "must be at least 1",
            ));
        }
        for (name, provider) in &self.providers {
            super::providers::validate(name, provider, &self.retry)?;
        }
        Ok(())
    }
}
