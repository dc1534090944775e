//! Every connector against the simulator: one conformance scenario for all
//! four, a mixed batch, and each provider's own edge cases.

use std::collections::HashMap;

use offboard::sim::{Auth0Client, Directory, FailNext, FaultConfig, RetryHint};

use crate::helpers::{Harness, Options, member, scim_groups_of, scim_user};

const RC_ORG: &str = "00000000-0000-4000-8000-000000000001";

fn rc_account(i: usize) -> String {
    format!("00000000-0000-4000-9000-{i:012}")
}

fn options() -> Options {
    Options {
        all_providers: Some(String::new()),
        ..Options::default()
    }
}

fn auth0_member(h: &Harness, user: &str) -> Option<offboard::sim::Auth0Member> {
    h.sim.state().auth0.organizations[0]
        .members
        .iter()
        .find(|m| m.user_id == user)
        .cloned()
}

fn recoup_member(h: &Harness, account: &str) -> bool {
    h.sim.state().recoup.organizations[0]
        .member_account_ids
        .iter()
        .any(|a| a == account)
}

fn outcomes(rows: &[HashMap<String, String>]) -> HashMap<String, String> {
    rows.iter()
        .map(|r| (r["user_id"].clone(), r["outcome"].clone()))
        .collect()
}

/// The same scenario through every connector: two members leave, one who
/// already left is reported already done, and nobody else is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_scenario_conforms_on_every_connector() {
    let h = Harness::start_with(Directory::generate(10, 4), options()).await;
    let csv = format!(
        "provider,user_id,organization_id\n\
         acme,usr_000002,org_acme\nacme,usr_000003,org_acme\n\
         a0,auth0|000002,org_acme\na0,auth0|000003,org_acme\n\
         rc,{},{RC_ORG}\nrc,{},{RC_ORG}\n\
         sc,u-000002,acme\nsc,user000003@acme.example,acme\n",
        rc_account(2),
        rc_account(3)
    );
    let path = h.write_csv("mixed.csv", &csv);
    let (code, batch, out) = h.run(&path).await;
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = h.report(&batch).await;
    assert!(rows.iter().all(|r| r["outcome"] == "succeeded"), "{rows:?}");

    // Each row reached its own provider.
    let calls = h.sim.calls();
    for (provider, needle) in [
        ("aitronos", "usr_000002"),
        ("auth0", "auth0%7C000002"),
        ("scim", "u-000002"),
    ] {
        assert!(
            calls
                .iter()
                .any(|c| c.provider == provider && c.path.contains(needle)),
            "no {provider} call for {needle}"
        );
    }
    assert!(calls.iter().any(
        |c| c.provider == "recoup" && c.query.as_deref().unwrap_or("").contains(&rc_account(2))
    ));

    // Final state, read back from the simulator.
    for i in [2, 3] {
        assert_eq!(
            member(&h.sim, &format!("usr_{i:06}")).account_state,
            "deleted"
        );
        assert!(
            auth0_member(&h, &format!("auth0|{i:06}")).is_none(),
            "auth0|{i:06} still a member"
        );
        assert!(!recoup_member(&h, &rc_account(i)));
        let u = scim_user(&h.sim, &format!("u-{i:06}")).unwrap();
        assert!(!u.active, "u-{i:06} still active");
        assert!(
            scim_groups_of(&h.sim, &u.id).is_empty(),
            "{} still in groups",
            u.id
        );
    }
    assert_eq!(member(&h.sim, "usr_000004").account_state, "active");
    assert!(auth0_member(&h, "auth0|000004").is_some());
    assert!(recoup_member(&h, &rc_account(4)));
    assert!(scim_user(&h.sim, "u-000004").unwrap().active);

    // Running the same file again (forced) changes nothing anywhere.
    let writes = |h: &Harness| h.sim.calls().iter().filter(|c| c.method != "GET").count();
    let before = writes(&h);
    let out = h
        .offboard(&["run", "--force", path.to_str().unwrap()], &[])
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("0 succeeded, 8 already_done"), "{stdout}");
    assert_eq!(
        writes(&h),
        before,
        "a second run is a no-op at every provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth0_pipes_ids_and_deletes_only_held_roles() {
    let mut dir = Directory::generate(10, 4);
    for m in &mut dir.auth0.organizations[0].members {
        if m.user_id == "auth0|000005" {
            m.roles.clear();
        }
    }
    let h = Harness::start_with(
        dir,
        Options {
            faults: FaultConfig {
                fail_next: vec![FailNext {
                    user_id: "auth0|000006".into(),
                    count: 1,
                    status: 429,
                    retry_after_secs: Some(1),
                    retry_hint: RetryHint::RateLimitReset,
                }],
                auth0_membership_delay_ms: 1_500,
                ..FaultConfig::default()
            },
            inline_wait_max_ms: 5_000,
            ..options()
        },
    )
    .await;
    let csv = "provider,user_id,org,department_id\na0,auth0|000005,org_acme,\na0,auth0|000006,org_acme,\na0,auth0|nobody,org_acme,\na0,auth0|000007,org_acme,dept_x\n";
    let (code, batch, _) = h.run(&h.write_csv("a0.csv", csv)).await;
    assert_eq!(code, Some(3), "the transfer row is rejected");
    let rows = h.report(&batch).await;
    let o = outcomes(&rows);
    assert_eq!(o["auth0|000005"], "succeeded");
    assert_eq!(o["auth0|000006"], "succeeded");
    assert_eq!(o["auth0|nobody"], "already_done");
    let rejected = rows.iter().find(|r| r["outcome"] == "rejected").unwrap();
    assert_eq!(rejected["error_code"], "transfer_not_supported");
    let calls = h.sim.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.method == "DELETE" && c.path.ends_with("auth0%7C000005/roles")),
        "no role DELETE for a user holding none"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.method == "DELETE" && c.path.ends_with("auth0%7C000006/roles"))
    );
    assert!(auth0_member(&h, "auth0|000005").is_none());
    assert!(auth0_member(&h, "auth0|000006").is_none());
    assert!(auth0_member(&h, "auth0|000007").is_some());
}

