//! `offboard undo` (issue 36, item 2): an undo batch gives back what a
//! batch removed, as its own record says, through the same rails as any
//! batch; idempotent, audited, and never restoring someone a newer
//! offboarding still holds.

use std::collections::HashMap;
use std::process::Output;

use offboard::sim::{Directory, SimServer};

use crate::helpers::{Harness, Options, batch_of, member, scim_groups_of, scim_user, stderr};

const RC_ORG: &str = "00000000-0000-4000-8000-000000000001";

fn rc_account(i: usize) -> String {
    format!("00000000-0000-4000-9000-{i:012}")
}

fn options(a0: &str, extra: &str) -> Options {
    Options {
        all_providers: Some(a0.into()),
        extra_config: extra.into(),
        ..Options::default()
    }
}

async fn undo(h: &Harness, args: &[&str]) -> Output {
    let mut all = vec!["undo"];
    all.extend_from_slice(args);
    h.offboard(&all, &[]).await
}

fn a0_roles(sim: &SimServer, user: &str) -> Option<Vec<String>> {
    let state = sim.state();
    state.auth0.organizations[0]
        .members
        .iter()
        .find(|m| m.user_id == user)
        .map(|m| {
            let mut roles = m.roles.clone();
            roles.sort();
            roles
        })
}

fn a0_blocked(sim: &SimServer, user: &str) -> bool {
    sim.state()
        .auth0
        .users
        .iter()
        .find(|u| u.user_id == user)
        .unwrap()
        .blocked
}

fn writes(sim: &SimServer) -> usize {
    sim.calls().iter().filter(|c| c.method != "GET").count()
}

fn by_user(rows: &[HashMap<String, String>]) -> HashMap<String, HashMap<String, String>> {
    rows.iter()
        .map(|r| (r["user_id"].clone(), r.clone()))
        .collect()
}

async fn status(h: &Harness, batch: &str) -> serde_json::Value {
    let out = h.offboard(&["status", batch, "--json"], &[]).await;
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)))
}

fn a0_csv(users: &[usize]) -> String {
    let mut csv = String::from("provider,user_id,organization_id\n");
    for i in users {
        csv.push_str(&format!("a0,auth0|{i:06},org_acme\n"));
    }
    csv
}

/// Auth0 with `block_user`: the undo gives back the membership, exactly
/// the roles removed, and unblocks only whom the batch blocked; a second
/// undo finds everything back and calls nothing that writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_gives_auth0_back_exactly_what_the_batch_removed_and_twice_is_already_done() {
    let mut dir = Directory::generate(8, 5);
    // auth0|000004 was blocked before the batch: not ours to unblock.
    dir.auth0.users[3].blocked = true;
    let h = Harness::start_with(dir, options("block_user = true", "")).await;
    let before: Vec<_> = (2..=5)
        .map(|i| a0_roles(&h.sim, &format!("auth0|{i:06}")).unwrap())
        .collect();
    let path = h.write_csv("leavers.csv", &a0_csv(&[2, 3, 4]));
    let (code, batch, out) = h.run(&path).await;
    assert_eq!(code, Some(0), "{}", stderr(&out));
    assert!(a0_roles(&h.sim, "auth0|000002").is_none());
    assert!(a0_blocked(&h.sim, "auth0|000002"));

    let out = undo(&h, &[&batch]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let undo_batch = batch_of(&out);
    for (n, i) in (2..=4).enumerate() {
        let user = format!("auth0|{i:06}");
        assert_eq!(a0_roles(&h.sim, &user).as_ref(), Some(&before[n]), "{user}");
    }
    assert!(!a0_blocked(&h.sim, "auth0|000002"));
    assert!(!a0_blocked(&h.sim, "auth0|000003"));
    assert!(
        a0_blocked(&h.sim, "auth0|000004"),
        "blocked before the batch"
    );
    assert_eq!(a0_roles(&h.sim, "auth0|000005").as_ref(), Some(&before[3]));
    let rows = by_user(&h.report(&undo_batch).await);
    assert_eq!(rows.len(), 3);
    for (n, i) in (2..=4).enumerate() {
        let row = &rows[&format!("auth0|{i:06}")];
        assert_eq!(row["outcome"], "succeeded", "{row:?}");
        let mut restored: Vec<String> =
            row["roles_removed"].split(';').map(str::to_owned).collect();
        restored.sort();
        assert_eq!(restored, before[n], "{row:?}");
        assert!(
            row["error_message"].starts_with("restored the membership"),
            "{row:?}"
        );
    }

    // Audited both ways, with the actor who asked.
    let undone = status(&h, &undo_batch).await;
    let events = undone["events"].as_array().unwrap();
    assert_eq!(events[0]["action"], "submitted");
    assert_eq!(events[0]["detail"]["source"], "undo");
    assert!(events[0]["actor"].as_str().unwrap().starts_with("cli:"));
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "undoes" && e["detail"]["batch"] == batch.as_str())
    );
    let original = status(&h, &batch).await;
    assert!(
        original["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "undone_by" && e["detail"]["batch"] == undo_batch.as_str())
    );

    let before_writes = writes(&h.sim);
    let out = undo(&h, &[&batch]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("0 succeeded, 3 already_done"), "{stdout}");
    assert_eq!(writes(&h.sim), before_writes, "nothing was missing");

    // An undo batch is not undone in turn.
    let out = undo(&h, &[&undo_batch]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be undone"),
        "{}",
        stderr(&out)
    );
}

