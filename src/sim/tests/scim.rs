//! SCIM 2.0 reads and user writes: auth, the userName filter, ListResponse
//! paging, resources with ETags, deactivation and deletion.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Answer, Harness, TOKEN, send};
use crate::sim::Directory;

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A call to a SCIM path with the bearer token and, optionally, `If-Match`.
pub(super) async fn call(
    h: &Harness,
    method: Method,
    path: &str,
    body: Option<Value>,
    if_match: Option<&str>,
) -> Answer {
    let url = format!("{}{path}", h.server.scim_base_url());
    let mut request = h.request(method, url).bearer_auth(TOKEN);
    if let Some(tag) = if_match {
        request = request.header("If-Match", tag);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/scim+json")
            .body(body.to_string());
    }
    send(request).await
}

pub(super) async fn get(h: &Harness, path: &str) -> Answer {
    call(h, Method::GET, path, None, None).await
}

/// A PatchOp message with these operations.
pub(super) fn patch_op(operations: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": operations})
}

/// The `scimType` of an error answer, if any.
pub(super) fn scim_type(answer: &Answer) -> Option<&str> {
    answer.body.get("scimType").and_then(Value::as_str)
}

pub(super) fn ids(list: &Answer) -> Vec<&str> {
    list.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn auth_needs_the_bearer_token() {
    let h = Harness::start(Directory::generate(3, 1)).await;
    let url = format!("{}/Users/u-000001", h.server.scim_base_url());
    for request in [
        h.request(Method::GET, url.clone()),
        h.request(Method::GET, url.clone())
            .header("X-API-Key", TOKEN),
        h.request(Method::GET, url.clone()).bearer_auth("nope"),
    ] {
        let refused = send(request).await;
        assert_eq!(refused.status, 401);
        assert_eq!(refused.body["status"], "401");
        assert_eq!(
            refused.body["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
        );
        assert_eq!(scim_type(&refused), None);
        assert_eq!(refused.headers["content-type"], "application/scim+json");
    }
    let accepted = send(h.request(Method::GET, url).bearer_auth(TOKEN)).await;
    assert_eq!(accepted.status, 200);
    h.server.shutdown().await;
}

#[tokio::test]
async fn users_are_found_by_user_name_and_listed_by_page() {
    let h = Harness::start(Directory::generate(10, 1)).await;
    let found = get(
        &h,
        "/Users?filter=userName%20eq%20%22USER000002@acme.EXAMPLE%22",
    )
    .await;
    assert_eq!(found.status, 200);
    assert_eq!(
        found.body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(
        (
            &found.body["totalResults"],
            &found.body["startIndex"],
            &found.body["itemsPerPage"]
        ),
        (&json!(1), &json!(1), &json!(1))
    );
    assert_eq!(ids(&found), ["u-000002"]);
    let none = get(
        &h,
        "/Users?filter=userName%20eq%20%22nobody@acme.example%22",
    )
    .await;
    assert_eq!(
        (&none.body["totalResults"], &none.body["Resources"]),
        (&json!(0), &json!([]))
    );
    for filter in [
        "userName co \"user\"",
        "emails eq \"user000002@acme.example\"",
        "userName eq \"x\" or userName eq \"y\"",
        "((",
    ] {
        let path = format!(
            "/Users?filter={}",
            filter.replace(' ', "%20").replace('"', "%22")
        );
        let answer = get(&h, &path).await;
        assert_eq!(
            (answer.status, scim_type(&answer)),
            (400, Some("invalidFilter")),
            "{filter}"
        );
        assert_eq!(answer.body["status"], "400");
    }

    let page = get(&h, "/Users?startIndex=3&count=2").await;
    assert_eq!(ids(&page), ["u-000003", "u-000004"]);
    assert_eq!(
        (&page.body["totalResults"], &page.body["itemsPerPage"]),
        (&json!(10), &json!(2))
    );
    assert_eq!(
        ids(&get(&h, "/Users?startIndex=0&count=1").await),
        ["u-000001"]
    );
    assert_eq!(get(&h, "/Users?count=-5").await.body["itemsPerPage"], 0);
    assert_eq!(get(&h, "/Users?count=1000").await.body["itemsPerPage"], 10);
    let far = get(&h, "/Users?startIndex=99999999999999999999999").await;
    assert_eq!((far.status, &far.body["Resources"]), (200, &json!([])));
    let bad = get(&h, "/Users?count=abc").await;
    assert_eq!((bad.status, scim_type(&bad)), (400, Some("invalidValue")));
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_user_shows_its_groups_and_version() {
    let h = Harness::start(Directory::generate(4, 1)).await;
    let user = get(&h, "/Users/u-000002").await;
    assert_eq!(
        user.body,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "u-000002",
            "userName": "user000002@acme.example",
            "active": true,
            "groups": [{"value": "g-all", "display": "Everyone"},
                       {"value": "g-eng", "display": "Engineering"}],
            "meta": {"resourceType": "User", "version": "W/\"1\""}
        })
    );
    assert_eq!(user.headers["etag"], "W/\"1\"");
    assert_eq!(user.headers["content-type"], "application/scim+json");
    let groups_only = get(&h, "/Users/u-000003?attributes=groups").await;
    assert_eq!(
        groups_only.body,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u-000003",
               "groups": [{"value": "g-all", "display": "Everyone"}]})
    );
    let url = format!("{}/Users/u-000002", h.server.scim_base_url());
    let current = h
        .request(Method::GET, url)
        .bearer_auth(TOKEN)
        .header("If-None-Match", "W/\"1\"");
    assert_eq!(send(current).await.status, 304);
    for missing in ["/Users/u-nope", "/Users/%FF", "/Users/u-000002%2Fx"] {
        let answer = get(&h, missing).await;
        assert_eq!(
            (answer.status, scim_type(&answer)),
            (404, None),
            "{missing}"
        );
        assert_eq!(answer.body["status"], "404");
    }
    h.server.shutdown().await;
}

#[tokio::test]
async fn the_service_describes_itself() {
    let h = Harness::start(Directory::default()).await;
    let config = get(&h, "/ServiceProviderConfig").await;
    assert_eq!(config.status, 200);
    assert_eq!(
        (
            &config.body["patch"],
            &config.body["etag"],
            &config.body["filter"]
        ),
        (
            &json!({"supported": true}),
            &json!({"supported": true}),
            &json!({"supported": true, "maxResults": 100})
        )
    );
    let create = call(&h, Method::POST, "/Users", Some(json!({})), None).await;
    assert_eq!(
        (create.status, &create.body["status"]),
        (501, &json!("501"))
    );
    assert_eq!(get(&h, "/Nothing").await.status, 404);
    h.server.shutdown().await;
}
