//! Decides, call by call, which fault (if any) a request meets.
//!
//! All mutable fault state (the seeded RNG, the token buckets, the remaining
//! `fail_next` counts) sits behind one short-lived lock, so decisions are
//! cheap and, for calls made one after another, replayable.

use axum::http::StatusCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

use super::FaultConfig;
use crate::sim::problem::Problem;
use crate::sim::request::decode_lossy;
use crate::sim::state::lock;

/// What to do with one call.
#[derive(Debug)]
pub(crate) enum Action {
    /// Let the provider answer.
    Pass,
    /// Answer this error instead.
    Answer(Problem),
    /// Hold the call without answering for this long.
    Hang(Duration),
    /// Close the connection without an HTTP answer.
    Reset,
}

/// The fault decision for one call: wait `delay`, then do `action`.
#[derive(Debug)]
pub(crate) struct Decision {
    pub delay: Duration,
    pub action: Action,
    /// The rate limit is still to be applied, once the delay has passed.
    pub limit_after_delay: bool,
}

/// A provider's token bucket as it stands, for vendors that announce it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Quota {
    /// Bucket size.
    pub limit: u32,
    /// Whole tokens left.
    pub remaining: u32,
    /// Seconds until the next whole token; 0 when the bucket is full.
    pub next_token_secs: f64,
}

/// The fault configuration and everything that evolves as calls arrive.
#[derive(Debug)]
pub(crate) struct FaultEngine {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: FaultConfig,
    rng: StdRng,
    buckets: HashMap<&'static str, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl FaultEngine {
    pub(crate) fn new(config: FaultConfig, seed: u64) -> Self {
        FaultEngine {
            inner: Mutex::new(Inner {
                config,
                rng: StdRng::seed_from_u64(seed),
                buckets: HashMap::new(),
            }),
        }
    }

    /// The current configuration, with `fail_next` counts as they stand now.
    pub(crate) fn config(&self) -> FaultConfig {
        lock(&self.inner).config.clone()
    }

    /// Swap the configuration; buckets start full again under the new limit.
    pub(crate) fn replace(&self, config: FaultConfig) {
        let mut inner = lock(&self.inner);
        inner.config = config;
        inner.buckets.clear();
    }

    /// How long an Auth0 membership removal stays invisible to reads.
    pub(crate) fn auth0_membership_delay(&self) -> Duration {
        Duration::from_millis(lock(&self.inner).config.auth0_membership_delay_ms)
    }

    /// Whether the Auth0 token is set up without `scope`.
    pub(crate) fn auth0_lacks_scope(&self, scope: &str) -> bool {
        lock(&self.inner)
            .config
            .auth0_missing_scopes
            .iter()
            .any(|s| s == scope)
    }

    /// The provider's bucket now, without taking a token; `None` without a limit.
    pub(crate) fn quota(&self, provider: &'static str) -> Option<Quota> {
        let inner = lock(&self.inner);
        let limit = inner.config.rate_limit.as_ref()?;
        let burst = f64::from(limit.burst.max(1));
        let rps = limit.requests_per_second;
        let tokens = inner.buckets.get(provider).map_or(burst, |bucket| {
            let elapsed = Instant::now().duration_since(bucket.refilled_at);
            (bucket.tokens + elapsed.as_secs_f64() * limit.clock_rate * rps).min(burst)
        });
        let whole = tokens.floor();
        Some(Quota {
            limit: limit.burst.max(1),
            // Saturating casts: the values are finite and within the burst.
            remaining: whole as u32,
            next_token_secs: if whole >= burst {
                0.0
            } else {
                (whole + 1.0 - tokens) / rps
            },
        })
    }