/// SCIM: the account active again and back in every group; Aitronos and
/// Recoup document no restore call: a person is told what to restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_restores_scim_and_names_what_aitronos_and_recoup_need_by_hand() {
    let h = Harness::start_with(Directory::generate(8, 5), options("", "")).await;
    let scim_groups = scim_groups_of(&h.sim, "u-000002");
    assert!(
        !scim_groups.is_empty(),
        "the scenario needs a user in groups"
    );
    let aitronos_roles = member(&h.sim, "usr_000003").role_ids;
    let csv = format!(
        "provider,user_id,organization_id,transfer_to_department_id\n\
         sc,u-000002,acme,\n\
         acme,usr_000003,org_acme,dept_offboarded\n\
         rc,{},{RC_ORG},\n",
        rc_account(4)
    );
    let path = h.write_csv("mixed.csv", &csv);
    let (code, batch, out) = h.run(&path).await;
    assert_eq!(code, Some(0), "{}", stderr(&out));
    assert!(scim_groups_of(&h.sim, "u-000002").is_empty());

    let out = undo(&h, &[&batch]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let rows = by_user(&h.report(&batch_of(&out)).await);
    let scim = scim_user(&h.sim, "u-000002").unwrap();
    assert!(scim.active);
    assert_eq!(scim_groups_of(&h.sim, "u-000002"), scim_groups);
    assert_eq!(rows["u-000002"]["outcome"], "succeeded");

    let ait = &rows["usr_000003"];
    assert_eq!(ait["outcome"], "needs_attention", "{ait:?}");
    assert_eq!(ait["error_code"], "manual_restore_required");
    for role in &aitronos_roles {
        assert!(
            ait["error_message"].contains(role.as_str()),
            "{role}: {ait:?}"
        );
    }
    assert!(ait["error_message"].contains("dept_offboarded"), "{ait:?}");
    let rc = &rows[&rc_account(4)];
    assert_eq!(rc["outcome"], "needs_attention", "{rc:?}");
    assert_eq!(rc["error_code"], "manual_restore_required");
    assert!(rc["error_message"].contains(RC_ORG), "{rc:?}");
    assert_eq!(
        member(&h.sim, "usr_000003").account_state,
        "deleted",
        "untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_scim_account_cannot_be_restored() {
    let h = Harness::start_with(
        Directory::generate(6, 5),
        options("", "deprovision = \"delete\""),
    )
    .await;
    let path = h.write_csv(
        "one.csv",
        "provider,user_id,organization_id\nsc,u-000002,acme\n",
    );
    let (code, batch, out) = h.run(&path).await;
    assert_eq!(code, Some(0), "{}", stderr(&out));
    let out = undo(&h, &[&batch]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let rows = h.report(&batch_of(&out)).await;
    assert_eq!(rows[0]["outcome"], "needs_attention", "{rows:?}");
    assert_eq!(rows[0]["error_code"], "cannot_restore_deleted", "{rows:?}");
}

/// `--only` restores only those people; the rest stay offboarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_named_people_are_restored() {
    let h = Harness::start_with(Directory::generate(8, 5), options("", "")).await;
    let path = h.write_csv("leavers.csv", &a0_csv(&[2, 3]));
    let (code, batch, out) = h.run(&path).await;
    assert_eq!(code, Some(0), "{}", stderr(&out));
    let out = undo(&h, &[&batch, "--only", "auth0|000003"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(a0_roles(&h.sim, "auth0|000003").is_some());
    assert!(a0_roles(&h.sim, "auth0|000002").is_none());
    let rows = h.report(&batch_of(&out)).await;
    assert_eq!(rows.len(), 1);
    let out = undo(&h, &[&batch, "--only", "auth0|000009"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not in the batch"),
        "{}",
        stderr(&out)
    );
}

/// A person offboarded again by a later batch that still stands is not
/// restored; once that batch is undone too, the older undo may restore.
/// An undone request no longer answers a resubmission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_offboarded_again_is_skipped_and_an_undone_request_dedupes_nothing() {
    let h = Harness::start_with(Directory::generate(8, 5), options("", "")).await;
    let first = h.write_csv("first.csv", &a0_csv(&[2, 3]));
    let (code, b1, out) = h.run(&first).await;
    assert_eq!(code, Some(0), "{}", stderr(&out));
    // A later file offboards auth0|000002 again (within the dedupe
    // window it reports the first batch's request as its own).
    let again = h.write_csv("again.csv", &a0_csv(&[2]));
    let (code, b2, out) = h.run(&again).await;
    assert_eq!(code, Some(0), "{}", stderr(&out));

    let out = undo(&h, &[&b1]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = by_user(&h.report(&batch_of(&out)).await);
    let skipped = &rows["auth0|000002"];
    assert_eq!(skipped["outcome"], "skipped", "{skipped:?}");
    assert_eq!(skipped["error_code"], "offboarded_again");
    assert!(skipped["error_message"].contains(&b2), "{skipped:?}");
    assert!(
        a0_roles(&h.sim, "auth0|000002").is_none(),
        "still offboarded"
    );
    assert_eq!(rows["auth0|000003"]["outcome"], "succeeded");

    // auth0|000003's request was undone: submitting them again plans and
    // removes afresh instead of reporting the undone request.
    let back = h.write_csv("back.csv", &a0_csv(&[3]));
    let (code, b3, out) = h.run(&back).await;
    assert_eq!(code, Some(0), "{}", stderr(&out));
    let rows = h.report(&b3).await;
    assert_eq!(rows[0]["outcome"], "succeeded", "{rows:?}");
    assert_eq!(
        rows[0]["batch_id"], b3,
        "its own request, not the undone one"
    );
    assert!(a0_roles(&h.sim, "auth0|000003").is_none());
}

/// The undo batch passes the cap like any batch: over it, it halts
/// before any call and runs once approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undo_over_the_cap_halts_until_approved() {
    let h = Harness::start_with(
        Directory::generate(8, 5),
        options("", "[safety]\nmax_batch_requests = 1\nfour_eyes = false"),
    )
    .await;
    let path = h.write_csv("leavers.csv", &a0_csv(&[2, 3]));
    let out = h
        .offboard(&["run", "--yes", path.to_str().unwrap()], &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let batch = batch_of(&out);
    let before = writes(&h.sim);
    let out = undo(&h, &[&batch]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    let undo_batch = err
        .lines()
        .find_map(|l| l.strip_prefix("batch ").and_then(|l| l.split(' ').next()))
        .unwrap()
        .to_owned();
    assert!(err.contains("max_batch_requests"), "{err}");
    assert_eq!(writes(&h.sim), before, "no call before the approval");
    let out = h.offboard(&["approve", &undo_batch], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(a0_roles(&h.sim, "auth0|000002").is_some());
    assert!(a0_roles(&h.sim, "auth0|000003").is_some());
}

/// A newer offboarding that removed nothing still stands in the way, until
/// it is undone in turn; then the older undo restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undoing_the_newer_offboarding_first_lets_the_older_undo_restore() {
    newer_offboarding_scenario(None).await;
}

/// The scenario above on SQLite (`None`) or the PostgreSQL database at
/// the URL, whose collation need not order the keys by byte.
pub(crate) async fn newer_offboarding_scenario(database_url: Option<String>) {
    let o = Options {
        database_url,
        ..options("", "")
    };
    let h = Harness::start_with(Directory::generate(8, 5), o).await;
    let path = h.write_csv("leavers.csv", &a0_csv(&[4]));
    let (code, b1, out) = h.run(&path).await;
    assert_eq!(code, Some(0), "{}", stderr(&out));
    // Offboarded again by a separate request (forced past the window):
    // nothing was left to remove.
    let out = h
        .offboard(&["run", "--force", path.to_str().unwrap()], &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let b2 = batch_of(&out);

    let out = undo(&h, &[&b1]).await;
    let rows = h.report(&batch_of(&out)).await;
    assert_eq!(rows[0]["error_code"], "offboarded_again", "{rows:?}");
    assert!(rows[0]["error_message"].contains(&b2), "{rows:?}");
    assert!(a0_roles(&h.sim, "auth0|000004").is_none());

    let out = undo(&h, &[&b2]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = h.report(&batch_of(&out)).await;
    assert_eq!(rows[0]["outcome"], "already_done", "{rows:?}");

    let out = undo(&h, &[&b1]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = h.report(&batch_of(&out)).await;
    assert_eq!(rows[0]["outcome"], "succeeded", "{rows:?}");
    assert!(a0_roles(&h.sim, "auth0|000004").is_some());
}

/// `offboard demo` ends with an undo that gives the Auth0 leavers back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_an_undo() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let undo = &stdout[stdout.find("undoing batch").expect("an undo")..];
    let bob = undo.lines().find(|l| l.contains("auth0|bob")).unwrap();
    assert!(
        bob.contains("succeeded") && bob.contains("restored the membership"),
        "{bob}"
    );
    assert!(bob.contains("unblocked"), "{bob}");
    let cyd = undo.lines().find(|l| l.contains("auth0|cyd")).unwrap();
    assert!(
        !cyd.contains("unblocked"),
        "blocked before the demo's batch: {cyd}"
    );
}

/// A retry of an undo batch runs its requests again as an undo: it never
/// offboards the people the undo was giving back. (A retry reopened every
/// request as a live offboarding before.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_undo_batch_undoes_again_and_removes_no_one() {
    let h = Harness::start_with(Directory::generate(8, 5), options("", "")).await;
    let csv = "provider,user_id,organization_id,transfer_to_department_id\n\
               acme,usr_000003,org_acme,dept_offboarded\n";
    let path = h.write_csv("one.csv", csv);
    let (code, batch, out) = h.run(&path).await;
    assert_eq!(code, Some(0), "{}", stderr(&out));
    let out = undo(&h, &[&batch]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let undo_batch = batch_of(&out);
    let before = writes(&h.sim);

    let out = h
        .offboard(&["retry", &undo_batch, "--outcome", "needs_attention"], &[])
        .await;
    let rows = by_user(&h.report(&undo_batch).await);
    assert_eq!(
        writes(&h.sim),
        before,
        "a retried undo changed something: {}",
        stderr(&out)
    );
    let row = &rows["usr_000003"];
    assert_eq!(row["outcome"], "needs_attention", "{row:?}");
    assert_eq!(row["error_code"], "manual_restore_required", "{row:?}");
}
