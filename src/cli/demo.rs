//! `offboard demo`: the example leavers, through the real pipeline, against
//! the built-in simulator on a free loopback port, into a temporary SQLite
//! file. Needs no configuration and no network.

use std::collections::BTreeMap;

use anyhow::anyhow;
use secrecy::SecretString;

use super::run::{RunOptions, run_batch};
use super::{Failure, exit};
use crate::config::{Config, ProviderConfig, ProviderKind, ResolvedProvider};
use crate::engine::Engine;
use crate::sim::{Directory, SimConfig, SimServer};
use crate::store::Store;

const SEED: &str = include_str!("../../examples/sim-seed.json");
const LEAVERS: &str = include_str!("../../examples/leavers.csv");

pub async fn demo() -> Result<u8, Failure> {
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
    let provider = ProviderConfig {
        protected_users: vec!["usr_breakglass".into()],
        ..ProviderConfig::new(
            ProviderKind::Aitronos,
            sim.aitronos_base_url(),
            "OFFBOARD_DEMO_TOKEN",
        )
    };
    let mut config = Config::default();
    config.database.url = format!("sqlite://{}", db.display());
    config.worker.concurrency = 8;
    config.providers = BTreeMap::from([("acme".to_owned(), provider.clone())]);
    let providers = vec![ResolvedProvider {
        name: "acme".into(),
        config: provider,
        token: SecretString::from(token),
        client: None,
    }];
    let store = Store::open(&config.database)
        .await
        .map_err(Failure::other)?;
    let engine = Engine::with_store(config, providers, store).map_err(Failure::other)?;
    println!("running examples/leavers.csv through the pipeline…");
    let result = run_batch(
        engine.clone(),
        LEAVERS.as_bytes(),
        &RunOptions {
            source_name: Some("examples/leavers.csv".into()),
            ..Default::default()
        },
    )
    .await?;
    let rows = engine
        .store()
        .report_rows(&result.intake.batch_id)
        .await
        .map_err(Failure::other)?;
    println!();
    println!(
        "{:>4}  {:<16}  {:<16}  {:<30}  detail",
        "line", "user", "outcome", "roles removed"
    );
    for r in &rows {
        let detail = if r.error_code.is_empty() {
            String::new()
        } else {
            format!("{}: {}", r.error_code, r.error_message)
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
    println!(
        "batch {}: {}",
        result.intake.batch_id,
        result.counts.summary()
    );
    engine.store().close().await;
    sim.shutdown().await;
    Ok(exit::OK)
}
