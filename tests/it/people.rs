//! Every destructive decision names a person: personal tokens and roles,
//! four eyes, the trusted proxy, the audit trail and retention, through a
//! real `offboard serve`.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{Harness, Options, Serve, directory, users_csv};

fn options(extra: &str) -> Options {
    Options {
        extra_config: format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"OFFBOARD_IT_API_TOKEN\"\n{extra}"
        ),
        ..Options::default()
    }
}

/// A personal token for each role.
struct People {
    viewer: String,
    operator: String,
    approver: String,
    admin: String,
}

async fn people(h: &Harness) -> People {
    People {
        viewer: h.token("vic", "viewer").await,
        operator: h.token("olga", "operator").await,
        approver: h.token("ann", "approver").await,
        admin: h.token("ada", "admin").await,
    }
}

async fn call(
    serve: &Serve,
    token: Option<&str>,
    method: Method,
    path: &str,
) -> (StatusCode, Value) {
    let mut rb = serve
        .client()
        .request(method.clone(), format!("{}{path}", serve.url));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if method == Method::POST && path == "/v1/tokens" {
        rb = rb.json(&serde_json::json!({"name": "x y", "role": "viewer"}));
    }
    let res = rb.send().await.unwrap();
    let status = res.status();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn upload_as(serve: &Serve, token: &str, csv: &str) -> Value {
    let res = serve
        .client()
        .post(format!("{}/v1/batches", serve.url))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    res.json().await.unwrap()
}

async fn approve_as(serve: &Serve, token: &str, batch: &str) -> (StatusCode, Value) {
    call(
        serve,
        Some(token),
        Method::POST,
        &format!("/v1/batches/{batch}/approve"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_route() {
    let h = Harness::start_with(directory(), options("")).await;
    let p = people(&h).await;
    let serve = h.serve(&["--no-workers"]).await;
    let routes: [(Method, &str, &str); 17] = [
        (Method::GET, "/v1/batches", "viewer"),
        (Method::GET, "/v1/batches/B1", "viewer"),
        (Method::GET, "/v1/batches/B1/requests", "viewer"),
        (Method::GET, "/v1/batches/B1/report", "viewer"),
        (Method::GET, "/v1/audit", "viewer"),
        (Method::GET, "/readyz", "viewer"),
        (Method::GET, "/metrics", "viewer"),
        (Method::POST, "/v1/batches", "operator"),
        (Method::POST, "/v1/batches/B1/retry", "operator"),
        (Method::POST, "/v1/batches/B1/approve", "operator"),
        (Method::POST, "/v1/batches/B1/cancel", "operator"),
        (Method::POST, "/v1/jobs/nightly/reconcile", "operator"),
        (Method::POST, "/v1/batches/B1/undo", "operator"),
        (Method::GET, "/v1/tokens", "admin"),
        (Method::POST, "/v1/tokens", "admin"),
        (Method::DELETE, "/v1/tokens/nobody", "admin"),
        (Method::POST, "/v1/purge?dry_run=true", "admin"),
    ];
    let rank = |r: &str| {
        ["viewer", "operator", "approver", "admin"]
            .iter()
            .position(|x| *x == r)
    };
    for (method, path, needed) in &routes {
        let (status, body) = call(&serve, None, method.clone(), path).await;
        assert_eq!(status, 401, "{method} {path} without a token: {body}");
        for (role, token) in [
            ("viewer", &p.viewer),
            ("operator", &p.operator),
            ("approver", &p.approver),
            ("admin", &p.admin),
        ] {
            let (status, body) = call(&serve, Some(token), method.clone(), path).await;
            if rank(role) >= rank(needed) {
                assert!(
                    status != 401 && status != 403,
                    "{role} on {method} {path}: {status} {body}"
                );
            } else {
                assert_eq!(status, 403, "{role} on {method} {path}: {body}");
                assert_eq!(body["error"]["code"], "forbidden", "{body}");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains(needed), "{message}");
            }
        }
    }
    // A reconciliation that changes anything needs an approver.
    let (status, body) = call(
        &serve,
        Some(&p.operator),
        Method::POST,
        "/v1/jobs/nightly/reconcile?dry_run=false",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_tokens_are_refused_and_no_token_is_kept_in_clear() {
    let h = Harness::start_with(directory(), options("")).await;
    let p = people(&h).await;
    let serve = h.serve(&["--no-workers"]).await;
    let (status, _) = call(&serve, Some(&p.viewer), Method::GET, "/v1/batches").await;
    assert_eq!(status, 200);
    // Over the API, an admin makes and revokes a token.
    let res = serve
        .client()
        .post(format!("{}/v1/tokens", serve.url))
        .bearer_auth(&p.admin)
        .json(&serde_json::json!({"name": "script", "role": "operator", "expires": "30d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let made: Value = res.json().await.unwrap();
    let script = made["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&serve, Some(&script), Method::GET, "/v1/batches")
            .await
            .0,
        200
    );
    let (listed_status, listed) = call(&serve, Some(&p.admin), Method::GET, "/v1/tokens").await;
    assert_eq!(listed_status, 200);
    assert!(
        !listed.to_string().contains(&script),
        "a listing never shows a token"
    );
    assert_eq!(
        call(&serve, Some(&p.admin), Method::DELETE, "/v1/tokens/script")
            .await
            .0,
        204
    );
    let (status, body) = call(&serve, Some(&script), Method::GET, "/v1/batches").await;
    assert_eq!(status, 401, "{body}");
    let out = h.offboard(&["tokens", "revoke", "vic"], &[]).await;
    assert!(out.status.success());
    assert_eq!(
        call(&serve, Some(&p.viewer), Method::GET, "/v1/batches")
            .await
            .0,
        401
    );

    // An expired token: its end moved into the past.
    let db = h.dir.path().join("offboard.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE api_tokens SET expires_at = 1 WHERE name = 'olga'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (status, body) = call(&serve, Some(&p.operator), Method::GET, "/v1/batches").await;
    assert_eq!(status, 401, "{body}");
    assert!(body.to_string().contains("expired"), "{body}");

    let logs = serve.logs().join("\n");
    serve.stop().await;
    let mut stored = Vec::new();
    for name in ["offboard.db", "offboard.db-wal"] {
        if let Ok(bytes) = std::fs::read(h.dir.path().join(name)) {
            stored.extend(bytes);
        }
    }
    let stored = String::from_utf8_lossy(&stored);
    for token in [&p.viewer, &p.operator, &p.approver, &p.admin, &script] {
        let secret = &token["obt_".len()..];
        assert!(!stored.contains(secret), "a token is in the database file");
        assert!(!logs.contains(secret), "a token is in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_s_mass_upload_needs_another_person_s_approval() {
    let h = Harness::start_with(offboard::sim::Directory::generate(601, 9), options("")).await;
    let p = people(&h).await;
    let serve = h.serve(&[]).await;
    let batch = upload_as(&serve, &p.operator, &users_csv(2, 601)).await;
    assert!(
        batch["halted"]
            .as_str()
            .unwrap()
            .contains("max_batch_requests")
    );
    let id = batch["batch_id"].as_str().unwrap().to_owned();
    let (status, body) = approve_as(&serve, &p.operator, &id).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("approver")
    );
    let (status, body) = approve_as(&serve, &p.approver, &id).await;
    assert_eq!(status, 202, "{body}");

    let got = call(
        &serve,
        Some(&p.viewer),
        Method::GET,
        &format!("/v1/batches/{id}"),
    )
    .await
    .1;
    let actors: Vec<(&str, &str)> = got["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert!(actors.contains(&("submitted", "olga")), "{actors:?}");
    assert!(actors.contains(&("approved", "ann")), "{actors:?}");
    serve.stop().await;
    let out = h.offboard(&["audit", "--batch", &id], &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trail = String::from_utf8_lossy(&out.stdout);
    let decisions: Vec<Value> = trail
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "decision")
        .collect();
    let named: Vec<(&str, &str)> = decisions
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert!(named.contains(&("submitted", "olga")), "{named:?}");
    assert!(named.contains(&("approved", "ann")), "{named:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_approves_what_they_submitted() {
    let h = Harness::start_with(directory(), options("[safety]\nmax_batch_requests = 2\n")).await;
    let p = people(&h).await;
    let serve = h.serve(&["--no-workers"]).await;
    let bootstrap = serve.api_token.clone();
    for token in [&p.approver, &bootstrap] {
        let batch = upload_as(&serve, token, &users_csv(2, 4)).await;
        let id = batch["batch_id"].as_str().unwrap();
        let (status, body) = approve_as(&serve, token, id).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "four_eyes_required", "{body}");
    }
    serve.stop().await;
    // The CLI the same way: `run --yes` above the cap, and approving one's
    // own batch.
    let csv = h.write_csv("3.csv", &users_csv(2, 4));
    let out = h
        .offboard(
            &["run", "--yes", csv.to_str().unwrap()],
            &[("USER", "carl")],
        )
        .await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("four_eyes_required"), "{err}");
    let batch = err
        .lines()
        .find_map(|l| l.strip_prefix("batch "))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .to_owned();
    let out = h.offboard(&["approve", &batch], &[("USER", "carl")]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("four_eyes_required"));
    assert_eq!(
        h.sim.calls().iter().filter(|c| c.method != "GET").count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_is_believed_only_from_its_own_address() {
    let h = Harness::start_with(
        directory(),
        options(
            "[http.trusted_proxy]\nheader = \"X-Forwarded-Email\"\nfrom = [\"127.0.0.2\"]\n[http.trusted_proxy.roles]\n\"ann@acme.example\" = \"approver\"\n\"*@acme.example\" = \"viewer\"\n",
        ),
    )
    .await;
    let serve = h.serve(&["--no-workers"]).await;
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let get = |client: reqwest::Client, who: &'static str| {
        let url = format!("{}/v1/batches", serve.url);
        async move {
            client
                .get(url)
                .header("X-Forwarded-Email", who)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(get(from("127.0.0.2"), "bob@acme.example").await, 200);
    assert_eq!(get(from("127.0.0.2"), "eve@evil.example").await, 403);
    assert_eq!(
        get(from("127.0.0.1"), "ann@acme.example").await,
        401,
        "not from the proxy"
    );
    // The proxy's person is the actor of what they do.
    let res = from("127.0.0.2")
        .post(format!("{}/v1/batches/none/cancel", serve.url))
        .header("X-Forwarded-Email", "bob@acme.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "a viewer cannot cancel");
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_of_one_person_is_theirs_alone() {
    let h = Harness::start(directory()).await;
    let (code, _, _) = h.run(&h.write_csv("3.csv", &users_csv(2, 4))).await;
    assert_eq!(code, Some(0));
    let out = h.offboard(&["audit", "--user", "usr_000003"], &[]).await;
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    for e in &lines {
        assert_eq!(e["kind"], "call", "{e}");
        assert_eq!(e["user_id"], "usr_000003", "{e}");
        assert!(e["path"].as_str().unwrap().contains("usr_000003"), "{e}");
    }
    let out = h
        .offboard(&["audit", "--user", "usr_000003", "--format", "csv"], &[])
        .await;
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.starts_with("kind,at,actor,action,batch_id"), "{csv}");
    assert_eq!(csv.lines().count(), lines.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_old_finished_batches_and_keeps_halted_ones() {
    let h = Harness::start_with(
        directory(),
        Options {
            extra_config: "[safety]\nmax_batch_requests = 2\n".into(),
            ..Options::default()
        },
    )
    .await;
    let (code, done, _) = h.run(&h.write_csv("2.csv", &users_csv(2, 3))).await;
    assert_eq!(code, Some(0));
    let out = h
        .offboard(
            &[
                "run",
                h.write_csv("3.csv", &users_csv(4, 6)).to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(3));
    let halted = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("batch ")
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let db = h.dir.path().join("offboard.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    for sql in [
        "UPDATE batches SET created_at = created_at - 500 * 86400000",
        "UPDATE batch_events SET at = at - 500 * 86400000",
        "UPDATE requests SET finished_at = finished_at - 500 * 86400000",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let out = h.offboard(&["purge", "--dry-run"], &[]).await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&done) && !said.contains(&halted), "{said}");
    let out = h.offboard(&["purge"], &[("USER", "ops")]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let status = h.offboard(&["status", &done], &[]).await;
    assert_eq!(status.status.code(), Some(2), "the finished batch is gone");
    let status = h.offboard(&["status", &halted, "--json"], &[]).await;
    assert!(status.status.success(), "the halted batch stays");
    assert_eq!(count("SELECT COUNT(*) FROM purged_batches").await, 1);
    assert_eq!(
        count("SELECT COUNT(*) FROM requests WHERE user_id IN ('usr_000002', 'usr_000003')").await,
        0
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM audit_events").await,
        0,
        "its calls went with it"
    );
    let out = h.offboard(&["audit", "--batch", &done], &[]).await;
    let trail = String::from_utf8_lossy(&out.stdout);
    assert!(trail.contains("\"purged\""), "{trail}");
    assert!(trail.contains("cli:ops@"), "{trail}");
    pool.close().await;
}

/// However approvals race, an operator never applies a halted batch: the
/// rail checks the role on the state it acts on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_never_approves_a_halted_batch() {
    let h = Harness::start_with(
        directory(),
        options("[safety]\nmax_batch_requests = 2\nfour_eyes = false\n"),
    )
    .await;
    let p = people(&h).await;
    let serve = h.serve(&[]).await;
    let res = serve
        .client()
        .post(format!("{}/v1/batches?hold=true", serve.url))
        .bearer_auth(&p.operator)
        .header("content-type", "text/csv")
        .body(users_csv(2, 4))
        .send()
        .await
        .unwrap();
    let id = res.json::<Value>().await.unwrap()["batch_id"]
        .as_str()
        .unwrap()
        .to_owned();
    crate::helpers::eventually(30, "the preview", || async {
        call(
            &serve,
            Some(&p.viewer),
            Method::GET,
            &format!("/v1/batches/{id}"),
        )
        .await
        .1["counts"]["held"]
            == 3
    })
    .await;
    let tries = (0..8).map(|_| approve_as(&serve, &p.operator, &id));
    let answers = futures::future::join_all(tries).await;
    let applied: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 202)
        .map(|(_, b)| b)
        .filter(|b| b["enqueued"].as_u64().unwrap_or(0) > 0)
        .collect();
    assert!(applied.is_empty(), "an operator applied it: {applied:?}");
    let state = call(
        &serve,
        Some(&p.viewer),
        Method::GET,
        &format!("/v1/batches/{id}"),
    )
    .await
    .1;
    assert_eq!(state["state"], "halted", "{state}");
    serve.stop().await;
}

/// Retention counts from a batch's last activity, pages its dry run to
/// the end, and keeps a job's last good run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_counts_from_the_last_activity() {
    let h = Harness::start_with(
        directory(),
        Options {
            extra_config: "[safety]\nmax_batch_requests = 2\n[retention]\nkeep_days = 30\n".into(),
            ..Options::default()
        },
    )
    .await;
    let out = h
        .offboard(
            &[
                "run",
                h.write_csv("3.csv", &users_csv(2, 4)).to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(3));
    let halted = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("batch ")
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let db = h.dir.path().join("offboard.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let forty_days = 40 * 86_400_000i64;
    sqlx::query("UPDATE batches SET created_at = created_at - ?1")
        .bind(forty_days)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE batch_events SET at = at - ?1")
        .bind(forty_days)
        .execute(&pool)
        .await
        .unwrap();
    // 150 old, finished, empty batches.
    for i in 0..150 {
        sqlx::query(
            "INSERT INTO batches (id, source, dry_run, created_at) VALUES (?1, 'cli', 0, 1000)",
        )
        .bind(format!("01OLD{i:021}"))
        .execute(&pool)
        .await
        .unwrap();
    }
    let out = h.offboard(&["purge", "--dry-run"], &[]).await;
    let listed = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(listed, 150, "the dry run lists every one");
    let out = h.offboard(&["approve", &halted], &[("USER", "ann")]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = h.offboard(&["purge"], &[]).await;
    assert!(out.status.success());
    let status = h.offboard(&["status", &halted], &[]).await;
    assert!(status.status.success(), "approved today: kept");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM batches")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 1);
    pool.close().await;
}
