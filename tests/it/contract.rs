//! The Auth0 connector against Auth0's own OpenAPI document (issue 36):
//! every call an offboarding with `block_user` and `revoke_sessions`, and
//! then its undo, sends — and the simulator's answer to it — must be an
//! operation of `tests/specs/auth0-management-offboarding.oas.json` (the
//! shared subset extended with the reverse operations, taken from
//! `auth0/docs-v2`; see `tests/specs/README.md`), with a body its request
//! schema accepts, query parameters it declares, and a status it lists.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use offboard::sim::Directory;
use serde_json::Value;

use crate::helpers::{Harness, Options, TOKEN_ENV, loopback};

const SPEC: &str = include_str!("../specs/auth0-management-offboarding.oas.json");

/// One call as it crossed the wire.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Below the API's base path, still percent-encoded.
    path: String,
    query: Vec<String>,
    body: Option<Value>,
    status: u16,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    http: reqwest::Client,
}

/// Passes every call on to the simulator and records it with its answer.
async fn forward(State(p): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let mut out = p.http.request(
        parts.method.clone(),
        format!(
            "{}{path}{}",
            p.upstream,
            query
                .as_deref()
                .map(|q| format!("?{q}"))
                .unwrap_or_default()
        ),
    );
    for name in ["authorization", "content-type"] {
        if let Some(v) = parts.headers.get(name) {
            out = out.header(name, v);
        }
    }
    let answer = out.body(body.to_vec()).send().await.unwrap();
    let status = answer.status().as_u16();
    let mut headers = HeaderMap::new();
    if let Some(v) = answer.headers().get("content-type") {
        headers.insert("content-type", v.clone());
    }
    let bytes = answer.bytes().await.unwrap();
    p.seen.lock().unwrap().push(Seen {
        method: parts.method.as_str().to_ascii_lowercase(),
        path,
        query: query
            .iter()
            .flat_map(|q| q.split('&'))
            .filter_map(|kv| kv.split('=').next().map(str::to_owned))
            .collect(),
        body: (!body.is_empty()).then(|| serde_json::from_slice(&body).unwrap()),
        status,
    });
    (StatusCode::from_u16(status).unwrap(), headers, bytes).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_and_undo_speak_auth0_s_documented_api() {
    let (listener, proxy_url) = loopback().await;
    let extra = format!(
        "[providers.a0]\nkind = \"auth0\"\nbase_url = \"{proxy_url}\"\ntoken_env = \"{TOKEN_ENV}\"\nallow_insecure_http = true\nblock_user = true\nrevoke_sessions = true\n"
    );
    let h = Harness::start_with(
        Directory::generate(6, 5),
        Options {
            extra_config: extra,
            ..Options::default()
        },
    )
    .await;
    let proxy = Proxy {
        upstream: h.sim.auth0_base_url(),
        seen: Arc::default(),
        http: reqwest::Client::new(),
    };
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let csv =
        "provider,user_id,organization_id\na0,auth0|000002,org_acme\na0,auth0|000003,org_acme\n";
    let path = h.write_csv("leavers.csv", csv);
    let (code, batch, out) = h.run(&path).await;
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = h.offboard(&["undo", &batch], &[]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let spec: Value = serde_json::from_str(SPEC).unwrap();
    // The checker itself refuses what the document does.
    let assign = serde_json::json!({"$ref": "#/components/schemas/AssignOrganizationMemberRolesRequestContent"});
    assert!(validate(&spec, &assign, &serde_json::json!({"roles": []})).is_err());
    assert!(
        validate(
            &spec,
            &assign,
            &serde_json::json!({"roles": ["rol_a"], "x": 1})
        )
        .is_err()
    );
    assert!(validate(&spec, &assign, &serde_json::json!({"roles": ["rol_a"]})).is_ok());
    let seen = proxy.seen.lock().unwrap().clone();
    for call in &seen {
        check(&spec, call);
    }
    // The reverse operations were all exercised, each answered as
    // documented.
    for (method, op) in [
        ("post", "/organizations/{id}/members"),
        ("post", "/organizations/{id}/members/{user_id}/roles"),
        ("patch", "/users/{id}"),
        ("delete", "/users/{user_id}/sessions"),
        ("delete", "/users/{user_id}/refresh-tokens"),
    ] {
        assert!(
            seen.iter()
                .any(|c| c.method == method && template_of(&spec, &c.path) == Some(op)),
            "no {method} {op} among {seen:#?}"
        );
    }
    let unblocked = seen
        .iter()
        .any(|c| c.method == "patch" && c.body == Some(serde_json::json!({"blocked": false})));
    assert!(unblocked, "the undo unblocks whom the batch blocked");
}

/// The document's path template that `path` (below the base) matches.
fn template_of<'a>(spec: &'a Value, path: &str) -> Option<&'a str> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    spec["paths"].as_object().unwrap().keys().find_map(|t| {
        let parts: Vec<&str> = t.trim_start_matches('/').split('/').collect();
        let fits = parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(p, s)| (p.starts_with('{') && p.ends_with('}')) || p == s);
        fits.then_some(t.as_str())
    })
}

fn check(spec: &Value, call: &Seen) {
    let what = format!("{} {}", call.method, call.path);
    let template = template_of(spec, &call.path).unwrap_or_else(|| panic!("{what}: no such path"));
    let op = &spec["paths"][template][&call.method];
    assert!(op.is_object(), "{what}: {template} has no {}", call.method);
    let declared: Vec<&str> = op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    for q in &call.query {
        assert!(
            declared.contains(&q.as_str()),
            "{what}: query {q} is not documented"
        );
    }
    match (&op["requestBody"], &call.body) {
        (Value::Null, None) => {}
        (Value::Null, Some(b)) => panic!("{what}: sends a body the operation has none of: {b}"),
        (rb, Some(body)) => {
            let schema = &rb["content"]["application/json"]["schema"];
            if let Err(e) = validate(spec, schema, body) {
                panic!("{what}: body {body} does not fit the schema: {e}");
            }
        }
        (rb, None) => assert!(rb["required"] != true, "{what}: the body is required"),
    }
    let status = call.status.to_string();
    assert!(
        op["responses"].get(&status).is_some(),
        "{what}: answered {status}, which the operation does not list"
    );
}

/// The JSON Schema keywords the document's request bodies use.
fn validate(spec: &Value, schema: &Value, v: &Value) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return validate(spec, &spec["components"]["schemas"][name], v);
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let fits = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "null" => v.is_null(),
            _ => false,
        });
        if !fits {
            return Err(format!("{v} is not {types:?}"));
        }
    }
    if let Some(obj) = v.as_object() {
        for r in schema["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap();
            if !obj.contains_key(r) {
                return Err(format!("{r} is required"));
            }
        }
        let props = schema["properties"].as_object();
        for (k, item) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(spec, s, item)?,
                None if schema["additionalProperties"] == false => {
                    return Err(format!("{k} is not allowed"));
                }
                None => {}
            }
        }
    }
    if let Some(items) = v.as_array() {
        let len = items.len() as u64;
        if schema["minItems"].as_u64().is_some_and(|m| len < m) {
            return Err(format!("fewer than {} items", schema["minItems"]));
        }
        if schema["maxItems"].as_u64().is_some_and(|m| len > m) {
            return Err(format!("more than {} items", schema["maxItems"]));
        }
        for item in items {
            validate(spec, &schema["items"], item)?;
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|m| len < m)
            || schema["maxLength"].as_u64().is_some_and(|m| len > m)
        {
            return Err(format!("{s:?} has a length outside the schema's"));
        }
    }
    Ok(())
}
