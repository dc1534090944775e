//! What every scenario stands on: the simulator as a child process, a
//! scratch database, extra worker processes, and one batch of leavers
//! through the real pipeline.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, anyhow};
use secrecy::SecretString;

use super::BenchArgs;
use crate::cli::run::{RunOptions, run_batch};
use crate::config::{Config, ProviderConfig, ResolvedProvider};
use crate::connectors::KindSettings;
use crate::engine::Engine;

/// The simulator child process; killed when dropped.
pub(super) struct SimProcess {
    child: Child,
    pub(super) url: String,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn start_sim(users: usize, token: &str, extra: &[&str]) -> anyhow::Result<SimProcess> {
    let exe = std::env::current_exe().context("cannot find the offboard binary")?;
    let mut child = Command::new(exe)
        .args(["sim", "--listen", "127.0.0.1:0", "--users"])
        .arg(users.to_string())
        .args(extra)
        .env("OFFBOARD_SIM_TOKEN", token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the simulator")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no simulator stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| anyhow!("unexpected simulator output {line:?}"))?
        .to_owned();
    Ok(SimProcess { child, url })
}

/// Peak resident memory of this process, in MiB (Linux).
pub(super) fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Provider settings of a bench connection.
#[derive(Default)]
pub(super) struct Pacing {
    pub(super) requests_per_second: Option<f64>,
    pub(super) burst: Option<u32>,
}

/// Where a bench run keeps its queue and tables.
pub(super) enum BenchDatabase {
    Sqlite(tempfile::TempDir),
    /// A scratch database on a PostgreSQL server, dropped when done.
    Postgres {
        server: String,
        name: String,
    },
}

impl BenchDatabase {
    pub(super) async fn create(postgres: Option<&str>) -> anyhow::Result<BenchDatabase> {
        use sqlx::{Connection, Executor};
        let Some(server) = postgres else {
            return Ok(BenchDatabase::Sqlite(tempfile::tempdir()?));
        };
        let name = format!("offboard_bench_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(server)
            .await
            .context("cannot reach the PostgreSQL server")?;
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        conn.close().await?;
        Ok(BenchDatabase::Postgres {
            server: server.to_owned(),
            name,
        })
    }

    pub(super) fn url(&self) -> String {
        match self {
            BenchDatabase::Sqlite(dir) => {
                format!("sqlite://{}", dir.path().join("bench.db").display())
            }
            BenchDatabase::Postgres { server, name } => crate::config::with_database(server, name),
        }
    }

    /// Transactions committed or rolled back in the scratch database so far
    /// (`pg_stat_database`); `None` on SQLite. Backends report when they
    /// end a transaction or exit, so this reads until two looks agree.
    pub(super) async fn transactions(&self) -> anyhow::Result<Option<u64>> {
        use sqlx::Connection;
        let BenchDatabase::Postgres { server, name } = self else {
            return Ok(None);
        };
        let mut conn = sqlx::PgConnection::connect(server).await?;
        let mut last = None;
        for _ in 0..20 {
            let (count,): (i64,) = sqlx::query_as(
                "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = $1",
            )
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
            if last == Some(count) {
                break;
            }
            last = Some(count);
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        conn.close().await?;
        Ok(last.map(|n| u64::try_from(n).unwrap_or(0)))
    }

    pub(super) async fn drop(self) -> anyhow::Result<()> {
        use sqlx::{Connection, Executor};
        if let BenchDatabase::Postgres { server, name } = self {
            let mut conn = sqlx::PgConnection::connect(&server).await?;
            conn.execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .await?;
        }
        Ok(())
    }
}

/// An extra `offboard serve` worker process; stopped with SIGTERM.
pub(super) struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    fn start(config: &std::path::Path, token: &str) -> anyhow::Result<WorkerProcess> {
        let exe = std::env::current_exe().context("cannot find the offboard binary")?;
        let mut child = Command::new(exe)
            .arg("--config")
            .arg(config)
            .args(["serve", "--no-api", "--no-dropfolders", "--no-schedules"])
            .env("OFFBOARD_SIM_TOKEN", token)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start a worker process")?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no worker stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if !line.starts_with("worker ") {
            return Err(anyhow!("worker process did not start: {line:?}"));
        }
        Ok(WorkerProcess { child })
    }

    pub(super) fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            return Err(anyhow!("cannot signal worker process"));
        }
        let exit = self.child.wait()?;
        if !exit.success() {
            return Err(anyhow!("worker process exited with {exit}"));
        }
        Ok(())
    }
}

