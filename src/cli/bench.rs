//! `offboard bench`: end-to-end figures against the simulator, which runs as
//! a separate process so that peak memory is offboard's own.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, anyhow};
use clap::{Args, ValueEnum};
use secrecy::SecretString;

use super::run::{RunOptions, run_batch};
use super::{Failure, exit};
use crate::config::{Config, ProviderConfig, ProviderKind, ResolvedProvider};
use crate::engine::Engine;
use crate::store::Store;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Scenario {
    /// Users offboarded per second end to end (alias: engine).
    #[value(alias = "engine")]
    Pipeline,
    /// Wall time against a provider limit of 50 req/s (burst 20, 20 ms
    /// latency), as a ratio of calls ÷ limit, and the share of 429s.
    Ratelimit,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Leavers to offboard [default: 10,000 for pipeline, 1,000 for ratelimit].
    #[arg(long)]
    pub users: Option<usize>,
    /// Worker concurrency.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Print one JSON object instead of a table row.
    #[arg(long)]
    pub json: bool,
    /// Run on this PostgreSQL server instead of a temporary SQLite file: the
    /// bench creates a scratch database there and drops it afterwards.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// Worker processes sharing the queue: this one plus N-1 `offboard
    /// serve` processes started for the run.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
}

#[derive(Debug, serde::Serialize)]
struct Figure {
    scenario: &'static str,
    /// `sqlite` or `postgres`.
    backend: &'static str,
    /// Worker processes.
    workers: usize,
    users: usize,
    concurrency: usize,
    seconds: f64,
    value: f64,
    unit: &'static str,
    target: &'static str,
    /// Anything else the scenario measured.
    detail: String,
    peak_rss_mb: f64,
    cores: usize,
}

/// The simulator child process; killed when dropped.
struct SimProcess {
    child: Child,
    url: String,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sim(users: usize, token: &str, extra: &[&str]) -> anyhow::Result<SimProcess> {
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
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

pub async fn bench(args: BenchArgs) -> Result<u8, Failure> {
    let figure = match args.scenario {
        Scenario::Pipeline => pipeline(&args).await,
        Scenario::Ratelimit => ratelimit(&args).await,
    }
    .map_err(Failure::other)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&figure).map_err(Failure::other)?
        );
    } else {
        println!(
            "| scenario | backend | workers | users | concurrency | seconds | figure | target | detail | peak RSS | cores |\n|---|---|---|---|---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {:.2} | {:.3} {} | {} | {} | {:.0} MiB | {} |",
            figure.scenario,
            figure.backend,
            figure.workers,
            figure.users,
            figure.concurrency,
            figure.seconds,
            figure.value,
            figure.unit,
            figure.target,
            figure.detail,
            figure.peak_rss_mb,
            figure.cores
        );
    }
    Ok(exit::OK)
}

/// Provider settings of a bench connection.
#[derive(Default)]
struct Pacing {
    requests_per_second: Option<f64>,
    burst: Option<u32>,
}

/// Where a bench run keeps its queue and tables.
enum BenchDatabase {
    Sqlite(tempfile::TempDir),
    /// A scratch database on a PostgreSQL server, dropped when done.
    Postgres {
        server: String,
        name: String,
    },
}

impl BenchDatabase {
    async fn create(postgres: Option<&str>) -> anyhow::Result<BenchDatabase> {
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

    fn url(&self) -> String {
        match self {
            BenchDatabase::Sqlite(dir) => {
                format!("sqlite://{}", dir.path().join("bench.db").display())
            }
            BenchDatabase::Postgres { server, name } => {
                let (base, query) = server.split_once('?').unwrap_or((server, ""));
                let host_end = base.find("://").map_or(0, |i| i + 3);
                let base = match base[host_end..].find('/') {
                    Some(i) => &base[..host_end + i],
                    None => base,
                };
                let query = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{query}")
                };
                format!("{base}/{name}{query}")
            }
        }
    }

