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

/// Slack's limit on a message's blocks.
const BLOCKS_MAX: usize = 50;

/// The incoming-webhook payload of `message`: each line its own section,
/// so a long line (the people who need attention) is clipped alone and the
/// lines after it (the count of the rest, the console link) still show.
pub fn payload(message: &Message) -> Value {
    let mut lines = message.lines.clone();
    if lines.is_empty() {
        lines.push(message.title.clone());
    }
    // The header takes one block; the last section takes what is left over.
    let room = BLOCKS_MAX - 1;
    if lines.len() > room {
        let rest = lines.split_off(room - 1).join("\n");
        lines.push(rest);
    }
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": clip(&message.title, HEADER_MAX)},
    })];
    blocks.extend(lines.iter().map(|line| {
        json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": clip(&escape(line), SECTION_MAX)},
        })
    }));
    // `text` is what a phone's notification shows, read as mrkdwn too: a
    // file name like `<!channel>` must not ping anyone.
    json!({"text": escape(&message.title), "blocks": blocks})
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

    #[test]
    fn a_long_list_of_people_keeps_the_count_and_the_link() {
        let people: Vec<String> = (0..50)
            .map(|i| format!("person{i:02}.lastname@acme.example (LAST_OWNER_CANNOT_BE_REMOVED)"))
            .collect();
        let message = Message {
            json: Value::Null,
            title: "Batch b1 finished".into(),
            lines: vec![
                "12 succeeded, 80 needs attention".into(),
                format!("Needs attention: {}", people.join(", ")),
                "and 30 more".into(),
                "Open https://offboard.acme.example/batches/b1".into(),
            ],
            link: None,
        };
        let text = payload(&message).to_string();
        assert!(text.contains("and 30 more"), "{text}");
        assert!(text.contains("/batches/b1"), "{text}");
        let many = Message {
            lines: (0..80).map(|i| format!("line {i}")).collect(),
            ..message
        };
        let p = payload(&many);
        assert_eq!(p["blocks"].as_array().unwrap().len(), BLOCKS_MAX);
        assert!(p.to_string().contains("line 79"));
    }

    #[test]
    fn the_fallback_text_cannot_mention_the_channel() {
        let message = Message {
            json: Value::Null,
            title: "Drop folder hr: file <!channel> leavers.csv failed".into(),
            lines: Vec::new(),
            link: None,
        };
        let p = payload(&message);
        assert!(!p["text"].as_str().unwrap().contains("<!channel>"), "{p}");
        // The header is plain_text, which Slack never reads for mentions.
        assert_eq!(p["blocks"][0]["text"]["type"], "plain_text");
        assert!(!p["blocks"][1].to_string().contains("<!channel>"), "{p}");
    }
}
