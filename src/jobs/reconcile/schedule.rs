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

/// A cron expression in the standard 5-field form (minute first), or the
/// `cron` crate's 6- or 7-field one (seconds first, optional year): a
/// crontab line copied as it is must mean what it means in crontab.
pub fn parse_cron(text: &str) -> Result<cron::Schedule, cron::error::Error> {
    use std::str::FromStr;
    let text = text.trim();
    if text.split_whitespace().count() == 5 {
        cron::Schedule::from_str(&format!("0 {text}"))
    } else {
        cron::Schedule::from_str(text)
    }
}

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

#[cfg(test)]
mod tests {
    use super::parse_cron;

    #[test]
    fn five_field_cron_means_what_crontab_means() {
        let five = parse_cron("30 2 * * 1-5").unwrap();
        let six = parse_cron("0 30 2 * * 1-5").unwrap();
        let from = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let a: Vec<_> = five.after(&from).take(5).collect();
        let b: Vec<_> = six.after(&from).take(5).collect();
        assert_eq!(a, b);
        assert_eq!(a[0].to_rfc3339(), "2026-01-01T02:30:00+00:00");
        assert!(
            parse_cron("0 0 2 * * *").is_ok(),
            "seconds first still works"
        );
        assert!(parse_cron("2 * *").is_err());
    }
}
