//! Reconciliation and the safety rails, through the real binary.

use std::path::{Path, PathBuf};

use crate::helpers::{Harness, Options, eventually, member, removal_calls};

struct Setup {
    h: Harness,
    jobs: PathBuf,
    roster: PathBuf,
}

/// 100 generated members (plus usr_breakglass, protected) and a job
/// `nightly` whose roster is `roster.csv`.
async fn setup(job_extra: &str) -> Setup {
    setup_on(job_extra, None).await
}

/// As [`setup`], on the PostgreSQL database at `database_url` when given.
async fn setup_on(job_extra: &str, database_url: Option<String>) -> Setup {
    let h = Harness::on_database(offboard::sim::Directory::generate(100, 5), database_url).await;
    with_job(h, job_extra)
}

/// As [`setup`], with the members of `directory` and more `config`.
async fn setup_with(job_extra: &str, directory: offboard::sim::Directory, config: &str) -> Setup {
    let options = Options {
        extra_config: config.to_owned(),
        ..Options::default()
    };
    setup_options(job_extra, directory, options).await
}

async fn setup_options(
    job_extra: &str,
    directory: offboard::sim::Directory,
    options: Options,
) -> Setup {
    with_job(Harness::start_with(directory, options).await, job_extra)
}

fn with_job(h: Harness, job_extra: &str) -> Setup {
    let jobs = h.dir.path().join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let roster = h.dir.path().join("roster.csv");
    std::fs::write(
        jobs.join("nightly.toml"),
        format!(
            "schedule = \"0 0 2 * * *\"\nprovider = \"acme\"\norganization_id = \"org_acme\"\nroster = {{ csv = \"{}\", match_on = \"email\" }}\ntransfer_to_department_id = \"dept_offboarded\"\n{job_extra}",
            roster.display()
        ),
    )
    .unwrap();
    Setup { h, jobs, roster }
}

fn write_roster(path: &Path, missing: &[usize]) {
    let mut text = String::from("name,email\n");
    for i in (1..=100).filter(|i| !missing.contains(i)) {
        text.push_str(&format!("User {i},user{i:06}@acme.example\n"));
    }
    std::fs::write(path, text).unwrap();
}

impl Setup {
    async fn reconcile(&self, extra: &[&str]) -> (Option<i32>, String, String) {
        let mut args = vec![
            "reconcile",
            "nightly",
            "--jobs",
            self.jobs.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = self.h.offboard(&args, &[]).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let batch = stdout
            .lines()
            .last()
            .unwrap_or_default()
            .trim_start_matches("batch ")
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        (
            out.status.code(),
            batch,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }
}

fn state(h: &Harness, user: &str) -> String {
    member(&h.sim, user).account_state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_offboarded_and_a_second_run_changes_nothing() {
    drift_scenario(None).await;
}

pub(crate) async fn drift_scenario(database_url: Option<String>) {
    let s = setup_on("", database_url).await;
    write_roster(&s.roster, &[50, 51, 52]);
    let (code, batch, err) = s.reconcile(&[]).await;
    assert_eq!(code, Some(0), "{err}");
    for i in 1..=100 {
        let expected = if (50..=52).contains(&i) {
            "deleted"
        } else {
            "active"
        };
        assert_eq!(state(&s.h, &format!("usr_{i:06}")), expected, "usr_{i:06}");
    }
    assert_eq!(state(&s.h, "usr_breakglass"), "active");
    let rows = s.h.report(&batch).await;
    let outcomes: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["user_id"].as_str(), r["outcome"].as_str()))
        .collect();
    assert_eq!(
        outcomes.iter().filter(|(_, o)| *o == "succeeded").count(),
        3,
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&("usr_breakglass", "skipped")));

