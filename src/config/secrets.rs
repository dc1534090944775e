//! Tokens, read from the environment variables that the configuration names.
//! They live as `SecretString` and are only exposed where a header is set.

use secrecy::SecretString;

use super::{Config, ConfigError};
use crate::connectors::{AuthScheme, ResolvedProvider};

/// Reads every connection's token. A missing or empty variable is a
/// configuration error naming the key and the variable, never the value.
pub fn resolve_providers(
    config: &Config,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<ResolvedProvider>, ConfigError> {
    config
        .providers
        .iter()
        .map(|(name, provider)| {
            let read = |field: &str, var: &str, what: &str| {
                read_var(&lookup, format!("providers.{name}.{field}"), var, what)
            };
            if provider.auth_scheme() == AuthScheme::ClientCredentials {
                let id_var = provider
                    .connection
                    .client_id_env
                    .as_deref()
                    .unwrap_or_default();
                let secret_var = provider
                    .connection
                    .client_secret_env
                    .as_deref()
                    .unwrap_or_default();
                let id = read("client_id_env", id_var, "the client id")?;
                let secret = read("client_secret_env", secret_var, "the client secret")?;
                return Ok(ResolvedProvider {
                    name: name.clone(),
                    config: provider.clone(),
                    token: SecretString::from(String::new()),
                    client: Some((id, SecretString::from(secret))),
                });
            }
            let token = read(
                "token_env",
                &provider.connection.token_env,
                "the provider token",
            )?;
            Ok(ResolvedProvider {
                name: name.clone(),
                config: provider.clone(),
                token: SecretString::from(token),
                client: None,
            })
        })
        .collect()
}

/// The value of the variable `var` that the key `key` names. A missing or
/// empty variable is an error naming the key and the variable, never a
/// value; `what` says what it must hold.
pub(crate) fn read_var(
    lookup: &dyn Fn(&str) -> Option<String>,
    key: String,
    var: &str,
    what: &str,
) -> Result<String, ConfigError> {
    lookup(var).filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        ConfigError::invalid(
            key,
            format!("environment variable {var} is not set (it must hold {what})"),
        )
    })
}
