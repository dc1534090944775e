//! Opening the database: our tables through the store's pool and apalis's
//! through the queue's, both on the one database the config names. Every
//! command opens it here, so both sides are migrated, the queue's first
//! (as they always were), and the store never names the queue.

use std::time::Duration;

use crate::config::DatabaseConfig;
use crate::queue::QueuePool;
use crate::store::{Store, StoreError};

/// Opens both pools (creating a missing SQLite file) and migrates both
/// sides of the database.
pub async fn open(config: &DatabaseConfig) -> Result<(Store, QueuePool), StoreError> {
    let (store, queue) = connect(config).await?;
    // Two processes starting on a fresh database race to migrate; the
    // loser finds the tables made and its second pass is a no-op.
    let mut tries = 0;
    loop {
        match migrate(&store, &queue).await {
            Ok(()) => return Ok((store, queue)),
            Err(e) if tries < 5 => {
                tries += 1;
                tracing::debug!(error = %e, "migration raced another process; trying again");
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Opens both pools without migrating.
pub async fn connect(config: &DatabaseConfig) -> Result<(Store, QueuePool), StoreError> {
    let store = Store::connect(config).await?;
    let queue = QueuePool::connect(config).await?;
    Ok((store, queue))
}

/// Applies apalis's migrations and index changes, then ours; a no-op when
/// both are current.
pub async fn migrate(store: &Store, queue: &QueuePool) -> Result<(), StoreError> {
    queue.migrate().await?;
    store.migrate().await
}

/// Closes both pools.
pub async fn close(store: &Store, queue: &QueuePool) {
    store.close().await;
    queue.close().await;
}
