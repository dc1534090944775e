//! `offboard tokens add|list|revoke`: personal API tokens, managed from a
//! shell on the database host (which is admin-level access anyway).

use std::path::Path;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use secrecy::ExposeSecret;

use super::{Failure, exit, setup};
use crate::api::token_request;
use crate::identity::issue_token;
use crate::store::{NewToken, Store};

#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    pub command: TokensCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a personal token; it is printed once and only its hash is kept.
    Add {
        /// The person (or script) it belongs to: [a-z0-9._-]{1,64}.
        name: String,
        /// viewer, operator, approver or admin.
        #[arg(long)]
        role: String,
        /// Lifetime (e.g. 90d, 12h); without it the token lives until
        /// revoked.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// Live tokens: name, role, created, last used, expires.
    List,
    /// Revoke the live token called NAME.
    Revoke { name: String },
}

pub(super) async fn tokens(config: Option<&Path>, args: TokensArgs) -> Result<u8, Failure> {
    let store = setup::store(config).await?;
    match args.command {
        TokensCommand::Add {
            name,
            role,
            expires,
        } => add(&store, &name, &role, expires.as_deref()).await,
        TokensCommand::List => {
            let mut after: Option<String> = None;
            println!(
                "{:<24}  {:<8}  {:<24}  {:<24}  {:<24}  created by",
                "name", "role", "created", "last used", "expires"
            );
            loop {
                let page = store
                    .list_tokens(after.as_deref(), 500)
                    .await
                    .map_err(Failure::other)?;
                for t in &page {
                    println!(
                        "{:<24}  {:<8}  {:<24}  {:<24}  {:<24}  {}",
                        t.name,
                        t.role,
                        t.created_at,
                        t.last_used_at.as_deref().unwrap_or("never"),
                        match (&t.expires_at, t.expired) {
                            (Some(at), true) => format!("{at} (expired)"),
                            (Some(at), false) => at.clone(),
                            (None, _) => "never".to_owned(),
                        },
                        t.created_by
                    );
                }
                match page.last() {
                    Some(last) if page.len() == 500 => after = Some(last.name.clone()),
                    _ => break,
                }
            }
            Ok(exit::OK)
        }
        TokensCommand::Revoke { name } => {
            if store.revoke_token(&name).await.map_err(Failure::other)? {
                eprintln!("token {name} revoked");
                Ok(exit::OK)
            } else {
                Err(Failure::usage(anyhow!("no live token called {name}")))
            }
        }
    }
}

async fn add(store: &Store, name: &str, role: &str, expires: Option<&str>) -> Result<u8, Failure> {
    let (role, expires_at) =
        token_request(name, role, expires).map_err(|m| Failure::usage(anyhow!(m)))?;
    let issued = issue_token();
    let actor = setup::actor();
    let stored = store
        .add_token(&NewToken {
            name,
            role,
            sha256: &issued.sha256,
            expires_at,
            created_by: actor.as_str(),
        })
        .await
        .map_err(Failure::other)?;
    if !stored {
        return Err(Failure::usage(anyhow!(
            "a live token is already called {name}: revoke it first"
        )));
    }
    eprintln!("token {name} ({role}) made; it is shown once, here, and only its hash is kept:");
    println!("{}", issued.token.expose_secret());
    Ok(exit::OK)
}
