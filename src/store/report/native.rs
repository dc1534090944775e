//! Report pages on SQLite read through SQLite's C API (rusqlite) on a
//! blocking thread, not through sqlx's `Any` driver, which decodes every
//! value by column name into a boxed value and sends each row across a
//! thread: at a million lines that decoding was the report's whole cost
//! (BENCHMARKS.md, "A million users: the report read natively").

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, Row};

use super::{Bind, ReportRow};
use crate::store::connect::SQLITE_BUSY_TIMEOUT;
use crate::store::{StoreError, format_ms};

/// Idle read connections kept for the next page; a report streams a page
/// at a time, so one stream reuses one connection and its cached statement.
const IDLE_KEPT: usize = 4;

/// Read-only connections to one SQLite file, opened on demand.
#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Set when the store closes: later reads fail, as the pool's do.
    closed: AtomicBool,
}

impl Readers {
    pub(crate) fn new(path: &Path) -> Arc<Readers> {
        Arc::new(Readers {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// Closes the idle connections; reads from now on fail.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Runs `sql` with `binds` and decodes its rows, on a blocking thread.
    pub(super) async fn rows(
        self: &Arc<Self>,
        sql: String,
        binds: Vec<Bind>,
    ) -> Result<Vec<ReportRow>, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Sql(sqlx::Error::PoolClosed));
        }
        let readers = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match readers.take() {
                Some(conn) => conn,
                None => open(&readers.path)?,
            };
            let rows = read(&conn, &sql, binds)?;
            readers.put_back(conn);
            Ok(rows)
        })
        .await
        .map_err(|e| StoreError::Config(format!("the report reader stopped: {e}")))?
    }

    fn take(&self) -> Option<Connection> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_KEPT {
            idle.push(conn);
        }
    }
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(8);
    Ok(conn)
}

fn read(conn: &Connection, sql: &str, binds: Vec<Bind>) -> Result<Vec<ReportRow>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let values = binds.into_iter().map(|b| match b {
        Bind::Text(t) => Value::Text(t),
        Bind::Int(n) => Value::Integer(n),
    });
    let mut rows = statement.query(rusqlite::params_from_iter(values))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(report_row(row)?);
    }
    Ok(out)
}

/// Columns in the order `report_sql` selects them.
fn report_row(r: &Row<'_>) -> Result<ReportRow, StoreError> {
    Ok(ReportRow {
        line: integer(r, 0)?.unwrap_or_default().max(0) as u64,
        provider: text(r, 1)?,
        organization_id: text(r, 2)?,
        user_id: text(r, 3)?,
        outcome: text(r, 4)?,
        roles_removed: super::roles(&text(r, 5)?),
        transfer_to_department_id: text(r, 6)?,
        attempts: integer(r, 7)?
            .unwrap_or_default()
            .clamp(0, i64::from(u32::MAX)) as u32,
        error_code: text(r, 8)?,
        error_message: text(r, 9)?,
        request_id: text(r, 10)?,
        batch_id: text(r, 11)?,
        reason: text(r, 12)?,
        finished_at: integer(r, 13)?.map(format_ms).unwrap_or_default(),
    })
}

/// A cell as text, empty when NULL; a number stored in a text column is
/// written as SQLite would print it.
fn text(r: &Row<'_>, i: usize) -> Result<String, StoreError> {
    Ok(match r.get_ref(i)? {
        ValueRef::Null => String::new(),
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Integer(n) => n.to_string(),
        ValueRef::Real(x) => x.to_string(),
    })
}

fn integer(r: &Row<'_>, i: usize) -> Result<Option<i64>, StoreError> {
    Ok(match r.get_ref(i)? {
        ValueRef::Null => None,
        ValueRef::Integer(n) => Some(n),
        ValueRef::Real(x) => Some(x as i64),
        ValueRef::Text(t) | ValueRef::Blob(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse().ok()),
    })
}
