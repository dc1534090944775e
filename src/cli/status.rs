//! `offboard status [BATCH] [--json]`.

use std::path::Path;

use anyhow::anyhow;
use clap::Args;

use super::{Failure, exit, setup};
use crate::report::status::BatchStatus;
use crate::store::{BatchRow, Store, format_ms};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A batch id; without it, the newest batches.
    pub batch: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// How many batches to list.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
}

async fn describe(store: &Store, batch: BatchRow, one: bool) -> Result<BatchStatus, Failure> {
    let status = if one {
        crate::report::status::describe_one(store, batch).await
    } else {
        crate::report::status::describe(store, batch).await
    };
    status.map_err(Failure::other)
}

pub(super) async fn status(config: Option<&Path>, args: StatusArgs) -> Result<u8, Failure> {
    let store = setup::store(config).await?;
    let batches = match &args.batch {
        Some(id) => vec![
            store
                .batch(id)
                .await
                .map_err(Failure::other)?
                .ok_or_else(|| Failure::usage(anyhow!("no batch {id}")))?,
        ],
        None => store
            .list_batches(args.limit, 0)
            .await
            .map_err(Failure::other)?,
    };
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        out.push(describe(&store, b, args.batch.is_some()).await?);
    }
    if args.json {
        let text = if args.batch.is_some() {
            serde_json::to_string_pretty(&out[0])
        } else {
            serde_json::to_string_pretty(&out)
        };
        println!("{}", text.map_err(Failure::other)?);
        return Ok(exit::OK);
    }
    println!(
        "{:<26}  {:<24}  {:<23}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}  source",
        "batch", "created", "state", "requests", "done", "attn", "failed", "rejected"
    );
    for s in &out {
        let c = &s.counts;
        println!(
            "{:<26}  {:<24}  {:<23}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}  {}{}",
            s.batch.id,
            format_ms(s.batch.created_at),
            s.state,
            c.requests(),
            c.finished(),
            c.needs_attention,
            c.failed + c.dead,
            c.rejected,
            s.batch.source_name.as_deref().unwrap_or(&s.batch.source),
            if s.batch.dry_run { " (dry run)" } else { "" }
        );
    }
    // One batch asked for: say why it waits, and who did what to it.
    if let Some(s) = out.first().filter(|_| args.batch.is_some()) {
        if s.state == "halted"
            && let Some(reason) = &s.batch.halt_reason
        {
            println!("halted: {reason}");
            if let Some(code) = s.batch.halt_code {
                println!("halt code: {code}");
            }
        }
        for e in s.events.iter().flatten() {
            println!(
                "event {}  {:<10} {}  {}",
                e.at,
                e.action.as_str(),
                e.actor,
                e.detail
            );
        }
    }
    Ok(exit::OK)
}
