//! Notifications: people hear when they must act (a halted batch, a
//! preview to review, a batch with people left `needs_attention`, a
//! reconciliation that could not plan, a drop-folder file that failed,
//! credentials a provider rejected).
//!
//! Events are written to the store's outbox in the transaction of the
//! change that causes them (`store::outbox`); this module turns them into
//! messages and delivers them:
//! - [`channels`]: the configured channels with their secrets in hand.
//! - [`message`]: an event as one message (JSON, and text for people).
//! - [`sign`]: the webhook signature, `t=…,v1=HMAC-SHA256(secret, "t.body")`.
//! - [`webhook`], [`slack`], [`email`]: one sender per channel kind.
//! - [`deliver`]: the loop that leases due deliveries, sends, and retries
//!   with backoff until `[notify] retry_for`, then gives up (`dead`).

pub mod channels;
pub mod deliver;
pub mod email;
pub mod message;
pub mod sign;
pub mod slack;
pub mod webhook;

pub use channels::{Channel, ChannelTarget, resolve_channels};
pub use deliver::{Deliverer, DrainOutcome};
pub use message::Message;

use crate::config::Config;
use crate::store::{NotifyRoute, NotifyRoutes};

/// Why a message did not reach a channel. Messages never carry a secret
/// or a channel's URL, so they may be logged and stored.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The channel answered with a status other than 2xx.
    #[error("the channel answered HTTP {0}")]
    Status(u16),
    /// No answer: refused, reset, timed out.
    #[error("the channel could not be reached ({0})")]
    Unreachable(&'static str),
    /// The SMTP server refused or failed.
    #[error("the mail server: {0}")]
    Smtp(String),
    #[error("no channel named {0:?} in [notify]")]
    UnknownChannel(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl NotifyError {
    /// A reqwest failure, named by kind only (its text can hold the URL,
    /// which for Slack is the secret).
    pub(crate) fn from_http(e: &reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect"
        } else {
            "network error"
        };
        NotifyError::Unreachable(kind)
    }
}

/// Which channels want which events, for the store to write only what
/// some channel will be sent.
pub fn routes(config: &Config) -> NotifyRoutes {
    NotifyRoutes(
        config
            .notify
            .channels
            .iter()
            .map(|(name, c)| NotifyRoute {
                channel: name.clone(),
                kinds: c.events.clone(),
                finished_always: c.finished == crate::config::FinishedWhen::Always,
            })
            .collect(),
    )
}
