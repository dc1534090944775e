//! The directory's generator and seed-file loader.

use crate::sim::{Directory, SimError};

#[test]
fn generate_builds_the_documented_shape() {
    let dir = Directory::generate(1000, 42);
    assert_eq!(dir, Directory::generate(1000, 42));
    assert_ne!(dir, Directory::generate(1000, 43));
    dir.validate().expect("a generated directory is valid");

    let org = &dir.aitronos.organizations[0];
    assert_eq!((org.id.as_str(), org.name.as_str()), ("org_acme", "Acme"));
    let depts: Vec<_> = org.departments.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(depts, ["dept_offboarded", "dept_engineering"]);
    let roles: Vec<_> = org
        .roles
        .iter()
        .map(|r| (r.id.as_str(), r.is_system_role))
        .collect();
    assert_eq!(
        roles,
        [
            ("role_owner", true),
            ("role_admin", true),
            ("role_member", true),
            ("role_custom_1", false),
            ("role_custom_2", false),
            ("role_custom_3", false)
        ]
    );
    assert_eq!(org.members.len(), 1001);
    assert_eq!(org.members[0].user_id, "usr_000001");
    assert_eq!(org.members[999].user_id, "usr_001000");
    assert_eq!(org.members[999].email, "user001000@acme.example");
    assert!(org.members.iter().all(|m| m.account_state == "active"));

    let holds = |m: &crate::sim::AitronosMember, role: &str| m.role_ids.iter().any(|r| r == role);
    let owners: Vec<_> = org
        .members
        .iter()
        .filter(|m| holds(m, "role_owner"))
        .collect();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].user_id, "usr_000001");
    let users = &org.members[..1000];
    assert!(users.iter().all(|m| holds(m, "role_member")));
    let extra = users
        .iter()
        .filter(|m| m.role_ids.len() > 1 + usize::from(holds(m, "role_owner")));
    let extra = extra.count();
    assert!(
        (250..=420).contains(&extra),
        "{extra} users with a second role"
    );

    let breakglass = &org.members[1000];
    assert_eq!(breakglass.user_id, "usr_breakglass");
    assert_eq!(breakglass.role_ids, ["role_admin"]);
    assert_eq!(org.resources.len(), 2002);
    assert_eq!(org.resources[0].id, "res_usr_000001_1");
    assert_eq!(
        org.resources[0].owner_user_id.as_deref(),
        Some("usr_000001")
    );
}

