//! `bench baseline`: what an admin's script does — one user after another,
//! one call after another, no queue, no retries — against offboard on the
//! same users, with 20 ms of provider latency. The figure is how many
//! times faster offboard finishes.

use std::time::Instant;

use serde_json::json;

use super::fixtures::{Pacing, backend, cores, offboard_users, peak_rss_mb, start_sim};
use super::{BenchArgs, Figure};

const LATENCY: [&str; 2] = ["--latency-ms", "20"];

pub(super) async fn baseline(args: &BenchArgs) -> anyhow::Result<Figure> {
    let users = args.users.unwrap_or(1_000);
    let token = format!("bench-{:032x}", rand::random::<u128>());
    let script_seconds;
    let calls;
    {
        let sim = start_sim(users + 1, &token, &LATENCY)?;
        let started = Instant::now();
        calls = script(&sim.url, &token, users).await?;
        script_seconds = started.elapsed().as_secs_f64();
    }
    let sim = start_sim(users + 1, &token, &LATENCY)?;
    let seconds = offboard_users(&sim, token, users, args, Pacing::default()).await?;
    Ok(Figure {
        scenario: "baseline",
        backend: backend(args),
        workers: args.workers.max(1),
        users,
        concurrency: args.concurrency,
        seconds,
        value: script_seconds / seconds,
        unit: "x a sequential script",
        target: ">= 20x",
        detail: format!("script {script_seconds:.1} s for {calls} calls; offboard {seconds:.1} s"),
        peak_rss_mb: peak_rss_mb(),
        cores: cores(),
    })
}

/// The same Aitronos calls the connector makes, in a plain loop: read the
/// roles, remove each, remove the membership with the transfer, read back.
/// Like a script, it checks nothing and never retries.
async fn script(sim_url: &str, token: &str, users: usize) -> anyhow::Result<usize> {
    let client = reqwest::Client::new();
    let org = format!("{sim_url}/aitronos/v1/organizations/org_acme");
    let mut calls = 0;
    for i in 2..=users + 1 {
        let user = format!("usr_{i:06}");
        let roles: serde_json::Value = client
            .get(format!("{org}/users/{user}/effective-permissions"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        calls += 1;
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
            .json(
                &json!({"confirm": true, "transfer_resources_to_department_id": "dept_offboarded"}),
            )
            .send()
            .await?;
        client
            .get(format!("{org}/users/{user}"))
            .bearer_auth(token)
            .send()
            .await?;
        calls += 2;
    }
    Ok(calls)
}
