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
