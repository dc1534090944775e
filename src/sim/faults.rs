//! Fault injection: the knobs that make a simulated provider slow, flaky,
//! rate-limited or scripted to fail, so clients can be tested against the
//! failures real providers produce.
//!
//! Every knob defaults to off. Random choices come from an RNG seeded with
//! `SimConfig::seed`, so a failing run can be replayed.

mod engine;
mod layer;

use serde::{Deserialize, Serialize};

pub use crate::sim::problem::RetryHint;

pub(crate) use engine::{FaultEngine, Quota};
pub(crate) use layer::FaultLayer;

/// What can go wrong, set at start and replaceable at run time (`POST /_sim/faults`).
///
/// For each call the order is: a matching `fail_next` entry, then the rate
/// limit (on arrival, or behind the delay with `rate_limit.behind_latency`),
/// then one random draw that picks a reset, a hang or a 5xx (checked in that
/// order, with these probabilities); the delay (`latency_ms` + jitter) comes
/// before any answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct FaultConfig {
    /// Fixed delay before every answer.
    pub latency_ms: u64,
    /// Extra delay, uniform in `0..jitter_ms`.
    pub jitter_ms: u64,
    /// Share of calls (0..=1) answered 500, 502 or 503.
    pub error_rate: f64,
    /// Share of calls (0..=1) held unanswered for `hang_ms`, so clients time out.
    pub timeout_rate: f64,
    /// How long a timed-out call is held before a 504; shutdown ends it early.
    pub hang_ms: u64,
    /// Share of calls (0..=1) whose connection is reset instead of answered.
    pub reset_rate: f64,
    /// A token bucket per provider; over it, 429 announced the vendor's way
    /// (`Retry-After`, or Auth0's `X-RateLimit-*` headers).
    pub rate_limit: Option<RateLimit>,
    /// Scripted failures for calls naming a given user.
    pub fail_next: Vec<FailNext>,
    /// How long an Auth0 organization-membership removal stays invisible to
    /// reads; Auth0 documents that removals apply within seconds, not at once.
    pub auth0_membership_delay_ms: u64,
    /// Scopes the Auth0 Management API token lacks: a call that needs one
    /// answers 403 `insufficient_scope` naming it.
    pub auth0_missing_scopes: Vec<String>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            latency_ms: 0,
            jitter_ms: 0,
            error_rate: 0.0,
            timeout_rate: 0.0,
            hang_ms: 60_000,
            reset_rate: 0.0,
            rate_limit: None,
            fail_next: Vec::new(),
            auth0_membership_delay_ms: 0,
            auth0_missing_scopes: Vec::new(),
        }
    }
}

/// A token bucket: `burst` calls at once, refilled at `requests_per_second`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct RateLimit {
    /// Sustained rate; must be positive.
    pub requests_per_second: f64,
    /// Bucket size; at least 1.
    pub burst: u32,
    /// How fast the limiter's clock runs against real time: 1 shares the
    /// client's clock, 0.99 refills 1% slower than the client counts. A
    /// vendor's limiter is somebody else's code on somebody else's clock.
    pub clock_rate: f64,
    /// Take the token when the call reaches the limiter behind the latency
    /// and its jitter, not when it arrives: calls sent evenly then reach the
    /// bucket unevenly, as they do behind a vendor's load balancer.
    pub behind_latency: bool,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            requests_per_second: 1.0,
            burst: 1,
            clock_rate: 1.0,
            behind_latency: false,
        }
    }
}

/// "The next `count` calls naming `user_id` answer `status`."
///
/// A call names the user when one of its path segments, or one of its query
/// values, equals `user_id` after percent-decoding.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct FailNext {
    /// The user id to watch for.
    pub user_id: String,
    /// How many calls fail before the user's calls succeed again.
    pub count: u32,
    /// The status to answer (400..=599), in the provider's error envelope.
    pub status: u16,
    /// Seconds the answer asks the client to wait (a 429 without one says 1).
    pub retry_after_secs: Option<u64>,
    /// The header form of that wait.
    pub retry_hint: RetryHint,
}

impl Default for FailNext {
    fn default() -> Self {
        FailNext {
            user_id: String::new(),
            count: 1,
            status: 500,
            retry_after_secs: None,
            retry_hint: RetryHint::Seconds,
        }
    }
}

/// Rates above one would silently mean "always"; a day-long delay is a typo.
const MAX_DELAY_MS: u64 = 86_400_000;

impl FaultConfig {
    /// Reject settings the engine cannot honour, with a message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("timeout_rate", self.timeout_rate),
            ("reset_rate", self.reset_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        for (name, ms) in [
            ("latency_ms", self.latency_ms),
            ("jitter_ms", self.jitter_ms),
            ("hang_ms", self.hang_ms),
            ("auth0_membership_delay_ms", self.auth0_membership_delay_ms),
        ] {
            if ms > MAX_DELAY_MS {
                return Err(format!("{name} must be at most {MAX_DELAY_MS}, got {ms}"));
            }
        }
        if let Some(limit) = &self.rate_limit {
            let rps = limit.requests_per_second;
            if !(rps.is_finite() && rps > 0.0) {
                return Err(format!(
                    "rate_limit.requests_per_second must be positive, got {rps}"
                ));
            }
            if limit.burst == 0 {
                return Err("rate_limit.burst must be at least 1".to_owned());
            }
            let clock = limit.clock_rate;
            if !(clock.is_finite() && clock > 0.0 && clock <= 10.0) {
                return Err(format!(
                    "rate_limit.clock_rate must be above 0 and at most 10, got {clock}"
                ));
            }
        }
        if let Some(bad) = self
            .fail_next
            .iter()
            .find(|f| !(400..=599).contains(&f.status))
        {
            return Err(format!(
                "fail_next status for {} must be 400..=599, got {}",
                bad.user_id, bad.status
            ));
        }
        Ok(())
    }
}
