//! Handlers for the Recoup endpoints an offboarding uses.
//!
//! The order of checks follows the vendor's server: the removal checks
//! credentials, then the query, then the caller's access; the listing
//! validates its query before it even looks at credentials.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::sync::Arc;

use super::authenticate;
use super::envelope::{Answer, bad_request, forbidden};
use crate::sim::directory::{format_uuid, parse_uuid};
use crate::sim::problem::Problem;
use crate::sim::request::QueryPairs;
use crate::sim::state::SimState;

/// `DELETE /api/organizations/members?organization_id=…&account_id=…`:
/// 200 whether or not the account was a member.
pub(super) async fn remove_member(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Answer {
    authenticate(&headers, &state.token)?;
    let org = required_uuid(&query, "organization_id")?;
    let account = required_uuid(&query, "account_id")?;
    let mut store = state.recoup();
    if !store.caller_can_manage(org) {
        return Err(forbidden("Caller is not a member of the organization").into());
    }
    store.remove_member(org, account);
    Ok(Json(json!({"status": "success"})).into_response())
}

/// `GET /api/organizations[?account_id=…]`: the organizations an account
/// belongs to (the caller's own without `account_id`). Naming another
/// account needs an organization shared with it, so after the last shared
/// membership is removed this answers 403.
pub(super) async fn organizations(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    query: QueryPairs,
) -> Answer {
    let target = match query.first("account_id") {
        Some(text) => Some(uuid(text, "account_id")?),
        None => None,
    };
    authenticate(&headers, &state.token)?;
    let store = state.recoup();
    let account = match target {
        Some(account) if !store.caller_shares_org_with(account) => {
            return Err(forbidden("Access denied to specified account_id").into());
        }
        Some(account) => Some(account),
        None => store.caller(),
    };
    // A seed without a caller has an account with no organizations.
    let organizations: Vec<Value> = match account {
        Some(account) => store
            .orgs_of(account)
            .into_iter()
            .map(|org| {
                json!({
                    "id": format_uuid(membership_id(org.id, account)),
                    "organization_id": org.id_text,
                    "organization_name": org.name,
                    "organization_image": null,
                })
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(Json(json!({"status": "success", "organizations": organizations})).into_response())
}

fn required_uuid(query: &QueryPairs, key: &str) -> Result<u128, Problem> {
    match query.first(key) {
        Some(text) => uuid(text, key),
        None => Err(bad_request(format!("{key} is required"))),
    }
}

fn uuid(text: &str, key: &str) -> Result<u128, Problem> {
    parse_uuid(text).ok_or_else(|| bad_request(format!("{key} must be a valid UUID")))
}

/// The vendor lists membership rows, whose own id differs from the
/// organization's; derive a stable one from the pair.
fn membership_id(org: u128, account: u128) -> u128 {
    let mixed =
        (org ^ account.rotate_left(61)).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    // Version 4, RFC 4122 variant, like the vendor's generated ids.
    mixed & !(0xf << 76) & !(0x3 << 62) | (0x4 << 76) | (0x2 << 62)
}
