//! End to end through the real binary: outcomes, provider state, idempotent
//! resubmission, dry runs.

use std::collections::HashMap;

use crate::helpers::{Harness, Options, directory, long_halted_batch, member, removal_calls};

fn leavers_csv(include_owner: bool) -> String {
    let mut csv = String::from("user_id,organization_id,transfer_to_department_id,reason\n");
    for i in 2..=55 {
        csv.push_str(&format!("usr_{i:06},org_acme,dept_offboarded,left\n"));
    }
    if include_owner {
        csv.push_str("usr_000001,org_acme,dept_offboarded,last owner\n");
    }
    csv.push_str("usr_breakglass,org_acme,,protected\n");
    csv.push_str("usr_000002,org_acme,dept_offboarded,duplicate\n");
    csv.push_str("usr_../../admin,org_acme,,hostile\n");
    csv.push_str("usr_000056,org_acme?x=1,,hostile org\n");
    csv.push_str("=cmd|'/c calc'!A1,org_acme,,formula\n");
    csv
}

fn by_user(rows: &[HashMap<String, String>]) -> HashMap<String, HashMap<String, String>> {
    rows.iter()
        .filter(|r| r["outcome"] != "rejected")
        .map(|r| (r["user_id"].clone(), r.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboards_a_batch_end_to_end() {
    core_scenario(None).await;
}

/// The core scenario, on SQLite (`None`) or the PostgreSQL database at `url`.
pub(crate) async fn core_scenario(database_url: Option<String>) {
    let postgres = database_url.clone();
    let h = Harness::on_database(directory(), database_url).await;
    let before = h.sim.state();
    let csv = h.write_csv("leavers.csv", &leavers_csv(true));
    let (code, batch, out) = h.run(&csv).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        code,
        Some(3),
        "needs_attention and rejected rows mean exit 3; stderr: {stderr}"
    );
    assert!(stderr.contains("duplicate_row"), "{stderr}");

    let rows = h.report(&batch).await;
    let users = by_user(&rows);
    // 54 + owner + protected, then 4 rejected lines.
    assert_eq!(users.len(), 56);
    let rejected: Vec<_> = rows.iter().filter(|r| r["outcome"] == "rejected").collect();
    let codes: Vec<_> = rejected.iter().map(|r| r["error_code"].as_str()).collect();
    assert_eq!(
        codes,
        [
            "duplicate_row",
            "invalid_user_id",
            "invalid_organization_id",
            "invalid_user_id"
        ]
    );
    assert_eq!(rejected[0]["line"], "58");
    assert!(rejected[0]["error_message"].contains("line 2"));
    // The formula cell is neutralised in the report.
    assert!(
        rejected[3]["user_id"].starts_with("'="),
        "{:?}",
        rejected[3]
    );

    let owner = &users["usr_000001"];
    assert_eq!(owner["outcome"], "needs_attention");
    assert_eq!(owner["error_code"], "LAST_OWNER_CANNOT_BE_REMOVED");
    assert!(owner["error_message"].contains("make another member an owner"));
    let owner_now = member(&h.sim, "usr_000001");
    assert_eq!(
        owner_now.account_state, "active",
        "the last owner keeps the membership"
    );
    assert!(owner_now.role_ids.contains(&"role_owner".to_owned()));

    assert_eq!(users["usr_breakglass"]["outcome"], "skipped");
    assert_eq!(users["usr_breakglass"]["error_code"], "protected_user");
    assert!(
        !h.sim
            .calls()
            .iter()
            .any(|c| c.path.contains("usr_breakglass")),
        "no call is made for a protected user"
    );
    assert_eq!(users["usr_000011"]["outcome"], "already_done");
    assert_eq!(users["usr_000010"]["outcome"], "succeeded");
    assert_eq!(users["usr_000010"]["roles_removed"], "");

    let org_before = &before.aitronos.organizations[0];
    let org_after = &h.sim.state().aitronos.organizations[0];
    for i in (2..=55).filter(|i| *i != 11) {
        let user = format!("usr_{i:06}");
        let row = &users[&user];
        assert_eq!(row["outcome"], "succeeded", "{user}: {row:?}");
        let held = &org_before
            .members
            .iter()
            .find(|m| m.user_id == user)
            .unwrap()
            .role_ids;
        let mut removed: Vec<&str> = row["roles_removed"]
            .split(';')
            .filter(|s| !s.is_empty())
            .collect();
        removed.sort();
        let mut expected: Vec<&str> = held.iter().map(String::as_str).collect();
        expected.sort();
        assert_eq!(removed, expected, "{user}");
        assert_eq!(row["attempts"], "1");
        let now = org_after
            .members
            .iter()
            .find(|m| m.user_id == user)
            .unwrap();
        assert_eq!(now.account_state, "deleted", "{user}");
        assert!(now.role_ids.is_empty(), "{user}");
        for res in org_before
            .resources
            .iter()
            .filter(|r| r.owner_user_id.as_deref() == Some(user.as_str()))
        {
            let moved = org_after.resources.iter().find(|r| r.id == res.id).unwrap();
            assert_eq!(
                moved.department_id.as_deref(),
                Some("dept_offboarded"),
                "{}",
                res.id
            );
        }
    }

    // Nothing secret reached the database.
    let stored = match &postgres {
        Some(url) => vec![crate::postgres::all_text(url).await.into_bytes()],
        None => vec![
            std::fs::read(h.dir.path().join("offboard.db")).unwrap(),
            std::fs::read(h.dir.path().join("offboard.db-wal")).unwrap_or_default(),
        ],
    };
    for bytes in stored {
        assert!(
            !bytes
                .windows(h.token.len())
                .any(|w| w == h.token.as_bytes())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_far_down_a_long_file_is_refused_with_the_first_line() {
    repeats_across_chunks_scenario(None).await;
}

/// Repeats thousands of lines after the row they repeat, past the intake's
/// first chunk of 5,000 rows: one the same, one to another department.
pub(crate) async fn repeats_across_chunks_scenario(database_url: Option<String>) {
    let h = Harness::on_database(directory(), database_url).await;
    let mut text = crate::helpers::users_csv(2, 6_001);
    text.push_str("usr_000002,org_acme,dept_offboarded\n");
    text.push_str("usr_000003,org_acme,dept_other\n");
    text.push_str("usr_000003,org_acme,dept_other\n");
    let csv = h.write_csv("long.csv", &text);
    // 6,000 requests exceed the harness's cap, so the batch waits: nothing runs.
    let out = h.offboard(&["submit", csv.to_str().unwrap()], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let batch = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!batch.is_empty(), "no batch id; stderr: {stderr}");
    let rows = h.report(&batch).await;
    let rejected: Vec<(&str, &str, &str)> = rows
        .iter()
        .filter(|r| r["outcome"] == "rejected")
        .map(|r| {
            (
                r["line"].as_str(),
                r["error_code"].as_str(),
                r["error_message"].as_str(),
            )
        })
        .collect();
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    assert_eq!(rejected[0].0, "6002");
    assert_eq!(rejected[0].1, "duplicate_row");
    assert!(rejected[0].2.contains("line 2"), "{rejected:?}");
    assert_eq!(rejected[1].0, "6003");
    assert_eq!(rejected[1].1, "conflicting_row");
    assert!(rejected[1].2.contains("line 3"), "{rejected:?}");
    // A repeat of a refused row is still a repeat of the first one.
    assert_eq!(rejected[2].1, "conflicting_row");
    assert!(rejected[2].2.contains("line 3"), "{rejected:?}");
    assert_eq!(rows.len() - rejected.len(), 6_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_csv_twice_makes_no_second_removal() {
    let h = Harness::start(directory()).await;
    let csv = h.write_csv("leavers.csv", &leavers_csv(false));
    let (_, first_batch, _) = h.run(&csv).await;
    let removals = removal_calls(&h.sim);
    assert!(removals > 50);
    let first = h.report(&first_batch).await;

    let (code, second_batch, _) = h.run(&csv).await;
    assert_ne!(first_batch, second_batch);
    assert_eq!(code, Some(3), "rejected rows still mean exit 3");
    assert_eq!(
        removal_calls(&h.sim),
        removals,
        "the second run removes nothing"
    );
    let second = h.report(&second_batch).await;
    assert_eq!(first.len(), second.len());
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a["line"], b["line"]);
        assert_eq!(a["outcome"], b["outcome"], "line {}", a["line"]);
        assert_eq!(a["roles_removed"], b["roles_removed"], "line {}", a["line"]);
        if a["outcome"] == "succeeded" || a["outcome"] == "already_done" {
            assert_eq!(b["batch_id"], first_batch, "reported from the first run");
            assert_eq!(a["request_id"], b["request_id"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_plans_and_changes_nothing() {
    let h = Harness::start(directory()).await;
    let csv = h.write_csv(
        "few.csv",
        "user_id,org\nusr_000002,org_acme\nusr_000001,org_acme\n",
    );
    let out = h
        .offboard(&["run", "--dry-run", csv.to_str().unwrap()], &[])
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(removal_calls(&h.sim), 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let batch = stdout
        .split(':')
        .next()
        .unwrap()
        .trim_start_matches("batch ")
        .to_owned();
    let rows = h.report(&batch).await;
    assert!(
        rows.iter()
            .all(|r| r["outcome"] == "skipped" && r["error_code"] == "dry_run")
    );
    let owner = rows.iter().find(|r| r["user_id"] == "usr_000001").unwrap();
    assert!(owner["roles_removed"].contains("role_owner"));
    // A dry run never answers for a real one.
    let (_, real, _) = h.run(&csv).await;
    let rows = h.report(&real).await;
    assert_eq!(
        rows.iter().find(|r| r["user_id"] == "usr_000002").unwrap()["outcome"],
        "succeeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_input_exits_2() {
    let h = Harness::start(directory()).await;
    let no_org = h.write_csv("bad.csv", "user_id,reason\nusr_1,x\n");
    let out = h.offboard(&["run", no_org.to_str().unwrap()], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("organization_id"));
    let none_valid = h.write_csv("none.csv", "user_id,org\nbad,org_acme\n");
    let out = h
        .offboard(&["submit", none_valid.to_str().unwrap()], &[])
        .await;
    assert_eq!(out.status.code(), Some(2));
    let out = h.offboard(&["run", "/nonexistent/file.csv"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_queue_jobs_are_pruned_and_requests_keep_their_record() {
    let h = Harness::start(directory()).await;
    let csv = h.write_csv("few.csv", &crate::helpers::users_csv(2, 6));
    let (code, batch, _) = h.run(&csv).await;
    assert_eq!(code, Some(0));
    let config = offboard::config::DatabaseConfig {
        url: format!("sqlite://{}", h.dir.path().join("offboard.db").display()),
        ..offboard::config::DatabaseConfig::default()
    };
    let (store, queue) = offboard::database::open(&config).await.unwrap();
    let kept = offboard::queue::prune_finished(&queue, std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(kept, 0, "jobs younger than the cut-off stay");
    let pruned = offboard::queue::prune_finished(&queue, std::time::Duration::ZERO)
        .await
        .unwrap();
    // Five requests share one slice's job.
    assert!(pruned >= 1, "pruned {pruned}");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM Jobs")
        .fetch_one(&sqlx::SqlitePool::connect(&config.url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(left, 0);
    offboard::database::close(&store, &queue).await;
    // Our tables still hold every request's outcome.
    let rows = h.report(&batch).await;
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r["outcome"] == "succeeded"));
}

/// A report longer than a page of the CSV writer (1,000 lines) comes out
/// whole and in line order, with rejected lines in their places. The batch
/// is halted by the cap, so nothing runs and every line is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_report_is_written_a_page_at_a_time() {
    let o = Options {
        extra_config: "[safety]\nmax_batch_requests = 2\n".into(),
        ..Options::default()
    };
    let h = Harness::start_with(directory(), o).await;
    let batch = long_halted_batch(&h).await;
    let report = h.report(&batch).await;
    let lines: Vec<u64> = report.iter().map(|r| r["line"].parse().unwrap()).collect();
    assert_eq!(lines, (2..=2_401).collect::<Vec<u64>>());
    let rejected: Vec<u64> = report
        .iter()
        .filter(|r| r["outcome"] == "rejected")
        .map(|r| r["line"].parse().unwrap())
        .collect();
    assert_eq!(rejected, vec![500, 1_000, 1_500, 2_000]);
    assert!(
        report
            .iter()
            .filter(|r| r["outcome"] != "rejected")
            .all(|r| r["outcome"] == "pending" && r["batch_id"] == batch)
    );
}
