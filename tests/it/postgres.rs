//! The PostgreSQL backend: the core scenario, worker processes sharing one
//! queue, a worker killed or stopped mid-batch, migrations. Each test makes
//! its own database on the server named by `OFFBOARD_TEST_POSTGRES_URL`
//! (`.ci/run` sets it when a server answers); without it each test says on
//! the terminal that it was skipped.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use offboard::config::with_database;
use offboard::sim::{CallRecord, Directory, FaultConfig};
use sqlx::{AssertSqlSafe, Connection, Executor, PgPool, Row};

use crate::helpers::{Harness, Options, Serve, eventually, users_csv};

pub(crate) const URL_ENV: &str = "OFFBOARD_TEST_POSTGRES_URL";

/// A database made for one test, dropped at its end.
pub(crate) struct TestDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    pub(crate) async fn create(test: &str) -> Option<TestDatabase> {
        let Ok(admin_url) = std::env::var(URL_ENV) else {
            // Past the harness's output capture, so a run without
            // PostgreSQL shows it rather than passing silently.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED postgres::{test}: {URL_ENV} is not set (no PostgreSQL server)"
            );
            return None;
        };
        let name = format!("offboard_it_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("{URL_ENV} does not answer: {e}"));
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap();
        let _ = conn.close().await;
        Some(TestDatabase {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
        })
    }

    pub(crate) async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url).await.unwrap()
    }

    pub(crate) async fn drop(self) {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        conn.execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .await
        .unwrap();
    }
}

/// Every row of our tables and apalis's jobs, as text: for proving that no
/// secret was stored.
pub(crate) async fn all_text(url: &str) -> String {
    let pool = PgPool::connect(url).await.unwrap();
    let mut text = String::new();
    for table in [
        "batches",
        "requests",
        "batch_entries",
        "rejected_rows",
        "step_checkpoints",
        "audit_events",
        "api_idempotency",
        "dropfolder_files",
        "reconcile_ticks",
        "apalis.jobs",
        "apalis.workers",
    ] {
        let rows: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT string_agg(t::text, '\n') FROM {table} t"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        text.push_str(&rows.unwrap_or_default());
    }
    pool.close().await;
    text
}

const USERS: usize = 2000;

/// A harness on `db` whose directory holds the owner plus `USERS` leavers
/// (`usr_000002` …), with an API on a free port so several processes can
/// serve at once.
async fn harness(db: &TestDatabase, latency_ms: u64) -> Harness {
    Harness::start_with(
        Directory::generate(USERS + 1, 11),
        Options {
            database_url: Some(db.url.clone()),
            faults: FaultConfig {
                latency_ms,
                ..FaultConfig::default()
            },
            extra_config: "[http]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"OFFBOARD_IT_API_TOKEN\"\n[safety]\nmax_batch_requests = 10000\n"
                .into(),
            ..Options::default()
        },
    )
    .await
}

