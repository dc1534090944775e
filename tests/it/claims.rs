//! Claims under stress (issue 31, item 12): a run that loses its claim
//! stops the step it is in, and every destructive call is on record
//! before the next one starts.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use offboard::sim::FaultConfig;
use serde_json::json;
use sqlx::Row;

use crate::helpers::{Harness, Options, TOKEN_ENV, directory, eventually};

async fn sqlite(h: &Harness) -> sqlx::SqlitePool {
    let url = format!("sqlite://{}", h.dir.path().join("offboard.db").display());
    sqlx::SqlitePool::connect(&url).await.unwrap()
}

/// A user of the generated directory holding at least two roles.
fn user_with_roles(h: &Harness) -> String {
    h.sim.state().aitronos.organizations[0]
        .members
        .iter()
        .find(|m| m.role_ids.len() >= 2 && m.user_id != "usr_000001")
        .map(|m| m.user_id.clone())
        .expect("a member with two roles")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_claim_stops_the_running_step() {
    let h = Harness::start_with(
        directory(),
        Options {
            faults: FaultConfig {
                latency_ms: 1500,
                ..FaultConfig::default()
            },
            timeout_ms: 20_000,
            ..Options::default()
        },
    )
    .await;
    let user = user_with_roles(&h);
    let serve = h.serve(&["--no-api"]).await;
    let csv = h.write_csv("one.csv", &format!("user_id,org\n{user},org_acme\n"));
    let out = h.offboard(&["submit", csv.to_str().unwrap()], &[]).await;
    assert!(out.status.success());

    // Once the plan is stored, the run is removing roles, one slow call
    // each; then another worker takes the request over.
    let db = sqlite(&h).await;
    eventually(30, "the plan's checkpoint", || async {
        sqlx::query("SELECT 1 FROM step_checkpoints WHERE step = 'plan'")
            .fetch_optional(&db)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    sqlx::query(
        "UPDATE requests SET claim_owner = 'another-worker', claim_expires_at = claim_expires_at + 600000",
    )
    .execute(&db)
    .await
    .unwrap();

    serve.log_line(30, "claim on this request was lost").await;
    let removals = h
        .sim
        .calls()
        .iter()
        .filter(|c| c.method == "DELETE" && c.path.contains(&user))
        .count();
    assert!(
        removals <= 1,
        "{removals} removals after the claim was lost"
    );
    serve.stop_within(60).await;
}

/// The mocks' answer to the plan's read: usr_000002 holds `roles`.
fn holds(roles: &[&str]) -> Response {
    axum::Json(json!({"user_id": "usr_000002", "role_ids": roles, "capabilities": []}))
        .into_response()
}

/// The mocks' answer to the read-back of a removed membership.
fn no_such_member() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"success": false, "error": {"code": "USER_NOT_FOUND", "message": "no such member"}})),
    )
        .into_response()
}

/// A harness whose connection `mock` is Aitronos served by `app` on a
/// loopback port; `db` is told the harness's database.
async fn with_mock(app: Router, db: &Mutex<Option<String>>) -> Harness {
    let (listener, url) = crate::helpers::loopback().await;
    let base = format!("{url}/v1");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let h = Harness::start_with(
        directory(),
        Options {
            extra_config: format!(
                "[providers.mock]\nkind = \"aitronos\"\nbase_url = \"{base}\"\ntoken_env = \"{TOKEN_ENV}\"\n"
            ),
            ..Options::default()
        },
    )
    .await;
    *db.lock().unwrap() = Some(format!(
        "sqlite://{}",
        h.dir.path().join("offboard.db").display()
    ));
    h
}

/// `offboard run` of one row: usr_000002 of the mock connection.
async fn offboard_one(h: &Harness) -> (Option<i32>, String, std::process::Output) {
    let csv = h.write_csv(
        "one.csv",
        "provider,user_id,org\nmock,usr_000002,org_acme\n",
    );
    h.run(&csv).await
}

/// Aitronos, as a small mock that looks into the database whenever a
/// destructive call arrives: how many of the run's earlier removals are on
/// record by then.
#[derive(Clone, Default)]
struct Witness {
    db: Arc<Mutex<Option<String>>>,
    seen: Arc<Mutex<Vec<(String, i64)>>>,
}