/// A CSV of `users` leavers, `usr_000002` onward (`usr_000001` is the
/// simulated org's only owner and stays), sorted by user id; with
/// `shuffled` the same rows scattered: row `j` is user `j × stride mod
/// users`, a stride coprime to the count, so every user comes once and
/// neighbouring rows are far apart in id order.
pub(super) fn leavers_csv(dir: &Path, users: usize, shuffled: bool) -> anyhow::Result<PathBuf> {
    let path = dir.join("leavers.csv");
    let mut csv = std::io::BufWriter::new(std::fs::File::create(&path)?);
    writeln!(csv, "user_id,organization_id,transfer_to_department_id")?;
    let stride = if shuffled { coprime_stride(users) } else { 1 };
    for j in 0..users {
        let i = (j as u64 * stride % users as u64) as usize + 2;
        writeln!(csv, "usr_{i:06},org_acme,dept_offboarded")?;
    }
    csv.flush()?;
    Ok(path)
}

/// The first number from a large prime up that shares no factor with `n`.
fn coprime_stride(n: usize) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    (1_000_003..).find(|s| gcd(*s, n as u64) == 1).unwrap_or(1)
}

/// An engine on a scratch database whose one provider connection, `sim`,
/// points at `sim_url` (no simulator is needed when nothing calls it).
pub(super) struct BenchEngine {
    pub(super) engine: Arc<Engine>,
    pub(super) dir: tempfile::TempDir,
    database: BenchDatabase,
    config_file: PathBuf,
    token: String,
}

impl BenchEngine {
    pub(super) async fn start(
        sim_url: &str,
        token: &str,
        args: &BenchArgs,
        pacing: Pacing,
    ) -> anyhow::Result<BenchEngine> {
        let database = BenchDatabase::create(args.postgres.as_deref()).await?;
        let dir = tempfile::tempdir()?;
        let concurrency = args.concurrency;
        let mut provider = ProviderConfig::new(
            KindSettings::Aitronos(Default::default()),
            format!("{sim_url}/aitronos/v1"),
            "OFFBOARD_SIM_TOKEN",
        );
        provider.connection.requests_per_second = pacing.requests_per_second;
        provider.connection.burst = pacing.burst;
        let mut config = Config::default();
        config.database.url = database.url();
        config.worker.concurrency = concurrency;
        config.providers = BTreeMap::from([("sim".to_owned(), provider.clone())]);
        // The benches approve their own batches (`yes`), as the figures
        // before four eyes did: they measure the work, not the rails.
        config.safety.four_eyes = false;
        let providers = vec![ResolvedProvider {
            name: "sim".into(),
            config: provider,
            token: SecretString::from(token.to_owned()),
            client: None,
        }];
        // Extra worker processes read the same settings from a file.
        let config_file = dir.path().join("worker.toml");
        std::fs::write(
            &config_file,
            format!(
                "[database]\nurl = \"{}\"\n[worker]\nconcurrency = {concurrency}\n[providers.sim]\nkind = \"aitronos\"\nbase_url = \"{sim_url}/aitronos/v1\"\ntoken_env = \"OFFBOARD_SIM_TOKEN\"\n",
                config.database.url
            ),
        )?;
        let (store, queue) = crate::database::open(&config.database).await?;
        let engine = Engine::with_store(config, providers, store, queue)?;
        Ok(BenchEngine {
            engine,
            dir,
            database,
            config_file,
            token: token.to_owned(),
        })
    }

    /// `n` more `offboard serve` processes on the same queue.
    pub(super) fn worker_processes(&self, n: usize) -> anyhow::Result<Vec<WorkerProcess>> {
        (0..n)
            .map(|_| WorkerProcess::start(&self.config_file, &self.token))
            .collect()
    }

    /// Closes the engine and drops its database; returns the transactions
    /// the database saw (PostgreSQL only).
    pub(super) async fn finish(self) -> anyhow::Result<Option<u64>> {
        self.engine.close().await;
        let transactions = self.database.transactions().await?;
        self.database.drop().await?;
        Ok(transactions)
    }
}

