//! Who is calling, and whether they may: every protected route finds the
//! caller's [`Identity`] (a personal token, the bootstrap token, or a
//! trusted proxy's header) and checks the role the route needs.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::{ApiError, ApiState};
use crate::domain::Role;
use crate::domain::now_ms;
use crate::identity::{Identity, TOKEN_PREFIX, TrustedProxyError, hash_token};

/// Compares digests of both sides, so neither the length nor a common
/// prefix of the token shows in the timing.
fn same_secret(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The token of an `Authorization: Bearer <token>` value; the scheme's
/// case does not matter (RFC 9110 §11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// Finds the caller and hands the request on with its [`Identity`], or
/// answers 401 (no valid credential) or 403 (a proxy's person with no role).
pub(super) async fn authenticate(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    match identify(&state, peer, request.headers()).await {
        Ok(identity) => {
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

async fn identify(
    state: &ApiState,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
) -> Result<Identity, ApiError> {
    if let Some(found) = state.proxy.as_ref().and_then(|p| p.identify(peer, headers)) {
        return found.map_err(|e| match e {
            TrustedProxyError::NoRole(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            _ => unauthorized(&e.to_string()),
        });
    }
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .ok_or_else(|| {
            unauthorized("a valid `Authorization: Bearer <token>` header is required")
        })?;
    if let Some(bootstrap) = &state.token
        && same_secret(token, bootstrap.expose_secret())
    {
        return Ok(Identity::bootstrap());
    }
    if token.starts_with(TOKEN_PREFIX) {
        let store = state.engine.store();
        let holder = store
            .token_by_hash(&hash_token(token))
            .await
            .map_err(ApiError::internal)?;
        if let Some(h) = holder {
            if h.revoked {
                return Err(unauthorized("this token was revoked"));
            }
            if h.expires_at.is_some_and(|at| at <= now_ms()) {
                return Err(unauthorized("this token has expired"));
            }
            store.touch_token(h.id).await.map_err(ApiError::internal)?;
            return Ok(Identity {
                actor: crate::domain::Actor::named(h.name),
                role: h.role,
            });
        }
    }
    Err(unauthorized(
        "a valid `Authorization: Bearer <token>` header is required",
    ))
}

/// The 403 for a caller whose role does not reach `needed`.
pub(super) fn forbidden(identity: &Identity, needed: Role) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "this needs the {needed} role; {} has {}",
            identity.actor, identity.role
        ),
    )
    .details(serde_json::json!({"needed": needed, "role": identity.role}))
}

/// Lets the request through when its caller's role reaches `needed`.
pub(super) async fn require_role(
    State(needed): State<Role>,
    request: Request,
    next: Next,
) -> Response {
    match request.extensions().get::<Identity>() {
        Some(identity) if identity.allows(needed) => next.run(request).await,
        Some(identity) => forbidden(identity, needed).into_response(),
        None => unauthorized("a valid `Authorization: Bearer <token>` header is required")
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER  abc ", "BeArEr abc"] {
            assert_eq!(super::bearer_token(value), Some("abc"), "{value}");
        }
        assert_eq!(super::bearer_token("Basic abc"), None);
        assert_eq!(super::bearer_token("Bearer "), None);
        assert_eq!(super::bearer_token("Bearerabc"), None);
    }

    #[test]
    fn compares_whole_secrets() {
        assert!(super::same_secret("abc", "abc"));
        assert!(!super::same_secret("abc", "abcd"));
        assert!(!super::same_secret("", "abc"));
    }
}