async fn aitronos(State(w): State<Witness>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    match *request.method() {
        Method::GET if path.ends_with("/effective-permissions") => {
            holds(&["role_a", "role_b", "role_c"])
        }
        Method::GET => no_such_member(),
        Method::DELETE => {
            let url = w.db.lock().unwrap().clone().unwrap();
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let on_record: i64 =
                sqlx::query("SELECT COUNT(*) AS n FROM audit_events WHERE method = 'DELETE'")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
                    .get("n");
            pool.close().await;
            w.seen.lock().unwrap().push((path, on_record));
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_removal_is_on_record_before_the_next_starts() {
    let witness = Witness::default();
    let app = Router::new().fallback(aitronos).with_state(witness.clone());
    let h = with_mock(app, &witness.db).await;
    let (code, _, out) = offboard_one(&h).await;
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = witness.seen.lock().unwrap().clone();
    let on_record: Vec<i64> = seen.iter().map(|(_, n)| *n).collect();
    assert_eq!(on_record, [0, 1, 2, 3], "{seen:?}");
}

/// Aitronos, as a small mock that holds the database's write lock from the
/// membership's removal until the read-back of it arrives, and notes
/// whether it came while the lock was held.
#[derive(Clone, Default)]
struct LockWitness {
    db: Arc<Mutex<Option<String>>>,
    lock: Arc<tokio::sync::Mutex<Option<sqlx::SqliteConnection>>>,
    verified_while_locked: Arc<Mutex<Option<bool>>>,
}

impl LockWitness {
    async fn release(&self) -> bool {
        use sqlx::Connection;
        let Some(mut conn) = self.lock.lock().await.take() else {
            return false;
        };
        sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        true
    }
}

async fn aitronos_locking(State(w): State<LockWitness>, request: Request) -> Response {
    use sqlx::Connection;
    let path = request.uri().path().to_owned();
    let membership = path.ends_with("/users/usr_000002");
    match *request.method() {
        Method::GET if path.ends_with("/effective-permissions") => holds(&["role_a"]),
        Method::GET => {
            if membership {
                let held = w.release().await;
                w.verified_while_locked.lock().unwrap().get_or_insert(held);
            }
            no_such_member()
        }
        Method::DELETE if membership => {
            let url = w.db.lock().unwrap().clone().unwrap();
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .unwrap();
            *w.lock.lock().await = Some(conn);
            // A run that waits for the checkpoint before it reads would
            // wait here forever: the lock goes after 10 s at the latest.
            let w = w.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                w.release().await;
            });
            StatusCode::NO_CONTENT.into_response()
        }
        Method::DELETE => StatusCode::NO_CONTENT.into_response(),
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// The read-back after the membership's removal changes nothing, so where
/// no policy step follows, it is made while the removal's checkpoint
/// commits (here: waits for the database's write lock), not after; its
/// call is still on record with the outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_back_is_made_while_the_removal_is_put_on_record() {
    let witness = LockWitness::default();
    let app = Router::new()
        .fallback(aitronos_locking)
        .with_state(witness.clone());
    let h = with_mock(app, &witness.db).await;
    let (code, _, out) = offboard_one(&h).await;
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(*witness.verified_while_locked.lock().unwrap(), Some(true));
    let db = sqlite(&h).await;
    let on_record: Vec<(String, String, Option<String>)> = sqlx::query(
        "SELECT e.method AS method, c.step AS step, r.outcome AS outcome
         FROM audit_events e JOIN requests r ON r.id = e.request_id
         LEFT JOIN step_checkpoints c ON c.request_id = r.id AND c.step = 'remove_membership'
         WHERE e.path LIKE '%/users/usr_000002' ORDER BY e.id",
    )
    .fetch_all(&db)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get("method"), r.get("step"), r.get("outcome")))
    .collect();
    let stored = |m: &str| {
        (
            m.to_owned(),
            "remove_membership".to_owned(),
            Some("succeeded".to_owned()),
        )
    };
    assert_eq!(on_record, [stored("DELETE"), stored("GET")]);
}