    let calls = removal_calls(&s.h.sim);
    let (code, _, err) = s.reconcile(&[]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        removal_calls(&s.h.sim),
        calls,
        "the second run removes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_rosters_halt_before_any_change() {
    let s = setup("min_roster_rows = 90\nmax_removal_percent = 5.0\n").await;
    // Empty, keyless, and cut in half.
    let cases: [(&str, String); 3] = [
        ("empty", "name,email\n".into()),
        (
            "no key column",
            "name,mail\nUser 1,user000001@acme.example\n".into(),
        ),
        ("half", {
            let mut t = String::from("email\n");
            for i in 1..=50 {
                t.push_str(&format!("user{i:06}@acme.example\n"));
            }
            t
        }),
    ];
    for (what, text) in cases {
        std::fs::write(&s.roster, text).unwrap();
        let (code, batch, err) = s.reconcile(&[]).await;
        assert_eq!(code, Some(3), "{what}: {err}");
        assert!(err.contains("halted"), "{what}: {err}");
        assert_eq!(
            removal_calls(&s.h.sim),
            0,
            "{what}: no removal before approval"
        );
        let rows = s.h.report(&batch).await;
        assert!(!rows.is_empty(), "{what}: the plan is saved and readable");
        assert!(rows.iter().all(|r| r["outcome"] == "pending"), "{what}");
        let status = s.h.offboard(&["status", &batch, "--json"], &[]).await;
        let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(v["state"], "halted", "{what}");
    }
    // Applying the half-cut plan removes exactly what it planned.
    let (_, batch, _) = s.reconcile(&[]).await;
    let jobs = s.jobs.to_str().unwrap();
    let out =
        s.h.offboard(
            &["approve", &batch, "--jobs", jobs],
            &[("USER", "approver")],
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 1..=100 {
        let expected = if i > 50 { "deleted" } else { "active" };
        assert_eq!(state(&s.h, &format!("usr_{i:06}")), expected, "usr_{i:06}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_only_and_members_back_in_the_roster() {
    approve_only_scenario(None).await;
}

pub(crate) async fn approve_only_scenario(database_url: Option<String>) {
    let s = setup_on("max_removals = 5\n", database_url).await;
    write_roster(&s.roster, &(60..=69).collect::<Vec<_>>());
    let (code, batch, err) = s.reconcile(&[]).await;
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(removal_calls(&s.h.sim), 0);
    // usr_000069 is re-hired before the approval.
    write_roster(&s.roster, &(60..=68).collect::<Vec<_>>());
    let out =
        s.h.offboard(
            &[
                "approve",
                &batch,
                "--only",
                "usr_000060,usr_000061,usr_000069",
                "--jobs",
                s.jobs.to_str().unwrap(),
            ],
            &[("USER", "approver")],
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 60..=69 {
        let expected = if i <= 61 { "deleted" } else { "active" };
        assert_eq!(state(&s.h, &format!("usr_{i:06}")), expected, "usr_{i:06}");
    }
    let rows = s.h.report(&batch).await;
    let back = rows.iter().find(|r| r["user_id"] == "usr_000069").unwrap();
    assert_eq!(back["outcome"], "cancelled");
    assert!(back["error_message"].contains("roster"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_run_each_tick_once() {
    let s = setup("").await;
    write_roster(&s.roster, &[]);
    let spec = std::fs::read_to_string(s.jobs.join("nightly.toml"))
        .unwrap()
        .replace("0 0 2 * * *", "* * * * * *");
    std::fs::write(s.jobs.join("nightly.toml"), spec).unwrap();
    let jobs = s.jobs.to_str().unwrap();
    let a = s.h.serve(&["--no-api", "--jobs", jobs]).await;
    let b = s.h.serve(&["--no-api", "--jobs", jobs]).await;
    let db = format!(
        "sqlite://{}?mode=rwc",
        s.h.dir.path().join("offboard.db").display()
    );
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    eventually(20, "three ticks", || async {
        // The table appears once a process has migrated the new file.
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM reconcile_ticks WHERE batch_id IS NOT NULL")
                .fetch_one(&pool)
                .await
                .unwrap_or(0);
        n >= 3
    })
    .await;
    a.stop().await;
    b.stop().await;
    let ticks: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT scheduled_at) FROM reconcile_ticks")
        .fetch_one(&pool)
        .await
        .unwrap();
    let batches: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM batches WHERE source = 'reconcile'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(batches, ticks, "one batch per tick, none twice");
    assert!(ticks >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_csv_waits_for_approval() {
    let h = Harness::start_with(
        offboard::sim::Directory::generate(601, 9),
        Options::default(),
    )
    .await;
    let csv = h.write_csv("600.csv", &crate::helpers::users_csv(2, 601));
    let out = h.offboard(&["run", csv.to_str().unwrap()], &[]).await;
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_batch_requests"), "{err}");
    assert_eq!(h.sim.calls().len(), 0, "a halted batch makes no call");
    let batch = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("batch ")
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let status = h.offboard(&["status", &batch], &[]).await;
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains("halted: 600 requests exceed [safety] max_batch_requests"),
        "{shown}"
    );
    let out = h
        .offboard(&["approve", &batch], &[("USER", "approver")])
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(member(&h.sim, "usr_000601").account_state, "deleted");
    let status = h.offboard(&["status", &batch, "--json"], &[]).await;
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["state"], "completed");
    assert!(
        json["halt_reason"].is_null(),
        "an approval clears the reason"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effective_dates_and_cancel() {
    let h = Harness::start_with(crate::helpers::directory(), Options::default()).await;
    let soon = chrono::Utc::now() + chrono::Duration::seconds(3);
    let csv = h.write_csv(
        "dated.csv",
        &format!(
            "user_id,org,effective_at\nusr_000002,org_acme,{}\nusr_000003,org_acme,2099-01-01\n",
            soon.to_rfc3339()
        ),
    );
    let (code, batch, _) = h.run(&csv).await;
    assert_eq!(code, Some(0));
    let rows = h.report(&batch).await;
    assert!(rows.iter().all(|r| r["outcome"] == "scheduled"), "{rows:?}");
    assert!(
        h.sim.calls().is_empty(),
        "nothing is acted on before its time"
    );

    // Cancel the far one before it runs.
    let far = rows.iter().find(|r| r["user_id"] == "usr_000003").unwrap()["request_id"].clone();
    let out = h.offboard(&["cancel", &far], &[]).await;
    assert_eq!(out.status.code(), Some(0));

    let serve = h.serve(&["--no-api"]).await;
    eventually(30, "the dated request to run", || async {
        member(&h.sim, "usr_000002").account_state == "deleted"
    })
    .await;
    serve.stop().await;
    let first = h
        .sim
        .calls()
        .into_iter()
        .find(|c| c.path.contains("usr_000002"))
        .unwrap();
    assert!(
        first.started_at >= soon,
        "ran at {} before {soon}",
        first.started_at
    );
    let rows = h.report(&batch).await;
    let far_row = rows.iter().find(|r| r["user_id"] == "usr_000003").unwrap();
    assert_eq!(far_row["outcome"], "cancelled");
    assert!(!h.sim.calls().iter().any(|c| c.path.contains("usr_000003")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_batch_starts_no_new_step() {
    let h = Harness::start_with(
        offboard::sim::Directory::generate(40, 2),
        Options {
            faults: offboard::sim::FaultConfig {
                latency_ms: 150,
                ..Default::default()
            },
            concurrency: 2,
            ..Options::default()
        },
    )
    .await;
    let csv = h.write_csv("40.csv", &crate::helpers::users_csv(2, 40));
    let out = h.offboard(&["submit", csv.to_str().unwrap()], &[]).await;
    let batch = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let serve = h.serve(&["--no-api"]).await;
    eventually(30, "work to start", || async { !h.sim.calls().is_empty() }).await;
    let out = h.offboard(&["cancel", &batch], &[]).await;
    assert_eq!(out.status.code(), Some(0));
    let cancelled_at = chrono::Utc::now();
    let calls_at_cancel = h.sim.calls().len();
    eventually(30, "the batch to settle", || async {
        let s = h.offboard(&["status", &batch, "--json"], &[]).await;
        let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
        v["counts"]["open"] == 0
    })
    .await;
    serve.stop().await;
    let later = h
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.started_at > cancelled_at)
        .count();
    // At most the two in-flight steps finish (a step may make a few calls).
    assert!(later <= 8, "{later} calls started after the cancel");
    let rows = h.report(&batch).await;
    let cancelled = rows.iter().filter(|r| r["outcome"] == "cancelled").count();
    assert!(
        cancelled >= 30,
        "{cancelled} cancelled; {calls_at_cancel} calls at the cancel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reconciliation_changes_nothing() {
    let s = setup("").await;
    write_roster(&s.roster, &[70, 71]);
    let (code, batch, err) = s.reconcile(&["--dry-run"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("would remove usr_000070"), "{err}");
    assert_eq!(removal_calls(&s.h.sim), 0);
    let rows = s.h.report(&batch).await;
    let planned: Vec<_> = rows
        .iter()
        .filter(|r| r["error_code"] == "dry_run")
        .collect();
    assert_eq!(planned.len(), 2, "{rows:?}");
    assert!(
        planned
            .iter()
            .all(|r| r["outcome"] == "skipped" && !r["roles_removed"].is_empty())
    );
    assert_eq!(state(&s.h, "usr_000070"), "active");
}

async fn halt_code(s: &Setup, batch: &str) -> String {
    let status = s.h.offboard(&["status", batch, "--json"], &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    v["halt_code"].as_str().unwrap_or_default().to_owned()
}

/// A one-row roster with no rail set in the job halts before any change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_row_roster_halts_with_no_rail_set() {
    let s = setup("").await;
    std::fs::write(&s.roster, "email\nuser000001@acme.example\n").unwrap();
    let (code, batch, err) = s.reconcile(&[]).await;
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("max_removal_percent"), "{err}");
    // The member listing is Aitronos's one POST that reads.
    let writes: Vec<_> =
        s.h.sim
            .calls()
            .into_iter()
            .filter(|c| c.method != "GET" && !c.path.ends_with("/users"))
            .collect();
    assert!(writes.is_empty(), "no destructive call: {writes:?}");
    assert_eq!(halt_code(&s, &batch).await, "max_removal_percent");
}

/// Members with no email cannot be matched against an email roster: they
/// are planned skipped, never removed, and too many of them halt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_with_no_email_are_never_removed() {
    let mut dir = offboard::sim::Directory::generate(100, 5);
    for m in &mut dir.aitronos.organizations[0].members {
        if m.user_id == "usr_000005" {
            m.email.clear();
        }
    }
    let s = setup_with("", dir, "").await;
    write_roster(&s.roster, &[]);
    let (code, batch, err) = s.reconcile(&[]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(removal_calls(&s.h.sim), 0);
    let rows = s.h.report(&batch).await;
    let row = rows.iter().find(|r| r["user_id"] == "usr_000005").unwrap();
    assert_eq!(row["outcome"], "skipped", "{row:?}");
    assert_eq!(row["error_code"], "unmatched_member");
    assert_eq!(state(&s.h, "usr_000005"), "active");

    let mut dir = offboard::sim::Directory::generate(100, 5);
    for m in &mut dir.aitronos.organizations[0].members[..3] {
        m.email.clear();
    }
    let s = setup_with("", dir, "").await;
    write_roster(&s.roster, &[50]);
    let (code, batch, err) = s.reconcile(&[]).await;
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(halt_code(&s, &batch).await, "unmatched_members");
    assert_eq!(removal_calls(&s.h.sim), 0);
}

/// A roster far smaller than the last good run's halts; `[safety]
/// max_batch_requests` caps a reconciliation too; `check` warns about a
/// rail turned off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shrunk_roster_and_the_batch_cap_halt_a_reconciliation() {
    let s = setup_with(
        "max_removal_percent = \"off\"\n",
        offboard::sim::Directory::generate(100, 5),
        "[safety]\nmax_batch_requests = 5\n",
    )
    .await;
    let check =
        s.h.offboard(
            &["check"],
            &[("OFFBOARD__JOBS__DIR", s.jobs.to_str().unwrap())],
        )
        .await;
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        said.contains("warning: job nightly: max_removal_percent = \"off\""),
        "{said}"
    );

    write_roster(&s.roster, &[]);
    let (code, _, err) = s.reconcile(&[]).await;
    assert_eq!(code, Some(0), "a good run: {err}");
    write_roster(&s.roster, &(1..=60).collect::<Vec<_>>());
    let (code, batch, err) = s.reconcile(&[]).await;
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(halt_code(&s, &batch).await, "roster_shrunk");
    write_roster(&s.roster, &(1..=6).collect::<Vec<_>>());
    let (code, batch, err) = s.reconcile(&[]).await;
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(halt_code(&s, &batch).await, "max_batch_requests");
    assert_eq!(removal_calls(&s.h.sim), 0);
}

/// A reconciliation request that died is not run again once its member is
/// back in the roster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_leaves_a_member_back_in_the_roster_alone() {
    let faults = offboard::sim::FaultConfig {
        fail_next: vec![offboard::sim::FailNext {
            user_id: "usr_000050".into(),
            count: 1_000,
            status: 503,
            ..offboard::sim::FailNext::default()
        }],
        ..offboard::sim::FaultConfig::default()
    };
    let options = Options {
        faults,
        max_attempts: 2,
        ..Options::default()
    };
    let s = setup_options("", offboard::sim::Directory::generate(100, 5), options).await;
    write_roster(&s.roster, &[50]);
    let (code, batch, err) = s.reconcile(&[]).await;
    assert_eq!(code, Some(3), "{err}");
    let rows = s.h.report(&batch).await;
    assert_eq!(rows[0]["outcome"], "dead", "{rows:?}");
    // Re-hired, and the provider answers again.
    write_roster(&s.roster, &[]);
    reqwest::Client::new()
        .post(format!("{}/_sim/faults", s.h.sim.url()))
        .json(&offboard::sim::FaultConfig::default())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let jobs = s.jobs.to_str().unwrap();
    let out = s.h.offboard(&["retry", &batch, "--jobs", jobs], &[]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = s.h.report(&batch).await;
    assert_eq!(rows[0]["outcome"], "cancelled", "{rows:?}");
    assert_eq!(rows[0]["error_code"], "back_in_roster");
    assert_eq!(removal_calls(&s.h.sim), 0);
    assert_eq!(state(&s.h, "usr_000050"), "active");
}
