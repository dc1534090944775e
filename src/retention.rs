//! Retention: the record of a finished batch is kept `[retention]
//! keep_days` after its last activity, then purged with a `purged` record
//! left in its place. Open, halted and held batches are never purged, nor
//! a reconciliation job's last good run (the next run's baseline).

use crate::domain::Actor;
use crate::engine::Engine;
use crate::store::StoreError;

/// Batches read per look; a purge goes on until none is left.
const PAGE: u32 = 100;

/// One batch a purge removed (or, in a dry run, would remove).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Purged {
    pub batch_id: String,
    pub source: String,
    pub source_name: Option<String>,
    pub created_at: String,
    pub requests: u64,
}

/// Purges every batch past retention (or lists them, with `dry_run`).
pub async fn purge(
    engine: &Engine,
    dry_run: bool,
    actor: &Actor,
) -> Result<Vec<Purged>, StoreError> {
    let store = engine.store();
    let keep =
        std::time::Duration::from_secs(engine.config().retention.keep_days.saturating_mul(86_400));
    let before = crate::domain::now_ms().saturating_sub(crate::config::millis(keep));
    if !dry_run {
        store.purge_notifications(before).await?;
    }
    let mut purged = Vec::new();
    let mut after: Option<(i64, String)> = None;
    loop {
        let page = store
            .purgeable(
                before,
                after.as_ref().map(|(at, id)| (*at, id.as_str())),
                PAGE,
            )
            .await?;
        let Some(last) = page.last() else {
            return Ok(purged);
        };
        after = Some((last.created_at, last.id.clone()));
        for batch in page {
            // A job's last good run is the baseline its next run's roster
            // is held against (`min_roster_ratio`): it stays.
            if batch.source == "reconcile"
                && let Some(job) = &batch.source_name
                && store.last_good_roster_batch(job).await?.as_deref() == Some(batch.id.as_str())
            {
                continue;
            }
            let counts = store.batch_counts(&batch).await?;
            let done = dry_run || store.purge_batch(&batch, &counts, actor).await?;
            if done {
                purged.push(Purged {
                    batch_id: batch.id.clone(),
                    source: batch.source.clone(),
                    source_name: batch.source_name.clone(),
                    created_at: crate::store::format_ms(batch.created_at),
                    requests: counts.requests(),
                });
            }
        }
    }
}
