//! The one HTTP client every connector uses: auth header, timeouts, pacing
//! (rate limit, concurrency cap, adaptive pauses), short in-place retries of
//! transient answers, and one audit event per attempt. A connector hands it
//! a call and a function that classifies the answer; no connector retries.

mod auth;
pub mod body;
mod pacer;

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Url};

use super::{CallContext, StepError, retry};
use crate::connectors::{ResolvedProvider, RetryConfig};
use crate::domain::{AuditEvent, now_ms};
use body::{BodyError, MAX_PROVIDER_BODY, read_capped};
pub use pacer::{AUTH_FAILURES_TO_TRIP, Pacer};

/// Transient answers retried in place per call before the step gives the
/// wait back to the queue (which reschedules the request).
const INLINE_ATTEMPTS: u32 = 3;

/// One outbound call: method, path segments below the base URL (each
/// percent-encoded on its own), query and JSON body.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub segments: Vec<String>,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<serde_json::Value>,
    /// Media type of the body (default `application/json`).
    pub content_type: &'static str,
    /// Extra request headers (e.g. `If-Match`); never credentials.
    pub headers: Vec<(&'static str, String)>,
}

impl Call {
    pub fn new(method: Method, segments: &[&str]) -> Self {
        Self {
            method,
            segments: segments.iter().map(|s| (*s).to_owned()).collect(),
            query: Vec::new(),
            body: None,
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    pub fn content_type(mut self, media_type: &'static str) -> Self {
        self.content_type = media_type;
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn json(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }
}

/// A provider's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[cfg(test)]
impl Answer {
    /// An answer with no headers, for classification tests.
    pub fn for_test(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }
}

/// A connector's reading of an answer.
#[derive(Debug)]
pub enum Verdict {
    /// 2xx: the call did what it was meant to.
    Done,
    /// The thing to remove was already gone.
    AlreadyDone,
    /// Try again; `hint` is a delay the provider put in the body.
    Transient { hint: Option<Duration> },
    /// Stop: a person must act.
    NeedsAttention,
    /// Stop: this can never succeed.
    Permanent,
}

/// The verdict plus the provider's error code and message, for the audit
/// log and the report.
#[derive(Debug)]
pub struct Classified {
    pub verdict: Verdict,
    pub code: Option<String>,
    pub message: Option<String>,
}

/// Shared HTTP client for one provider connection.
pub struct ProviderClient {
    provider: String,
    http: reqwest::Client,
    base: Url,
    credentials: auth::Credentials,
    retry: RetryConfig,
    pacer: Pacer,
}

impl std::fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderClient")
            .field("provider", &self.provider)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// A provider connection whose client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build HTTP client: {0}")]
    Http(reqwest::Error),
    #[error("{0}")]
    BaseUrl(Box<dyn std::error::Error + Send + Sync>),
}

impl ProviderClient {
    pub fn new(provider: &ResolvedProvider, user_agent: &str) -> Result<Self, ClientError> {
        let cfg = &provider.config.connection;
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .pool_max_idle_per_host(64)
            // A redirect would carry x-api-key (which reqwest does not strip)
            // or a client secret to another host: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ClientError::Http)?;
        let mut base = Url::parse(&cfg.base_url).map_err(|e| ClientError::BaseUrl(e.into()))?;
        // A trailing slash would become an empty segment before ours.
        if let Ok(mut segs) = base.path_segments_mut() {
            segs.pop_if_empty();
        }
        Ok(Self {
            provider: provider.name.clone(),
            credentials: auth::Credentials::new(provider, http.clone()),
            http,
            base,
            retry: RetryConfig::default(),
            pacer: Pacer::new(cfg),
        })
    }

    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    fn url(&self, call: &Call) -> Url {
        let mut url = self.base.clone();
        let mut path = url.path().trim_end_matches('/').to_owned();
        for segment in &call.segments {
            path.push('/');
            path.push_str(&encode_segment(segment));
        }
        url.set_path(&path);
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(call.query.iter());
        }
        url
    }

    /// Sends `call`, retrying transient answers in place while the wait is
    /// short, and returns the answer once `classify` calls it final. A wait
    /// longer than `inline_wait_max_ms` is handed back as a transient error
    /// so the request is rescheduled instead of holding a worker slot.
    pub async fn send<F>(
        &self,
        cx: &CallContext,
        call: &Call,
        classify: F,
    ) -> Result<(Answer, Verdict), StepError>
    where
        F: Fn(&Answer) -> Classified,
    {
        let url = self.url(call);
        let inline_max = Duration::from_millis(self.retry.inline_wait_max_ms);
        let mut attempt = 0;
        let mut rejected: Option<HeaderValue> = None;
        loop {
            attempt += 1;
            if self.pacer.is_tripped(cx.batch_id.as_deref()) {
                return Err(self.credentials_rejected());
            }
            if let Some(wait) = self.pacer.pause_remaining().filter(|w| *w > inline_max) {
                return Err(StepError::transient(
                    "provider_paused",
                    format!(
                        "{} asked us to slow down; waiting {} s",
                        self.provider,
                        wait.as_secs()
                    ),
                    Some(wait),
                ));
            }
            if !call.method.is_safe() {
                // What earlier calls did is on record before this one.
                cx.flush_audit().await?;
            }
            let auth = self.credentials.header(rejected.as_ref()).await?;
            let sent = auth.1.clone();
            let permit = self.pacer.admit().await;
            let started = Instant::now();
            let at = now_ms();
            let outcome = self.attempt(call, &url, auth).await;
            drop(permit);
            let latency_ms = started.elapsed().as_millis() as u64;
            let (classified, answer) = match outcome {
                Ok(answer) => (classify(&answer), Some(answer)),
                Err(e) => (network_failure(&e), None),
            };
            crate::metrics::provider_call(&self.provider, answer.as_ref().map(|a| a.status));
            cx.record(AuditEvent {
                request_id: cx.request_id.clone(),
                provider: self.provider.clone(),
                method: call.method.to_string(),
                path: url.path().to_owned(),
                status: answer.as_ref().map(|a| a.status),
                error_code: classified.code.clone(),
                attempt,
                latency_ms,
                at,
            });
            let empty = HeaderMap::new();
            let headers = answer.as_ref().map_or(&empty, |a| &a.headers);
            let now = chrono::Utc::now();
            if let Some(wait) = retry::slow_down(headers, now) {
                self.pacer.pause_for(wait);
            }
            let status = answer.as_ref().map(|a| a.status);
            let code = classified.code.clone().unwrap_or_else(|| match status {
                Some(s) => format!("http_{s}"),
                None => "network_error".into(),
            });
            let message = classified.message.clone().unwrap_or_default();
            if status == Some(401) && self.credentials.renewable() && rejected.is_none() {
                // An expired or revoked token: get a fresh one, once.
                rejected = Some(sent);
                continue;
            }
            rejected = None;
            let rejected_credentials = matches!(status, Some(401 | 403))
                && matches!(classified.verdict, Verdict::Permanent);
            if rejected_credentials {
                if self.pacer.record_auth_failure(cx.batch_id.as_deref()) {
                    tracing::error!(
                        provider = %self.provider,
                        status = status.unwrap_or_default(),
                        "credentials rejected {AUTH_FAILURES_TO_TRIP} times in a row; no more calls for this batch"
                    );
                    cx.credentials_rejected(&self.provider, status.unwrap_or_default())
                        .await;
                }
            } else if status.is_some() {
                self.pacer.record_auth_ok();
            }
            match classified.verdict {
                Verdict::Done | Verdict::AlreadyDone => {
                    let answer = answer.expect("a verdict of success has an answer");
                    return Ok((answer, classified.verdict));
                }
                Verdict::NeedsAttention => return Err(StepError::needs_attention(code, message)),
                Verdict::Permanent if rejected_credentials => {
                    return Err(StepError::permanent(
                        code,
                        format!(
                            "{} rejected our credentials (HTTP {}): {message}; check the token in the variable named by providers.{}.token_env and its scopes",
                            self.provider,
                            status.unwrap_or_default(),
                            self.provider
                        ),
                    ));
                }
                Verdict::Permanent => return Err(StepError::permanent(code, message)),
                Verdict::Transient { hint } => {
                    let wait = retry::delay(&self.retry, headers, hint, attempt, now);
                    if status == Some(429) {
                        // Every worker of this process waits, not just this one.
                        self.pacer.pause_for(wait);
                    }
                    if attempt >= INLINE_ATTEMPTS.min(self.retry.max_attempts) || wait > inline_max
                    {
                        return Err(StepError::transient(code, message, Some(wait)));
                    }
                    cx.count_retry();
                    crate::metrics::retry(&self.provider);
                    tracing::info!(
                        provider = %self.provider,
                        request = cx.request_id.as_deref().unwrap_or("-"),
                        path = url.path(),
                        attempt,
                        delay_ms = wait.as_millis() as u64,
                        reason = %code,
                        "retrying provider call"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// The error of every call of a batch after the breaker tripped.
    fn credentials_rejected(&self) -> StepError {
        StepError::permanent(
            "provider_credentials_rejected",
            format!(
                "{} rejected our credentials on {AUTH_FAILURES_TO_TRIP} calls in a row, so no further calls were made for this batch; fix the token in the variable named by providers.{}.token_env (or its scopes), then run `offboard retry BATCH --outcome failed`",
                self.provider, self.provider
            ),
        )
    }

    async fn attempt(
        &self,
        call: &Call,
        url: &Url,
        auth: (&'static str, HeaderValue),
    ) -> Result<Answer, BodyError> {
        let mut request = self
            .http
            .request(call.method.clone(), url.clone())
            .header(auth.0, auth.1);
        for (name, value) in &call.headers {
            request = request.header(*name, value.as_str());
        }
        if let Some(body) = &call.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, call.content_type)
                .body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = read_capped(response, MAX_PROVIDER_BODY).await?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// Everything but RFC 3986's unreserved characters is percent-encoded, so
/// `auth0|abc` travels as `auth0%7Cabc` and no id can add a segment, a
/// query or a fragment (ids are also checked at intake).
pub fn encode_segment(segment: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let encoded = utf8_percent_encode(segment, SEGMENT).to_string();
    match encoded.as_str() {
        // Dot segments would be resolved away by the URL parser.
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        _ => encoded,
    }
}

/// No answer at all: timeouts, refused and reset connections are transient
/// (every step is a guarded read or an idempotent removal). The message
/// names the kind of failure, never the URL's secrets (there are none in it).
/// An answer past the size cap is no answer we will ever read: permanent.
fn network_failure(e: &BodyError) -> Classified {
    let e = match e {
        BodyError::Broken(e) => e,
        BodyError::TooLarge(cap) => {
            return Classified {
                verdict: Verdict::Permanent,
                code: Some("response_too_large".into()),
                message: Some(format!("the provider's answer is larger than {cap} bytes")),
            };
        }
    };
    let (code, message) = if e.is_timeout() {
        ("network_timeout", "the provider did not answer in time")
    } else if e.is_connect() {
        ("network_connect", "cannot connect to the provider")
    } else {
        ("network_error", "the connection to the provider failed")
    };
    Classified {
        verdict: Verdict::Transient { hint: None },
        code: Some(code.into()),
        message: Some(message.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::encode_segment;

    #[test]
    fn segments_cannot_escape_their_place() {
        assert_eq!(encode_segment("auth0|abc"), "auth0%7Cabc");
        assert_eq!(encode_segment("a/b?c#d%e f"), "a%2Fb%3Fc%23d%25e%20f");
        assert_eq!(encode_segment(".."), "%2E%2E");
        assert_eq!(encode_segment("usr_1-a.b~"), "usr_1-a.b~");
    }
}
