//! A small W3C WebDriver client over reqwest, enough for the console's
//! browser tests: Debian's chromium driven by its chromedriver, headless,
//! on loopback only.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key W3C WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session of it.
pub(crate) struct Browser {
    driver: tokio::process::Child,
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

/// An element of the page.
#[derive(Clone)]
pub(crate) struct Element(String);

impl Browser {
    /// A headless browser, or `None` (with a SKIPPED line) where Chromium
    /// and its driver are not installed.
    pub(crate) async fn start(test: &str) -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            eprintln!("SKIPPED browser::{test}: {CHROMIUM} or {CHROMEDRIVER} is not installed");
            return None;
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        crate::helpers::eventually(30, "chromedriver to listen", || {
            let http = http.clone();
            let url = format!("{base}/status");
            async move {
                match http.get(url).send().await {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .is_ok_and(|v| v["value"]["ready"] == true),
                    Err(_) => false,
                }
            }
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,1100",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let res: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {res}"))
            .to_owned();
        Some(Browser {
            driver,
            http,
            session: format!("{base}/session/{session}"),
            _profile: profile,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let res: Value = rb.send().await.unwrap().json().await.unwrap();
        if res["value"].get("error").is_some() {
            panic!("webdriver {path}: {}", res["value"]);
        }
        res["value"].clone()
    }

    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<Value> {
        let mut rb = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let res: Value = rb.send().await.ok()?.json().await.ok()?;
        (res["value"].get("error").is_none()).then(|| res["value"].clone())
    }

    pub(crate) async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub(crate) async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(crate) async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn find_by(&self, using: &str, value: &str) -> Option<Element> {
        let v = self
            .try_call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": using, "value": value})),
            )
            .await?;
        v[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    /// The element a CSS selector finds, if any.
    pub(crate) async fn css(&self, selector: &str) -> Option<Element> {
        self.find_by("css selector", selector).await
    }

    /// The button whose accessible name is `name`, if the page has one.
    pub(crate) async fn button(&self, name: &str) -> Option<Element> {
        let e = self
            .find_by(
                "xpath",
                &format!("//button[normalize-space()='{name}' or @aria-label='{name}']"),
            )
            .await?;
        self.check_label(&e, name).await.then_some(e)
    }

    /// The link whose accessible name is `name`.
    pub(crate) async fn link(&self, name: &str) -> Option<Element> {
        let e = self
            .find_by("xpath", &format!("//a[normalize-space()='{name}']"))
            .await?;
        self.check_label(&e, name).await.then_some(e)
    }

    /// The form field labelled `label`.
    pub(crate) async fn field(&self, label: &str) -> Option<Element> {
        let e = self
            .find_by(
                "xpath",
                &format!("//*[@id=//label[normalize-space()='{label}']/@for]"),
            )
            .await?;
        self.check_label(&e, label).await.then_some(e)
    }

    /// The browser's own accessible name for `e` is `name` (false when the
    /// element left the page meanwhile).
    async fn check_label(&self, e: &Element, name: &str) -> bool {
        let Some(got) = self
            .try_call(
                reqwest::Method::GET,
                &format!("/element/{}/computedlabel", e.0),
                None,
            )
            .await
        else {
            return false;
        };
        assert_eq!(got.as_str(), Some(name), "accessible name");
        true
    }

    pub(crate) async fn click(&self, e: &Element) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/click", e.0),
            Some(json!({})),
        )
        .await;
    }

    pub(crate) async fn type_in(&self, e: &Element, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/value", e.0),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// `e`'s text, or `None` once it is no longer on the page (the page
    /// was replaced).
    pub(crate) async fn text(&self, e: &Element) -> Option<String> {
        self.try_call(
            reqwest::Method::GET,
            &format!("/element/{}/text", e.0),
            None,
        )
        .await
        .and_then(|v| v.as_str().map(str::to_owned))
    }

    pub(crate) async fn attribute(&self, e: &Element, name: &str) -> Option<String> {
        self.try_call(
            reqwest::Method::GET,
            &format!("/element/{}/attribute/{name}", e.0),
            None,
        )
        .await
        .and_then(|v| v.as_str().map(str::to_owned))
    }

    /// A cookie's value, HttpOnly ones included.
    pub(crate) async fn cookie(&self, name: &str) -> Option<String> {
        self.try_call(reqwest::Method::GET, &format!("/cookie/{name}"), None)
            .await
            .and_then(|v| v["value"].as_str().map(str::to_owned))
    }

    pub(crate) async fn delete_cookies(&self) {
        self.call(reqwest::Method::DELETE, "/cookie", None).await;
    }

    /// A PNG of the window, written to `path`.
    pub(crate) async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }

    /// Waits until `check` holds, looking every 100 ms, for `secs`.
    pub(crate) async fn until<F, Fut>(&self, secs: u64, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while !check().await {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn quit(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        let _ = self.driver.start_kill();
        let _ = self.driver.wait().await;
    }
}
