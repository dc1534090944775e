//! Provider connectors. Each provider kind is one folder: it implements
//! [`Connector`] (a connector only builds calls and classifies answers),
//! parses its CSV ids, declares what it can do and reads its own options
//! (`settings.rs`). The shared [`http::ProviderClient`] does auth,
//! timeouts, retries and audit. The `[providers.NAME]` section's types are
//! here ([`settings`], [`kind`]), so that `config` reads them and this
//! module imports no configuration.

pub mod aitronos;
pub mod auth0;
pub mod classify;
pub mod error;
pub mod fields;
pub mod http;
pub mod intake;
pub mod kind;
pub mod recoup;
pub mod restore;
pub mod retry;
pub mod scim;
pub mod settings;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::domain::AuditEvent;
use crate::domain::RowFields;
use crate::domain::{OrgId, ProviderName, Rejection, Removal, Restore, RoleId, Target};

pub use error::{ErrorClass, StepError, invalid_response, parse_json};
pub use http::ProviderClient;
pub use kind::{AuthScheme, Declaration, KindSettings, ProviderKind};
pub use retry::RetryConfig;
pub use settings::{Connection, ProviderConfig, ResolvedProvider, RetryOverride};

/// What the plan step found: the user's current access.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// Whether the user is still a member of the organization.
    pub is_member: bool,
    /// Role assignments (or groups) the user holds now.
    pub role_ids: Vec<RoleId>,
    /// The provider's own id for the user when the CSV named them another
    /// way (a SCIM user found by email); checked like any id before use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Emails the provider holds for the user (SCIM's `userName` and
    /// `emails`), so that a person protected by email is recognised
    /// whatever the CSV called them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    /// Whether the user was blocked before this request, where it blocks
    /// users (Auth0 `block_user`): an undo unblocks only those it blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<bool>,
}

impl Plan {
    pub fn member(role_ids: Vec<RoleId>) -> Self {
        Self {
            is_member: true,
            role_ids,
            ..Self::not_a_member()
        }
    }

    pub fn not_a_member() -> Self {
        Self {
            is_member: false,
            role_ids: Vec::new(),
            subject: None,
            emails: Vec::new(),
            blocked: None,
        }
    }
}

/// What stripping (or, in an undo, giving back) roles did before it
/// finished or stopped.
#[derive(Debug, Default)]
pub struct StripResult {
    /// Roles this call removed, or gave back (not those that already were).
    pub removed: Vec<RoleId>,
    /// Set when the step stopped early.
    pub error: Option<StepError>,
}

/// A current member of an organization, as the provider lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub user_id: String,
    pub email: Option<String>,
}

/// Whether a write changed anything at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Changed,
    Unchanged,
}

/// Where a run stores the audit events of its calls between checkpoints:
/// before each destructive call, so what the previous one did is on record
/// before the next one starts (a crash between two removals loses no
/// record of the first).
/// The sink's error is its own (the store's, in the pipeline): connectors
/// only show it.
#[async_trait]
pub trait AuditSink: Send + Sync {
    async fn store(
        &self,
        events: &[AuditEvent],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;

    /// The connection's credential breaker tripped for this batch (the
    /// outbox's `provider.credentials_rejected`); nothing by default.
    async fn credentials_rejected(&self, _provider: &str, _status: u16) {}
}

/// The sink of a context, if any (`Debug` for the context's sake).
#[derive(Default, Clone)]
struct Sink(Option<Arc<dyn AuditSink>>);

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Sink" } else { "None" })
    }
}

/// Per-request context for provider calls: who is calling, and where the
/// audit events of those calls are collected until the step is saved.
#[derive(Debug, Default)]
pub struct CallContext {
    pub request_id: Option<String>,
    /// The batch the request belongs to: credential failures stop a batch.
    pub batch_id: Option<String>,
    audit: Mutex<Vec<AuditEvent>>,
    sink: Sink,
    retries: AtomicU32,
    lap: Mutex<Option<std::time::Instant>>,
}

impl CallContext {
    pub fn for_request(request_id: &str, batch_id: &str) -> Self {
        Self {
            request_id: Some(request_id.to_owned()),
            batch_id: Some(batch_id.to_owned()),
            ..Default::default()
        }
    }

    /// Stores events through `sink` before each destructive call.
    pub fn with_audit_sink(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.sink = Sink(Some(sink));
        self
    }

