//! WAL checkpoints beside the SQLite writer, on a thread of their own.
//!
//! SQLite checkpoints in the commit that takes the WAL past
//! `wal_autocheckpoint` pages, copying pages and waiting for two fsyncs
//! while no other write can start. So the writer only notes how long the
//! WAL is (SQLite's WAL hook runs in its commit, on its thread) and wakes
//! this thread, which runs a PASSIVE checkpoint on a connection of its
//! own: one that takes no lock a writer waits for, so both go on at once
//! (BENCHMARKS.md, "Why: checkpoints beside the writer").

use std::cell::Cell;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;

use crate::store::StoreError;

/// WAL pages written since a checkpoint was last asked for past which
/// another is due (SQLite's `wal_autocheckpoint` default, as a length).
const CHECKPOINT_PAGES: i32 = 1_000;
/// WAL length past which the writer checkpoints itself, so the WAL stays
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
    /// WAL length when a checkpoint was last asked for.
    asked_at: Cell<i32>,
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
            asked_at: Cell::new(0),
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// After a commit on `writer`'s thread: once the WAL has grown by
    /// `CHECKPOINT_PAGES` since the last checkpoint was asked for, wakes the
    /// checkpoint thread, or checkpoints right here when the WAL is far too
    /// long.
    ///
    /// Growth, not length, is the trigger: under apalis's constant readers
    /// a PASSIVE checkpoint seldom restarts the WAL, so asking whenever it
    /// is long would checkpoint after almost every commit (BENCHMARKS.md,
    /// "Why: checkpoints beside the writer").
    pub(super) fn after_commit(&self, writer: &Connection) {
        match due(&self.asked_at, WAL_PAGES.get()) {
            Due::No => {}
            Due::Writer => {
                if let Err(e) = checkpoint(writer) {
                    tracing::warn!(error = %e, "WAL checkpoint failed; a later commit retries it");
                }
            }
            Due::Thread => {
                if let Some(wake) = &self.wake {
                    // Full: a wake-up is pending already.
                    let _ = wake.try_send(());
                }
            }
        }
    }
}

/// Who checkpoints after a commit that left `pages` in the WAL.
#[derive(Debug, PartialEq)]
enum Due {
    No,
    Thread,
    Writer,
}

fn due(asked_at: &Cell<i32>, pages: i32) -> Due {
    if pages < asked_at.get() {
        // The WAL restarted from its beginning.
        asked_at.set(0);
    }
    if pages - asked_at.get() < CHECKPOINT_PAGES {
        return Due::No;
    }
    asked_at.set(pages);
    if pages >= WRITER_CHECKPOINT_PAGES {
        Due::Writer
    } else {
        Due::Thread
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
    fn a_checkpoint_is_asked_for_once_per_growth_of_the_wal() {
        let asked_at = Cell::new(0);
        let step = CHECKPOINT_PAGES;
        assert_eq!(due(&asked_at, step - 1), Due::No);
        assert_eq!(due(&asked_at, step + 500), Due::Thread);
        // Still long, but grown by less than a step since: no checkpoint
        // after every commit.
        assert_eq!(due(&asked_at, step + 510), Due::No);
        assert_eq!(due(&asked_at, 2 * step + 499), Due::No);
        assert_eq!(due(&asked_at, 2 * step + 500), Due::Thread);
        // Restarted from its beginning: every page in it is new.
        assert_eq!(due(&asked_at, 40), Due::No);
        assert_eq!(due(&asked_at, step - 1), Due::No);
        assert_eq!(due(&asked_at, step), Due::Thread);
        // Far too long: the writer checkpoints, again once per step.
        assert_eq!(due(&asked_at, WRITER_CHECKPOINT_PAGES), Due::Writer);
        assert_eq!(due(&asked_at, WRITER_CHECKPOINT_PAGES + 1), Due::No);
        assert_eq!(due(&asked_at, WRITER_CHECKPOINT_PAGES + step), Due::Writer);
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
