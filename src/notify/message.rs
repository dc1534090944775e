//! An event as one message: the JSON a webhook receives, and the title and
//! lines that Slack and email show people. One message per event, never
//! one per request: the people a finished batch left `needs_attention`
//! are listed in it, at most [`MAX_PEOPLE`], with a count of the rest.
//! Messages carry user ids and batch facts, never a token or secret.

use serde_json::{Value, json};

use crate::store::{NotifyEvent, Store, StoreError, format_ms};

/// People listed by name in one message.
pub const MAX_PEOPLE: u32 = 50;

/// What every channel is sent for one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The webhook body (`id`, `event`, `occurred_at`, `title`, `link`,
    /// `batch`, `detail`).
    pub json: Value,
    /// One line: what happened, naming the batch.
    pub title: String,
    /// Facts for people, one per line.
    pub lines: Vec<String>,
    /// Where to act: the batch's page in the console.
    pub link: Option<String>,
}

impl Message {
    /// The message of a stored event, its JSON as rendered the first time.
    pub fn from_json(json: Value) -> Message {
        let text = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_owned);
        let lines = json
            .get("lines")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Message {
            title: text("title").unwrap_or_default(),
            link: text("link"),
            lines,
            json,
        }
    }
}

/// The console's page of a batch, from `[http] public_url`.
pub fn batch_link(public_url: Option<&str>, batch_id: &str) -> Option<String> {
    public_url.map(|base| format!("{}/batches/{batch_id}", base.trim_end_matches('/')))
}

/// Renders `event` from the store's facts as they are now.
pub async fn render(
    store: &Store,
    public_url: Option<&str>,
    event: &NotifyEvent,
) -> Result<Message, StoreError> {
    let facts = &event.facts;
    let fact = |k: &str| {
        facts
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let mut lines = Vec::new();
    let mut batch_json = Value::Null;
    let mut link = None;
    if let Some(batch_id) = &event.batch_id
        && let Some(batch) = store.batch(batch_id).await?
    {
        let counts = store.batch_counts(&batch).await?;
        let state = Store::batch_state(&batch, &counts);
        let planned = counts.succeeded
            + counts.already_done
            + counts.needs_attention
            + counts.failed
            + counts.dead
            + counts.open
            + counts.scheduled
            + counts.held;
        let (attention, attention_total) = store
            .batch_people(batch_id, "needs_attention", MAX_PEOPLE)
            .await?;
        link = batch_link(public_url, batch_id);
        batch_json = json!({
            "id": batch.id,
            "source": batch.source,
            "name": batch.source_name,
            "dry_run": batch.dry_run,
            "state": state.as_str(),
            "counts": counts,
            "planned_removals": planned,
            "halt_code": batch.halt_code,
            "halt_reason": batch.halt_reason,
            "needs_attention": attention
                .iter()
                .map(|(user, code)| json!({"user_id": user, "code": code}))
                .collect::<Vec<_>>(),
            "needs_attention_more": (attention_total - attention.len() as i64).max(0),
            "link": link,
        });
        lines.push(format!(
            "{} succeeded, {} already_done, {} skipped, {} needs_attention, {} failed, {} dead, {} rejected; {} open, {} held",
            counts.succeeded,
            counts.already_done,
            counts.skipped,
            counts.needs_attention,
            counts.failed,
            counts.dead,
            counts.rejected,
            counts.open + counts.scheduled,
            counts.held
        ));
        if !attention.is_empty() {
            let names: Vec<String> = attention
                .iter()
                .map(|(u, c)| match c {
                    Some(c) => format!("{u} ({c})"),
                    None => u.clone(),
                })
                .collect();
            lines.push(format!("needs_attention: {}", names.join(", ")));
            // Its own line, so a channel that clips the list keeps the count.
            let more = attention_total - attention.len() as i64;
            if more > 0 {
                lines.push(format!("and {more} more need attention"));
            }
        }
    }
    let batch_id = event.batch_id.as_deref().unwrap_or("-");
    let title = match event.kind.as_str() {
        "batch.halted" => format!(
            "Batch {batch_id} halted ({}): it waits for an approval",
            fact("code")
        ),
        "batch.held" => format!("Batch {batch_id} is a preview waiting for review"),
        "batch.finished" => format!("Batch {batch_id} finished"),
        "reconcile.failed" => format!("Reconciliation {} could not make a plan", fact("job")),
        "dropfolder.file_failed" => {
            format!("Drop folder {}: file {} failed", fact("job"), fact("file"))
        }
        "provider.credentials_rejected" => format!(
            "Provider {} rejected our credentials (batch {batch_id})",
            fact("provider")
        ),
        _ => format!("offboard test message for channel {}", fact("channel")),
    };
    for key in ["reason", "error", "message"] {
        let value = fact(key);
        if !value.is_empty() {
            lines.push(value);
        }
    }
    if let Some(l) = &link {
        let what = match event.kind.as_str() {
            "batch.halted" => "Approve or cancel it",
            "batch.held" => "Review and release it",
            _ => "The batch",
        };
        lines.push(format!("{what}: {l}"));
    }
    let json = json!({
        "id": event.id,
        "event": event.kind,
        "occurred_at": format_ms(event.created_at),
        "title": title,
        "lines": lines,
        "link": link,
        "batch": batch_json,
        "detail": facts,
    });
    Ok(Message {
        json,
        title,
        lines,
        link,
    })
}
