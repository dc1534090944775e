//! Paging of role members and organization members.

use reqwest::Method;
use serde_json::{Value, json};

use super::Harness;
use crate::sim::Directory;

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn role_members_page_in_user_id_order() {
    let h = Harness::start(Directory::generate(250, 3)).await;
    let base = "/organizations/org_acme/roles/role_member/members";
    let mut seen = Vec::new();
    for skip in [0, 100, 200] {
        let page = h.get(&format!("{base}?skip={skip}&limit=100")).await;
        assert_eq!((page.status, &page.body["total"]), (200, &json!(250)));
        seen.extend(ids(&page.body["members"]));
    }
    assert_eq!(seen.len(), 250);
    assert_eq!(seen[0], "usr_000001");
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let first = h.get(base).await;
    assert_eq!(first.body["members"].as_array().unwrap().len(), 50);
    assert_eq!(first.body["members"][0]["account_state"], "active");
    assert_eq!(first.body["members"][0]["email"], "user000001@acme.example");

    for bad in ["limit=0", "limit=101", "limit=abc", "skip=-1"] {
        let answer = h.get(&format!("{base}?{bad}")).await;
        assert_eq!(
            (answer.status, answer.code()),
            (422, "VALIDATION_ERROR"),
            "{bad}"
        );
    }
    let role = h.get("/organizations/org_acme/roles/role_member").await;
    assert_eq!(role.body["member_count"], 250);
    let unknown = h
        .get("/organizations/org_acme/roles/role_nope/members")
        .await;
    assert_eq!(unknown.code(), "ROLE_NOT_FOUND");
    h.server.shutdown().await;
}

#[tokio::test]
async fn organization_members_page_and_hide_inactive() {
    let h = Harness::start(Directory::generate(120, 3)).await;
    let list = |skip: u64, take: u64, inactive: bool| {
        let body = json!({"skip": skip, "take": take, "include_inactive": inactive});
        h.call(Method::POST, "/organizations/org_acme/users", Some(body))
    };
    let page = list(100, 100, false).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body["total_users_count"], 121);
    assert_eq!(
        (&page.body["skip"], &page.body["take"]),
        (&json!(100), &json!(100))
    );
    let users = ids(&page.body["users"]);
    assert_eq!(users.len(), 21);
    assert_eq!(users.last().unwrap(), "usr_breakglass");

    assert_eq!(h.remove_user("usr_000005", None).await.status, 204);
    let active = list(0, 1000, false).await;
    assert_eq!(active.body["total_users_count"], 120);
    assert!(!ids(&active.body["users"]).contains(&"usr_000005".to_owned()));
    let all = list(0, 1000, true).await;
    assert_eq!(all.body["total_users_count"], 121);
    assert_eq!(all.body["users"][4]["account_state"], "deleted");

    for take in [0, 1001] {
        let answer = list(0, take, false).await;
        assert_eq!((answer.status, answer.code()), (422, "VALIDATION_ERROR"));
    }
    let unknown = h
        .call(
            Method::POST,
            "/organizations/org_nope/users",
            Some(json!({})),
        )
        .await;
    assert_eq!(unknown.code(), "ORGANIZATION_NOT_FOUND");
    h.server.shutdown().await;
}
