//! Webhooks: the event's JSON, POSTed with `Offboard-Event-Id` and
//! `Offboard-Signature`; any 2xx is delivered.

use secrecy::SecretString;

use super::{NotifyError, sign};

/// POSTs `body` to `url`, signed with `secret` at `now` (unix seconds).
pub async fn send(
    http: &reqwest::Client,
    url: &reqwest::Url,
    secret: &SecretString,
    event_id: &str,
    body: &str,
    now: i64,
) -> Result<(), NotifyError> {
    let response = http
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Offboard-Event-Id", event_id)
        .header(
            "Offboard-Signature",
            sign::signature(secret, now, body.as_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
        .map_err(|e| NotifyError::from_http(&e))?;
    answered(response.status())
}

/// A 2xx is delivered; anything else is tried again.
pub(super) fn answered(status: reqwest::StatusCode) -> Result<(), NotifyError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(NotifyError::Status(status.as_u16()))
    }
}
