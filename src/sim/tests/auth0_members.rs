//! Auth0 organization members: listing by checkpoint and by offset, and
//! membership removal with its eventual consistency.

use chrono::{TimeDelta, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use super::Harness;
use super::auth0::{call, code};
use crate::sim::{Directory, FaultConfig};

fn user_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn members_page_by_checkpoint_and_by_offset() {
    let h = Harness::start(Directory::generate(250, 1)).await;
    let base = "/organizations/org_acme/members";
    let mut seen = Vec::new();
    let mut path = format!("{base}?take=100");
    loop {
        let page = call(&h, Method::GET, &path, None).await;
        assert_eq!(page.status, 200);
        seen.extend(user_ids(&page.body["members"]));
        let Some(next) = page.body["next"].as_str() else {
            break;
        };
        path = format!("{base}?from={next}&take=100");
    }
    assert_eq!(seen.len(), 251);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        (seen[0].as_str(), seen[250].as_str()),
        ("auth0|000001", "auth0|breakglass")
    );

    let first = call(&h, Method::GET, base, None).await;
    assert_eq!(user_ids(&first.body).len(), 50);
    assert_eq!(
        first.body[1],
        json!({"user_id": "auth0|000002", "email": "user000002@acme.example", "name": "User 000002"})
    );
    let totals = call(
        &h,
        Method::GET,
        &format!("{base}?page=2&per_page=100&include_totals=true"),
        None,
    )
    .await;
    assert_eq!(
        (&totals.body["total"], &totals.body["start"]),
        (&json!(251), &json!(200))
    );
    assert_eq!(user_ids(&totals.body["members"]).len(), 51);

    let deep = call(
        &h,
        Method::GET,
        &format!("{base}?page=10&per_page=100"),
        None,
    )
    .await;
    assert_eq!((deep.status, code(&deep)), (400, "invalid_paging"));
    let last = call(
        &h,
        Method::GET,
        &format!("{base}?page=9&per_page=100"),
        None,
    )
    .await;
    assert_eq!((last.status, &last.body), (200, &json!([])));
    for bad in ["take=0", "take=101", "from=zz&take=5", "from=ff"] {
        let answer = call(&h, Method::GET, &format!("{base}?{bad}"), None).await;
        assert_eq!(
            (answer.status, code(&answer)),
            (400, "invalid_query_string"),
            "{bad}"
        );
    }
    let unknown = call(
        &h,
        Method::GET,
        "/organizations/org_nope/members?take=5",
        None,
    )
    .await;
    assert_eq!(code(&unknown), "inexistent_organization");
    h.server.shutdown().await;
}

#[tokio::test]
async fn without_a_delay_a_removal_is_visible_at_once() {
    let h = Harness::start(Directory::generate(5, 1)).await;
    let body = json!({"members": ["auth0|000002", "auth0|nobody"]});
    let removed = call(
        &h,
        Method::DELETE,
        "/organizations/org_acme/members",
        Some(body),
    )
    .await;
    assert_eq!(removed.status, 204);
    let roles = call(
        &h,
        Method::GET,
        "/organizations/org_acme/members/auth0%7C000002/roles",
        None,
    )
    .await;
    assert_eq!((roles.status, code(&roles)), (404, "inexistent_user"));
    let orgs = call(&h, Method::GET, "/users/auth0%7C000002/organizations", None).await;
    assert_eq!((orgs.status, &orgs.body), (200, &json!([])));
    let state = h.server.state();
    let members = &state.auth0.organizations[0].members;
    assert!(members.iter().all(|m| m.user_id != "auth0|000002"));
    assert_eq!(members.len(), 5);

    let again = json!({"members": ["auth0|000002"]});
    assert_eq!(
        call(
            &h,
            Method::DELETE,
            "/organizations/org_acme/members",
            Some(again)
        )
        .await
        .status,
        204
    );
    let eleven: Vec<String> = (1..=11).map(|n| format!("auth0|{n:06}")).collect();
    for body in [
        json!({"members": []}),
        json!({"members": eleven}),
        json!({"users": ["x"]}),
        json!(null),
    ] {
        let answer = call(
            &h,
            Method::DELETE,
            "/organizations/org_acme/members",
            Some(body),
        )
        .await;
        assert_eq!((answer.status, code(&answer)), (400, "invalid_body"));
    }
    h.server.shutdown().await;
}

