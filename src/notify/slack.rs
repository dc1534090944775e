//! Slack: an incoming webhook's payload, `text` (the notification's
//! fallback and the line a phone shows) and `blocks` (a header and a
//! section in `mrkdwn`), as Slack documents for incoming webhooks.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{Message, NotifyError};

/// Slack's limit on a section's text.
const SECTION_MAX: usize = 3000;
/// Slack's limit on a header's plain text.
const HEADER_MAX: usize = 150;

/// The incoming-webhook payload of `message`.
pub fn payload(message: &Message) -> Value {
    let mut body = message.lines.join("\n");
    if body.is_empty() {
        body = message.title.clone();
    }
    json!({
        "text": message.title,
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": clip(&message.title, HEADER_MAX)},
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": clip(&escape(&body), SECTION_MAX)},
            },
        ],
    })
}

/// POSTs the payload to the channel's secret URL.
pub async fn send(
    http: &reqwest::Client,
    url: &SecretString,
    message: &Message,
) -> Result<(), NotifyError> {
    let response = http
        .post(url.expose_secret())
        .json(&payload(message))
        .send()
        .await
        .map_err(|e| NotifyError::from_http(&e))?;
    super::webhook::answered(response.status())
}

/// Slack's three control characters in `mrkdwn`.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(max - 1).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_clipped_and_escaped() {
        let message = Message {
            json: Value::Null,
            title: "x".repeat(200),
            lines: vec!["<a&b>".into()],
            link: None,
        };
        let p = payload(&message);
        assert_eq!(
            p["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            HEADER_MAX
        );
        assert_eq!(p["blocks"][1]["text"]["text"], "&lt;a&amp;b&gt;");
        assert_eq!(p["text"].as_str().unwrap().len(), 200);
    }
}
