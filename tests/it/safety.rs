//! Safety that holds by default: protection by identity, one request per
//! person, caps on every path, retries that plan again, halts on record
//! and held previews, through the real binary against the simulator.

use std::collections::HashMap;

use offboard::sim::Directory;

use crate::helpers::{Harness, Options, assert_exit, batch_of};

const RC_ORG: &str = "00000000-0000-4000-8000-000000000001";

fn rc_account(i: usize) -> String {
    format!("00000000-0000-4000-9000-{i:012}")
}

/// Every provider against the simulator, with `sc_extra` in the SCIM
/// connection's section and `rc_extra` in Recoup's.
async fn all_providers(sc_extra: &str, rc_extra: &str) -> Harness {
    let h = Harness::start_with(
        Directory::generate(10, 4),
        Options {
            all_providers: Some(String::new()),
            extra_config: sc_extra.to_owned(),
            ..Options::default()
        },
    )
    .await;
    let config = std::fs::read_to_string(&h.config).unwrap();
    let config = config.replacen(
        "[providers.rc]\n",
        &format!("[providers.rc]\n{rc_extra}\n"),
        1,
    );
    std::fs::write(&h.config, config).unwrap();
    h
}

/// Calls that change something at the provider (anything but a read).
fn destructive_calls(h: &Harness) -> Vec<String> {
    h.sim
        .calls()
        .into_iter()
        .filter(|c| c.method != "GET")
        .map(|c| format!("{} {} {}", c.method, c.path, c.query.unwrap_or_default()))
        .collect()
}

