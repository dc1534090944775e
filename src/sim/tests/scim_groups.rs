//! SCIM groups: finding a user's groups, and PATCH in the filtered and list
//! forms, for providers with and without value filters or group filters,
//! with malformed messages, atomicity and `If-Match`.

use reqwest::Method;
use serde_json::{Value, json};

use super::scim::{call, get, ids, patch_op, scim_type};
use super::{Answer, Harness};
use crate::sim::Directory;

fn remove_filtered(user: &str) -> Value {
    json!({"op": "remove", "path": format!("members[value eq \"{user}\"]")})
}

fn remove_listed(users: &[&str]) -> Value {
    let values: Vec<Value> = users.iter().map(|u| json!({"value": u})).collect();
    json!({"op": "remove", "path": "members", "value": values})
}

async fn patch_group(h: &Harness, ops: Value, if_match: Option<&str>) -> Answer {
    call(
        h,
        Method::PATCH,
        "/Groups/g-eng",
        Some(patch_op(ops)),
        if_match,
    )
    .await
}

fn members(h: &Harness) -> Vec<String> {
    h.server.state().scim.groups[1].members.clone()
}

#[tokio::test]
async fn groups_are_found_by_member() {
    let h = Harness::start(Directory::generate(4, 1)).await;
    let of_two = get(
        &h,
        "/Groups?filter=members%5Bvalue%20eq%20%22u-000002%22%5D&attributes=id,displayName",
    )
    .await;
    assert_eq!(of_two.body["totalResults"], 2);
    assert_eq!(
        of_two.body["Resources"][1],
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
               "id": "g-eng", "displayName": "Engineering"})
    );
    let of_three = get(&h, "/Groups?filter=members.value%20eq%20%22u-000003%22").await;
    assert_eq!(ids(&of_three), ["g-all"]);
    let of_nobody = get(&h, "/Groups?filter=members%5Bvalue%20eq%20%22u-nope%22%5D").await;
    assert_eq!(of_nobody.body["totalResults"], 0);
    let by_name = get(&h, "/Groups?filter=displayName%20eq%20%22engineering%22").await;
    assert_eq!(ids(&by_name), ["g-eng"]);
    let all = get(&h, "/Groups?startIndex=2").await;
    assert_eq!(
        (ids(&all), &all.body["totalResults"]),
        (vec!["g-eng"], &json!(2))
    );

    let group = get(&h, "/Groups/g-eng").await;
    assert_eq!(
        group.body["members"],
        json!([{"value": "u-000002", "display": "user000002@acme.example"},
               {"value": "u-000004", "display": "user000004@acme.example"}])
    );
    assert_eq!(
        group.body["meta"],
        json!({"resourceType": "Group", "version": "W/\"1\""})
    );
    assert_eq!(group.headers["etag"], "W/\"1\"");
    assert_eq!(get(&h, "/Groups/g-nope").await.status, 404);
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_filtered_removal_is_no_target_the_second_time() {
    let h = Harness::start(Directory::generate(6, 1)).await;
    let removed = patch_group(&h, json!([remove_filtered("u-000002")]), None).await;
    assert_eq!(
        (removed.status, removed.headers["etag"].to_str().unwrap()),
        (204, "W/\"2\"")
    );
    assert_eq!(members(&h), ["u-000004", "u-000006"]);
    let again = patch_group(&h, json!([remove_filtered("u-000002")]), None).await;
    assert_eq!((again.status, scim_type(&again)), (400, Some("noTarget")));
    assert_eq!(again.body["status"], "400");
    let stranger = patch_group(&h, json!([remove_filtered("u-nope")]), None).await;
    assert_eq!(scim_type(&stranger), Some("noTarget"));
    let unknown = call(
        &h,
        Method::PATCH,
        "/Groups/g-nope",
        Some(patch_op(json!([remove_filtered("u-000002")]))),
        None,
    )
    .await;
    assert_eq!((unknown.status, scim_type(&unknown)), (404, None));
    h.server.shutdown().await;
}

#[tokio::test]
async fn the_list_form_is_idempotent() {
    let h = Harness::start(Directory::generate(6, 1)).await;
    for _ in 0..2 {
        let answer = patch_group(&h, json!([remove_listed(&["u-000002", "u-nope"])]), None).await;
        assert_eq!(
            (answer.status, answer.headers["etag"].to_str().unwrap()),
            (204, "W/\"2\"")
        );
    }
    assert_eq!(members(&h), ["u-000004", "u-000006"]);
    let added = patch_group(
        &h,
        json!([{"op": "add", "path": "members", "value": [{"value": "u-000001"}]}]),
        None,
    )
    .await;
    assert_eq!(added.status, 204);
    assert_eq!(members(&h), ["u-000001", "u-000004", "u-000006"]);
    let unknown = patch_group(
        &h,
        json!([{"op": "add", "path": "members", "value": [{"value": "u-nope"}]}]),
        None,
    )
    .await;
    assert_eq!(scim_type(&unknown), Some("invalidValue"));
    h.server.shutdown().await;
}

