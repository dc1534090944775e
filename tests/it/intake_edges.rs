//! Hostile and careless CSV files through the real binary, on SQLite and on
//! PostgreSQL: whatever the file, `run` ends in 0, 2 or 3, never in a
//! database error (issue 31, items 1 and 2).

use crate::helpers::{Harness, directory};
use crate::postgres::TestDatabase;

/// Rows ending in a bare CR (old Mac exports), then CRLF rows, then a bare
/// LF, with `,,,` rows between them.
const MIXED: &str = "user_id,organization_id,transfer_to_department_id\r\
usr_000002,org_acme,dept_offboarded\r\
,,\r\
usr_000003,org_acme,dept_offboarded\r\n\
usr_000004,org_acme,dept_offboarded\r\n\
,,,\n\
usr_000005,org_acme,dept_offboarded\n";

async fn mixed_line_endings(database_url: Option<String>) {
    let h = Harness::on_database(directory(), database_url).await;
    let csv = h.write_csv("mac.csv", MIXED);
    let (code, batch, out) = h.run(&csv).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("2 blank lines ignored"), "{stderr}");
    let mut lines: Vec<(String, String)> = h
        .report(&batch)
        .await
        .into_iter()
        .map(|r| (r["line"].clone(), r["user_id"].clone()))
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            ("2".into(), "usr_000002".into()),
            ("4".into(), "usr_000003".into()),
            ("5".into(), "usr_000004".into()),
            ("7".into(), "usr_000005".into()),
        ]
    );
}

#[tokio::test]
async fn mixed_line_endings_number_every_row_on_sqlite() {
    mixed_line_endings(None).await;
}

#[tokio::test]
async fn mixed_line_endings_number_every_row_on_postgres() {
    let Some(db) = TestDatabase::create("mixed_line_endings").await else {
        return;
    };
    mixed_line_endings(Some(db.url.clone())).await;
    db.drop().await;
}

/// A NUL byte, which PostgreSQL's text refuses, is the row's rejection.
#[tokio::test]
async fn a_nul_byte_is_a_rejected_row_on_postgres() {
    let Some(db) = TestDatabase::create("nul_byte").await else {
        return;
    };
    let h = Harness::on_database(directory(), Some(db.url.clone())).await;
    let csv = h.write_csv(
        "nul.csv",
        "user_id,organization_id,reason\nusr_000002,org_acme,a\0b\nusr_0\0_3,org_acme,x\nusr_000004,org_acme,ok\n",
    );
    let (code, _, out) = h.run(&csv).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("line 2: invalid_encoding"), "{stderr}");
    assert!(stderr.contains("line 3: invalid_encoding"), "{stderr}");
    db.drop().await;
}

#[tokio::test]
async fn submit_counts_blank_rows_on_stderr_and_keeps_stdout_the_batch_id() {
    let h = Harness::start(directory()).await;
    let csv = h.write_csv(
        "blank.csv",
        "user_id,organization_id\n,\nusr_000002,org_acme\n",
    );
    let out = h.offboard(&["submit", csv.to_str().unwrap()], &[]).await;
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 blank lines ignored"));
}

#[tokio::test]
async fn the_upload_answer_counts_blank_rows() {
    let h = Harness::start_with(directory(), crate::helpers::api_options("")).await;
    let serve = h.serve(&["--no-workers"]).await;
    let res = serve
        .authed(serve.client().post(format!("{}/v1/batches", serve.url)))
        .header("content-type", "text/csv")
        .body(MIXED)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["accepted_rows"], 4, "{body}");
    assert_eq!(body["blank_lines_ignored"], 2, "{body}");
    serve.stop().await;
}
