//! The Auth0 Management API's documented answers: auth, member roles in
//! both shapes, bulk role removal, a user's organizations, blocking, and
//! ids that arrive percent-encoded.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Answer, Harness, TOKEN, send};
use crate::sim::Directory;

/// Two organizations; alice is in both, bob in one, carol in none.
pub(super) fn directory() -> Directory {
    Directory::from_json_str(
        r#"{"auth0": {
          "organizations": [
            {"id": "org_acme", "name": "acme", "display_name": "Acme",
             "roles": [{"id": "rol_admin", "name": "Admin", "description": "Runs it"},
                       {"id": "rol_member", "name": "Member", "description": "Uses it"},
                       {"id": "rol_billing", "name": "Billing", "description": "Pays for it"}],
             "members": [{"user_id": "auth0|alice", "roles": ["rol_admin", "rol_member"]},
                         {"user_id": "auth0|bob", "roles": ["rol_member"]}]},
            {"id": "org_beta", "name": "beta", "roles": [],
             "members": [{"user_id": "auth0|alice", "roles": []}]}],
          "users": [
            {"user_id": "auth0|alice", "email": "alice@acme.example", "name": "Alice", "blocked": false},
            {"user_id": "auth0|bob", "email": "bob@acme.example", "name": "Bob"},
            {"user_id": "auth0|carol", "email": "carol@acme.example", "name": "Carol"}]
        }}"#,
    )
    .expect("the Auth0 test directory is valid")
}

/// A call to an Auth0 path with the bearer token.
pub(super) async fn call(h: &Harness, method: Method, path: &str, body: Option<Value>) -> Answer {
    let url = format!("{}{path}", h.server.auth0_base_url());
    let mut request = h.request(method, url).bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request).await
}

/// The Auth0 error code, if the body is Auth0's error body.
pub(super) fn code(answer: &Answer) -> &str {
    answer.body["errorCode"].as_str().unwrap_or("")
}

const ALICE_ROLES: &str = "/organizations/org_acme/members/auth0%7Calice/roles";

#[tokio::test]
async fn auth_needs_the_bearer_token() {
    let h = Harness::start(directory()).await;
    let url = format!("{}{ALICE_ROLES}", h.server.auth0_base_url());
    let missing = send(h.request(Method::GET, url.clone())).await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.body,
        json!({"statusCode": 401, "error": "Unauthorized",
               "message": "Missing authentication", "errorCode": "missing_authentication"})
    );
    assert!(missing.headers.contains_key("x-ratelimit-limit"));
    let wrong = send(h.request(Method::GET, url.clone()).bearer_auth("nope")).await;
    assert_eq!((wrong.status, code(&wrong)), (401, "invalid_token"));
    let api_key = send(
        h.request(Method::GET, url.clone())
            .header("X-API-Key", TOKEN),
    )
    .await;
    assert_eq!(api_key.status, 401);
    let right = send(h.request(Method::GET, url).bearer_auth(TOKEN)).await;
    assert_eq!(right.status, 200);
    h.server.shutdown().await;
}

#[tokio::test]
async fn member_roles_come_in_both_shapes() {
    let h = Harness::start(directory()).await;
    let bare = call(&h, Method::GET, ALICE_ROLES, None).await;
    assert_eq!(bare.status, 200);
    assert_eq!(
        bare.body,
        json!([{"id": "rol_admin", "name": "Admin", "description": "Runs it"},
               {"id": "rol_member", "name": "Member", "description": "Uses it"}])
    );
    let path = format!("{ALICE_ROLES}?page=0&per_page=50&include_totals=false");
    assert_eq!(call(&h, Method::GET, &path, None).await.body, bare.body);

    let path = format!("{ALICE_ROLES}?page=1&per_page=1&include_totals=true");
    let totals = call(&h, Method::GET, &path, None).await;
    assert_eq!(
        totals.body,
        json!({"start": 1, "limit": 1, "total": 2,
               "roles": [{"id": "rol_member", "name": "Member", "description": "Uses it"}]})
    );
    for bad in [
        "per_page=0",
        "per_page=101",
        "per_page=abc",
        "page=-1",
        "page=1001",
        "page=99999999999999999999999",
        "include_totals=yes",
    ] {
        let answer = call(&h, Method::GET, &format!("{ALICE_ROLES}?{bad}"), None).await;
        assert_eq!(
            (answer.status, code(&answer)),
            (400, "invalid_query_string"),
            "{bad}"
        );
    }
    h.server.shutdown().await;
}

