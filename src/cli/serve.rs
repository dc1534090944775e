//! `offboard serve`: queue workers until SIGINT or SIGTERM. On a signal,
//! fetching stops, in-flight steps finish (bounded), and every request left
//! open is resumable.

use std::path::Path;

use anyhow::anyhow;

use super::{Failure, exit, setup};
use crate::queue::spawn_worker;

pub async fn serve(config: Option<&Path>) -> Result<u8, Failure> {
    let engine = setup::engine(config).await?;
    let missing = engine
        .queue()
        .enqueue_missing(engine.store())
        .await
        .map_err(Failure::other)?;
    if missing > 0 {
        tracing::info!(requests = missing, "enqueued requests left without a job");
    }
    let worker = spawn_worker(engine.clone());
    tracing::info!(worker = worker.name(), "worker started");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight steps");
    worker
        .shutdown()
        .await
        .map_err(|e| Failure::other(anyhow!(e)))?;
    engine.store().close().await;
    Ok(exit::OK)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