    async fn drop(self) -> anyhow::Result<()> {
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
struct WorkerProcess {
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

    fn stop(mut self) -> anyhow::Result<()> {
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

/// One bench batch: `users` leavers (usr_000002…) through the real
/// pipeline against the simulator at `sim`; returns the wall time.
async fn offboard_users(
    sim: &SimProcess,
    token: String,
    users: usize,
    args: &BenchArgs,
    pacing: Pacing,
) -> anyhow::Result<f64> {
    let database = BenchDatabase::create(args.postgres.as_deref()).await?;
    let seconds = offboard_users_on(sim, token, users, args, &database, pacing).await;
    database.drop().await?;
    seconds
}

async fn offboard_users_on(
    sim: &SimProcess,
    token: String,
    users: usize,
    args: &BenchArgs,
    database: &BenchDatabase,
    pacing: Pacing,
) -> anyhow::Result<f64> {
    let concurrency = args.concurrency;
    let dir = tempfile::tempdir()?;
    let mut csv = tempfile::NamedTempFile::new_in(dir.path())?;
    writeln!(csv, "user_id,organization_id,transfer_to_department_id")?;
    for i in 2..=users + 1 {
        writeln!(csv, "usr_{i:06},org_acme,dept_offboarded")?;
    }
    csv.flush()?;
    let provider = ProviderConfig {
        requests_per_second: pacing.requests_per_second,
        burst: pacing.burst,
        ..ProviderConfig::new(
            ProviderKind::Aitronos,
            format!("{}/aitronos/v1", sim.url),
            "OFFBOARD_SIM_TOKEN",
        )
    };
    let mut config = Config::default();
    config.database.url = database.url();
    config.worker.concurrency = concurrency;
    config.providers = BTreeMap::from([("sim".to_owned(), provider.clone())]);
    let providers = vec![ResolvedProvider {
        name: "sim".into(),
        config: provider,
        token: SecretString::from(token.clone()),
        client: None,
    }];
    let store = Store::open(&config.database).await?;
    // The other worker processes read the same settings from a file.
    let config_file = dir.path().join("worker.toml");
    std::fs::write(
        &config_file,
        format!(
            "[database]\nurl = \"{}\"\n[worker]\nconcurrency = {concurrency}\n[providers.sim]\nkind = \"aitronos\"\nbase_url = \"{}/aitronos/v1\"\ntoken_env = \"OFFBOARD_SIM_TOKEN\"\n",
            config.database.url, sim.url
        ),
    )?;
    let engine = Engine::with_store(config, providers, store)?;
    let extra = (1..args.workers.max(1))
        .map(|_| WorkerProcess::start(&config_file, &token))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    let result = run_batch(
        engine.clone(),
        std::fs::File::open(csv.path())?,
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
    let done = result.counts.succeeded + result.counts.already_done;
    if done != users as u64 {
        return Err(anyhow!(
            "only {done} of {users} users were offboarded: {}",
            result.counts.summary()
        ));
    }
    engine.store().close().await;
    Ok(seconds)
}

fn backend(args: &BenchArgs) -> &'static str {
    if args.postgres.is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

async fn pipeline(args: &BenchArgs) -> anyhow::Result<Figure> {
    let users = args.users.unwrap_or(10_000);
    let token = format!("bench-{:032x}", rand::random::<u128>());
    // One extra user: usr_000001 is the org's only owner and stays.
    let sim = start_sim(users + 1, &token, &[])?;
    let seconds = offboard_users(&sim, token, users, args, Pacing::default()).await?;
    Ok(Figure {
        scenario: "pipeline",
        backend: backend(args),
        workers: args.workers.max(1),
        users,
        concurrency: args.concurrency,
        seconds,
        value: users as f64 / seconds,
        unit: "users/s",
        target: "-",
        detail: String::new(),
        peak_rss_mb: peak_rss_mb(),
        cores: cores(),
    })
}

/// The provider's limit in the ratelimit scenario.
const LIMIT_RPS: f64 = 50.0;

async fn ratelimit(args: &BenchArgs) -> anyhow::Result<Figure> {
    let users = args.users.unwrap_or(1_000);
    let token = format!("bench-{:032x}", rand::random::<u128>());
    let sim = start_sim(
        users + 1,
        &token,
        &[
            "--rate-limit-rps",
            "50",
            "--rate-limit-burst",
            "20",
            "--latency-ms",
            "20",
        ],
    )?;
    // Pace exactly at the published limit, with a small burst so the
    // provider's own bucket always keeps some slack for arrival jitter.
    let pacing = Pacing {
        requests_per_second: Some(LIMIT_RPS),
        burst: Some(5),
    };
    let seconds = offboard_users(&sim, token, users, args, pacing).await?;
    let calls: Vec<serde_json::Value> = reqwest::get(format!("{}/_sim/calls", sim.url))
        .await?
        .error_for_status()?
        .json()
        .await?;
    let limited = calls.iter().filter(|c| c["status"] == 429).count();
    let minimum = calls.len() as f64 / LIMIT_RPS;
    Ok(Figure {
        scenario: "ratelimit",
        backend: backend(args),
        workers: args.workers.max(1),
        users,
        concurrency: args.concurrency,
        seconds,
        value: seconds / minimum,
        unit: "x minimum",
        target: "<= 1.05, 429s <= 1%",
        detail: format!(
            "{} calls, minimum {:.1} s, {} answered 429 ({:.2}%)",
            calls.len(),
            minimum,
            limited,
            100.0 * limited as f64 / calls.len().max(1) as f64
        ),
        peak_rss_mb: peak_rss_mb(),
        cores: cores(),
    })
}
