//! `GET /v1/audit`: the audit trail, a page at a time by cursor.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::batches::page_limit;
use super::error::Params;
use super::{ApiError, ApiState};
use crate::store::{TrailCursor, TrailQuery};

#[derive(Debug, Deserialize)]
pub(super) struct AuditParams {
    batch: Option<String>,
    user: Option<String>,
    actor: Option<String>,
    /// RFC 3339, or a date (00:00 UTC).
    since: Option<String>,
    after: Option<String>,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    100
}

fn bad(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

pub(super) async fn list(
    State(state): State<ApiState>,
    Params(p): Params<AuditParams>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = page_limit(p.limit)?;
    if p.user.is_some() && p.actor.is_some() {
        return Err(bad(
            "user selects provider calls and actor decisions: ask for one or the other",
        ));
    }
    let after = match p.after.as_deref() {
        Some(c) => {
            TrailCursor::decode(c).ok_or_else(|| bad("after is not a cursor this API gave"))?
        }
        None => TrailCursor::default(),
    };
    let since = p
        .since
        .as_deref()
        .map(|s| {
            crate::intake::row::parse_effective_at(s)
                .map_err(|_| bad("since must be RFC 3339 or YYYY-MM-DD"))
        })
        .transpose()?;
    let query = TrailQuery {
        batch: p.batch,
        user: p.user,
        actor: p.actor,
        since,
    };
    let page = state
        .engine
        .store()
        .trail_page(&query, after, limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({
        "entries": page.entries,
        "next_cursor": page.more.then(|| page.cursor.encode()),
        // To come back later for what is recorded after this page.
        "resume_cursor": page.cursor.encode(),
    })))
}