#[test]
fn seed_files_load_and_bad_ones_are_refused() {
    let sample = r#"{"aitronos": {"organizations": [{
      "id": "org_acme", "name": "Acme",
      "departments": [{"id": "dept_offboarded", "name": "Offboarded"}],
      "roles": [{"id": "role_owner", "name": "Owner", "is_custom": false, "is_system_role": true}],
      "members": [{"user_id": "usr_1", "email": "a@acme.example", "account_state": "active",
                   "role_ids": ["role_owner"], "department_ids": [], "deleted_at": null}],
      "resources": [{"id": "res_1", "kind": "file", "owner_user_id": "usr_1", "department_id": null}]
    }]}}"#;
    let dir = Directory::from_json_str(sample).expect("the documented sample loads");
    let round_trip = serde_json::to_string(&dir).unwrap();
    assert_eq!(Directory::from_json_str(&round_trip).unwrap(), dir);
    assert_eq!(
        Directory::from_json_str("{}").unwrap(),
        Directory::default()
    );

    let duplicate = sample.replace(r#""members": ["#, r#""members": [{"user_id": "usr_1"},"#);
    assert!(matches!(
        Directory::from_json_str(&duplicate),
        Err(SimError::InvalidDirectory(_))
    ));
    let dangling = sample.replace(r#"["role_owner"]"#, r#"["role_nope"]"#);
    assert!(matches!(
        Directory::from_json_str(&dangling),
        Err(SimError::InvalidDirectory(_))
    ));
    assert!(matches!(
        Directory::from_json_str("[1, 2"),
        Err(SimError::Json(_))
    ));
}

#[test]
fn generate_fills_every_provider_with_computable_ids() {
    let dir = Directory::generate(10, 42);
    assert_eq!(dir, Directory::generate(10, 42));

    let auth0 = &dir.auth0;
    assert_eq!(auth0.users.len(), 11);
    assert_eq!(auth0.users[1].user_id, "auth0|000002");
    assert_eq!(auth0.users[1].email, "user000002@acme.example");
    assert_eq!(auth0.users[10].user_id, "auth0|breakglass");
    let org = &auth0.organizations[0];
    assert_eq!(org.id, "org_acme");
    assert_eq!(org.members.len(), 11);
    let owners: Vec<_> = org
        .members
        .iter()
        .filter(|m| m.roles.iter().any(|r| r == "rol_owner"))
        .map(|m| m.user_id.as_str())
        .collect();
    assert_eq!(owners, ["auth0|000001"]);
    let ordinary = ["rol_member", "rol_admin", "rol_billing"];
    for member in &org.members[1..10] {
        assert!((1..=2).contains(&member.roles.len()), "{member:?}");
        assert!(member.roles.iter().all(|r| ordinary.contains(&r.as_str())));
    }
    assert_eq!(org.members[10].user_id, "auth0|breakglass");

    let recoup = &dir.recoup;
    let caller = "00000000-0000-4000-9000-999999999999";
    assert_eq!(recoup.caller_account_id, caller);
    let org = &recoup.organizations[0];
    assert_eq!(org.id, "00000000-0000-4000-8000-000000000001");
    assert_eq!(
        org.member_account_ids[1],
        "00000000-0000-4000-9000-000000000002"
    );
    assert_eq!(org.member_account_ids.len(), 11);
    assert_eq!(org.member_account_ids[10], caller);

    let scim = &dir.scim;
    assert_eq!(scim.users[1].id, "u-000002");
    assert_eq!(scim.users[1].user_name, "user000002@acme.example");
    assert!(scim.users.iter().all(|u| u.active && u.version == 1));
    let groups: Vec<_> = scim
        .groups
        .iter()
        .map(|g| (g.id.as_str(), g.members.len()))
        .collect();
    assert_eq!(groups, [("g-all", 10), ("g-eng", 5)]);
    assert_eq!(scim.groups[1].members[0], "u-000002");
    assert_eq!(scim.behaviour, crate::sim::ScimBehaviour::default());
    assert!(scim.behaviour.group_filter_supported && scim.behaviour.patch_value_filter_supported);
}

#[test]
fn the_new_providers_are_validated() {
    let refused = |json: &str| {
        assert!(
            matches!(
                Directory::from_json_str(json),
                Err(SimError::InvalidDirectory(_))
            ),
            "{json}"
        );
    };
    refused(r#"{"auth0": {"organizations": [{"id": "o", "members": [{"user_id": "ghost"}]}]}}"#);
    refused(
        r#"{"auth0": {"users": [{"user_id": "u"}],
            "organizations": [{"id": "o", "members": [{"user_id": "u", "roles": ["rol_x"]}]}]}}"#,
    );
    refused(r#"{"auth0": {"users": [{"user_id": "u"}, {"user_id": "u"}]}}"#);
    refused(r#"{"recoup": {"caller_account_id": "not-a-uuid", "organizations": [{"id": "x"}]}}"#);
    refused(
        r#"{"recoup": {"caller_account_id": "00000000-0000-4000-9000-000000000001",
            "organizations": [{"id": "00000000-0000-4000-8000-000000000001",
            "member_account_ids": ["00000000-0000-4000-9000-00000000000a",
                                   "00000000-0000-4000-9000-00000000000A"]}]}}"#,
    );
    refused(
        r#"{"scim": {"users": [{"id": "a", "userName": "X@y"}, {"id": "b", "userName": "x@Y"}]}}"#,
    );
    refused(r#"{"scim": {"users": [{"id": "a"}], "groups": [{"id": "g", "members": ["b"]}]}}"#);

    let old = r#"{"aitronos": {"organizations": []}}"#;
    let dir = Directory::from_json_str(old).expect("a seed from before the new providers loads");
    assert_eq!(dir, Directory::default());
    let lenient = r#"{"scim": {"behaviour": {"require_if_match": true}}}"#;
    let behaviour = Directory::from_json_str(lenient).unwrap().scim.behaviour;
    assert!(behaviour.group_filter_supported && behaviour.require_if_match);
}

#[tokio::test]
async fn the_served_state_is_the_seeded_directory() {
    let dir = Directory::generate(30, 9);
    let h = super::Harness::start(dir.clone()).await;
    assert_eq!(h.server.state(), dir);
    let over_http = h.sim(reqwest::Method::GET, "/_sim/state", None).await;
    assert_eq!(
        serde_json::from_value::<Directory>(over_http.body).unwrap(),
        dir
    );
    h.server.shutdown().await;
}
