//! `offboard` — durable, idempotent, audited offboarding of leavers from
//! identity and SaaS providers.
//!
//! # Layout
//! - [`domain`]: ids, outcomes, steps, requests, batch states — no I/O.
//! - [`identity`]: who is asking (tokens, a trusted proxy) and their role.
//! - [`connectors`]: the `Connector` trait, the shared HTTP client, one folder per provider kind (its calls, ids, options and capabilities).
//! - [`config`]: TOML + `OFFBOARD__SECTION__KEY` overrides, validated once.
//! - [`store`]: our tables (batches, requests, checkpoints, audit events), one function per query.
//! - [`queue`]: everything apalis: its pool, migrations and `Jobs` rows, pushing jobs, the worker that drains them.
//! - [`database`]: opens and migrates the store's and the queue's pools, the queue's first.
//! - [`engine`]: what a worker builds once: store, queue, connectors, safety lists.
//! - [`intake`]: streaming CSV intake with per-row rejections, drop folders.
//! - [`pipeline`]: the checkpointed per-request step loop, rails and undo.
//! - [`jobs`]: declarative job specs and the scheduled reconciliation they run.
//! - [`retention`]: purging finished batches after `keep_days`.
//! - [`notify`]: notifications by webhook, Slack and email, delivered from the store's outbox.
//! - [`report`]: CSV (formula-safe) and JSON reports.
//! - [`metrics`]: the Prometheus recorder behind `GET /metrics`.
//! - [`telemetry`]: logging setup (human or JSON lines), and the bench's count of SQL statements.
//! - [`api`]: the HTTP API of `offboard serve`.
//! - [`console`]: the web console on the API's listener.
//! - [`safe_fs`]: files written where others can write too, never through a link.
//! - [`sim`]: the provider simulator used by tests, the demo and benchmarks.
//! - [`cli`]: the `offboard` commands, `bench` among them.
//! - `import_circles` (tests only): no import circle between these modules.

pub mod api;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod console;
pub mod database;
pub mod domain;
pub mod engine;
pub mod identity;
#[cfg(test)]
mod import_circles;
pub mod intake;
pub mod jobs;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod queue;
pub mod report;
pub mod retention;
pub mod safe_fs;
pub mod sim;
pub mod store;
pub mod telemetry;
