//! Tokens, read from the environment variables that the configuration names.
//! They live as `SecretString` and are only exposed where a header is set.

use secrecy::SecretString;

use super::{Config, ConfigError, ProviderConfig};

/// A provider connection with its token in hand.
#[derive(Debug, Clone)]
pub struct ResolvedProvider {
    pub name: String,
    pub config: ProviderConfig,
    pub token: SecretString,
}

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
            let token = lookup(&provider.token_env)
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| {
                    ConfigError::invalid(
                        format!("providers.{name}.token_env"),
                        format!(
                            "environment variable {} is not set (it must hold the provider token)",
                            provider.token_env
                        ),
                    )
                })?;
            Ok(ResolvedProvider {
                name: name.clone(),
                config: provider.clone(),
                token: SecretString::from(token),
            })
        })
        .collect()
}
