//! `offboard bench`: end-to-end figures against the simulator, which runs as
//! a separate process so that peak memory is offboard's own. One module per
//! scenario; `fixtures` holds what they share.

mod baseline;
mod console;
mod fixtures;
mod floor;
mod ingest;
mod pipeline;
mod ratelimit;
mod reconcile;
mod script;

use clap::{Args, ValueEnum};

use super::{Failure, exit};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Scenario {
    /// Users offboarded per second end to end, next to bare apalis no-op
    /// jobs per second on the same backend (alias: pipeline).
    #[value(alias = "pipeline")]
    Engine,
    /// Wall time against a provider limit of 50 req/s (burst 20, 20 ms
    /// latency), as a ratio of calls ÷ limit, and the share of 429s.
    Ratelimit,
    /// A generated CSV accepted (validated, deduplicated, enqueued): rows/s.
    Ingest,
    /// A simulated tenant against a roster with 1% drift: seconds to a
    /// saved plan.
    Reconcile,
    /// A sequential script of the same calls vs offboard, 20 ms latency.
    Baseline,
    /// The server's time to render the web console's page of a
    /// 100,000-request batch.
    Console,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Size: leavers (engine 20,000; ratelimit and baseline 1,000), CSV rows
    /// (ingest 1,000,000), tenant members (reconcile 1,000,000) or a
    /// batch's requests (console 100,000).
    #[arg(long)]
    pub users: Option<usize>,
    /// Worker concurrency.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Print one JSON object instead of a table row.
    #[arg(long)]
    pub json: bool,
    /// Run on this PostgreSQL server instead of a temporary SQLite file: the
    /// bench creates a scratch database there and drops it afterwards.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// Worker processes sharing the queue: this one plus N-1 `offboard
    /// serve` processes started for the run.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// ingest: write the CSV's rows scattered over the user ids instead of
    /// sorted by them, as a roster in no particular order would come.
    #[arg(long)]
    pub shuffled: bool,
    /// ratelimit: the simulator's limiter runs on its own clock (2.5% slow)
    /// and takes its token behind 20 ms of latency with 0–10 ms of jitter,
    /// as a vendor's limiter does, instead of sharing ours.
    #[arg(long)]
    pub foreign: bool,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct Figure {
    pub(super) scenario: &'static str,
    /// `sqlite` or `postgres`.
    pub(super) backend: &'static str,
    /// Worker processes.
    pub(super) workers: usize,
    pub(super) users: usize,
    pub(super) concurrency: usize,
    pub(super) seconds: f64,
    pub(super) value: f64,
    pub(super) unit: &'static str,
    pub(super) target: &'static str,
    /// Anything else the scenario measured.
    pub(super) detail: String,
    pub(super) peak_rss_mb: f64,
    pub(super) cores: usize,
}

/// Whether the run counts the SQL statements it sends (`engine` on
/// PostgreSQL), which the log subscriber must know before it is installed.
pub(super) fn counts_statements(args: &BenchArgs) -> bool {
    matches!(args.scenario, Scenario::Engine) && args.postgres.is_some()
}

/// Runs one scenario and prints its figure.
pub(super) async fn bench(args: BenchArgs) -> Result<u8, Failure> {
    let figure = match args.scenario {
        Scenario::Engine => pipeline::engine(&args).await,
        Scenario::Ratelimit => ratelimit::ratelimit(&args).await,
        Scenario::Ingest => ingest::ingest(&args).await,
        Scenario::Reconcile => reconcile::reconcile(&args).await,
        Scenario::Baseline => baseline::baseline(&args).await,
        Scenario::Console => console::console(&args).await,
    }
    .map_err(Failure::other)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&figure).map_err(Failure::other)?
        );
    } else {
        println!(
            "| scenario | backend | workers | users | concurrency | seconds | figure | target | detail | peak RSS | cores |\n|---|---|---|---|---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {:.2} | {:.3} {} | {} | {} | {:.0} MiB | {} |",
            figure.scenario,
            figure.backend,
            figure.workers,
            figure.users,
            figure.concurrency,
            figure.seconds,
            figure.value,
            figure.unit,
            figure.target,
            figure.detail,
            figure.peak_rss_mb,
            figure.cores
        );
    }
    Ok(exit::OK)
}
