//! `offboard` — durable, idempotent, audited offboarding of leavers from
//! identity and SaaS providers.
//!
//! # Layout
//! - [`domain`]: ids, outcomes, steps, requests — no I/O.
//! - [`config`]: TOML + `OFFBOARD__SECTION__KEY` overrides, validated once.
//! - [`intake`]: streaming CSV intake with per-row rejections.
//! - [`store`]: our tables (batches, requests, checkpoints, audit events).
//! - [`queue`]: the apalis queue and the worker that drains it.
//! - [`pipeline`]: the checkpointed per-request step loop.
//! - [`connectors`]: the `Connector` trait, the shared HTTP client, one
//!   module per provider.
//! - [`notify`]: notifications by webhook, Slack and email, delivered
//!   from the store's outbox.
//! - [`report`]: CSV (formula-safe) and JSON reports.
//! - [`sim`]: the provider simulator used by tests, the demo and benchmarks.
//! - [`safe_fs`]: files written where others can write too (drop folders,
//!   reports): created new, never through a symbolic link.
//! - [`cli`]: the `offboard` commands.

pub mod api;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod console;
pub mod domain;
pub mod engine;
pub mod identity;
pub mod intake;
pub mod jobs;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod queue;
pub mod reconcile;
pub mod report;
pub mod retention;
pub mod safe_fs;
pub mod sim;
pub mod store;
pub mod telemetry;
