//! Turning one CSV record into an accepted request or a rejection.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use crate::config::Config;
use crate::connectors::{self, ProviderKind};
use crate::domain::{ProviderName, Rejection, RowFields, truncate};
use crate::store::AcceptedRow;

/// The provider connections a row may name, and the default for rows that
/// name none.
#[derive(Debug, Clone)]
pub struct ProviderCatalog {
    kinds: BTreeMap<String, ProviderKind>,
    default: Option<String>,
    /// How this surface names the default (`--provider NAME`,
    /// `?provider=NAME`, a job spec's `provider`), for messages.
    naming: &'static str,
}

/// Longest `reason` kept; it is free text that ends up in reports.
const MAX_REASON_CHARS: usize = 1000;

/// A default provider connection that is not configured, named the way
/// the surface that gave it calls it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{naming}: {name:?} is not a configured provider connection")]
pub struct UnknownDefault {
    naming: &'static str,
    name: String,
}

impl ProviderCatalog {
    /// `default` is `--provider NAME` (or what `naming` says this surface
    /// calls it); without it, a lone connection is the default
    /// (`../shared/conventions.md`).
    pub fn new(
        config: &Config,
        default: Option<&str>,
        naming: &'static str,
    ) -> Result<Self, UnknownDefault> {
        let kinds: BTreeMap<String, ProviderKind> = config
            .providers
            .iter()
            .map(|(name, p)| (name.clone(), p.kind()))
            .collect();
        if let Some(d) = default
            && !kinds.contains_key(d)
        {
            return Err(UnknownDefault {
                naming,
                name: d.to_owned(),
            });
        }
        let default = default.map(str::to_owned).or_else(|| {
            (kinds.len() == 1)
                .then(|| kinds.keys().next().cloned())
                .flatten()
        });
        Ok(Self {
            kinds,
            default,
            naming,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Validates the row's cells into an accepted row.
    pub fn accept(&self, line: u64, f: &RowFields<'_>) -> Result<AcceptedRow, Rejection> {
        let name = match f.provider.or(self.default.as_deref()) {
            Some(n) => n,
            None => {
                return Err(Rejection::new(
                    "missing_provider",
                    format!(
                        "no provider column value and no default provider (use {})",
                        self.naming
                    ),
                ));
            }
        };
        let kind = *self.kinds.get(name).ok_or_else(|| {
            Rejection::new(
                "unknown_provider",
                format!(
                    "provider {:?} is not a configured connection",
                    truncate(name)
                ),
            )
        })?;
        let provider = ProviderName::new_unchecked(name);
        let target = connectors::parse_target(kind, provider, f)?;
        let effective_at = f.effective_at.map(parse_effective_at).transpose()?;
        let reason = match f.reason {
            Some(r) if r.chars().count() > MAX_REASON_CHARS => {
                return Err(Rejection::new(
                    "invalid_reason",
                    format!("reason is longer than {MAX_REASON_CHARS} characters"),
                ));
            }
            r => r.map(str::to_owned),
        };
        Ok(AcceptedRow {
            line,
            target,
            reason,
            effective_at,
        })
    }
}

/// RFC 3339, or a bare date meaning 00:00 UTC; returns unix ms.
pub fn parse_effective_at(text: &str) -> Result<i64, Rejection> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc).timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc().timestamp_millis());
    }
    Err(Rejection::new(
        "invalid_effective_at",
        format!(
            "effective_at {:?} is not an RFC 3339 time or a YYYY-MM-DD date",
            truncate(text)
        ),
    ))
}
