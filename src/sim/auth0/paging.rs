//! Auth0's paging parameters and the two shapes of a listed page.
//!
//! Offset paging (`page`, `per_page`, `include_totals`) answers a bare array,
//! or `{start, limit, total, <items>}` when totals are asked for. Checkpoint
//! paging (`from`, `take`) answers `{<items>, next}`. Query values are
//! validated as strictly as the vendor's schema states them.

use serde_json::{Value, json};

use super::envelope::invalid_query;
use crate::sim::problem::Problem;
use crate::sim::request::QueryPairs;

/// Items per page when the caller does not say.
const DEFAULT_PER_PAGE: usize = 50;
/// The schema's maximum for `page`.
const MAX_PAGE: usize = 1000;
/// The schema's maximum for `per_page` and `take`.
const MAX_PER_PAGE: usize = 100;

/// Offset paging, as every listing endpoint accepts it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct OffsetPage {
    pub page: usize,
    pub per_page: usize,
    pub include_totals: bool,
}

impl OffsetPage {
    pub(super) fn parse(query: &QueryPairs) -> Result<OffsetPage, Problem> {
        Ok(OffsetPage {
            page: integer(query, "page", 0, MAX_PAGE)?.unwrap_or(0),
            per_page: integer(query, "per_page", 1, MAX_PER_PAGE)?.unwrap_or(DEFAULT_PER_PAGE),
            include_totals: boolean(query, "include_totals")?.unwrap_or(false),
        })
    }

    /// Index of the first item on the page.
    pub(super) fn start(&self) -> usize {
        self.page * self.per_page
    }

    /// The page's items in the shape the caller asked for.
    pub(super) fn wrap(&self, key: &str, items: Vec<Value>, total: usize) -> Value {
        if !self.include_totals {
            return Value::Array(items);
        }
        let mut body = json!({"start": self.start(), "limit": self.per_page, "total": total});
        body[key] = Value::Array(items);
        body
    }
}

/// Checkpoint paging: where to start (an opaque cursor) and how many.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Checkpoint {
    pub from: Option<String>,
    pub take: usize,
}

impl Checkpoint {
    /// `Some` when the caller uses checkpoint paging at all.
    pub(super) fn parse(query: &QueryPairs) -> Result<Option<Checkpoint>, Problem> {
        if !query.has("from") && !query.has("take") {
            return Ok(None);
        }
        let from = match query.first("from").filter(|f| !f.is_empty()) {
            Some(cursor) => Some(decode_cursor(cursor).ok_or_else(|| {
                invalid_query("Query validation error: 'from' is not a valid checkpoint.")
            })?),
            None => None,
        };
        let take = integer(query, "take", 1, MAX_PER_PAGE)?.unwrap_or(DEFAULT_PER_PAGE);
        Ok(Some(Checkpoint { from, take }))
    }
}

/// The cursor naming the first member of the next page. Hex keeps ids with
/// `|` and other URL-unfriendly bytes safe in a query string.
pub(super) fn encode_cursor(user_id: &str) -> String {
    user_id.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(cursor: &str) -> Option<String> {
    let digits = cursor.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let bytes = digits
        .chunks_exact(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// An integer query value within `min..=max`, if given.
fn integer(
    query: &QueryPairs,
    key: &str,
    min: usize,
    max: usize,
) -> Result<Option<usize>, Problem> {
    let Some(text) = query.first(key) else {
        return Ok(None);
    };
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid_query(format!(
            "Query validation error: 'Expected type integer but found type string' on property {key}."
        )));
    }
    // Too many digits to parse is simply too large.
    let value = digits.parse::<usize>().unwrap_or(usize::MAX);
    if !(min..=max).contains(&value) {
        return Err(invalid_query(format!(
            "Query validation error: 'Value {text} is outside {min}..={max}' on property {key}."
        )));
    }
    Ok(Some(value))
}

fn boolean(query: &QueryPairs, key: &str) -> Result<Option<bool>, Problem> {
    match query.first(key) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(invalid_query(format!(
            "Query validation error: 'Expected type boolean but found type string' on property {key}."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::{decode_cursor, encode_cursor};

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = encode_cursor("auth0|000002");
        assert_eq!(decode_cursor(&cursor).as_deref(), Some("auth0|000002"));
        for bad in ["abc", "zz", "ff", "é1"] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
