//! The web console over HTTP: sign-in, sessions and their cookies, the
//! form token on every form, the roles on every action, and the headers of
//! every page. The browser tests (`browser.rs`) drive the same pages in
//! Chromium.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use crate::helpers::{Harness, Options, Serve, directory, users_csv};

pub(crate) fn options(extra: &str) -> Options {
    Options {
        extra_config: format!(
            "[http]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"OFFBOARD_IT_API_TOKEN\"\n{extra}"
        ),
        ..Options::default()
    }
}

/// A form's fields as `application/x-www-form-urlencoded`.
pub(crate) fn urlencoded(form: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    form.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A browser without a browser: follows no redirect, keeps its cookies.
pub(crate) struct Visitor {
    client: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Visitor {
    pub(crate) fn new(serve: &Serve) -> Self {
        Visitor {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: serve.url.clone(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, res: &reqwest::Response) {
        for v in res.headers().get_all(SET_COOKIE) {
            let text = v.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (k, val) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !val.is_empty() && !text.contains("Max-Age=0") {
                self.cookies.push((k.to_owned(), val.to_owned()));
            }
        }
    }

    pub(crate) async fn get(
        &mut self,
        path: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&res);
        let (status, headers) = (res.status(), res.headers().clone());
        (status, headers, res.text().await.unwrap())
    }

    pub(crate) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(urlencoded(form))
            .send()
            .await
            .unwrap();
        self.keep(&res);
        let status = res.status();
        let location = res
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        (status, location.unwrap_or(res.text().await.unwrap()))
    }

    /// The value of the first hidden `csrf` field on a page.
    pub(crate) fn csrf(page: &str) -> String {
        let at = page.find("name=\"csrf\" value=\"").expect("a form token") + 19;
        page[at..].split('"').next().unwrap().to_owned()
    }

    /// Signs in with `token`; the session's form token.
    pub(crate) async fn sign_in(&mut self, token: &str) -> String {
        let (_, _, page) = self.get("/sign-in").await;
        let csrf = Self::csrf(&page);
        let (status, location) = self
            .post("/sign-in", &[("csrf", &csrf), ("token", token)])
            .await;
        assert_eq!(status, 303, "{location}");
        assert_eq!(location, "/batches");
        let (_, _, page) = self.get("/batches").await;
        Self::csrf(&page)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_headers_cookies_and_form_tokens() {
    let h = Harness::start_with(directory(), options("[safety]\nmax_batch_requests = 2\n")).await;
    let viewer = h.token("vic", "viewer").await;
    let operator = h.token("olga", "operator").await;
    let serve = h.serve(&["--no-workers"]).await;
    let mut v = Visitor::new(&serve);

    // Without a session every page sends the browser to sign in.
    for path in ["/", "/batches", "/upload", "/schedules", "/batches/x"] {
        let (status, headers, _) = v.get(path).await;
        assert_eq!(status, 303, "{path}");
        let to = headers[LOCATION].to_str().unwrap();
        assert!(to == "/sign-in" || to == "/batches", "{path}: {to}");
    }
    let (status, headers, page) = v.get("/sign-in").await;
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        !page.contains("<script>") && !page.contains("style=\""),
        "no inline script or style"
    );
    assert!(page.contains("<label for=\"token\">Token</label>"));
    let signin_cookie = headers[SET_COOKIE].to_str().unwrap();
    assert!(signin_cookie.contains("HttpOnly") && signin_cookie.contains("SameSite=Strict"));
    assert!(!signin_cookie.contains("Secure"), "plain http: no Secure");

    // A wrong token is refused; a form without its token too.
    let csrf = Visitor::csrf(&page);
    let (status, _) = v
        .post("/sign-in", &[("csrf", &csrf), ("token", "obt_nope")])
        .await;
    assert_eq!(status, 401);
    let (status, _) = v
        .post("/sign-in", &[("csrf", "forged"), ("token", &viewer)])
        .await;
    assert_eq!(status, 403);

    let csrf = v.sign_in(&viewer).await;
    let session = v
        .cookies
        .iter()
        .find(|(k, _)| k == "ob_session")
        .cloned()
        .unwrap();
    assert_eq!(session.1.len(), 64);
    for path in [
        "/batches",
        "/schedules",
        "/static/console.css",
        "/static/console.js",
    ] {
        let (status, headers, _) = v.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(headers.contains_key("content-security-policy"), "{path}");
    }
    let (status, _, _) = v.get("/upload").await;
    assert_eq!(status, 403, "a viewer does not upload");

    // A batch over the cap, uploaded over the API.
    let batch = serve.upload_csv(users_csv(2, 4)).await;
    let id = batch["batch_id"].as_str().unwrap().to_owned();
    let (status, _, page) = v.get(&format!("/batches/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("Download report (CSV)"));
    assert!(
        !page.contains(">Approve<"),
        "a viewer sees no Approve button"
    );
    assert!(!page.contains("Cancel batch"), "nor Cancel batch");
    for suffix in ["progress", "report.csv", "report.json"] {
        let (status, _, _) = v.get(&format!("/batches/{id}/{suffix}")).await;
        assert_eq!(status, 200, "{suffix}");
    }
    // A forged approval from the viewer's own session is refused by role;
    // one without the form token by the token.
    let (status, _) = v
        .post(
            &format!("/batches/{id}/approve"),
            &[("csrf", &csrf), ("scope", "all")],
        )
        .await;
    assert_eq!(status, 403);
    let mut o = Visitor::new(&serve);
    let ocsrf = o.sign_in(&operator).await;
    let (status, _) = o.post(&format!("/batches/{id}/cancel"), &[]).await;
    assert_eq!(status, 403, "no form token");
    let (status, _) = o
        .post(&format!("/batches/{id}/cancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 403, "another session's form token");
    let (status, to) = o
        .post(&format!("/batches/{id}/cancel"), &[("csrf", &ocsrf)])
        .await;
    assert_eq!(status, 303, "{to}");
    let (_, _, page) = o.get(&format!("/batches/{id}")).await;
    assert!(page.contains("cancelled"), "{page}");
    assert!(page.contains("olga"), "the actor is on the page");

    // Behind TLS the session cookie is Secure; signing out ends it.
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/sign-in", serve.url))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(
        res.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Secure")
    );
    let (status, to) = v.post("/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!((status.as_u16(), to.as_str()), (303, "/sign-in"));
    v.cookies.push(session);
    let (status, _, _) = v.get("/batches").await;
    assert_eq!(status, 303, "the old session is gone");
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_ends_its_console_session() {
    let h = Harness::start_with(directory(), options("")).await;
    let viewer = h.token("vic", "viewer").await;
    let serve = h.serve(&["--no-workers"]).await;
    let mut v = Visitor::new(&serve);
    v.sign_in(&viewer).await;
    assert_eq!(v.get("/batches").await.0, 200);
    let out = h.offboard(&["tokens", "revoke", "vic"], &[]).await;
    assert!(out.status.success());
    assert_eq!(v.get("/batches").await.0, 303);
    serve.stop().await;
}

/// A form is small: a large body to any console form is refused before it
/// is read (only the upload takes a file), signed in or not. And `Approve`
/// with people ticked is refused rather than approving everyone: the
/// approver meant `Approve selected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_are_bounded_and_approve_all_with_people_ticked_is_refused() {
    let h = Harness::start_with(directory(), options("[safety]\nmax_batch_requests = 2\n")).await;
    let approver = h.token("ann", "approver").await;
    let serve = h.serve(&["--no-workers"]).await;
    let batch = serve.upload_csv(users_csv(2, 4)).await;
    let id = batch["batch_id"].as_str().unwrap().to_owned();

    let huge = "x".repeat(1024 * 1024);
    for path in [format!("/batches/{id}/approve"), "/sign-in".to_owned()] {
        let res = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(format!("{}{path}", serve.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf=x&scope=all&pad={huge}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 413, "{path}");
    }

    let mut a = Visitor::new(&serve);
    let csrf = a.sign_in(&approver).await;
    let (status, body) = a
        .post(
            &format!("/batches/{id}/approve"),
            &[("csrf", &csrf), ("scope", "all"), ("only", "usr_000002")],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("Approve selected"), "{body}");
    let (_, _, page) = a.get(&format!("/batches/{id}")).await;
    assert!(page.contains("halted"), "nothing was approved: {page}");
    serve.stop().await;
}
