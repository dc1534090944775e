//! Notifications (#35): a webhook receiver, a Slack stand-in and an SMTP
//! server, each run by the test on a random loopback port, receive what
//! the real binary sends — signed, once per event, after refusals and
//! after a crash, from two processes on one PostgreSQL database.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use offboard::sim::Directory;
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::helpers::{Harness, Options, api_options, eventually, users_csv};
use crate::postgres::TestDatabase;

const SECRET_ENV: &str = "OFFBOARD_IT_WEBHOOK_SECRET";
const SLACK_ENV: &str = "OFFBOARD_IT_SLACK_URL";

/// One POST the receiver got: the event id header, the body, whether the
/// signature checked out, and what it answered.
#[derive(Debug, Clone)]
struct Hit {
    event_id: String,
    body: Value,
    signed: bool,
    answered: u16,
}

#[derive(Default)]
struct Receiver {
    secret: String,
    /// Answer 503 to this many requests first.
    refuse: usize,
    /// Never answer the first request (the sender dies waiting).
    hang_first: bool,
    hits: Vec<Hit>,
    slack: Vec<Value>,
}

type Shared = Arc<Mutex<Receiver>>;

/// Checks `Offboard-Signature: t=…,v1=…` the way a receiver would, with
/// its own HMAC, not offboard's code.
fn signature_ok(secret: &str, header: &str, body: &[u8]) -> bool {
    let part = |key: &str| {
        header
            .split(',')
            .find_map(|p| p.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
    };
    let (Some(t), Some(v1)) = (part("t"), part("v1")) else {
        return false;
    };
    let Ok(t) = t.parse::<i64>() else {
        return false;
    };
    // A receiver refuses old signatures (replays).
    if (chrono::Utc::now().timestamp() - t).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::decode(v1).is_ok_and(|v| mac.verify_slice(&v).is_ok())
}

async fn hook(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let (hang, answer) = {
        let mut r = state.lock().unwrap();
        let hang = r.hang_first && r.hits.is_empty();
        let refused = r.hits.len() < r.refuse;
        let answer = if hang {
            0
        } else if refused {
            503
        } else {
            200
        };
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let signed = signature_ok(&r.secret, &header("offboard-signature"), &body);
        r.hits.push(Hit {
            event_id: header("offboard-event-id"),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            signed,
            answered: answer,
        });
        (hang, answer)
    };
    if hang {
        std::future::pending::<()>().await;
    }
    StatusCode::from_u16(answer).unwrap()
}

async fn slack(State(state): State<Shared>, body: Bytes) -> StatusCode {
    let payload = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.lock().unwrap().slack.push(payload);
    StatusCode::OK
}

/// Starts the receiver; its base URL.
async fn receiver(state: Shared) -> String {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .route("/slack", axum::routing::post(slack))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn shared(secret: &str) -> Shared {
    Arc::new(Mutex::new(Receiver {
        secret: secret.to_owned(),
        ..Receiver::default()
    }))
}

fn hits(state: &Shared) -> Vec<Hit> {
    state.lock().unwrap().hits.clone()
}

/// `[notify]` with a webhook channel to `url` wanting `events`.
fn webhook_config(url: &str, events: &str) -> String {
    format!(
        r#"
[notify]
retry_base_ms = 50
retry_for = "1h"
[notify.hr_webhook]
kind = "webhook"
url = "{url}/hook"
secret_env = "{SECRET_ENV}"
events = [{events}]
"#
    )
}

/// Waits until `offboard notify status` lists nothing pending or dead.
async fn all_delivered(h: &Harness, env: &[(&str, &str)]) {
    eventually(30, "every delivery sent", || async {
        let out = h.offboard(&["notify", "status", "--json"], env).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        rows.is_empty()
    })
    .await;
}

/// The bytes of the SQLite database's files, to prove what is not in them.
fn database_bytes(h: &Harness) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal"] {
        let path = h.dir.path().join(format!("offboard.db{suffix}"));
        all.extend(std::fs::read(path).unwrap_or_default());
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A 600-row upload halts over the cap: the webhook gets exactly one
/// `batch.halted`, signed, naming the batch, its halt and the console's
/// page; the secret is in no log line and not in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_600_row_upload_sends_one_signed_batch_halted() {
    let secret = format!("whsec-{:032x}", rand::random::<u128>());
    let state = shared(&secret);
    let url = receiver(state.clone()).await;
    let mut o = api_options("public_url = \"https://offboard.acme.example/\"");
    o.extra_config += &webhook_config(&url, "\"batch.halted\", \"batch.finished\"");
    let h = Harness::start_with(Directory::generate(601, 9), o).await;
    let env = [(SECRET_ENV, secret.as_str())];
    let serve = h.serve_with_env(&[], &env).await;
    let answer = serve.upload_csv(users_csv(2, 601)).await;
    let batch = answer["batch_id"].as_str().unwrap().to_owned();
    assert!(!answer["halted"].is_null(), "{answer}");
    eventually(30, "the webhook's delivery", || {
        let n = hits(&state).len();
        async move { n >= 1 }
    })
    .await;
    all_delivered(&h, &env).await;
    let got = hits(&state);
    assert_eq!(got.len(), 1, "exactly one message: {got:?}");
    let hit = &got[0];
    assert!(hit.signed, "the signature verifies");
    assert_eq!(hit.answered, 200);
    let body = &hit.body;
    assert_eq!(body["event"], "batch.halted");
    assert_eq!(body["id"], hit.event_id.as_str(), "Offboard-Event-Id");
    assert_eq!(body["batch"]["id"], batch.as_str());
    assert_eq!(body["batch"]["halt_code"], "max_batch_requests");
    assert_eq!(body["batch"]["planned_removals"], 600);
    assert_eq!(body["detail"]["code"], "max_batch_requests");
    assert_eq!(
        body["link"],
        format!("https://offboard.acme.example/batches/{batch}").as_str()
    );
    let metrics = serve
        .authed(serve.client().get(format!("{}/metrics", serve.url)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"offboard_notifications_total{channel="hr_webhook",result="sent"} 1"#),
        "{metrics}"
    );
    let logs = serve.logs().join("\n");
    serve.stop().await;
    assert!(!logs.contains(&secret), "the secret is in a log line");
    assert!(
        !contains(&database_bytes(&h), &secret),
        "the secret is in the database"
    );
}

/// The receiver refuses three attempts: the fourth, 50 + 100 + 200 ms
/// later, delivers it — the same event, sent by `run` before it exits,
/// answered 2xx once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_arrives_later_exactly_once() {
    let secret = "whsec-refused".to_owned();
    let state = shared(&secret);
    state.lock().unwrap().refuse = 3;
    let url = receiver(state.clone()).await;
    let o = Options {
        extra_config: webhook_config(&url, "\"batch.halted\""),
        ..Options::default()
    };
    let h = Harness::start_with(Directory::generate(601, 9), o).await;
    let env = [(SECRET_ENV, secret.as_str())];
    let csv = h.write_csv("600.csv", &users_csv(2, 601));
    let out = h.offboard(&["run", csv.to_str().unwrap()], &env).await;
    assert_eq!(out.status.code(), Some(3), "halted");
    all_delivered(&h, &env).await;
    let got = hits(&state);
    let answers: Vec<u16> = got.iter().map(|h| h.answered).collect();
    assert_eq!(answers, [503, 503, 503, 200], "{got:?}");
    assert!(
        got.iter()
            .all(|h| h.signed && h.event_id == got[0].event_id)
    );
    assert_eq!(got[3].body["event"], "batch.halted");
    // Nothing is left to send: another command sends nothing more.
    let out = h.offboard(&["notify", "status"], &env).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no pending or dead deliveries"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(hits(&state).len(), 4);
}

/// `serve` is killed (SIGKILL) while its delivery waits for an answer,
/// after the halt was stored: the restarted `serve` delivers the event,
/// and it is answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serve_killed_before_delivery_delivers_after_restart_once() {
    let secret = "whsec-crash".to_owned();
    let state = shared(&secret);
    state.lock().unwrap().hang_first = true;
    let url = receiver(state.clone()).await;
    let mut o = api_options("");
    o.extra_config += &webhook_config(&url, "\"batch.halted\"");
    let h = Harness::start_with(Directory::generate(601, 9), o).await;
    // A lease of 6 s and sends that give up after 3 s: the first serve is
    // still waiting for its answer when it is killed.
    let env = [
        (SECRET_ENV, secret.as_str()),
        ("OFFBOARD__WORKER__HEARTBEAT_SECS", "3"),
    ];
    let first = h.serve_with_env(&[], &env).await;
    let answer = first.upload_csv(users_csv(2, 601)).await;
    let batch = answer["batch_id"].as_str().unwrap().to_owned();
    eventually(30, "the first, unanswered delivery", || {
        let n = hits(&state).len();
        async move { n >= 1 }
    })
    .await;
    first.kill().await;
    assert_eq!(hits(&state).len(), 1, "the first serve sent it once");
    let second = h.serve_with_env(&[], &env).await;
    eventually(30, "the delivery after the restart", || {
        let n = hits(&state).iter().filter(|h| h.answered == 200).count();
        async move { n >= 1 }
    })
    .await;
    all_delivered(&h, &env).await;
    second.stop().await;
    let got = hits(&state);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].answered, 0, "the first was never answered");
    assert_eq!(got[1].answered, 200);
    assert_eq!(got[0].event_id, got[1].event_id, "the same event");
    assert_eq!(got[1].body["batch"]["id"], batch.as_str());
}

