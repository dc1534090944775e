//! Requests a well-behaved client never sends: no credentials, wrong
//! credentials, undecodable ids, unknown routes.

use chrono::DateTime;
use reqwest::Method;
use serde_json::json;

use super::{Harness, TOKEN, small_directory};

#[tokio::test]
async fn auth_accepts_either_header_and_nothing_else() {
    let h = Harness::start(small_directory()).await;
    let url = format!(
        "{}/organizations/org_acme/users/usr_alice",
        h.server.aitronos_base_url()
    );
    let send = |header: Option<(&'static str, String)>| {
        let mut request = h.http.get(&url);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        async move { super::read(request.send().await.unwrap()).await }
    };

    let missing = send(None).await;
    assert_eq!(missing.status, 401);
    let error = &missing.body["error"];
    assert_eq!(missing.body["success"], json!(false));
    assert_eq!(error["code"], "UNAUTHORIZED");
    assert_eq!(error["type"], "client_error");
    assert_eq!(error["status"], 401);
    assert_eq!(error["details"], json!({}));
    assert!(error["message"].is_string() && error["system_message"].is_string());
    assert!(!error["trace_id"].as_str().unwrap().is_empty());
    assert!(DateTime::parse_from_rfc3339(error["timestamp"].as_str().unwrap()).is_ok());

    assert_eq!(send(Some(("x-api-key", TOKEN.into()))).await.status, 200);
    assert_eq!(
        send(Some(("authorization", format!("Bearer {TOKEN}"))))
            .await
            .status,
        200
    );
    let wrong = send(Some(("x-api-key", "nope".into()))).await;
    assert_eq!((wrong.status, wrong.code()), (401, "UNAUTHORIZED"));
    assert_eq!(
        send(Some(("authorization", "Bearer nope".into())))
            .await
            .status,
        401
    );
    assert_eq!(
        send(Some(("authorization", TOKEN.into()))).await.status,
        401
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn hostile_paths_match_nothing() {
    let h = Harness::start(small_directory()).await;
    let long = "x".repeat(10_000);
    for path in [
        "/organizations/org_acme/users/%FF%FE".to_owned(),
        "/organizations/org_acme/users/..%2F..%2Fusr_alice".to_owned(),
        format!("/organizations/org_acme/users/{long}"),
        "/organizations/org_acme/users/usr_alice%00".to_owned(),
    ] {
        assert_eq!(h.get(&path).await.status, 404, "{path}");
    }
    let unknown = h.get("/nothing/here").await;
    assert_eq!((unknown.status, unknown.code()), (404, "NOT_FOUND"));
    let wrong_method = h
        .call(Method::PUT, "/organizations/org_acme/users/usr_alice", None)
        .await;
    assert_eq!(wrong_method.status, 405);
    h.server.shutdown().await;
}