    /// Stores the events recorded so far through the sink, if there is
    /// one; on failure they stay here for the step's own write, and no
    /// further call may start.
    pub(crate) async fn flush_audit(&self) -> Result<(), StepError> {
        let Some(sink) = &self.sink.0 else {
            return Ok(());
        };
        let events = self.drain_audit();
        if events.is_empty() {
            return Ok(());
        }
        sink.store(&events).await.map_err(|e| {
            self.keep_audit(events);
            StepError::transient(
                "audit_not_stored",
                format!("the record of the previous call could not be stored ({e}); no further call was made"),
                None,
            )
        })
    }

    /// Tells the sink, if any, that the credential breaker tripped.
    pub(crate) async fn credentials_rejected(&self, provider: &str, status: u16) {
        if let Some(sink) = &self.sink.0 {
            sink.credentials_rejected(provider, status).await;
        }
    }

    pub(crate) fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Time since the previous lap (or since creation): one step's duration.
    pub fn lap(&self) -> std::time::Duration {
        let now = std::time::Instant::now();
        let mut last = self.lap.lock().unwrap_or_else(|p| p.into_inner());
        let since = last.map_or(std::time::Duration::ZERO, |l| now - l);
        *last = Some(now);
        since
    }

    /// In-place retries made since the last call.
    pub fn drain_retries(&self) -> u32 {
        self.retries.swap(0, Ordering::Relaxed)
    }

    pub(crate) fn record(&self, event: AuditEvent) {
        self.audit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }

    /// Takes the events recorded since the last call.
    pub fn drain_audit(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *self.audit.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts back `events` a write did not store, ahead of any recorded
    /// since, for the next write to take.
    pub fn keep_audit(&self, events: Vec<AuditEvent>) {
        let mut kept = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        let later = std::mem::replace(&mut *kept, events);
        kept.extend(later);
    }
}

/// One provider connection's offboarding operations.
#[async_trait]
pub trait Connector: Send + Sync {
    fn name(&self) -> &ProviderName;

    /// Reads the user's membership and role assignments.
    async fn plan(&self, cx: &CallContext, target: &Target) -> Result<Plan, StepError>;

    /// Removes the given role assignments (a subset of `plan.role_ids`).
    async fn strip_roles(
        &self,
        cx: &CallContext,
        target: &Target,
        plan: &Plan,
        roles: &[RoleId],
    ) -> StripResult;

    /// Removes (soft-deletes) the membership, transferring resources where
    /// the provider does that as part of removal.
    async fn remove_membership(
        &self,
        cx: &CallContext,
        target: &Target,
        plan: &Plan,
    ) -> Result<Change, StepError>;

    /// Whether [`Connector::revoke_sessions`] or [`Connector::prune`] may
    /// call the provider on this connection. When neither does, the
    /// membership's checkpoint commits while [`Connector::verify`] reads.
    /// A connector says `false` only when it knows: one that said it
    /// wrongly would still have its policy steps run after that commit,
    /// but after the read-back.
    fn policy_steps(&self) -> bool {
        true
    }

    /// Policy step after removal (Auth0 `revoke_sessions`): ends the
    /// user's sessions and refresh tokens. `None` when this connection has
    /// no such policy (the step is then not checkpointed); `Some(false)`
    /// when the provider knows no such user, so there was nothing to end.
    async fn revoke_sessions(
        &self,
        _cx: &CallContext,
        _target: &Target,
    ) -> Result<Option<bool>, StepError> {
        Ok(None)
    }

    /// Policy step after removal (Aitronos `prune_custom_roles`): returns
    /// notes on what was left alone and why, or `None` when this connection
    /// has no such policy (the step is then not even checkpointed).
    async fn prune(
        &self,
        _cx: &CallContext,
        _target: &Target,
        _plan: &Plan,
    ) -> Result<Option<Vec<String>>, StepError> {
        Ok(None)
    }

    /// Reads back: the user holds no membership any more. A note, when
    /// the provider could not show that (the request still succeeds).
    async fn verify(
        &self,
        cx: &CallContext,
        target: &Target,
        plan: &Plan,
    ) -> Result<Option<Note>, StepError>;

