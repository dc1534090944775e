//! The HTTP API through a real `offboard serve` on a random port.

use serde_json::Value;

use crate::helpers::{
    Harness, Options, Serve, directory, eventually, long_halted_batch, users_csv,
};

fn options() -> Options {
    Options {
        extra_config: "[http]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"OFFBOARD_IT_API_TOKEN\"\nmax_upload_bytes = 4000\n".into(),
        ..Options::default()
    }
}

/// Any batch of more than two requests halts at intake.
fn halting_options() -> Options {
    let mut o = options();
    o.extra_config
        .push_str("[safety]\nmax_batch_requests = 2\n");
    o
}

async fn upload(serve: &Serve, body: &str, key: Option<&str>) -> (u16, Value) {
    let mut rb = serve
        .authed(serve.client().post(format!("{}/v1/batches", serve.url)))
        .header("content-type", "text/csv")
        .body(body.to_owned());
    if let Some(k) = key {
        rb = rb.header("idempotency-key", k);
    }
    let res = rb.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn batch_state(serve: &Serve, id: &str) -> Value {
    serve
        .authed(serve.client().get(format!("{}/v1/batches/{id}", serve.url)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_done(serve: &Serve, id: &str) {
    eventually(30, "the batch to complete", || async {
        let s = batch_state(serve, id).await;
        s["state"] == "completed" || s["state"] == "completed_with_failures"
    })
    .await;
}

fn assert_envelope(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["details"].is_object(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_status_and_reports() {
    let h = Harness::start_with(directory(), options()).await;
    let serve = h.serve(&[]).await;
    let c = serve.client();

    let health = c
        .get(format!("{}/healthz", serve.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // Every protected route refuses a missing or wrong token.
    for (method, path) in [
        ("POST", "/v1/batches"),
        ("GET", "/v1/batches"),
        ("GET", "/v1/batches/x"),
        ("GET", "/v1/batches/x/requests"),
        ("GET", "/v1/batches/x/report"),
        ("POST", "/v1/batches/x/retry"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    ] {
        for token in [None, Some("wrong")] {
            let mut rb = c.request(method.parse().unwrap(), format!("{}{path}", serve.url));
            if let Some(t) = token {
                rb = rb.bearer_auth(t);
            }
            let res = rb.send().await.unwrap();
            assert_eq!(res.status(), 401, "{method} {path} with {token:?}");
            assert_envelope(&res.json().await.unwrap(), "unauthorized");
        }
    }

    // text/csv body, with an Idempotency-Key.
    let csv = format!("{}bad,org_acme\n", users_csv(2, 4));
    let (status, first) = upload(&serve, &csv, Some("key-1")).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["accepted_rows"], 3);
    assert_eq!(first["rejected_rows"][0]["line"], 5);
    assert_eq!(first["rejected_rows"][0]["code"], "invalid_user_id");
    let batch = first["batch_id"].as_str().unwrap().to_owned();
    let (status, again) = upload(&serve, &csv, Some("key-1")).await;
    assert_eq!(status, 202);
    assert_eq!(
        again["batch_id"],
        batch.as_str(),
        "same key and body: same batch"
    );
    let (status, other) = upload(&serve, &users_csv(5, 5), Some("key-1")).await;
    assert_eq!(status, 409);
    assert_envelope(&other, "idempotency_key_reused");

    // multipart/form-data with a `file` field.
    let boundary = "XoffboardX";
    let form = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"leavers.csv\"\r\ncontent-type: text/csv\r\n\r\n{}\r\n--{boundary}--\r\n",
        users_csv(6, 7)
    );
    let res = serve
        .authed(c.post(format!("{}/v1/batches", serve.url)))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let multi: Value = res.json().await.unwrap();
    assert_eq!(multi["accepted_rows"], 2);

    // Over the limit, and nothing valid.
    let (status, big) = upload(&serve, &"x".repeat(5000), None).await;
    assert_eq!(status, 413);
    assert_envelope(&big, "payload_too_large");
    let (status, none) = upload(&serve, "user_id,org\nbad,org_acme\n", None).await;
    assert_eq!(status, 422);
    assert_envelope(&none, "no_valid_rows");

    wait_done(&serve, &batch).await;
    let s = batch_state(&serve, &batch).await;
    assert_eq!(s["counts"]["succeeded"], 3);
    assert_eq!(s["counts"]["rejected"], 1);
    assert_eq!(s["progress"], 1.0);

    let list: Value = serve
        .authed(c.get(format!("{}/v1/batches?limit=2", serve.url)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["batches"].as_array().unwrap().len(), 2);
    assert_eq!(list["next_offset"], 2);

    let reqs: Value = serve
        .authed(c.get(format!(
            "{}/v1/batches/{batch}/requests?outcome=rejected",
            serve.url
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reqs["requests"].as_array().unwrap().len(), 1);

    // Pages are cut by the database; together they are the full report.
    let get = |path: String| {
        let req = serve.authed(c.get(format!("{}{path}", serve.url)));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let full = get(format!("/v1/batches/{batch}/report")).await;
    let mut paged = Vec::new();
    let mut offset = 0;
    loop {
        let page = get(format!(
            "/v1/batches/{batch}/requests?limit=3&offset={offset}"
        ))
        .await;
        paged.extend(page["requests"].as_array().unwrap().iter().cloned());
        match page["next_offset"].as_u64() {
            Some(next) => offset = next,
            None => break,
        }
    }
    assert_eq!(&Value::Array(paged), &full["rows"]);
    let succeeded = get(format!(
        "/v1/batches/{batch}/requests?outcome=succeeded&limit=2"
    ))
    .await;
    let rows = succeeded["requests"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["outcome"] == "succeeded"), "{rows:?}");
    assert_eq!(succeeded["next_offset"], 2);

    let text = serve.report(&batch, "text/csv").await.text().await.unwrap();
    assert!(text.starts_with("line,provider,organization_id,user_id,outcome,roles_removed"));
    assert_eq!(text.lines().count(), 5);
    let json: Value = serve
        .report(&batch, "application/json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json["rows"].as_array().unwrap().len(), 4);

    let missing = serve
        .authed(c.get(format!("{}/v1/batches/nope", serve.url)))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_envelope(&missing.json().await.unwrap(), "batch_not_found");

    let ready = serve
        .authed(c.get(format!("{}/readyz", serve.url)))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert!(serve.stop().await.success());
}

fn counter_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `GET /metrics`, checked to be Prometheus text.
async fn metrics_text(serve: &Serve) -> String {
    let res = serve
        .authed(serve.client().get(format!("{}/metrics", serve.url)))
        .send()
        .await
        .unwrap();
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    res.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_when_a_batch_runs() {
    let h = Harness::start_with(directory(), options()).await;
    let serve = h.serve(&[]).await;
    let metrics = || metrics_text(&serve);
    let before = metrics().await;
    assert!(before.contains("offboard_queue_depth"));
    let (status, body) = upload(&serve, &users_csv(2, 3), None).await;
    assert_eq!(status, 202);
    wait_done(&serve, body["batch_id"].as_str().unwrap()).await;
    let after = metrics().await;
    // Every sample line is `name{labels} value`.
    for line in after
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "not Prometheus text: {line}");
    }
    assert!(
        counter_sum(&after, "offboard_requests_total")
            >= counter_sum(&before, "offboard_requests_total") + 2.0
    );
    assert!(
        counter_sum(&after, "offboard_provider_calls_total")
            > counter_sum(&before, "offboard_provider_calls_total")
    );
    assert!(after.contains("offboard_step_duration_seconds_bucket"));
    assert!(after.contains(r#"outcome="succeeded""#));
    serve.stop().await;
}

/// The runs' writes are counted by what they do: a one-role request on
/// Aitronos takes its claim, stores three checkpoints (plan, roles,
/// membership) and its outcome; every checkpoint an undo reads is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_writes_are_counted_by_kind() {
    let h = Harness::start_with(directory(), options()).await;
    let serve = h.serve(&[]).await;
    let (status, body) = upload(&serve, &users_csv(2, 2), None).await;
    assert_eq!(status, 202, "{body}");
    let batch = body["batch_id"].as_str().unwrap().to_owned();
    wait_done(&serve, &batch).await;
    let metrics = metrics_text(&serve).await;
    let writes = |write: &str| {
        counter_sum(
            &metrics,
            &format!("offboard_run_writes_total{{write=\"{write}\"}}"),
        )
    };
    let by_write = [writes("claim"), writes("step"), writes("finish")];
    assert_eq!(by_write, [1.0, 3.0, 1.0], "{metrics}");
    serve.stop().await;

    let url = format!("sqlite://{}", h.dir.path().join("offboard.db").display());
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let stored: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT c.step, r.outcome FROM step_checkpoints c JOIN requests r ON r.id = c.request_id
         WHERE r.batch_id = $1 ORDER BY c.step",
    )
    .bind(&batch)
    .fetch_all(&db)
    .await
    .unwrap();
    let succeeded = |step: &str| (step.to_owned(), Some("succeeded".to_owned()));
    assert_eq!(
        stored,
        [
            succeeded("plan"),
            succeeded("remove_membership"),
            succeeded("strip_roles")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_to_start_without_its_token() {
    let h = Harness::start_with(directory(), options()).await;
    let out = h.offboard(&["serve"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http.token_env"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_upload_is_approved_or_cancelled_over_the_api() {
    let h = Harness::start_with(directory(), halting_options()).await;
    // The bootstrap token uploads; four eyes: a person approves.
    let approver = h.token("ann", "approver").await;
    let serve = h.serve(&[]).await;
    let c = serve.client();
    let (status, first) = upload(&serve, &users_csv(2, 4), None).await;
    assert_eq!(status, 202);
    assert!(
        first["halted"]
            .as_str()
            .is_some_and(|h| h.contains("max_batch_requests")),
        "{first}"
    );
    let batch = first["batch_id"].as_str().unwrap().to_owned();
    assert_eq!(batch_state(&serve, &batch).await["state"], "halted");
    let (_, second) = upload(&serve, &users_csv(5, 7), None).await;
    let other = second["batch_id"].as_str().unwrap().to_owned();
    assert_eq!(h.sim.calls().len(), 0, "halted batches make no call");

    let res = c
        .post(format!(
            "{}/v1/batches/{batch}/approve?only=usr_000002,usr_000003",
            serve.url
        ))
        .bearer_auth(&approver)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let approval: Value = res.json().await.unwrap();
    assert_eq!(approval["enqueued"], 2);
    assert_eq!(approval["cancelled"], 1);
    wait_done(&serve, &batch).await;
    assert_eq!(
        crate::helpers::member(&h.sim, "usr_000002").account_state,
        "deleted"
    );
    assert_eq!(
        crate::helpers::member(&h.sim, "usr_000004").account_state,
        "active"
    );

    let res = serve
        .authed(c.post(format!("{}/v1/batches/{other}/cancel", serve.url)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(batch_state(&serve, &other).await["state"], "cancelled");
    let again = serve
        .authed(c.post(format!("{}/v1/batches/{other}/approve", serve.url)))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    assert_envelope(&again.json().await.unwrap(), "not_halted");
    assert_eq!(
        crate::helpers::member(&h.sim, "usr_000005").account_state,
        "active"
    );
    serve.stop().await;
}

/// A CSV report longer than one streamed part (1,000 lines) arrives whole:
/// the same bytes as `offboard report`, header once, every line in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_report_streams_whole_as_csv_and_json() {
    let h = Harness::start_with(directory(), halting_options()).await;
    // Through the CLI: uploads here are capped at 4,000 bytes.
    let batch = long_halted_batch(&h).await;
    let cli = h
        .offboard(&["report", &batch, "--format", "csv"], &[])
        .await
        .stdout;
    let serve = h.serve(&[]).await;
    let body = serve.report(&batch, "text/csv").await.text().await.unwrap();
    assert_eq!(body.lines().count(), 2_401, "header and 2,400 lines");
    assert_eq!(body.as_bytes(), cli.as_slice());

    // The JSON report streams its rows too: the same report either way,
    // every line once and in order, across pages.
    let stdout = h
        .offboard(&["report", &batch, "--format", "json"], &[])
        .await
        .stdout;
    let cli: Value = serde_json::from_slice(&stdout).unwrap();
    // `-o FILE` gets the same bytes, and only the finished file is left.
    let file = h.dir.path().join("report.json");
    let out = h
        .offboard(
            &[
                "report",
                &batch,
                "--format",
                "json",
                "-o",
                file.to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read(&file).unwrap(), stdout);
    assert!(!h.dir.path().join(".report.json.partial").exists());
    let api: Value = serve
        .report(&batch, "application/json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api, cli);
    assert_eq!(api["batch_id"], batch.as_str());
    let lines: Vec<u64> = api["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines.len(), 2_400);
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "line order");
}

/// `?hold=true` stores a preview that the workers plan and that waits;
/// `approve` releases it, and `--only` outside the plan is 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_upload_waits_for_its_release() {
    let h = Harness::start_with(directory(), options()).await;
    let serve = h.serve(&[]).await;
    let c = serve.client();
    let res = serve
        .authed(c.post(format!("{}/v1/batches?hold=true", serve.url)))
        .header("content-type", "text/csv")
        .body(users_csv(2, 3))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["held"], true, "{body}");
    let id = body["batch_id"].as_str().unwrap().to_owned();
    eventually(30, "the preview to be planned", || async {
        let s = batch_state(&serve, &id).await;
        s["state"] == "held" && s["counts"]["held"] == 2
    })
    .await;
    assert!(
        h.sim.calls().iter().all(|c| c.method == "GET"),
        "reads only"
    );
    let events = batch_state(&serve, &id).await["events"].clone();
    assert_eq!(events[0]["detail"]["source"], "upload", "{events}");
    assert_eq!(events[1]["action"], "held", "{events}");

    let approve = |only: &'static str| {
        serve
            .authed(c.post(format!("{}/v1/batches/{id}/approve?only={only}", serve.url)))
            .send()
    };
    let res = approve("usr_999999").await.unwrap();
    assert_eq!(res.status(), 422);
    assert_envelope(&res.json().await.unwrap(), "not_in_batch");
    let res = approve("usr_000002").await.unwrap();
    assert_eq!(res.status(), 202);
    wait_done(&serve, &id).await;
    let s = batch_state(&serve, &id).await;
    assert_eq!(s["counts"]["succeeded"], 1, "{s}");
    assert_eq!(s["counts"]["cancelled"], 1, "{s}");
    serve.stop().await;
}

/// A rail's refusal over HTTP is its own 409, never a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_retry_is_409_retry_too_old() {
    let h = Harness::start_with(directory(), options()).await;
    let (code, batch, _) = h.run(&h.write_csv("one.csv", &users_csv(2, 2))).await;
    assert_eq!(code, Some(0));
    let db = format!("sqlite://{}", h.dir.path().join("offboard.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    sqlx::query("UPDATE batches SET created_at = created_at - 345600000 WHERE id = ?1")
        .bind(&batch)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let serve = h.serve(&[]).await;
    let res = serve
        .authed(
            serve
                .client()
                .post(format!("{}/v1/batches/{batch}/retry", serve.url)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    assert_envelope(&res.json().await.unwrap(), "retry_too_old");
    serve.stop().await;
}

/// `POST /v1/batches/{id}/undo` makes the undo batch (202), which the
/// server's workers run; an undo batch is not undone in turn (409), nor is
/// a name outside the batch taken (422).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_undone_over_the_api() {
    let h = Harness::start_with(directory(), options()).await;
    let serve = h.serve(&[]).await;
    let (status, body) = upload(&serve, &users_csv(2, 3), None).await;
    assert_eq!(status, 202, "{body}");
    let batch = body["batch_id"].as_str().unwrap().to_owned();
    wait_done(&serve, &batch).await;
    assert_eq!(
        crate::helpers::member(&h.sim, "usr_000002").account_state,
        "deleted"
    );

    let c = serve.client();
    let undo = |id: String, query: &'static str| {
        let rb = serve.authed(c.post(format!("{}/v1/batches/{id}/undo{query}", serve.url)));
        async move {
            let res = rb.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = undo(batch.clone(), "?only=usr_999999").await;
    assert_eq!(status, 422, "{body}");
    assert_envelope(&body, "not_in_batch");
    let (status, body) = undo(batch.clone(), "").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["undoes"].as_str(), body["requests"].as_u64()),
        (Some(batch.as_str()), Some(2))
    );
    let undo_batch = body["batch_id"].as_str().unwrap().to_owned();
    wait_done(&serve, &undo_batch).await;
    let state = batch_state(&serve, &undo_batch).await;
    assert_eq!(state["source"], "undo", "{state}");
    assert_eq!(
        state["counts"]["needs_attention"], 2,
        "Aitronos is restored by hand: {state}"
    );
    let events = state["events"].as_array().unwrap();
    assert_eq!(events[0]["actor"], "bootstrap");
    assert_eq!(events[0]["detail"]["source"], "undo");
    let (status, body) = undo(undo_batch, "").await;
    assert_eq!(status, 409, "{body}");
    assert_envelope(&body, "undo_of_undo");
    serve.stop().await;
}
