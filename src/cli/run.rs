//! `offboard run` and `offboard submit`: CSV intake, then (for `run`) the
//! same queue workers as `serve`, in-process, until every request of the
//! batch is final or held.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::Args;

use super::{Failure, exit, setup};
use crate::domain::OutcomeCounts;
use crate::engine::Engine;
use crate::intake::{IntakeOptions, IntakeSummary, ProviderCatalog, SubmitError, submit_csv};
use crate::pipeline::spawn_worker;

/// How often `run` looks at its batch's progress.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// CSV of leavers (header row required; comma, semicolon or tab).
    pub file: PathBuf,
    /// Plan only: report what would be removed, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Provider connection for rows without a provider column.
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Plan every row afresh, even ones that succeeded recently.
    #[arg(long)]
    pub force: bool,
    /// Approve the batch even when it exceeds [safety] max_batch_requests
    /// (for scripts; refused above the cap while [safety] four_eyes is on).
    #[arg(long)]
    pub yes: bool,
    /// Store a preview: plan every row (reads only), remove nothing, and
    /// wait for `offboard approve BATCH` to apply exactly that plan.
    #[arg(long, conflicts_with_all = ["dry_run", "yes"])]
    pub hold: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub submit: SubmitArgs,
}

/// What a one-shot run should do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub source_name: Option<String>,
    pub dry_run: bool,
    pub provider: Option<String>,
    pub force: bool,
    /// Approve beyond the batch-size cap.
    pub yes: bool,
    /// A held preview.
    pub hold: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// The end of a one-shot run.
#[derive(Debug)]
pub struct RunResult {
    pub intake: IntakeSummary,
    pub counts: OutcomeCounts,
}

impl RunResult {
    /// Exit code for the run (`../shared/conventions.md`).
    pub fn exit_code(&self) -> u8 {
        if self.intake.halted.is_some() {
            exit::NEEDS_ATTENTION
        } else {
            exit::for_counts(&self.counts)
        }
    }
}

fn open(path: &Path) -> Result<std::fs::File, Failure> {
    std::fs::File::open(path)
        .map_err(|e| Failure::usage(anyhow!("cannot open {}: {e}", path.display())))
}

fn options(args: &SubmitArgs, progress: bool) -> RunOptions {
    RunOptions {
        source_name: args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
        dry_run: args.dry_run,
        provider: args.provider.clone(),
        force: args.force,
        yes: args.yes,
        hold: args.hold,
        progress,
    }
}

pub(super) async fn submit(config: Option<&Path>, args: SubmitArgs) -> Result<u8, Failure> {
    let engine = setup::engine(config).await?;
    let file = open(&args.file)?;
    let summary = intake(&engine, file, &options(&args, false)).await?;
    print_rejections(&summary);
    if summary.held {
        // The preview's plan steps read the providers here, then wait.
        let counts =
            process_batch(&engine, &summary.batch_id, std::io::stderr().is_terminal()).await?;
        eprintln!(
            "batch {} is held for review: {}; see `offboard report {}`, then `offboard approve {}`",
            summary.batch_id,
            counts.summary(),
            summary.batch_id,
            summary.batch_id
        );
        println!("{}", summary.batch_id);
        // A preview some of whose people could not be planned needs a look.
        return Ok(if counts.failures() > 0 {
            exit::NEEDS_ATTENTION
        } else {
            exit::OK
        });
    }
    if let Some(reason) = &summary.halted {
        eprintln!("batch {} is halted: {reason}", summary.batch_id);
        if args.yes {
            return Err(four_eyes_refusal(&summary.batch_id));
        }
    }
    println!("{}", summary.batch_id);
    Ok(if summary.rejected_count > 0 || summary.halted.is_some() {
        exit::NEEDS_ATTENTION
    } else {
        exit::OK
    })
}

pub(super) async fn run(config: Option<&Path>, args: RunArgs) -> Result<u8, Failure> {
    let engine = setup::engine(config).await?;
    let file = open(&args.submit.file)?;
    let progress = std::io::stderr().is_terminal();
    let result = run_batch(engine, file, &options(&args.submit, progress)).await?;
    println!(
        "batch {}: {}",
        result.intake.batch_id,
        result.counts.summary()
    );
    Ok(result.exit_code())
}

/// Stores the CSV as a batch and enqueues its new requests.
pub(super) async fn intake<R: Read>(
    engine: &Engine,
    input: R,
    opts: &RunOptions,
) -> Result<IntakeSummary, Failure> {
    let catalog =
        ProviderCatalog::new(engine.config(), opts.provider.as_deref(), "--provider NAME")
            .map_err(|e| Failure::usage(anyhow!(e)))?;
    if catalog.is_empty() {
        return Err(Failure::usage(anyhow!(
            "no provider connections are configured ([providers.NAME] in the config file)"
        )));
    }
    let options = IntakeOptions {
        source: "cli".into(),
        source_name: opts.source_name.clone(),
        dry_run: opts.dry_run,
        hold: opts.hold,
        dedupe_window: (!opts.force).then(|| engine.config().intake.dedupe_window()),
        // With four eyes, --yes approves nothing above the cap.
        max_requests: (!opts.yes || engine.config().safety.four_eyes)
            .then_some(engine.config().safety.max_batch_requests),
        actor: setup::actor(),
        origin: "cli",
    };
    submit_csv(engine.store(), engine.queue(), &catalog, input, &options)
        .await
        .map_err(|e| match e {
            SubmitError::Input(_) | SubmitError::NoValidRow { .. } => Failure::usage(e),
            other => Failure::other(other),
        })
}

