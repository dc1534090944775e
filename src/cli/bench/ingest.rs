//! `bench ingest`: a generated CSV accepted — validated, deduplicated,
//! stored and enqueued — in rows per second, with the process's peak RSS.

use std::time::Instant;

use anyhow::anyhow;

use super::fixtures::{BenchEngine, Pacing, backend, cores, leavers_csv, peak_rss_mb};
use super::{BenchArgs, Figure};
use crate::cli::run::{RunOptions, intake};

pub(super) async fn ingest(args: &BenchArgs) -> anyhow::Result<Figure> {
    let rows = args.users.unwrap_or(1_000_000);
    // Intake calls no provider: the connection points at a closed port.
    let bench = BenchEngine::start("http://127.0.0.1:9", "unused", args, Pacing::default()).await?;
    let csv = leavers_csv(bench.dir.path(), rows, args.shuffled)?;
    let started = Instant::now();
    let summary = intake(
        &bench.engine,
        std::fs::File::open(&csv)?,
        &RunOptions {
            yes: true,
            ..RunOptions::default()
        },
    )
    .await
    .map_err(|f| f.error)?;
    let seconds = started.elapsed().as_secs_f64();
    let queued = bench.engine.store().open_requests().await?;
    bench.finish().await?;
    if summary.accepted_rows != rows as u64 || queued != rows as u64 {
        return Err(anyhow!(
            "{} of {rows} rows accepted, {queued} requests open",
            summary.accepted_rows
        ));
    }
    Ok(Figure {
        scenario: "ingest",
        backend: backend(args),
        workers: 1,
        users: rows,
        concurrency: args.concurrency,
        seconds,
        value: rows as f64 / seconds,
        unit: "rows/s",
        target: ">= 100,000 rows/s, peak RSS <= 100 MB",
        detail: format!(
            "{rows} rows accepted ({}), {} requests stored and enqueued",
            if args.shuffled {
                "scattered"
            } else {
                "sorted by user"
            },
            summary.new_requests
        ),
        peak_rss_mb: peak_rss_mb(),
        cores: cores(),
    })
}
