//! Auth0 `revoke_sessions` (issue 36, item 1): a leaver's sessions and
//! refresh tokens end after their membership, once each; a token without
//! the scope leaves the row for a person, never failed, and never trips
//! the breaker that stops a batch on rejected credentials.

use offboard::sim::{Directory, FaultConfig};

use crate::helpers::{Harness, Options};

fn options(faults: FaultConfig) -> Options {
    Options {
        all_providers: Some("revoke_sessions = true".into()),
        faults,
        ..Options::default()
    }
}

fn csv(users: &[usize]) -> String {
    let mut csv = String::from("provider,user_id,organization_id\n");
    for i in users {
        csv.push_str(&format!("a0,auth0|{i:06},org_acme\n"));
    }
    csv
}

/// (sessions, refresh tokens) the simulated tenant still holds for `user`.
fn signed_in(h: &Harness, user: &str) -> (u32, u32) {
    let state = h.sim.state();
    let u = state
        .auth0
        .users
        .iter()
        .find(|u| u.user_id == user)
        .unwrap();
    (u.sessions, u.refresh_tokens)
}

fn calls_to(h: &Harness, method: &str, tail: &str) -> Vec<String> {
    h.sim
        .calls()
        .into_iter()
        .filter(|c| c.method == method && c.path.ends_with(tail))
        .map(|c| c.path)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_leaver_s_sessions_and_refresh_tokens_are_revoked_once() {
    let h = Harness::start_with(Directory::generate(6, 3), options(FaultConfig::default())).await;
    let path = h.write_csv("leavers.csv", &csv(&[2, 3]));
    let (code, batch, out) = h.run(&path).await;
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for user in ["auth0%7C000002", "auth0%7C000003"] {
        for tail in ["/sessions", "/refresh-tokens"] {
            let made: Vec<String> = calls_to(&h, "DELETE", tail)
                .into_iter()
                .filter(|p| p.contains(user))
                .collect();
            assert_eq!(made.len(), 1, "{user}{tail}: {made:?}");
        }
    }
    assert_eq!(signed_in(&h, "auth0|000002"), (0, 0));
    assert_eq!(signed_in(&h, "auth0|000003"), (0, 0));
    assert_eq!(signed_in(&h, "auth0|000004"), (1, 1), "nobody else");
    // After the membership: no revocation came before its removal.
    let calls = h.sim.calls();
    let at = |needle: &str| {
        calls
            .iter()
            .position(|c| c.method == "DELETE" && c.path.ends_with(needle))
    };
    assert!(at("/organizations/org_acme/members") < at("/sessions"));
    let rows = h.report(&batch).await;
    for r in &rows {
        assert_eq!(r["outcome"], "succeeded", "{r:?}");
        assert_eq!(r["error_code"], "sessions_revoked", "{r:?}");
        assert!(r["error_message"].contains("revoked"), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_scope_needs_a_person_and_trips_no_breaker() {
    let faults = FaultConfig {
        auth0_missing_scopes: vec!["delete:sessions".into()],
        ..FaultConfig::default()
    };
    let h = Harness::start_with(Directory::generate(8, 3), options(faults)).await;
    // More leavers than the rejections that stop a batch's calls.
    let path = h.write_csv("leavers.csv", &csv(&[2, 3, 4, 5, 6]));
    let (code, batch, out) = h.run(&path).await;
    assert_eq!(code, Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = h.report(&batch).await;
    assert_eq!(rows.len(), 5);
    for r in &rows {
        assert_eq!(r["outcome"], "needs_attention", "{r:?}");
        assert_eq!(r["error_code"], "revoke_scope_missing", "{r:?}");
        assert!(r["error_message"].contains("delete:sessions"), "{r:?}");
    }
    // Every leaver's sessions call was made (no breaker stopped them), and
    // their membership removal stays done.
    assert_eq!(calls_to(&h, "DELETE", "/sessions").len(), 5);
    let members = &h.sim.state().auth0.organizations[0].members;
    for i in 2..=6 {
        let user = format!("auth0|{i:06}");
        assert!(!members.iter().any(|m| m.user_id == user), "{user}");
    }
}
