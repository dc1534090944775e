//! `POST /v1/batches`: a CSV as the body (`text/csv`) or as the `file` field
//! of a multipart form, streamed to a temporary file under the size limit,
//! then taken in exactly like `offboard submit`.

use std::io::Write;

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use axum::Extension;

use super::error::Params;
use super::{ApiError, ApiState, body};
use crate::domain::Actor;
use crate::identity::Identity;
use crate::intake::{IntakeOptions, ProviderCatalog, SubmitError, submit_csv};
use crate::store::FIRST_REJECTED;

#[derive(Debug, Deserialize)]
pub(super) struct UploadQuery {
    #[serde(default)]
    dry_run: bool,
    /// Connection for rows without a provider column.
    provider: Option<String>,
    /// Plan every row afresh, even ones that succeeded recently.
    #[serde(default)]
    force: bool,
    /// Store a preview for review: plan every row, remove nothing until
    /// `approve` releases it.
    #[serde(default)]
    hold: bool,
}

/// The spooled upload.
pub(crate) struct Spooled {
    pub file: tempfile::NamedTempFile,
    sha256: String,
    pub name: Option<String>,
    /// The form's short text fields sent before the file (a web form's
    /// form token and provider choice).
    pub fields: std::collections::HashMap<String, String>,
}

/// Text fields kept from a form, and how long each may be.
const MAX_FIELDS: usize = 8;
const MAX_FIELD_BYTES: usize = 1024;

/// Writes chunks to a temporary file, failing with 413 past `limit`.
struct Spool {
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    written: u64,
    limit: u64,
}

impl Spool {
    fn new(limit: u64) -> Result<Self, ApiError> {
        Ok(Self {
            file: tempfile::NamedTempFile::new().map_err(ApiError::internal)?,
            hasher: Sha256::new(),
            written: 0,
            limit,
        })
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        self.written += chunk.len() as u64;
        if self.written > self.limit {
            return Err(too_large(self.limit));
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).map_err(ApiError::internal)
    }

    fn finish(
        mut self,
        name: Option<String>,
        fields: std::collections::HashMap<String, String>,
    ) -> Result<Spooled, ApiError> {
        self.file.flush().map_err(ApiError::internal)?;
        Ok(Spooled {
            file: self.file,
            sha256: hex::encode(self.hasher.finalize()),
            name,
            fields,
        })
    }
}

fn bad_upload(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_upload", message)
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the upload exceeds {limit} bytes (http.max_upload_bytes)"),
    )
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"))
}

/// A multipart error: the whole body's limit is a 413, anything else the
/// form's fault.
fn form_error(e: axum::extract::multipart::MultipartError, what: &str, limit: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(limit)
    } else {
        bad_upload(format!("{what}: {e}"))
    }
}

pub(crate) async fn spool(state: &ApiState, request: Request) -> Result<Spooled, ApiError> {
    let limit = state.max_upload_bytes;
    let mut spool = Spool::new(limit)?;
    if !is_multipart(request.headers()) {
        let mut body = request.into_body().into_data_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                if body::is_too_large(&e) {
                    too_large(limit)
                } else {
                    bad_upload("the request body could not be read")
                }
            })?;
            spool.write(&chunk)?;
        }
        return spool.finish(None, Default::default());
    }
    let mut form = Multipart::from_request(request, state)
        .await
        .map_err(|e| bad_upload(format!("not a valid multipart form: {e}")))?;
    let mut fields = std::collections::HashMap::new();
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| form_error(e, "not a valid multipart form", limit))?
    {
        if field.name() != Some("file") {
            let key = field.name().unwrap_or_default().to_owned();
            let value = field
                .text()
                .await
                .map_err(|e| form_error(e, "a form field could not be read", limit))?;
            if fields.len() < MAX_FIELDS && value.len() <= MAX_FIELD_BYTES {
                fields.insert(key, value);
            }
            continue;
        }
        let name = field.file_name().map(crate::domain::truncate);
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| form_error(e, "the file field could not be read", limit))?
        {
            spool.write(&chunk)?;
        }
        return spool.finish(name, fields);
    }
    Err(bad_upload("the multipart form has no `file` field"))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().ok().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > 255 || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(Some(key.to_owned()))
}

fn stored(status: u16, response: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
    let body: serde_json::Value = serde_json::from_str(response).unwrap_or_default();
    (status, axum::Json(body)).into_response()
}

pub(super) async fn create_batch(
    State(state): State<ApiState>,
    Extension(identity): Extension<Identity>,
    Params(query): Params<UploadQuery>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let limit = state.max_upload_bytes;
    bounded(limit, request, async |request| {
        take_upload(state, identity.actor, query, headers, request).await
    })
    .await
}

