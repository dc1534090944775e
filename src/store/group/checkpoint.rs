//! WAL checkpoints beside the SQLite writer, on a thread of their own.
//!
//! SQLite checkpoints in the commit that takes the WAL past
//! `wal_autocheckpoint` pages: the committing connection copies those pages
//! into the database file and waits for two fsyncs before it returns. On
//! the writer that was 40% of an intake's write time (BENCHMARKS.md,
//! "Afternoon series, 2026-12-02"), time in which no other write could
//! start. The writer now only notes how long the WAL is (SQLite's WAL hook
//! runs in its commit, on its thread) and wakes this thread, which runs a
//! PASSIVE checkpoint on a connection of its own: one that takes no lock a
//! writer waits for, so both go on at once on two cores.

use std::cell::Cell;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;

use crate::store::StoreError;

/// WAL pages past which a checkpoint is due: SQLite's own default.
const CHECKPOINT_PAGES: i32 = 1_000;
/// WAL pages past which the writer checkpoints itself, so the WAL stays
/// bounded if the checkpoint thread falls behind or is held off by readers.
const WRITER_CHECKPOINT_PAGES: i32 = 16 * CHECKPOINT_PAGES;

thread_local! {
    /// Pages in the WAL after the last commit on this thread's connection.
    static WAL_PAGES: Cell<i32> = const { Cell::new(0) };
}

fn note_wal_pages(_: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    Ok(())
}

/// The checkpoint thread of one writer; dropping it stops the thread.
pub(super) struct Checkpoints {
    wake: Option<mpsc::SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpoints {
    /// Starts checkpointing the database at `path` for `writer`, whose
    /// commits no longer checkpoint on their own (the WAL hook replaces
    /// `wal_autocheckpoint`). Call [`Checkpoints::after_commit`] on the
    /// writer's thread.
    pub(super) fn start(writer: &Connection, path: &Path) -> Result<Checkpoints, StoreError> {
        let conn = Connection::open(path)?;
        writer.wal_hook(Some(note_wal_pages));
        // One wake-up pending at most: commits while a checkpoint runs
        // fold into the next one.
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("offboard-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    if let Err(e) = checkpoint(&conn) {
                        tracing::warn!(error = %e, "WAL checkpoint failed; the next commit retries it");
                    }
                }
            })
            .map_err(|e| StoreError::Config(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpoints {
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// After a commit on `writer`'s thread: wakes the checkpoint thread
    /// when the WAL is long, or checkpoints right here when it is far too
    /// long.
    pub(super) fn after_commit(&self, writer: &Connection) {
        let pages = WAL_PAGES.get();
        if pages >= WRITER_CHECKPOINT_PAGES {
            WAL_PAGES.set(0);
            if let Err(e) = checkpoint(writer) {
                tracing::warn!(error = %e, "WAL checkpoint failed; the next commit retries it");
            }
        } else if pages >= CHECKPOINT_PAGES
            && let Some(wake) = &self.wake
        {
            // Full: a wake-up is pending already.
            let _ = wake.try_send(());
        }
    }
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        self.wake = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies what it can of the WAL into the database file without waiting
/// for readers or the writer.
fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one commit of `bytes` random bytes leaves, on a writer's
    /// connection to a new WAL database with the checkpoint thread running:
    /// the WAL pages counted, the file's length right after the commit, and
    /// its length once the thread has run whatever it was woken for.
    struct OneCommit {
        wal_pages: i32,
        len_after_commit: u64,
        len_after_thread: u64,
    }

    fn one_commit(bytes: i64) -> OneCommit {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let conn = Connection::open(&path).unwrap();
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .unwrap();
        conn.execute("CREATE TABLE t (b BLOB)", []).unwrap();
        let checkpoints = Checkpoints::start(&conn, &path).unwrap();
        conn.execute("INSERT INTO t VALUES (randomblob(?1))", [bytes])
            .unwrap();
        let wal_pages = WAL_PAGES.get();
        let file_len = || std::fs::metadata(&path).unwrap().len();
        let len_after_commit = file_len();
        checkpoints.after_commit(&conn);
        // Joins the thread once it has run the checkpoint it was woken for.
        drop(checkpoints);
        OneCommit {
            wal_pages,
            len_after_commit,
            len_after_thread: file_len(),
        }
    }

    #[test]
    fn a_long_wal_is_copied_into_the_database_by_the_checkpoint_thread() {
        // About 1,500 pages of 4 KiB in one commit.
        let c = one_commit(6_000_000);
        assert!(c.wal_pages >= CHECKPOINT_PAGES, "{}", c.wal_pages);
        assert!(
            c.len_after_commit < 1_000_000,
            "nothing is copied in the commit"
        );
        assert!(c.len_after_thread >= 6_000_000, "{}", c.len_after_thread);
    }

    #[test]
    fn a_short_wal_waits_for_more_commits() {
        let c = one_commit(400_000);
        assert!(
            c.wal_pages > 0 && c.wal_pages < CHECKPOINT_PAGES,
            "{}",
            c.wal_pages
        );
        assert!(c.len_after_thread < 400_000, "{}", c.len_after_thread);
    }
}
