//! Politeness toward one provider connection, shared by every worker of the
//! process: a token bucket (`requests_per_second`, `burst`), a cap on calls
//! in flight (`max_concurrency`), a pause that every caller honours once the
//! provider says to slow down (a 429, or `X-RateLimit-Remaining` near zero),
//! and a breaker that stops a batch's calls after repeated 401/403 answers.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::connectors::Connection;

/// The share of `requests_per_second` left unused: a vendor's limiter runs
/// on its own clock and sees our calls behind its network, so pacing at
/// exactly its published rate drains its burst and draws 429s (BENCHMARKS.md,
/// "ratelimit against a foreign limiter").
pub(super) const PACING_MARGIN: f64 = 0.03;

/// The rate a connection is paced at for a configured `requests_per_second`.
pub(super) fn paced_rate(requests_per_second: f64) -> f64 {
    requests_per_second * (1.0 - PACING_MARGIN)
}

/// Credential rejections in a row that stop a batch's calls.
pub const AUTH_FAILURES_TO_TRIP: u32 = 3;

/// Per-connection pacing state.
#[derive(Debug)]
pub struct Pacer {
    bucket: Option<DefaultDirectRateLimiter>,
    in_flight: Option<Semaphore>,
    paused_until: Mutex<Option<Instant>>,
    auth_failures: AtomicU32,
    tripped_batches: Mutex<HashSet<String>>,
}

impl Pacer {
    pub fn new(config: &Connection) -> Self {
        let bucket = config.requests_per_second.map(|rps| {
            let burst =
                NonZeroU32::new(config.burst.unwrap_or(1).max(1)).unwrap_or(NonZeroU32::MIN);
            let period = Duration::from_secs_f64(1.0 / paced_rate(rps));
            let quota = Quota::with_period(period)
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                .allow_burst(burst);
            RateLimiter::direct(quota)
        });
        Self {
            bucket,
            in_flight: config.max_concurrency.map(Semaphore::new),
            paused_until: Mutex::new(None),
            auth_failures: AtomicU32::new(0),
            tripped_batches: Mutex::new(HashSet::new()),
        }
    }

    /// How long the connection stays paused from now, if at all.
    pub fn pause_remaining(&self) -> Option<Duration> {
        let until = (*lock(&self.paused_until))?;
        until.checked_duration_since(Instant::now())
    }

    /// Pauses every caller until `wait` from now (never shortens a pause).
    pub fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut current = lock(&self.paused_until);
        if current.is_none_or(|c| c < until) {
            *current = Some(until);
        }
    }

    /// Waits for the pause, a token and an in-flight slot; the returned
    /// permit is held for the duration of the call.
    pub async fn admit(&self) -> Option<SemaphorePermit<'_>> {
        if let Some(wait) = self.pause_remaining() {
            tokio::time::sleep(wait).await;
        }
        if let Some(bucket) = &self.bucket {
            bucket.until_ready().await;
        }
        match &self.in_flight {
            Some(sem) => sem.acquire().await.ok(),
            None => None,
        }
    }

    /// Counts a credential rejection; true when the batch should stop.
    pub fn record_auth_failure(&self, batch: Option<&str>) -> bool {
        let n = self.auth_failures.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= AUTH_FAILURES_TO_TRIP {
            if let Some(b) = batch {
                lock(&self.tripped_batches).insert(b.to_owned());
            }
            return true;
        }
        false
    }

    /// Any answer other than a credential rejection ends the streak.
    pub fn record_auth_ok(&self) {
        self.auth_failures.store(0, Ordering::SeqCst);
    }

    pub fn is_tripped(&self, batch: Option<&str>) -> bool {
        batch.is_some_and(|b| lock(&self.tripped_batches).contains(b))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Connection {
        Connection::new("http://127.0.0.1:1", "T")
    }

    #[test]
    fn pacing_keeps_a_margin_under_the_configured_rate() {
        assert!((paced_rate(50.0) - 48.5).abs() < 1e-9);
        assert!(paced_rate(1.0) < 1.0);
    }

    #[test]
    fn pause_only_grows() {
        let p = Pacer::new(&config());
        assert!(p.pause_remaining().is_none());
        p.pause_for(Duration::from_secs(10));
        p.pause_for(Duration::from_secs(1));
        assert!(p.pause_remaining().unwrap() > Duration::from_secs(5));
    }

    #[test]
    fn auth_breaker_trips_per_batch_after_a_streak() {
        let p = Pacer::new(&config());
        assert!(!p.record_auth_failure(Some("b1")));
        p.record_auth_ok();
        assert!(!p.record_auth_failure(Some("b1")));
        assert!(!p.record_auth_failure(Some("b1")));
        assert!(p.record_auth_failure(Some("b1")));
        assert!(p.is_tripped(Some("b1")));
        assert!(!p.is_tripped(Some("b2")));
    }
}
