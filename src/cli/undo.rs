//! `offboard undo BATCH [--only USER,…]`: an undo batch that gives back
//! what the batch removed, run here (or by a running `serve` with
//! `--no-wait`) once it passes the rails.

use std::io::IsTerminal;
use std::path::Path;

use clap::Args;

use super::rails::rail_failure;
use super::run::process_batch;
use super::{Failure, exit, setup};
use crate::pipeline::rails;

#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The batch to undo.
    pub batch: String,
    /// Undo only these users' requests (comma-separated, as in the file).
    #[arg(long, value_delimiter = ',', value_name = "USER,…")]
    pub only: Option<Vec<String>>,
    /// Only queue the undo batch; a running `offboard serve` runs it.
    #[arg(long)]
    pub no_wait: bool,
}

pub(super) async fn undo(config: Option<&Path>, args: UndoArgs) -> Result<u8, Failure> {
    let engine = setup::engine(config).await?;
    let undo = rails::undo(&engine, &args.batch, args.only.as_deref(), &setup::actor())
        .await
        .map_err(rail_failure)?;
    eprintln!(
        "batch {} undoes batch {}: {} request(s)",
        undo.batch_id, undo.undoes, undo.requests
    );
    if let Some(halt) = &undo.halted {
        eprintln!("batch {} is halted: {}", undo.batch_id, halt.reason);
        return Ok(exit::NEEDS_ATTENTION);
    }
    if args.no_wait {
        println!("{}", undo.batch_id);
        return Ok(exit::OK);
    }
    let counts = process_batch(&engine, &undo.batch_id, std::io::stderr().is_terminal()).await?;
    println!("batch {}: {}", undo.batch_id, counts.summary());
    Ok(exit::for_counts(&counts))
}