    /// Undo: which of what an offboarding removed is missing at the
    /// provider now. A provider that documents no call giving access back
    /// ends the request with what a person must restore by hand.
    async fn restore_plan(
        &self,
        _cx: &CallContext,
        target: &Target,
        removal: &Removal,
    ) -> Result<Restore, StepError> {
        Err(restore::manual(
            &format!("{} documents no call that gives access back", self.name()),
            target,
            removal,
        ))
    }

    /// Undo: gives the membership back (and unblocks or reactivates the
    /// user where the restore says so).
    async fn restore_membership(
        &self,
        _cx: &CallContext,
        _target: &Target,
        _restore: &Restore,
    ) -> Result<Change, StepError> {
        Err(restore::unsupported(self.name()))
    }

    /// Undo: gives the given roles (groups) back, a subset of
    /// `restore.roles`.
    async fn restore_roles(
        &self,
        _cx: &CallContext,
        _target: &Target,
        _restore: &Restore,
        _roles: &[RoleId],
    ) -> StripResult {
        StripResult {
            removed: Vec::new(),
            error: Some(restore::unsupported(self.name())),
        }
    }

    /// Checks that the provider answers and accepts our credentials.
    async fn probe(&self) -> Result<Probe, StepError>;

    /// Every current member of `org` (reconciliation), paged through.
    /// Providers that cannot list members say so.
    async fn list_members(
        &self,
        _cx: &CallContext,
        _org: &OrgId,
    ) -> Result<Vec<Member>, StepError> {
        Err(StepError::permanent(
            "listing_not_supported",
            format!("{} cannot list organization members", self.name()),
        ))
    }
}

/// What a succeeded request's report row says beside its outcome (the
/// `error_code` and `error_message` columns carry it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub code: &'static str,
    pub message: String,
}

/// What `offboard check` learnt from a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A documented read answered: the base URL and credentials work.
    Passed(String),
    /// Nothing failed, but nothing proved the credentials either.
    Warning(String),
}

/// A harmless authenticated read of a documented route (`offboard
/// check`): a 2xx answer, or a 404 in the provider's own error envelope
/// (`own_error` recognises it), proves the base URL and the credentials.
/// Any other 404 is a wrong base URL, not a pass.
pub async fn probe_with(
    client: &ProviderClient,
    call: http::Call,
    own_error: fn(&[u8]) -> bool,
) -> Result<Probe, StepError> {
    let cx = CallContext::default();
    let (answer, _) = client
        .send(&cx, &call, |a| classify::probe(a, own_error))
        .await?;
    Ok(Probe::Passed(format!(
        "reachable, credentials accepted (HTTP {})",
        answer.status
    )))
}

/// What a provider kind can do beyond offboarding one person, declared by
/// its folder (`CAPABILITIES`) and read wherever a job or a setting needs
/// it, so no other module names the kinds that can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Lists an organization's members, so it can be reconciled.
    pub list_members: bool,
    /// Transfers a leaver's resources to a department on removal.
    pub transfer_resources: bool,
    /// Gives access back from a batch's record (`offboard undo`).
    pub undo: bool,
    /// Looks a person up by email (SCIM's `userName`), so that an email
    /// can name a person to protect.
    pub find_by_email: bool,
    /// Takes `auth = "client_credentials"` (OAuth 2 client credentials).
    pub client_credentials: bool,
}

/// The capabilities `kind`'s connector declares.
pub fn capabilities(kind: ProviderKind) -> Capabilities {
    kind.declaration().capabilities
}

/// The kinds whose connector declares a capability, for messages
/// ("only aitronos can …").
pub fn kinds_that(can: impl Fn(Capabilities) -> bool) -> Vec<&'static str> {
    ProviderKind::ALL
        .into_iter()
        .filter(|k| can(capabilities(*k)))
        .map(ProviderKind::as_str)
        .collect()
}

/// Validates a CSV row's ids for a provider kind (intake).
pub fn parse_target(
    kind: ProviderKind,
    provider: ProviderName,
    fields: &RowFields<'_>,
) -> Result<Target, Rejection> {
    (kind.declaration().parse_target)(provider, fields)
}

/// Builds the connector for a configured connection.
pub fn build(
    provider: &ResolvedProvider,
    user_agent: &str,
    retry: &RetryConfig,
) -> Result<Arc<dyn Connector>, http::ClientError> {
    let client =
        ProviderClient::new(provider, user_agent)?.with_retry(provider.config.retry_policy(retry));
    Ok(provider.config.settings.connector(client))
}
