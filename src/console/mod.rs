//! The web console: HR uploads a leavers file, reviews the preview,
//! submits or asks for approval, watches the batch run and downloads its
//! report — in a browser, on the API's listener. Server-rendered pages
//! (askama), one stylesheet and one small script, both vendored; every
//! form carries the session's form token, and every action checks the
//! person's role again on the server.

mod actions;
mod pages;
mod session;
mod views;

use axum::Router;
use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use pages::render_batch_page;
pub use session::ConsoleUser;

use crate::api::ApiState;

/// No script or style but our own files, no framing, no form posted away.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// The console's routes, each finding the person at the console first.
pub fn router(state: ApiState) -> Router<ApiState> {
    let pages = Router::new()
        .route("/", get(|| async { Redirect::to("/batches") }))
        .route("/sign-in", get(pages::sign_in).post(actions::sign_in))
        .route("/sign-out", post(actions::sign_out))
        .route("/batches", get(pages::batches))
        .route("/batches/{id}", get(pages::batch))
        .route("/batches/{id}/progress", get(pages::progress))
        .route("/batches/{id}/report.csv", get(pages::report_csv))
        .route("/batches/{id}/report.json", get(pages::report_json))
        .route("/batches/{id}/release", post(actions::release))
        .route("/batches/{id}/approve", post(actions::approve))
        .route("/batches/{id}/retry", post(actions::retry))
        .route("/batches/{id}/cancel", post(actions::cancel))
        .route(
            "/upload",
            get(pages::upload)
                .post(actions::upload)
                // The upload spools its file under its own bound.
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/schedules", get(pages::schedules))
        .route("/schedules/{name}/run", post(actions::run_schedule))
        // Every other form is a few fields: a large body is refused before
        // it is read, signed in or not.
        .layer(axum::extract::DefaultBodyLimit::max(FORM_MAX_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state,
            session::console_user,
        ));
    Router::new()
        .route("/static/console.css", get(stylesheet))
        .route("/static/console.js", get(script))
        .merge(pages)
        .layer(axum::middleware::from_fn(security_headers))
}

/// The largest form body the console reads (an `Approve selected` of a
/// few hundred people fits many times over).
const FORM_MAX_BYTES: usize = 64 * 1024;

/// Headers every console answer carries.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../assets/console.css"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../assets/console.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (CACHE_CONTROL, HeaderValue::from_static("max-age=300")),
        ],
        body,
    )
        .into_response()
}

/// A page that could not be shown, as HTML.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// A failure of ours; the cause goes to the log, not to the page.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "console page failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the page could not be shown; see the server log",
        )
    }
}

impl From<crate::api::ApiError> for PageError {
    fn from(e: crate::api::ApiError) -> Self {
        Self::new(e.status, e.message)
    }
}

impl PageError {
    /// Nobody is signed in: the answer sends the browser to sign in.
    pub fn sign_in() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "sign in first")
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::UNAUTHORIZED {
            return Redirect::to("/sign-in").into_response();
        }
        let heading = match self.status {
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            s if s.is_client_error() => "Cannot do that",
            _ => "Something went wrong",
        };
        let page = views::ErrorPage {
            nav: None,
            heading,
            message: &self.message,
            back: Some("/batches"),
        };
        (self.status, views::html(&page)).into_response()
    }
}