#[tokio::test]
async fn member_roles_of_a_non_member_are_404() {
    let h = Harness::start(directory()).await;
    for user in ["auth0%7Ccarol", "auth0%7Cnobody"] {
        let path = format!("/organizations/org_acme/members/{user}/roles");
        let answer = call(&h, Method::GET, &path, None).await;
        assert_eq!(
            answer.body,
            json!({"statusCode": 404, "error": "Not Found",
                   "message": "The user does not exist.", "errorCode": "inexistent_user"})
        );
    }
    let org = call(
        &h,
        Method::GET,
        "/organizations/org_nope/members/auth0%7Calice/roles",
        None,
    )
    .await;
    assert_eq!((org.status, code(&org)), (404, "inexistent_organization"));
    h.server.shutdown().await;
}

#[tokio::test]
async fn removing_roles_takes_what_is_held_and_ignores_the_rest() {
    let h = Harness::start(directory()).await;
    let body = json!({"roles": ["rol_admin", "rol_billing", "rol_nope"]});
    let removed = call(&h, Method::DELETE, ALICE_ROLES, Some(body.clone())).await;
    assert_eq!((removed.status, removed.text.as_str()), (204, ""));
    let again = call(&h, Method::DELETE, ALICE_ROLES, Some(body)).await;
    assert_eq!(again.status, 204);
    let state = h.server.state();
    assert_eq!(
        state.auth0.organizations[0].members[0].roles,
        ["rol_member"]
    );
    let beta = call(
        &h,
        Method::GET,
        "/organizations/org_beta/members/auth0%7Calice/roles",
        None,
    )
    .await;
    assert_eq!(beta.body, json!([]));

    let stranger = call(
        &h,
        Method::DELETE,
        "/organizations/org_acme/members/auth0%7Ccarol/roles",
        Some(json!({"roles": ["rol_member"]})),
    )
    .await;
    assert_eq!((stranger.status, code(&stranger)), (404, "inexistent_user"));
    let org = call(
        &h,
        Method::DELETE,
        "/organizations/org_nope/members/auth0%7Calice/roles",
        Some(json!({"roles": ["rol_member"]})),
    )
    .await;
    assert_eq!((org.status, code(&org)), (404, "inexistent_organization"));
    h.server.shutdown().await;
}

#[tokio::test]
async fn malformed_role_removals_are_invalid_body() {
    let h = Harness::start(directory()).await;
    let before = h.server.state();
    let too_many: Vec<String> = (0..21).map(|n| format!("rol_{n}")).collect();
    for body in [
        None,
        Some(json!([])),
        Some(json!({})),
        Some(json!({"roles": []})),
        Some(json!({"roles": "rol_admin"})),
        Some(json!({"roles": [1]})),
        Some(json!({"roles": [""]})),
        Some(json!({"roles": too_many})),
        Some(json!({"roles": ["rol_admin"], "extra": true})),
    ] {
        let answer = call(&h, Method::DELETE, ALICE_ROLES, body.clone()).await;
        assert_eq!(
            (answer.status, code(&answer)),
            (400, "invalid_body"),
            "{body:?}"
        );
    }
    let url = format!("{}{ALICE_ROLES}", h.server.auth0_base_url());
    for raw in ["{not json", r#"{"roles": [1e400]}"#, &"[".repeat(10_000)] {
        let request = h.request(Method::DELETE, url.clone()).bearer_auth(TOKEN);
        let answer = send(request.body(raw.to_owned())).await;
        assert_eq!((answer.status, code(&answer)), (400, "invalid_body"));
    }
    assert_eq!(h.server.state(), before);
    h.server.shutdown().await;
}

#[tokio::test]
async fn ids_are_percent_decoded_and_odd_ones_match_nothing() {
    let h = Harness::start(directory()).await;
    for user in [
        "auth0%7Calice",
        "auth0%7calice",
        "auth0|alice",
        "%61uth0%7Calice",
    ] {
        let path = format!("/organizations/org_acme/members/{user}/roles");
        assert_eq!(
            call(&h, Method::GET, &path, None).await.status,
            200,
            "{user}"
        );
    }
    let long = "x".repeat(10_000);
    for user in ["auth0%2Falice", "%FF%FE", "auth0%7Calice%00", long.as_str()] {
        let path = format!("/organizations/org_acme/members/{user}/roles");
        let answer = call(&h, Method::GET, &path, None).await;
        assert_eq!(
            (answer.status, code(&answer)),
            (404, "inexistent_user"),
            "{user}"
        );
    }
    let org = call(
        &h,
        Method::GET,
        "/organizations/%FF/members/auth0%7Calice/roles",
        None,
    )
    .await;
    assert_eq!(code(&org), "inexistent_organization");
    let unknown = call(&h, Method::GET, "/nothing/here", None).await;
    assert_eq!((unknown.status, code(&unknown)), (404, "not_found"));
    let calls = h.server.calls();
    assert_eq!(calls[0].provider, "auth0");
    assert_eq!(
        calls[0].path,
        "/auth0/api/v2/organizations/org_acme/members/auth0%7Calice/roles"
    );
    h.server.shutdown().await;
}
