//! Auth0 users: the organizations a user belongs to, and blocking.

use reqwest::Method;
use serde_json::json;

use super::Harness;
use super::auth0::{call, code, directory};

#[tokio::test]
async fn a_users_organizations_and_blocking() {
    let h = Harness::start(directory()).await;
    let orgs = call(&h, Method::GET, "/users/auth0%7Calice/organizations", None).await;
    assert_eq!(
        orgs.body,
        json!([{"id": "org_acme", "name": "acme", "display_name": "Acme"},
               {"id": "org_beta", "name": "beta"}])
    );
    let path = "/users/auth0%7Calice/organizations?include_totals=true&per_page=1";
    let totals = call(&h, Method::GET, path, None).await;
    assert_eq!(
        (
            &totals.body["total"],
            &totals.body["limit"],
            &totals.body["start"]
        ),
        (&json!(2), &json!(1), &json!(0))
    );
    assert_eq!(totals.body["organizations"][0]["id"], "org_acme");
    let carol = call(&h, Method::GET, "/users/auth0%7Ccarol/organizations", None).await;
    assert_eq!((carol.status, &carol.body), (200, &json!([])));
    let nobody = call(&h, Method::GET, "/users/auth0%7Cnobody/organizations", None).await;
    assert_eq!((nobody.status, code(&nobody)), (404, "inexistent_user"));

    let blocked = call(
        &h,
        Method::PATCH,
        "/users/auth0%7Cbob",
        Some(json!({"blocked": true})),
    )
    .await;
    assert_eq!(
        (blocked.status, &blocked.body),
        (
            200,
            &json!({"user_id": "auth0|bob", "email": "bob@acme.example",
                    "name": "Bob", "blocked": true})
        )
    );
    assert!(h.server.state().auth0.users[1].blocked);
    for body in [json!({}), json!({"blocked": "yes"}), json!([true])] {
        let answer = call(&h, Method::PATCH, "/users/auth0%7Cbob", Some(body)).await;
        assert_eq!((answer.status, code(&answer)), (400, "invalid_body"));
    }
    let unknown = call(
        &h,
        Method::PATCH,
        "/users/auth0%7Cnobody",
        Some(json!({"blocked": true})),
    )
    .await;
    assert_eq!((unknown.status, code(&unknown)), (404, "inexistent_user"));
    let wrong_method = call(&h, Method::PUT, "/users/auth0%7Cbob", None).await;
    assert_eq!(wrong_method.status, 405);
    let read = call(&h, Method::GET, "/users/auth0%7Cbob", None).await;
    assert_eq!((read.status, &read.body["blocked"]), (200, &json!(true)));
    h.server.shutdown().await;
}

#[tokio::test]
async fn ending_a_users_sessions_and_refresh_tokens() {
    let mut dir = directory();
    for u in &mut dir.auth0.users {
        (u.sessions, u.refresh_tokens) = (2, 3);
    }
    let h = Harness::start(dir).await;
    for tail in ["sessions", "refresh-tokens"] {
        let ended = call(
            &h,
            Method::DELETE,
            &format!("/users/auth0%7Cbob/{tail}"),
            None,
        )
        .await;
        assert_eq!(ended.status, 202, "{tail}");
        let nobody = call(
            &h,
            Method::DELETE,
            &format!("/users/auth0%7Cnobody/{tail}"),
            None,
        )
        .await;
        assert_eq!((nobody.status, code(&nobody)), (404, "inexistent_user"));
    }
    let state = h.server.state();
    let bob = &state.auth0.users[1];
    assert_eq!((bob.sessions, bob.refresh_tokens), (0, 0));
    assert_eq!(state.auth0.users[0].sessions, 2, "alice keeps hers");
    h.server.shutdown().await;

    let faults = crate::sim::FaultConfig {
        auth0_missing_scopes: vec!["delete:refresh_tokens".into()],
        ..Default::default()
    };
    let h = Harness::with_faults(directory(), faults).await;
    let sessions = call(&h, Method::DELETE, "/users/auth0%7Cbob/sessions", None).await;
    assert_eq!(sessions.status, 202);
    let tokens = call(
        &h,
        Method::DELETE,
        "/users/auth0%7Cbob/refresh-tokens",
        None,
    )
    .await;
    assert_eq!((tokens.status, code(&tokens)), (403, "insufficient_scope"));
    assert!(
        tokens.text.contains("delete:refresh_tokens"),
        "{}",
        tokens.text
    );
    h.server.shutdown().await;
}
