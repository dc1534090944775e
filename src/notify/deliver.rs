//! Delivery: lease due deliveries (like requests' claims, on the
//! database's clock, so two processes never send one event to one channel
//! at once), render each event once, send it, and mark it `sent` on a 2xx
//! (or the mail server's acceptance). A failure is tried again after
//! `retry_base_ms`, doubled each time (at most an hour apart), until the
//! event is `retry_for` old; then the delivery is `dead`.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::watch;

use super::channels::{Channel, ChannelTarget};
use super::message::{Message, render};
use super::{NotifyError, email, slack, webhook};
use crate::config::{Config, millis};
use crate::domain::now_ms;
use crate::store::{Delivery, NotifyEvent, Store};

/// Deliveries leased per pass.
const PER_PASS: u32 = 32;
/// The longest wait between two attempts.
const MAX_BACKOFF_MS: i64 = 3_600_000;
/// The longest a command waits for the events it caused.
pub const DRAIN_WITHIN: Duration = Duration::from_secs(10);

/// Sends the outbox's deliveries to this process's channels.
pub struct Deliverer {
    store: Store,
    channels: HashMap<String, Channel>,
    names: Vec<String>,
    http: reqwest::Client,
    owner: String,
    lease: Duration,
    timeout: Duration,
    retry_base_ms: u64,
    retry_for_ms: i64,
    public_url: Option<String>,
}