#[tokio::test]
async fn without_value_filters_only_the_list_form_works() {
    let mut dir = Directory::generate(6, 1);
    dir.scim.behaviour.patch_value_filter_supported = false;
    let h = Harness::start(dir).await;
    let filtered = patch_group(&h, json!([remove_filtered("u-000002")]), None).await;
    assert_eq!(
        (filtered.status, scim_type(&filtered)),
        (400, Some("invalidPath"))
    );
    assert_eq!(members(&h), ["u-000002", "u-000004", "u-000006"]);
    let listed = patch_group(&h, json!([remove_listed(&["u-000002"])]), None).await;
    assert_eq!(listed.status, 204);
    assert_eq!(members(&h), ["u-000004", "u-000006"]);
    h.server.shutdown().await;
}

#[tokio::test]
async fn without_group_filters_a_users_groups_come_from_the_user() {
    let mut dir = Directory::generate(6, 1);
    dir.scim.behaviour.group_filter_supported = false;
    let h = Harness::start(dir).await;
    let filtered = get(
        &h,
        "/Groups?filter=members%5Bvalue%20eq%20%22u-000002%22%5D",
    )
    .await;
    assert_eq!(
        (filtered.status, scim_type(&filtered)),
        (400, Some("invalidFilter"))
    );
    let user = get(&h, "/Users/u-000002?attributes=groups").await;
    assert_eq!(user.body["groups"].as_array().unwrap().len(), 2);
    assert_eq!(get(&h, "/Groups").await.body["totalResults"], 2);
    h.server.shutdown().await;
}

#[tokio::test]
async fn malformed_messages_are_refused_whole() {
    let h = Harness::start(Directory::generate(6, 1)).await;
    let url_path = "/Groups/g-eng";
    let cases = [
        (
            json!({"schemas": ["urn:wrong"], "Operations": [remove_filtered("u-000002")]}),
            "invalidSyntax",
        ),
        (
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}),
            "invalidSyntax",
        ),
        (patch_op(json!([])), "invalidSyntax"),
        (
            patch_op(json!([{"op": "delete", "path": "members"}])),
            "invalidSyntax",
        ),
        (
            patch_op(json!([{"op": "remove", "path": 7}])),
            "invalidSyntax",
        ),
        (patch_op(json!(["remove"])), "invalidSyntax"),
        (
            patch_op(json!([{"op": "remove", "path": "members[value eq"}])),
            "invalidPath",
        ),
        (
            patch_op(json!([{"op": "remove", "path": "emails[type eq \"work\"]"}])),
            "invalidPath",
        ),
        (patch_op(json!([{"op": "remove"}])), "noTarget"),
        (
            patch_op(json!([{"op": "remove", "path": "members", "value": "u-000002"}])),
            "invalidValue",
        ),
        // Atomic: the first operation would apply, the second cannot.
        (
            patch_op(json!([
                remove_filtered("u-000002"),
                remove_filtered("u-000001")
            ])),
            "noTarget",
        ),
    ];
    for (body, kind) in cases {
        let answer = call(&h, Method::PATCH, url_path, Some(body.clone()), None).await;
        assert_eq!(
            (answer.status, scim_type(&answer)),
            (400, Some(kind)),
            "{body}"
        );
    }
    let url = format!("{}{url_path}", h.server.scim_base_url());
    let garbage = h
        .request(Method::PATCH, url)
        .bearer_auth(super::TOKEN)
        .body("{not json");
    assert_eq!(
        scim_type(&super::send(garbage).await),
        Some("invalidSyntax")
    );
    assert_eq!(members(&h), ["u-000002", "u-000004", "u-000006"]);
    assert_eq!(get(&h, url_path).await.headers["etag"], "W/\"1\"");
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_stale_if_match_is_412() {
    let h = Harness::start(Directory::generate(6, 1)).await;
    let current = get(&h, "/Groups/g-eng").await.headers["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let first = patch_group(&h, json!([remove_filtered("u-000002")]), Some(&current)).await;
    assert_eq!(first.status, 204);
    let stale = patch_group(&h, json!([remove_filtered("u-000004")]), Some(&current)).await;
    assert_eq!(
        stale.body,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
               "status": "412", "detail": "version mismatch"})
    );
    assert_eq!(members(&h), ["u-000004", "u-000006"]);
    // A request that fails anyway fails the same way, precondition or not.
    let no_target = patch_group(&h, json!([remove_filtered("u-000002")]), Some(&current)).await;
    assert_eq!(scim_type(&no_target), Some("noTarget"));
    for tag in ["W/\"2\"", "\"3\"", "*"] {
        let answer = patch_group(&h, json!([remove_listed(&["u-000004"])]), Some(tag)).await;
        assert_eq!(answer.status, 204, "{tag}");
    }
    let user_stale = call(&h, Method::DELETE, "/Users/u-000006", None, Some("W/\"7\"")).await;
    assert_eq!((user_stale.status, scim_type(&user_stale)), (412, None));
    let patch_stale = call(
        &h,
        Method::PATCH,
        "/Users/u-000006",
        Some(patch_op(
            json!([{"op": "replace", "path": "active", "value": false}]),
        )),
        Some("W/\"7\""),
    )
    .await;
    assert_eq!(patch_stale.status, 412);
    assert_eq!(
        call(&h, Method::DELETE, "/Users/u-000006", None, Some("W/\"1\""))
            .await
            .status,
        204
    );
    h.server.shutdown().await;
}
