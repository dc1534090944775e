//! The audit trail people read: every decision on a batch (with its
//! actor), every batch retention purged, and every provider call, in the
//! order they were recorded (a call is recorded when its step ends, so a
//! step's calls may follow a decision taken while it ran), a page at a
//! time. Each source is read by its own id from a
//! cursor, so a deep page is an index seek, never a walk past earlier rows.

use sqlx::Row;

use super::sql::Params;
use super::{Store, StoreError, format_ms};

/// Which part of the trail to read.
#[derive(Debug, Clone, Default)]
pub struct TrailQuery {
    /// Decisions on this batch and calls of its requests.
    pub batch: Option<String>,
    /// Only calls made for this person (decisions name no one person).
    pub user: Option<String>,
    /// Only decisions taken by this actor (calls have none).
    pub actor: Option<String>,
    /// Only entries at or after this instant (unix ms).
    pub since: Option<i64>,
}

/// Where a page ends: the last id read from each source. Written as
/// `c.d.p`, opaque to clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrailCursor {
    pub call: i64,
    pub decision: i64,
    pub purge: i64,
}

impl TrailCursor {
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.call, self.decision, self.purge)
    }

    pub fn decode(text: &str) -> Option<TrailCursor> {
        let mut parts = text.split('.').map(|p| p.parse::<i64>().ok());
        let cursor = TrailCursor {
            call: parts.next()??,
            decision: parts.next()??,
            purge: parts.next()??,
        };
        parts.next().is_none().then_some(cursor)
    }
}

/// One entry of the trail. Never a token, a header or a secret: calls are
/// recorded without them, and decisions carry only ids and reasons.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TrailEntry {
    /// A person's (or a rail's) decision on a batch.
    Decision {
        at: String,
        actor: String,
        action: String,
        batch_id: String,
        detail: serde_json::Value,
    },
    /// One provider call attempt.
    Call {
        at: String,
        request_id: Option<String>,
        batch_id: Option<String>,
        user_id: Option<String>,
        provider: String,
        method: String,
        path: String,
        status: Option<i64>,
        error_code: Option<String>,
        attempt: i64,
        latency_ms: i64,
    },
}

/// One page of the trail.
#[derive(Debug)]
pub struct TrailPage {
    pub entries: Vec<TrailEntry>,
    /// Where the page ended: the next page, or later entries, start here.
    pub cursor: TrailCursor,
    /// More entries are there now.
    pub more: bool,
}

/// An entry with what orders and pages it.
struct Keyed {
    at: i64,
    id: i64,
    entry: TrailEntry,
}

impl Store {
    /// Up to `limit` entries after `after`, in the order they were
    /// recorded, the cursor after them (to resume from, even at the end:
    /// entries recorded later come after it), and whether more are there
    /// now.
    pub async fn trail_page(
        &self,
        q: &TrailQuery,
        after: TrailCursor,
        limit: u32,
    ) -> Result<TrailPage, StoreError> {
        let mut sources: [std::collections::VecDeque<Keyed>; 3] = Default::default();
        if q.actor.is_none() {
            sources[0] = self.calls(q, after.call, limit).await?.into();
        }
        if q.user.is_none() {
            sources[1] = self.decisions(q, after.decision, limit).await?.into();
            sources[2] = self.purges(q, after.purge, limit).await?.into();
        }
        // A merge of the sources by time that takes each in its own id
        // order, so a page always ends on a prefix of every source and the
        // cursor skips nothing.
        let mut next = after;
        let mut entries = Vec::new();
        while entries.len() < limit as usize {
            let Some(source) = (0..3)
                .filter_map(|i| sources[i].front().map(|k| (k.at, i)))
                .min()
                .map(|(_, i)| i)
            else {
                break;
            };
            let Some(k) = sources[source].pop_front() else {
                break;
            };
            let slot = match source {
                0 => &mut next.call,
                1 => &mut next.decision,
                _ => &mut next.purge,
            };
            *slot = k.id;
            entries.push(k.entry);
        }
        // Each source read one row past the page: any left means more.
        let more = sources.iter().any(|s| !s.is_empty());
        Ok(TrailPage {
            entries,
            cursor: next,
            more,
        })
    }

