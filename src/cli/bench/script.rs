//! The Aitronos calls the connector makes for one leaver, in a plain loop:
//! read the roles, remove each, remove the membership with the transfer,
//! read back. Like an admin's script it checks nothing and never retries.
//! `baseline` runs it one user after another; `engine` runs it at the
//! worker concurrency as the HTTP floor (no queue, no database).

use std::time::Instant;

use futures::StreamExt;
use serde_json::json;

/// Runs the script for `usr_000002..` (`users` of them), `concurrency` users
/// at a time; returns the calls made and the seconds taken.
pub(super) async fn offboard_by_script(
    sim_url: &str,
    token: &str,
    users: usize,
    concurrency: usize,
) -> anyhow::Result<(usize, f64)> {
    let client = reqwest::Client::new();
    let org = format!("{sim_url}/aitronos/v1/organizations/org_acme");
    let started = Instant::now();
    let mut calls = 0;
    let mut each = futures::stream::iter(2..=users + 1)
        .map(|i| leaver(&client, &org, token, i))
        .buffer_unordered(concurrency.max(1));
    while let Some(made) = each.next().await {
        calls += made?;
    }
    Ok((calls, started.elapsed().as_secs_f64()))
}

async fn leaver(
    client: &reqwest::Client,
    org: &str,
    token: &str,
    i: usize,
) -> anyhow::Result<usize> {
    let user = format!("usr_{i:06}");
    let roles: serde_json::Value = client
        .get(format!("{org}/users/{user}/effective-permissions"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    let mut calls = 1;
    let roles = roles["role_ids"].as_array().cloned().unwrap_or_default();
    for role in roles.iter().filter_map(|r| r.as_str()) {
        client
            .delete(format!("{org}/roles/{role}/members/{user}"))
            .bearer_auth(token)
            .send()
            .await?;
        calls += 1;
    }
    client
        .delete(format!("{org}/users/{user}"))
        .bearer_auth(token)
        .json(&json!({"confirm": true, "transfer_resources_to_department_id": "dept_offboarded"}))
        .send()
        .await?;
    client
        .get(format!("{org}/users/{user}"))
        .bearer_auth(token)
        .send()
        .await?;
    Ok(calls + 2)
}
