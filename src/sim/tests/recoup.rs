//! Recoup's documented answers: exactly one credential, idempotent member
//! removal, UUID validation, the caller's access, and the non-JSON bodies
//! its host sends when the application did not answer.

use reqwest::Method;
use serde_json::json;

use super::{Answer, Harness, TOKEN, send};
use crate::sim::{Directory, FailNext, FaultConfig};

const ORG: &str = "00000000-0000-4000-8000-000000000001";
const MEMBER: &str = "00000000-0000-4000-9000-000000000002";
const CALLER: &str = "00000000-0000-4000-9000-999999999999";

/// How a request presents its credential.
#[derive(Clone, Copy)]
enum Auth<'a> {
    ApiKey(&'a str),
    Bearer(&'a str),
    Both,
    Neither,
}

async fn call(h: &Harness, method: Method, path: &str, auth: Auth<'_>) -> Answer {
    let url = format!("{}{path}", h.server.recoup_base_url());
    let request = h.request(method, url);
    let request = match auth {
        Auth::ApiKey(key) => request.header("x-api-key", key),
        Auth::Bearer(token) => request.bearer_auth(token),
        Auth::Both => request.header("x-api-key", TOKEN).bearer_auth(TOKEN),
        Auth::Neither => request,
    };
    send(request).await
}

fn remove_path(org: &str, account: &str) -> String {
    format!("/api/organizations/members?organization_id={org}&account_id={account}")
}

#[tokio::test]
async fn exactly_one_valid_credential_is_accepted() {
    let h = Harness::start(Directory::generate(3, 1)).await;
    let path = format!("/api/organizations?account_id={MEMBER}");
    for auth in [Auth::Both, Auth::Neither] {
        let refused = call(&h, Method::GET, &path, auth).await;
        assert_eq!(refused.status, 401);
        assert_eq!(refused.body["status"], "error");
        assert!(refused.body["error"].is_string() && refused.body.get("message").is_none());
    }
    for auth in [Auth::ApiKey("nope"), Auth::Bearer("nope")] {
        let refused = call(&h, Method::GET, &path, auth).await;
        assert_eq!(refused.status, 401);
        assert!(refused.body["message"].is_string() && refused.body.get("error").is_none());
    }
    assert_eq!(
        call(&h, Method::GET, &path, Auth::ApiKey("nope"))
            .await
            .body,
        json!({"status": "error", "message": "Unauthorized"})
    );
    for auth in [Auth::ApiKey(TOKEN), Auth::Bearer(TOKEN)] {
        assert_eq!(call(&h, Method::GET, &path, auth).await.status, 200);
    }
    // An empty header counts as absent.
    let url = format!("{}{path}", h.server.recoup_base_url());
    let empty_key = h
        .request(Method::GET, url)
        .header("x-api-key", "")
        .bearer_auth(TOKEN);
    assert_eq!(send(empty_key).await.status, 200);
    h.server.shutdown().await;
}

#[tokio::test]
async fn removal_is_idempotent() {
    let h = Harness::start(Directory::generate(3, 1)).await;
    let path = remove_path(ORG, MEMBER);
    for _ in 0..2 {
        let removed = call(&h, Method::DELETE, &path, Auth::ApiKey(TOKEN)).await;
        assert_eq!(
            (removed.status, &removed.body),
            (200, &json!({"status": "success"}))
        );
    }
    let state = h.server.state();
    let members = &state.recoup.organizations[0].member_account_ids;
    assert!(!members.contains(&MEMBER.to_owned()) && members.len() == 3);
    // Postgres compares UUIDs without regard to case.
    let upper = remove_path(&ORG.to_uppercase(), "00000000-0000-4000-9000-00000000000A");
    assert_eq!(
        call(&h, Method::DELETE, &upper, Auth::Bearer(TOKEN))
            .await
            .status,
        200
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn ids_that_are_not_uuids_are_400() {
    let h = Harness::start(Directory::generate(3, 1)).await;
    let cases = [
        (
            format!("/api/organizations/members?account_id={MEMBER}"),
            "organization_id is required",
        ),
        (
            remove_path("nope", MEMBER),
            "organization_id must be a valid UUID",
        ),
        (remove_path(ORG, ""), "account_id must be a valid UUID"),
        (
            remove_path(ORG, &format!("{MEMBER}0")),
            "account_id must be a valid UUID",
        ),
        (
            remove_path(ORG, "%FF%FE"),
            "account_id must be a valid UUID",
        ),
    ];
    for (path, message) in cases {
        let answer = call(&h, Method::DELETE, &path, Auth::ApiKey(TOKEN)).await;
        assert_eq!(
            (answer.status, &answer.body),
            (400, &json!({"status": "error", "error": message})),
            "{path}"
        );
    }
    // The listing checks its query before the credentials.
    let listing = call(
        &h,
        Method::GET,
        "/api/organizations?account_id=x",
        Auth::Neither,
    )
    .await;
    assert_eq!(listing.status, 400);
    h.server.shutdown().await;
}

#[tokio::test]
async fn the_caller_must_belong_to_the_organization() {
    let mut dir = Directory::generate(3, 1);
    let other = "00000000-0000-4000-8000-000000000002";
    dir.recoup.organizations.push(crate::sim::RecoupOrg {
        id: other.into(),
        name: "Other".into(),
        member_account_ids: vec![MEMBER.into()],
    });
    let h = Harness::start(dir).await;
    let before = h.server.state();
    for org in [other, "00000000-0000-4000-8000-0000000000ff"] {
        let answer = call(
            &h,
            Method::DELETE,
            &remove_path(org, MEMBER),
            Auth::ApiKey(TOKEN),
        )
        .await;
        assert_eq!(
            (answer.status, &answer.body),
            (
                403,
                &json!({"status": "error", "error": "Caller is not a member of the organization"})
            )
        );
    }
    assert_eq!(h.server.state(), before);
    h.server.shutdown().await;
}

#[tokio::test]
async fn an_accounts_organizations_need_a_shared_one() {
    let h = Harness::start(Directory::generate(3, 1)).await;
    let path = format!("/api/organizations?account_id={MEMBER}");
    let listed = call(&h, Method::GET, &path, Auth::ApiKey(TOKEN)).await;
    assert_eq!(listed.body["status"], "success");
    let org = &listed.body["organizations"][0];
    assert_eq!(
        (
            &org["organization_id"],
            &org["organization_name"],
            &org["organization_image"]
        ),
        (&json!(ORG), &json!("Acme"), &json!(null))
    );
    // The vendor lists membership rows: their id is not the organization's.
    let row = org["id"].as_str().unwrap();
    assert!(row != ORG && crate::sim::directory::parse_uuid(row).is_some());
    let own = call(&h, Method::GET, "/api/organizations", Auth::ApiKey(TOKEN)).await;
    assert_eq!(own.body["organizations"][0]["organization_id"], ORG);
    let caller = call(
        &h,
        Method::GET,
        &format!("/api/organizations?account_id={CALLER}"),
        Auth::ApiKey(TOKEN),
    )
    .await;
    assert_eq!(caller.status, 200);

    assert_eq!(
        call(
            &h,
            Method::DELETE,
            &remove_path(ORG, MEMBER),
            Auth::ApiKey(TOKEN)
        )
        .await
        .status,
        200
    );
    let after = call(&h, Method::GET, &path, Auth::ApiKey(TOKEN)).await;
    assert_eq!(
        (after.status, &after.body),
        (
            403,
            &json!({"status": "error", "error": "Access denied to specified account_id"})
        )
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn faults_from_the_host_are_not_json() {
    let script = |status| FailNext {
        user_id: MEMBER.into(),
        count: 1,
        status,
        ..FailNext::default()
    };
    let faults = FaultConfig {
        fail_next: [429, 502, 503, 504, 500].into_iter().map(script).collect(),
        ..FaultConfig::default()
    };
    let h = Harness::with_faults(Directory::generate(3, 1), faults).await;
    let path = remove_path(ORG, MEMBER);
    for status in [429, 502, 503, 504] {
        let answer = call(&h, Method::DELETE, &path, Auth::ApiKey(TOKEN)).await;
        assert_eq!(answer.status, status);
        assert!(
            answer.body.is_null() && !answer.text.is_empty(),
            "{}",
            answer.text
        );
        let content_type = answer.headers["content-type"].to_str().unwrap();
        assert!(content_type.starts_with("text/"), "{content_type}");
        if status == 429 {
            assert_eq!(answer.headers["retry-after"], "1");
        }
    }
    let internal = call(&h, Method::DELETE, &path, Auth::ApiKey(TOKEN)).await;
    assert_eq!(
        (internal.status, &internal.body),
        (
            500,
            &json!({"status": "error", "error": "Internal Server Error"})
        )
    );
    assert_eq!(
        call(&h, Method::DELETE, &path, Auth::ApiKey(TOKEN))
            .await
            .status,
        200
    );
    assert!(h.server.calls().iter().all(|c| c.provider == "recoup"));
    h.server.shutdown().await;
}
