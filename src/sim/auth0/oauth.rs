//! The tenant's token endpoint (`POST /auth0/oauth/token`): the client
//! credentials grant for machine-to-machine applications. Tokens expire
//! after the directory's `token_lifetime_secs`, and `POST
//! /_sim/auth0/revoke-tokens` revokes every issued one (a key rotation), so a
//! client's renewal is exercised.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::sim::state::SimState;

/// Issued access tokens and when they stop working.
#[derive(Debug, Default)]
pub(crate) struct Issued {
    tokens: HashMap<String, Instant>,
    /// How many tokens were ever issued (for tests).
    pub count: u64,
}

impl Issued {
    pub(crate) fn valid(&self, token: &str) -> bool {
        self.tokens
            .get(token)
            .is_some_and(|exp| Instant::now() < *exp)
    }

    pub(crate) fn revoke_all(&mut self) {
        self.tokens.clear();
    }
}

#[derive(Deserialize)]
pub(crate) struct Grant {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    audience: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

pub(crate) async fn token(State(state): State<Arc<SimState>>, body: axum::body::Bytes) -> Response {
    let Ok(grant) = serde_json::from_slice::<Grant>(&body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body is not a JSON grant",
        );
    };
    if grant.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Unsupported grant type",
        );
    }
    if grant.audience.as_deref().is_none_or(str::is_empty) {
        return oauth_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            "No audience parameter was provided",
        );
    }
    let (known, lifetime) = {
        let store = state.auth0();
        let dir = store.clients();
        let known = dir.0.iter().any(|c| {
            Some(c.client_id.as_str()) == grant.client_id.as_deref()
                && Some(c.client_secret.as_str()) == grant.client_secret.as_deref()
        });
        (known, dir.1)
    };
    if !known {
        return oauth_error(StatusCode::UNAUTHORIZED, "access_denied", "Unauthorized");
    }
    let access_token = format!("sim-m2m-{:032x}", rand::random::<u128>());
    {
        let mut issued = state.issued_tokens();
        issued.tokens.insert(
            access_token.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        );
        issued.count += 1;
    }
    axum::Json(
        json!({"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime}),
    )
    .into_response()
}