fn by_user(rows: &[HashMap<String, String>]) -> HashMap<String, HashMap<String, String>> {
    rows.iter()
        .map(|r| (r["user_id"].clone(), r.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protection_holds_whatever_the_spelling() {
    let h = all_providers(
        "service_account_id = \"u-000002\"\nprotected_users = [\"u-000001\"]",
        &format!("protected_users = [\"{}\"]", rc_account(3).to_uppercase()),
    )
    .await;
    let csv = format!(
        "provider,user_id,organization_id\n\
         sc,user000002@acme.example,acme\n\
         sc,User000001@ACME.example,acme\n\
         rc,{},{RC_ORG}\n",
        rc_account(3)
    );
    let (code, batch, out) = h.run(&h.write_csv("p.csv", &csv)).await;
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = by_user(&h.report(&batch).await);
    for user in [
        "user000002@acme.example",
        "User000001@ACME.example",
        &rc_account(3),
    ] {
        assert_eq!(rows[user]["outcome"], "skipped", "{user}: {:?}", rows[user]);
        assert_eq!(rows[user]["error_code"], "protected_user", "{user}");
    }
    assert_eq!(destructive_calls(&h), Vec::<String>::new());
    let scim = h.sim.state().scim;
    assert!(
        scim.users
            .iter()
            .filter(|u| u.id == "u-000001" || u.id == "u-000002")
            .all(|u| u.active)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_cannot_protect_where_the_provider_cannot_look_it_up() {
    let h = Harness::start_with(
        Directory::generate(10, 4),
        Options {
            extra_config: "service_account_id = \"boss@acme.example\"\n".into(),
            ..Options::default()
        },
    )
    .await;
    let out = h.offboard(&["check"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("providers.acme.service_account_id") && err.contains("boss@acme.example"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_named_twice_is_offboarded_once() {
    let h = all_providers("", "").await;
    let csv = "provider,user_id,organization_id\n\
               sc,u-000005,acme\n\
               sc,user000005@acme.example,acme\n\
               sc,USER000006@acme.example,acme\n\
               sc,user000006@ACME.EXAMPLE,acme\n";
    let (code, batch, out) = h.run(&h.write_csv("twice.csv", csv)).await;
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = h.report(&batch).await;
    for person in ["u-000005", "u-000006"] {
        let deactivations = h
            .sim
            .calls()
            .iter()
            .filter(|c| c.method == "PATCH" && c.path.ends_with(&format!("/Users/{person}")))
            .count();
        assert_eq!(deactivations, 1, "{person} deactivated once");
    }
    let outcomes: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["outcome"].as_str(), r["error_code"].as_str()))
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| o.0 == "succeeded").count(),
        2,
        "{outcomes:?}"
    );
    let duplicates: Vec<&HashMap<String, String>> = rows
        .iter()
        .filter(|r| r["error_code"] == "duplicate_person")
        .collect();
    assert_eq!(duplicates.len(), 2, "{outcomes:?}");
    for d in duplicates {
        assert_eq!(d["outcome"], "skipped");
        let other = rows
            .iter()
            .find(|r| r["outcome"] == "succeeded" && d["error_message"].contains(&r["request_id"]))
            .unwrap_or_else(|| panic!("{d:?} names no succeeded request"));
        assert_ne!(other["line"], d["line"]);
    }
}

/// The batch's JSON status: `status BATCH --json`.
async fn status_json(h: &Harness, batch: &str) -> serde_json::Value {
    let out = h.offboard(&["status", batch, "--json"], &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The batch id on the `batch <id> is halted` line of a command's stderr.
fn halted_batch(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .find_map(|l| l.strip_prefix("batch "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no halted batch in {err}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_halt_and_its_approval_stay_on_record() {
    let h = Harness::start_with(Directory::generate(601, 9), Options::default()).await;
    let csv = h.write_csv("600.csv", &crate::helpers::users_csv(2, 601));
    let out = h.offboard(&["run", csv.to_str().unwrap()], &[]).await;
    assert_eq!(out.status.code(), Some(3));
    let batch = halted_batch(&out);
    let halted = status_json(&h, &batch).await;
    assert_eq!(halted["halt_code"], "max_batch_requests");
    let out = h
        .offboard(&["approve", &batch, "--no-wait"], &[("USER", "alice")])
        .await;
    assert_exit(&out, 0);

    let after = status_json(&h, &batch).await;
    assert!(after["halt_code"].is_null(), "the current halt is cleared");
    let events = after["events"].as_array().unwrap();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["submitted", "halted", "approved"], "{events:?}");
    assert_eq!(events[0]["detail"]["source"], "cli");
    assert!(events[0]["actor"].as_str().unwrap().starts_with("cli:"));
    assert_eq!(events[1]["actor"], "system");
    assert_eq!(events[1]["detail"]["code"], "max_batch_requests");
    assert!(
        events[1]["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("600 requests exceed"),
        "{events:?}"
    );
    assert!(
        events[2]["actor"]
            .as_str()
            .unwrap()
            .starts_with("cli:alice@")
    );

    let out = h
        .offboard(&["report", &batch, "--format", "json"], &[])
        .await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events"].as_array().unwrap().len(), 3);
}

/// Sets the batch's intake time `days` back, as if it were that old.
async fn age_batch(h: &Harness, batch: &str, days: i64) {
    let db = format!("sqlite://{}", h.dir.path().join("offboard.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    sqlx::query("UPDATE batches SET created_at = created_at - ?1 WHERE id = ?2")
        .bind(days * 86_400_000)
        .bind(batch)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

async fn provider_answers_again(h: &Harness) {
    reqwest::Client::new()
        .post(format!("{}/_sim/faults", h.sim.url()))
        .json(&offboard::sim::FaultConfig::default())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
}

/// A retry is a path that removes people: it passes the batch cap, it
/// does not reopen an old CSV batch without --force, and an approval of
/// what it halted names only people in the plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_passes_the_rails() {
    let h = Harness::start_with(
        Directory::generate(601, 9),
        Options {
            faults: offboard::sim::FaultConfig {
                error_rate: 1.0,
                ..offboard::sim::FaultConfig::default()
            },
            max_attempts: 1,
            concurrency: 32,
            // `run --yes` above the cap is refused with four eyes.
            extra_config: "[safety]\nfour_eyes = false\n".into(),
            ..Options::default()
        },
    )
    .await;
    let csv = h.write_csv("600.csv", &crate::helpers::users_csv(2, 601));
    let out = h
        .offboard(&["run", "--yes", csv.to_str().unwrap()], &[])
        .await;
    assert_eq!(out.status.code(), Some(3));
    let batch = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("batch ")
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(status_json(&h, &batch).await["counts"]["dead"], 600);
    provider_answers_again(&h).await;

    // Four days later, a retry needs --force.
    age_batch(&h, &batch, 4).await;
    let out = h.offboard(&["retry", &batch], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("retry_max_age"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status_json(&h, &batch).await["counts"]["dead"], 600);

    // 600 reopened requests are over the cap: they wait for approval.
    let calls = h.sim.calls().len();
    let out = h.offboard(&["retry", &batch, "--force"], &[]).await;
    assert_exit(&out, 3);
    let halted = status_json(&h, &batch).await;
    assert_eq!(halted["state"], "halted");
    assert_eq!(halted["halt_code"], "max_batch_requests");
    assert_eq!(h.sim.calls().len(), calls, "nothing ran");
    let actions: Vec<&str> = halted["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["submitted", "retried", "halted"]);

    let out = h
        .offboard(
            &["approve", &batch, "--only", "usr_000002,usr_999999"],
            &[("USER", "approver")],
        )
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("usr_999999"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = h
        .offboard(
            &["approve", &batch, "--only", "usr_000002,usr_000003"],
            &[("USER", "approver")],
        )
        .await;
    assert_exit(&out, 0);
    let done = status_json(&h, &batch).await;
    assert_eq!(done["counts"]["succeeded"], 2, "{done}");
    assert_eq!(done["counts"]["cancelled"], 598, "{done}");
}

/// `submit --hold` on `csv`: the batch id it prints.
async fn submit_held(h: &Harness, csv: &std::path::Path) -> String {
    let out = h
        .offboard(&["submit", "--hold", csv.to_str().unwrap()], &[])
        .await;
    assert_exit(&out, 0);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A held preview plans with reads only; its release applies exactly that
/// plan, and what appeared since the preview is left for a person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_preview_is_the_plan_applied() {
    let h = Harness::start(crate::helpers::directory()).await;
    let csv = h.write_csv("held.csv", &crate::helpers::users_csv(2, 5));
    let before = crate::helpers::member(&h.sim, "usr_000003").role_ids;
    let batch = submit_held(&h, &csv).await;
    assert_eq!(destructive_calls(&h), Vec::<String>::new(), "reads only");
    let status = status_json(&h, &batch).await;
    assert_eq!(status["state"], "held", "{status}");
    assert_eq!(status["counts"]["held"], 4);
    let rows = by_user(&h.report(&batch).await);
    assert_eq!(rows["usr_000003"]["outcome"], "held");
    assert_eq!(rows["usr_000003"]["roles_removed"], before.join(";"));
    assert_eq!(
        rows["usr_000003"]["transfer_to_department_id"],
        "dept_offboarded"
    );

    // A later upload of the same person does not link to the preview.
    let again = h.write_csv("again.csv", &crate::helpers::users_csv(5, 5));
    let (code, other, out) = h.run(&again).await;
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(other, batch);
    assert_eq!(
        crate::helpers::member(&h.sim, "usr_000005").account_state,
        "deleted"
    );

    let out = approve_after_a_new_role(&h, &batch).await;
    assert_exit(&out, 3);
    let rows = by_user(&h.report(&batch).await);
    assert_eq!(rows["usr_000002"]["outcome"], "succeeded");
    assert_eq!(rows["usr_000003"]["outcome"], "succeeded");
    assert_eq!(rows["usr_000003"]["roles_removed"], before.join(";"));
    // The later upload offboarded usr_000005 already: nothing is left.
    assert_eq!(rows["usr_000005"]["outcome"], "already_done");
    let changed = &rows["usr_000004"];
    assert_eq!(changed["outcome"], "needs_attention", "{changed:?}");
    assert_eq!(changed["error_code"], "plan_changed");
    assert!(
        changed["error_message"].contains("role_custom_3"),
        "{changed:?}"
    );
    let m = crate::helpers::member(&h.sim, "usr_000004");
    assert_eq!(m.role_ids, ["role_custom_3"], "only the new role is left");
    let actions: Vec<String> = status_json(&h, &batch).await["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["submitted", "held", "released"]);
}

/// A held preview of five people, with a cap of three, released by its
/// submitter: over the cap, someone else must approve it.
async fn released_over_the_cap() -> (Harness, String) {
    let h = Harness::start_with(
        crate::helpers::directory(),
        Options {
            extra_config: "[safety]\nmax_batch_requests = 3\n".into(),
            ..Options::default()
        },
    )
    .await;
    let csv = h.write_csv("held.csv", &crate::helpers::users_csv(2, 6));
    let batch = submit_held(&h, &csv).await;
    let out = h.offboard(&["approve", &batch], &[]).await;
    assert_exit(&out, 3);
    (h, batch)
}

/// Releasing a preview over the cap halts it for an approval; a preview
/// past its hold_ttl is cancelled instead of released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_preview_passes_the_cap_and_a_stale_one_expires() {
    let (h, batch) = released_over_the_cap().await;
    let status = status_json(&h, &batch).await;
    assert_eq!(status["state"], "halted");
    assert_eq!(status["halt_code"], "max_batch_requests");
    assert_eq!(destructive_calls(&h), Vec::<String>::new());
    let out = h
        .offboard(&["approve", &batch], &[("USER", "approver")])
        .await;
    assert_exit(&out, 0);
    assert_eq!(status_json(&h, &batch).await["counts"]["succeeded"], 5);

    let csv = h.write_csv("stale.csv", &crate::helpers::users_csv(20, 21));
    let stale = submit_held(&h, &csv).await;
    age_batch(&h, &stale, 8).await;
    let out = h
        .offboard(&["approve", &stale], &[("USER", "approver")])
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hold_ttl"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = status_json(&h, &stale).await;
    assert_eq!(status["state"], "cancelled");
    assert_eq!(
        crate::helpers::member(&h.sim, "usr_000020").account_state,
        "active"
    );
}

/// A row of a preview effective later is planned now like the others, so
/// what its release applies was looked at; it then waits for its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_plans_rows_effective_later_too() {
    let h = Harness::start(crate::helpers::directory()).await;
    let later = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let csv = h.write_csv(
        "later.csv",
        &format!(
            "user_id,organization_id,transfer_to_department_id,effective_at\n\
             usr_000002,org_acme,dept_offboarded,\nusr_000003,org_acme,dept_offboarded,{later}\n"
        ),
    );
    let batch = submit_held(&h, &csv).await;
    let rows = by_user(&h.report(&batch).await);
    let roles = crate::helpers::member(&h.sim, "usr_000003").role_ids;
    assert_eq!(rows["usr_000003"]["outcome"], "held", "{rows:?}");
    assert_eq!(rows["usr_000003"]["roles_removed"], roles.join(";"));
    let out = h
        .offboard(&["approve", &batch], &[("USER", "approver")])
        .await;
    assert_exit(&out, 0);
    let rows = by_user(&h.report(&batch).await);
    assert_eq!(rows["usr_000002"]["outcome"], "succeeded");
    assert_eq!(
        rows["usr_000003"]["outcome"], "scheduled",
        "waits for its time"
    );
    assert_eq!(
        crate::helpers::member(&h.sim, "usr_000003").account_state,
        "active"
    );
}

/// A preview skipped at its release because another open request
/// offboards the person removed nothing, and its record says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_skipped_at_release_removed_nothing() {
    let h = Harness::start(crate::helpers::directory()).await;
    assert!(
        !crate::helpers::member(&h.sim, "usr_000003")
            .role_ids
            .is_empty()
    );
    let held = h.write_csv("held.csv", &crate::helpers::users_csv(3, 3));
    let batch = submit_held(&h, &held).await;
    let later = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let live = h.write_csv(
        "later.csv",
        &format!(
            "user_id,organization_id,transfer_to_department_id,effective_at\n\
             usr_000003,org_acme,dept_offboarded,{later}\n"
        ),
    );
    let out = h.offboard(&["submit", live.to_str().unwrap()], &[]).await;
    assert_exit(&out, 0);
    let out = h
        .offboard(&["approve", &batch], &[("USER", "approver")])
        .await;
    assert_exit(&out, 0);
    let rows = by_user(&h.report(&batch).await);
    let row = &rows["usr_000003"];
    assert_eq!(row["error_code"], "duplicate_person", "{row:?}");
    assert_eq!(row["roles_removed"], "", "{row:?}");
}

/// A released preview's `plan_changed` request, retried, is previewed
/// again and waits for a release: nothing nobody looked at is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_preview_is_previewed_again() {
    let (h, batch, previewed) = released_then_previewed_again().await;
    let status = status_json(&h, &batch).await;
    assert_eq!(status["state"], "held", "{status}");
    let m = crate::helpers::member(&h.sim, "usr_000004");
    assert_eq!(
        m.role_ids,
        ["role_custom_3"],
        "the new role waits for a look"
    );
    let rows = by_user(&h.report(&batch).await);
    assert_eq!(rows["usr_000004"]["outcome"], "held");
    assert_eq!(rows["usr_000004"]["roles_removed"], "role_custom_3");
    let message = &rows["usr_000004"]["error_message"];
    assert!(
        message.ends_with(&format!(
            "removed before the retry: {}",
            previewed.join(", ")
        )),
        "{message}"
    );
    let out = h
        .offboard(&["approve", &batch], &[("USER", "approver")])
        .await;
    assert_exit(&out, 0);
    assert_eq!(
        crate::helpers::member(&h.sim, "usr_000004").account_state,
        "deleted"
    );
    // The record names what each release removed, the first one's too.
    let rows = by_user(&h.report(&batch).await);
    let mut removed = previewed.clone();
    removed.push("role_custom_3".to_owned());
    assert_eq!(rows["usr_000004"]["roles_removed"], removed.join(";"));
}

/// usr_000004 is given another role after the preview, then `approve`
/// releases `batch`.
async fn approve_after_a_new_role(h: &Harness, batch: &str) -> std::process::Output {
    h.sim
        .grant_aitronos_role("org_acme", "usr_000004", "role_custom_3")
        .unwrap();
    h.offboard(&["approve", batch], &[("USER", "approver")])
        .await
}

/// A held preview whose release removed some roles, then a retry that
/// previews it again: the batch and the roles the release removed.
async fn released_then_previewed_again() -> (Harness, String, Vec<String>) {
    let h = Harness::start(crate::helpers::directory()).await;
    let previewed = crate::helpers::member(&h.sim, "usr_000004").role_ids;
    assert!(!previewed.is_empty(), "the scenario needs roles to remove");
    let csv = h.write_csv("held.csv", &crate::helpers::users_csv(4, 4));
    let batch = submit_held(&h, &csv).await;
    let out = approve_after_a_new_role(&h, &batch).await;
    assert_eq!(out.status.code(), Some(3));
    let out = h
        .offboard(&["retry", &batch, "--outcome", "needs_attention"], &[])
        .await;
    assert_exit(&out, 0);
    (h, batch, previewed)
}

/// A retried preview cancelled before its release keeps on record the
/// roles its first release removed, and an undo of the batch names them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_preview_cancelled_keeps_what_was_removed_before() {
    let (h, batch, previewed) = released_then_previewed_again().await;
    let out = h.offboard(&["cancel", &batch], &[]).await;
    assert_exit(&out, 0);
    let rows = by_user(&h.report(&batch).await);
    assert_eq!(rows["usr_000004"]["outcome"], "cancelled");
    assert_eq!(rows["usr_000004"]["roles_removed"], previewed.join(";"));
    let out = h.offboard(&["undo", &batch], &[]).await;
    let rows = by_user(&h.report(&batch_of(&out)).await);
    let row = &rows["usr_000004"];
    assert_eq!(row["error_code"], "manual_restore_required", "{row:?}");
    for role in &previewed {
        assert!(
            row["error_message"].contains(role.as_str()),
            "{role}: {row:?}"
        );
    }
}

/// A retry reopens only the batch's own requests: one its rows linked to
/// in another batch is that batch's to retry, so a halted retry holds
/// everything it reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_reopens_only_its_own_requests() {
    let h = Harness::start_with(
        crate::helpers::directory(),
        Options {
            faults: offboard::sim::FaultConfig {
                error_rate: 1.0,
                ..offboard::sim::FaultConfig::default()
            },
            max_attempts: 1,
            ..Options::default()
        },
    )
    .await;
    let first = h.write_csv("first.csv", &crate::helpers::users_csv(2, 3));
    let out = h.offboard(&["submit", first.to_str().unwrap()], &[]).await;
    let owner = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let second = h.write_csv("second.csv", &crate::helpers::users_csv(2, 5));
    let (code, linked, _) = h.run(&second).await;
    assert_eq!(code, Some(3));
    assert_eq!(status_json(&h, &linked).await["counts"]["dead"], 4);
    provider_answers_again(&h).await;
    let out = h
        .offboard(
            &["retry", &linked],
            &[("OFFBOARD__SAFETY__MAX_BATCH_REQUESTS", "1")],
        )
        .await;
    assert_exit(&out, 3);
    assert!(String::from_utf8_lossy(&out.stderr).contains("reopens 2 requests"));
    // Nothing runs while the retry is halted, even with a worker about.
    let calls = h.sim.calls().len();
    let out = h.offboard(&["retry", &owner, "--no-wait"], &[]).await;
    assert_exit(&out, 0);
    let (code, _, _) = h
        .run(&h.write_csv("other.csv", &crate::helpers::users_csv(9, 9)))
        .await;
    assert_eq!(code, Some(0));
    for user in ["usr_000004", "usr_000005"] {
        assert_eq!(
            crate::helpers::member(&h.sim, user).account_state,
            "active",
            "{user}"
        );
    }
    for user in ["usr_000002", "usr_000003"] {
        assert_eq!(
            crate::helpers::member(&h.sim, user).account_state,
            "deleted",
            "{user}"
        );
    }
    assert!(h.sim.calls().len() > calls);
}

/// Two releases of one preview: the second finds it released and changes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_is_released_once() {
    let h = Harness::start(crate::helpers::directory()).await;
    let csv = h.write_csv("held.csv", &crate::helpers::users_csv(2, 3));
    let batch = submit_held(&h, &csv).await;
    let args = ["approve", batch.as_str(), "--no-wait"];
    let (a, b) = tokio::join!(
        h.offboard(&args, &[("USER", "one")]),
        h.offboard(&args, &[("USER", "two")])
    );
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(2)),
        "{codes:?}"
    );
    let released = status_json(&h, &batch).await["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "released")
        .count();
    assert_eq!(released, 1);
}

/// A released preview halted over the cap waits for its approver: a retry
/// of the batch is refused, and runs none of its removals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_does_not_run_a_released_preview_past_its_halt() {
    let (h, batch) = released_over_the_cap().await;
    let out = h.offboard(&["retry", &batch], &[]).await;
    assert_eq!(destructive_calls(&h), Vec::<String>::new());
    assert_exit(&out, 2);
    let status = status_json(&h, &batch).await;
    assert_eq!(status["state"], "halted", "{status}");
    assert_eq!(status["halt_code"], "max_batch_requests");
}