/// Intake, then workers in this process until the batch has no open
/// request; then a clean worker stop.
pub(super) async fn run_batch<R: Read>(
    engine: Arc<Engine>,
    input: R,
    opts: &RunOptions,
) -> Result<RunResult, Failure> {
    let summary = intake(&engine, input, opts).await?;
    print_rejections(&summary);
    if let Some(reason) = &summary.halted {
        eprintln!("batch {} is halted: {reason}", summary.batch_id);
        if opts.yes {
            return Err(four_eyes_refusal(&summary.batch_id));
        }
        let batch = engine
            .store()
            .batch(&summary.batch_id)
            .await
            .map_err(Failure::other)?;
        let counts = match batch {
            Some(b) => engine
                .store()
                .batch_counts(&b)
                .await
                .map_err(Failure::other)?,
            None => OutcomeCounts::default(),
        };
        return Ok(RunResult {
            intake: summary,
            counts,
        });
    }
    let counts = process_batch(&engine, &summary.batch_id, opts.progress).await?;
    Ok(RunResult {
        intake: summary,
        counts,
    })
}

/// Runs workers in this process until the batch has no open request, then
/// stops them cleanly.
pub(super) async fn process_batch(
    engine: &Arc<Engine>,
    batch_id: &str,
    progress: bool,
) -> Result<OutcomeCounts, Failure> {
    engine
        .queue()
        .enqueue_missing(engine.store())
        .await
        .map_err(Failure::other)?;
    let worker = spawn_worker(engine.clone());
    let waited = wait_for_batch(engine, batch_id, progress, &worker).await;
    let stopped = worker.shutdown().await;
    let counts = waited?;
    stopped.map_err(|e| Failure::other(anyhow!(e)))?;
    Ok(counts)
}

async fn wait_for_batch(
    engine: &Engine,
    batch_id: &str,
    progress: bool,
    worker: &crate::queue::WorkerHandle,
) -> Result<OutcomeCounts, Failure> {
    let store = engine.store();
    let batch = store
        .batch(batch_id)
        .await
        .map_err(Failure::other)?
        .ok_or_else(|| Failure::other(anyhow!("batch {batch_id} vanished")))?;
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} requests ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    // Entries before this line had no request left to run when last read.
    let mut from_line = 0;
    let mut bar_counted: Option<(Instant, Duration)> = None;
    loop {
        match store
            .first_open_entry(batch_id, from_line)
            .await
            .map_err(Failure::other)?
        {
            Some(line) => from_line = line,
            None => {
                // Nothing open from here on; the full count decides, since
                // a `retry` may have reopened an earlier entry meanwhile.
                let counts = store.batch_counts(&batch).await.map_err(Failure::other)?;
                if counts.open == 0 {
                    if let Some(bar) = bar {
                        bar.finish_and_clear();
                    }
                    return Ok(counts);
                }
                from_line = 0;
            }
        }
        if let Some(bar) = &bar {
            // The bar's count reads every entry: at most a tenth of the time.
            let due = bar_counted
                .is_none_or(|(at, took)| at.elapsed() >= (took * 10).max(PROGRESS_INTERVAL));
            if due {
                let started = Instant::now();
                let counts = store.batch_counts(&batch).await.map_err(Failure::other)?;
                bar_counted = Some((started, started.elapsed()));
                bar.set_length(counts.requests());
                bar.set_position(counts.finished() + counts.scheduled);
            }
        }
        if worker.is_finished() {
            return Err(Failure::other(anyhow!(
                "the worker stopped before the batch finished; run `offboard serve` to resume it"
            )));
        }
        tokio::time::sleep(PROGRESS_INTERVAL).await;
    }
}

/// `--yes` above the cap while four eyes are asked for: the batch stays
/// halted for another person.
fn four_eyes_refusal(batch: &str) -> Failure {
    Failure::usage(anyhow!(
        "four_eyes_required: [safety] four_eyes = true, so --yes cannot approve batch {batch} above the cap; another person must run `offboard approve {batch}`"
    ))
}

fn print_rejections(summary: &IntakeSummary) {
    if summary.blank_lines_ignored > 0 {
        eprintln!("{} blank lines ignored", summary.blank_lines_ignored);
    }
    for r in &summary.rejected_rows {
        eprintln!("line {}: {}: {}", r.line, r.code, r.message);
    }
    let unshown = summary.rejected_count - summary.rejected_rows.len() as u64;
    if unshown > 0 {
        eprintln!("… and {unshown} more rejected rows (see the report)");
    }
}
