//! `offboard sim`: run the simulator as its own process.
//!
//! It prints `listening on http://ADDR` as its first stdout line, so a
//! parent process (a benchmark, a demo script) can start it on port 0 and
//! read where it went, then serves until Ctrl-C or SIGTERM.

use clap::Args;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use super::{Directory, FailNext, FaultConfig, RateLimit, SimConfig, SimError, SimServer};

/// The token used when the token variable is unset, so a local run just works.
const DEFAULT_TOKEN: &str = "sim-token";
/// Users generated when neither `--users` nor `--seed-file` is given.
const DEFAULT_USERS: usize = 100;

/// Arguments of `offboard sim`.
#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to serve on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Generate a directory with this many users [default: 100 without --seed-file].
    #[arg(long, value_name = "N", conflicts_with = "seed_file")]
    pub users: Option<usize>,
    /// Load the directory from this JSON file (the shape `GET /_sim/state` answers).
    #[arg(long, value_name = "PATH")]
    pub seed_file: Option<PathBuf>,
    /// Seed for generated users and for every random fault, so runs replay.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Environment variable holding the API token ("sim-token" while it is unset).
    #[arg(long, value_name = "NAME", default_value = "OFFBOARD_SIM_TOKEN")]
    pub token_env: String,
    /// Delay added to every provider answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Extra random delay, uniform in 0..MS.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub jitter_ms: u64,
    /// Share of calls (0..=1) answered 500, 502 or 503.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of calls (0..=1) held unanswered, so the client times out.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub timeout_rate: f64,
    /// How long a timed-out call is held before a 504.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    pub hang_ms: u64,
    /// Share of calls (0..=1) whose connection is reset without an answer.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub reset_rate: f64,
    /// Rate limit per provider, in requests per second (429 over it).
    #[arg(long, value_name = "RPS")]
    pub rate_limit_rps: Option<f64>,
    /// Burst allowed by the rate limit [default: the rate rounded up, at least 1].
    #[arg(long, value_name = "N", requires = "rate_limit_rps")]
    pub rate_limit_burst: Option<u32>,
    /// How fast the limiter's clock runs against real time (0.99: it
    /// refills 1% slower than the client counts).
    #[arg(
        long,
        value_name = "RATE",
        default_value_t = 1.0,
        requires = "rate_limit_rps"
    )]
    pub rate_limit_clock_rate: f64,
    /// Apply the rate limit when a call reaches it behind the latency and
    /// jitter, not on arrival.
    #[arg(long, requires = "rate_limit_rps")]
    pub rate_limit_behind_latency: bool,
    /// Fail the next COUNT calls naming USER with STATUS (repeatable),
    /// e.g. `--fail-next usr_000002:3:503`.
    #[arg(long, value_name = "USER:COUNT:STATUS", value_parser = parse_fail_next)]
    pub fail_next: Vec<FailNext>,
    /// How long an Auth0 membership removal stays invisible to reads.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub auth0_membership_delay_ms: u64,
    /// A scope the Auth0 token lacks (repeatable), e.g. `delete:sessions`:
    /// calls that need it answer 403 `insufficient_scope`.
    #[arg(long = "auth0-missing-scope", value_name = "SCOPE")]
    pub auth0_missing_scopes: Vec<String>,
}

fn parse_fail_next(text: &str) -> Result<FailNext, String> {
    let mut parts = text.rsplitn(3, ':');
    let (Some(status), Some(count), Some(user)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected USER:COUNT:STATUS".into());
    };
    Ok(FailNext {
        user_id: user.to_owned(),
        count: count
            .parse()
            .map_err(|_| format!("COUNT {count:?} is not a number"))?,
        status: status
            .parse()
            .map_err(|_| format!("STATUS {status:?} is not a number"))?,
        ..FailNext::default()
    })
}

impl SimArgs {
    /// The fault settings the flags describe.
    pub fn faults(&self) -> FaultConfig {
        let rate_limit = self.rate_limit_rps.map(|rps| RateLimit {
            requests_per_second: rps,
            // Saturating cast: a huge rate simply means a huge burst.
            burst: self.rate_limit_burst.unwrap_or(rps.ceil().max(1.0) as u32),
            clock_rate: self.rate_limit_clock_rate,
            behind_latency: self.rate_limit_behind_latency,
        });
        FaultConfig {
            latency_ms: self.latency_ms,
            jitter_ms: self.jitter_ms,
            error_rate: self.error_rate,
            timeout_rate: self.timeout_rate,
            hang_ms: self.hang_ms,
            reset_rate: self.reset_rate,
            rate_limit,
            fail_next: self.fail_next.clone(),
            auth0_membership_delay_ms: self.auth0_membership_delay_ms,
            auth0_missing_scopes: self.auth0_missing_scopes.clone(),
        }
    }

    async fn directory(&self) -> Result<Directory, SimError> {
        match &self.seed_file {
            Some(path) => {
                let text = tokio::fs::read_to_string(path).await.map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
                })?;
                Directory::from_json_str(&text)
            }
            None => Ok(Directory::generate(
                self.users.unwrap_or(DEFAULT_USERS),
                self.seed,
            )),
        }
    }

    fn token(&self) -> String {
        match std::env::var(&self.token_env) {
            Ok(token) if !token.is_empty() => token,
            _ => {
                eprintln!(
                    "{} is not set; using the default token \"{DEFAULT_TOKEN}\"",
                    self.token_env
                );
                DEFAULT_TOKEN.to_owned()
            }
        }
    }
}

/// Serve until Ctrl-C or SIGTERM, announcing the address on stdout first.
pub async fn run_cli(args: SimArgs) -> Result<(), SimError> {
    let faults = args.faults();
    faults.validate().map_err(SimError::InvalidFaults)?;
    let config = SimConfig {
        token: args.token(),
        seed: args.seed,
        faults,
        directory: args.directory().await?,
    };
    let server = SimServer::start(args.listen, config).await?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "listening on {}", server.url())?;
        out.flush()?;
    }
    let stopped = stop_requested().await;
    server.shutdown().await;
    stopped.map_err(SimError::from)
}

async fn stop_requested() -> io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
