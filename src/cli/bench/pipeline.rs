//! `bench engine` (alias `pipeline`): users offboarded per second end to
//! end, next to bare apalis no-op jobs per second on the same backend in
//! the same run — the floor the pipeline is built on.

use super::fixtures::{
    BenchDatabase, Pacing, backend, cores, offboard_users, peak_rss_mb, start_sim,
};
use super::floor::noop_floor;
use super::{BenchArgs, Figure};
use crate::config::{DatabaseConfig, WorkerConfig};
use crate::store::Store;

pub(super) async fn engine(args: &BenchArgs) -> anyhow::Result<Figure> {
    let users = args.users.unwrap_or(20_000);
    let floor = floor_seconds(args, users).await?;
    let token = format!("bench-{:032x}", rand::random::<u128>());
    // One extra user: usr_000001 is the org's only owner and stays.
    let sim = start_sim(users + 1, &token, &[])?;
    let seconds = offboard_users(&sim, token, users, args, Pacing::default()).await?;
    let rate = users as f64 / seconds;
    let floor_rate = users as f64 / floor;
    Ok(Figure {
        scenario: "engine",
        backend: backend(args),
        workers: args.workers.max(1),
        users,
        concurrency: args.concurrency,
        seconds,
        value: rate,
        unit: "users/s",
        target: ">= 50% of bare apalis",
        detail: format!(
            "bare apalis no-op jobs: {floor_rate:.0} jobs/s ({floor:.2} s); offboard at {:.0}% of it",
            100.0 * rate / floor_rate
        ),
        peak_rss_mb: peak_rss_mb(),
        cores: cores(),
    })
}

/// Enqueue and drain of `jobs` no-op jobs on a scratch database of the
/// same backend, with the same concurrency.
async fn floor_seconds(args: &BenchArgs, jobs: usize) -> anyhow::Result<f64> {
    let database = BenchDatabase::create(args.postgres.as_deref()).await?;
    let config = DatabaseConfig {
        url: database.url(),
        ..DatabaseConfig::default()
    };
    let store = Store::open(&config).await?;
    let settings = WorkerConfig {
        concurrency: args.concurrency,
        ..WorkerConfig::default()
    };
    let elapsed = noop_floor(&store, &settings, jobs).await;
    store.close().await;
    database.drop().await?;
    Ok(elapsed?.as_secs_f64())
}
