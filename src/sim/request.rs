//! Untrusted request parts every provider reads the same way: ids in the
//! path and pairs in the query string.
//!
//! Vendors percent-decode each path segment before looking an id up (Auth0's
//! `auth0|abc` arrives as `auth0%7Cabc`). A segment that decodes to invalid
//! UTF-8, or to text containing `/`, can name no resource: it must match
//! nothing rather than fail the whole request or be taken for a path.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::routing::MethodRouter;
use axum::{Extension, Router};
use std::convert::Infallible;

/// The template a route was registered with, carried to [`PathIds`].
/// (axum's own `MatchedPath` sits behind a feature this crate leaves off.)
#[derive(Debug, Clone, Copy)]
struct Template(&'static str);

/// Routes whose handlers can read their ids with [`PathIds`].
pub(crate) trait RouteIds {
    /// The router's state type.
    type State;
    /// `Router::route`, also telling the handlers their route template.
    fn route_ids(self, template: &'static str, route: MethodRouter<Self::State>) -> Self;
}

impl<S: Clone + Send + Sync + 'static> RouteIds for Router<S> {
    type State = S;

    fn route_ids(self, template: &'static str, route: MethodRouter<S>) -> Self {
        self.route(template, route.layer(Extension(Template(template))))
    }
}

/// The route's `{name}` segments, decoded; `None` for one that names nothing.
#[derive(Debug, Default)]
pub(crate) struct PathIds(Vec<(String, Option<String>)>);

impl PathIds {
    /// The id in the route's `{name}` segment, if it can name anything.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let template = parts.extensions.get::<Template>().map_or("", |t| t.0);
        // Inside a nested router the path may or may not still carry the
        // prefix; both end alike, so align them from the end.
        let ids = template
            .rsplit('/')
            .zip(parts.uri.path().rsplit('/'))
            .filter_map(|(pattern, raw)| {
                let name = pattern.strip_prefix('{')?.strip_suffix('}')?;
                Some((name.to_owned(), decode(raw)))
            })
            .collect();
        Ok(PathIds(ids))
    }
}

/// Query pairs in order, percent-decoded; repeated keys are kept.
#[derive(Debug, Default)]
pub(crate) struct QueryPairs(Vec<(String, String)>);

impl QueryPairs {
    /// The first value given for `key`, as most web frameworks read it.
    pub(crate) fn first(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value.as_str())
    }

    /// Whether `key` appears at all (even with an empty value).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        // Pairs of strings cannot fail to deserialize; undecodable bytes
        // become replacement characters and so match no id.
        let pairs = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|Query(pairs)| pairs)
            .unwrap_or_default();
        Ok(QueryPairs(pairs))
    }
}

/// Strict decoding of one path segment: `None` when it cannot be an id.
pub(crate) fn decode(raw: &str) -> Option<String> {
    String::from_utf8(decode_bytes(raw))
        .ok()
        .filter(|id| !id.contains('/'))
}

/// Lenient decoding, for matching ids in logged or scripted text.
pub(crate) fn decode_lossy(raw: &str) -> String {
    String::from_utf8_lossy(&decode_bytes(raw)).into_owned()
}

/// `%XX` becomes the byte; a `%` not followed by two hex digits stays as it is.
fn decode_bytes(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(&[hi, lo])) => hex(hi).zip(hex(lo)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::{decode, decode_lossy};

    #[test]
    fn decoding_is_strict_about_what_can_be_an_id() {
        assert_eq!(decode("auth0%7C000002").as_deref(), Some("auth0|000002"));
        assert_eq!(decode("auth0%7c000002").as_deref(), Some("auth0|000002"));
        assert_eq!(decode("100%").as_deref(), Some("100%"));
        assert_eq!(decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(decode("a%2Fb"), None);
        assert_eq!(decode("%FF%FE"), None);
        assert_eq!(decode_lossy("%FFx"), "\u{FFFD}x");
        assert_eq!(decode("%E2%82%AC").as_deref(), Some("€"));
    }
}
