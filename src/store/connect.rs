//! Opening the database: WAL, a generous busy timeout, apalis's migrations
//! and ours (sharing `_sqlx_migrations`, each ignoring the other's versions).

use std::str::FromStr;
use std::time::Duration;

use apalis_sqlite::SqliteStorage;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::StoreError;

/// Handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: SqlitePool,
}

impl Store {
    /// Opens (creating when missing) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        // apalis's setup() sets per-connection PRAGMAs (synchronous=OFF among
        // them) on whatever connection runs it; we run its migrations
        // ourselves instead so every pooled connection stays durable.
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options)
            .await?;
        let store = Store { pool };
        // Two processes starting on a fresh file race to migrate; the loser
        // finds the tables made and its second pass is a no-op.
        let mut tries = 0;
        loop {
            match store.migrate().await {
                Ok(()) => return Ok(store),
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::debug!(error = %e, "migration raced another process; trying again");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Applies apalis's and our migrations; a no-op when both are current.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut queue = SqliteStorage::migrations();
        queue.set_ignore_missing(true);
        queue.run(&self.pool).await?;
        // apalis-sqlite 1.0's ack query picks this index and turns quadratic
        // (apalis-notes.md §5.1); the status indexes serve its other queries.
        sqlx::query("DROP INDEX IF EXISTS LIdx")
            .execute(&self.pool)
            .await?;
        let mut ours = sqlx::migrate!("./migrations/sqlite");
        ours.set_ignore_missing(true);
        ours.run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a transaction that holds SQLite's write lock from the start, so
    /// it never fails half-way with "database is locked" on upgrade.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}
