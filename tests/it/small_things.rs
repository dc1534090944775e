//! Small things a user trips on (issue 31, item 13): spellings the README
//! uses, messages that name the surface they come from, and the
//! environment standing in for flags.

use serde_json::Value;

use crate::helpers::{Harness, Options, TOKEN_ENV, api_options, directory, users_csv};

#[tokio::test]
async fn retry_accepts_the_outcome_as_reports_spell_it() {
    let h = Harness::start(directory()).await;
    let csv = h.write_csv("one.csv", &users_csv(2, 2));
    let (code, batch, _) = h.run(&csv).await;
    assert_eq!(code, Some(0));
    for spelling in ["needs_attention", "needs-attention"] {
        let out = h
            .offboard(&["retry", &batch, "--outcome", spelling, "--no-wait"], &[])
            .await;
        assert!(
            out.status.success(),
            "{spelling}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn the_environment_names_the_config_file_and_the_log_format() {
    let h = Harness::start(directory()).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_offboard"))
        .arg("migrate")
        .env("OFFBOARD_CONFIG", &h.config)
        .env("OFFBOARD_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .env(TOKEN_ENV, &h.token)
        .current_dir(h.dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The database of the harness's file, not the default offboard.db.
    assert!(
        stdout.contains(&h.dir.path().join("offboard.db").display().to_string()),
        "{stdout}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "debug logging wrote nothing");
    for line in lines {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}

#[tokio::test]
async fn no_valid_rows_over_http_names_the_query_parameter() {
    let h = Harness::start_with(
        directory(),
        Options {
            all_providers: Some(String::new()),
            ..api_options("")
        },
    )
    .await;
    let serve = h.serve(&["--no-workers"]).await;
    let res = serve
        .authed(serve.client().post(format!("{}/v1/batches", serve.url)))
        .header("content-type", "text/csv")
        .body("user_id,organization_id\nusr_000002,org_acme\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    let message = body["error"]["details"]["rejected_rows"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("?provider="), "{message}");
    assert!(!message.contains("--provider"), "{message}");
    serve.stop().await;
}

#[test]
fn the_example_config_shows_the_safety_cap() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/offboard.example.toml"),
    )
    .unwrap();
    let table: toml::Table = text.parse().unwrap();
    assert!(
        table["safety"].get("max_batch_requests").is_some(),
        "[safety] max_batch_requests is missing from the example"
    );
}

/// `allow_insecure_http` lets a connection speak http:// to another host;
/// `check` says so every time (issue 31, item 11).
#[tokio::test]
async fn check_warns_about_allowed_clear_text() {
    let h = Harness::start_with(
        directory(),
        Options {
            extra_config: "allow_insecure_http = true\n".into(),
            ..Options::default()
        },
    )
    .await;
    let out = h.offboard(&["check"], &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("provider acme: WARNING: allow_insecure_http = true"),
        "{stdout}"
    );
}