/// Aitronos, as a small mock whose read-back of the removed membership is
/// refused (400), after a removal that worked.
async fn aitronos_refusing_the_read_back(request: Request) -> Response {
    let path = request.uri().path().to_owned();
    match *request.method() {
        Method::GET if path.ends_with("/effective-permissions") => holds(&["role_a"]),
        Method::GET => (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"success": false, "error": {"code": "BAD_REQUEST", "message": "no"}}),
            ),
        )
            .into_response(),
        Method::DELETE => StatusCode::NO_CONTENT.into_response(),
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// A read-back that fails, after a removal that worked, leaves the removal
/// on record with its checkpoint: a later attempt does not remove again,
/// and an undo knows what to give back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_read_back_keeps_the_removal_on_record() {
    let app = Router::new().fallback(aitronos_refusing_the_read_back);
    let h = with_mock(app, &Mutex::new(None)).await;
    let (_, _, out) = offboard_one(&h).await;
    let db = sqlite(&h).await;
    let row = sqlx::query(
        "SELECT r.outcome AS outcome, c.data AS data FROM requests r
         LEFT JOIN step_checkpoints c ON c.request_id = r.id AND c.step = 'remove_membership'
         WHERE r.user_id = 'usr_000002' AND r.provider = 'mock'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let outcome: Option<String> = row.get("outcome");
    assert_eq!(
        outcome.as_deref(),
        Some("failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data: Option<String> = row.get("data");
    assert_eq!(data.as_deref(), Some(r#"{"change":"changed"}"#));
    let methods: Vec<String> = sqlx::query_scalar(
        "SELECT method FROM audit_events WHERE path LIKE '%/users/usr_000002' ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(methods, ["DELETE", "GET"]);
}

/// Aitronos, as a small mock through which a person cancels the request
/// while its roles are being removed.
async fn aitronos_cancelled_while_stripping(
    State(w): State<Witness>,
    request: Request,
) -> Response {
    let path = request.uri().path().to_owned();
    match *request.method() {
        Method::GET if path.ends_with("/effective-permissions") => holds(&["role_a", "role_b"]),
        Method::GET => no_such_member(),
        Method::DELETE => {
            if path.contains("/roles/") {
                let url = w.db.lock().unwrap().clone().unwrap();
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                sqlx::query("UPDATE requests SET cancel_requested = 1 WHERE outcome IS NULL")
                    .execute(&pool)
                    .await
                    .unwrap();
                pool.close().await;
            }
            w.seen.lock().unwrap().push((path, 0));
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// A cancel that arrives while the roles are removed stops the run before
/// the membership's removal, and the request's record keeps the roles it
/// did remove: `cancelled` does not mean that nothing was changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_part_way_keeps_what_it_removed() {
    let witness = Witness::default();
    let app = Router::new()
        .fallback(aitronos_cancelled_while_stripping)
        .with_state(witness.clone());
    let h = with_mock(app, &witness.db).await;
    let (_, _, out) = offboard_one(&h).await;
    let removals: Vec<String> = witness
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(removals.len(), 2, "the roles only: {removals:?}");
    let db = sqlite(&h).await;
    let row = sqlx::query(
        "SELECT outcome, roles_removed, error_message FROM requests
         WHERE user_id = 'usr_000002' AND provider = 'mock'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let outcome: Option<String> = row.get("outcome");
    assert_eq!(outcome.as_deref(), Some("cancelled"), "{stderr}");
    let roles: Option<String> = row.get("roles_removed");
    assert_eq!(roles.as_deref(), Some("role_a;role_b"), "{stderr}");
    let message: Option<String> = row.get("error_message");
    assert!(
        message.as_deref().is_some_and(|m| m.contains("role_a")),
        "{message:?}"
    );
}

/// Aitronos, as a small mock that removes `role_a` and answers 503 with a
/// minute's `Retry-After` for `role_b`: the request waits for a later
/// attempt with one role removed.
async fn aitronos_failing_the_second_role(request: Request) -> Response {
    let path = request.uri().path().to_owned();
    match *request.method() {
        Method::GET if path.ends_with("/effective-permissions") => holds(&["role_a", "role_b"]),
        Method::DELETE if path.contains("/roles/role_b/") => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "60")],
            axum::Json(
                json!({"success": false, "error": {"code": "UNAVAILABLE", "message": "later"}}),
            ),
        )
            .into_response(),
        Method::DELETE => StatusCode::NO_CONTENT.into_response(),
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// A request cancelled while it waits for its next attempt keeps the roles
/// its earlier attempt removed on its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_between_attempts_keeps_what_it_removed() {
    let app = Router::new().fallback(aitronos_failing_the_second_role);
    let h = with_mock(app, &Mutex::new(None)).await;
    let serve = h.serve(&["--no-api"]).await;
    let csv = h.write_csv(
        "one.csv",
        "provider,user_id,org\nmock,usr_000002,org_acme\n",
    );
    let out = h.offboard(&["submit", csv.to_str().unwrap()], &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batch = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let db = sqlite(&h).await;
    eventually(30, "the request to wait with one role removed", || async {
        sqlx::query(
            "SELECT 1 FROM requests r JOIN step_checkpoints c
               ON c.request_id = r.id AND c.step = 'strip_roles'
             WHERE r.outcome IS NULL AND r.claim_owner IS NULL",
        )
        .fetch_optional(&db)
        .await
        .unwrap()
        .is_some()
    })
    .await;
    let out = h.offboard(&["cancel", &batch], &[]).await;
    assert_eq!(out.status.code(), Some(0));
    serve.stop().await;
    let row = sqlx::query("SELECT outcome, roles_removed FROM requests WHERE batch_id = $1")
        .bind(&batch)
        .fetch_one(&db)
        .await
        .unwrap();
    let outcome: Option<String> = row.get("outcome");
    assert_eq!(outcome.as_deref(), Some("cancelled"));
    let roles: Option<String> = row.get("roles_removed");
    assert_eq!(roles.as_deref(), Some("role_a"));
}
