//! The notification outbox: events written in the transaction of the
//! change that causes them (`notify_events`, unique by a dedupe key, so two
//! processes that make the same change write it once), one delivery row per
//! channel that wants it (`notify_deliveries`), and the delivery's lease,
//! taken like a request's claim on the database's clock, so two processes
//! never send one event to one channel at once. A channel that answered is
//! marked `sent` and never sent the event again.

mod delivery;
mod settle;

use std::sync::{Arc, OnceLock};

use super::{Store, StoreError, now_ms};

pub(super) use settle::SettleCursors;
#[cfg(test)]
pub(super) use settle::UNSETTLED_SQL;

/// Which channels want which events (from `[notify]`), so that a change
/// writes only what some channel will be sent.
#[derive(Debug, Clone, Default)]
pub struct NotifyRoutes(pub Vec<NotifyRoute>);

/// One channel's subscriptions.
#[derive(Debug, Clone)]
pub struct NotifyRoute {
    pub channel: String,
    pub kinds: Vec<String>,
    /// `batch.finished` with no problem too.
    pub finished_always: bool,
}

impl NotifyRoutes {
    /// Whether any channel wants `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        self.0.iter().any(|r| r.kinds.iter().any(|k| k == kind))
    }

    fn channels(&self, notice: &Notice) -> Vec<&str> {
        self.0
            .iter()
            .filter(|r| r.kinds.iter().any(|k| k == notice.kind))
            .filter(|r| notice.kind != "batch.finished" || notice.problems || r.finished_always)
            .map(|r| r.channel.as_str())
            .collect()
    }
}

/// An event to write.
#[derive(Debug, Clone)]
pub struct Notice {
    pub kind: &'static str,
    /// Unique per occurrence: `KIND/BATCH/N`, `dropfolder.file_failed/SHA`.
    pub dedupe_key: String,
    pub batch_id: Option<String>,
    /// What is known only at the change (a halt's reason, a file's error).
    pub facts: serde_json::Value,
    /// `batch.finished`: some request ended needs_attention, failed or dead.
    pub problems: bool,
}

/// A stored event.
#[derive(Debug, Clone)]
pub struct NotifyEvent {
    pub id: String,
    pub kind: String,
    pub batch_id: Option<String>,
    pub facts: serde_json::Value,
    /// The rendered message, once rendered.
    pub payload: Option<String>,
    pub created_at: i64,
}

/// A delivery this process holds the lease of.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_id: String,
    pub channel: String,
    /// Attempts before this one.
    pub attempts: i64,
    pub created_at: i64,
}

/// Where a delivery is (`notify_deliveries.state`), parsed where the store
/// reads the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// Delivered.
    Sent,
    /// Given up after `retry_for`.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sent => "sent",
            DeliveryState::Dead => "dead",
        }
    }

    pub(super) fn parse(s: &str) -> Result<DeliveryState, StoreError> {
        match s {
            "pending" => Ok(DeliveryState::Pending),
            "sent" => Ok(DeliveryState::Sent),
            "dead" => Ok(DeliveryState::Dead),
            other => Err(StoreError::Corrupt(format!(
                "unknown notification delivery state {other:?}"
            ))),
        }
    }
}

impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A pending or dead delivery, for `offboard notify status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryStatus {
    pub event_id: String,
    pub kind: String,
    pub batch_id: Option<String>,
    pub channel: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
}

/// Writes `notice` inside the caller's transaction, with a delivery per
/// channel that wants it; nothing when none does, or when an event of the
/// same dedupe key exists. Returns the new event's id.
pub(super) async fn insert(
    tx: &mut sqlx::AnyConnection,
    routes: &NotifyRoutes,
    notice: &Notice,
) -> Result<Option<String>, StoreError> {
    let channels = routes.channels(notice);
    if channels.is_empty() {
        return Ok(None);
    }
    let id = ulid::Ulid::new().to_string();
    let now = now_ms();
    let written = sqlx::query(
        "INSERT INTO notify_events (id, dedupe_key, kind, batch_id, facts, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(&id)
    .bind(&notice.dedupe_key)
    .bind(notice.kind)
    .bind(notice.batch_id.as_deref())
    .bind(notice.facts.to_string())
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if written == 0 {
        return Ok(None);
    }
    for channel in channels {
        sqlx::query(
            "INSERT INTO notify_deliveries (event_id, channel, state, next_at) VALUES ($1, $2, 'pending', $3)",
        )
        .bind(&id)
        .bind(channel)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    Ok(Some(id))
}

/// How many times the batch has had `action` recorded (the occurrence
/// number of a halt, a hold, a retry).
async fn occurrences(
    tx: &mut sqlx::AnyConnection,
    batch_id: &str,
    action: &str,
) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM batch_events WHERE batch_id = $1 AND action = $2")
            .bind(batch_id)
            .bind(action)
            .fetch_one(&mut *tx)
            .await?,
    )
}

/// A batch event's notice (`batch.halted`, `batch.held`), keyed by how
/// many such events the batch has: a halt after an approval and a retry
/// is news again, the same halt seen twice is not.
pub(super) async fn insert_for_batch_event(
    tx: &mut sqlx::AnyConnection,
    routes: &NotifyRoutes,
    kind: &'static str,
    action: &str,
    batch_id: &str,
    facts: serde_json::Value,
) -> Result<(), StoreError> {
    if !routes.wants(kind) {
        return Ok(());
    }
    let n = occurrences(tx, batch_id, action).await?;
    let notice = Notice {
        kind,
        dedupe_key: format!("{kind}/{batch_id}/{n}"),
        batch_id: Some(batch_id.to_owned()),
        facts,
        problems: true,
    };
    insert(tx, routes, &notice).await?;
    Ok(())
}

impl Store {
    /// Which channels want which events; empty until set.
    pub fn notify_routes(&self) -> &NotifyRoutes {
        static NONE: NotifyRoutes = NotifyRoutes(Vec::new());
        self.notify.get().unwrap_or(&NONE)
    }

    /// Sets the routes (once per store; later calls are ignored).
    pub fn set_notify_routes(&self, routes: NotifyRoutes) {
        let _ = self.notify.set(routes);
    }

    /// Writes a notice in a transaction of its own (a change that has no
    /// stored state of ours: a listing that failed, a breaker that tripped).
    pub async fn record_notice(&self, notice: &Notice) -> Result<Option<String>, StoreError> {
        if self.notify_routes().0.is_empty() {
            return Ok(None);
        }
        let mut tx = self.begin_write().await?;
        let id = insert(&mut tx, self.notify_routes(), notice).await?;
        tx.commit().await?;
        Ok(id)
    }
}

/// The routes cell a store shares with its clones.
pub(super) type RoutesCell = Arc<OnceLock<NotifyRoutes>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::scratch_store;

    fn routes() -> NotifyRoutes {
        NotifyRoutes(vec![
            NotifyRoute {
                channel: "hook".into(),
                kinds: vec!["reconcile.failed".into(), "batch.finished".into()],
                finished_always: false,
            },
            NotifyRoute {
                channel: "mail".into(),
                kinds: vec!["reconcile.failed".into()],
                finished_always: false,
            },
        ])
    }

    fn notice(kind: &'static str, key: &str, problems: bool) -> Notice {
        Notice {
            kind,
            dedupe_key: key.into(),
            batch_id: None,
            facts: serde_json::json!({"job": "nightly"}),
            problems,
        }
    }

    /// One event per dedupe key, a delivery per channel that wants it, a
    /// lease that two owners cannot both hold, and a sent delivery never
    /// leased again.
    #[tokio::test]
    async fn events_are_written_once_and_leased_to_one_owner() {
        let (_dir, _url, store) = scratch_store().await;
        store.set_notify_routes(routes());
        let n = notice("reconcile.failed", "reconcile.failed/nightly/1", true);
        assert!(store.record_notice(&n).await.unwrap().is_some());
        assert!(store.record_notice(&n).await.unwrap().is_none(), "once");
        // A finished batch without problems: no channel wants it.
        let quiet = notice("batch.finished", "batch.finished/b/0", false);
        assert!(store.record_notice(&quiet).await.unwrap().is_none());
        let channels = vec!["hook".to_owned(), "mail".to_owned()];
        let first = store
            .claim_deliveries("a", 60_000, &channels, None, 10)
            .await
            .unwrap();
        assert_eq!(first.len(), 2);
        let second = store
            .claim_deliveries("b", 60_000, &channels, None, 10)
            .await
            .unwrap();
        assert!(second.is_empty(), "leased by a");
        assert!(store.renew_delivery(&first[0], "a", 60_000).await.unwrap());
        assert!(!store.renew_delivery(&first[0], "b", 60_000).await.unwrap());
        let hook = first.iter().find(|d| d.channel == "hook").unwrap();
        assert!(store.delivery_sent(hook, "a").await.unwrap());
        let mail = first.iter().find(|d| d.channel == "mail").unwrap();
        store
            .delivery_failed(mail, "a", "the channel answered HTTP 503", 0, false)
            .await
            .unwrap();
        let again = store
            .claim_deliveries("b", 60_000, &channels, None, 10)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].channel.as_str(), again[0].attempts), ("mail", 1));
        let status = store.notify_status().await.unwrap();
        assert_eq!(status.len(), 1, "the sent one is not listed: {status:?}");
        store.close().await;
    }

    /// A batch whose last request ended needs_attention gets one
    /// `batch.finished`: after the run, or at the next start when the
    /// process died before (both, and twice, still write it once); a
    /// batch with a request still open gets none.
    #[tokio::test]
    async fn a_settled_batch_is_noticed_once() {
        use crate::domain::{Outcome, RunMode};
        use crate::store::{ClaimResult, Finish, chunk_of, scratch_batch};
        let (_dir, _url, store) = scratch_store().await;
        store.set_notify_routes(routes());
        let batch = scratch_batch(&store).await;
        let jobs = store
            .write_intake_chunk(&batch, RunMode::Live, None, chunk_of(&["u1", "u2"]))
            .await
            .unwrap();
        let lease = std::time::Duration::from_secs(60);
        let finish = |id: String, outcome: Outcome| {
            let store = store.clone();
            async move {
                let ClaimResult::Claimed(_) = store.claim(&id, "w:1", lease).await.unwrap() else {
                    panic!("not claimed");
                };
                let done = Finish {
                    outcome,
                    roles_removed: Vec::new(),
                    error_code: Some("LAST_OWNER_CANNOT_BE_REMOVED".into()),
                    error_message: None,
                };
                store.finish(&id, "w:1", &done, 0, &[]).await.unwrap();
            }
        };
        let events = |store: Store| async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notify_events")
                .fetch_one(&store.pool)
                .await
                .unwrap();
            n
        };
        finish(jobs[0].request_id.clone(), Outcome::NeedsAttention).await;
        store.notice_after_run(&jobs[0].request_id).await.unwrap();
        store.notice_settled_since(0).await.unwrap();
        assert_eq!(events(store.clone()).await, 0, "u2 is still open");
        finish(jobs[1].request_id.clone(), Outcome::Succeeded).await;
        // The process died here: the next start writes it.
        store.notice_settled_since(0).await.unwrap();
        store.notice_after_run(&jobs[1].request_id).await.unwrap();
        store.notice_settled_since(0).await.unwrap();
        assert_eq!(events(store.clone()).await, 1);
        let (people, total) = store
            .batch_people(&batch, "needs_attention", 50)
            .await
            .unwrap();
        assert_eq!((people.len(), total), (1, 1));
        store.close().await;
    }
}