/// `offboard submit` of every leaver; returns the batch id.
async fn submit_all(h: &Harness) -> String {
    let csv = h.write_csv("leavers.csv", &users_csv(2, USERS + 1));
    let out = h.offboard(&["submit", csv.to_str().unwrap()], &[]).await;
    assert!(
        out.status.success(),
        "submit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn open_requests(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE outcome IS NULL")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn wait_until_all_final(pool: &PgPool) {
    eventually(180, "every request to have an outcome", || async {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests")
            .fetch_one(pool)
            .await
            .unwrap();
        total == USERS as i64 && open_requests(pool).await == 0
    })
    .await;
}

/// Waits until the queue has recorded every job as finished. A request
/// turns final inside its job, before the job's ack reaches the queue; a
/// stop in that gap leaves the job held, and the stop gives it back as
/// pending (`queue::release_held`), which is harmless but not "finished".
async fn wait_until_all_acked(pool: &PgPool) {
    eventually(60, "every job to be acked", || async {
        let unfinished: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM apalis.jobs WHERE status IN ('Pending', 'Queued', 'Running')
                OR (status = 'Failed' AND attempts < max_attempts)",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        unfinished == 0
    })
    .await;
}

/// The user a provider call was about, from its path.
fn call_user(call: &CallRecord) -> Option<&str> {
    let at = call.path.find("/members/usr_")?;
    let rest = &call.path[at + "/members/".len()..];
    Some(rest.split('/').next().unwrap_or(rest))
}

/// The worker that made a call (the end of our User-Agent).
fn call_worker(call: &CallRecord) -> &str {
    call.user_agent
        .as_deref()
        .and_then(|ua| ua.rsplit(' ').next())
        .unwrap_or("")
}

/// Provider calls per user, by the worker that made them.
fn calls_by_user(calls: &[CallRecord]) -> HashMap<String, Vec<&CallRecord>> {
    let mut out: HashMap<String, Vec<&CallRecord>> = HashMap::new();
    for c in calls {
        if let Some(user) = call_user(c) {
            out.entry(user.to_owned()).or_default().push(c);
        }
    }
    out
}

/// Panics when two workers removed the same user's membership at the same
/// time.
fn assert_no_concurrent_removals(calls: &[CallRecord]) {
    for (user, calls) in calls_by_user(calls) {
        let removals: Vec<_> = calls.iter().filter(|c| c.method == "DELETE").collect();
        for (i, a) in removals.iter().enumerate() {
            for b in &removals[i + 1..] {
                if call_worker(a) != call_worker(b) {
                    let overlap = a.started_at < b.ended_at && b.started_at < a.ended_at;
                    assert!(
                        !overlap,
                        "{user} was removed by two workers at once: {a:?} / {b:?}"
                    );
                }
            }
        }
    }
}

/// Every leaver ends deleted at the provider, with exactly one stored
/// request and one report line.
async fn assert_everyone_offboarded_once(h: &Harness, pool: &PgPool, batch: &str) {
    let state = h.sim.state();
    let members = &state.aitronos.organizations[0].members;
    for i in 2..=USERS + 1 {
        let user = format!("usr_{i:06}");
        let m = members.iter().find(|m| m.user_id == user).unwrap();
        assert_eq!(m.account_state, "deleted", "{user}");
    }
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT idempotency_key) AS keys, COUNT(outcome) AS final,
                COUNT(*) FILTER (WHERE outcome IN ('succeeded', 'already_done')) AS done
         FROM requests",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    for column in ["n", "keys", "final", "done"] {
        assert_eq!(row.get::<i64, _>(column), USERS as i64, "{column}");
    }
    let report = h.report(batch).await;
    assert_eq!(report.len(), USERS, "one report line per leaver");
    let users: HashSet<&str> = report.iter().map(|r| r["user_id"].as_str()).collect();
    assert_eq!(users.len(), USERS, "no leaver reported twice");
    assert!(
        report
            .iter()
            .all(|r| r["outcome"] == "succeeded" || r["outcome"] == "already_done"),
        "{:?}",
        report.iter().find(|r| r["outcome"] != "succeeded")
    );
}

/// Two workers on a batch of every leaver (5 ms provider latency), once the
/// first has removed 100 memberships: the harness, a pool, both workers and
/// the batch id.
async fn two_workers_mid_batch(db: &TestDatabase) -> (Harness, PgPool, Serve, Serve, String) {
    let h = harness(db, 5).await;
    let pool = db.pool().await;
    assert!(h.offboard(&["migrate"], &[]).await.status.success());
    let a = h.serve(&[]).await;
    let b = h.serve(&[]).await;
    let batch = submit_all(&h).await;
    eventually(120, "the first worker to be mid-batch", || async {
        h.sim
            .calls()
            .iter()
            .filter(|c| c.method == "DELETE" && call_worker(c) == a.worker)
            .count()
            >= 100
    })
    .await;
    (h, pool, a, b, batch)
}

async fn stop_ok(serve: Serve) {
    let status = serve.stop().await;
    assert!(status.success(), "serve exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_scenario_on_postgres() {
    let Some(db) = TestDatabase::create("core_scenario_on_postgres").await else {
        return;
    };
    crate::pipeline::core_scenario(Some(db.url.clone())).await;
    db.drop().await;
}

/// The same scenarios as on SQLite, each on its own fresh database: the
/// commands (reconcile, approve, retry, status, report) behave the same.
macro_rules! same_as_sqlite {
    ($name:ident, $scenario:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(db) = TestDatabase::create(stringify!($name)).await else {
                return;
            };
            $scenario(Some(db.url.clone())).await;
            db.drop().await;
        }
    };
}

