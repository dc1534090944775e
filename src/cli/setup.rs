//! Shared start-up for commands: configuration, secrets, engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Failure;
use crate::config::{Config, DatabaseConfig, resolve_providers};
use crate::domain::Actor;
use crate::engine::Engine;
use crate::store::{Store, StoreError};

const DEFAULT_CONFIG: &str = "config/offboard.toml";

/// Loads the configuration: the given file, else the default file when it
/// exists, else built-in defaults; then environment overrides.
pub(super) fn load_config(path: Option<&Path>) -> Result<Config, Failure> {
    let default = PathBuf::from(DEFAULT_CONFIG);
    let path = match path {
        Some(p) => Some(p),
        None if default.exists() => Some(default.as_path()),
        None => None,
    };
    Config::load(path).map_err(Failure::usage)
}

/// Configuration, tokens and engine: everything a worker needs.
pub(super) async fn engine(path: Option<&Path>) -> Result<Arc<Engine>, Failure> {
    let config = load_config(path)?;
    let providers =
        resolve_providers(&config, |name| std::env::var(name).ok()).map_err(Failure::usage)?;
    Engine::start(config, providers)
        .await
        .map_err(Failure::other)
}

/// The person at this shell, as every decision they take is recorded:
/// `cli:USER@HOST`.
pub(super) fn actor() -> Actor {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    Actor::cli(&user, &crate::engine::host_name())
}

/// Only the database, for read-only commands that need no tokens.
pub(super) async fn store(path: Option<&Path>) -> Result<Store, Failure> {
    let config = load_config(path)?;
    open_store(&config.database).await.map_err(Failure::other)
}

/// Our tables, for a command that pushes no job: the database is opened
/// and migrated whole, as by every command, and the queue's pool closed.
pub(super) async fn open_store(config: &DatabaseConfig) -> Result<Store, StoreError> {
    let (store, queue) = crate::database::open(config).await?;
    queue.close().await;
    Ok(store)
}