    /// Decide the fate of a call to `provider` at `path` (with its raw query).
    pub(crate) fn decide(
        &self,
        provider: &'static str,
        path: &str,
        query: Option<&str>,
    ) -> Decision {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        let config = &inner.config;
        let mut delay = config.latency_ms;
        if config.jitter_ms > 0 {
            delay += inner.rng.random_range(0..config.jitter_ms);
        }
        let delay = Duration::from_millis(delay);
        let behind_latency = config.rate_limit.as_ref().is_some_and(|l| l.behind_latency);
        let mut limit_after_delay = false;
        let action = match inner.take_fail_next(path, query) {
            Some(problem) => Action::Answer(problem),
            None if behind_latency => {
                limit_after_delay = true;
                inner.roll()
            }
            None => match inner.take_token(provider) {
                Some(wait) => Action::Answer(rate_limited(wait)),
                None => inner.roll(),
            },
        };
        Decision {
            delay,
            action,
            limit_after_delay,
        }
    }

    /// The rate limit of a call that has reached the limiter behind its
    /// delay: the 429 to answer, if its bucket is empty.
    pub(crate) fn limit_now(&self, provider: &'static str) -> Option<Problem> {
        lock(&self.inner).take_token(provider).map(rate_limited)
    }
}

impl Inner {
    fn take_fail_next(&mut self, path: &str, query: Option<&str>) -> Option<Problem> {
        if self.config.fail_next.is_empty() {
            return None;
        }
        let named = ids_in(path, query);
        let pos = self
            .config
            .fail_next
            .iter()
            .position(|f| f.count > 0 && named.contains(&f.user_id))?;
        let entry = &mut self.config.fail_next[pos];
        entry.count -= 1;
        let status =
            StatusCode::from_u16(entry.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let hint = entry.retry_after_secs.map(|s| (s, entry.retry_hint));
        if entry.count == 0 {
            self.config.fail_next.remove(pos);
        }
        let problem = Problem::for_status(status);
        Some(match hint {
            Some((secs, form)) => problem.retry_after_as(secs, form),
            None => problem,
        })
    }

    /// Take a token; when none is left, say how many whole seconds until one is.
    fn take_token(&mut self, provider: &'static str) -> Option<u64> {
        let limit = self.config.rate_limit.as_ref()?;
        let burst = f64::from(limit.burst.max(1));
        let rps = limit.requests_per_second;
        let now = Instant::now();
        let bucket = self.buckets.entry(provider).or_insert(Bucket {
            tokens: burst,
            refilled_at: now,
        });
        let elapsed = now.duration_since(bucket.refilled_at).as_secs_f64() * limit.clock_rate;
        bucket.tokens = (bucket.tokens + elapsed * rps).min(burst);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return None;
        }
        // Casting saturates, so a tiny rate cannot overflow the header.
        Some(((1.0 - bucket.tokens) / rps).ceil().max(1.0) as u64)
    }

    /// One draw decides among reset, hang and 5xx, so the rates do not interact.
    fn roll(&mut self) -> Action {
        let c = &self.config;
        let total = c.reset_rate + c.timeout_rate + c.error_rate;
        if total <= 0.0 {
            return Action::Pass;
        }
        let draw: f64 = self.rng.random();
        if draw < c.reset_rate {
            Action::Reset
        } else if draw < c.reset_rate + c.timeout_rate {
            Action::Hang(Duration::from_millis(c.hang_ms))
        } else if draw < total {
            let status = [
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
            ][self.rng.random_range(0..3)];
            Action::Answer(Problem::for_status(status))
        } else {
            Action::Pass
        }
    }
}

fn rate_limited(wait: u64) -> Problem {
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMIT_EXCEEDED",
        format!("Rate limit exceeded. Retry after {wait} second(s)."),
    )
    .retry_after(wait)
}

/// Every id a call names: its decoded path segments and query values.
fn ids_in(path: &str, query: Option<&str>) -> Vec<String> {
    let segments = path.split('/').filter(|s| !s.is_empty());
    let values = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('=').map(|(_, v)| v));
    segments.chain(values).map(decode_lossy).collect()
}