/// A harness whose `a0` connection uses client credentials against the
/// simulator's token endpoint, with tokens living `lifetime` seconds.
async fn cc_harness(lifetime: u64) -> Harness {
    let mut dir = Directory::generate(40, 4);
    dir.auth0.clients = vec![Auth0Client {
        client_id: "cid".into(),
        client_secret: "csecret".into(),
    }];
    dir.auth0.token_lifetime_secs = lifetime;
    let h = Harness::start_with(
        dir,
        Options {
            faults: FaultConfig {
                latency_ms: 60,
                ..FaultConfig::default()
            },
            concurrency: 2,
            all_providers: Some(
                "auth = \"client_credentials\"\nclient_id_env = \"IT_CID\"\nclient_secret_env = \"IT_CSECRET\"\naudience = \"https://sim/api/v2/\"\n".into(),
            ),
            ..Options::default()
        },
    )
    .await;
    let token_url = format!("{}/auth0/oauth/token", h.sim.url());
    let cfg = std::fs::read_to_string(&h.config).unwrap().replace(
        "auth = \"client_credentials\"",
        &format!("auth = \"client_credentials\"\ntoken_url = \"{token_url}\""),
    );
    std::fs::write(&h.config, cfg).unwrap();
    h
}

const CC_ENV: [(&str, &str); 2] = [("IT_CID", "cid"), ("IT_CSECRET", "csecret")];

fn a0_csv(from: usize, to: usize) -> String {
    let mut csv = String::from("provider,user_id,org\n");
    for i in from..=to {
        csv.push_str(&format!("a0,auth0|{i:06},org_acme\n"));
    }
    csv
}

