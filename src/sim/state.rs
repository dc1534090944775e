//! State shared by every route: the directory, the call log, the fault
//! engine and the shutdown signal.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;

use super::aitronos::{self, AitronosStore};
use super::auth0::{self, Auth0Store};
use super::directory::Directory;
use super::faults::FaultEngine;
use super::net::NoAnswer;
use super::recoup::{self, RecoupStore};
use super::scim::{self, ScimStore};

/// Everything the handlers share.
pub(crate) struct SimState {
    /// The credential every provider route requires.
    pub token: String,
    /// Aitronos organizations, indexed.
    pub aitronos_store: Mutex<AitronosStore>,
    /// Auth0 users and organizations, indexed.
    pub auth0_store: Mutex<Auth0Store>,
    /// Recoup organizations and the caller's account.
    pub recoup_store: Mutex<RecoupStore>,
    /// SCIM users and groups, indexed.
    pub scim_store: Mutex<ScimStore>,
    /// Access tokens issued by the Auth0 token endpoint.
    pub issued: Mutex<crate::sim::auth0::Issued>,
    /// Every provider call, for `/_sim/calls`.
    pub calls: CallLog,
    /// Fault configuration and its evolving state.
    pub faults: FaultEngine,
    /// Turns `true` when the server starts shutting down; held calls end early.
    pub shutdown: watch::Receiver<bool>,
}

impl SimState {
    pub(crate) fn aitronos(&self) -> MutexGuard<'_, AitronosStore> {
        lock(&self.aitronos_store)
    }

    pub(crate) fn issued_tokens(&self) -> MutexGuard<'_, crate::sim::auth0::Issued> {
        lock(&self.issued)
    }

    pub(crate) fn auth0(&self) -> MutexGuard<'_, Auth0Store> {
        lock(&self.auth0_store)
    }

    pub(crate) fn recoup(&self) -> MutexGuard<'_, RecoupStore> {
        lock(&self.recoup_store)
    }

    pub(crate) fn scim(&self) -> MutexGuard<'_, ScimStore> {
        lock(&self.scim_store)
    }

    /// A copy of the whole directory in its JSON shape. Each provider is
    /// copied under its own lock, so calls in flight may land between them.
    pub(crate) fn directory(&self) -> Directory {
        Directory {
            aitronos: self.aitronos().snapshot(),
            auth0: self.auth0().snapshot(),
            recoup: self.recoup().snapshot(),
            scim: self.scim().snapshot(),
        }
    }
}

/// Lock a mutex even if a panicking thread poisoned it: the simulator must
/// keep answering, and every update leaves the data consistent before it can panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One call to a provider route, as the simulator saw it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CallRecord {
    /// Arrival order, starting at 1.
    pub seq: u64,
    /// `aitronos`, `auth0`, `recoup` or `scim`; `unknown` for a path outside
    /// every provider's prefix.
    pub provider: String,
    /// HTTP method.
    pub method: String,
    /// Path as sent, prefix included, still percent-encoded.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Status answered; 0 when no HTTP answer was sent (reset, or the client left first).
    pub status: u16,
    /// When the request arrived (microsecond precision).
    pub started_at: DateTime<Utc>,
    /// When the answer was handed to the connection (microsecond precision).
    pub ended_at: DateTime<Utc>,
    /// The caller's `User-Agent`.
    pub user_agent: Option<String>,
}

/// Calls in completion order; readers sort them by arrival.
#[derive(Debug, Default)]
pub(crate) struct CallLog {
    next_seq: AtomicU64,
    records: Mutex<Vec<CallRecord>>,
}

impl CallLog {
    /// All calls so far, in arrival order.
    pub(crate) fn snapshot(&self) -> Vec<CallRecord> {
        let mut records = lock(&self.records).clone();
        records.sort_by_key(|r| r.seq);
        records
    }
}

/// Writes the record when dropped, so a call whose future is dropped
/// (the client went away) is still logged.
struct PendingCall<'a> {
    log: &'a CallLog,
    record: Option<CallRecord>,
}

impl Drop for PendingCall<'_> {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.ended_at = now();
            lock(&self.log.records).push(record);
        }
    }
}

/// Middleware: log every call except the simulator's own inspection routes.
pub(crate) async fn record_calls(
    State(state): State<Arc<SimState>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    if path == "/_sim" || path.starts_with("/_sim/") {
        return next.run(req).await;
    }
    let mut pending = PendingCall {
        log: &state.calls,
        record: Some(CallRecord {
            seq: state.calls.next_seq.fetch_add(1, Ordering::Relaxed) + 1,
            provider: provider_of(&path).to_owned(),
            method: req.method().to_string(),
            query: req.uri().query().map(str::to_owned),
            status: 0,
            started_at: now(),
            ended_at: now(),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            path,
        }),
    };
    let response = next.run(req).await;
    if let Some(record) = pending.record.as_mut()
        && response.extensions().get::<NoAnswer>().is_none()
    {
        record.status = response.status().as_u16();
    }
    drop(pending);
    response
}

fn provider_of(path: &str) -> &'static str {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    [
        (aitronos::PREFIX, aitronos::PROVIDER),
        (auth0::PREFIX, auth0::PROVIDER),
        (recoup::PREFIX, recoup::PROVIDER),
        (scim::PREFIX, scim::PROVIDER),
    ]
    .into_iter()
    .find(|(prefix, _)| under(prefix))
    .map_or("unknown", |(_, provider)| provider)
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
