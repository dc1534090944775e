//! The console's pages as askama templates (`templates/`), and the small
//! view models they show. Everything a page prints is escaped.

use askama::Template;
use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::domain::Role;

/// Renders a page as an HTML answer.
pub(super) fn html(page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (
            [(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page did not render");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// The signed-in person, as the page header shows them.
pub(super) struct NavUser {
    pub actor: String,
    pub role: Role,
    pub csrf: String,
    pub can_upload: bool,
}

#[derive(Template)]
#[template(path = "sign_in.html")]
pub(super) struct SignInPage<'a> {
    pub nav: Option<NavUser>,
    pub csrf: &'a str,
    pub problem: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub(super) struct ErrorPage<'a> {
    pub nav: Option<NavUser>,
    pub heading: &'a str,
    pub message: &'a str,
    pub back: Option<&'a str>,
}

/// A batch as a list or its page shows it.
pub(super) struct BatchView {
    pub id: String,
    pub created: String,
    pub state: String,
    pub reason: Option<String>,
    pub source: String,
    pub name: Option<String>,
    pub submitter: String,
    pub counts: String,
    pub percent: u32,
    pub eta: Option<String>,
    /// Work is still going on (for the no-script refresh).
    pub moving: bool,
    /// A preview still being planned.
    pub planning: bool,
}

#[derive(Template)]
#[template(path = "batches.html")]
pub(super) struct BatchesPage {
    pub nav: Option<NavUser>,
    pub rows: Vec<BatchView>,
    pub next: Option<String>,
    pub can_upload: bool,
}

/// What the person may decide on this batch now.
#[derive(Default)]
pub(super) struct Actions {
    /// "Submit", or "Request approval" for a preview over the cap.
    pub release: Option<String>,
    pub approve: bool,
    pub retry: bool,
    pub cancel: bool,
}

impl Actions {
    pub(super) fn is_empty(&self) -> bool {
        self.release.is_none() && !self.approve && !self.retry && !self.cancel
    }
}

pub(super) struct RejectedView {
    pub line: u64,
    pub code: String,
    pub message: String,
}

pub(super) struct RowView {
    pub line: u64,
    pub user_id: String,
    pub outcome: String,
    pub roles: String,
    pub transfer: String,
    pub detail: String,
    /// Still to run: an approval may pick it.
    pub open: bool,
}

pub(super) struct EventView {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "batch.html")]
pub(super) struct BatchPage {
    pub nav: Option<NavUser>,
    pub csrf: String,
    pub b: BatchView,
    pub actions: Actions,
    pub rejected: Vec<RejectedView>,
    pub rows: Vec<RowView>,
    pub outcomes: Vec<String>,
    pub filter: Option<String>,
    pub next: Option<String>,
    pub events: Vec<EventView>,
}

#[derive(Template)]
#[template(path = "upload.html")]
pub(super) struct UploadPage {
    pub nav: Option<NavUser>,
    pub csrf: String,
    pub providers: Vec<String>,
}

pub(super) struct JobView {
    pub name: String,
    pub provider: String,
    pub organization: String,
    pub schedule: String,
    pub timezone: String,
    pub last_run: String,
    pub last_batch: Option<String>,
    pub next_run: String,
    pub last_result: String,
}

#[derive(Template)]
#[template(path = "schedules.html")]
pub(super) struct SchedulesPage {
    pub nav: Option<NavUser>,
    pub csrf: String,
    pub jobs: Vec<JobView>,
    pub can_run: bool,
}
