//! Checks of the `[providers.NAME]` sections against the rest of the
//! configuration. The sections' types, and which keys each kind reads, are
//! the connectors' (`connectors::settings`, each kind's `settings.rs`);
//! what a kind can do is read from its connector's declaration, never from
//! a list of kinds here.

use super::model::is_env_name;
use super::{ConfigError, RetryConfig};
use crate::connectors::{AuthScheme, ProviderConfig, capabilities, kinds_that, settings};
use crate::domain::ids::check_safe;
use crate::domain::protection;

/// A key set on a kind that does not read it is named with its
/// connection, before the sections are read (`providers.NAME.KEY`: only
/// applies to kind = "…"), as every other key this module refuses.
pub(super) fn check_misplaced(table: &toml::Table) -> Result<(), ConfigError> {
    let Some(toml::Value::Table(providers)) = table.get("providers") else {
        return Ok(());
    };
    for (name, section) in providers {
        if let toml::Value::Table(section) = section
            && let Some(m) = settings::misplaced(section)
        {
            return super::only_for_kind(
                format!("providers.{name}.{}", m.key),
                true,
                false,
                m.owner.as_str(),
            );
        }
    }
    Ok(())
}

/// One connection, with its retry policy after the overrides.
pub(super) fn validate(
    name: &str,
    provider: &ProviderConfig,
    retry: &RetryConfig,
) -> Result<(), ConfigError> {
    let key = |field: &str| format!("providers.{name}.{field}");
    let c = &provider.connection;
    check_safe(name, &[]).map_err(|e| {
        ConfigError::invalid(format!("providers.{name}"), format!("connection name {e}"))
    })?;
    let url = reqwest::Url::parse(&c.base_url)
        .map_err(|e| ConfigError::invalid(key("base_url"), format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(ConfigError::invalid(
            key("base_url"),
            "must be an http:// or https:// URL",
        ));
    }
    super::check_transport(&url, c.allow_insecure_http)
        .map_err(|m| ConfigError::invalid(key("base_url"), m.to_string()))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::invalid(
            key("base_url"),
            "must not carry a query or fragment",
        ));
    }
    let client_credentials = provider.auth_scheme() == AuthScheme::ClientCredentials;
    let env_vars = [
        (
            "token_env",
            Some(&c.token_env).filter(|_| !client_credentials),
        ),
        ("client_id_env", c.client_id_env.as_ref()),
        ("client_secret_env", c.client_secret_env.as_ref()),
    ];
    for (field, var) in env_vars {
        if let Some(var) = var
            && !is_env_name(var)
        {
            return Err(ConfigError::invalid(
                key(field),
                "must name an environment variable (letters, digits, _)",
            ));
        }
    }
    validate_auth(provider, &key)?;
    validate_protection(provider, &key)?;
    if c.timeout_ms == 0 || c.connect_timeout_ms == 0 {
        return Err(ConfigError::invalid(
            key("timeout_ms"),
            "timeouts must be positive",
        ));
    }
    validate_retry(&provider.retry_policy(retry), &key("retry"))
}

/// Client credentials only where the kind's connector declares them, and
/// then with every key they need; a static token otherwise.
fn validate_auth(
    provider: &ProviderConfig,
    key: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    let c = &provider.connection;
    let cc = c.auth == Some(AuthScheme::ClientCredentials);
    super::only_for_kind(
        key("auth"),
        cc,
        capabilities(provider.kind()).client_credentials,
        &kinds_that(|k| k.client_credentials).join(" or "),
    )?;
    if cc {
        for (field, value) in [
            ("client_id_env", &c.client_id_env),
            ("client_secret_env", &c.client_secret_env),
            ("token_url", &c.token_url),
            ("audience", &c.audience),
        ] {
            if value.as_deref().is_none_or(str::is_empty) {
                return Err(ConfigError::invalid(
                    key(field),
                    "is required with auth = \"client_credentials\"",
                ));
            }
        }
        let url = reqwest::Url::parse(c.token_url.as_deref().unwrap_or_default())
            .map_err(|e| ConfigError::invalid(key("token_url"), format!("not a URL: {e}")))?;
        super::check_transport(&url, c.allow_insecure_http)
            .map_err(|m| ConfigError::invalid(key("token_url"), m.to_string()))?;
    }
    if !cc && c.token_env.is_empty() {
        return Err(ConfigError::invalid(key("token_env"), "is required"));
    }
    Ok(())
}

/// A protected person named by email is recognised only where the
/// provider can tell who has that email; elsewhere the entry would
/// protect nobody, silently.
fn validate_protection(
    provider: &ProviderConfig,
    key: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    let c = &provider.connection;
    let kind = provider.kind();
    let entries = c
        .protected_users
        .iter()
        .map(|u| ("protected_users", u))
        .chain(
            c.service_account_id
                .iter()
                .map(|u| ("service_account_id", u)),
        );
    for (field, entry) in entries {
        if entry.trim().is_empty() {
            return Err(ConfigError::invalid(key(field), "holds an empty entry"));
        }
        if protection::is_email(entry) && !capabilities(kind).find_by_email {
            return Err(ConfigError::invalid(
                key(field),
                format!(
                    "{entry:?} is an email, but {} cannot look a person up by email: give the user id",
                    kind.as_str()
                ),
            ));
        }
    }
    Ok(())
}

/// A connection's retry policy, checked like `[retry]`.
fn validate_retry(retry: &RetryConfig, section: &str) -> Result<(), ConfigError> {
    if retry.max_attempts == 0 {
        return Err(ConfigError::invalid(
            format!("{section}.max_attempts"),
            "must be at least 1",
        ));
    }
    if retry.base_ms == 0 {
        return Err(ConfigError::invalid(
            format!("{section}.base_ms"),
            "must be at least 1",
        ));
    }
    if retry.cap_ms < retry.base_ms {
        return Err(ConfigError::invalid(
            format!("{section}.cap_ms"),
            "must be at least base_ms",
        ));
    }
    Ok(())
}
