//! The rows of a batch report: every accepted line with its request's
//! state, and every rejected line, in line order.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::sql::Params;
use super::{Store, StoreError, format_ms, now_ms};

mod native;
pub(crate) use native::Readers;

/// One report line (`../shared/conventions.md` column order).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportRow {
    pub line: u64,
    pub provider: String,
    pub organization_id: String,
    pub user_id: String,
    /// An outcome, or `rejected`, `scheduled`, `pending`, `held`.
    pub outcome: String,
    pub roles_removed: Vec<String>,
    pub transfer_to_department_id: String,
    pub attempts: u32,
    pub error_code: String,
    pub error_message: String,
    pub request_id: String,
    /// The batch whose request this line reports (an earlier one for a
    /// resubmitted row).
    pub batch_id: String,
    pub reason: String,
    pub finished_at: String,
}

/// A window of a report, in line order.
#[derive(Debug, Clone, Copy)]
pub struct ReportWindow<'a> {
    /// Only lines with this outcome (or `rejected`, `scheduled`, `pending`).
    pub outcome: Option<&'a str>,
    pub offset: u64,
    pub limit: u32,
}

/// The first 1,000 rejected lines: what a file with no valid row shows.
pub const FIRST_REJECTED: ReportWindow<'static> = ReportWindow {
    outcome: Some("rejected"),
    offset: 0,
    limit: 1_000,
};

impl Store {
    /// The whole report, for the demo's small batch. A million-line batch
    /// makes a million rows: every report surface reads it a page at a time
    /// ([`Store::report_page`]) and the paged API a window
    /// ([`Store::report_window`]).
    pub async fn report_rows(&self, batch_id: &str) -> Result<Vec<ReportRow>, StoreError> {
        self.report_query(batch_id, None, None, None).await
    }