/// What one bench batch cost the database, from just before its intake to
/// its end.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct RoundTrips {
    /// Statements this process sent on apalis's tables and on ours.
    pub(super) statements_apalis: u64,
    pub(super) statements_ours: u64,
    /// Transactions of every process (PostgreSQL only).
    pub(super) transactions: Option<u64>,
    /// The batch's CSV report streamed to nowhere afterwards: rows a second.
    pub(super) report_rows_per_s: f64,
    /// Writes the runs waited for, how long they waited, and how long the
    /// group writer was busy committing.
    pub(super) writer: crate::store::WriterTimes,
}

impl RoundTrips {
    /// Counts from now on, for `finish`.
    pub(super) async fn start(database: &BenchDatabase) -> anyhow::Result<RoundTrips> {
        let (apalis, ours) = crate::telemetry::statements_sent();
        Ok(RoundTrips {
            statements_apalis: apalis,
            statements_ours: ours,
            transactions: database.transactions().await?,
            report_rows_per_s: 0.0,
            writer: crate::store::writer_times(),
        })
    }

    /// What was counted since `start`, given the transactions seen at the end.
    pub(super) fn since(self, transactions: Option<u64>) -> RoundTrips {
        let (apalis, ours) = crate::telemetry::statements_sent();
        RoundTrips {
            statements_apalis: apalis - self.statements_apalis,
            statements_ours: ours - self.statements_ours,
            transactions: transactions
                .zip(self.transactions)
                .map(|(end, start)| end.saturating_sub(start)),
            report_rows_per_s: self.report_rows_per_s,
            writer: crate::store::writer_times().since(self.writer),
        }
    }
}

/// One bench batch: `users` leavers through the real pipeline against the
/// simulator at `sim`, on `args.workers` processes; returns the wall time.
pub(super) async fn offboard_users(
    sim: &SimProcess,
    token: String,
    users: usize,
    args: &BenchArgs,
    pacing: Pacing,
) -> anyhow::Result<f64> {
    Ok(offboard_users_counted(sim, token, users, args, pacing)
        .await?
        .0)
}

/// `offboard_users`, with what the batch cost the database.
pub(super) async fn offboard_users_counted(
    sim: &SimProcess,
    token: String,
    users: usize,
    args: &BenchArgs,
    pacing: Pacing,
) -> anyhow::Result<(f64, RoundTrips)> {
    let bench = BenchEngine::start(&sim.url, &token, args, pacing).await?;
    let csv = leavers_csv(bench.dir.path(), users, false)?;
    let extra = bench.worker_processes(args.workers.max(1) - 1)?;
    let counted = RoundTrips::start(&bench.database).await?;
    let started = Instant::now();
    let result = run_batch(
        bench.engine.clone(),
        std::fs::File::open(&csv)?,
        &RunOptions {
            yes: true,
            ..RunOptions::default()
        },
    )
    .await
    .map_err(|f| f.error)?;
    let seconds = started.elapsed().as_secs_f64();
    for worker in extra {
        worker.stop()?;
    }
    let report_rows_per_s = report_rate(&bench, &result.intake.batch_id, users).await?;
    let mut counted = counted.since(bench.finish().await?);
    counted.report_rows_per_s = report_rows_per_s;
    let done = result.counts.succeeded + result.counts.already_done;
    if done != users as u64 {
        return Err(anyhow!(
            "only {done} of {users} users were offboarded: {}",
            result.counts.summary()
        ));
    }
    Ok((seconds, counted))
}

/// Streams the batch's CSV report (what `offboard report BATCH --format
/// csv` writes) into a sink: rows a second.
async fn report_rate(bench: &BenchEngine, batch_id: &str, rows: usize) -> anyhow::Result<f64> {
    let store = bench.engine.store().clone();
    let started = Instant::now();
    let parts = crate::report::csv_parts(store, batch_id.to_owned());
    crate::report::write_parts(parts, &mut std::io::sink()).await?;
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

pub(super) fn backend(args: &BenchArgs) -> &'static str {
    if args.postgres.is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shuffled_roster_names_every_leaver_once_out_of_order() {
        let dir = tempfile::tempdir().unwrap();
        for users in [1, 7, 1_000] {
            let text =
                std::fs::read_to_string(leavers_csv(dir.path(), users, true).unwrap()).unwrap();
            let ids: Vec<&str> = text
                .lines()
                .skip(1)
                .map(|l| l.split(',').next().unwrap())
                .collect();
            let mut sorted = ids.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), users, "each of {users} once");
            assert_eq!(sorted[0], "usr_000002");
            if users > 2 {
                assert_ne!(ids, sorted, "scattered");
            }
        }
    }
}
