//! One log line per API request (tower-http's trace layer): method,
//! matched route, status, latency and request id. The id comes from the
//! client's `X-Request-Id` or is made here, and is echoed in the answer.

use std::time::Duration;

use axum::Router;
use axum::extract::MatchedPath;
use axum::http::{HeaderValue, Request, Response};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;

/// A fresh id for a request that came without one.
#[derive(Clone, Copy)]
struct NewId;

impl MakeRequestId for NewId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&ulid::Ulid::new().to_string())
            .ok()
            .map(RequestId::new)
    }
}

fn span<B>(request: &Request<B>) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("api", method = %request.method(), route, request_id = id)
}

fn logged<B>(response: &Response<B>, latency: Duration, _: &Span) {
    tracing::info!(
        status = response.status().as_u16(),
        latency_ms = latency.as_millis() as u64,
        "api request"
    );
}

/// Drops a client's `X-Request-Id` that is not 1 to 128 of `[A-Za-z0-9._:-]`
/// (one is made instead): it goes into every log line of the request.
async fn keep_sane_id(mut request: axum::extract::Request) -> axum::extract::Request {
    let sane = request.headers().get("x-request-id").is_none_or(|v| {
        let id = v.as_bytes();
        !id.is_empty()
            && id.len() <= 128
            && id
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b))
    });
    if !sane {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// `app` with its requests identified and logged.
pub(super) fn layer(app: Router) -> Router {
    app.layer(
        TraceLayer::new_for_http()
            .make_span_with(span as fn(&Request<_>) -> Span)
            .on_request(())
            .on_response(logged as fn(&Response<_>, Duration, &Span))
            .on_body_chunk(())
            .on_eos(())
            .on_failure(()),
    )
    .layer(PropagateRequestIdLayer::x_request_id())
    .layer(SetRequestIdLayer::x_request_id(NewId))
    .layer(axum::middleware::map_request(keep_sane_id))
}
