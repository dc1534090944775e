//! The API's HTTP server against clients that misbehave or are simply not
//! curl (issue 31, items 5 to 9): each test sets small limits and asserts
//! what the client sees — a closed connection, an answer, a log line —
//! never how fast.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Harness, Serve, api_options, directory};

/// A harness whose API listens on a random port with `http` appended to
/// its `[http]` section.
async fn harness(http: &str) -> Harness {
    Harness::start_with(directory(), api_options(http)).await
}

async fn connect(serve: &Serve) -> TcpStream {
    TcpStream::connect(serve.url.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Everything the server sends until it closes the connection; a failsafe
/// bound turns a connection held open into a failure.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn half_sent_headers_and_bodies_are_cut_off() {
    let h = harness("header_read_timeout_ms = 200\nrequest_timeout_ms = 300\n").await;
    let serve = h.serve(&["--no-workers"]).await;

    // Headers that never end, from a client with no token.
    let mut stream = connect(&serve).await;
    stream
        .write_all(b"GET /v1/batches HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    read_until_closed(&mut stream).await;

    // A body that never ends.
    let mut stream = connect(&serve).await;
    let head = format!(
        "POST /v1/batches HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: text/csv\r\ncontent-length: 100000\r\n\r\nuser_id,org\n",
        serve.api_token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");

    // A keep-alive connection left idle after its answer.
    let mut stream = connect(&serve).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    serve.stop_within(30).await;
}

#[tokio::test]
async fn serve_stops_while_a_client_is_half_way_through_a_request() {
    let h = harness("request_timeout_ms = 600000\nshutdown_grace_ms = 200\n").await;
    let serve = h.serve(&["--no-workers"]).await;
    let mut stream = connect(&serve).await;
    let head = format!(
        "POST /v1/batches HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: text/csv\r\ncontent-length: 100000\r\n\r\nuser_id,org\n",
        serve.api_token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // A complete request on another connection, answered, shows the
    // server has taken connections in order, the stalled one first.
    let ok = serve
        .authed(serve.client().get(format!("{}/v1/batches", serve.url)))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let status = serve.stop_within(30).await;
    assert!(status.success(), "{status:?}");
    drop(stream);
}

#[tokio::test]
async fn connections_over_the_cap_are_answered_503() {
    let h = harness("max_connections = 1\n").await;
    let serve = h.serve(&["--no-workers"]).await;
    // One keep-alive connection holds the only slot.
    let mut held = connect(&serve).await;
    held.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = held.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let mut second = connect(&serve).await;
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut second).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");

    drop(held);
    crate::helpers::eventually(30, "a free slot after the first closed", || async {
        reqwest::get(format!("{}/healthz", serve.url))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    serve.stop_within(30).await;
}

/// Part headers count toward the limit: a form of endless headers is a
/// 413, not memory.
#[tokio::test]
async fn the_whole_multipart_body_is_bounded() {
    let h = harness("max_upload_bytes = 100000\n").await;
    let serve = h.serve(&["--no-workers"]).await;
    let boundary = "XoffboardX";
    let mut form = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n"
    );
    while form.len() < 250_000 {
        form.push_str(
            "x-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    form.push_str(&format!("\r\nuser_id,org\r\n--{boundary}--\r\n"));
    let res = serve
        .authed(serve.client().post(format!("{}/v1/batches", serve.url)))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    serve.stop_within(30).await;
}

/// A client that sends the whole body before it reads (Python's urllib
/// and requests) reads the 413, not a broken pipe.
#[tokio::test]
async fn a_client_that_sends_everything_first_reads_the_413() {
    // Past the limit by more than loopback's socket buffers hold, as a
    // 60 MiB file against the default 50 MiB is.
    let limit = 16 * 1024 * 1024;
    let h = harness(&format!("max_upload_bytes = {limit}\n")).await;
    let serve = h.serve(&["--no-workers"]).await;
    let len = limit + 8 * 1024 * 1024;
    let mut stream = connect(&serve).await;
    let head = format!(
        "POST /v1/batches HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {}\r\ncontent-type: text/csv\r\ncontent-length: {len}\r\n\r\n",
        serve.api_token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut body = String::from("user_id,org\n");
    while body.len() < len {
        body.push_str("usr_000002,org_acme\n");
    }
    body.truncate(len);
    stream
        .write_all(body.as_bytes())
        .await
        .expect("the whole body is taken");
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    serve.stop_within(30).await;
}

#[tokio::test]
async fn each_api_request_is_one_log_line_with_its_request_id() {
    let h = harness("").await;
    let serve = h
        .serve_with_env(
            &["--no-workers", "--log-format", "json"],
            &[("RUST_LOG", "offboard=info")],
        )
        .await;
    // Any case of the scheme is a bearer token.
    let res = serve
        .client()
        .get(format!("{}/v1/batches/b_nope", serve.url))
        .header("authorization", format!("bearer {}", serve.api_token))
        .header("x-request-id", "it-req-7")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        404,
        "the token is accepted, the batch is not there"
    );
    assert_eq!(res.headers()["x-request-id"], "it-req-7");
    let line = serve.log_line(30, "it-req-7").await;
    let json: Value = serde_json::from_str(&line).unwrap();
    let text = json.to_string();
    for needle in [
        "\"GET\"",
        "/v1/batches/{id}",
        "\"request_id\":\"it-req-7\"",
        "\"status\":404",
        "latency_ms",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    assert_eq!(
        serve
            .logs()
            .iter()
            .filter(|l| l.contains("it-req-7"))
            .count(),
        1,
        "one line per request"
    );

    // Without an id (or with one unfit for a log line) one is made, and
    // echoed.
    for given in [None, Some("two words	<and more>")] {
        let mut rb = serve.authed(serve.client().get(format!("{}/v1/batches", serve.url)));
        if let Some(id) = given {
            rb = rb.header("x-request-id", id);
        }
        let res = rb.send().await.unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(!id.is_empty() && Some(id.as_str()) != given, "{id}");
        serve.log_line(30, &id).await;
    }
    serve.stop_within(30).await;
}

#[tokio::test]
async fn probes_fit_their_callers() {
    // Public probes: no token needed, and ready without workers here.
    let h = harness("public_probes = true\n").await;
    let serve = h.serve(&["--no-workers"]).await;
    let c = serve.client();
    let ready = c.get(format!("{}/readyz", serve.url)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = c
        .get(format!("{}/metrics", serve.url))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let batches = c
        .get(format!("{}/v1/batches", serve.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        batches.status(),
        401,
        "everything else still needs the token"
    );
    serve.stop_within(30).await;

    // By default they need the token; `--no-workers` is still ready.
    let h = harness("").await;
    let serve = h.serve(&["--no-workers"]).await;
    let c = serve.client();
    let anon = c.get(format!("{}/readyz", serve.url)).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    let ready = serve
        .authed(c.get(format!("{}/readyz", serve.url)))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "{:?}", ready.text().await);
    serve.stop_within(30).await;
}
