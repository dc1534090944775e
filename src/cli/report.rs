//! `offboard report BATCH --format csv|json [-o FILE]`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{Args, ValueEnum};

use super::{Failure, exit, setup};
use crate::report::{JsonReport, json_parts, write_csv_report, write_parts};
use crate::store::Store;

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

pub async fn report(config: Option<&Path>, args: ReportArgs) -> Result<u8, Failure> {
    let store = setup::store(config).await?;
    let batch = store
        .batch(&args.batch)
        .await
        .map_err(Failure::other)?
        .ok_or_else(|| Failure::usage(anyhow!("no batch {}", args.batch)))?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| Failure::usage(anyhow!("cannot write {}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    match args.format {
        Format::Csv => write_csv_report(&store, &batch.id, &mut out)
            .await
            .map_err(Failure::other)?,
        Format::Json => {
            let counts = store.batch_counts(&batch).await.map_err(Failure::other)?;
            let state = Store::batch_state(&batch, &counts);
            let head = JsonReport {
                batch_id: &batch.id,
                state: state.as_str(),
                counts: &counts,
                rows: &[],
            };
            let parts =
                json_parts(store.clone(), batch.id.clone(), &head, true).map_err(Failure::other)?;
            write_parts(parts, &mut out).await.map_err(Failure::other)?;
            writeln!(out).map_err(Failure::other)?;
        }
    }
    out.flush().map_err(Failure::other)?;
    Ok(exit::OK)
}
