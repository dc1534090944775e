//! `offboard retry BATCH [--outcome dead|failed|needs_attention]…`: reopen
//! the batch's requests that ended that way and run them again (here, or by
//! a running `serve` with `--no-wait`).

use std::io::IsTerminal;
use std::path::Path;

use anyhow::anyhow;
use clap::{Args, ValueEnum};

use super::run::process_batch;
use super::{Failure, exit, setup};
use crate::domain::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RetryOutcome {
    Dead,
    Failed,
    /// Also spelt as the outcome is in reports: `needs_attention`.
    #[value(alias = "needs_attention")]
    NeedsAttention,
}

impl From<RetryOutcome> for Outcome {
    fn from(o: RetryOutcome) -> Outcome {
        match o {
            RetryOutcome::Dead => Outcome::Dead,
            RetryOutcome::Failed => Outcome::Failed,
            RetryOutcome::NeedsAttention => Outcome::NeedsAttention,
        }
    }
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    pub batch: String,
    /// Which outcomes to run again (repeatable; default: dead).
    #[arg(long, value_enum)]
    pub outcome: Vec<RetryOutcome>,
    /// Only re-queue; a running `offboard serve` picks the requests up.
    #[arg(long)]
    pub no_wait: bool,
}

pub async fn retry(config: Option<&Path>, args: RetryArgs) -> Result<u8, Failure> {
    let engine = setup::engine(config).await?;
    let store = engine.store();
    let batch = store
        .batch(&args.batch)
        .await
        .map_err(Failure::other)?
        .ok_or_else(|| Failure::usage(anyhow!("no batch {}", args.batch)))?;
    let outcomes: Vec<Outcome> = if args.outcome.is_empty() {
        vec![Outcome::Dead]
    } else {
        args.outcome.iter().map(|o| (*o).into()).collect()
    };
    let jobs = store
        .reopen(&batch.id, &outcomes)
        .await
        .map_err(Failure::other)?;
    engine
        .queue()
        .enqueue(store, &jobs)
        .await
        .map_err(Failure::other)?;
    eprintln!("re-queued {} request(s) of batch {}", jobs.len(), batch.id);
    if args.no_wait {
        return Ok(exit::OK);
    }
    let counts = process_batch(&engine, &batch.id, std::io::stderr().is_terminal()).await?;
    println!("batch {}: {}", batch.id, counts.summary());
    Ok(exit::for_counts(&counts))
}
