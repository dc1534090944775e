//! SCIM user writes: deactivation by PATCH (in the forms clients send) and
//! deletion, after which the id is gone everywhere.

use reqwest::Method;
use serde_json::json;

use super::Harness;
use super::scim::{call, get, patch_op, scim_type};
use crate::sim::Directory;

#[tokio::test]
async fn deactivation_and_deletion() {
    let h = Harness::start(Directory::generate(4, 1)).await;
    let replace = json!([{"op": "replace", "path": "active", "value": false}]);
    let off = call(
        &h,
        Method::PATCH,
        "/Users/u-000002",
        Some(patch_op(replace.clone())),
        None,
    )
    .await;
    assert_eq!((off.status, &off.body["active"]), (200, &json!(false)));
    assert_eq!(
        (
            off.headers["etag"].to_str().unwrap(),
            &off.body["meta"]["version"]
        ),
        ("W/\"2\"", &json!("W/\"2\""))
    );
    for value in [
        json!({"op": "replace", "value": {"active": false}}),
        json!({"op": "Replace", "path": "active", "value": "False"}),
    ] {
        let answer = call(
            &h,
            Method::PATCH,
            "/Users/u-000003",
            Some(patch_op(json!([value]))),
            None,
        )
        .await;
        assert_eq!(
            (answer.status, &answer.body["active"]),
            (200, &json!(false))
        );
    }
    assert_eq!(
        get(&h, "/Users/u-000003").await.body["meta"]["version"],
        "W/\"2\""
    );
    let bad = call(
        &h,
        Method::PATCH,
        "/Users/u-000004",
        Some(patch_op(
            json!([{"op": "replace", "path": "active", "value": 0}]),
        )),
        None,
    )
    .await;
    assert_eq!((bad.status, scim_type(&bad)), (400, Some("invalidValue")));
    let other = call(
        &h,
        Method::PATCH,
        "/Users/u-000004",
        Some(patch_op(
            json!([{"op": "replace", "path": "userName", "value": "x"}]),
        )),
        None,
    )
    .await;
    assert_eq!(
        (other.status, scim_type(&other)),
        (400, Some("invalidPath"))
    );

    let deleted = call(&h, Method::DELETE, "/Users/u-000002", None, None).await;
    assert_eq!((deleted.status, deleted.text.as_str()), (204, ""));
    assert_eq!(get(&h, "/Users/u-000002").await.status, 404);
    assert_eq!(
        call(
            &h,
            Method::PATCH,
            "/Users/u-000002",
            Some(patch_op(replace)),
            None
        )
        .await
        .status,
        404
    );
    assert_eq!(
        call(&h, Method::DELETE, "/Users/u-000002", None, None)
            .await
            .status,
        404
    );
    let by_name = get(
        &h,
        "/Users?filter=userName%20eq%20%22user000002@acme.example%22",
    )
    .await;
    assert_eq!(by_name.body["totalResults"], 0);
    assert_eq!(get(&h, "/Users").await.body["totalResults"], 3);
    let eng = get(&h, "/Groups/g-eng").await;
    assert_eq!(
        (
            eng.body["members"].as_array().unwrap().len(),
            eng.headers["etag"].to_str().unwrap()
        ),
        (1, "W/\"2\"")
    );
    let state = h.server.state();
    assert!(state.scim.users.iter().all(|u| u.id != "u-000002"));
    assert_eq!(
        state.scim.groups[0].members,
        ["u-000001", "u-000003", "u-000004"]
    );
    h.server.shutdown().await;
}
