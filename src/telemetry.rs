//! Logging: human-readable or JSON lines on stderr, filtered by `RUST_LOG`;
//! and, for `bench engine --postgres`, a count of the SQL statements this
//! process sends, split between apalis's tables and ours.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Log output format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber; `default_level` applies when `RUST_LOG`
/// is unset (quiet for one-shot commands, `info` for `serve`). With
/// `count_statements`, every statement sqlx sends is counted (sqlx reports
/// each one as a `sqlx::query` event, which costs a little formatting).
pub fn init(format: LogFormat, default_level: &str, count_statements: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("offboard={default_level},warn")));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Human => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    }
    .with_filter(filter);
    let counter = count_statements.then(|| {
        StatementCounter
            .with_filter(Targets::new().with_target("sqlx::query", tracing::Level::TRACE))
    });
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(counter)
        .try_init();
}

static ON_APALIS_TABLES: AtomicU64 = AtomicU64::new(0);
static ON_OURS: AtomicU64 = AtomicU64::new(0);

/// Statements sent so far by this process: `(on apalis's tables, on ours)`.
/// Zero unless `init` was asked to count.
pub fn statements_sent() -> (u64, u64) {
    (
        ON_APALIS_TABLES.load(Ordering::Relaxed),
        ON_OURS.load(Ordering::Relaxed),
    )
}

struct StatementCounter;

impl<S: tracing::Subscriber> Layer<S> for StatementCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut text = StatementText::default();
        event.record(&mut text);
        // apalis keeps its tables in the `apalis` schema on PostgreSQL and
        // names them `Jobs`/`Workers` on SQLite.
        let apalis = ["apalis.", "\"jobs\"", " jobs ", "\"workers\""]
            .iter()
            .any(|m| text.0.contains(m));
        let counter = if apalis { &ON_APALIS_TABLES } else { &ON_OURS };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The statement's summary and full text, lower-cased.
#[derive(Default)]
struct StatementText(String);

impl Visit for StatementText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if matches!(field.name(), "summary" | "db.statement") {
            self.0.push_str(&value.to_lowercase());
            self.0.push(' ');
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}
