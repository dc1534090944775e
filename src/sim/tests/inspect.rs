//! The call log and the `/_sim` routes.

use reqwest::Method;
use serde_json::json;

use super::{Harness, USER_AGENT, small_directory};
use crate::sim::{CallRecord, Directory, FaultConfig};

#[tokio::test]
async fn the_call_log_records_every_provider_call_in_order() {
    let h = Harness::start(small_directory()).await;
    let base = h.server.aitronos_base_url();
    let unauthenticated = h
        .http
        .get(format!("{base}/organizations/org_acme/users/usr_bob"));
    assert_eq!(unauthenticated.send().await.unwrap().status(), 401);
    let listed = h
        .get("/organizations/org_acme/roles/role_member/members?skip=0&limit=5")
        .await;
    assert_eq!(listed.status, 200);
    assert_eq!(
        h.get("/organizations/org_acme/users/usr_nobody")
            .await
            .status,
        404
    );
    assert_eq!(h.sim(Method::GET, "/_sim/state", None).await.status, 200);

    let calls = h.server.calls();
    let seen: Vec<_> = calls
        .iter()
        .map(|c| (c.seq, c.status, c.method.as_str()))
        .collect();
    assert_eq!(seen, [(1, 401, "GET"), (2, 200, "GET"), (3, 404, "GET")]);
    let listing = &calls[1];
    assert_eq!(listing.provider, "aitronos");
    assert_eq!(
        listing.path,
        "/aitronos/v1/organizations/org_acme/roles/role_member/members"
    );
    assert_eq!(listing.query.as_deref(), Some("skip=0&limit=5"));
    assert!(
        calls
            .iter()
            .all(|c| c.user_agent.as_deref() == Some(USER_AGENT))
    );
    assert!(calls.iter().all(|c| c.started_at <= c.ended_at));
    assert!(calls.windows(2).all(|w| w[0].started_at <= w[1].started_at));

    let over_http = h.sim(Method::GET, "/_sim/calls", None).await;
    let over_http: Vec<CallRecord> = serde_json::from_value(over_http.body).unwrap();
    assert_eq!(over_http, calls);
    h.server.shutdown().await;
}

#[tokio::test]
async fn sim_routes_show_state_and_replace_faults() {
    let h = Harness::start(small_directory()).await;
    let state = h.sim(Method::GET, "/_sim/state", None).await;
    let state: Directory = serde_json::from_value(state.body).unwrap();
    assert_eq!(state, h.server.state());

    let bad = h
        .sim(
            Method::POST,
            "/_sim/faults",
            Some(json!({"error_rate": 2.0})),
        )
        .await;
    assert_eq!(bad.status, 422);
    let bad = h
        .sim(
            Method::POST,
            "/_sim/faults",
            Some(json!({"rate_limit": {"burst": 0}})),
        )
        .await;
    assert_eq!(bad.status, 422);

    let wanted =
        json!({"latency_ms": 1, "fail_next": [{"user_id": "usr_bob", "count": 1, "status": 502}]});
    assert_eq!(
        h.sim(Method::POST, "/_sim/faults", Some(wanted))
            .await
            .status,
        200
    );
    let current = h.sim(Method::GET, "/_sim/faults", None).await;
    let current: FaultConfig = serde_json::from_value(current.body).unwrap();
    assert_eq!((current.latency_ms, current.hang_ms), (1, 60_000));
    assert_eq!(current.fail_next[0].status, 502);
    assert_eq!(
        h.get("/organizations/org_acme/users/usr_bob").await.status,
        502
    );
    assert!(
        h.server
            .calls()
            .iter()
            .all(|c| c.path.starts_with("/aitronos/"))
    );
    h.server.shutdown().await;
}
