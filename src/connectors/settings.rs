//! A `[providers.NAME]` section: the options every connection has
//! ([`Connection`]: URL, token, auth, timeouts, pacing, retries,
//! protection) and its kind's own ([`KindSettings`], declared in the
//! kind's folder). A key of another kind is refused naming the kind that
//! reads it. Validation against the rest of the configuration (the keys it
//! names, URLs, protection by email) is `config`'s.

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

use super::fields::fields_of;
use super::kind::{AuthScheme, KindSettings, ProviderKind};
use super::retry::RetryConfig;
use crate::domain::protection;

/// One named provider connection: the shared options and its kind's own.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    /// What every kind reads.
    pub connection: Connection,
    /// What only this connection's kind reads; it carries the kind.
    pub settings: KindSettings,
}

/// The options of a connection that every kind reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    pub base_url: String,
    /// Name of the environment variable holding the token (not used with
    /// client credentials).
    #[serde(default)]
    pub token_env: String,
    /// Unset: the kind's declared default.
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
    /// The connector's own account at the provider: never offboarded, and
    /// skipped by reconciliation.
    #[serde(default)]
    pub service_account_id: Option<String>,
    /// Client credentials (a kind that declares them): variables holding
    /// the client id and secret.
    #[serde(default)]
    pub client_id_env: Option<String>,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Client credentials: the tenant's token endpoint and the API audience.
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    /// Lets `base_url` and `token_url` be `http://` to another host (the
    /// token then travels in clear text; `offboard check` warns).
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// Per-connection overrides of the global retry policy.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
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

impl Connection {
    /// A connection with every shared option at its default.
    pub fn new(base_url: impl Into<String>, token_env: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            token_env: token_env.into(),
            auth: None,
            protected_users: Vec::new(),
            connect_timeout_ms: default_connect_timeout_ms(),
            timeout_ms: default_timeout_ms(),
            requests_per_second: None,
            burst: None,
            max_concurrency: None,
            retry: None,
            service_account_id: None,
            client_id_env: None,
            client_secret_env: None,
            token_url: None,
            audience: None,
            allow_insecure_http: false,
        }
    }
}

impl ProviderConfig {
    /// A connection of the kind `settings` carries, with every shared
    /// option at its default (demo, benchmarks).
    pub fn new(
        settings: KindSettings,
        base_url: impl Into<String>,
        token_env: impl Into<String>,
    ) -> Self {
        Self {
            connection: Connection::new(base_url, token_env),
            settings,
        }
    }

    pub fn kind(&self) -> ProviderKind {
        self.settings.kind()
    }

    /// The retry policy for this connection: the global one with this
    /// connection's overrides.
    pub fn retry_policy(&self, global: &RetryConfig) -> RetryConfig {
        let o = self.connection.retry.clone().unwrap_or_default();
        RetryConfig {
            base_ms: o.base_ms.unwrap_or(global.base_ms),
            cap_ms: o.cap_ms.unwrap_or(global.cap_ms),
            max_attempts: o.max_attempts.unwrap_or(global.max_attempts),
            inline_wait_max_ms: o.inline_wait_max_ms.unwrap_or(global.inline_wait_max_ms),
        }
    }

    /// The `auth` set, else the one the kind declares.
    pub fn auth_scheme(&self) -> AuthScheme {
        self.connection
            .auth
            .unwrap_or(self.kind().declaration().default_auth)
    }

    /// Everyone this connection must never offboard: `protected_users` and
    /// its own `service_account_id`.
    pub fn protection(&self) -> protection::Protection {
        let c = &self.connection;
        protection::Protection::new(
            self.kind().id_case(),
            c.protected_users
                .iter()
                .chain(c.service_account_id.iter())
                .map(String::as_str),
        )
    }
}

/// A key of a `[providers.NAME]` section that another kind reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` only applies to kind = \"{}\"", owner.as_str())]
pub struct Misplaced {
    pub key: String,
    /// The kind whose folder declares the key.
    pub owner: ProviderKind,
}

/// The first key of `section` that is neither shared nor its own kind's
/// but another kind's; `None` too when the kind is missing or unknown
/// (reading the section says so).
pub fn misplaced(section: &toml::Table) -> Option<Misplaced> {
    let kind: ProviderKind = section.get("kind")?.clone().try_into().ok()?;
    let own = (kind.declaration().settings_fields)();
    let shared = fields_of::<Connection>();
    section
        .keys()
        .filter(|k| *k != "kind" && !own.contains(&k.as_str()) && !shared.contains(&k.as_str()))
        .find_map(|key| {
            ProviderKind::ALL
                .into_iter()
                .find(|o| (o.declaration().settings_fields)().contains(&key.as_str()))
                .map(|owner| Misplaced {
                    key: key.clone(),
                    owner,
                })
        })
}

/// Reads the section's keys into the shared part and the kind's part, each
/// refusing a key it does not know, and a key of another kind by name.
impl<'de> Deserialize<'de> for ProviderConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let message = |e: toml::de::Error| D::Error::custom(e.message());
        let section = toml::Table::deserialize(deserializer)?;
        if let Some(m) = misplaced(&section) {
            return Err(D::Error::custom(m));
        }
        let kind: ProviderKind = section
            .get("kind")
            .ok_or_else(|| D::Error::missing_field("kind"))?
            .clone()
            .try_into()
            .map_err(message)?;
        let own = (kind.declaration().settings_fields)();
        let (settings, connection): (toml::Table, toml::Table) = section
            .into_iter()
            .partition(|(k, _)| k == "kind" || own.contains(&k.as_str()));
        let typed = |t: toml::Table| toml::Value::Table(t);
        Ok(Self {
            settings: typed(settings).try_into().map_err(message)?,
            connection: typed(connection).try_into().map_err(message)?,
        })
    }
}

/// A provider connection with its secrets in hand.
#[derive(Debug, Clone)]
pub struct ResolvedProvider {
    pub name: String,
    pub config: ProviderConfig,
    /// The static token (empty with client credentials).
    pub token: SecretString,
    /// Client credentials: the client id and secret.
    pub client: Option<(String, SecretString)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<ProviderConfig, String> {
        toml::from_str(text).map_err(|e: toml::de::Error| e.message().to_owned())
    }

    #[test]
    fn shared_and_own_keys_land_in_their_parts() {
        let p = read(
            "kind = \"auth0\"\nbase_url = \"https://t/api/v2\"\ntoken_env = \"T\"\nblock_user = true\nburst = 3\n",
        )
        .unwrap();
        assert_eq!(p.kind(), ProviderKind::Auth0);
        assert_eq!(p.connection.burst, Some(3));
        assert!(matches!(p.settings, KindSettings::Auth0(s) if s.block_user && !s.revoke_sessions));
    }

    #[test]
    fn another_kinds_key_names_that_kind_and_an_unknown_key_is_refused() {
        let err = read("kind = \"aitronos\"\nbase_url = \"https://x\"\nblock_user = false\n")
            .unwrap_err();
        assert_eq!(err, "`block_user` only applies to kind = \"auth0\"");
        let err = read("kind = \"scim\"\nbase_url = \"https://x\"\ntimout_ms = 1\n").unwrap_err();
        assert!(err.contains("unknown field `timout_ms`"), "{err}");
        let err = read("base_url = \"https://x\"\n").unwrap_err();
        assert!(err.contains("missing field `kind`"), "{err}");
        let err = read("kind = \"okta\"\nbase_url = \"https://x\"\n").unwrap_err();
        assert!(err.contains("unknown variant `okta`"), "{err}");
    }
}