/// Runs `take` on the request with its whole body bounded, not only the
/// file (a form of endless part headers must not grow memory); whatever is
/// left unread (after a 413, say) is read and dropped before the answer
/// goes, so a client still sending can read it.
pub(crate) async fn bounded<T>(
    limit: u64,
    request: Request,
    take: impl AsyncFnOnce(Request) -> T,
) -> T {
    let whole = match is_multipart(request.headers()) {
        true => limit + body::MULTIPART_ALLOWANCE,
        false => limit,
    };
    let (parts, raw) = request.into_parts();
    let upload = body::Upload::new(raw);
    let request = Request::from_parts(parts, upload.limited(whole));
    let answer = take(request).await;
    upload.drain(2 * limit).await;
    answer
}

async fn take_upload(
    state: ApiState,
    actor: Actor,
    query: UploadQuery,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    // A key is each caller's own: another person's same key and file is
    // another upload, never an answer about someone else's batch.
    let key = idempotency_key(&headers)?.map(|k| format!("{actor}/{k}"));
    let store = state.engine.store();
    let upload = spool(&state, request).await?;
    if let Some(key) = &key
        && !store
            .reserve_key(key, &upload.sha256)
            .await
            .map_err(ApiError::internal)?
    {
        let prev = store
            .idempotent_answer(key)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::internal("an idempotency key vanished"))?;
        if prev.body_sha256 != upload.sha256 {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different file",
            ));
        }
        if prev.status == 0 {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_progress",
                "an upload with this Idempotency-Key is still being taken in; ask again shortly",
            ));
        }
        return Ok(stored(prev.status, &prev.response));
    }
    // The intake runs to its end in a task of its own: a client that
    // leaves, or a request past `request_timeout_ms`, must not cut a batch
    // off half-way (its answer is still kept for the Idempotency-Key).
    let intake = tokio::spawn(async move {
        let store = state.engine.store();
        let result = take_in(&state, &actor, &query, upload).await;
        if let Some(key) = &key {
            match &result {
                Ok((status, body, batch_id)) => store
                    .remember_answer(key, batch_id, status.as_u16(), &body.to_string())
                    .await
                    .map_err(ApiError::internal)?,
                Err(_) => store.release_key(key).await.map_err(ApiError::internal)?,
            }
        }
        result
    });
    let (status, body, _) = intake.await.map_err(ApiError::internal)??;
    Ok((status, axum::Json(body)).into_response())
}

/// Takes the spooled file in; the answer's status, body and batch id.
async fn take_in(
    state: &ApiState,
    actor: &Actor,
    query: &UploadQuery,
    upload: Spooled,
) -> Result<(StatusCode, serde_json::Value, String), ApiError> {
    let store = state.engine.store();
    let config = state.engine.config();
    if query.hold && query.dry_run {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "hold and dry_run exclude each other: a held batch is a preview already",
        ));
    }
    let catalog = ProviderCatalog::new(config, query.provider.as_deref(), "?provider=NAME")
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "unknown_provider", m.to_string()))?;
    let options = IntakeOptions {
        source: "api".into(),
        source_name: upload.name.clone(),
        dry_run: query.dry_run,
        hold: query.hold,
        dedupe_window: (!query.force).then(|| config.intake.dedupe_window()),
        max_requests: Some(config.safety.max_batch_requests),
        actor: actor.clone(),
        origin: "upload",
    };
    let file = upload.file.reopen().map_err(ApiError::internal)?;
    let (status, body, batch_id) = match submit_csv(
        store,
        state.engine.queue(),
        &catalog,
        file,
        &options,
    )
    .await
    {
        Ok(summary) => {
            let rejected: Vec<_> = summary
                .rejected_rows
                .iter()
                .map(|r| json!({"line": r.line, "code": r.code, "message": r.message}))
                .collect();
            let body = json!({
                "batch_id": summary.batch_id,
                "accepted_rows": summary.accepted_rows,
                "rejected_count": summary.rejected_count,
                "rejected_rows": rejected,
                // Rows of only delimiters (`,,,`), skipped but counted.
                "blank_lines_ignored": summary.blank_lines_ignored,
                // Why the batch waits for `approve`, when it does.
                "halted": summary.halted,
                "halt_code": summary.halt_code,
                // A preview waiting for its release.
                "held": summary.held,
            });
            (StatusCode::ACCEPTED, body, summary.batch_id)
        }
        Err(SubmitError::NoValidRow { rejected, batch_id }) => {
            let rows = store
                .report_window(&batch_id, FIRST_REJECTED)
                .await
                .map_err(ApiError::internal)?;
            let rejected_rows: Vec<_> = rows
                .iter()
                .map(|r| json!({"line": r.line, "code": r.error_code, "message": r.error_message}))
                .collect();
            let err = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_valid_rows",
                format!("the CSV has no valid row ({rejected} rejected)"),
            )
            .details(json!({"batch_id": batch_id, "rejected_rows": rejected_rows}));
            let body = json!({"error": {"code": err.code, "message": err.message, "details": err.details}});
            (err.status, body, batch_id)
        }
        Err(SubmitError::Input(e)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_csv",
                e.to_string(),
            ));
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    Ok((status, body, batch_id))
}
