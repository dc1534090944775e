//! Prometheus metrics: one process-wide recorder, rendered by `GET /metrics`.
//! Names and labels are bounded: provider connection names, outcomes, HTTP
//! status codes and step names — never ids.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder (once per process) and returns its handle; `None`
/// when another recorder was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "offboard_step_duration_seconds".into(),
                    ),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    ],
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!(
        "offboard_requests_total",
        "Requests that reached an outcome, by provider and outcome."
    );
    metrics::describe_counter!(
        "offboard_provider_calls_total",
        "Provider call attempts, by provider and HTTP status (0: no answer)."
    );
    metrics::describe_counter!(
        "offboard_retries_total",
        "Provider calls retried in place, by provider."
    );
    metrics::describe_counter!(
        "offboard_rows_total",
        "CSV rows taken in, by result (accepted, rejected)."
    );
    metrics::describe_gauge!("offboard_queue_depth", "Requests not final yet.");
    metrics::describe_counter!(
        "offboard_notifications_total",
        "Notification attempts, by channel and result (sent, failed, dead)."
    );
    metrics::describe_counter!(
        "offboard_run_writes_total",
        "Writes of runs committed to the database (a claim not taken included), by write (claim, renew, audit, step, finish, preview, postpone)."
    );
    metrics::describe_histogram!(
        "offboard_step_duration_seconds",
        "Time a pipeline step took, by step."
    );
}

pub fn request_finished(provider: &str, outcome: &str) {
    metrics::counter!("offboard_requests_total", "provider" => provider.to_owned(), "outcome" => outcome.to_owned())
        .increment(1);
}

pub fn provider_call(provider: &str, status: Option<u16>) {
    metrics::counter!("offboard_provider_calls_total", "provider" => provider.to_owned(), "status" => status.unwrap_or(0).to_string())
        .increment(1);
}

pub fn retry(provider: &str) {
    metrics::counter!("offboard_retries_total", "provider" => provider.to_owned()).increment(1);
}

pub fn rows(accepted: u64, rejected: u64) {
    metrics::counter!("offboard_rows_total", "result" => "accepted").increment(accepted);
    metrics::counter!("offboard_rows_total", "result" => "rejected").increment(rejected);
}

/// A run's write committed; `write` is one of a few fixed words.
pub fn run_write(write: &'static str) {
    metrics::counter!("offboard_run_writes_total", "write" => write).increment(1);
}

pub fn step(step: &str, seconds: f64) {
    metrics::histogram!("offboard_step_duration_seconds", "step" => step.to_owned())
        .record(seconds);
}

pub fn queue_depth(open: u64) {
    metrics::gauge!("offboard_queue_depth").set(open as f64);
}

/// A notification attempt to `channel` (a configured name): `sent`,
/// `failed` (tried again later) or `dead` (given up).
pub fn notification(channel: &str, result: &'static str) {
    metrics::counter!("offboard_notifications_total", "channel" => channel.to_owned(), "result" => result)
        .increment(1);
}
