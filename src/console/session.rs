//! Who is at the console: a session cookie made at sign-in with a personal
//! token (or for the person a trusted proxy names), holding the form token
//! every form must send back.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::api::ApiState;
use crate::identity::Identity;
use crate::store::NewSession;

/// The session cookie's name.
pub(super) const SESSION_COOKIE: &str = "ob_session";
/// The sign-in form's own form token, before any session exists.
pub(super) const SIGN_IN_COOKIE: &str = "ob_signin";

/// The person at the console, as every page and action sees them.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    pub identity: Identity,
    /// The form token every form of this session carries.
    pub csrf: String,
}

/// 256 random bits in hex.
pub(super) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub(super) fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Whether two form tokens are the same, in constant time.
pub(super) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The value of cookie `name`, if the request sent it.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the browser reached us over TLS (directly, or through a proxy
/// that says so): then cookies are `Secure`.
pub(super) fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` for `name`, HttpOnly and SameSite=Strict, expiring with
/// the browser (the server ends it after inactivity); `None` clears it.
pub(super) fn set_cookie(name: &str, value: Option<&str>, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = match value {
        Some(v) => format!("{name}={v}; Path=/; HttpOnly; SameSite=Strict{secure}"),
        None => format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn idle_ms(state: &ApiState) -> i64 {
    crate::config::millis(state.engine.config().http.session_idle())
}

/// Finds the person at the console (if any) and hands the request on
/// with a [`ConsoleUser`]; a person a trusted proxy names gets a session
/// of their own, for the form token.
pub(super) async fn console_user(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let headers = request.headers().clone();
    let store = state.engine.store();
    let idle = idle_ms(&state);
    let mut made = None;
    let mut user = None;
    if let Some(id) = cookie(&headers, SESSION_COOKIE)
        && let Ok(Some(s)) = store.session(&sha256(id), idle).await
    {
        user = Some(ConsoleUser {
            identity: Identity {
                actor: crate::domain::Actor::named(s.actor),
                role: s.role,
            },
            csrf: s.csrf,
        });
    }
    if let Some(Ok(identity)) = state.proxy().and_then(|p| p.identify(peer, &headers)) {
        // The proxy's word wins over an old session of someone else.
        let same_person = user.as_ref().is_some_and(|u| u.identity == identity);
        if !same_person {
            let id = random_token();
            let csrf = random_token();
            let stored = store
                .add_session(&NewSession {
                    id_sha256: &sha256(&id),
                    actor: identity.actor.as_str(),
                    role: identity.role,
                    token_id: None,
                    csrf: &csrf,
                })
                .await;
            if stored.is_ok() {
                made = Some(id);
                user = Some(ConsoleUser { identity, csrf });
            }
        }
    }
    if let Some(u) = user {
        request.extensions_mut().insert(u);
    }
    let mut response = next.run(request).await;
    if let Some(id) = made {
        response.headers_mut().append(
            SET_COOKIE,
            set_cookie(SESSION_COOKIE, Some(&id), over_tls(&headers)),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_and_written_strictly() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("a=1; ob_session=abc; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        let set = set_cookie(SESSION_COOKIE, Some("x"), true);
        let set = set.to_str().unwrap();
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(set.contains(part), "{set}");
        }
        assert!(
            !set_cookie("a", Some("x"), false)
                .to_str()
                .unwrap()
                .contains("Secure")
        );
        assert!(same("abc", "abc") && !same("abc", "abd"));
    }
}
