//! `offboard audit` and `offboard purge`: reading the audit trail, and
//! retention.

use std::io::Write;
use std::path::Path;

use anyhow::anyhow;
use clap::{Args, ValueEnum};

use super::{Failure, exit, setup};
use crate::store::{TrailCursor, TrailEntry, TrailQuery};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TrailFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Decisions on this batch and the calls of its requests.
    #[arg(long)]
    pub batch: Option<String>,
    /// Only the provider calls made for this user id.
    #[arg(long)]
    pub user: Option<String>,
    /// Only the decisions this actor took (a token name, `cli:USER@HOST`, …).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only entries from this time on (RFC 3339, or YYYY-MM-DD).
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: TrailFormat,
}

/// The CSV columns of the trail.
const COLUMNS: [&str; 15] = [
    "kind",
    "at",
    "actor",
    "action",
    "batch_id",
    "request_id",
    "user_id",
    "provider",
    "method",
    "path",
    "status",
    "error_code",
    "attempt",
    "latency_ms",
    "detail",
];

fn csv_cells(e: &TrailEntry) -> Vec<String> {
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    match e {
        TrailEntry::Decision {
            at,
            actor,
            action,
            batch_id,
            detail,
        } => {
            let mut cells = vec![
                "decision".to_owned(),
                at.clone(),
                actor.clone(),
                action.clone(),
                batch_id.clone(),
            ];
            cells.extend(std::iter::repeat_n(String::new(), 9));
            cells.push(detail.to_string());
            cells
        }
        TrailEntry::Call {
            at,
            request_id,
            batch_id,
            user_id,
            provider,
            method,
            path,
            status,
            error_code,
            attempt,
            latency_ms,
        } => vec![
            "call".into(),
            at.clone(),
            String::new(),
            String::new(),
            s(batch_id),
            s(request_id),
            s(user_id),
            provider.clone(),
            method.clone(),
            path.clone(),
            status.map(|v| v.to_string()).unwrap_or_default(),
            s(error_code),
            attempt.to_string(),
            latency_ms.to_string(),
            String::new(),
        ],
    }
}

pub(super) async fn audit(config: Option<&Path>, args: AuditArgs) -> Result<u8, Failure> {
    let store = setup::store(config).await?;
    if args.user.is_some() && args.actor.is_some() {
        return Err(Failure::usage(anyhow!(
            "--user selects provider calls and --actor decisions: give one or the other"
        )));
    }
    let since = args
        .since
        .as_deref()
        .map(|s| {
            crate::intake::row::parse_effective_at(s)
                .map_err(|_| Failure::usage(anyhow!("--since must be RFC 3339 or YYYY-MM-DD")))
        })
        .transpose()?;
    let query = TrailQuery {
        batch: args.batch,
        user: args.user,
        actor: args.actor,
        since,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let csv_format = matches!(args.format, TrailFormat::Csv);
    let mut header = csv_format;
    let mut after = TrailCursor::default();
    loop {
        let page = store
            .trail_page(&query, after, 1_000)
            .await
            .map_err(Failure::other)?;
        let entries = page.entries;
        if csv_format {
            // A page at a time: the trail never sits in memory whole.
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(&mut out);
            if std::mem::take(&mut header) {
                w.write_record(COLUMNS).map_err(Failure::other)?;
            }
            for e in &entries {
                let cells = csv_cells(e);
                w.write_record(
                    cells
                        .iter()
                        .map(|c| crate::report::neutralise(c).into_owned()),
                )
                .map_err(Failure::other)?;
            }
            w.flush().map_err(Failure::other)?;
        } else {
            for e in &entries {
                serde_json::to_writer(&mut out, e).map_err(Failure::other)?;
                out.write_all(b"\n").map_err(Failure::other)?;
            }
        }
        if !page.more {
            break;
        }
        after = page.cursor;
    }
    out.flush().map_err(Failure::other)?;
    Ok(exit::OK)
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// List what would be purged; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub(super) async fn purge(config: Option<&Path>, args: PurgeArgs) -> Result<u8, Failure> {
    let engine = setup::engine(config).await?;
    let purged = crate::retention::purge(&engine, args.dry_run, &setup::actor())
        .await
        .map_err(Failure::other)?;
    let verb = if args.dry_run {
        "would purge"
    } else {
        "purged"
    };
    for p in &purged {
        println!(
            "{verb} batch {} ({} {}, taken in {}, {} request(s))",
            p.batch_id,
            p.source,
            p.source_name.as_deref().unwrap_or(""),
            p.created_at,
            p.requests
        );
    }
    eprintln!(
        "{} batch(es) {verb} (older than [retention] keep_days = {})",
        purged.len(),
        engine.config().retention.keep_days
    );
    Ok(exit::OK)
}
