//! Retry delays: the provider's own hints first (`Retry-After`, a
//! `retry_after` in the body, `X-RateLimit-Reset`), else exponential backoff
//! with full jitter.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::header::HeaderMap;
use serde::Deserialize;

/// `[retry]`, and a connection's policy after its overrides.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First backoff delay; doubled per attempt, with full jitter.
    pub base_ms: u64,
    /// Longest backoff delay.
    pub cap_ms: u64,
    /// Attempts per request before it is `dead`.
    pub max_attempts: u32,
    /// Waits up to this long happen in place; longer ones reschedule the job.
    pub inline_wait_max_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            base_ms: 500,
            cap_ms: 60_000,
            max_attempts: 10,
            inline_wait_max_ms: 5_000,
        }
    }
}

/// Longest provider hint we honour; anything beyond is treated as this.
const MAX_HINT: Duration = Duration::from_secs(3600);

/// `Retry-After`: integer seconds or an HTTP-date.
pub fn retry_after_header(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_HINT));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO).min(MAX_HINT))
}

/// `X-RateLimit-Reset`: epoch seconds at which the bucket refills.
pub fn rate_limit_reset(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get("x-ratelimit-reset")?.to_str().ok()?.trim();
    let epoch: i64 = value.parse().ok()?;
    let at = DateTime::from_timestamp(epoch, 0)?;
    Some((at - now).to_std().unwrap_or(Duration::ZERO).min(MAX_HINT))
}

/// When the provider reports its bucket nearly empty
/// (`X-RateLimit-Remaining` with `X-RateLimit-Reset`), how long the whole
/// connection should hold off: until the reset when nothing is left, else
/// the rest of the window shared among the remaining calls.
pub fn slow_down(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    const LOW: u64 = 2;
    let remaining: u64 = headers
        .get("x-ratelimit-remaining")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if remaining > LOW {
        return None;
    }
    let until_reset = rate_limit_reset(headers, now)?;
    Some(until_reset / (remaining as u32 + 1))
}

/// Full-jitter exponential backoff for the `attempt`-th retry (1-based).
pub fn backoff(config: &RetryConfig, attempt: u32) -> Duration {
    let exp = config
        .base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(32));
    let ceiling = exp.min(config.cap_ms);
    Duration::from_millis(rand::rng().random_range(0..=ceiling))
}

/// The delay before retrying, in the documented order of precedence.
pub fn delay(
    config: &RetryConfig,
    headers: &HeaderMap,
    body_hint: Option<Duration>,
    attempt: u32,
    now: DateTime<Utc>,
) -> Duration {
    retry_after_header(headers, now)
        .or(body_hint.map(|d| d.min(MAX_HINT)))
        .or_else(|| rate_limit_reset(headers, now))
        .unwrap_or_else(|| backoff(config, attempt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let now = DateTime::parse_from_rfc3339("2026-01-15T10:30:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            retry_after_header(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after_header(
                &headers(&[("retry-after", "Thu, 15 Jan 2026 10:30:12 GMT")]),
                now
            ),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            retry_after_header(&headers(&[("retry-after", "soon")]), now),
            None
        );
    }

    #[test]
    fn precedence_is_header_body_reset_backoff() {
        let now = DateTime::parse_from_rfc3339("2026-01-15T10:30:00Z")
            .unwrap()
            .to_utc();
        let cfg = RetryConfig::default();
        let reset = (now.timestamp() + 30).to_string();
        let both = headers(&[("retry-after", "2"), ("x-ratelimit-reset", &reset)]);
        assert_eq!(
            delay(&cfg, &both, Some(Duration::from_secs(9)), 1, now),
            Duration::from_secs(2)
        );
        let reset_only = headers(&[("x-ratelimit-reset", &reset)]);
        assert_eq!(
            delay(&cfg, &reset_only, Some(Duration::from_secs(9)), 1, now),
            Duration::from_secs(9)
        );
        assert_eq!(
            delay(&cfg, &reset_only, None, 1, now),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn bad_header_values_are_ignored() {
        let now = DateTime::parse_from_rfc3339("2026-01-15T10:30:00Z")
            .unwrap()
            .to_utc();
        for bad in [
            "-5",
            "1.5",
            "",
            "Thu, 99 Foo 2026",
            "9999999999999999999999",
        ] {
            assert_eq!(
                retry_after_header(&headers(&[("retry-after", bad)]), now),
                None,
                "{bad:?}"
            );
        }
        assert_eq!(
            rate_limit_reset(&headers(&[("x-ratelimit-reset", "soon")]), now),
            None
        );
        // A date in the past means "now".
        assert_eq!(
            retry_after_header(
                &headers(&[("retry-after", "Thu, 15 Jan 2026 10:29:00 GMT")]),
                now
            ),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn low_remaining_slows_down() {
        let now = DateTime::parse_from_rfc3339("2026-01-15T10:30:00Z")
            .unwrap()
            .to_utc();
        let reset = (now.timestamp() + 10).to_string();
        let empty = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(slow_down(&empty, now), Some(Duration::from_secs(10)));
        let one = headers(&[
            ("x-ratelimit-remaining", "1"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(slow_down(&one, now), Some(Duration::from_secs(5)));
        let plenty = headers(&[
            ("x-ratelimit-remaining", "50"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(slow_down(&plenty, now), None);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let cfg = RetryConfig {
            base_ms: 100,
            cap_ms: 1000,
            ..RetryConfig::default()
        };
        for attempt in 1..40 {
            assert!(backoff(&cfg, attempt) <= Duration::from_millis(1000));
        }
    }
}
