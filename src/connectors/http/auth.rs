//! How a connection proves who it is: a static token (API key or bearer),
//! or OAuth 2 client credentials whose bearer token is fetched, cached until
//! shortly before it expires, shared by every worker, and renewed once when
//! the provider answers 401.

use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use crate::connectors::{AuthScheme, ResolvedProvider, StepError};

/// Credentials of one connection.
pub(super) enum Credentials {
    ApiKey(SecretString),
    Bearer(SecretString),
    Client(ClientCredentials),
}

/// OAuth 2 client credentials grant (Auth0 M2M applications).
pub(super) struct ClientCredentials {
    http: reqwest::Client,
    token_url: String,
    audience: String,
    client_id: String,
    client_secret: SecretString,
    cache: Mutex<Option<Cached>>,
}

struct Cached {
    token: SecretString,
    renew_at: Instant,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Credentials {
    pub(super) fn new(provider: &ResolvedProvider, http: reqwest::Client) -> Self {
        let cfg = &provider.config;
        match (cfg.auth_scheme(), &provider.client) {
            (AuthScheme::ClientCredentials, Some((id, secret))) => {
                Self::Client(ClientCredentials {
                    http,
                    token_url: cfg.connection.token_url.clone().unwrap_or_default(),
                    audience: cfg.connection.audience.clone().unwrap_or_default(),
                    client_id: id.clone(),
                    client_secret: secret.clone(),
                    cache: Mutex::new(None),
                })
            }
            (AuthScheme::ApiKey, _) => Self::ApiKey(provider.token.clone()),
            _ => Self::Bearer(provider.token.clone()),
        }
    }

    /// The header to send. `rejected` is the header the provider just
    /// answered 401 to: a client-credentials token equal to it is replaced
    /// (once, however many workers saw the 401 at the same time).
    pub(super) async fn header(
        &self,
        rejected: Option<&HeaderValue>,
    ) -> Result<(&'static str, HeaderValue), StepError> {
        Ok(match self {
            Self::ApiKey(t) => ("x-api-key", sensitive(t.expose_secret())),
            Self::Bearer(t) => ("authorization", bearer(t)),
            Self::Client(c) => ("authorization", bearer(&c.token(rejected).await?)),
        })
    }

    /// Whether a 401 may be cured by renewing the token.
    pub(super) fn renewable(&self) -> bool {
        matches!(self, Self::Client(_))
    }
}

impl ClientCredentials {
    async fn token(&self, rejected: Option<&HeaderValue>) -> Result<SecretString, StepError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && Instant::now() < c.renew_at
            && rejected.is_none_or(|r| *r != bearer(&c.token))
        {
            return Ok(c.token.clone());
        }
        let answer = self
            .http
            .post(&self.token_url)
            .json(&serde_json::json!({
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret.expose_secret(),
                "audience": self.audience,
            }))
            .send()
            .await
            .map_err(|e| {
                StepError::transient(
                    "token_endpoint_unreachable",
                    format!("cannot reach the token endpoint: {}", short(&e)),
                    None,
                )
            })?;
        let status = answer.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(match status {
                429 | 500..=599 => StepError::transient(
                    "token_endpoint_unavailable",
                    format!("the token endpoint answered HTTP {status}"),
                    None,
                ),
                _ => StepError::permanent(
                    "token_endpoint_rejected",
                    format!(
                        "the token endpoint refused our client credentials (HTTP {status}); check client_id_env, client_secret_env and audience"
                    ),
                ),
            });
        }
        // A token answer is a few hundred bytes.
        let bytes = super::body::read_capped(answer, 64 * 1024).await;
        let body: TokenAnswer = bytes
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                StepError::permanent(
                    "token_endpoint_invalid",
                    "the token endpoint's answer has no access_token",
                )
            })?;
        // Renew well before expiry: a token must not lapse mid-call.
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(3600));
        let margin = (lifetime / 10)
            .max(Duration::from_secs(1))
            .min(Duration::from_secs(300));
        let token = SecretString::from(body.access_token);
        *cache = Some(Cached {
            token: token.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(token)
    }
}

fn bearer(token: &SecretString) -> HeaderValue {
    sensitive(&format!("Bearer {}", token.expose_secret()))
}

fn sensitive(value: &str) -> HeaderValue {
    let mut v =
        HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    v.set_sensitive(true);
    v
}

/// Error text without the URL (which could carry a tenant name only, but
/// stays out of reports anyway).
fn short(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}
