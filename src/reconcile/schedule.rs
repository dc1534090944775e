//! The reconciliation schedule inside `offboard serve`. Ticks are recorded
//! in our own table (unique per job and scheduled time), so two processes
//! on one database run each tick once; after downtime only the latest missed
//! tick runs, not a backlog.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::{ReconcileSpec, Trigger, reconcile};
use crate::domain::Actor;
use crate::engine::Engine;

/// The latest scheduled time at or before `now`, after `since`.
fn latest_due(
    spec: &ReconcileSpec,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let since = since.with_timezone(&spec.timezone);
    spec.schedule
        .after(&since)
        .take_while(|t| t.with_timezone(&Utc) <= now)
        .last()
        .map(|t| t.with_timezone(&Utc))
}

fn next_after(spec: &ReconcileSpec, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    spec.schedule
        .after(&now.with_timezone(&spec.timezone))
        .next()
        .map(|t| t.with_timezone(&Utc))
}

async fn fire(engine: &Engine, spec: &ReconcileSpec, at: DateTime<Utc>) {
    let at_ms = at.timestamp_millis();
    match engine.store().take_tick(&spec.name, at_ms).await {
        Ok(true) => {}
        Ok(false) => return, // another process runs this tick
        Err(e) => {
            tracing::error!(job = %spec.name, error = %e, "cannot record the tick");
            return;
        }
    }
    let trigger = Trigger {
        actor: Actor::schedule(&spec.name),
        origin: "schedule",
    };
    match reconcile(engine, spec, false, &trigger).await {
        Ok(r) => {
            let _ = engine
                .store()
                .set_tick_batch(&spec.name, at_ms, &r.batch_id)
                .await;
            tracing::info!(job = %spec.name, batch = %r.batch_id, removals = r.removals.len(), halted = r.halted.as_ref().map(|h| h.code.as_str()), "reconciliation planned");
        }
        Err(e) => tracing::error!(job = %spec.name, error = %e, "reconciliation failed"),
    }
}

async fn run_one(engine: Arc<Engine>, spec: ReconcileSpec, mut stop: watch::Receiver<bool>) {
    // Catch up once: the latest tick missed since the last recorded one.
    if let Ok(Some(last)) = engine.store().last_tick(&spec.name).await
        && let Some(since) = DateTime::from_timestamp_millis(last)
        && let Some(due) = latest_due(&spec, since, Utc::now())
    {
        fire(&engine, &spec, due).await;
    }
    loop {
        let now = Utc::now();
        let Some(next) = next_after(&spec, now) else {
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        let stopped = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopped {
            return;
        }
        fire(&engine, &spec, next).await;
    }
}

/// Runs every schedule until `stop` turns true.
pub async fn run(engine: Arc<Engine>, specs: Vec<ReconcileSpec>, stop: watch::Receiver<bool>) {
    let tasks: Vec<_> = specs
        .into_iter()
        .map(|spec| {
            tracing::info!(job = %spec.name, "reconciliation scheduled");
            tokio::spawn(run_one(engine.clone(), spec, stop.clone()))
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}
