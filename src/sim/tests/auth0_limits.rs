//! Auth0's rate-limit headers on every answer, and faults dressed as Auth0's
//! own errors.

use chrono::Utc;
use reqwest::Method;
use serde_json::json;

use super::auth0::{call, code};
use super::{Answer, Harness};
use crate::sim::{Directory, FailNext, FaultConfig, RateLimit, RetryHint};

fn header(answer: &Answer, name: &str) -> i64 {
    answer.headers[name].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn every_answer_carries_the_rate_limit_headers() {
    let h = Harness::start(Directory::generate(3, 1)).await;
    let answer = call(&h, Method::GET, "/users/auth0%7C000001/organizations", None).await;
    let now = Utc::now().timestamp();
    assert_eq!(
        (
            header(&answer, "x-ratelimit-limit"),
            header(&answer, "x-ratelimit-remaining")
        ),
        (1000, 999)
    );
    assert!((now..=now + 2).contains(&header(&answer, "x-ratelimit-reset")));
    h.server.shutdown().await;

    let faults = FaultConfig {
        rate_limit: Some(RateLimit {
            requests_per_second: 0.01,
            burst: 2,
            ..RateLimit::default()
        }),
        ..FaultConfig::default()
    };
    let h = Harness::with_faults(Directory::generate(3, 1), faults).await;
    let path = "/users/auth0%7C000001/organizations";
    let first = call(&h, Method::GET, path, None).await;
    assert_eq!(
        (
            header(&first, "x-ratelimit-limit"),
            header(&first, "x-ratelimit-remaining")
        ),
        (2, 1)
    );
    let second = call(&h, Method::GET, "/nothing/here", None).await;
    assert_eq!(
        (second.status, header(&second, "x-ratelimit-remaining")),
        (404, 0)
    );
    let limited = call(&h, Method::GET, path, None).await;
    assert_eq!(limited.status, 429);
    assert_eq!(
        (&limited.body["statusCode"], code(&limited)),
        (&json!(429), "too_many_requests")
    );
    assert!(!limited.headers.contains_key("retry-after"));
    assert_eq!(header(&limited, "x-ratelimit-remaining"), 0);
    // At 0.01 tokens a second the next one is about 100 s away.
    let now = Utc::now().timestamp();
    let reset = header(&limited, "x-ratelimit-reset");
    assert!((now + 90..=now + 101).contains(&reset), "{reset} vs {now}");
    h.server.shutdown().await;
}

#[tokio::test]
async fn scripted_faults_speak_auth0_and_match_encoded_ids() {
    let faults = FaultConfig {
        fail_next: vec![
            FailNext {
                user_id: "auth0|000002".into(),
                count: 1,
                status: 503,
                ..FailNext::default()
            },
            FailNext {
                user_id: "auth0|000002".into(),
                count: 1,
                status: 429,
                retry_after_secs: Some(30),
                retry_hint: RetryHint::Seconds,
            },
        ],
        ..FaultConfig::default()
    };
    let h = Harness::with_faults(Directory::generate(3, 1), faults).await;
    let path = "/organizations/org_acme/members/auth0%7C000002/roles";
    let unavailable = call(&h, Method::GET, path, None).await;
    assert_eq!(
        unavailable.body,
        json!({"statusCode": 503, "error": "Service Unavailable",
               "message": "Service Unavailable", "errorCode": "service_unavailable"})
    );
    assert!(unavailable.headers.contains_key("x-ratelimit-reset"));
    let limited = call(&h, Method::GET, path, None).await;
    assert_eq!((limited.status, code(&limited)), (429, "too_many_requests"));
    assert!(!limited.headers.contains_key("retry-after"));
    assert_eq!(header(&limited, "x-ratelimit-remaining"), 0);
    let now = Utc::now().timestamp();
    assert!((now + 29..=now + 31).contains(&header(&limited, "x-ratelimit-reset")));
    assert_eq!(call(&h, Method::GET, path, None).await.status, 200);
    h.server.shutdown().await;
}
