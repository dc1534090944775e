//! `bench baseline`: what an admin's script does — one user after another,
//! one call after another, no queue, no retries — against offboard on the
//! same users, with 20 ms of provider latency. The figure is how many
//! times faster offboard finishes.

use super::fixtures::{Pacing, backend, cores, offboard_users, peak_rss_mb, start_sim};
use super::script::offboard_by_script;
use super::{BenchArgs, Figure};

const LATENCY: [&str; 2] = ["--latency-ms", "20"];

pub(super) async fn baseline(args: &BenchArgs) -> anyhow::Result<Figure> {
    let users = args.users.unwrap_or(1_000);
    let token = format!("bench-{:032x}", rand::random::<u128>());
    let (calls, script_seconds) = {
        let sim = start_sim(users + 1, &token, &LATENCY)?;
        offboard_by_script(&sim.url, &token, users, 1).await?
    };
    let sim = start_sim(users + 1, &token, &LATENCY)?;
    let seconds = offboard_users(&sim, token, users, args, Pacing::default()).await?;
    Ok(Figure {
        scenario: "baseline",
        backend: backend(args),
        workers: args.workers.max(1),
        users,
        concurrency: args.concurrency,
        seconds,
        value: script_seconds / seconds,
        unit: "x a sequential script",
        target: ">= 20x",
        detail: format!("script {script_seconds:.1} s for {calls} calls; offboard {seconds:.1} s"),
        peak_rss_mb: peak_rss_mb(),
        cores: cores(),
    })
}
