//! `offboard notify status|test NAME`, and the wait with which commands
//! that change batches deliver the notifications they caused.

use std::path::Path;

use anyhow::anyhow;
use clap::{Args, Subcommand};

use super::{Failure, exit, setup};
use crate::config::Config;
use crate::notify::deliver::DRAIN_WITHIN;
use crate::notify::{Deliverer, resolve_channels};
use crate::store::{DeliveryState, Store, format_ms};

#[derive(Debug, Args)]
pub struct NotifyArgs {
    #[command(subcommand)]
    pub command: NotifyCommand,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// List the deliveries still pending, and the dead ones.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Send a test message to the channel `[notify.NAME]`.
    Test { name: String },
}

pub(super) async fn notify(config: Option<&Path>, args: NotifyArgs) -> Result<u8, Failure> {
    match args.command {
        NotifyCommand::Status { json } => status(config, json).await,
        NotifyCommand::Test { name } => test(config, &name).await,
    }
}

async fn status(config: Option<&Path>, json: bool) -> Result<u8, Failure> {
    let store = setup::store(config).await?;
    let rows = store.notify_status().await.map_err(Failure::other)?;
    if json {
        let text = serde_json::to_string_pretty(&rows).map_err(Failure::other)?;
        println!("{text}");
    } else if rows.is_empty() {
        println!("no pending or dead deliveries");
    } else {
        println!(
            "{:<26}  {:<29}  {:<26}  {:<16}  {:<7}  {:>8}  {:<24}  last error",
            "event", "kind", "batch", "channel", "state", "attempts", "next attempt"
        );
        for r in rows {
            println!(
                "{:<26}  {:<29}  {:<26}  {:<16}  {:<7}  {:>8}  {:<24}  {}",
                r.event_id,
                r.kind,
                r.batch_id.as_deref().unwrap_or("-"),
                r.channel,
                r.state,
                r.attempts,
                if r.state == DeliveryState::Dead {
                    "-".to_owned()
                } else {
                    format_ms(r.next_at)
                },
                r.last_error.as_deref().unwrap_or("-")
            );
        }
    }
    store.close().await;
    Ok(exit::OK)
}

async fn test(config: Option<&Path>, name: &str) -> Result<u8, Failure> {
    let cfg = setup::load_config(config)?;
    if !cfg.notify.channels.contains_key(name) {
        return Err(Failure::usage(anyhow!(
            "no channel [notify.{name}] in the configuration"
        )));
    }
    let store = setup::open_store(&cfg.database)
        .await
        .map_err(Failure::other)?;
    let deliverer = deliverer(&cfg, &store)?;
    let sent = deliverer.send_test(name).await;
    store.close().await;
    sent.map_err(|e| Failure::other(anyhow!("channel {name}: {e}")))?;
    println!("test message sent to {name}");
    Ok(exit::OK)
}

/// A deliverer for the configured channels, their secrets read now.
pub(super) fn deliverer(cfg: &Config, store: &Store) -> Result<Deliverer, Failure> {
    let channels = resolve_channels(cfg, |var| std::env::var(var).ok()).map_err(Failure::usage)?;
    let worker = format!("cli-{}-{}", crate::engine::host_name(), std::process::id());
    Deliverer::new(store.clone(), cfg, channels, &worker).map_err(Failure::other)
}

/// After a command that changes batches: delivers the notifications
/// made since `since` (unix ms), waiting at most 10 s, and leaves the
/// rest to `serve`. Never changes the command's exit code.
pub(super) async fn deliver_caused(config: Option<&Path>, since: i64) {
    let Ok(cfg) = setup::load_config(config) else {
        return;
    };
    if cfg.notify.channels.is_empty() {
        return;
    }
    let store = match setup::open_store(&cfg.database).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("notifications not delivered: {e}");
            return;
        }
    };
    match deliverer(&cfg, &store) {
        Ok(d) => match d.drain(since, DRAIN_WITHIN).await {
            Ok(o) if o.pending > 0 => eprintln!(
                "{} notification deliveries are left for `offboard serve` (`offboard notify status`)",
                o.pending
            ),
            Ok(_) => {}
            Err(e) => eprintln!("notifications not delivered: {e}"),
        },
        Err(f) => eprintln!("notifications not delivered: {:#}", f.error),
    }
    store.close().await;
}
