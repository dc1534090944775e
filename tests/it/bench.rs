//! Every `offboard bench` scenario at a small size, through the real
//! binary: it runs, checks its own result, and reports a sane figure. No
//! timing is asserted; the full sizes are run by hand (BENCHMARKS.md).

use serde_json::Value;

async fn bench(args: &[&str]) -> Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output()
        .await
        .expect("offboard bench runs");
    assert!(
        out.status.success(),
        "bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let figure: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bench {args:?} printed {stdout:?}: {e}"));
    for key in ["seconds", "value", "peak_rss_mb"] {
        let v = figure[key].as_f64().unwrap_or(-1.0);
        assert!(v.is_finite() && v > 0.0, "{key} of {args:?}: {figure}");
    }
    assert!(figure["cores"].as_u64().unwrap_or(0) >= 1, "{figure}");
    assert!(!figure["target"].as_str().unwrap_or("").is_empty());
    figure
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_reports_users_per_second_next_to_the_queue_floor() {
    let f = bench(&["engine", "--users", "200", "--concurrency", "8"]).await;
    assert_eq!(f["scenario"], "engine");
    assert_eq!(f["unit"], "users/s");
    assert_eq!(f["users"], 200);
    assert!(
        f["detail"]
            .as_str()
            .unwrap()
            .contains("bare apalis no-op jobs"),
        "{f}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_runs_on_postgres_with_two_workers() {
    let Ok(server) = std::env::var(crate::postgres::URL_ENV) else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED bench::engine_runs_on_postgres_with_two_workers: {} is not set",
            crate::postgres::URL_ENV
        );
        return;
    };
    let f = bench(&[
        "engine",
        "--users",
        "200",
        "--concurrency",
        "8",
        "--postgres",
        &server,
        "--workers",
        "2",
    ])
    .await;
    assert_eq!(f["backend"], "postgres");
    assert_eq!(f["workers"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_reports_rows_per_second() {
    let f = bench(&["ingest", "--users", "10000"]).await;
    assert_eq!(f["unit"], "rows/s");
    assert!(
        f["detail"]
            .as_str()
            .unwrap()
            .contains("10000 rows accepted (sorted by user)"),
        "{f}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_takes_a_scattered_roster_too() {
    let f = bench(&["ingest", "--users", "10000", "--shuffled"]).await;
    assert!(
        f["detail"]
            .as_str()
            .unwrap()
            .contains("10000 rows accepted (scattered), 10000 requests"),
        "{f}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_reports_time_to_a_saved_plan() {
    let f = bench(&["reconcile", "--users", "2000"]).await;
    assert_eq!(f["unit"], "s to a saved plan");
    assert!(f["detail"].as_str().unwrap().contains("2000 roster rows"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_compares_with_a_sequential_script() {
    let f = bench(&["baseline", "--users", "20", "--concurrency", "8"]).await;
    assert_eq!(f["unit"], "x a sequential script");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratelimit_reports_the_ratio_to_the_limit() {
    let f = bench(&["ratelimit", "--users", "20"]).await;
    assert_eq!(f["unit"], "x minimum");
    assert!(f["detail"].as_str().unwrap().contains("answered 429"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_reports_the_time_to_render_a_batch_page() {
    let f = bench(&["console", "--users", "2000"]).await;
    assert_eq!(f["unit"], "ms per batch page (median)");
    assert!(f["value"].as_f64().unwrap() > 0.0, "{f}");
    assert!(
        f["detail"]
            .as_str()
            .unwrap()
            .contains("renders of a 2000-request batch's page"),
        "{f}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratelimit_runs_against_a_foreign_limiter() {
    let f = bench(&["ratelimit", "--users", "20", "--foreign"]).await;
    assert_eq!(f["scenario"], "ratelimit (foreign limiter)");
    assert!(f["detail"].as_str().unwrap().contains("answered 429"));
}
