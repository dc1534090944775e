//! `offboard serve`: the HTTP API, the drop folders and the queue workers,
//! together until SIGINT or SIGTERM. On a signal, intake stops first (API,
//! drop folders), then in-flight steps finish (bounded) and every request
//! left open stays resumable.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::anyhow;
use clap::Args;
use secrecy::SecretString;
use tokio::sync::watch;

use super::{Failure, exit, setup};
use crate::api::{ApiState, router};
use crate::intake::dropfolder;
use crate::pipeline::spawn_worker;
use crate::queue::{KEEP_FINISHED, PRUNE_EVERY, prune_finished, release_held};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Do not serve the HTTP API.
    #[arg(long)]
    pub no_api: bool,
    /// Do not watch drop folders.
    #[arg(long)]
    pub no_dropfolders: bool,
    /// Do not run reconciliation schedules.
    #[arg(long)]
    pub no_schedules: bool,
    /// Do not run queue workers (intake only).
    #[arg(long)]
    pub no_workers: bool,
    /// Folder of job specs (default: [jobs] dir).
    #[arg(long, value_name = "DIR")]
    pub jobs: Option<PathBuf>,
}

pub(super) async fn serve(config: Option<&Path>, args: ServeArgs) -> Result<u8, Failure> {
    let engine = setup::engine(config).await?;
    let cfg = engine.config().clone();
    // Everything that can be wrong with the setup is checked before any
    // part starts.
    // The bootstrap token may be left unset once a personal admin token
    // exists; without either nobody could use the API.
    let api_token = if args.no_api {
        None
    } else {
        let var = &cfg.http.token_env;
        let token = std::env::var(var)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(SecretString::from);
        let has_admin = engine
            .store()
            .has_admin_token()
            .await
            .map_err(Failure::other)?;
        if token.is_none() && !has_admin && cfg.http.trusted_proxy.is_none() {
            return Err(Failure::usage(anyhow!(
                "invalid configuration: `http.token_env`: environment variable {var} is not set, and no personal admin token exists (`offboard tokens add NAME --role admin`); use --no-api to run without the API"
            )));
        }
        Some(token)
    };
    // Channels' secrets are read before anything starts, like tokens.
    let deliverer = if cfg.notify.channels.is_empty() {
        None
    } else {
        Some(super::notify::deliverer(&cfg, engine.store())?)
    };
    let jobs_dir = args
        .jobs
        .clone()
        .unwrap_or_else(|| PathBuf::from(&cfg.jobs.dir));
    let jobs = crate::jobs::load(&jobs_dir, &cfg).map_err(|e| Failure::usage(anyhow!(e)))?;
    let folders = if args.no_dropfolders {
        Vec::new()
    } else {
        jobs.dropfolders
    };
    let schedules = if args.no_schedules {
        Vec::new()
    } else {
        jobs.reconciles
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let workers_running = Arc::new(AtomicBool::new(false));
    let mut intake_tasks = Vec::new();
    if let Some(token) = api_token {
        let listener = tokio::net::TcpListener::bind(&cfg.http.listen)
            .await
            .map_err(|e| Failure::other(anyhow!("cannot listen on {}: {e}", cfg.http.listen)))?;
        let addr = listener.local_addr().map_err(Failure::other)?;
        println!("api listening on http://{addr}");
        let state = ApiState::new(
            engine.clone(),
            token,
            (!args.no_workers).then(|| workers_running.clone()),
        )
        .map_err(Failure::usage)?;
        // The console's pages share the API's listener, state and limits.
        let app = router(state.clone(), crate::console::router(state));
        let mut stop = stop_rx.clone();
        let limits = crate::api::Limits::new(&cfg.http);
        intake_tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            crate::api::serve(listener, app, limits, shutdown).await;
        }));
    }
    if !schedules.is_empty() {
        intake_tasks.push(tokio::spawn(crate::jobs::reconcile::schedule::run(
            engine.clone(),
            schedules,
            stop_rx.clone(),
        )));
    }
    if let Some(deliverer) = deliverer {
        // Delivery is not queue work: every serve delivers, under leases.
        let stop = stop_rx.clone();
        intake_tasks.push(tokio::spawn(async move { deliverer.run(stop).await }));
    }
    for spec in folders {
        tracing::info!(job = %spec.name, watch = %spec.watch.display(), "watching drop folder");
        intake_tasks.push(tokio::spawn(dropfolder::run(
            engine.clone(),
            spec,
            stop_rx.clone(),
        )));
    }

    let worker = if args.no_workers {
        None
    } else {
        let missing = engine
            .queue()
            .enqueue_missing(engine.store())
            .await
            .map_err(Failure::other)?;
        if missing > 0 {
            tracing::info!(requests = missing, "enqueued requests left without a job");
        }
        let w = spawn_worker(engine.clone());
        intake_tasks.push(tokio::spawn(housekeeping(engine.clone(), stop_rx.clone())));
        workers_running.store(true, Ordering::SeqCst);
        tracing::info!(worker = w.name(), "worker started");
        // On stdout too: an operator (or a test) can tell which process is
        // which worker in the queue's tables and in provider logs.
        println!("worker {} started", w.name());
        Some(w)
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();

    shutdown_signal().await;
    tracing::info!("shutting down: intake first, then in-flight steps");
    let _ = stop_tx.send(true);
    for task in intake_tasks {
        let _ = task.await;
    }
    if let Some(w) = worker {
        workers_running.store(false, Ordering::SeqCst);
        let name = w.name().to_owned();
        w.shutdown().await.map_err(|e| Failure::other(anyhow!(e)))?;
        match release_held(engine.queue().pool(), &name).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "gave back jobs fetched but not started"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot give back fetched jobs; crash recovery will")
            }
        }
    }
    engine.close().await;
    Ok(exit::OK)
}

/// How often `serve` applies retention.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Every [`PRUNE_EVERY`] until stopped: deletes old finished queue jobs,
/// cancels held previews whose hold ran out, and once a day purges
/// batches past retention.
async fn housekeeping(engine: Arc<crate::engine::Engine>, mut stop: watch::Receiver<bool>) {
    let mut last_purge = None;
    loop {
        match prune_finished(engine.queue().pool(), KEEP_FINISHED).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "pruned finished queue jobs"),
            Err(e) => tracing::warn!(error = %e, "cannot prune finished queue jobs"),
        }
        // Retention runs with the housekeeping, at most once a day.
        if last_purge.is_none_or(|at: std::time::Instant| at.elapsed() >= PURGE_EVERY) {
            match crate::retention::purge(&engine, false, &crate::domain::Actor::system()).await {
                Ok(p) if p.is_empty() => {}
                Ok(p) => tracing::info!(
                    batches = p.len(),
                    "purged batches past [retention] keep_days"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot purge old batches"),
            }
            last_purge = Some(std::time::Instant::now());
        }
        match crate::pipeline::rails::expire_holds(&engine).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                batches = n,
                "cancelled held previews past [safety] hold_ttl"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot cancel expired holds"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub(super) async fn shutdown_signal() {
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
