//! `bench reconcile`: a simulated tenant of N members against an N-row
//! roster with 1% drift each way; the time to a saved plan and the
//! process's peak RSS.

use std::io::Write;
use std::time::Instant;

use anyhow::anyhow;

use super::fixtures::{BenchEngine, Pacing, backend, cores, peak_rss_mb, start_sim};
use super::{BenchArgs, Figure};
use crate::jobs::reconcile::{MatchOn, ReconcileSpec, RosterSource};

pub(super) async fn reconcile(args: &BenchArgs) -> anyhow::Result<Figure> {
    let members = args.users.unwrap_or(1_000_000);
    let token = format!("bench-{:032x}", rand::random::<u128>());
    let sim = start_sim(members, &token, &[])?;
    let bench = BenchEngine::start(&sim.url, &token, args, Pacing::default()).await?;
    // Every 100th member has left (not in the roster); as many new hires
    // are in the roster but not yet members.
    let roster = bench.dir.path().join("roster.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&roster)?);
    writeln!(out, "user_id")?;
    for i in 1..=members {
        if i % 100 == 0 {
            writeln!(out, "usr_new_{i:07}")?;
        } else {
            writeln!(out, "usr_{i:06}")?;
        }
    }
    out.flush()?;
    drop(out);
    let spec = ReconcileSpec::build(
        "bench".into(),
        "0 0 2 * * *",
        &None,
        Some("sim".into()),
        Some("org_acme".into()),
        Some(RosterSource {
            csv: Some(roster),
            url: None,
            token_env: None,
            match_on: MatchOn::UserId,
            allow_insecure_http: false,
        }),
        Some("dept_offboarded".into()),
        crate::jobs::reconcile::JobRails::default(),
        true,
        bench.engine.config(),
    )
    .map_err(|(key, e)| anyhow!("{key}: {e}"))?;
    let started = Instant::now();
    let trigger = crate::jobs::reconcile::Trigger {
        actor: crate::domain::Actor::named("bench"),
        origin: "cli",
    };
    let result = crate::jobs::reconcile::reconcile(&bench.engine, &spec, true, &trigger).await?;
    let seconds = started.elapsed().as_secs_f64();
    bench.finish().await?;
    // The simulator's own extra accounts count as drift too.
    let expected = members / 100;
    if result.removals.len() < expected {
        return Err(anyhow!(
            "planned {} removals, expected at least {expected}",
            result.removals.len()
        ));
    }
    Ok(Figure {
        scenario: "reconcile",
        backend: backend(args),
        workers: 1,
        users: members,
        concurrency: args.concurrency,
        seconds,
        value: seconds,
        unit: "s to a saved plan",
        target: "<= 10 s, peak RSS <= 500 MB",
        detail: format!(
            "{} members listed, {} roster rows, {} planned removals",
            result.members,
            result.roster_rows,
            result.removals.len()
        ),
        peak_rss_mb: peak_rss_mb(),
        cores: cores(),
    })
}
