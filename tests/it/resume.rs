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