same_as_sqlite!(reconciliation_on_postgres, crate::reconcile::drift_scenario);
same_as_sqlite!(
    approve_only_on_postgres,
    crate::reconcile::approve_only_scenario
);
same_as_sqlite!(
    repeats_across_chunks_on_postgres,
    crate::pipeline::repeats_across_chunks_scenario
);
same_as_sqlite!(
    retry_of_dead_requests_on_postgres,
    crate::faults::exhausted_budget_scenario
);
same_as_sqlite!(
    undo_of_an_older_offboarding_on_postgres,
    crate::undo::newer_offboarding_scenario
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_then_are_a_no_op() {
    let Some(db) = TestDatabase::create("migrations_apply_once_then_are_a_no_op").await else {
        return;
    };
    let h = harness(&db, 0).await;
    let pool = db.pool().await;
    let first = h.offboard(&["migrate"], &[]).await;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("(postgres)"));
    let history = || async {
        let ours: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap();
        let queue: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM apalis._sqlx_migrations")
            .fetch_one(&pool)
            .await
            .unwrap();
        (ours, queue)
    };
    let after_first = history().await;
    assert!(!after_first.0.is_empty(), "our migrations were recorded");
    assert!(after_first.1 > 0, "apalis's migrations were recorded");
    for table in ["batches", "requests", "audit_events", "apalis.jobs"] {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} exists and is empty");
    }
    let second = h.offboard(&["migrate"], &[]).await;
    assert!(second.status.success());
    assert_eq!(history().await, after_first, "a second run changes nothing");
    pool.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_one_queue_without_overlap() {
    let Some(db) = TestDatabase::create("two_workers_share_one_queue_without_overlap").await else {
        return;
    };
    let h = harness(&db, 0).await;
    let pool = db.pool().await;
    assert!(h.offboard(&["migrate"], &[]).await.status.success());
    let a = h.serve(&[]).await;
    let b = h.serve(&[]).await;
    let batch = submit_all(&h).await;
    wait_until_all_final(&pool).await;
    // The prune below counts finished jobs.
    wait_until_all_acked(&pool).await;
    stop_ok(a).await;
    stop_ok(b).await;

    assert_everyone_offboarded_once(&h, &pool, &batch).await;
    let calls = h.sim.calls();
    assert_no_concurrent_removals(&calls);
    // Without a crash, every user's calls come from one process, and both
    // processes took part.
    let mut workers = HashSet::new();
    for (user, calls) in calls_by_user(&calls) {
        let by: HashSet<&str> = calls.iter().map(|c| call_worker(c)).collect();
        assert_eq!(by.len(), 1, "{user} was processed by {by:?}");
        workers.extend(by);
    }
    assert_eq!(workers.len(), 2, "both workers processed requests");
    // Housekeeping on PostgreSQL: finished jobs go, our records stay.
    let (store, queue) = offboard::database::open(&offboard::config::DatabaseConfig {
        url: db.url.clone(),
        ..offboard::config::DatabaseConfig::default()
    })
    .await
    .unwrap();
    let pruned = offboard::queue::prune_finished(&queue, std::time::Duration::ZERO)
        .await
        .unwrap();
    let slices = USERS.div_ceil(offboard::queue::SLICE_REQUESTS) as u64;
    assert!(pruned >= slices, "pruned {pruned}");
    offboard::database::close(&store, &queue).await;
    assert_eq!(open_requests(&pool).await, 0);
    pool.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_jobs_are_taken_over() {
    let Some(db) = TestDatabase::create("a_killed_worker_s_jobs_are_taken_over").await else {
        return;
    };
    let (h, pool, a, b, batch) = two_workers_mid_batch(&db).await;
    let survivor = b.worker.clone();
    a.kill().await;
    assert!(open_requests(&pool).await > 0, "the kill came mid-batch");
    wait_until_all_final(&pool).await;
    stop_ok(b).await;

    assert_everyone_offboarded_once(&h, &pool, &batch).await;
    assert_no_concurrent_removals(&h.sim.calls());
    // The queue gave the dead worker's jobs back (apalis counts that as an
    // attempt) and the survivor ran them; their requests were claimed a
    // second time once the dead worker's lease ran out.
    let taken_over: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM apalis.jobs WHERE lock_by = $1 AND status = 'Done' AND attempts >= 2",
    )
    .bind(&survivor)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(taken_over > 0, "no job of the killed worker was taken over");
    let reclaimed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE attempts >= 2")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(reclaimed > 0, "no request was resumed after the kill");
    let left: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM apalis.jobs WHERE status IN ('Pending', 'Queued', 'Running')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, 0, "no job was left behind");
    pool.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_hands_nothing_to_crash_recovery() {
    let Some(db) = TestDatabase::create("a_stopped_worker_hands_nothing_to_crash_recovery").await
    else {
        return;
    };
    let (h, pool, a, b, batch) = two_workers_mid_batch(&db).await;
    let stopped = a.worker.clone();
    stop_ok(a).await;
    // Right after a graceful stop: its in-flight requests finished their
    // steps and let go of their claims, and the jobs it had fetched but not
    // started are back in the queue, not waiting for its heartbeat to age.
    // A run's claim is the worker's name and a run id (`pipeline::run_job`).
    let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE claim_owner LIKE $1")
        .bind(format!("{stopped}:%"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(held, 0, "the stopped worker still holds claims");
    let stranded: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM apalis.jobs WHERE lock_by = $1 AND status IN ('Queued', 'Running')",
    )
    .bind(&stopped)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stranded, 0, "jobs were left for crash recovery");
    assert!(open_requests(&pool).await > 0, "the stop came mid-batch");
    wait_until_all_final(&pool).await;
    stop_ok(b).await;
    assert_everyone_offboarded_once(&h, &pool, &batch).await;
    assert_no_concurrent_removals(&h.sim.calls());
    pool.close().await;
    db.drop().await;
}

#[test]
fn test_database_urls_keep_server_and_options() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u@h/test?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}