#[tokio::test]
async fn with_a_delay_reads_see_the_member_until_it_passes() {
    let faults = FaultConfig {
        auth0_membership_delay_ms: 86_400_000,
        ..FaultConfig::default()
    };
    let h = Harness::with_faults(Directory::generate(5, 1), faults).await;
    let body = json!({"members": ["auth0|000002"]});
    assert_eq!(
        call(
            &h,
            Method::DELETE,
            "/organizations/org_acme/members",
            Some(body.clone())
        )
        .await
        .status,
        204
    );
    let roles = call(
        &h,
        Method::GET,
        "/organizations/org_acme/members/auth0%7C000002/roles",
        None,
    )
    .await;
    assert_eq!(roles.status, 200);
    let orgs = call(&h, Method::GET, "/users/auth0%7C000002/organizations", None).await;
    assert_eq!(orgs.body[0]["id"], "org_acme");
    let listed = call(&h, Method::GET, "/organizations/org_acme/members", None).await;
    assert!(user_ids(&listed.body).contains(&"auth0|000002".to_owned()));

    // The removal is recorded with the instant it becomes visible: one
    // delay after the call, which a repeated removal does not push back.
    assert_eq!(
        call(
            &h,
            Method::DELETE,
            "/organizations/org_acme/members",
            Some(body)
        )
        .await
        .status,
        204
    );
    let call_log = h.server.calls();
    let state = h.server.state();
    let member = &state.auth0.organizations[0].members[1];
    assert_eq!(member.user_id, "auth0|000002");
    let at = member.removal_visible_at.expect("the removal is pending");
    let day = TimeDelta::days(1);
    assert!(call_log[0].started_at + day <= at && at <= call_log[0].ended_at + day);
    h.server.shutdown().await;

    // A removal whose instant has passed is gone from every read.
    let mut dir = Directory::generate(5, 1);
    dir.auth0.organizations[0].members[1].removal_visible_at =
        Some(Utc::now() - TimeDelta::seconds(1));
    let h = Harness::start(dir).await;
    let roles = call(
        &h,
        Method::GET,
        "/organizations/org_acme/members/auth0%7C000002/roles",
        None,
    )
    .await;
    assert_eq!(roles.status, 404);
    let listed = call(&h, Method::GET, "/organizations/org_acme/members", None).await;
    assert!(!user_ids(&listed.body).contains(&"auth0|000002".to_owned()));
    assert_eq!(h.server.state().auth0.organizations[0].members.len(), 5);
    h.server.shutdown().await;
}

/// Undo's calls: members added back (a removed one without the roles it
/// had), and roles assigned; unknown users and roles are a 400.
#[tokio::test]
async fn members_and_their_roles_are_added_back() {
    use super::auth0::directory;
    let h = Harness::start(directory()).await;
    let removed = call(
        &h,
        Method::DELETE,
        "/organizations/org_acme/members",
        Some(json!({"members": ["auth0|bob"]})),
    )
    .await;
    assert_eq!(removed.status, 204);
    for user in ["auth0|bob", "auth0|carol"] {
        let added = call(
            &h,
            Method::POST,
            "/organizations/org_acme/members",
            Some(json!({"members": [user]})),
        )
        .await;
        assert_eq!(added.status, 204, "{user}");
    }
    let roles = call(
        &h,
        Method::GET,
        "/organizations/org_acme/members/auth0%7Cbob/roles",
        None,
    )
    .await;
    assert_eq!(
        roles.body,
        json!([]),
        "a membership comes back without its roles"
    );
    let assigned = call(
        &h,
        Method::POST,
        "/organizations/org_acme/members/auth0%7Cbob/roles",
        Some(json!({"roles": ["rol_member", "rol_admin"]})),
    )
    .await;
    assert_eq!(assigned.status, 204);
    let again = call(
        &h,
        Method::POST,
        "/organizations/org_acme/members/auth0%7Cbob/roles",
        Some(json!({"roles": ["rol_member"]})),
    )
    .await;
    assert_eq!(again.status, 204, "assigning a held role changes nothing");
    let org = &h.server.state().auth0.organizations[0];
    let bob = org
        .members
        .iter()
        .find(|m| m.user_id == "auth0|bob")
        .unwrap();
    assert_eq!(bob.roles, ["rol_member", "rol_admin"]);
    assert!(org.members.iter().any(|m| m.user_id == "auth0|carol"));
    let stranger = call(
        &h,
        Method::POST,
        "/organizations/org_acme/members",
        Some(json!({"members": ["auth0|nobody"]})),
    )
    .await;
    assert_eq!((stranger.status, code(&stranger)), (400, "invalid_body"));
    let unknown_role = call(
        &h,
        Method::POST,
        "/organizations/org_acme/members/auth0%7Cbob/roles",
        Some(json!({"roles": ["rol_nope"]})),
    )
    .await;
    assert_eq!(
        (unknown_role.status, code(&unknown_role)),
        (400, "invalid_body")
    );
    h.server.shutdown().await;
}