    async fn calls(
        &self,
        q: &TrailQuery,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Keyed>, StoreError> {
        let rows = self
            .keyed_rows(
                "SELECT a.id, a.at, a.request_id, r.batch_id, r.user_id, a.provider, a.method, a.path,
                        a.status, a.error_code, a.attempt, a.latency_ms
                 FROM audit_events a LEFT JOIN requests r ON r.id = a.request_id",
                "a.id",
                [
                    (
                        " AND a.request_id IN (SELECT request_id FROM batch_entries WHERE batch_id = {})",
                        q.batch.as_deref(),
                    ),
                    (
                        " AND a.request_id IN (SELECT id FROM requests WHERE user_id = {})",
                        q.user.as_deref(),
                    ),
                ],
                ("a.at", q.since),
                after,
                limit,
            )
            .await?;
        rows.iter()
            .map(|r| {
                let at: i64 = r.try_get("at")?;
                Ok(Keyed {
                    at,
                    id: r.try_get("id")?,
                    entry: TrailEntry::Call {
                        at: format_ms(at),
                        request_id: r.try_get("request_id")?,
                        batch_id: r.try_get("batch_id")?,
                        user_id: r.try_get("user_id")?,
                        provider: r.try_get("provider")?,
                        method: r.try_get("method")?,
                        path: r.try_get("path")?,
                        status: r.try_get("status")?,
                        error_code: r.try_get("error_code")?,
                        attempt: r.try_get("attempt")?,
                        latency_ms: r.try_get("latency_ms")?,
                    },
                })
            })
            .collect()
    }

    async fn decisions(
        &self,
        q: &TrailQuery,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Keyed>, StoreError> {
        let rows = self
            .keyed_rows(
                "SELECT id, at, actor, action, batch_id, detail FROM batch_events",
                "id",
                [
                    (" AND batch_id = {}", q.batch.as_deref()),
                    (" AND actor = {}", q.actor.as_deref()),
                ],
                ("at", q.since),
                after,
                limit,
            )
            .await?;
        rows.iter()
            .map(|r| {
                let at: i64 = r.try_get("at")?;
                let detail: String = r.try_get("detail")?;
                Ok(Keyed {
                    at,
                    id: r.try_get("id")?,
                    entry: TrailEntry::Decision {
                        at: format_ms(at),
                        actor: r.try_get("actor")?,
                        action: r.try_get("action")?,
                        batch_id: r.try_get("batch_id")?,
                        detail: serde_json::from_str(&detail)
                            .map_err(|e| StoreError::Corrupt(format!("event detail: {e}")))?,
                    },
                })
            })
            .collect()
    }

    async fn purges(
        &self,
        q: &TrailQuery,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Keyed>, StoreError> {
        let rows = self
            .keyed_rows(
                "SELECT id, batch_id, source, source_name, created_at, counts, purged_at, actor
                 FROM purged_batches",
                "id",
                [
                    (" AND batch_id = {}", q.batch.as_deref()),
                    (" AND actor = {}", q.actor.as_deref()),
                ],
                ("purged_at", q.since),
                after,
                limit,
            )
            .await?;
        rows.iter()
            .map(|r| {
                let at: i64 = r.try_get("purged_at")?;
                let counts: String = r.try_get("counts")?;
                let counts: serde_json::Value = serde_json::from_str(&counts)
                    .map_err(|e| StoreError::Corrupt(format!("purged counts: {e}")))?;
                Ok(Keyed {
                    at,
                    id: r.try_get("id")?,
                    entry: TrailEntry::Decision {
                        at: format_ms(at),
                        actor: r.try_get("actor")?,
                        action: "purged".into(),
                        batch_id: r.try_get("batch_id")?,
                        detail: serde_json::json!({
                            "source": r.try_get::<String, _>("source")?,
                            "name": r.try_get::<Option<String>, _>("source_name")?,
                            "created_at": format_ms(r.try_get("created_at")?),
                            "counts": counts,
                        }),
                    },
                })
            })
            .collect()
    }

    /// `select` after the key `after` in key order, narrowed by each filter
    /// whose value is given (its `{}` is the value's placeholder) and by
    /// `since` on its time column: one row more than `limit`, so the caller
    /// knows whether a page follows.
    async fn keyed_rows(
        &self,
        select: &str,
        key: &str,
        filters: [(&str, Option<&str>); 2],
        (at_column, since): (&str, Option<i64>),
        after: i64,
        limit: u32,
    ) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        let mut p = Params::new(self.backend());
        let mut sql = format!("{select} WHERE {key} > {}", p.one());
        for (clause, value) in &filters {
            if value.is_some() {
                sql += &clause.replace("{}", &p.one());
            }
        }
        if since.is_some() {
            sql += &format!(" AND {at_column} >= {}", p.one());
        }
        sql += &format!(" ORDER BY {key} LIMIT {}", p.one());
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after);
        for value in filters.iter().filter_map(|f| f.1) {
            query = query.bind(value);
        }
        if let Some(since) = since {
            query = query.bind(since);
        }
        Ok(query
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = TrailCursor {
            call: 12,
            decision: 3,
            purge: 0,
        };
        assert_eq!(TrailCursor::decode(&c.encode()), Some(c));
        for bad in ["", "1.2", "1.2.3.4", "a.b.c", "1..3"] {
            assert_eq!(TrailCursor::decode(bad), None, "{bad}");
        }
    }
}
