//! Crash resume: a worker that dies right after a step's checkpoint is
//! resumed by the next process at the following step.

use crate::helpers::{Harness, directory, member};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_request_resumes_at_the_next_step() {
    let h = Harness::start(directory()).await;
    let csv = h.write_csv(
        "leavers.csv",
        "user_id,org,transfer_to\nusr_000002,org_acme,dept_offboarded\nusr_000003,org_acme,dept_offboarded\nusr_000004,org_acme,dept_offboarded\n",
    );
    // One request at a time, and the process aborts right after the first
    // strip_roles checkpoint.
    let crashed = h
        .offboard(
            &["run", csv.to_str().unwrap()],
            &[
                ("OFFBOARD_CRASH_AFTER_STEP", "strip_roles"),
                ("OFFBOARD__WORKER__CONCURRENCY", "1"),
            ],
        )
        .await;
    assert_eq!(
        crashed.status.code(),
        None,
        "the process was killed by abort()"
    );
    let calls = h.sim.calls();
    let crashed_user = calls
        .iter()
        .find(|c| c.method == "DELETE")
        .map(|c| c.path.rsplit('/').next().unwrap().to_owned())
        .expect("roles were stripped before the crash");
    assert!(
        !calls
            .iter()
            .any(|c| c.method == "DELETE" && c.path.ends_with(&format!("/users/{crashed_user}")))
    );
    assert_eq!(member(&h.sim, &crashed_user).account_state, "active");
    let calls_before = calls.len();

    // Restart: the same file links to the open requests and finishes them.
    let (code, batch, out) = h.run(&csv).await;
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let after: Vec<_> = h.sim.calls().into_iter().skip(calls_before).collect();
    let for_user: Vec<_> = after
        .iter()
        .filter(|c| c.path.contains(&crashed_user))
        .collect();
    assert!(
        !for_user
            .iter()
            .any(|c| c.path.ends_with("effective-permissions") || c.path.contains("/roles/")),
        "plan and strip_roles are not repeated: {for_user:?}"
    );
    assert!(
        for_user
            .iter()
            .any(|c| c.method == "DELETE" && c.path.ends_with(&format!("/users/{crashed_user}")))
    );

    let rows = h.report(&batch).await;
    for r in &rows {
        assert_eq!(r["outcome"], "succeeded", "{r:?}");
        let m = member(&h.sim, &r["user_id"]);
        assert_eq!(m.account_state, "deleted");
        assert!(m.role_ids.is_empty());
    }
    let crashed_row = rows.iter().find(|r| r["user_id"] == crashed_user).unwrap();
    assert!(
        !crashed_row["roles_removed"].is_empty(),
        "roles removed before the crash are still reported"
    );
}

/// A request whose worker died right after removing its roles, and that a
/// person cancels before any worker resumes it, keeps those roles on its
/// record: the roles' checkpoint puts them on the request in its commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_after_its_worker_died_keeps_what_it_removed() {
    let h = Harness::start(directory()).await;
    let user = "usr_000002";
    let roles = member(&h.sim, user).role_ids;
    assert!(!roles.is_empty(), "the scenario needs a user with roles");
    let csv = h.write_csv(
        "leaver.csv",
        &format!("user_id,org,transfer_to\n{user},org_acme,dept_offboarded\n"),
    );
    let crashed = h
        .offboard(
            &["run", csv.to_str().unwrap()],
            &[("OFFBOARD_CRASH_AFTER_STEP", "strip_roles")],
        )
        .await;
    assert_eq!(
        crashed.status.code(),
        None,
        "the process was killed by abort()"
    );
    let url = format!("sqlite://{}", h.dir.path().join("offboard.db").display());
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    // The dead worker's claim lapses by the database's clock.
    crate::helpers::eventually(30, "the dead worker's claim to lapse", || async {
        sqlx::query(
            "SELECT 1 FROM requests WHERE outcome IS NULL
               AND claim_expires_at < CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        )
        .fetch_optional(&db)
        .await
        .unwrap()
        .is_some()
    })
    .await;
    let batch: String = sqlx::query_scalar("SELECT batch_id FROM requests")
        .fetch_one(&db)
        .await
        .unwrap();
    let out = h.offboard(&["cancel", &batch], &[]).await;
    assert_eq!(out.status.code(), Some(0));
    let (outcome, removed): (Option<String>, String) =
        sqlx::query_as("SELECT outcome, roles_removed FROM requests")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(outcome.as_deref(), Some("cancelled"));
    let mut removed: Vec<&str> = removed.split(';').filter(|r| !r.is_empty()).collect();
    let mut expected: Vec<&str> = roles.iter().map(String::as_str).collect();
    removed.sort_unstable();
    expected.sort_unstable();
    assert_eq!(removed, expected);
}
