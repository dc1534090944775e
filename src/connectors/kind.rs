//! Which provider API a connection speaks: the kinds, what each kind's
//! folder declares about itself ([`Declaration`]), and the `kind`-tagged
//! section of its own options ([`KindSettings`]). Adding a provider is its
//! folder plus one arm in each enum and match of this file (and `ALL`).

use std::sync::Arc;

use serde::Deserialize;

use super::{Capabilities, Connector, ProviderClient};
use super::{aitronos, auth0, recoup, scim};
use crate::domain::{IdCase, ProviderName, Rejection, RowFields, Target};

/// Which provider API a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Aitronos,
    Auth0,
    Recoup,
    Scim,
}

/// How the token is presented to the provider (`auth`; a kind declares
/// its default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthScheme {
    /// `X-API-Key: <token>` (Aitronos API keys).
    ApiKey,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// OAuth 2 client credentials (Auth0 M2M): a bearer token fetched from
    /// `token_url` and renewed before it expires.
    ClientCredentials,
}

/// What a provider kind's folder says about itself, read by intake,
/// reconciliation and config validation instead of naming kinds.
#[derive(Debug, Clone, Copy)]
pub struct Declaration {
    /// The kind's name in the config (`kind = "…"`) and in messages.
    pub name: &'static str,
    /// What the kind can do beyond offboarding one person.
    pub capabilities: Capabilities,
    /// How the kind compares user ids (Recoup's UUIDs ignore case).
    pub id_case: IdCase,
    /// How the token is presented when the connection sets no `auth`.
    pub default_auth: AuthScheme,
    /// Validates a CSV row's ids (intake).
    pub parse_target: fn(ProviderName, &RowFields<'_>) -> Result<Target, Rejection>,
    /// The keys of the kind's own options (its `Settings` struct).
    pub settings_fields: fn() -> &'static [&'static str],
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Aitronos,
        ProviderKind::Auth0,
        ProviderKind::Recoup,
        ProviderKind::Scim,
    ];

    /// What this kind's folder declares.
    pub fn declaration(self) -> &'static Declaration {
        match self {
            ProviderKind::Aitronos => &aitronos::DECLARATION,
            ProviderKind::Auth0 => &auth0::DECLARATION,
            ProviderKind::Recoup => &recoup::DECLARATION,
            ProviderKind::Scim => &scim::DECLARATION,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.declaration().name
    }

    /// How this kind compares user ids.
    pub fn id_case(self) -> IdCase {
        self.declaration().id_case
    }
}

/// A connection's own options, by kind: the `[providers.NAME]` keys that
/// only its kind reads, each struct declared in its kind's folder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KindSettings {
    Aitronos(aitronos::Settings),
    Auth0(auth0::Settings),
    Recoup(recoup::Settings),
    Scim(scim::Settings),
}

impl KindSettings {
    pub fn kind(&self) -> ProviderKind {
        match self {
            KindSettings::Aitronos(_) => ProviderKind::Aitronos,
            KindSettings::Auth0(_) => ProviderKind::Auth0,
            KindSettings::Recoup(_) => ProviderKind::Recoup,
            KindSettings::Scim(_) => ProviderKind::Scim,
        }
    }

    /// The connector of this kind, calling through `client`.
    pub(super) fn connector(&self, client: ProviderClient) -> Arc<dyn Connector> {
        match self {
            KindSettings::Aitronos(s) => Arc::new(aitronos::Aitronos::new(client, s)),
            KindSettings::Auth0(s) => Arc::new(auth0::Auth0::new(client, s)),
            KindSettings::Recoup(s) => Arc::new(recoup::Recoup::new(client, s)),
            KindSettings::Scim(s) => Arc::new(scim::Scim::new(client, s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_declaration_names_its_kind_as_the_config_does() {
        for kind in ProviderKind::ALL {
            let parsed: ProviderKind = toml::Value::String(kind.as_str().to_owned())
                .try_into()
                .unwrap();
            assert_eq!(parsed, kind);
            let section: toml::Table =
                toml::from_str(&format!("kind = \"{}\"", kind.as_str())).unwrap();
            let settings: KindSettings = toml::Value::Table(section).try_into().unwrap();
            assert_eq!(settings.kind(), kind);
        }
    }
}
