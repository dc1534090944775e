//! Reading the HR roster: who should be a member. Every way it can be wrong
//! (unreadable, no key column, empty) is an error the rails turn into a
//! halt, never into "remove everyone".

use std::collections::HashSet;

use super::{MatchOn, RosterSource};
use crate::connectors::http::body::{BodyError, read_capped};
use crate::intake::header::Column;

#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("the roster cannot be read: {0}")]
    Unreadable(String),
    #[error("the roster has no {0} column")]
    MissingKey(&'static str),
}

/// The roster's keys: emails (lower-cased) or user ids.
pub async fn read_roster(source: &RosterSource) -> Result<HashSet<String>, RosterError> {
    let bytes = match (&source.csv, &source.url) {
        (Some(path), _) => tokio::fs::read(path)
            .await
            .map_err(|e| RosterError::Unreadable(format!("{}: {e}", path.display())))?,
        (None, Some(url)) => fetch(url, source.token_env.as_deref(), MAX_ROSTER_BYTES).await?,
        (None, None) => return Err(RosterError::Unreadable("no csv or url".into())),
    };
    parse(&bytes, source.match_on)
}

/// Largest roster read from a URL: a million rows of e-mail addresses fit
/// several times over.
const MAX_ROSTER_BYTES: u64 = 256 * 1024 * 1024;

/// The roster at `url`, following no redirect: one could carry the token
/// to another host, or swap the roster for another's.
async fn fetch(url: &str, token_env: Option<&str>, cap: u64) -> Result<Vec<u8>, RosterError> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| RosterError::Unreadable(format!("cannot build an HTTP client: {e}")))?;
    let mut request = client.get(url);
    if let Some(var) = token_env {
        let token = std::env::var(var).map_err(|_| {
            RosterError::Unreadable(format!("environment variable {var} is not set"))
        })?;
        request = request.bearer_auth(token);
    }
    let answer = request
        .timeout(std::time::Duration::from_secs(60))
        .send()
        .await
        .map_err(|_| RosterError::Unreadable("the roster URL did not answer".into()))?;
    if answer.status().is_redirection() {
        return Err(RosterError::Unreadable(format!(
            "the roster URL answered HTTP {} (a redirect, which is not followed: give the final URL)",
            answer.status().as_u16()
        )));
    }
    if !answer.status().is_success() {
        return Err(RosterError::Unreadable(format!(
            "the roster URL answered HTTP {}",
            answer.status().as_u16()
        )));
    }
    read_capped(answer, cap).await.map_err(|e| match e {
        BodyError::TooLarge(cap) => {
            RosterError::Unreadable(format!("the roster is larger than {cap} bytes"))
        }
        BodyError::Broken(_) => RosterError::Unreadable("the roster download broke off".into()),
    })
}

fn parse(bytes: &[u8], match_on: MatchOn) -> Result<HashSet<String>, RosterError> {
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first = text.split(|b| *b == b'\n').next().unwrap_or_default();
    let delimiter = crate::intake::header::detect_delimiter(first);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(text);
    let headers = reader
        .headers()
        .map_err(|e| RosterError::Unreadable(e.to_string()))?
        .clone();
    let (wanted, name) = match match_on {
        MatchOn::Email => (Column::Email, "email"),
        MatchOn::UserId => (Column::UserId, "user_id"),
    };
    let index = headers
        .iter()
        .position(|h| Column::from_header(h) == Some(wanted))
        .ok_or(RosterError::MissingKey(name))?;
    let mut keys = HashSet::new();
    for record in reader.records() {
        let record = record.map_err(|e| RosterError::Unreadable(e.to_string()))?;
        if let Some(v) = record.get(index).map(str::trim).filter(|v| !v.is_empty()) {
            keys.insert(match match_on {
                MatchOn::Email => v.to_ascii_lowercase(),
                MatchOn::UserId => v.to_owned(),
            });
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    /// A roster server: `/redirect` answers 302 to `/roster`.
    async fn roster_server() -> String {
        use axum::response::Redirect;
        use axum::routing::get;
        let app = axum::Router::new()
            .route(
                "/roster",
                get(|| async { "email\na@x.example\nb@x.example\n" }),
            )
            .route("/redirect", get(|| async { Redirect::to("/roster") }));
        crate::sim::serve_on_loopback(app).await
    }

    #[tokio::test]
    async fn the_fetch_follows_no_redirect_and_is_capped() {
        let base = roster_server().await;
        let bytes = fetch(&format!("{base}/roster"), None, 1024).await.unwrap();
        assert_eq!(parse(&bytes, MatchOn::Email).unwrap().len(), 2);
        let err = fetch(&format!("{base}/redirect"), None, 1024)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HTTP 303") || err.contains("HTTP 302"),
            "{err}"
        );
        assert!(err.contains("not followed"), "{err}");
        let err = fetch(&format!("{base}/roster"), None, 8)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("larger than 8 bytes"), "{err}");
    }

    use super::*;

    #[test]
    fn keys_and_errors() {
        let r = parse(b"Name,E-mail\nA,A@X.example\nB,\n", MatchOn::Email);
        assert!(
            matches!(r, Err(RosterError::MissingKey("email"))),
            "E-mail is not an alias"
        );
        let r = parse(
            b"\xEF\xBB\xBFname;email\nA;A@X.example\nB; b@x.example \n",
            MatchOn::Email,
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert!(r.contains("a@x.example") && r.contains("b@x.example"));
        assert!(
            parse(b"user_id\nusr_1\n", MatchOn::UserId)
                .unwrap()
                .contains("usr_1")
        );
        assert!(parse(b"", MatchOn::UserId).is_err());
    }
}