/// What a command's wait for its events left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainOutcome {
    /// Deliveries still pending when the wait ended (left to `serve`).
    pub pending: i64,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("channels", &self.names)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Deliverer {
    /// A deliverer named `worker` (its leases say so), for `channels`.
    pub fn new(
        store: Store,
        config: &Config,
        channels: Vec<Channel>,
        worker: &str,
    ) -> Result<Deliverer, NotifyError> {
        let lease = config.worker.lease().max(Duration::from_secs(1));
        // A send never outlives its lease, so no other process takes the
        // delivery while this one may still get its answer.
        let timeout = (lease / 2).min(Duration::from_secs(10));
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(format!("offboard/{} {worker}", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::from_http(&e))?;
        let names = channels.iter().map(|c| c.name.clone()).collect();
        Ok(Deliverer {
            store,
            channels: channels.into_iter().map(|c| (c.name.clone(), c)).collect(),
            names,
            http,
            owner: format!("{worker}:notify"),
            lease,
            timeout,
            retry_base_ms: config.notify.retry_base_ms,
            retry_for_ms: millis(config.notify.retry_for()),
            public_url: config.http.public_url.clone(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// How often an idle loop looks for new events.
    fn poll(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms.clamp(50, 1_000))
    }

    /// Until `stop`: delivers whatever is due, to this process's channels.
    /// First writes what a killed process may have left unwritten: the
    /// `batch.finished` and `batch.held` of batches made within
    /// `retry_for` that settled.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let since = now_ms().saturating_sub(self.retry_for_ms);
        if let Err(e) = self.store.notice_settled_since(since).await {
            tracing::warn!(error = %e, "cannot look for settled batches without their notification");
        }
        loop {
            let busy = match self.pass(None).await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot deliver notifications");
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll()) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// For a command that changed batches: delivers the events made since
    /// `since` (unix ms), for at most `within`, and says what it left to
    /// `serve`.
    pub async fn drain(&self, since: i64, within: Duration) -> Result<DrainOutcome, NotifyError> {
        let deadline = tokio::time::Instant::now() + within;
        let delivering = async {
            loop {
                let sent = self.pass(Some(since)).await?;
                let pending = self.store.pending_deliveries_since(since).await?;
                if pending == 0 || tokio::time::Instant::now() >= deadline {
                    return Ok(DrainOutcome { pending });
                }
                if sent == 0 {
                    tokio::time::sleep_until(
                        deadline.min(tokio::time::Instant::now() + self.poll()),
                    )
                    .await;
                }
            }
        };
        // A pass of slow channels must not hold the command past `within`:
        // what is left stays leased until its lease lapses, then `serve`
        // sends it.
        match tokio::time::timeout_at(deadline, delivering).await {
            Ok(done) => done,
            Err(_) => Ok(DrainOutcome {
                pending: self.store.pending_deliveries_since(since).await?,
            }),
        }
    }

    /// Leases up to a pass of due deliveries and tries each once; returns
    /// how many it tried.
    pub async fn pass(&self, since: Option<i64>) -> Result<usize, NotifyError> {
        let leased = self
            .store
            .claim_deliveries(
                &self.owner,
                millis(self.lease),
                &self.names,
                since,
                PER_PASS,
            )
            .await?;
        for d in &leased {
            self.attempt(d).await?;
        }
        Ok(leased.len())
    }

    async fn attempt(&self, d: &Delivery) -> Result<(), NotifyError> {
        let Some(channel) = self.channels.get(&d.channel) else {
            return Ok(());
        };
        // The pass leased it with the others; the sends before this one
        // may have used up much of that lease.
        if !self
            .store
            .renew_delivery(d, &self.owner, millis(self.lease))
            .await?
        {
            return Ok(());
        }
        // An event that cannot be read or rendered fails this delivery
        // only: the pass goes on to the others leased with it.
        // Only a stored event that is missing or does not decode is given
        // up at once: rendering reads the batch, which may hold what an
        // older process cannot read yet, and is retried like a send.
        let mut unreadable = false;
        let result = match self.store.notify_event(&d.event_id).await {
            Ok(Some(event)) => match self.message_of(&event).await {
                Ok((message, body)) => self.send(channel, &message, &event.id, &body).await,
                Err(e) => Err(e),
            },
            Ok(None) => {
                unreadable = true;
                Err(NotifyError::Store(crate::store::StoreError::Corrupt(
                    format!("notification event {} is missing", d.event_id),
                )))
            }
            Err(e) => {
                unreadable = matches!(e, crate::store::StoreError::Corrupt(_));
                Err(NotifyError::Store(e))
            }
        };
        match result {
            Ok(()) => {
                if self.store.delivery_sent(d, &self.owner).await? {
                    crate::metrics::notification(&d.channel, "sent");
                    tracing::info!(channel = %d.channel, event = %d.event_id, "notification delivered");
                }
            }
            Err(e) => {
                let now = now_ms();
                let attempts = d.attempts + 1;
                let give_up_at = d.created_at.saturating_add(self.retry_for_ms);
                let dead = now >= give_up_at || unreadable;
                let next_at = now
                    .saturating_add(backoff(self.retry_base_ms, attempts))
                    .min(give_up_at);
                let error = e.to_string();
                self.store
                    .delivery_failed(d, &self.owner, &error, next_at, dead)
                    .await?;
                let result = if dead { "dead" } else { "failed" };
                crate::metrics::notification(&d.channel, result);
                tracing::warn!(
                    channel = %d.channel,
                    event = %d.event_id,
                    attempt = attempts,
                    dead,
                    error = %error,
                    "notification not delivered"
                );
            }
        }
        Ok(())
    }

    /// The event's message, rendered the first time it is sent and kept,
    /// so every channel and every attempt sends the same body.
    async fn message_of(&self, event: &NotifyEvent) -> Result<(Message, String), NotifyError> {
        let body = match &event.payload {
            Some(body) => body.clone(),
            None => {
                let message = render(&self.store, self.public_url.as_deref(), event).await?;
                self.store
                    .keep_payload(&event.id, &message.json.to_string())
                    .await?
            }
        };
        let json = serde_json::from_str(&body).map_err(|e| {
            NotifyError::Store(crate::store::StoreError::Corrupt(format!(
                "notification payload: {e}"
            )))
        })?;
        Ok((Message::from_json(json), body))
    }

    /// Sends within the delivery's timeout (half its lease): a channel
    /// that accepts and never answers (an SMTP server that never greets;
    /// lettre's own timeout covers only the connect) must not outlive the
    /// lease, or another process would lease and send it too.
    async fn send(
        &self,
        channel: &Channel,
        message: &Message,
        event_id: &str,
        body: &str,
    ) -> Result<(), NotifyError> {
        let sending = async {
            match &channel.target {
                ChannelTarget::Webhook { url, secret } => {
                    let now = chrono::Utc::now().timestamp();
                    webhook::send(&self.http, url, secret, event_id, body, now).await
                }
                ChannelTarget::Slack { url } => slack::send(&self.http, url, message).await,
                ChannelTarget::Email {
                    host,
                    port,
                    tls,
                    credentials,
                    from,
                    to,
                } => {
                    let smtp = email::Smtp {
                        host,
                        port: *port,
                        tls: *tls,
                        credentials: credentials.as_ref(),
                        from,
                        to,
                        timeout: self.timeout,
                    };
                    email::send(&smtp, message).await
                }
            }
        };
        tokio::time::timeout(self.timeout, sending)
            .await
            .unwrap_or(Err(NotifyError::Unreachable("timed out")))
    }

    /// `offboard notify test NAME`: a test message, sent now, not stored.
    pub async fn send_test(&self, name: &str) -> Result<(), NotifyError> {
        let channel = self
            .channels
            .get(name)
            .ok_or_else(|| NotifyError::UnknownChannel(name.to_owned()))?;
        let event = NotifyEvent {
            id: ulid::Ulid::new().to_string(),
            kind: "test".into(),
            batch_id: None,
            facts: serde_json::json!({
                "channel": name,
                "message": "offboard can reach this channel; events will arrive like this one",
            }),
            payload: None,
            created_at: now_ms(),
        };
        let message = render(&self.store, self.public_url.as_deref(), &event).await?;
        let body = message.json.to_string();
        let sent = self.send(channel, &message, &event.id, &body).await;
        crate::metrics::notification(name, if sent.is_ok() { "sent" } else { "failed" });
        sent
    }
}

/// The wait after `attempts` failed attempts: `base`, doubled each time,
/// at most an hour.
fn backoff(base_ms: u64, attempts: i64) -> i64 {
    let doublings = (attempts - 1).clamp(0, 30) as u32;
    i64::try_from(base_ms)
        .unwrap_or(MAX_BACKOFF_MS)
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF_MS)
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1000, 1), 1000);
        assert_eq!(backoff(1000, 2), 2000);
        assert_eq!(backoff(1000, 4), 8000);
        assert_eq!(backoff(1000, 40), 3_600_000);
    }
}
