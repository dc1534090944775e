//! Test harness: a simulator per test, a config file pointing at it, and a
//! way to run the real binary with the token in its environment.

use std::path::{Path, PathBuf};
use std::process::Output;

use offboard::sim::{Directory, FaultConfig, SimConfig, SimServer};

pub(crate) const TOKEN_ENV: &str = "OFFBOARD_IT_ACME_TOKEN";

pub(crate) struct Harness {
    pub sim: SimServer,
    pub token: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// Knobs of a test's worker configuration and simulator.
pub(crate) struct Options {
    pub faults: FaultConfig,
    pub concurrency: usize,
    pub timeout_ms: u64,
    pub max_attempts: u32,
    pub inline_wait_max_ms: u64,
    /// The simulator accepts a different token than the one we send.
    pub wrong_token: bool,
    /// More TOML appended to the config (sections not in the base).
    pub extra_config: String,
    /// Also configure `a0` (auth0), `rc` (recoup) and `sc` (scim) against
    /// the simulator; this text is appended to the `a0` section.
    pub all_providers: Option<String>,
    /// A PostgreSQL URL; SQLite in the test's folder when `None`.
    pub database_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            faults: FaultConfig::default(),
            concurrency: 8,
            timeout_ms: 5000,
            max_attempts: 4,
            inline_wait_max_ms: 500,
            wrong_token: false,
            extra_config: String::new(),
            all_providers: None,
            database_url: None,
        }
    }
}

impl Harness {
    pub(crate) async fn start(directory: Directory) -> Harness {
        Self::start_with(directory, Options::default()).await
    }

    /// The default harness on SQLite (`None`) or the PostgreSQL database
    /// at the URL.
    pub(crate) async fn on_database(directory: Directory, database_url: Option<String>) -> Harness {
        Self::start_with(
            directory,
            Options {
                database_url,
                ..Options::default()
            },
        )
        .await
    }

