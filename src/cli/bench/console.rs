//! `bench console`: the server's time to render the console's page of a
//! 100,000-request batch (the batch's status, events and first page of
//! requests), as a browser is sent it.

use std::time::Instant;

use anyhow::anyhow;

use super::fixtures::{BenchEngine, Pacing, backend, cores, leavers_csv, peak_rss_mb};
use super::{BenchArgs, Figure};
use crate::cli::run::{RunOptions, intake};
use crate::console::{ConsoleUser, render_batch_page};
use crate::domain::{Actor, Role};
use crate::identity::Identity;

/// Renders timed, after one to warm the caches.
const RENDERS: usize = 21;

pub(super) async fn console(args: &BenchArgs) -> anyhow::Result<Figure> {
    let requests = args.users.unwrap_or(100_000);
    // Nothing is run: the connection points at a closed port.
    let bench = BenchEngine::start("http://127.0.0.1:9", "unused", args, Pacing::default()).await?;
    let csv = leavers_csv(bench.dir.path(), requests, false)?;
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
    let user = ConsoleUser {
        identity: Identity {
            actor: Actor::named("bench"),
            role: Role::Approver,
        },
        csrf: "bench".into(),
    };
    let mut times = Vec::with_capacity(RENDERS);
    let mut bytes = 0;
    for _ in 0..=RENDERS {
        let started = Instant::now();
        let page = render_batch_page(&bench.engine, &user, &summary.batch_id, None, None)
            .await
            .map_err(|e| anyhow!("{}: {}", e.status, e.message))?;
        let body = axum::body::to_bytes(page.into_body(), usize::MAX).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        bytes = body.len();
    }
    times.remove(0);
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    bench.finish().await?;
    Ok(Figure {
        scenario: "console",
        backend: backend(args),
        workers: 1,
        users: requests,
        concurrency: args.concurrency,
        seconds: times.iter().sum::<f64>() / 1000.0,
        value: median,
        unit: "ms per batch page (median)",
        target: "< 100 ms",
        detail: format!(
            "{RENDERS} renders of a {requests}-request batch's page ({bytes} bytes): min {:.1} ms, max {:.1} ms",
            times[0],
            times[times.len() - 1]
        ),
        peak_rss_mb: peak_rss_mb(),
        cores: cores(),
    })
}