/// Two `serve` processes on one PostgreSQL database, and events waiting
/// for them and made while they run: each event is sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serves_on_postgres_deliver_each_event_once() {
    let Some(db) = TestDatabase::create("two_serves_on_postgres_deliver_each_event_once").await
    else {
        return;
    };
    let secret = "whsec-pg".to_owned();
    let state = shared(&secret);
    let url = receiver(state.clone()).await;
    let o = Options {
        database_url: Some(db.url.clone()),
        extra_config: format!(
            "[safety]\nmax_batch_requests = 2\n{}",
            webhook_config(&url, "\"batch.halted\"")
        ),
        ..Options::default()
    };
    let h = Harness::start_with(Directory::generate(60, 9), o).await;
    let env = [(SECRET_ENV, secret.as_str())];
    let mut batches = Vec::new();
    let mut submit = async |i: usize| {
        let csv = h.write_csv(&format!("b{i}.csv"), &users_csv(3 * i + 2, 3 * i + 4));
        let out = h.offboard(&["submit", csv.to_str().unwrap()], &env).await;
        // Over the cap: halted, exit 3, the id alone on stdout.
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        batches.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    };
    for i in 0..6 {
        submit(i).await;
    }
    let a = h.serve_with_env(&["--no-api"], &env).await;
    let b = h.serve_with_env(&["--no-api"], &env).await;
    for i in 6..10 {
        submit(i).await;
    }
    all_delivered(&h, &env).await;
    a.stop().await;
    b.stop().await;
    let got = hits(&state);
    let mut delivered: Vec<String> = got
        .iter()
        .map(|h| {
            h.body["batch"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    delivered.sort();
    batches.sort();
    assert_eq!(delivered, batches, "each batch's halt once: {got:?}");
    let mut ids: Vec<&str> = got.iter().map(|h| h.event_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 10);
    db.drop().await;
}

/// An SMTP server of the test's own, on loopback: enough of RFC 5321 for
/// lettre without TLS. Each message's DATA, unfolded.
async fn smtp_server(mails: Arc<Mutex<Vec<String>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let mails = mails.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write
                    .write_all(b"220 localhost test SMTP\r\n")
                    .await
                    .unwrap();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(text) = data.as_mut() {
                        if line == "." {
                            let mail = data.take().unwrap().replace("\r\n ", " ");
                            mails.lock().unwrap().push(mail.replace("\n ", " "));
                            write.write_all(b"250 2.0.0 queued\r\n").await.unwrap();
                        } else {
                            text.push_str(line.strip_prefix('.').unwrap_or(&line));
                            text.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-localhost\r\n250 8BITMIME\r\n",
                        "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 ok\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 end with .\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
                            return;
                        }
                        _ => b"502 5.5.2 not implemented\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    addr
}

/// A halted batch's email arrives at the test's SMTP server, the batch id
/// in its subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_arrives_with_the_batch_id_in_its_subject() {
    let mails = Arc::new(Mutex::new(Vec::new()));
    let smtp = smtp_server(mails.clone()).await;
    let o = Options {
        extra_config: format!(
            r#"
[notify]
retry_base_ms = 50
[notify.it_mail]
kind = "email"
smtp = "{smtp}"
tls = "none"
from = "offboard@acme.example"
to = ["it-ops@acme.example", "hr@acme.example"]
events = ["batch.halted"]
"#
        ),
        ..Options::default()
    };
    let h = Harness::start_with(Directory::generate(601, 9), o).await;
    let csv = h.write_csv("600.csv", &users_csv(2, 601));
    let out = h.offboard(&["run", csv.to_str().unwrap()], &[]).await;
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let batch = err
        .lines()
        .find_map(|l| l.strip_prefix("batch "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no halted batch in {err}"))
        .to_owned();
    let got = mails.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "one mail, sent before `run` exited: {got:?}");
    let mail = &got[0];
    let subject = mail
        .lines()
        .find(|l| l.starts_with("Subject: "))
        .unwrap_or_else(|| panic!("no subject in {mail}"));
    assert!(subject.contains(&batch), "{subject}");
    assert!(subject.contains("halted"), "{subject}");
    assert!(
        mail.contains("To: it-ops@acme.example, hr@acme.example"),
        "{mail}"
    );
    assert!(mail.contains("max_batch_requests"), "{mail}");
}

/// What Slack's incoming webhooks take: `text` (the fallback, shown in
/// notifications) and `blocks` of known types whose text objects are
/// `plain_text` or `mrkdwn` within Slack's limits, and nothing else.
fn assert_slack_message(p: &Value) {
    let object = p.as_object().expect("a JSON object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["blocks", "text"], "{p}");
    assert!(!p["text"].as_str().unwrap().is_empty());
    let blocks = p["blocks"].as_array().unwrap();
    assert!(!blocks.is_empty() && blocks.len() <= 50);
    for block in blocks {
        let text = &block["text"];
        match block["type"].as_str().unwrap() {
            "header" => {
                assert_eq!(text["type"], "plain_text");
                assert!(text["text"].as_str().unwrap().chars().count() <= 150);
            }
            "section" => {
                assert!(matches!(
                    text["type"].as_str(),
                    Some("mrkdwn" | "plain_text")
                ));
                assert!(text["text"].as_str().unwrap().chars().count() <= 3000);
            }
            other => panic!("unexpected block type {other}"),
        }
    }
}

/// Slack gets the incoming-webhook format, for `notify test` and for a
/// batch left with people `needs_attention` (the only owner cannot be
/// removed), who are named in its one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_gets_incoming_webhook_messages() {
    let state = shared("");
    let url = receiver(state.clone()).await;
    let o = Options {
        extra_config: format!(
            r#"
[notify]
retry_base_ms = 50
[notify.it_slack]
kind = "slack"
url_env = "{SLACK_ENV}"
events = ["batch.finished"]
"#
        ),
        ..Options::default()
    };
    let h = Harness::start_with(crate::helpers::directory(), o).await;
    let slack_url = format!("{url}/slack");
    let env = [(SLACK_ENV, slack_url.as_str())];
    let out = h.offboard(&["notify", "test", "it_slack"], &env).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = h.write_csv("owner.csv", &users_csv(1, 3));
    let out = h.offboard(&["run", csv.to_str().unwrap()], &env).await;
    assert_eq!(out.status.code(), Some(3), "the owner needs attention");
    let got = state.lock().unwrap().slack.clone();
    assert_eq!(got.len(), 2, "the test and the batch: {got:?}");
    for p in &got {
        assert_slack_message(p);
    }
    assert!(got[0]["text"].as_str().unwrap().contains("it_slack"));
    // One section per line: the batch's text is all of them.
    let batch_text = got[1]["blocks"].as_array().unwrap()[1..]
        .iter()
        .map(|b| b["text"]["text"].as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        got[1]["text"].as_str().unwrap().contains("finished"),
        "{}",
        got[1]
    );
    assert!(
        batch_text.contains("needs_attention: usr_000001"),
        "{batch_text}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&slack_url));
}

/// With credentials the provider rejects: the breaker's trip, the batch it
/// left failed, a reconciliation that cannot list the members, and a
/// drop-folder file with no usable header each reach the webhook once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_reconcile_and_drop_folder_failures_are_told() {
    let secret = "whsec-others".to_owned();
    let state = shared(&secret);
    let url = receiver(state.clone()).await;
    let o = Options {
        wrong_token: true,
        extra_config: webhook_config(
            &url,
            "\"provider.credentials_rejected\", \"batch.finished\", \"reconcile.failed\", \"dropfolder.file_failed\"",
        ),
        ..Options::default()
    };
    let h = Harness::start_with(Directory::generate(60, 9), o).await;
    let env = [(SECRET_ENV, secret.as_str())];
    let jobs = h.dir.path().join("jobs");
    let inbox = h.dir.path().join("inbox");
    std::fs::create_dir_all(&jobs).unwrap();
    std::fs::create_dir_all(&inbox).unwrap();
    let roster = h.write_csv("roster.csv", "email\nuser000001@acme.example\n");
    std::fs::write(
        jobs.join("nightly.toml"),
        format!(
            "schedule = \"0 0 2 * * *\"\nprovider = \"acme\"\norganization_id = \"org_acme\"\nroster = {{ csv = \"{}\" }}\n",
            roster.display()
        ),
    )
    .unwrap();
    std::fs::write(
        jobs.join("hris.toml"),
        format!(
            "watch = \"{}\"\nprovider = \"acme\"\npoll_ms = 100\n",
            inbox.display()
        ),
    )
    .unwrap();

    let csv = h.write_csv("five.csv", &users_csv(2, 6));
    let out = h.offboard(&["run", csv.to_str().unwrap()], &env).await;
    assert_eq!(out.status.code(), Some(3), "every request failed");
    let jobs_arg = jobs.to_str().unwrap();
    let out = h
        .offboard(&["reconcile", "nightly", "--jobs", jobs_arg], &env)
        .await;
    assert_ne!(out.status.code(), Some(0), "the listing failed");
    let serve = h
        .serve_with_env(&["--no-api", "--no-schedules", "--jobs", jobs_arg], &env)
        .await;
    std::fs::write(inbox.join("export.csv"), "name,department\nAda,IT\n").unwrap();
    eventually(30, "the drop folder's message", || {
        let told = hits(&state)
            .iter()
            .any(|h| h.body["event"] == "dropfolder.file_failed");
        async move { told }
    })
    .await;
    all_delivered(&h, &env).await;
    serve.stop().await;
    let got = hits(&state);
    let mut kinds: Vec<&str> = got
        .iter()
        .map(|h| h.body["event"].as_str().unwrap())
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "batch.finished",
            "dropfolder.file_failed",
            "provider.credentials_rejected",
            "reconcile.failed"
        ],
        "{got:?}"
    );
    let of = |kind: &str| {
        got.iter()
            .find(|h| h.body["event"] == kind)
            .unwrap()
            .body
            .clone()
    };
    let breaker = of("provider.credentials_rejected");
    assert_eq!(breaker["detail"]["provider"], "acme");
    assert_eq!(breaker["batch"]["id"], of("batch.finished")["batch"]["id"]);
    assert_eq!(of("batch.finished")["batch"]["counts"]["failed"], 5);
    assert_eq!(of("reconcile.failed")["detail"]["job"], "nightly");
    let file = of("dropfolder.file_failed");
    assert_eq!(file["detail"]["file"], "export.csv");
    assert!(
        inbox.join("failed/export.csv").exists(),
        "moved after the record"
    );
    let token = h.token.clone();
    assert!(!got.iter().any(|hit| hit.body.to_string().contains(&token)));
}

/// A channel that never answers 2xx: once the event is `retry_for` old
/// the delivery is `dead`, and `notify status` lists it with its error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_past_retry_for_is_dead_and_listed() {
    let secret = "whsec-dead".to_owned();
    let state = shared(&secret);
    state.lock().unwrap().refuse = usize::MAX;
    let url = receiver(state.clone()).await;
    let o = Options {
        extra_config: webhook_config(&url, "\"batch.halted\"").replace("\"1h\"", "\"300ms\""),
        ..Options::default()
    };
    let h = Harness::start_with(Directory::generate(601, 9), o).await;
    let env = [(SECRET_ENV, secret.as_str())];
    let csv = h.write_csv("600.csv", &users_csv(2, 601));
    let out = h.offboard(&["run", csv.to_str().unwrap()], &env).await;
    assert_eq!(out.status.code(), Some(3));
    let out = h.offboard(&["notify", "status", "--json"], &env).await;
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["state"], "dead");
    assert_eq!(rows[0]["channel"], "hr_webhook");
    assert_eq!(rows[0]["kind"], "batch.halted");
    assert_eq!(rows[0]["last_error"], "the channel answered HTTP 503");
    let tried = hits(&state).len();
    assert!(tried >= 2, "retried before giving up: {tried}");
    assert_eq!(rows[0]["attempts"], tried as u64);
}

