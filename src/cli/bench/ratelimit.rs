//! `bench ratelimit`: wall time against a provider limit, as a ratio of
//! the minimum the limit allows.

use super::fixtures::{Pacing, backend, cores, offboard_users, peak_rss_mb, start_sim};
use super::{BenchArgs, Figure};

/// The provider's limit in the ratelimit scenario.
const LIMIT_RPS: f64 = 50.0;

pub(super) async fn ratelimit(args: &BenchArgs) -> anyhow::Result<Figure> {
    let users = args.users.unwrap_or(1_000);
    let token = format!("bench-{:032x}", rand::random::<u128>());
    let mut limiter = vec![
        "--rate-limit-rps",
        "50",
        "--rate-limit-burst",
        "20",
        "--latency-ms",
        "20",
    ];
    if args.foreign {
        limiter.extend([
            "--jitter-ms",
            "10",
            "--rate-limit-behind-latency",
            "--rate-limit-clock-rate",
            "0.975",
        ]);
    }
    let sim = start_sim(users + 1, &token, &limiter)?;
    // Configured at exactly the published limit, as a user would, with a
    // small burst so the provider's own bucket keeps slack for jitter.
    let pacing = Pacing {
        requests_per_second: Some(LIMIT_RPS),
        burst: Some(5),
    };
    let seconds = offboard_users(&sim, token, users, args, pacing).await?;
    let calls: Vec<serde_json::Value> = reqwest::get(format!("{}/_sim/calls", sim.url))
        .await?
        .error_for_status()?
        .json()
        .await?;
    let limited = calls.iter().filter(|c| c["status"] == 429).count();
    let minimum = calls.len() as f64 / LIMIT_RPS;
    Ok(Figure {
        scenario: if args.foreign {
            "ratelimit (foreign limiter)"
        } else {
            "ratelimit"
        },
        backend: backend(args),
        workers: args.workers.max(1),
        users,
        concurrency: args.concurrency,
        seconds,
        value: seconds / minimum,
        unit: "x minimum",
        target: "<= 1.05, 429s <= 1%",
        detail: format!(
            "{} calls, minimum {:.1} s, {} answered 429 ({:.2}%)",
            calls.len(),
            minimum,
            limited,
            100.0 * limited as f64 / calls.len().max(1) as f64
        ),
        peak_rss_mb: peak_rss_mb(),
        cores: cores(),
    })
}
