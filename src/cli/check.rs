//! `offboard check`: the configuration is valid, every token and channel
//! secret is present, and every provider answers with our credentials.

use std::path::Path;

use super::{Failure, exit, setup};

pub(super) async fn check(config: Option<&Path>) -> Result<u8, Failure> {
    let engine = setup::engine(config).await?;
    println!(
        "configuration: ok ({}, {})",
        engine.config().database.display_url(),
        engine.store().backend().as_str()
    );
    let dir = std::path::Path::new(&engine.config().jobs.dir);
    let jobs =
        crate::jobs::load(dir, engine.config()).map_err(|e| Failure::usage(anyhow::anyhow!(e)))?;
    println!(
        "jobs ({}): {} drop folder(s), {} reconciliation(s)",
        dir.display(),
        jobs.dropfolders.len(),
        jobs.reconciles.len()
    );
    for job in &jobs.reconciles {
        for rail in job.rails.off() {
            println!(
                "warning: job {}: {rail} = \"off\": that rail will not halt a wrong roster",
                job.name
            );
        }
    }
    for (name, p) in &engine.config().providers {
        if p.connection.allow_insecure_http {
            println!(
                "provider {name}: WARNING: allow_insecure_http = true: over http:// its token travels in clear text"
            );
        }
    }
    for job in jobs
        .reconciles
        .iter()
        .filter(|j| j.roster.allow_insecure_http)
    {
        println!(
            "job {}: WARNING: roster allow_insecure_http = true: over http:// the roster and its token travel in clear text",
            job.name
        );
    }
    // Every channel's secret is set (its value is never shown); `offboard
    // notify test NAME` sends a message.
    let channels = crate::notify::resolve_channels(engine.config(), |v| std::env::var(v).ok())
        .map_err(Failure::usage)?;
    for channel in &channels {
        println!(
            "notify {}: {} for {}",
            channel.name,
            channel.config.kind.as_str(),
            channel.config.events.join(", ")
        );
    }
    if !channels.is_empty() && engine.config().http.public_url.is_none() {
        println!(
            "warning: [http] public_url is not set: notifications carry no link to the console"
        );
    }
    let mut failed = 0;
    let mut names: Vec<_> = engine.connectors().collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    for (name, connector) in names {
        match connector.probe().await {
            Ok(crate::connectors::Probe::Passed(detail)) => println!("provider {name}: {detail}"),
            // Not a failure (exit 0), but not a pass either.
            Ok(crate::connectors::Probe::Warning(detail)) => {
                println!("provider {name}: WARNING: {detail}")
            }
            Err(e) => {
                failed += 1;
                println!("provider {name}: FAILED: {}: {}", e.code, e.message);
            }
        }
    }
    if engine.connectors().next().is_none() {
        println!("no provider connections configured");
    }
    Ok(if failed > 0 { exit::OTHER } else { exit::OK })
}