    pub(crate) async fn start_with(directory: Directory, o: Options) -> Harness {
        let token = format!("it-{:032x}", rand::random::<u128>());
        let sim_token = if o.wrong_token {
            format!("{token}-other")
        } else {
            token.clone()
        };
        let sim = SimServer::start(
            "127.0.0.1:0".parse().unwrap(),
            SimConfig {
                token: sim_token,
                seed: 7,
                faults: o.faults.clone(),
                directory,
            },
        )
        .await
        .expect("simulator starts");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("offboard.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[database]
url = "{db}"
[worker]
concurrency = {concurrency}
heartbeat_secs = 1
missed_heartbeats = 2
[retry]
base_ms = 20
cap_ms = 200
max_attempts = {max_attempts}
inline_wait_max_ms = {inline}
[providers.acme]
kind = "aitronos"
base_url = "{base}"
token_env = "{TOKEN_ENV}"
protected_users = ["usr_breakglass"]
timeout_ms = {timeout}
connect_timeout_ms = 1000
{extra}
"#,
                db = o.database_url.clone().unwrap_or_else(|| format!(
                    "sqlite://{}",
                    dir.path().join("offboard.db").display()
                )),
                base = sim.aitronos_base_url(),
                concurrency = o.concurrency,
                max_attempts = o.max_attempts,
                inline = o.inline_wait_max_ms,
                timeout = o.timeout_ms,
                extra = match &o.all_providers {
                    Some(a0) => format!(
                        "[providers.a0]\nkind = \"auth0\"\nbase_url = \"{}\"\ntoken_env = \"{TOKEN_ENV}\"\ntimeout_ms = {}\n{a0}\n[providers.rc]\nkind = \"recoup\"\nbase_url = \"{}\"\ntoken_env = \"{TOKEN_ENV}\"\n[providers.sc]\nkind = \"scim\"\nbase_url = \"{}\"\ntoken_env = \"{TOKEN_ENV}\"\n{}",
                        sim.auth0_base_url(),
                        o.timeout_ms,
                        sim.recoup_base_url(),
                        sim.scim_base_url(),
                        o.extra_config
                    ),
                    None => o.extra_config.clone(),
                },
            ),
        )
        .unwrap();
        Harness {
            sim,
            token,
            dir,
            config,
        }
    }

    pub(crate) fn write_csv(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `offboard --config <cfg> ARGS…` with the token set.
    pub(crate) async fn offboard(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"));
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.env(TOKEN_ENV, &self.token).env_remove("RUST_LOG");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.kill_on_drop(true)
            .output()
            .await
            .expect("offboard runs")
    }

    /// `offboard tokens add NAME --role ROLE`: the new personal token.
    pub(crate) async fn token(&self, name: &str, role: &str) -> String {
        let out = self
            .offboard(&["tokens", "add", name, "--role", role], &[])
            .await;
        assert!(
            out.status.success(),
            "tokens add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(token.starts_with("obt_"), "{token}");
        token
    }

    /// `offboard run FILE`, returning (exit code, batch id).
    pub(crate) async fn run(&self, csv: &Path) -> (Option<i32>, String, Output) {
        let out = self.offboard(&["run", csv.to_str().unwrap()], &[]).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let batch = stdout
            .lines()
            .find_map(|l| l.strip_prefix("batch "))
            .and_then(|l| l.split(':').next())
            .unwrap_or_else(|| {
                panic!(
                    "no summary line in {stdout:?}; stderr {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .to_owned();
        (out.status.code(), batch, out)
    }

    /// The batch report as CSV records keyed by column name.
    pub(crate) async fn report(
        &self,
        batch: &str,
    ) -> Vec<std::collections::HashMap<String, String>> {
        let out = self
            .offboard(&["report", batch, "--format", "csv"], &[])
            .await;
        assert!(
            out.status.success(),
            "report failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
        let headers = reader.headers().unwrap().clone();
        reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                headers
                    .iter()
                    .map(str::to_owned)
                    .zip(r.iter().map(str::to_owned))
                    .collect()
            })
            .collect()
    }
}

/// Runs a 2,400-line file (lines 2 to 2,401) whose lines 500, 1,000, 1,500
/// and 2,000 are rejected, on a harness whose `max_batch_requests` halts
/// it; returns the batch id.
pub(crate) async fn long_halted_batch(h: &Harness) -> String {
    let mut csv = String::from("user_id,organization_id,transfer_to_department_id\n");
    for line in 2..=2_401 {
        if line % 500 == 0 {
            csv.push_str("usr_bad/id,org_acme,dept_offboarded\n");
        } else {
            csv.push_str(&format!("usr_{line:06},org_acme,dept_offboarded\n"));
        }
    }
    let path = h.write_csv("long.csv", &csv);
    let out = h.offboard(&["run", path.to_str().unwrap()], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("batch "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no halted batch in {stderr}"))
        .to_owned()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails the test, with the command's stderr, unless it exited `code`.
pub(crate) fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
}

/// The batch id of a summary line on stdout (`batch ID: …`).
pub(crate) fn batch_of(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("batch "))
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("no summary in {stdout:?}; stderr {}", stderr(out)))
        .to_owned()
}

/// 60 generated users plus the special cases the scenarios need.
pub(crate) fn directory() -> Directory {
    let mut dir = Directory::generate(60, 11);
    let org = &mut dir.aitronos.organizations[0];
    for m in &mut org.members {
        match m.user_id.as_str() {
            // A user with no roles left.
            "usr_000010" => m.role_ids.clear(),
            // A user removed last month.
            "usr_000011" => {
                m.account_state = "deleted".into();
                m.role_ids.clear();
                m.deleted_at = Some(chrono::Utc::now());
            }
            _ => {}
        }
    }
    dir
}

/// The member with `user_id` in the simulator's current state.
pub(crate) fn member(sim: &SimServer, user_id: &str) -> offboard::sim::AitronosMember {
    sim.state().aitronos.organizations[0]
        .members
        .iter()
        .find(|m| m.user_id == user_id)
        .cloned()
        .unwrap_or_else(|| panic!("{user_id} is not in the directory"))
}

/// The SCIM user with `id` in the simulator's current state.
pub(crate) fn scim_user(sim: &SimServer, id: &str) -> Option<offboard::sim::ScimUser> {
    sim.state().scim.users.into_iter().find(|u| u.id == id)
}

/// The ids of the SCIM groups `id` belongs to now, sorted.
pub(crate) fn scim_groups_of(sim: &SimServer, id: &str) -> Vec<String> {
    let mut groups: Vec<String> = sim
        .state()
        .scim
        .groups
        .into_iter()
        .filter(|g| g.members.iter().any(|m| m == id))
        .map(|g| g.id)
        .collect();
    groups.sort();
    groups
}

pub(crate) fn removal_calls(sim: &SimServer) -> usize {
    sim.calls().iter().filter(|c| c.method == "DELETE").count()
}

/// A CSV offboarding `usr_{from:06}` to `usr_{to:06}` into dept_offboarded.
pub(crate) fn users_csv(from: usize, to: usize) -> String {
    let mut csv = String::from("user_id,organization_id,transfer_to_department_id\n");
    for i in from..=to {
        csv.push_str(&format!("usr_{i:06},org_acme,dept_offboarded\n"));
    }
    csv
}

pub(crate) const API_TOKEN_ENV: &str = "OFFBOARD_IT_API_TOKEN";

/// Options whose API listens on a random port, with `http` added to its
/// `[http]` section.
pub(crate) fn api_options(http: &str) -> Options {
    Options {
        extra_config: format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"{API_TOKEN_ENV}\"\n{http}"
        ),
        ..Options::default()
    }
}

/// A listener on a random loopback port and its base URL, for a mock
/// provider the harness's config must name before it serves.
pub(crate) async fn loopback() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// A running `offboard serve` child process.
pub(crate) struct Serve {
    child: tokio::process::Child,
    pub url: String,
    pub api_token: String,
    /// The queue worker's name (empty with `--no-workers`).
    pub worker: String,
    /// Every line it wrote to stderr so far (also passed on to ours).
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Serve {
    /// `POST /v1/batches` of `csv` with the harness's token: the answer,
    /// which must be 202 (a batch over the cap is accepted, halted).
    pub(crate) async fn upload_csv(&self, csv: String) -> serde_json::Value {
        let response = self
            .authed(self.client().post(format!("{}/v1/batches", self.url)))
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        response.json().await.unwrap()
    }

    /// Kills it with SIGKILL, as a crash would, and waits.
    pub(crate) async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL is sent");
        let _ = self.child.wait().await;
    }

    /// Stops it with SIGTERM (graceful) and waits.
    pub(crate) async fn stop(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        self.child.wait().await.expect("serve exits")
    }

    /// The first stderr line containing `needle`, waiting up to `secs`.
    pub(crate) async fn log_line(&self, secs: u64, needle: &str) -> String {
        let mut found = None;
        eventually(secs, &format!("a log line with {needle:?}"), || {
            found = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
                .cloned();
            let hit = found.is_some();
            async move { hit }
        })
        .await;
        found.unwrap_or_default()
    }

    /// Every stderr line so far.
    pub(crate) fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the exit, failing after `secs` seconds
    /// (a serve that does not stop is the failure, not a hang).
    pub(crate) async fn stop_within(mut self, secs: u64) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        tokio::time::timeout(std::time::Duration::from_secs(secs), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("serve did not stop within {secs} s of SIGTERM"))
            .expect("serve exits")
    }

    pub(crate) fn client(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    pub(crate) fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        rb.bearer_auth(&self.api_token)
    }

    /// `GET /v1/batches/{batch}/report` asking for `accept`, which must be
    /// the content type of the answer.
    pub(crate) async fn report(&self, batch: &str, accept: &str) -> reqwest::Response {
        let response = self
            .authed(
                self.client()
                    .get(format!("{}/v1/batches/{batch}/report", self.url)),
            )
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(content_type.starts_with(accept), "{content_type}");
        response
    }
}

impl Harness {
    /// Starts `offboard serve ARGS` and waits for its API address.
    pub(crate) async fn serve(&self, args: &[&str]) -> Serve {
        self.serve_with_env(args, &[]).await
    }

    /// `offboard serve ARGS` with more environment variables.
    pub(crate) async fn serve_with_env(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Serve {
        use tokio::io::AsyncBufReadExt;
        let api_token = format!("api-{:032x}", rand::random::<u128>());
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"));
        cmd.arg("--config")
            .arg(&self.config)
            .arg("serve")
            .args(args);
        cmd.env(TOKEN_ENV, &self.token)
            .env(API_TOKEN_ENV, &api_token)
            .env("RUST_LOG", "offboard=warn")
            .envs(extra_env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("serve starts");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let kept = logs.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
                kept.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut url = String::new();
        if !args.contains(&"--no-api") {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("serve prints its address");
            url = line
                .strip_prefix("api listening on ")
                .expect("address line")
                .to_owned();
        }
        let mut worker = String::new();
        if !args.contains(&"--no-workers") {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(name) = line
                    .strip_prefix("worker ")
                    .and_then(|l| l.strip_suffix(" started"))
                {
                    worker = name.to_owned();
                    break;
                }
            }
            assert!(!worker.is_empty(), "serve printed no worker line");
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Serve {
            child,
            url,
            api_token,
            worker,
            logs,
        }
    }
}

/// Polls `check` every 50 ms until it holds, failing after `secs` seconds.
pub(crate) async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
