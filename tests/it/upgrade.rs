//! A database written by an earlier version keeps its promises after the
//! upgrade's migrations: a resubmitted row still finds its open request.

use crate::helpers::{Harness, directory};

/// The migration that replaced hashed idempotency keys with readable ones.
const READABLE_KEYS: i64 = 20261203000008;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_stored_with_hashed_keys_still_deduplicate_after_the_upgrade() {
    let h = Harness::start(directory()).await;
    let csv = h.write_csv(
        "leavers.csv",
        "user_id,organization_id,transfer_to_department_id\nusr_000002,org_acme,dept_offboarded\nusr_000003,org_acme,\n",
    );
    let first = h.offboard(&["submit", csv.to_str().unwrap()], &[]).await;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );

    // Put the database back as the previous version left it: hashed keys,
    // and the key migration not yet applied.
    let url = format!("sqlite://{}", h.dir.path().join("offboard.db").display());
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE requests SET idempotency_key = lower(hex(randomblob(16)))")
        .execute(&db)
        .await
        .unwrap();
    let removed = sqlx::query("DELETE FROM _sqlx_migrations WHERE version = ?")
        .bind(READABLE_KEYS)
        .execute(&db)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(removed, 1, "the key migration ran on the fresh database");
    db.close().await;

    let second = h.offboard(&["submit", csv.to_str().unwrap()], &[]).await;
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT idempotency_key FROM requests ORDER BY user_id")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(
        keys,
        [
            "acme/org_acme/usr_000002/dept_offboarded",
            "acme/org_acme/usr_000003/",
        ],
        "the second submission linked to the two open requests"
    );
    let linked: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT request_id) FROM batch_entries")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(linked, 2, "both batches' lines point at the same requests");
}