    /// Up to `limit` lines after line `after` (from the first when `None`),
    /// of `outcome` when given, in line order: each page found by its key
    /// at any depth rather than by walking past the earlier ones (a whole
    /// report read a page at a time, and the API's keyset page).
    pub async fn report_page(
        &self,
        batch_id: &str,
        outcome: Option<&str>,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ReportRow>, StoreError> {
        self.report_query(batch_id, outcome, after, Some((0, limit)))
            .await
    }

    /// One page of the report; the database filters, orders and cuts it.
    pub async fn report_window(
        &self,
        batch_id: &str,
        window: ReportWindow<'_>,
    ) -> Result<Vec<ReportRow>, StoreError> {
        self.report_query(
            batch_id,
            window.outcome,
            None,
            Some((window.offset, window.limit)),
        )
        .await
    }

    async fn report_query(
        &self,
        batch_id: &str,
        outcome: Option<&str>,
        after: Option<u64>,
        window: Option<(u64, u32)>,
    ) -> Result<Vec<ReportRow>, StoreError> {
        let (sql, binds) = self.report_sql(batch_id, outcome, after, window);
        if let Some(readers) = &self.report_readers {
            return readers.rows(sql, binds).await;
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in binds {
            q = match b {
                Bind::Text(t) => q.bind(t),
                Bind::Int(n) => q.bind(n),
            };
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(report_row)
            .collect()
    }

    /// The statement of [`Store::report_query`] and its values, in order.
    fn report_sql(
        &self,
        batch_id: &str,
        outcome: Option<&str>,
        after: Option<u64>,
        window: Option<(u64, u32)>,
    ) -> (String, Vec<Bind>) {
        // Placeholders in text order, each bound in that order (`Params`).
        let mut p = Params::new(self.backend());
        let mut binds: Vec<Bind> = Vec::new();
        let now = now_ms();
        let accepted_outcome = |p: &mut Params, binds: &mut Vec<Bind>| {
            binds.push(Bind::Int(now));
            // Open requests are `scheduled` before their effective time.
            format!(
                "COALESCE(r.outcome, CASE WHEN r.dry_run = 2 AND r.finished_at IS NOT NULL THEN 'held' WHEN r.effective_at > {} THEN 'scheduled' ELSE 'pending' END)",
                p.one()
            )
        };
        let accepted = |p: &mut Params, binds: &mut Vec<Bind>| {
            let outcome_column = accepted_outcome(p, binds);
            binds.push(Bind::Text(batch_id.to_owned()));
            let mut sql = format!(
                "SELECT e.line AS line, r.provider AS provider, r.organization_id AS organization_id,
                        r.user_id AS user_id, {outcome_column} AS outcome,
                        r.roles_removed AS roles_removed,
                        r.transfer_to_department_id AS transfer_to_department_id,
                        r.attempts AS attempts, r.error_code AS error_code,
                        r.error_message AS error_message, r.id AS request_id,
                        r.batch_id AS batch_id, r.reason AS reason, r.finished_at AS finished_at
                 FROM batch_entries e JOIN requests r ON r.id = e.request_id
                 WHERE e.batch_id = {}",
                p.one()
            );
            if let Some(line) = after {
                binds.push(Bind::Int(line_key(line)));
                sql.push_str(&format!(" AND e.line > {}", p.one()));
            }
            if let Some(o) = outcome {
                let filter = accepted_outcome(p, binds);
                binds.push(Bind::Text(o.to_owned()));
                sql.push_str(&format!(" AND {filter} = {}", p.one()));
            }
            sql
        };
        let rejected = |p: &mut Params, binds: &mut Vec<Bind>| {
            binds.push(Bind::Text(batch_id.to_owned()));
            let mut sql = format!(
                "SELECT line, provider, organization_id, user_id, 'rejected' AS outcome,
                        '' AS roles_removed, NULL AS transfer_to_department_id, 0 AS attempts,
                        code AS error_code, message AS error_message, NULL AS request_id,
                        batch_id, NULL AS reason, NULL AS finished_at
                 FROM rejected_rows WHERE batch_id = {}",
                p.one()
            );
            if let Some(line) = after {
                binds.push(Bind::Int(line_key(line)));
                sql.push_str(&format!(" AND line > {}", p.one()));
            }
            sql
        };
        let mut sql = match outcome {
            None => {
                let a = accepted(&mut p, &mut binds);
                let r = rejected(&mut p, &mut binds);
                format!("{a} UNION ALL {r}")
            }
            Some("rejected") => rejected(&mut p, &mut binds),
            Some(_) => accepted(&mut p, &mut binds),
        };
        sql.push_str(" ORDER BY line");
        if let Some((offset, limit)) = window {
            sql.push_str(&format!(" LIMIT {} OFFSET {}", p.one(), p.one()));
            binds.push(Bind::Int(i64::from(limit)));
            binds.push(Bind::Int(line_key(offset)));
        }
        (sql, binds)
    }
}

/// A line number or offset as the database stores integers.
fn line_key(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A value for a generated statement, in placeholder order.
enum Bind {
    Text(String),
    Int(i64),
}

fn report_row(r: &AnyRow) -> Result<ReportRow, StoreError> {
    let text = |column: &str| -> Result<String, StoreError> {
        Ok(r.try_get::<Option<String>, _>(column)?.unwrap_or_default())
    };
    Ok(ReportRow {
        line: r.try_get::<i64, _>("line")? as u64,
        provider: text("provider")?,
        organization_id: text("organization_id")?,
        user_id: text("user_id")?,
        outcome: text("outcome")?,
        roles_removed: super::sql::roles_of_text(&text("roles_removed")?),
        transfer_to_department_id: text("transfer_to_department_id")?,
        attempts: r.try_get::<i64, _>("attempts")? as u32,
        error_code: text("error_code")?,
        error_message: text("error_message")?,
        request_id: text("request_id")?,
        batch_id: text("batch_id")?,
        reason: text("reason")?,
        finished_at: r
            .try_get::<Option<i64>, _>("finished_at")?
            .map(format_ms)
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, Row};

    use super::Bind;

    /// The plan SQLite picks for a statement and its values.
    async fn plan(conn: &mut sqlx::SqliteConnection, sql: &str, binds: Vec<Bind>) -> String {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        for b in binds {
            q = match b {
                Bind::Text(t) => q.bind(t),
                Bind::Int(n) => q.bind(n),
            };
        }
        let rows = q.fetch_all(conn).await.unwrap();
        rows.iter()
            .map(|r| r.get::<String, _>("detail"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SQLite's native reader answers every report query with exactly the
    /// rows sqlx's `Any` driver reads: finished, open and rejected lines,
    /// NULLs, removed roles, errors and times, whole and a page at a time.
    #[tokio::test]
    async fn the_native_reader_reads_what_sqlx_reads() {
        use crate::domain::{Outcome, RunMode};
        use crate::store::{Finish, RejectedRow};
        let (_dir, _url, store) = crate::store::scratch_store().await;
        let batch = crate::store::scratch_batch(&store).await;
        let mut chunk = crate::store::chunk_of(&["u1", "u2", "=u3"]);
        chunk.accepted[1].reason = Some("left; \"quoted\"".into());
        chunk.rejected.push(RejectedRow {
            line: 3,
            code: "bad_user_id".into(),
            message: "user_id is empty".into(),
            provider: Some("acme".into()),
            organization_id: None,
            user_id: None,
        });
        for row in &mut chunk.accepted[1..] {
            row.line += 1;
        }
        let jobs = store
            .write_intake_chunk(&batch, RunMode::Live, None, chunk)
            .await
            .unwrap();
        let id = jobs[0].request_id.clone();
        let lease = std::time::Duration::from_secs(60);
        assert!(matches!(
            store.claim(&id, "w", lease).await.unwrap(),
            crate::store::ClaimResult::Claimed(_)
        ));
        let done = Finish {
            outcome: Outcome::Failed,
            roles_removed: vec!["role_a".into(), "role_b".into()],
            error_code: Some("http_500".into()),
            error_message: Some("provider said: \"no\"".into()),
        };
        store.finish(&id, "w", &done, 2, &[]).await.unwrap();

        let mut through_sqlx = store.clone();
        through_sqlx.report_readers = None;
        assert!(store.report_readers.is_some());
        let native = store.report_rows(&batch).await.unwrap();
        let pooled = through_sqlx.report_rows(&batch).await.unwrap();
        assert_eq!(native.len(), 4);
        assert_eq!(format!("{native:?}"), format!("{pooled:?}"));
        let failed = native.iter().find(|r| r.request_id == id).unwrap();
        assert_eq!(failed.outcome, "failed", "{native:?}");
        assert_eq!(failed.roles_removed, ["role_a", "role_b"]);
        assert_eq!(failed.attempts, 3);
        assert!(!failed.finished_at.is_empty());
        assert_eq!(native[1].outcome, "rejected");
        for (after, outcome) in [
            (Some(2), None),
            (None, Some("failed")),
            (None, Some("rejected")),
        ] {
            let a = store.report_page(&batch, outcome, after, 2).await.unwrap();
            let b = through_sqlx
                .report_page(&batch, outcome, after, 2)
                .await
                .unwrap();
            assert!(!a.is_empty());
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
        store.close().await;
    }

    /// A deep page of the lists the API pages by cursor is found by a seek
    /// on a key, at any depth: a batch's requests (and rejected rows) after
    /// a line, batches after an id, and the audit trail after an id.
    #[tokio::test]
    async fn deep_pages_are_index_seeks() {
        let (_dir, url, store) = crate::store::scratch_store().await;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        for outcome in [None, Some("failed"), Some("rejected")] {
            let (sql, binds) = store.report_sql("b1", outcome, Some(900_000), Some((0, 101)));
            let p = plan(&mut conn, &sql, binds).await;
            assert!(!p.contains("SCAN"), "{outcome:?}: {p}");
            assert!(p.contains("line>?"), "{outcome:?}: {p}");
        }
        let batches = plan(
            &mut conn,
            &format!(
                "{} WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                super::super::batches::LIST_SQL
            ),
            vec![Bind::Text("01M9".into()), Bind::Int(101)],
        )
        .await;
        assert!(batches.contains("SEARCH batches"), "{batches}");
        assert!(!batches.contains("TEMP B-TREE"), "{batches}");
        let calls = plan(
            &mut conn,
            "SELECT a.id FROM audit_events a LEFT JOIN requests r ON r.id = a.request_id
             WHERE a.id > ?1 ORDER BY a.id LIMIT ?2",
            vec![Bind::Int(1_000_000), Bind::Int(101)],
        )
        .await;
        assert!(
            calls.contains("SEARCH a USING INTEGER PRIMARY KEY (rowid>?)"),
            "{calls}"
        );
        store.close().await;
    }
}
