//! Everything a worker needs, built once per process: the store, the
//! queue, one connector per provider connection, and the safety lists.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, ResolvedProvider};
use crate::connectors::{self, Connector};
use crate::domain::{Protection, Step};
use crate::queue::{Queue, QueuePool};
use crate::store::{Store, StoreError};

/// Test hook: `OFFBOARD_CRASH_AFTER_STEP=strip_roles` aborts the process
/// right after that step's checkpoint is stored, to prove crash resume.
pub const CRASH_AFTER_STEP_ENV: &str = "OFFBOARD_CRASH_AFTER_STEP";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("provider connection {name}: {message}")]
    Connector { name: String, message: String },
}

/// Process-wide dependencies of the pipeline.
pub struct Engine {
    config: Config,
    store: Store,
    queue: Queue,
    connectors: HashMap<String, Arc<dyn Connector>>,
    protected: HashMap<String, Protection>,
    worker_name: String,
    crash_after: Option<Step>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("worker_name", &self.worker_name)
            .field("connectors", &self.connectors.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the database and builds the connectors.
    pub async fn start(
        config: Config,
        providers: Vec<ResolvedProvider>,
    ) -> Result<Arc<Engine>, EngineError> {
        let (store, queue) = crate::database::open(&config.database).await?;
        Self::with_store(config, providers, store, queue)
    }

    pub fn with_store(
        config: Config,
        providers: Vec<ResolvedProvider>,
        store: Store,
        queue: QueuePool,
    ) -> Result<Arc<Engine>, EngineError> {
        let worker_name = worker_name();
        let user_agent = format!("offboard/{} {worker_name}", env!("CARGO_PKG_VERSION"));
        let mut connectors = HashMap::new();
        let mut protected = HashMap::new();
        for p in &providers {
            let connector = connectors::build(p, &user_agent, &config.retry).map_err(|e| {
                EngineError::Connector {
                    name: p.name.clone(),
                    message: e.to_string(),
                }
            })?;
            connectors.insert(p.name.clone(), connector);
            // The connector's own account is never offboarded either.
            protected.insert(p.name.clone(), p.config.protection());
        }
        let queue = Queue::new(&queue, &config.worker);
        // Changes write the notifications some channel wants, in their
        // own transactions.
        store.set_notify_routes(crate::notify::routes(&config));
        let crash_after = std::env::var(CRASH_AFTER_STEP_ENV)
            .ok()
            .and_then(|s| s.parse().ok());
        Ok(Arc::new(Engine {
            config,
            store,
            queue,
            connectors,
            protected,
            worker_name,
            crash_after,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Closes the database's pools, ours and the queue's.
    pub async fn close(&self) {
        crate::database::close(&self.store, self.queue.pool()).await;
    }

    pub fn connector(&self, provider: &str) -> Option<&Arc<dyn Connector>> {
        self.connectors.get(provider)
    }

    pub fn connectors(&self) -> impl Iterator<Item = (&String, &Arc<dyn Connector>)> {
        self.connectors.iter()
    }

    /// The retry policy of a provider connection.
    pub fn retry_policy(&self, provider: &str) -> crate::config::RetryConfig {
        match self.config.providers.get(provider) {
            Some(p) => p.retry_policy(&self.config.retry),
            None => self.config.retry.clone(),
        }
    }

    /// Whether the person named `user` on `provider` (an id, or an email
    /// where the kind resolves one), whom the provider also knows by
    /// `emails`, must never be offboarded.
    pub fn is_protected<'a>(
        &self,
        provider: &str,
        user: &str,
        emails: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        self.protected
            .get(provider)
            .is_some_and(|p| p.covers(user, emails))
    }

    /// Unique per process, so the queue can tell a dead worker's jobs apart.
    pub fn worker_name(&self) -> &str {
        &self.worker_name
    }

    pub(crate) fn crash_after(&self) -> Option<Step> {
        self.crash_after
    }
}

/// This machine's name, as workers and the CLI's actor show it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

fn worker_name() -> String {
    let host = host_name();
    let suffix: u32 = rand::random::<u32>() % 0x10000;
    format!("offboard-{host}-{}-{suffix:04x}", std::process::id())
}
