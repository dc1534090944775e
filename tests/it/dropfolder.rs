//! Drop folders through a real `offboard serve --no-api`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::helpers::{Harness, Options, directory, eventually, member, users_csv};

struct Folder {
    h: Harness,
    inbox: PathBuf,
}

async fn setup() -> Folder {
    let tmp_jobs = tempfile::tempdir().unwrap().keep();
    let inbox = tmp_jobs.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let jobs = tmp_jobs.join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    std::fs::write(
        jobs.join("hris-dropfolder.toml"),
        format!(
            "watch = \"{}\"\nprovider = \"acme\"\npoll_ms = 100\n",
            inbox.display()
        ),
    )
    .unwrap();
    let h = Harness::start_with(
        directory(),
        Options {
            extra_config: format!("[jobs]\ndir = \"{}\"\n", jobs.display()),
            ..Options::default()
        },
    )
    .await;
    Folder { h, inbox }
}

fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_taken_once_complete_and_once_only() {
    let f = setup().await;
    // Left in processing/ by a crash before the service started.
    std::fs::create_dir_all(f.inbox.join("processing")).unwrap();
    std::fs::write(f.inbox.join("processing/crashed.csv"), users_csv(20, 21)).unwrap();
    // A symlink is refused; what it points to is not touched.
    let outside = f.h.dir.path().join("outside.csv");
    std::fs::write(&outside, users_csv(30, 30)).unwrap();
    std::os::unix::fs::symlink(&outside, f.inbox.join("link.csv")).unwrap();
    // A partial upload stays until renamed.
    std::fs::write(f.inbox.join("later.csv.part"), users_csv(40, 41)).unwrap();

    let serve = f.h.serve(&["--no-api"]).await;

    // A file written slowly, in parts: taken once it is complete.
    let text = users_csv(2, 13);
    let mut file = std::fs::File::create(f.inbox.join("slow.csv")).unwrap();
    for chunk in text.as_bytes().chunks(40) {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
        // Slower than a writer in a hurry, faster than the stability window.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(file);

    let done = f.inbox.join("done");
    let failed = f.inbox.join("failed");
    eventually(60, "slow.csv and crashed.csv to be done", || async {
        exists(&done.join("slow.csv.report.csv")) && exists(&done.join("crashed.csv.report.csv"))
    })
    .await;
    let events = std::fs::read_to_string(done.join("slow.csv.events.json")).unwrap();
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    assert_eq!(events[0]["action"], "submitted", "{events}");
    assert_eq!(events[0]["actor"], "dropfolder:hris-dropfolder");
    assert_eq!(events[0]["detail"]["source"], "dropfolder");
    let report = std::fs::read_to_string(done.join("slow.csv.report.csv")).unwrap();
    assert_eq!(
        report.lines().count(),
        13,
        "one batch with every row: {report}"
    );
    assert!(
        report
            .lines()
            .skip(1)
            .all(|l| l.contains(",succeeded,") || l.contains(",already_done,")),
        "{report}"
    );
    for i in [2, 13, 20, 21] {
        assert_eq!(
            member(&f.h.sim, &format!("usr_{i:06}")).account_state,
            "deleted"
        );
    }

    assert!(
        exists(&failed.join("link.csv")),
        "the symlink is moved aside"
    );
    assert!(
        std::fs::read_to_string(failed.join("link.csv.errors.txt"))
            .unwrap()
            .contains("symbolic link")
    );
    assert_eq!(member(&f.h.sim, "usr_000030").account_state, "active");
    assert!(exists(&outside));

    // The .part file was ignored through all those passes; renamed, it runs.
    assert!(exists(&f.inbox.join("later.csv.part")));
    assert_eq!(member(&f.h.sim, "usr_000040").account_state, "active");
    std::fs::rename(f.inbox.join("later.csv.part"), f.inbox.join("later.csv")).unwrap();
    eventually(30, "later.csv to be done", || async {
        exists(&done.join("later.csv.report.csv"))
    })
    .await;

    // The same content again, under another name: no second batch.
    let calls_before = f.h.sim.calls().len();
    std::fs::write(f.inbox.join("again.csv"), users_csv(2, 13)).unwrap();
    eventually(30, "again.csv to be set aside", || async {
        exists(&done.join("again.csv.duplicate.txt"))
    })
    .await;
    assert!(!exists(&done.join("again.csv.report.csv")));
    assert_eq!(
        f.h.sim.calls().len(),
        calls_before,
        "a duplicate file makes no call"
    );

    serve.stop().await;
    let status = f.h.offboard(&["status", "--json"], &[]).await;
    let batches: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        batches.as_array().unwrap().len(),
        3,
        "slow, crashed and later: one batch each"
    );
}

/// A link planted where the drop folder writes a note is replaced, never
/// written through (issue 31, item 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_planted_at_a_note_is_not_followed() {
    let f = setup().await;
    let failed = f.inbox.join("failed");
    std::fs::create_dir_all(&failed).unwrap();
    let precious = f.h.dir.path().join("precious.txt");
    std::fs::write(&precious, "keep me").unwrap();
    std::os::unix::fs::symlink(&precious, failed.join("evil.csv.errors.txt")).unwrap();
    std::os::unix::fs::symlink(&precious, failed.join(".evil.csv.errors.txt.partial")).unwrap();

    let serve = f.h.serve(&["--no-api"]).await;
    // No user_id column: the whole file is unusable and goes to failed/.
    std::fs::write(f.inbox.join("evil.csv"), "name,org\nx,org_acme\n").unwrap();
    let note = failed.join("evil.csv.errors.txt");
    eventually(60, "evil.csv to fail with its note", || async {
        std::fs::symlink_metadata(&note).is_ok_and(|m| m.is_file())
    })
    .await;
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
    assert!(std::fs::read_to_string(&note).unwrap().contains("header"));
    serve.stop().await;
}

/// A `done/` that is a link is refused: the folder is not served, and
/// nothing is written where the link points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_subfolder_is_refused() {
    let f = setup().await;
    let elsewhere = f.h.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, f.inbox.join("done")).unwrap();
    std::fs::write(f.inbox.join("good.csv"), users_csv(2, 3)).unwrap();

    let serve = f.h.serve(&["--no-api"]).await;
    let line = serve.log_line(60, "drop folder pass failed").await;
    assert!(line.contains("symbolic link"), "{line}");
    assert!(f.inbox.join("good.csv").exists(), "not taken");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    serve.stop().await;
}
