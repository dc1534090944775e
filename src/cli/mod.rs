//! The `offboard` command line. Each command lives in its own module; this
//! one parses arguments, sets up logging and maps failures to exit codes:
//! 0 all fine, 3 some request needs a person, 2 unusable input or config,
//! 1 anything else.

mod audit;
mod bench;
mod check;
mod demo;
mod migrate;
mod notify;
mod rails;
mod reconcile;
mod report;
mod retry;
mod run;
mod serve;
mod setup;
mod status;
mod tokens;
mod undo;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::telemetry::{self, LogFormat};

pub use run::{RunOptions, RunResult};

/// Exit codes (`../shared/conventions.md`).
pub mod exit {
    pub const OK: u8 = 0;
    pub const OTHER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NEEDS_ATTENTION: u8 = 3;

    /// The exit code of a batch's counts: 3 when a request needs a person
    /// (needs_attention, failed, dead) or a row was rejected, else 0.
    pub fn for_counts(counts: &crate::domain::OutcomeCounts) -> u8 {
        if counts.failures() > 0 || counts.rejected > 0 {
            NEEDS_ATTENTION
        } else {
            OK
        }
    }
}

/// A command's failure, with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: exit::USAGE,
            error: error.into(),
        }
    }

    pub fn other(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: exit::OTHER,
            error: error.into(),
        }
    }
}

/// Offboard leavers from identity and SaaS providers: durable, idempotent,
/// audited.
#[derive(Debug, Parser)]
#[command(name = "offboard", version, about)]
pub struct Cli {
    /// Configuration file (TOML). Defaults to config/offboard.toml when it
    /// exists; OFFBOARD__SECTION__KEY variables override it.
    #[arg(long, global = true, value_name = "FILE", env = "OFFBOARD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log output format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "human",
        env = "OFFBOARD_LOG_FORMAT"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enqueue a CSV of leavers and process it to completion in this process.
    Run(run::RunArgs),
    /// Enqueue a CSV of leavers and print the batch id.
    Submit(run::SubmitArgs),
    /// Run the HTTP API, drop folders and workers until SIGINT or SIGTERM.
    Serve(serve::ServeArgs),
    /// Show batches, or one batch's counts and state.
    Status(status::StatusArgs),
    /// Write a batch's report as CSV or JSON.
    Report(report::ReportArgs),
    /// Run a batch's dead (or failed, needs_attention) requests again.
    Retry(retry::RetryArgs),
    /// Run one reconciliation of a scheduled job now.
    Reconcile(reconcile::ReconcileArgs),
    /// Apply a halted batch (all of it, or --only some users).
    Approve(rails::ApproveArgs),
    /// Stop a batch or a request: no new step starts, unstarted requests end cancelled.
    Cancel(rails::CancelArgs),
    /// Give back what a batch removed (all of it, or --only some users),
    /// as a new batch that passes the same rails.
    Undo(undo::UndoArgs),
    /// Run the example leavers against the built-in simulator.
    Demo,
    /// Validate the configuration and reach every provider.
    Check,
    /// Apply the database migrations (also done by every command at start).
    Migrate,
    /// Serve the provider simulator.
    Sim(crate::sim::SimArgs),
    /// Benchmarks against the simulator.
    Bench(bench::BenchArgs),
    /// Personal API tokens: add, list, revoke.
    Tokens(tokens::TokensArgs),
    /// The audit trail: decisions with their actors, and provider calls.
    Audit(audit::AuditArgs),
    /// Delete finished batches past [retention] keep_days (a `purged`
    /// record stays for each).
    Purge(audit::PurgeArgs),
    /// Notifications: pending and dead deliveries, or a test message.
    Notify(notify::NotifyArgs),
}

/// Runs the parsed command and returns the process exit code.
pub async fn execute(cli: Cli) -> u8 {
    let level = match cli.command {
        Command::Serve(_) | Command::Sim(_) => "info",
        _ => "warn",
    };
    let count_statements =
        matches!(&cli.command, Command::Bench(args) if bench::counts_statements(args));
    telemetry::init(cli.log_format, level, count_statements);
    // Installed first, so no count from this process is lost.
    crate::metrics::handle();
    let config_path = cli.config.clone();
    // Commands that change batches deliver the notifications they caused
    // before exiting (at most 10 s), so a cron job without `serve` tells.
    let delivers = matches!(
        cli.command,
        Command::Run(_) | Command::Approve(_) | Command::Retry(_) | Command::Reconcile(_)
    );
    let since = crate::domain::now_ms();
    let result = match cli.command {
        Command::Run(args) => run::run(config_path.as_deref(), args).await,
        Command::Submit(args) => run::submit(config_path.as_deref(), args).await,
        Command::Serve(args) => serve::serve(config_path.as_deref(), args).await,
        Command::Status(args) => status::status(config_path.as_deref(), args).await,
        Command::Report(args) => report::report(config_path.as_deref(), args).await,
        Command::Retry(args) => retry::retry(config_path.as_deref(), args).await,
        Command::Reconcile(args) => reconcile::reconcile(config_path.as_deref(), args).await,
        Command::Approve(args) => rails::approve(config_path.as_deref(), args).await,
        Command::Cancel(args) => rails::cancel(config_path.as_deref(), args).await,
        Command::Undo(args) => undo::undo(config_path.as_deref(), args).await,
        Command::Demo => demo::demo().await,
        Command::Check => check::check(config_path.as_deref()).await,
        Command::Migrate => migrate::migrate(config_path.as_deref()).await,
        Command::Sim(args) => crate::sim::run_cli(args)
            .await
            .map(|_| exit::OK)
            .map_err(Failure::other),
        Command::Bench(args) => bench::bench(args).await,
        Command::Tokens(args) => tokens::tokens(config_path.as_deref(), args).await,
        Command::Audit(args) => audit::audit(config_path.as_deref(), args).await,
        Command::Purge(args) => audit::purge(config_path.as_deref(), args).await,
        Command::Notify(args) => notify::notify(config_path.as_deref(), args).await,
    };
    if delivers {
        notify::deliver_caused(config_path.as_deref(), since).await;
    }
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            f.code
        }
    }
}
