//! Injected faults: scripted failures, rate limits, 5xx, resets, hangs, latency.

use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

use super::{Harness, small_directory};
use crate::sim::{FailNext, FaultConfig, RateLimit};

#[tokio::test]
async fn fail_next_answers_the_scripted_status_then_recovers() {
    let h = Harness::start(small_directory()).await;
    let faults = json!({"fail_next": [
        {"user_id": "usr_alice", "count": 2, "status": 503},
        {"user_id": "usr_bob", "count": 1, "status": 429}]});
    assert_eq!(
        h.sim(Method::POST, "/_sim/faults", Some(faults))
            .await
            .status,
        200
    );

    let alice = "/organizations/org_acme/users/usr_alice";
    for _ in 0..2 {
        let failed = h.get(alice).await;
        assert_eq!((failed.status, failed.code()), (503, "SERVICE_UNAVAILABLE"));
        assert_eq!(failed.body["error"]["type"], "server_error");
    }
    assert_eq!(h.get(alice).await.status, 200);
    assert_eq!(
        h.get("/organizations/org_acme/users/usr_owner")
            .await
            .status,
        200
    );

    let limited = h
        .get("/organizations/org_acme/roles/role_admin/members/usr_bob")
        .await;
    assert_eq!(
        (limited.status, limited.code()),
        (429, "RATE_LIMIT_EXCEEDED")
    );
    assert_eq!(limited.headers["retry-after"], "1");
    let statuses: Vec<u16> = h.server.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [503, 503, 200, 200, 429]);
    h.server.shutdown().await;
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let faults = FaultConfig {
        rate_limit: Some(RateLimit {
            requests_per_second: 0.01,
            burst: 2,
            ..RateLimit::default()
        }),
        ..FaultConfig::default()
    };
    let h = Harness::with_faults(small_directory(), faults).await;
    let path = "/organizations/org_acme/users/usr_alice";
    assert_eq!(h.get(path).await.status, 200);
    assert_eq!(h.get(path).await.status, 200);
    let limited = h.get(path).await;
    assert_eq!(
        (limited.status, limited.code()),
        (429, "RATE_LIMIT_EXCEEDED")
    );
    let header: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(header >= 1);
    assert_eq!(limited.body["error"]["details"]["retry_after"], header);
    // Inspection is never limited.
    for _ in 0..3 {
        assert_eq!(h.sim(Method::GET, "/_sim/calls", None).await.status, 200);
    }
    h.server.shutdown().await;
}

#[tokio::test]
async fn random_faults_replay_with_the_same_seed() {
    let faults = FaultConfig {
        error_rate: 0.5,
        ..FaultConfig::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let h = Harness::with_faults(small_directory(), faults.clone()).await;
        let mut statuses = Vec::new();
        for _ in 0..20 {
            let answer = h.get("/organizations/org_acme/users/usr_bob").await;
            if answer.status != 200 {
                assert!([500, 502, 503].contains(&answer.status));
                assert_eq!(answer.body["error"]["type"], "server_error");
            }
            statuses.push(answer.status);
        }
        h.server.shutdown().await;
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].contains(&200) && runs[0].iter().any(|s| *s >= 500));
}

#[tokio::test]
async fn a_reset_sends_no_answer() {
    let faults = FaultConfig {
        reset_rate: 1.0,
        ..FaultConfig::default()
    };
    let h = Harness::with_faults(small_directory(), faults).await;
    let url = format!(
        "{}/organizations/org_acme/users/usr_bob",
        h.server.aitronos_base_url()
    );
    let result = h
        .http
        .get(url)
        .header("X-API-Key", super::TOKEN)
        .send()
        .await;
    assert!(result.is_err(), "{result:?}");
    let calls = h.server.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, 0);
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_hang_outlives_the_client_but_not_shutdown() {
    let faults = FaultConfig {
        timeout_rate: 1.0,
        ..FaultConfig::default()
    };
    let h = Harness::with_faults(small_directory(), faults).await;
    let url = format!(
        "{}/organizations/org_acme/users/usr_bob",
        h.server.aitronos_base_url()
    );
    let request = h.http.get(url).header("X-API-Key", super::TOKEN);
    let result = request.timeout(Duration::from_millis(200)).send().await;
    assert!(result.is_err_and(|e| e.is_timeout()));
    let started = Instant::now();
    h.server.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn latency_shows_in_the_recorded_timestamps() {
    let faults = FaultConfig {
        latency_ms: 40,
        fail_next: vec![FailNext {
            user_id: "usr_bob".into(),
            count: 1,
            status: 500,
            ..FailNext::default()
        }],
        ..FaultConfig::default()
    };
    let h = Harness::with_faults(small_directory(), faults).await;
    assert_eq!(
        h.get("/organizations/org_acme/users/usr_bob").await.status,
        500
    );
    let call = &h.server.calls()[0];
    assert!(call.ended_at - call.started_at >= chrono::Duration::milliseconds(40));
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_limiter_on_a_slower_clock_refills_slower() {
    // 1,000 calls/s on a clock running at a hundred-thousandth of ours is
    // one call every hundred seconds: the second call finds the bucket empty.
    let faults = FaultConfig {
        rate_limit: Some(RateLimit {
            requests_per_second: 1000.0,
            burst: 1,
            clock_rate: 0.000_01,
            ..RateLimit::default()
        }),
        ..FaultConfig::default()
    };
    let h = Harness::with_faults(small_directory(), faults).await;
    let path = "/organizations/org_acme/users/usr_alice";
    assert_eq!(h.get(path).await.status, 200);
    let limited = h.get(path).await;
    assert_eq!(
        (limited.status, limited.code()),
        (429, "RATE_LIMIT_EXCEEDED")
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_limiter_behind_the_latency_still_answers_429() {
    let faults = FaultConfig {
        latency_ms: 5,
        jitter_ms: 5,
        rate_limit: Some(RateLimit {
            requests_per_second: 0.01,
            burst: 1,
            behind_latency: true,
            ..RateLimit::default()
        }),
        ..FaultConfig::default()
    };
    let h = Harness::with_faults(small_directory(), faults).await;
    let path = "/organizations/org_acme/users/usr_alice";
    assert_eq!(h.get(path).await.status, 200);
    let limited = h.get(path).await;
    assert_eq!(
        (limited.status, limited.code()),
        (429, "RATE_LIMIT_EXCEEDED")
    );
    assert_eq!(limited.headers["retry-after"], "100");
    let statuses: Vec<u16> = h.server.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [200, 429]);
    h.server.shutdown().await;
}
