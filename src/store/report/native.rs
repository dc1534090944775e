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
use tokio::sync::Semaphore;

use super::{Bind, ReportRow};
use crate::store::connect::{POOL_CACHE_SIZE, SQLITE_BUSY_TIMEOUT};
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
    /// Reads at once, as many as the pool has connections: each holds a
    /// connection and a blocking thread.
    reading: Semaphore,
}

impl Readers {
    pub(crate) fn new(path: &Path, max_connections: u32) -> Arc<Readers> {
        Arc::new(Readers {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            reading: Semaphore::new(max_connections.max(1) as usize),
        })
    }

    /// Closes the idle connections; reads from now on fail.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.reading.close();
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Runs `sql` with `binds` and decodes its rows, on a blocking thread.
    pub(super) async fn rows(
        self: &Arc<Self>,
        sql: String,
        binds: Vec<Bind>,
    ) -> Result<Vec<ReportRow>, StoreError> {
        let _reading = self.reading.acquire().await.map_err(|_| closed_error())?;
        let readers = self.clone();
        tokio::task::spawn_blocking(move || {
            if readers.closed.load(Ordering::SeqCst) {
                return Err(closed_error());
            }
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
        if idle.len() < IDLE_KEPT && !self.closed.load(Ordering::SeqCst) {
            idle.push(conn);
        }
    }
}

fn closed_error() -> StoreError {
    StoreError::Sql(sqlx::Error::PoolClosed)
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(8);
    conn.pragma_update(None, "cache_size", POOL_CACHE_SIZE)?;
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

/// Columns in the order `report_sql` selects them, decoded as strictly as
/// sqlx's reader does: a value of the wrong type is an error.
fn report_row(r: &Row<'_>) -> Result<ReportRow, StoreError> {
    let required = |i: usize| integer(r, i)?.ok_or_else(|| mismatch(i, "NULL"));
    Ok(ReportRow {
        line: required(0)? as u64,
        provider: text(r, 1)?,
        organization_id: text(r, 2)?,
        user_id: text(r, 3)?,
        outcome: text(r, 4)?,
        roles_removed: crate::store::sql::roles_of_text(&text(r, 5)?),
        transfer_to_department_id: text(r, 6)?,
        attempts: required(7)? as u32,
        error_code: text(r, 8)?,
        error_message: text(r, 9)?,
        request_id: text(r, 10)?,
        batch_id: text(r, 11)?,
        reason: text(r, 12)?,
        finished_at: integer(r, 13)?.map(format_ms).unwrap_or_default(),
    })
}

fn mismatch(column: usize, found: &str) -> StoreError {
    StoreError::Corrupt(format!("report column {column}: unexpected {found}"))
}

/// A text cell, empty when NULL.
fn text(r: &Row<'_>, i: usize) -> Result<String, StoreError> {
    match r.get_ref(i)? {
        ValueRef::Null => Ok(String::new()),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .map(str::to_owned)
            .map_err(|_| mismatch(i, "text that is not UTF-8")),
        ValueRef::Integer(_) => Err(mismatch(i, "integer")),
        ValueRef::Real(_) => Err(mismatch(i, "real")),
        ValueRef::Blob(_) => Err(mismatch(i, "blob")),
    }
}

fn integer(r: &Row<'_>, i: usize) -> Result<Option<i64>, StoreError> {
    match r.get_ref(i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(n) => Ok(Some(n)),
        ValueRef::Text(_) => Err(mismatch(i, "text")),
        ValueRef::Real(_) => Err(mismatch(i, "real")),
        ValueRef::Blob(_) => Err(mismatch(i, "blob")),
    }
}
