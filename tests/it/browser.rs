//! The web console in a real browser: headless Chromium over WebDriver,
//! against `offboard serve` and the simulator. Without Chromium and its
//! driver each test prints SKIPPED.
//!
//! The screenshots in README come from here: set
//! `OFFBOARD_SCREENSHOTS=docs/console` to write them into the repository.

use std::path::PathBuf;

use crate::console::{Visitor, options, urlencoded};
use crate::helpers::{Harness, Serve, directory, users_csv};
use crate::webdriver::Browser;

fn shot(name: &str) -> PathBuf {
    match std::env::var("OFFBOARD_SCREENSHOTS") {
        Ok(dir) => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(dir)
            .join(format!("{name}.png")),
        Err(_) => std::env::temp_dir()
            .join("offboard-console-screenshots")
            .join(format!("{name}.png")),
    }
}

async fn sign_in(b: &Browser, serve: &Serve, token: &str) {
    b.delete_cookies().await;
    b.go(&format!("{}/batches", serve.url)).await;
    assert!(
        b.url().await.ends_with("/sign-in"),
        "no session: sign in first"
    );
    let field = b.field("Token").await.expect("a field labelled Token");
    b.type_in(&field, token).await;
    b.click(&b.button("Sign in").await.expect("a Sign in button"))
        .await;
    b.until(10, "the batches page", || async {
        b.url().await.ends_with("/batches")
    })
    .await;
}

