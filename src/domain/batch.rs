//! What a batch's record says about the decisions taken on it: why a rail
//! halted it, and every event with the actor who caused it.

use std::fmt;

/// What a batch's row stores of its state (`batches.stored_state`); with
/// none stored, the state follows from its requests' outcomes. Parsed once,
/// where the store reads the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredState {
    /// Intake is still storing its requests: none may run yet.
    Intake,
    /// A preview waiting for its submitter to release it.
    Held,
    /// A rail halted it before the first change; it waits for approval.
    Halted,
    /// A person cancelled it (or its hold expired).
    Cancelled,
    /// Retention is purging its record.
    Purging,
}

impl StoredState {
    pub const ALL: [StoredState; 5] = [
        StoredState::Intake,
        StoredState::Held,
        StoredState::Halted,
        StoredState::Cancelled,
        StoredState::Purging,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StoredState::Intake => "intake",
            StoredState::Held => "held",
            StoredState::Halted => "halted",
            StoredState::Cancelled => "cancelled",
            StoredState::Purging => "purging",
        }
    }

    pub fn parse(s: &str) -> Option<StoredState> {
        StoredState::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether its requests wait for the batch's release instead of
    /// running (`intake` or `halted`).
    pub fn waits_for_release(self) -> bool {
        matches!(self, StoredState::Intake | StoredState::Halted)
    }
}

impl fmt::Display for StoredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which rail halted a batch (`batches.halt_code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HaltCode {
    /// More requests than `[safety] max_batch_requests`.
    MaxBatchRequests,
    /// More planned removals than the job's `max_removals`.
    MaxRemovals,
    /// A larger share of the members than `max_removal_percent`.
    MaxRemovalPercent,
    /// Fewer roster rows than `min_roster_rows`.
    MinRosterRows,
    /// Fewer roster rows than `min_roster_ratio` of the last good run's.
    RosterShrunk,
    /// More members the roster cannot match than `max_unmatched_percent`.
    UnmatchedMembers,
    EmptyRoster,
    RosterUnreadable,
    RosterMissingKey,
}

impl HaltCode {
    pub const ALL: [HaltCode; 9] = [
        HaltCode::MaxBatchRequests,
        HaltCode::MaxRemovals,
        HaltCode::MaxRemovalPercent,
        HaltCode::MinRosterRows,
        HaltCode::RosterShrunk,
        HaltCode::UnmatchedMembers,
        HaltCode::EmptyRoster,
        HaltCode::RosterUnreadable,
        HaltCode::RosterMissingKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HaltCode::MaxBatchRequests => "max_batch_requests",
            HaltCode::MaxRemovals => "max_removals",
            HaltCode::MaxRemovalPercent => "max_removal_percent",
            HaltCode::MinRosterRows => "min_roster_rows",
            HaltCode::RosterShrunk => "roster_shrunk",
            HaltCode::UnmatchedMembers => "unmatched_members",
            HaltCode::EmptyRoster => "empty_roster",
            HaltCode::RosterUnreadable => "roster_unreadable",
            HaltCode::RosterMissingKey => "roster_missing_key",
        }
    }

    pub fn parse(s: &str) -> Option<HaltCode> {
        HaltCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for HaltCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a batch waits for a person: the rail and a sentence saying how
/// far over it the batch is and what to do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Halt {
    pub code: HaltCode,
    pub reason: String,
}

impl Halt {
    pub fn new(code: HaltCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// What happened to a batch (`batch_events.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    /// Taken in; `detail.source` says from where.
    Submitted,
    /// Stored as a preview for its submitter to release.
    Held,
    /// A preview released to run.
    Released,
    /// Stopped by a rail; `detail.code` and `detail.reason` say which.
    Halted,
    /// Applied by a person; `detail.only` lists the people when not all.
    Approved,
    Cancelled,
    /// Requests reopened; `detail.outcomes` and `detail.reopened`.
    Retried,
    /// An undo batch was made for this batch; `detail.batch` names it.
    UndoneBy,
    /// This batch undoes another; `detail.batch` names it, `detail.only`
    /// the people when not all.
    Undoes,
}

impl EventAction {
    pub const ALL: [EventAction; 9] = [
        EventAction::Submitted,
        EventAction::Held,
        EventAction::Released,
        EventAction::Halted,
        EventAction::Approved,
        EventAction::Cancelled,
        EventAction::Retried,
        EventAction::UndoneBy,
        EventAction::Undoes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Submitted => "submitted",
            EventAction::Held => "held",
            EventAction::Released => "released",
            EventAction::Halted => "halted",
            EventAction::Approved => "approved",
            EventAction::Cancelled => "cancelled",
            EventAction::Retried => "retried",
            EventAction::UndoneBy => "undone_by",
            EventAction::Undoes => "undoes",
        }
    }

    pub fn parse(s: &str) -> Option<EventAction> {
        EventAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for EventAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a batch's record: who did what, and when.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BatchEvent {
    /// RFC 3339, milliseconds.
    pub at: String,
    pub actor: String,
    pub action: EventAction,
    pub detail: serde_json::Value,
}

/// Who took a decision: a person's token name, a proxy identity,
/// `bootstrap`, `cli:USER@HOST`, `dropfolder:NAME`, `schedule:JOB`, or
/// `system` for a rail.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Actor(String);

impl Actor {
    /// A rail of offboard's own.
    pub fn system() -> Self {
        Self("system".into())
    }

    /// The `[http] token_env` token, the built-in admin.
    pub fn bootstrap() -> Self {
        Self("bootstrap".into())
    }

    pub fn dropfolder(job: &str) -> Self {
        Self(format!("dropfolder:{job}"))
    }

    pub fn schedule(job: &str) -> Self {
        Self(format!("schedule:{job}"))
    }

    /// A person at a shell: `cli:USER@HOST`.
    pub fn cli(user: &str, host: &str) -> Self {
        Self(format!("cli:{user}@{host}"))
    }

    /// An actor read back from the store, or given by an authenticated
    /// caller.
    pub fn named(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_actions_round_trip() {
        for c in HaltCode::ALL {
            assert_eq!(HaltCode::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        for a in EventAction::ALL {
            assert_eq!(EventAction::parse(a.as_str()), Some(a));
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
    }
}
