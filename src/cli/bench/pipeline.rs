//! `bench engine` (alias `pipeline`): users offboarded per second end to
//! end, next to bare apalis no-op jobs per second on the same backend in
//! the same run, and the same HTTP calls made by a bare concurrent loop:
//! the two floors the pipeline is built on, composed.

use super::fixtures::{
    BenchDatabase, Pacing, RoundTrips, backend, cores, offboard_users_counted, peak_rss_mb,
    start_sim,
};
use super::floor::noop_floor;
use super::script::offboard_by_script;
use super::{BenchArgs, Figure};
use crate::config::{DatabaseConfig, WorkerConfig};

pub(super) async fn engine(args: &BenchArgs) -> anyhow::Result<Figure> {
    let users = args.users.unwrap_or(20_000);
    let (floor, floor_trips) = floor_seconds(args, users).await?;
    let token = format!("bench-{:032x}", rand::random::<u128>());
    // One extra user: usr_000001 is the org's only owner and stays.
    let (calls, http_seconds) = {
        let sim = start_sim(users + 1, &token, &[])?;
        let concurrency = args.concurrency * args.workers.max(1);
        offboard_by_script(&sim.url, &token, users, concurrency).await?
    };
    let sim = start_sim(users + 1, &token, &[])?;
    let (seconds, trips) =
        offboard_users_counted(&sim, token, users, args, Pacing::default()).await?;
    let rate = users as f64 / seconds;
    let floor_rate = users as f64 / floor;
    let http_rate = users as f64 / http_seconds;
    let composed = composed_floor(floor_rate, http_rate);
    Ok(Figure {
        scenario: "engine",
        backend: backend(args),
        workers: args.workers.max(1),
        users,
        concurrency: args.concurrency,
        seconds,
        value: rate,
        unit: "users/s",
        target: ">= 80% of the composed floor",
        detail: format!(
            "bare apalis no-op jobs: {floor_rate:.0} jobs/s ({floor:.2} s); HTTP floor (the same calls, {:.1} a user, in a bare loop): {http_rate:.0} users/s ({http_seconds:.2} s); composed floor 1/(1/apalis + 1/http): {composed:.0} users/s; offboard at {:.0}% of the composed floor, {:.0}% of bare apalis",
            calls as f64 / users.max(1) as f64,
            100.0 * rate / composed,
            100.0 * rate / floor_rate
        ) + &format!(
            "; its CSV report streamed at {:.0} rows/s",
            trips.report_rows_per_s
        ) + &write_waits(args, users, seconds, trips)
            + &round_trips(args, users, trips, floor_trips),
        peak_rss_mb: peak_rss_mb(),
        cores: cores(),
    })
}

/// What a user costs at best when the queue and the HTTP calls each take
/// their own bare time, one after the other: `1 / (1/apalis + 1/http)`.
fn composed_floor(apalis_per_s: f64, http_per_s: f64) -> f64 {
    1.0 / (1.0 / apalis_per_s + 1.0 / http_per_s)
}

/// The commits a user's run waited for before its next call, and the
/// share of a user's time in flight (`concurrency × seconds / users`)
/// spent waiting for them: what neither floor pays.
fn write_waits(args: &BenchArgs, users: usize, seconds: f64, run: RoundTrips) -> String {
    let w = run.writer;
    let mean_ms = 1000.0 * w.waited.as_secs_f64() / w.writes.max(1) as f64;
    let busy = format!(
        "the group writer was committing {:.0}% of the run",
        100.0 * w.busy.as_secs_f64() / seconds.max(f64::MIN_POSITIVE)
    );
    if args.workers > 1 {
        // The other processes' runs are not counted here.
        return format!("; this process's runs waited {mean_ms:.1} ms a commit; {busy}");
    }
    let users = users.max(1) as f64;
    let in_flight = args.concurrency as f64 * seconds / users;
    let waited = w.waited.as_secs_f64() / users;
    format!(
        "; a user's run waited for {:.1} commits, {mean_ms:.1} ms each: {:.0}% of its {:.1} ms in flight; {busy}",
        w.writes as f64 / users,
        100.0 * waited / in_flight.max(f64::MIN_POSITIVE),
        1000.0 * in_flight
    )
}

/// On PostgreSQL, statements and transactions per user next to bare
/// apalis's per job: they decide how many users one database serves.
fn round_trips(args: &BenchArgs, users: usize, run: RoundTrips, floor: RoundTrips) -> String {
    if args.postgres.is_none() {
        return String::new();
    }
    let per = |n: u64| n as f64 / users.max(1) as f64;
    let processes = if args.workers > 1 {
        " (this process only; transactions are every process's)"
    } else {
        ""
    };
    format!(
        "; per user: {:.2} statements on our tables + {:.2} on apalis's{processes}, {:.2} transactions; bare apalis per job: {:.2} statements, {:.2} transactions",
        per(run.statements_ours),
        per(run.statements_apalis),
        per(run.transactions.unwrap_or(0)),
        per(floor.statements_ours + floor.statements_apalis),
        per(floor.transactions.unwrap_or(0)),
    )
}

/// Enqueue and drain of `jobs` no-op jobs on a scratch database of the
/// same backend, with the same concurrency.
async fn floor_seconds(args: &BenchArgs, jobs: usize) -> anyhow::Result<(f64, RoundTrips)> {
    let database = BenchDatabase::create(args.postgres.as_deref()).await?;
    let config = DatabaseConfig {
        url: database.url(),
        ..DatabaseConfig::default()
    };
    let (store, queue) = crate::database::open(&config).await?;
    let settings = WorkerConfig {
        concurrency: args.concurrency,
        ..WorkerConfig::default()
    };
    let counted = RoundTrips::start(&database).await?;
    let elapsed = noop_floor(&queue, &settings, jobs).await;
    crate::database::close(&store, &queue).await;
    let counted = counted.since(database.transactions().await?);
    database.drop().await?;
    Ok((elapsed?.as_secs_f64(), counted))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_composed_floor_adds_the_times_of_both_floors() {
        // 10,000 jobs/s and 10,000 users/s of calls: 0.1 ms + 0.1 ms a user.
        assert!((super::composed_floor(10_000.0, 10_000.0) - 5_000.0).abs() < 1e-6);
        assert!(super::composed_floor(1e9, 4_000.0) < 4_000.0);
    }
}
