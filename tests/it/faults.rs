//! Fault tolerance: transient faults are retried politely, provider waits
//! are honoured, permanent errors stop at once, budgets end in `dead`.

use std::collections::HashMap;

use offboard::sim::{FailNext, FaultConfig, RetryHint};

use crate::helpers::{Harness, Options, directory, member, users_csv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_survives_thirty_percent_transient_faults() {
    let faults = FaultConfig {
        error_rate: 0.15,
        timeout_rate: 0.075,
        reset_rate: 0.075,
        hang_ms: 1_500,
        ..FaultConfig::default()
    };
    let h = Harness::start_with(
        offboard::sim::Directory::generate(501, 3),
        Options {
            faults,
            concurrency: 16,
            timeout_ms: 300,
            max_attempts: 40,
            ..Options::default()
        },
    )
    .await;
    let csv = h.write_csv("500.csv", &users_csv(2, 501));
    let (code, batch, out) = h.run(&csv).await;
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = h.report(&batch).await;
    assert_eq!(rows.len(), 500);
    assert!(
        rows.iter()
            .all(|r| r["outcome"] == "succeeded" || r["outcome"] == "already_done")
    );
    assert!(
        rows.iter().any(|r| r["attempts"] != "1"),
        "faults caused retries"
    );

    let calls = h.sim.calls();
    let faulted = calls
        .iter()
        .filter(|c| c.status == 0 || c.status >= 500)
        .count();
    assert!(
        faulted > calls.len() / 5,
        "{faulted} of {} calls faulted",
        calls.len()
    );
    // No removal took effect twice for anyone.
    let mut applied: HashMap<&str, usize> = HashMap::new();
    for c in calls
        .iter()
        .filter(|c| c.method == "DELETE" && c.status == 204)
    {
        *applied.entry(c.path.as_str()).or_default() += 1;
    }
    assert!(applied.values().all(|n| *n == 1), "a removal applied twice");
    for i in 2..=501 {
        let m = member(&h.sim, &format!("usr_{i:06}"));
        assert_eq!(m.account_state, "deleted");
        assert!(m.role_ids.is_empty());
    }
}

async fn next_call_waits_for(hint: RetryHint) {
    let h = Harness::start_with(
        directory(),
        Options {
            faults: FaultConfig {
                fail_next: vec![FailNext {
                    user_id: "usr_000002".into(),
                    count: 1,
                    status: 429,
                    retry_after_secs: Some(2),
                    retry_hint: hint,
                }],
                ..FaultConfig::default()
            },
            inline_wait_max_ms: 5_000,
            ..Options::default()
        },
    )
    .await;
    let csv = h.write_csv("one.csv", &users_csv(2, 2));
    let (code, _, _) = h.run(&csv).await;
    assert_eq!(code, Some(0));
    let calls = h.sim.calls();
    let limited = calls
        .iter()
        .find(|c| c.status == 429)
        .expect("the 429 was sent");
    let next = calls
        .iter()
        .find(|c| c.seq > limited.seq)
        .expect("the call was tried again");
    let waited = next.started_at - limited.started_at;
    assert!(
        waited >= chrono::Duration::seconds(2),
        "{hint:?}: the next call came {waited} after the 429"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_seconds_is_honoured() {
    next_call_waits_for(RetryHint::Seconds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_http_date_is_honoured() {
    next_call_waits_for(RetryHint::HttpDate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_reset_is_honoured() {
    next_call_waits_for(RetryHint::RateLimitReset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_stop_the_batch_early() {
    let h = Harness::start_with(
        directory(),
        Options {
            wrong_token: true,
            concurrency: 2,
            ..Options::default()
        },
    )
    .await;
    let csv = h.write_csv("30.csv", &users_csv(2, 31));
    let (code, batch, _) = h.run(&csv).await;
    assert_eq!(code, Some(3));
    let rows = h.report(&batch).await;
    assert!(rows.iter().all(|r| r["outcome"] == "failed"), "{rows:?}");
    let calls = h.sim.calls().len();
    assert!(
        calls <= 5,
        "{calls} calls for 30 rows: the breaker should stop them"
    );
    let stopped = rows
        .iter()
        .filter(|r| r["error_code"] == "provider_credentials_rejected")
        .count();
    assert!(stopped >= 25, "{stopped}");
    assert!(
        rows.iter()
            .all(|r| r["error_message"].contains("token_env"))
    );
    assert!(rows.iter().all(|r| r["attempts"] == "1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_error_fails_after_one_attempt() {
    let h = Harness::start_with(
        directory(),
        Options {
            faults: FaultConfig {
                fail_next: vec![FailNext {
                    user_id: "usr_000002".into(),
                    count: 5,
                    status: 422,
                    ..FailNext::default()
                }],
                ..FaultConfig::default()
            },
            ..Options::default()
        },
    )
    .await;
    let csv = h.write_csv("one.csv", &users_csv(2, 3));
    let (code, batch, _) = h.run(&csv).await;
    assert_eq!(code, Some(3));
    let rows = h.report(&batch).await;
    let bad = rows.iter().find(|r| r["user_id"] == "usr_000002").unwrap();
    assert_eq!(bad["outcome"], "failed");
    assert_eq!(bad["error_code"], "VALIDATION_ERROR");
    assert_eq!(bad["attempts"], "1");
    let tried = h
        .sim
        .calls()
        .iter()
        .filter(|c| c.path.contains("usr_000002"))
        .count();
    assert_eq!(tried, 1, "a permanent error is never retried");
    assert_eq!(
        rows.iter().find(|r| r["user_id"] == "usr_000003").unwrap()["outcome"],
        "succeeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_budget_is_dead_until_retried() {
    exhausted_budget_scenario(None).await;
}

pub(crate) async fn exhausted_budget_scenario(database_url: Option<String>) {
    let h = Harness::start_with(
        directory(),
        Options {
            database_url,
            faults: FaultConfig {
                fail_next: vec![FailNext {
                    user_id: "usr_000002".into(),
                    count: 1_000,
                    status: 503,
                    ..FailNext::default()
                }],
                ..FaultConfig::default()
            },
            max_attempts: 3,
            ..Options::default()
        },
    )
    .await;
    let csv = h.write_csv("one.csv", &users_csv(2, 2));
    let (code, batch, _) = h.run(&csv).await;
    assert_eq!(code, Some(3));
    let rows = h.report(&batch).await;
    assert_eq!(rows[0]["outcome"], "dead");
    assert_eq!(rows[0]["error_code"], "SERVICE_UNAVAILABLE");
    assert!(
        rows[0]["error_message"].contains("gave up after 3 attempts"),
        "{:?}",
        rows[0]
    );
    assert_eq!(rows[0]["attempts"], "3");

    // The fault is gone; a retry brings the request to succeeded.
    reqwest::Client::new()
        .post(format!("{}/_sim/faults", h.sim.url()))
        .json(&FaultConfig::default())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let out = h.offboard(&["retry", &batch], &[]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = h.report(&batch).await;
    assert_eq!(rows[0]["outcome"], "succeeded");
    assert_eq!(member(&h.sim, "usr_000002").account_state, "deleted");
}