/// A stored event that cannot be rendered (its facts do not decode) is
/// dead at its first attempt, naming why, and does not stop `serve` from
/// sending the next event to the same channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_cannot_be_rendered_is_dead_and_the_next_is_sent() {
    let secret = "whsec-poison".to_owned();
    let state = shared(&secret);
    let url = receiver(state.clone()).await;
    let mut o = api_options("");
    o.extra_config += &webhook_config(&url, "\"batch.halted\"");
    let h = Harness::start_with(Directory::generate(601, 9), o).await;
    let env = [(SECRET_ENV, secret.as_str())];
    let serve = h.serve_with_env(&[], &env).await;
    // serve may hold the write lock a while as it starts on a busy machine.
    let db = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(h.dir.path().join("offboard.db"))
        .busy_timeout(std::time::Duration::from_secs(60));
    let pool = sqlx::SqlitePool::connect_with(db).await.unwrap();
    // One transaction, stamped now: serve's retention pass deletes events
    // no batch holds that are old or have nothing pending.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO notify_events (id, dedupe_key, kind, batch_id, facts, created_at)
         VALUES ('01POISONED', 'batch.halted/poisoned/1', 'batch.halted', NULL, '{not json', ?)",
    )
    .bind(now)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO notify_deliveries (event_id, channel, state, attempts, next_at)
         VALUES ('01POISONED', 'hr_webhook', 'pending', 0, 0)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let answer = serve.upload_csv(users_csv(2, 601)).await;
    let batch = answer["batch_id"].as_str().unwrap().to_owned();
    eventually(30, "the halt delivered", || {
        let n = hits(&state).iter().filter(|h| h.answered == 200).count();
        async move { n >= 1 }
    })
    .await;
    eventually(30, "the unrenderable event given up", || async {
        let out = h.offboard(&["notify", "status", "--json"], &env).await;
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        rows.len() == 1 && rows[0]["state"] == "dead"
    })
    .await;
    serve.stop().await;
    let out = h.offboard(&["notify", "status", "--json"], &env).await;
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["event_id"], "01POISONED", "{rows:?}");
    assert_eq!(rows[0]["attempts"], 1, "{rows:?}");
    assert!(
        rows[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("notify_events.facts"),
        "{rows:?}"
    );
    let got = hits(&state);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body["batch"]["id"], batch.as_str());
}

