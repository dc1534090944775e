//! SCIM resources as they go on the wire: User and Group representations,
//! ListResponse paging, `attributes`/`excludedAttributes` projection, and
//! ETags with the `If-Match` precondition (RFC 7644 §3.4, §3.9, §3.14).

use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use serde_json::{Map, Value, json};

use super::envelope::bad_request;
use super::store::{GroupStore, ScimStore};
use super::{GROUP_SCHEMA, LIST_SCHEMA, USER_SCHEMA};
use crate::sim::problem::Problem;
use crate::sim::request::QueryPairs;

/// The most resources one page holds (the ServiceProviderConfig's `maxResults`).
pub(super) const MAX_RESULTS: usize = 100;

/// The weak ETag of a resource version.
pub(super) fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// `If-Match` passes when absent, `*`, or naming the current version.
pub(super) fn check_if_match(headers: &HeaderMap, version: u64) -> Result<(), Problem> {
    match tags_match(headers, header::IF_MATCH, version) {
        None | Some(true) => Ok(()),
        Some(false) => Err(Problem::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "version mismatch",
        )),
    }
}

/// `If-None-Match` naming the current version (or `*`): the caller's copy
/// is current, so a GET may answer 304.
pub(super) fn not_modified(headers: &HeaderMap, version: u64) -> bool {
    tags_match(headers, header::IF_NONE_MATCH, version) == Some(true)
}

/// Whether the entity tags in the `name` headers include `version` or `*`;
/// `None` without such a header. Tags are compared without their weakness
/// flag, as a SCIM service's ETags are all weak.
fn tags_match(headers: &HeaderMap, name: HeaderName, version: u64) -> Option<bool> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let current = format!("\"{version}\"");
    Some(
        values
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == current),
    )
}

/// Which attributes the caller asked for (RFC 7644 §3.9).
#[derive(Debug, Default)]
pub(super) struct Projection {
    only: Option<Vec<String>>,
    excluded: Vec<String>,
}

impl Projection {
    pub(super) fn parse(query: &QueryPairs) -> Projection {
        let names = |key| query.first(key).map(attribute_names);
        Projection {
            only: names("attributes"),
            excluded: names("excludedAttributes").unwrap_or_default(),
        }
    }

    /// Whether a top-level attribute goes in the answer; `id` always does.
    pub(super) fn wants(&self, attribute: &str) -> bool {
        let named = |list: &[String]| list.iter().any(|a| a.eq_ignore_ascii_case(attribute));
        attribute == "id" || (self.only.as_deref().is_none_or(named) && !named(&self.excluded))
    }
}

/// `a,b.c,urn:…:User:d` → top-level names `a`, `b`, `d`.
fn attribute_names(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            let name = name.rsplit(':').next().unwrap_or(name);
            name.split('.').next().unwrap_or(name).to_owned()
        })
        .collect()
}

/// ListResponse paging: 1-based `startIndex`, `count` capped at
/// [`MAX_RESULTS`]; out-of-range values are clamped as RFC 7644 §3.4.2.4 says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ListPage {
    pub start_index: usize,
    pub count: usize,
}

impl ListPage {
    pub(super) fn parse(query: &QueryPairs) -> Result<ListPage, Problem> {
        let start = integer(query, "startIndex")?.unwrap_or(1).max(1);
        let count = integer(query, "count")?
            .unwrap_or(MAX_RESULTS as i64)
            .max(0);
        Ok(ListPage {
            start_index: usize::try_from(start).unwrap_or(usize::MAX),
            count: usize::try_from(count)
                .unwrap_or(usize::MAX)
                .min(MAX_RESULTS),
        })
    }

    /// The page out of every match, and the ListResponse around it. Only
    /// the page's items are rendered.
    pub(super) fn answer<T>(
        &self,
        matches: impl Iterator<Item = T>,
        total: usize,
        render: impl Fn(T) -> Value,
    ) -> Value {
        let resources: Vec<Value> = matches
            .skip(self.start_index - 1)
            .take(self.count)
            .map(render)
            .collect();
        json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": self.start_index,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        })
    }
}

/// A signed integer, saturating when it has too many digits.
fn integer(query: &QueryPairs, key: &str) -> Result<Option<i64>, Problem> {
    let Some(text) = query.first(key) else {
        return Ok(None);
    };
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_request(
            "invalidValue",
            format!("{key} must be an integer"),
        ));
    }
    let magnitude = digits.parse::<i64>().unwrap_or(i64::MAX);
    Ok(Some(if negative { -magnitude } else { magnitude }))
}

/// A User as RFC 7643 §4.1 represents it.
pub(super) fn user_json(store: &ScimStore, pos: usize, projection: &Projection) -> Value {
    let user = store.user(pos);
    let mut json = Map::new();
    json.insert("schemas".into(), json!([USER_SCHEMA]));
    json.insert("id".into(), json!(user.id));
    if projection.wants("userName") {
        json.insert("userName".into(), json!(user.user_name));
    }
    if projection.wants("active") {
        json.insert("active".into(), json!(user.active));
    }
    if projection.wants("groups") {
        let groups: Vec<Value> = store
            .groups_of(pos)
            .map(|g| json!({"value": g.id, "display": g.display_name}))
            .collect();
        json.insert("groups".into(), Value::Array(groups));
    }
    if projection.wants("meta") {
        json.insert(
            "meta".into(),
            json!({"resourceType": "User", "version": etag(user.version)}),
        );
    }
    Value::Object(json)
}

/// A Group as RFC 7643 §4.2 represents it; members are only walked when wanted.
pub(super) fn group_json(store: &ScimStore, group: &GroupStore, projection: &Projection) -> Value {
    let mut json = Map::new();
    json.insert("schemas".into(), json!([GROUP_SCHEMA]));
    json.insert("id".into(), json!(group.id));
    if projection.wants("displayName") {
        json.insert("displayName".into(), json!(group.display_name));
    }
    if projection.wants("members") {
        let members: Vec<Value> = group
            .members()
            .map(|pos| {
                let user = store.user(pos);
                json!({"value": user.id, "display": user.user_name})
            })
            .collect();
        json.insert("members".into(), Value::Array(members));
    }
    if projection.wants("meta") {
        json.insert(
            "meta".into(),
            json!({"resourceType": "Group", "version": etag(group.version)}),
        );
    }
    Value::Object(json)
}
