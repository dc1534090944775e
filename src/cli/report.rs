//! `offboard report BATCH --format csv|json [-o FILE]`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use futures::StreamExt;

use super::{Failure, exit, setup};
use crate::report::{ReportFile, csv_parts, json_report, until_error, write_parts};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    pub batch: String,
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// Write to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub(super) async fn report(config: Option<&Path>, args: ReportArgs) -> Result<u8, Failure> {
    let store = setup::store(config).await?;
    let batch = store
        .batch(&args.batch)
        .await
        .map_err(Failure::other)?
        .ok_or_else(|| Failure::usage(anyhow!("no batch {}", args.batch)))?;
    let parts = match args.format {
        Format::Csv => csv_parts(store.clone(), batch.id.clone()),
        Format::Json => {
            let json = json_report(&store, &batch, true)
                .await
                .map_err(Failure::other)?;
            until_error(json.chain(futures::stream::once(async { Ok(b"\n".to_vec()) })))
        }
    };
    match &args.output {
        Some(path) => ReportFile::create(path)
            .map_err(|e| Failure::usage(anyhow!("cannot write {}: {e}", path.display())))?
            .write(parts)
            .await
            .map_err(|e| Failure::other(anyhow!("cannot write {}: {e}", path.display())))?,
        None => {
            let mut out = std::io::stdout().lock();
            write_parts(parts, &mut out).await.map_err(Failure::other)?;
            out.flush().map_err(Failure::other)?;
        }
    }
    Ok(exit::OK)
}