/// Uploads `csv` from the upload page and waits for its batch page with
/// `button` on it; the batch id.
async fn preview(b: &Browser, serve: &Serve, csv: &std::path::Path, button: &str) -> String {
    b.go(&format!("{}/upload", serve.url)).await;
    let file = b.field("Leavers CSV").await.expect("a Leavers CSV field");
    b.type_in(&file, csv.to_str().unwrap()).await;
    b.click(&b.button("Preview").await.expect("a Preview button"))
        .await;
    b.until(60, &format!("the preview with {button}"), || async {
        b.button(button).await.is_some()
    })
    .await;
    let url = b.url().await;
    url.rsplit('/').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hr_previews_submits_and_watches_a_file() {
    let Some(b) = Browser::start("hr_previews_submits_and_watches_a_file").await else {
        return;
    };
    let h = Harness::start_with(directory(), options("")).await;
    let hr = h.token("hr", "operator").await;
    let serve = h.serve(&[]).await;
    b.go(&format!("{}/sign-in", serve.url)).await;
    b.screenshot(&shot("sign-in")).await;
    sign_in(&b, &serve, &hr).await;

    // 20 rows, lines 7 and 15 bad.
    let mut csv = String::from("user_id,organization_id,transfer_to_department_id\n");
    for line in 2..=21 {
        match line {
            7 => csv.push_str("usr_bad/id,org_acme,dept_offboarded\n"),
            15 => csv.push_str("usr_000099,org_nope!,dept_offboarded\n"),
            _ => csv.push_str(&format!("usr_{:06},org_acme,dept_offboarded\n", line + 10)),
        }
    }
    let path = h.write_csv("leavers.csv", &csv);
    b.go(&format!("{}/upload", serve.url)).await;
    b.screenshot(&shot("upload")).await;
    let batch = preview(&b, &serve, &path, "Submit").await;
    let page = b.source().await;
    assert!(
        page.contains("line 7") && page.contains("line 15"),
        "both bad lines named"
    );
    let roles = crate::helpers::member(&h.sim, "usr_000012").role_ids;
    assert!(
        page.contains(&roles.join(", ")),
        "the roles that would be removed"
    );
    assert!(page.contains("dept_offboarded"), "the transfer department");
    assert!(
        h.sim.calls().iter().all(|c| c.method == "GET"),
        "a preview only reads"
    );
    b.screenshot(&shot("preview")).await;

    b.click(&b.button("Submit").await.unwrap()).await;
    b.until(10, "the batch page again", || async {
        b.button("Submit").await.is_none() && b.css("#state").await.is_some()
    })
    .await;
    // The same element, still on the page, reads `completed`: the page was
    // not loaded again.
    let state = b.css("#state").await.unwrap();
    b.until(60, "the batch to complete", || async {
        b.text(&state).await.as_deref() == Some("completed")
    })
    .await;
    b.screenshot(&shot("batch")).await;

    let link = b
        .link("Download report (CSV)")
        .await
        .expect("a download link");
    let href = b.attribute(&link, "href").await.unwrap();
    let url = if href.starts_with("http") {
        href
    } else {
        format!("{}{href}", serve.url)
    };
    let session = b.cookie("ob_session").await.unwrap();
    let downloaded = reqwest::Client::new()
        .get(url)
        .header("cookie", format!("ob_session={session}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let out = h
        .offboard(&["report", &batch, "--format", "csv"], &[])
        .await;
    assert_eq!(downloaded, String::from_utf8_lossy(&out.stdout));

    b.go(&format!("{}/batches", serve.url)).await;
    b.screenshot(&shot("batches")).await;
    b.go(&format!("{}/schedules", serve.url)).await;
    b.screenshot(&shot("schedules")).await;
    b.quit().await;
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_upload_waits_for_an_approver() {
    let Some(b) = Browser::start("a_mass_upload_waits_for_an_approver").await else {
        return;
    };
    let h = Harness::start_with(offboard::sim::Directory::generate(601, 9), options("")).await;
    let operator = h.token("olga", "operator").await;
    let viewer = h.token("vic", "viewer").await;
    let approver = h.token("ann", "approver").await;
    let serve = h.serve(&[]).await;
    sign_in(&b, &serve, &operator).await;
    let path = h.write_csv("600.csv", &users_csv(2, 601));
    let batch = preview(&b, &serve, &path, "Request approval").await;
    b.click(&b.button("Request approval").await.unwrap()).await;
    b.until(10, "the batch to be halted", || async {
        let state = b.css("#state").await;
        match state {
            Some(s) => b.text(&s).await.as_deref() == Some("halted"),
            None => false,
        }
    })
    .await;
    assert!(
        b.button("Approve").await.is_none(),
        "not the submitter's to approve"
    );

    // A viewer sees no Approve button, and a forged approval is refused.
    sign_in(&b, &serve, &viewer).await;
    b.go(&format!("{}/batches/{batch}", serve.url)).await;
    assert!(b.button("Approve").await.is_none());
    assert!(b.button("Approve selected").await.is_none());
    let page = b.source().await;
    let csrf = Visitor::csrf(&page);
    let session = b.cookie("ob_session").await.unwrap();
    let forged = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/batches/{batch}/approve", serve.url))
        .header("cookie", format!("ob_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(urlencoded(&[("csrf", &csrf), ("scope", "all")]))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    // An approver applies two selected people only.
    sign_in(&b, &serve, &approver).await;
    b.go(&format!("{}/batches/{batch}", serve.url)).await;
    b.screenshot(&shot("approval")).await;
    for user in ["usr_000002", "usr_000003"] {
        let tick = b
            .css(&format!("input[name=only][value={user}]"))
            .await
            .expect("a checkbox per person");
        b.click(&tick).await;
    }
    b.click(&b.button("Approve selected").await.unwrap()).await;
    b.until(60, "the approved people to be offboarded", || async {
        ["usr_000002", "usr_000003"]
            .iter()
            .all(|u| crate::helpers::member(&h.sim, u).account_state == "deleted")
    })
    .await;
    let removed: std::collections::BTreeSet<String> = h
        .sim
        .calls()
        .iter()
        .filter(|c| c.method == "DELETE")
        .filter_map(|c| {
            c.path
                .split('/')
                .find(|s| s.starts_with("usr_"))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        removed.into_iter().collect::<Vec<_>>(),
        ["usr_000002", "usr_000003"],
        "only the two selected"
    );
    b.quit().await;
    serve.stop().await;
}
