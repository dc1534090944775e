//! Providers as their documents describe them, not as our simulator grew
//! (issue 31, items 3 and 4): a Recoup server with only its published
//! route, and a SCIM base URL pointing at no SCIM server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::delete;
use offboard::sim::Directory;
use serde_json::json;

use crate::helpers::{Harness, Options, directory};

const ORG: &str = "6f1c9a52-7d3e-4b8a-9c21-0e5d4f3a2b10";
const ACCOUNT: &str = "0a2b4c6d-8e0f-4a1b-9c3d-5e7f9a1b3c5d";

/// Recoup as `../shared/specs/recoup-members.openapi.yaml` publishes it:
/// `DELETE /api/organizations/members?organization_id=&account_id=`
/// (UUIDs), authenticated by exactly one of `x-api-key` or a bearer token,
/// answering 200 `{"status":"success"}` whether or not the account was a
/// member, 400/401 in `{"status":"error","error"}`. Every other route is
/// the host's own 404 page.
#[derive(Clone, Default)]
struct DocumentedRecoup {
    token: String,
    members: Arc<Mutex<Vec<(String, String)>>>,
    calls: Arc<Mutex<Vec<String>>>,
}

fn envelope(status: StatusCode, error: &str) -> Response {
    (
        status,
        axum::Json(json!({"status": "error", "error": error})),
    )
        .into_response()
}

fn is_uuid(s: &str) -> bool {
    offboard::connectors::recoup::check_uuid(s).is_ok()
}

async fn remove_member(
    State(recoup): State<DocumentedRecoup>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    recoup
        .calls
        .lock()
        .unwrap()
        .push("DELETE /api/organizations/members".into());
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let authenticated = match (key, bearer) {
        (Some(k), None) | (None, Some(k)) => k == recoup.token,
        _ => false,
    };
    if !authenticated {
        return envelope(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let (Some(org), Some(account)) = (query.get("organization_id"), query.get("account_id")) else {
        return envelope(
            StatusCode::BAD_REQUEST,
            "organization_id and account_id are required",
        );
    };
    if !is_uuid(org) || !is_uuid(account) {
        return envelope(StatusCode::BAD_REQUEST, "Invalid UUID");
    }
    recoup
        .members
        .lock()
        .unwrap()
        .retain(|(o, a)| !(o == org && a == account));
    axum::Json(json!({"status": "success"})).into_response()
}

async fn no_such_page(State(recoup): State<DocumentedRecoup>, uri: axum::http::Uri) -> Response {
    recoup
        .calls
        .lock()
        .unwrap()
        .push(format!("other {}", uri.path()));
    (
        StatusCode::NOT_FOUND,
        Html("<!DOCTYPE html><title>404: This page could not be found.</title>"),
    )
        .into_response()
}

impl DocumentedRecoup {
    /// Serves the mock on `listener`, accepting `token`.
    fn serve(listener: tokio::net::TcpListener, token: &str) -> DocumentedRecoup {
        let recoup = DocumentedRecoup {
            token: token.to_owned(),
            members: Arc::new(Mutex::new(vec![(ORG.into(), ACCOUNT.into())])),
            ..Default::default()
        };
        let app = Router::new()
            .route("/api/organizations/members", delete(remove_member))
            .fallback(no_such_page)
            .with_state(recoup.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        recoup
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn is_member(&self) -> bool {
        !self.members.lock().unwrap().is_empty()
    }
}

/// A harness whose `rc` connection is the documented-only Recoup.
async fn with_documented_recoup(extra: &str) -> (Harness, DocumentedRecoup) {
    let (listener, url) = crate::helpers::loopback().await;
    let h = Harness::start_with(
        directory(),
        Options {
            extra_config: format!(
                "[providers.rc]\nkind = \"recoup\"\nbase_url = \"{url}\"\ntoken_env = \"{}\"\n{extra}",
                crate::helpers::TOKEN_ENV
            ),
            ..Options::default()
        },
    )
    .await;
    let recoup = DocumentedRecoup::serve(listener, &h.token);
    (h, recoup)
}

async fn run_one_leaver(h: &Harness) -> HashMap<String, String> {
    let csv = h.write_csv(
        "rc.csv",
        &format!("provider,user_id,organization_id\nrc,{ACCOUNT},{ORG}\n"),
    );
    let (code, batch, out) = h.run(&csv).await;
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    h.report(&batch).await.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recoup_works_with_its_documented_delete_alone() {
    let (h, recoup) = with_documented_recoup("").await;
    let row = run_one_leaver(&h).await;
    assert_eq!(row["outcome"], "succeeded", "{row:?}");
    assert_eq!(row["error_code"], "membership_unverified", "{row:?}");
    assert!(row["error_message"].contains("not read back"), "{row:?}");
    assert!(!recoup.is_member(), "the documented removal was sent");
    assert!(
        recoup
            .calls()
            .contains(&"DELETE /api/organizations/members".to_owned()),
        "{:?}",
        recoup.calls()
    );

    // `check` cannot prove the key without a removal: a warning, exit 0.
    let out = h.offboard(&["check"], &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("provider rc: WARNING"), "{stdout}");
    assert!(
        !stdout.contains("provider rc: reachable, credentials accepted"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recoup_membership_read_false_calls_only_the_removal() {
    let (h, recoup) = with_documented_recoup("membership_read = false\n").await;
    let row = run_one_leaver(&h).await;
    assert_eq!(row["outcome"], "succeeded", "{row:?}");
    assert_eq!(row["error_code"], "membership_unverified", "{row:?}");
    assert_eq!(
        recoup.calls(),
        ["DELETE /api/organizations/members"],
        "no read at all"
    );
}

/// `/scim/v1` where the server lives at `/scim/v2`: its 404s are no SCIM
/// error, so nobody is "already gone" and `check` does not pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_scim_base_path_is_no_already_done() {
    let h = Harness::start_with(
        Directory::generate(6, 4),
        Options {
            all_providers: Some(String::new()),
            ..Options::default()
        },
    )
    .await;
    let v2 = h.sim.scim_base_url();
    let v1 = v2.replace("/scim/v2", "/scim/v1");
    assert_ne!(v1, v2);
    let config = std::fs::read_to_string(&h.config)
        .unwrap()
        .replace(&v2, &v1);
    std::fs::write(&h.config, config).unwrap();

    let out = h.offboard(&["check"], &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("provider sc: FAILED"), "{stdout}");
    assert!(stdout.contains("provider acme: reachable"), "{stdout}");

    let csv = h.write_csv("sc.csv", "provider,user_id,org\nsc,u-000002,acme\n");
    let (code, batch, _) = h.run(&csv).await;
    assert_eq!(code, Some(3));
    let row = h.report(&batch).await.remove(0);
    assert_eq!(row["outcome"], "failed", "{row:?}");
    let user = h
        .sim
        .state()
        .scim
        .users
        .into_iter()
        .find(|u| u.id == "u-000002")
        .unwrap();
    assert!(user.active, "untouched, and not reported as gone");
}
