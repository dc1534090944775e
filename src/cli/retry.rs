//! `offboard retry BATCH [--outcome dead|failed|needs_attention]…`: reopen
//! the batch's requests that ended that way and run them again (here, or by
//! a running `serve` with `--no-wait`).

use std::io::IsTerminal;
use std::path::Path;

use anyhow::anyhow;
use clap::{Args, ValueEnum};

use super::rails::rail_failure;
use super::run::process_batch;
use super::{Failure, exit, setup};
use crate::domain::Outcome;
use crate::pipeline::rails;

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
    /// Reopen a CSV batch older than [safety] retry_max_age anyway.
    #[arg(long)]
    pub force: bool,
    /// Only re-queue; a running `offboard serve` picks the requests up.
    #[arg(long)]
    pub no_wait: bool,
    /// Folder of job specs, to re-read a reconciliation's roster (default:
    /// [jobs] dir).
    #[arg(long, value_name = "DIR")]
    pub jobs: Option<std::path::PathBuf>,
}

pub(super) async fn retry(config: Option<&Path>, args: RetryArgs) -> Result<u8, Failure> {
    let engine = setup::engine(config).await?;
    let outcomes: Vec<Outcome> = if args.outcome.is_empty() {
        vec![Outcome::Dead]
    } else {
        args.outcome.iter().map(|o| (*o).into()).collect()
    };
    let keep = crate::jobs::reconcile::still_wanted(&engine, &args.batch, args.jobs.as_deref())
        .await
        .map_err(|e| Failure::other(anyhow!(e)))?;
    let retried = rails::retry(
        &engine,
        &args.batch,
        &outcomes,
        args.force,
        &keep,
        &setup::actor(),
    )
    .await
    .map_err(rail_failure)?;
    eprintln!(
        "re-queued {} request(s) of batch {}",
        retried.requeued, retried.batch_id
    );
    if retried.back_in_roster > 0 {
        eprintln!(
            "{} request(s) not run again: back in the roster",
            retried.back_in_roster
        );
    }
    if let Some(halt) = &retried.halted {
        eprintln!("batch {} is halted: {halt}", retried.batch_id);
        return Ok(exit::NEEDS_ATTENTION);
    }
    if args.no_wait {
        return Ok(exit::OK);
    }
    if retried.held {
        // A preview is planned again, here, and waits for its release.
        process_batch(&engine, &retried.batch_id, std::io::stderr().is_terminal()).await?;
        eprintln!(
            "batch {} is held for review again: see `offboard report {}`, then `offboard approve {}`",
            retried.batch_id, retried.batch_id, retried.batch_id
        );
        return Ok(exit::OK);
    }
    let counts = process_batch(&engine, &retried.batch_id, std::io::stderr().is_terminal()).await?;
    println!("batch {}: {}", retried.batch_id, counts.summary());
    Ok(exit::for_counts(&counts))
}
