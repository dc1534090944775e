//! Tests of the simulator against a real server on 127.0.0.1:0, driven with
//! reqwest as a client would drive it.

mod aitronos;
mod auth0;
mod auth0_limits;
mod auth0_members;
mod auth0_users;
mod directory;
mod edges;
mod faults;
mod inspect;
mod listing;
mod recoup;
mod scim;
mod scim_groups;
mod scim_users;

use reqwest::Method;
use serde_json::{Value, json};

use super::{Directory, FaultConfig, SimConfig, SimServer};

pub(super) const TOKEN: &str = "test-token";
pub(super) const USER_AGENT: &str = "offboard/0.1.0 sim-test";

/// A running simulator and a client that authenticates with the API key.
pub(super) struct Harness {
    pub server: SimServer,
    pub http: reqwest::Client,
}

/// One answer, read whole.
#[derive(Debug)]
pub(super) struct Answer {
    pub status: u16,
    /// The body as JSON; `Null` when empty (or, from [`read_any`], not JSON).
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
    /// The body as text.
    pub text: String,
}

impl Answer {
    /// The Aitronos error code, if the body is the error envelope.
    pub(super) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Harness {
    pub(super) async fn start(directory: Directory) -> Harness {
        Harness::with_faults(directory, FaultConfig::default()).await
    }

    pub(super) async fn with_faults(directory: Directory, faults: FaultConfig) -> Harness {
        let config = SimConfig {
            token: TOKEN.to_owned(),
            seed: 7,
            faults,
            directory,
        };
        let server = SimServer::start("127.0.0.1:0".parse().unwrap(), config)
            .await
            .expect("simulator starts");
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .build()
            .unwrap();
        Harness { server, http }
    }

    /// A call to an Aitronos path (relative to the base URL), with the API key.
    pub(super) async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let url = format!("{}{path}", self.server.aitronos_base_url());
        let mut request = self.http.request(method, url).header("X-API-Key", TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("the simulator answers")).await
    }

    pub(super) async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    pub(super) async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, None).await
    }

    /// `DELETE /organizations/org_acme/users/{user}` with the confirmation body.
    pub(super) async fn remove_user(&self, user: &str, department: Option<&str>) -> Answer {
        let mut body = json!({"confirm": true});
        if let Some(dept) = department {
            body["transfer_resources_to_department_id"] = json!(dept);
        }
        let path = format!("/organizations/org_acme/users/{user}");
        self.call(Method::DELETE, &path, Some(body)).await
    }

    /// A request to any URL on the simulator, for a provider's own helpers.
    pub(super) fn request(&self, method: Method, url: String) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }

    /// A call to one of the simulator's own routes.
    pub(super) async fn sim(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.server.url()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("the simulator answers")).await
    }
}

/// Read an answer whose body must be JSON (or empty).
pub(super) async fn read(response: reqwest::Response) -> Answer {
    let answer = read_any(response).await;
    assert!(
        answer.text.is_empty() || !answer.body.is_null(),
        "a JSON body: {}",
        answer.text
    );
    answer
}

/// Read an answer whatever its body.
pub(super) async fn read_any(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("a whole body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        body,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Send a request and read the answer, JSON or not.
pub(super) async fn send(request: reqwest::RequestBuilder) -> Answer {
    read_any(request.send().await.expect("the simulator answers")).await
}

/// A small organization with one owner, a custom role in use and one unused,
/// a soft-deleted member, and resources to transfer.
pub(super) fn small_directory() -> Directory {
    Directory::from_json_str(
        r#"{"aitronos": {"organizations": [{
          "id": "org_acme", "name": "Acme",
          "departments": [{"id": "dept_offboarded", "name": "Offboarded"},
                          {"id": "dept_sales", "name": "Sales"}],
          "roles": [
            {"id": "role_owner", "name": "Owner", "is_custom": false, "is_system_role": true},
            {"id": "role_admin", "name": "Admin", "is_custom": false, "is_system_role": true},
            {"id": "role_member", "name": "Member", "is_custom": false, "is_system_role": true},
            {"id": "role_custom_1", "name": "Reviewers", "is_custom": true, "is_system_role": false},
            {"id": "role_custom_empty", "name": "Unused", "is_custom": true, "is_system_role": false}],
          "members": [
            {"user_id": "usr_owner", "email": "owner@acme.example", "account_state": "active",
             "role_ids": ["role_owner", "role_member"], "department_ids": [], "deleted_at": null},
            {"user_id": "usr_alice", "email": "alice@acme.example", "account_state": "active",
             "role_ids": ["role_member", "role_custom_1"], "department_ids": ["dept_sales"]},
            {"user_id": "usr_bob", "email": "bob@acme.example", "account_state": "active",
             "role_ids": ["role_admin", "role_member"]},
            {"user_id": "usr_gone", "email": "gone@acme.example", "account_state": "deleted",
             "deleted_at": "2026-01-15T10:30:00Z"}],
          "resources": [
            {"id": "res_alice_1", "kind": "file", "owner_user_id": "usr_alice", "department_id": null},
            {"id": "res_alice_2", "kind": "assistant", "owner_user_id": "usr_alice"},
            {"id": "res_bob_1", "kind": "file", "owner_user_id": "usr_bob"}]
        }]}}"#,
    )
    .expect("the test directory is valid")
}

/// A member of `org_acme` in a directory snapshot.
pub(super) fn member<'a>(dir: &'a Directory, user: &str) -> &'a super::AitronosMember {
    dir.aitronos.organizations[0]
        .members
        .iter()
        .find(|m| m.user_id == user)
        .expect("member exists")
}

/// A resource of `org_acme` in a directory snapshot.
pub(super) fn resource<'a>(dir: &'a Directory, id: &str) -> &'a super::AitronosResource {
    dir.aitronos.organizations[0]
        .resources
        .iter()
        .find(|r| r.id == id)
        .expect("resource exists")
}
