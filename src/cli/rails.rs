//! `offboard approve BATCH [--only …]` and `offboard cancel BATCH|REQUEST`.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::anyhow;
use clap::Args;

use super::run::process_batch;
use super::{Failure, exit, setup};
use crate::pipeline::rails::{self, RailError};

#[derive(Debug, Args)]
pub struct ApproveArgs {
    pub batch: String,
    /// Apply only these users' requests (comma-separated); the rest end
    /// `cancelled`.
    #[arg(long, value_delimiter = ',', value_name = "USER,…")]
    pub only: Option<Vec<String>>,
    /// Only release the batch to the queue; a running `serve` processes it.
    #[arg(long)]
    pub no_wait: bool,
    /// Folder of job specs, to re-read a reconciliation's roster (default:
    /// [jobs] dir).
    #[arg(long, value_name = "DIR")]
    pub jobs: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// A batch id or a request id.
    pub id: String,
}

pub(super) fn rail_failure(e: RailError) -> Failure {
    match e {
        RailError::Store(_) | RailError::Queue(_) => Failure::other(e),
        _ => Failure::usage(e),
    }
}

pub(super) async fn approve(config: Option<&Path>, args: ApproveArgs) -> Result<u8, Failure> {
    let engine = setup::engine(config).await?;
    let keep = crate::jobs::reconcile::still_wanted(&engine, &args.batch, args.jobs.as_deref())
        .await
        .map_err(|e| Failure::other(anyhow!(e)))?;
    let approval = rails::approve(
        &engine,
        &args.batch,
        args.only.as_deref(),
        &keep,
        &setup::actor(),
        // A shell on the database host is admin-level.
        true,
    )
    .await
    .map_err(rail_failure)?;
    if let Some(halt) = &approval.halted {
        eprintln!("batch {} is halted: {halt}", approval.batch_id);
        return Ok(exit::NEEDS_ATTENTION);
    }
    eprintln!(
        "batch {}: approved, {} request(s) queued, {} left out",
        approval.batch_id, approval.enqueued, approval.cancelled
    );
    if args.no_wait {
        return Ok(exit::OK);
    }
    let counts =
        process_batch(&engine, &approval.batch_id, std::io::stderr().is_terminal()).await?;
    println!("batch {}: {}", approval.batch_id, counts.summary());
    Ok(exit::for_counts(&counts))
}

pub(super) async fn cancel(config: Option<&Path>, args: CancelArgs) -> Result<u8, Failure> {
    let engine = setup::engine(config).await?;
    let c = rails::cancel(&engine, &args.id, &setup::actor())
        .await
        .map_err(rail_failure)?;
    println!("{} {}: {} request(s) cancelled", c.kind, c.id, c.cancelled);
    Ok(exit::OK)
}