async fn issued(h: &Harness) -> u64 {
    let v: serde_json::Value = reqwest::get(format!("{}/_sim/auth0/tokens", h.sim.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["issued"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth0_client_credentials_renew_before_expiry() {
    // Tokens shorter-lived than the run: each must be renewed before it lapses.
    let h = cc_harness(1).await;
    let path = h.write_csv("a.csv", &a0_csv(2, 8));
    let out = h.offboard(&["run", path.to_str().unwrap()], &CC_ENV).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !h.sim.calls().iter().any(|c| c.status == 401),
        "no call went out with an expired token"
    );
    assert!(
        issued(&h).await >= 2,
        "a run longer than a token's life renews it"
    );
    assert!(!h.sim.calls().iter().any(|c| c.path.contains("csecret")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth0_client_credentials_renew_once_after_a_401() {
    // Day-long tokens are cached; revoking them mid-run costs one 401 per
    // call in flight, then a fresh token serves the rest.
    let h = cc_harness(86_400).await;
    let path = h.write_csv("b.csv", &a0_csv(2, 30));
    let args = ["run", path.to_str().unwrap()];
    let run = h.offboard(&args, &CC_ENV);
    let revoke = async {
        crate::helpers::eventually(30, "the run to get going", || async {
            h.sim.calls().len() > 6
        })
        .await;
        // Counted before the revocation is asked for: a call refused
        // while its answer is on the way back is still after it.
        let before = h.sim.calls().len();
        reqwest::Client::new()
            .post(format!("{}/_sim/auth0/revoke-tokens", h.sim.url()))
            .send()
            .await
            .unwrap();
        before
    };
    let (out, revoked_at) = tokio::join!(run, revoke);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(auth0_member(&h, "auth0|000030").is_none());
    let refused = h.sim.calls()[revoked_at..]
        .iter()
        .filter(|c| c.status == 401)
        .count();
    assert!(
        (1..=2).contains(&refused),
        "{refused} calls refused after the revocation"
    );
    assert_eq!(
        issued(&h).await,
        2,
        "one token, then one renewal shared by all workers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recoup_is_idempotent_by_contract() {
    let h = Harness::start_with(Directory::generate(6, 4), options()).await;
    let stranger = "11111111-1111-4111-8111-111111111111";
    let csv = format!(
        "provider,user_id,org,department_id\nrc,{a},{RC_ORG},\nrc,{stranger},{RC_ORG},\nrc,{a},{stranger},\nrc,not-a-uuid,{RC_ORG},\nrc,{b},{RC_ORG},dept_x\n",
        a = rc_account(2),
        b = rc_account(3)
    );
    let (code, batch, _) = h.run(&h.write_csv("rc.csv", &csv)).await;
    assert_eq!(code, Some(3));
    let rows = h.report(&batch).await;
    let by_line: HashMap<&str, &HashMap<String, String>> =
        rows.iter().map(|r| (r["line"].as_str(), r)).collect();
    assert_eq!(by_line["2"]["outcome"], "succeeded");
    assert_eq!(
        by_line["3"]["outcome"], "already_done",
        "{:?}",
        by_line["3"]
    );
    // The account's organizations do not include the stranger org.
    assert_eq!(
        by_line["4"]["outcome"], "already_done",
        "{:?}",
        by_line["4"]
    );
    assert_eq!(by_line["5"]["error_code"], "invalid_user_id");
    assert_eq!(by_line["6"]["error_code"], "transfer_not_supported");
    assert!(!recoup_member(&h, &rc_account(2)));
    assert!(recoup_member(&h, &rc_account(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_falls_back_to_the_list_form_and_deletes_by_policy() {
    let mut dir = Directory::generate(6, 4);
    dir.scim.behaviour.patch_value_filter_supported = false;
    dir.scim.behaviour.group_filter_supported = false;
    let h = Harness::start_with(
        dir,
        Options {
            all_providers: Some(String::new()),
            extra_config: "deprovision = \"delete\"\n".into(),
            ..Options::default()
        },
    )
    .await;
    let csv = "provider,user_id,org\nsc,u-000002,acme\nsc,user000004@acme.example,acme\nsc,u-999999,acme\n";
    let (code, batch, _) = h.run(&h.write_csv("sc.csv", csv)).await;
    assert_eq!(code, Some(0));
    let o = outcomes(&h.report(&batch).await);
    assert_eq!(o["u-000002"], "succeeded");
    assert_eq!(o["user000004@acme.example"], "succeeded");
    assert_eq!(o["u-999999"], "already_done");
    assert!(scim_user(&h.sim, "u-000002").is_none(), "deleted by policy");
    assert!(scim_user(&h.sim, "u-000004").is_none());
    assert!(scim_groups_of(&h.sim, "u-000002").is_empty());
    assert!(scim_user(&h.sim, "u-000003").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aitronos_prunes_empty_custom_roles_only() {
    let mut dir = crate::helpers::directory();
    let org = &mut dir.aitronos.organizations[0];
    for m in &mut org.members {
        m.role_ids.retain(|r| !r.starts_with("role_custom"));
        match m.user_id.as_str() {
            "usr_000020" => m
                .role_ids
                .extend(["role_custom_1".into(), "role_custom_2".into()]),
            "usr_000021" => m.role_ids.push("role_custom_2".into()),
            _ => {}
        }
    }
    let h = Harness::start_with(dir, Options::default()).await;
    let cfg = std::fs::read_to_string(&h.config).unwrap().replace(
        "protected_users = [\"usr_breakglass\"]",
        "protected_users = [\"usr_breakglass\"]\nprune_custom_roles = true",
    );
    std::fs::write(&h.config, cfg).unwrap();
    let (code, batch, out) = h
        .run(&h.write_csv("p.csv", "user_id,org\nusr_000020,org_acme\n"))
        .await;
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = h.report(&batch).await;
    assert_eq!(rows[0]["outcome"], "succeeded");
    assert!(
        rows[0]["error_message"].contains("role_custom_2"),
        "{:?}",
        rows[0]
    );
    let roles: Vec<String> = h.sim.state().aitronos.organizations[0]
        .roles
        .iter()
        .map(|r| r.id.clone())
        .collect();
    assert!(
        !roles.contains(&"role_custom_1".to_owned()),
        "the emptied custom role is deleted"
    );
    assert!(
        roles.contains(&"role_custom_2".to_owned()),
        "a role with members stays"
    );
    assert!(
        roles.contains(&"role_member".to_owned()),
        "system roles stay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reaches_every_connection() {
    let h = Harness::start_with(Directory::generate(3, 4), options()).await;
    let out = h.offboard(&["check"], &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for name in ["acme", "a0", "rc", "sc"] {
        assert!(
            stdout.contains(&format!("provider {name}: reachable, credentials accepted")),
            "{stdout}"
        );
    }
    let bad = Harness::start_with(
        Directory::generate(3, 4),
        Options {
            wrong_token: true,
            ..options()
        },
    )
    .await;
    let out = bad.offboard(&["check"], &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("provider acme: FAILED"), "{stdout}");
    assert!(!stdout.contains(&bad.token), "the token never shows");
}
