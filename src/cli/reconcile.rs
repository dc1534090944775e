//! `offboard reconcile JOB [--dry-run]`: one reconciliation now.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Args;

use super::run::process_batch;
use super::{Failure, exit, setup};

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The job's name (its spec's `name`, or the file stem).
    pub job: String,
    /// Plan, print and store the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Folder of job specs (default: [jobs] dir).
    #[arg(long, value_name = "DIR")]
    pub jobs: Option<PathBuf>,
}

pub(super) async fn reconcile(config: Option<&Path>, args: ReconcileArgs) -> Result<u8, Failure> {
    let engine = setup::engine(config).await?;
    let dir = args
        .jobs
        .clone()
        .unwrap_or_else(|| PathBuf::from(&engine.config().jobs.dir));
    let jobs = crate::jobs::load(&dir, engine.config()).map_err(|e| Failure::usage(anyhow!(e)))?;
    let spec = jobs.reconcile(&args.job).ok_or_else(|| {
        Failure::usage(anyhow!(
            "no reconciliation job {} in {}",
            args.job,
            dir.display()
        ))
    })?;
    let trigger = crate::jobs::reconcile::Trigger {
        actor: setup::actor(),
        origin: "cli",
    };
    let result = crate::jobs::reconcile::reconcile(&engine, spec, args.dry_run, &trigger)
        .await
        .map_err(Failure::other)?;
    eprintln!(
        "job {}: {} members, {} roster rows, {} planned removals, {} protected, {} unmatched",
        spec.name,
        result.members,
        result.roster_rows,
        result.removals.len(),
        result.protected.len(),
        result.unmatched.len()
    );
    let verb = if result.dry_run {
        "would remove"
    } else {
        "remove"
    };
    for user in &result.removals {
        eprintln!("  {verb} {user}: not in the roster");
    }
    for user in &result.protected {
        eprintln!("  skip {user}: not in the roster, but protected");
    }
    for user in &result.unmatched {
        eprintln!("  skip {user}: no email to match the roster on");
    }
    if let Some(halt) = &result.halted {
        eprintln!(
            "batch {} is halted ({}): {}",
            result.batch_id, halt.code, halt.reason
        );
        eprintln!(
            "review it with `offboard report {}`, then `offboard approve {}`",
            result.batch_id, result.batch_id
        );
        println!("{}", result.batch_id);
        return Ok(exit::NEEDS_ATTENTION);
    }
    let counts = process_batch(&engine, &result.batch_id, std::io::stderr().is_terminal()).await?;
    println!("batch {}: {}", result.batch_id, counts.summary());
    Ok(exit::for_counts(&counts))
}