/// A held preview, once every request is planned, is one `batch.held`
/// naming what waits for review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_preview_sends_batch_held() {
    let secret = "whsec-held".to_owned();
    let state = shared(&secret);
    let url = receiver(state.clone()).await;
    let o = Options {
        extra_config: webhook_config(&url, "\"batch.held\", \"batch.halted\""),
        ..Options::default()
    };
    let h = Harness::start_with(Directory::generate(60, 9), o).await;
    let env = [(SECRET_ENV, secret.as_str())];
    let csv = h.write_csv("three.csv", &users_csv(2, 4));
    let out = h
        .offboard(&["run", "--hold", csv.to_str().unwrap()], &env)
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    all_delivered(&h, &env).await;
    let got = hits(&state);
    assert_eq!(got.len(), 1, "{got:?}");
    let body = &got[0].body;
    assert_eq!(body["event"], "batch.held");
    assert_eq!(body["batch"]["state"], "held");
    assert_eq!(body["batch"]["counts"]["held"], 3);
}

/// A mail server that takes the connection and never greets (lettre's own
/// timeout covers only the connect) cannot hold a command: the send gives
/// up within the delivery's timeout (half its lease: 1 s here) and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_server_that_never_answers_cannot_hold_a_command() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smtp = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let o = Options {
        extra_config: format!(
            r#"
[notify.it_mail]
kind = "email"
smtp = "{smtp}"
tls = "none"
from = "offboard@acme.example"
to = ["it-ops@acme.example"]
events = ["batch.halted"]
"#
        ),
        ..Options::default()
    };
    let h = Harness::start_with(Directory::generate(3, 9), o).await;
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        h.offboard(&["notify", "test", "it_mail"], &[]),
    )
    .await
    .expect("notify test gave up on a silent mail server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("timed out"), "{err}");
}
