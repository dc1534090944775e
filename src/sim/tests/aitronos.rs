//! The Aitronos endpoints' documented answers.

use chrono::DateTime;
use reqwest::Method;
use serde_json::json;

use super::{Harness, TOKEN, member, resource, small_directory};

#[tokio::test]
async fn removing_a_role_twice_answers_assignment_not_found() {
    let h = Harness::start(small_directory()).await;
    let path = "/organizations/org_acme/roles/role_custom_1/members/usr_alice";
    assert_eq!(h.delete(path).await.status, 204);
    let again = h.delete(path).await;
    assert_eq!(
        (again.status, again.code()),
        (404, "ROLE_ASSIGNMENT_NOT_FOUND")
    );
    let state = h.server.state();
    assert_eq!(member(&state, "usr_alice").role_ids, ["role_member"]);

    let unknown_role = h
        .delete("/organizations/org_acme/roles/role_nope/members/usr_alice")
        .await;
    assert_eq!(
        (unknown_role.status, unknown_role.code()),
        (404, "ROLE_NOT_FOUND")
    );
    let stranger = h
        .delete("/organizations/org_acme/roles/role_member/members/usr_nobody")
        .await;
    assert_eq!(stranger.code(), "ROLE_ASSIGNMENT_NOT_FOUND");
    let deleted = h
        .delete("/organizations/org_acme/roles/role_member/members/usr_gone")
        .await;
    assert_eq!(deleted.code(), "ROLE_ASSIGNMENT_NOT_FOUND");
    let unknown_org = h
        .delete("/organizations/org_nope/roles/role_member/members/usr_alice")
        .await;
    assert_eq!(
        (unknown_org.status, unknown_org.code()),
        (404, "ORGANIZATION_NOT_FOUND")
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn the_last_owner_cannot_be_removed() {
    let h = Harness::start(small_directory()).await;
    let before = h.server.state();
    let by_role = h
        .delete("/organizations/org_acme/roles/role_owner/members/usr_owner")
        .await;
    assert_eq!(
        (by_role.status, by_role.code()),
        (422, "LAST_OWNER_CANNOT_BE_REMOVED")
    );
    let by_user = h.remove_user("usr_owner", Some("dept_offboarded")).await;
    assert_eq!(
        (by_user.status, by_user.code()),
        (422, "LAST_OWNER_CANNOT_BE_REMOVED")
    );
    assert_eq!(h.server.state(), before);
    h.server.shutdown().await;

    // With a second owner, either can go, but not both.
    let mut dir = small_directory();
    let org = &mut dir.aitronos.organizations[0];
    let bob = org
        .members
        .iter_mut()
        .find(|m| m.user_id == "usr_bob")
        .unwrap();
    bob.role_ids.push("role_owner".into());
    let h = Harness::start(dir).await;
    assert_eq!(h.remove_user("usr_owner", None).await.status, 204);
    let last = h
        .delete("/organizations/org_acme/roles/role_owner/members/usr_bob")
        .await;
    assert_eq!(last.code(), "LAST_OWNER_CANNOT_BE_REMOVED");
    h.server.shutdown().await;
}

#[tokio::test]
async fn removing_a_user_transfers_resources_and_soft_deletes() {
    let h = Harness::start(small_directory()).await;
    assert_eq!(
        h.remove_user("usr_alice", Some("dept_offboarded"))
            .await
            .status,
        204
    );

    let state = h.server.state();
    let alice = member(&state, "usr_alice");
    assert_eq!(alice.account_state, "deleted");
    assert!(alice.deleted_at.is_some());
    assert!(alice.role_ids.is_empty() && alice.department_ids.is_empty());
    for id in ["res_alice_1", "res_alice_2"] {
        let res = resource(&state, id);
        assert_eq!(res.owner_user_id, None);
        assert_eq!(res.department_id.as_deref(), Some("dept_offboarded"));
    }
    assert_eq!(
        resource(&state, "res_bob_1").owner_user_id.as_deref(),
        Some("usr_bob")
    );

    let record = h.get("/organizations/org_acme/users/usr_alice").await;
    assert_eq!(
        (record.status, &record.body["account_state"]),
        (200, &json!("deleted"))
    );
    let perms = h
        .get("/organizations/org_acme/users/usr_alice/effective-permissions")
        .await;
    assert_eq!((perms.status, perms.code()), (404, "MEMBER_NOT_FOUND"));
    let again = h.remove_user("usr_alice", Some("dept_offboarded")).await;
    assert_eq!((again.status, again.code()), (404, "MEMBER_NOT_FOUND"));
    let never = h.remove_user("usr_nobody", None).await;
    assert_eq!((never.status, never.code()), (404, "USER_NOT_FOUND"));
    let role = h.get("/organizations/org_acme/roles/role_custom_1").await;
    assert_eq!(role.body["member_count"], 0);

    // Without a department the resources stay where they are.
    assert_eq!(h.remove_user("usr_bob", None).await.status, 204);
    let state = h.server.state();
    assert_eq!(
        resource(&state, "res_bob_1").owner_user_id.as_deref(),
        Some("usr_bob")
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn removal_needs_confirmation_and_a_known_department() {
    let h = Harness::start(small_directory()).await;
    let before = h.server.state();
    let path = "/organizations/org_acme/users/usr_alice";
    for body in [
        None,
        Some(json!({"confirm": false})),
        Some(json!({"confirm": "yes"})),
        Some(json!([1])),
    ] {
        let answer = h.call(Method::DELETE, path, body).await;
        assert_eq!(
            (answer.status, answer.code()),
            (422, "CONFIRMATION_REQUIRED")
        );
    }
    let url = format!("{}{path}", h.server.aitronos_base_url());
    let garbage = h
        .http
        .delete(url)
        .header("X-API-Key", TOKEN)
        .body("{not json")
        .send()
        .await;
    let garbage = super::read(garbage.unwrap()).await;
    assert_eq!(garbage.code(), "CONFIRMATION_REQUIRED");
    let dept = h.remove_user("usr_alice", Some("dept_nope")).await;
    assert_eq!((dept.status, dept.code()), (404, "DEPARTMENT_NOT_FOUND"));
    assert_eq!(h.server.state(), before);
    h.server.shutdown().await;
}

#[tokio::test]
async fn only_unused_custom_roles_can_be_deleted() {
    let h = Harness::start(small_directory()).await;
    let system = h.delete("/organizations/org_acme/roles/role_member").await;
    assert_eq!(
        (system.status, system.code()),
        (403, "SYSTEM_ROLE_IMMUTABLE")
    );
    let in_use = h
        .delete("/organizations/org_acme/roles/role_custom_1")
        .await;
    assert_eq!((in_use.status, in_use.code()), (409, "ROLE_HAS_MEMBERS"));
    assert_eq!(
        h.delete("/organizations/org_acme/roles/role_custom_empty")
            .await
            .status,
        204
    );
    let gone = h
        .delete("/organizations/org_acme/roles/role_custom_empty")
        .await;
    assert_eq!((gone.status, gone.code()), (404, "ROLE_NOT_FOUND"));

    let role = h.get("/organizations/org_acme/roles/role_custom_1").await;
    assert_eq!(
        role.body,
        json!({"id": "role_custom_1", "name": "Reviewers", "is_custom": true,
               "is_system_role": false, "member_count": 1})
    );
    assert_eq!(
        h.delete("/organizations/org_acme/roles/role_custom_1/members/usr_alice")
            .await
            .status,
        204
    );
    assert_eq!(
        h.delete("/organizations/org_acme/roles/role_custom_1")
            .await
            .status,
        204
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn effective_permissions_describe_the_member() {
    let h = Harness::start(small_directory()).await;
    let perms = h
        .get("/organizations/org_acme/users/usr_alice/effective-permissions")
        .await;
    assert_eq!(perms.status, 200);
    assert_eq!(perms.body["user_id"], "usr_alice");
    assert_eq!(
        perms.body["role_ids"],
        json!(["role_member", "role_custom_1"])
    );
    assert_eq!(perms.body["department_scope"], json!(["dept_sales"]));
    let caps = perms.body["capabilities"].as_array().unwrap();
    assert!(
        caps.contains(&json!("resources:read")) && caps.contains(&json!("custom:role_custom_1"))
    );
    assert!(DateTime::parse_from_rfc3339(perms.body["resolved_at"].as_str().unwrap()).is_ok());
    let nobody = h
        .get("/organizations/org_acme/users/usr_nobody/effective-permissions")
        .await;
    assert_eq!(nobody.code(), "USER_NOT_FOUND");
    h.server.shutdown().await;
}
