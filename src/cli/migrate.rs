//! `offboard migrate`: brings the database's schema (apalis's queue and our
//! tables) up to date. Every command also does this when it opens the
//! database; this one lets a deployment migrate once, before starting
//! workers, and prove it worked.

use std::path::Path;

use super::{Failure, exit, setup};

pub(super) async fn migrate(config: Option<&Path>) -> Result<u8, Failure> {
    let config = setup::load_config(config)?;
    let (store, queue) = crate::database::connect(&config.database)
        .await
        .map_err(Failure::other)?;
    crate::database::migrate(&store, &queue)
        .await
        .map_err(Failure::other)?;
    println!(
        "database migrated: {} ({})",
        config.database.display_url(),
        store.backend().as_str()
    );
    crate::database::close(&store, &queue).await;
    Ok(exit::OK)
}
