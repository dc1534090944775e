//! `offboard demo`: the example leavers, through the real pipeline, against
//! the built-in simulator on a free loopback port, into a temporary SQLite
//! file; then Auth0 leavers, and an undo of their batch that gives back what
//! it removed. Needs no configuration and no network.

use std::collections::BTreeMap;

use anyhow::anyhow;
use secrecy::SecretString;

use super::run::{RunOptions, process_batch, run_batch};
use super::{Failure, exit, setup};
use crate::config::{Config, ProviderConfig, ResolvedProvider};
use crate::connectors::{KindSettings, auth0};
use crate::engine::Engine;
use crate::sim::{Directory, SimConfig, SimServer};

const SEED: &str = include_str!("../../examples/sim-seed.json");
const LEAVERS: &str = include_str!("../../examples/leavers.csv");
const AUTH0_LEAVERS: &str = include_str!("../../examples/auth0-leavers.csv");

pub(super) async fn demo() -> Result<u8, Failure> {
    let token = format!("demo-{:032x}", rand::random::<u128>());
    let directory = Directory::from_json_str(SEED).map_err(|e| Failure::other(anyhow!("{e}")))?;
    let sim = SimServer::start(
        "127.0.0.1:0".parse().expect("a literal socket address"),
        SimConfig {
            token: token.clone(),
            seed: 42,
            faults: Default::default(),
            directory,
        },
    )
    .await
    .map_err(|e| Failure::other(anyhow!("cannot start the simulator: {e}")))?;
    println!("simulator listening on {}", sim.url());
    let dir = tempfile::tempdir().map_err(Failure::other)?;
    let db = dir.path().join("offboard-demo.db");
    let mut provider = ProviderConfig::new(
        KindSettings::Aitronos(Default::default()),
        sim.aitronos_base_url(),
        "OFFBOARD_DEMO_TOKEN",
    );
    provider.connection.protected_users = vec!["usr_breakglass".into()];
    let auth0 = ProviderConfig::new(
        KindSettings::Auth0(auth0::Settings {
            block_user: true,
            revoke_sessions: true,
        }),
        sim.auth0_base_url(),
        "OFFBOARD_DEMO_TOKEN",
    );
    let mut config = Config::default();
    config.database.url = format!("sqlite://{}", db.display());
    config.worker.concurrency = 8;
    config.providers = BTreeMap::from([
        ("acme".to_owned(), provider.clone()),
        ("a0".to_owned(), auth0.clone()),
    ]);
    let providers = [("acme", provider), ("a0", auth0)]
        .into_iter()
        .map(|(name, config)| ResolvedProvider {
            name: name.into(),
            config,
            token: SecretString::from(token.clone()),
            client: None,
        })
        .collect::<Vec<_>>();
    let (store, queue) = crate::database::open(&config.database)
        .await
        .map_err(Failure::other)?;
    // One engine per run: each run's worker registers under a name of its
    // own, which a stopped worker's name stays taken against for a while.
    let fresh = || {
        Engine::with_store(
            config.clone(),
            providers.clone(),
            store.clone(),
            queue.clone(),
        )
        .map_err(Failure::other)
    };
    let engine = fresh()?;
    println!("running examples/leavers.csv through the pipeline…");
    let result = run_batch(
        engine.clone(),
        LEAVERS.as_bytes(),
        &RunOptions {
            source_name: Some("examples/leavers.csv".into()),
            provider: Some("acme".into()),
            ..Default::default()
        },
    )
    .await?;
    show(&engine, &result.intake.batch_id, &result.counts).await?;

    println!();
    println!("running examples/auth0-leavers.csv (Auth0: block_user, revoke_sessions)…");
    let engine = fresh()?;
    let auth0 = run_batch(
        engine.clone(),
        AUTH0_LEAVERS.as_bytes(),
        &RunOptions {
            source_name: Some("examples/auth0-leavers.csv".into()),
            ..Default::default()
        },
    )
    .await?;
    show(&engine, &auth0.intake.batch_id, &auth0.counts).await?;

    println!();
    println!("the wrong file: undoing batch {}…", auth0.intake.batch_id);
    let engine = fresh()?;
    let undo = crate::pipeline::rails::undo(&engine, &auth0.intake.batch_id, None, &setup::actor())
        .await
        .map_err(|e| Failure::other(anyhow!(e)))?;
    let counts = process_batch(&engine, &undo.batch_id, false).await?;
    show(&engine, &undo.batch_id, &counts).await?;
    engine.close().await;
    sim.shutdown().await;
    Ok(exit::OK)
}

/// A batch's report as a table, then its summary line.
async fn show(
    engine: &Engine,
    batch_id: &str,
    counts: &crate::domain::OutcomeCounts,
) -> Result<(), Failure> {
    let rows = engine
        .store()
        .report_rows(batch_id)
        .await
        .map_err(Failure::other)?;
    println!();
    println!(
        "{:>4}  {:<16}  {:<16}  {:<30}  detail",
        "line", "user", "outcome", "roles"
    );
    for r in &rows {
        let detail = match (r.error_code.is_empty(), r.error_message.is_empty()) {
            (true, true) => String::new(),
            (true, false) => r.error_message.clone(),
            _ => format!("{}: {}", r.error_code, r.error_message),
        };
        println!(
            "{:>4}  {:<16}  {:<16}  {:<30}  {}",
            r.line,
            r.user_id,
            r.outcome,
            r.roles_removed.join(";"),
            detail
        );
    }
    println!();
    println!("batch {batch_id}: {}", counts.summary());
    Ok(())
}
