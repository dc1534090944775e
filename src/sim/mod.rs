//! The provider simulator: faithful fakes of the identity and SaaS providers
//! offboard talks to, backed by an in-memory [`Directory`].
//!
//! One port serves every provider under its own prefix (`/aitronos/v1`,
//! `/auth0/api/v2`, `/recoup`, `/scim/v2`), each a sibling module with its
//! own routes, error envelope and indexed store, plus `/_sim/…` for
//! inspection and run-time fault settings. It
//! models each vendor's documented API, never a particular client, so tests,
//! benchmarks and `offboard demo` exercise the same edge cases production will.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use offboard::sim::{Directory, FaultConfig, SimConfig, SimServer};
//! let config = SimConfig {
//!     token: "t".into(),
//!     seed: 42,
//!     faults: FaultConfig::default(),
//!     directory: Directory::generate(100, 42),
//! };
//! let server = SimServer::start("127.0.0.1:0".parse().unwrap(), config).await?;
//! println!("{}", server.aitronos_base_url());
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod aitronos;
mod auth0;
mod cli;
mod directory;
mod fasthash;
mod faults;
mod inspect;
mod net;
mod problem;
mod rank;
mod recoup;
mod request;
mod scim;
mod state;
#[cfg(test)]
mod tests;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::IntoResponse;
use serde_json::json;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use cli::{SimArgs, run_cli};
pub use directory::{
    AitronosDepartment, AitronosDirectory, AitronosMember, AitronosOrg, AitronosResource,
    AitronosRole, Auth0Client, Auth0Directory, Auth0Member, Auth0Org, Auth0Role, Auth0User,
    Directory, RecoupDirectory, RecoupOrg, ScimBehaviour, ScimDirectory, ScimGroup, ScimUser,
};
pub use faults::{FailNext, FaultConfig, RateLimit, RetryHint};
#[cfg(test)]
pub(crate) use net::serve_on_loopback;
pub use state::CallRecord;

use net::{Connection, ResettableListener};
use state::SimState;

/// How long `shutdown` waits for open connections before abandoning them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Errors of the simulator's setup and command line.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding, reading a seed file or waiting for signals failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// A seed file is not valid JSON of the directory's shape.
    #[error("invalid directory JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A directory whose ids clash or whose references dangle.
    #[error("invalid directory: {0}")]
    InvalidDirectory(String),
    /// Fault settings the simulator cannot honour.
    #[error("invalid fault settings: {0}")]
    InvalidFaults(String),
}

/// Everything a simulator starts with.
#[derive(Clone)]
pub struct SimConfig {
    /// The credential every provider route requires.
    pub token: String,
    /// Seeds every random choice (faults), so a run can be replayed.
    pub seed: u64,
    /// Initial fault settings; replaceable at run time via `POST /_sim/faults`.
    pub faults: FaultConfig,
    /// The initial directory.
    pub directory: Directory,
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The directory can hold a million members and the token is a secret.
        f.debug_struct("SimConfig")
            .field("token", &"<redacted>")
            .field("seed", &self.seed)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

/// A running simulator, serving in a background task.
///
/// Dropping it also stops the server (gracefully, in the background);
/// [`SimServer::shutdown`] does the same and waits for it.
pub struct SimServer {
    addr: SocketAddr,
    state: Arc<SimState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SimServer {
    /// Bind `listen` (e.g. `127.0.0.1:0`) and serve in a background tokio task.
    pub async fn start(listen: SocketAddr, config: SimConfig) -> io::Result<SimServer> {
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        config
            .directory
            .validate()
            .map_err(|e| invalid(e.to_string()))?;
        config.faults.validate().map_err(invalid)?;
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let directory = config.directory;
        let state = Arc::new(SimState {
            token: config.token,
            aitronos_store: Mutex::new(aitronos::AitronosStore::new(directory.aitronos)),
            auth0_store: Mutex::new(auth0::Auth0Store::new(directory.auth0)),
            recoup_store: Mutex::new(recoup::RecoupStore::new(directory.recoup)),
            scim_store: Mutex::new(scim::ScimStore::new(directory.scim)),
            issued: Mutex::default(),
            calls: state::CallLog::default(),
            faults: faults::FaultEngine::new(config.faults, config.seed),
            shutdown: stopped.clone(),
        });
        let app = app(state.clone()).into_make_service_with_connect_info::<Connection>();
        let mut signal = stopped;
        let serve =
            axum::serve(ResettableListener(listener), app).with_graceful_shutdown(async move {
                // A dropped sender (the SimServer dropped) also means stop.
                let _ = signal.wait_for(|stop| *stop).await;
            });
        let task = tokio::spawn(async move {
            if let Err(error) = serve.await {
                tracing::error!(%error, "simulator stopped serving");
            }
        });
        Ok(SimServer {
            addr,
            state,
            stop,
            task,
        })
    }

    /// The bound address (with the real port when `:0` was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the whole simulator, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let mut addr = self.addr;
        // A wildcard bind is reachable on loopback; the wildcard itself is not an address to call.
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}")
    }

    /// Base URL of the Aitronos API, e.g. `http://127.0.0.1:PORT/aitronos/v1`.
    pub fn aitronos_base_url(&self) -> String {
        format!("{}{}", self.url(), aitronos::PREFIX)
    }

    /// Base URL of the Auth0 Management API, e.g. `http://127.0.0.1:PORT/auth0/api/v2`.
    pub fn auth0_base_url(&self) -> String {
        format!("{}{}", self.url(), auth0::PREFIX)
    }

    /// Base URL of the Recoup API, e.g. `http://127.0.0.1:PORT/recoup`.
    pub fn recoup_base_url(&self) -> String {
        format!("{}{}", self.url(), recoup::PREFIX)
    }

    /// Base URL of the SCIM 2.0 service, e.g. `http://127.0.0.1:PORT/scim/v2`.
    pub fn scim_base_url(&self) -> String {
        format!("{}{}", self.url(), scim::PREFIX)
    }

    /// A snapshot copy of the current directory.
    pub fn state(&self) -> Directory {
        self.state.directory()
    }

    /// Gives an Aitronos member another role out of band, as an admin in
    /// the vendor's own console would.
    pub fn grant_aitronos_role(&self, org: &str, user: &str, role: &str) -> Result<(), String> {
        self.state
            .aitronos()
            .org_mut(org)
            .and_then(|o| o.grant_role(role, user))
            .map_err(|p| format!("{p:?}"))
    }

    /// A snapshot of the call log, in arrival order.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.state.calls.snapshot()
    }

    /// Stop accepting, end held calls, let answers in flight finish, and wait
    /// (at most a few seconds, so a stalled client cannot hold it forever).
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let mut task = self.task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
            .await
            .is_err()
        {
            tracing::warn!(
                "simulator connections still open after the grace period; abandoning them"
            );
            task.abort();
        }
    }
}

/// Every route of the simulator, with the call log around all of them.
fn app(state: Arc<SimState>) -> Router {
    Router::new()
        .merge(inspect::router(state.clone()))
        .nest(aitronos::PREFIX, aitronos::router(state.clone()))
        .nest(auth0::PREFIX, auth0::router(state.clone()))
        .route(
            auth0::TOKEN_PATH,
            axum::routing::post(auth0::token).with_state(state.clone()),
        )
        .nest(recoup::PREFIX, recoup::router(state.clone()))
        .nest(scim::PREFIX, scim::router(state.clone()))
        .fallback(|| async {
            let body =
                json!({"code": "NOT_FOUND", "message": "No simulated provider serves this path."});
            (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
        })
        .layer(middleware::from_fn_with_state(state, state::record_calls))
}
