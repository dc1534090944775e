//! Outcomes of a request and the states of a batch (`../shared/conventions.md`).

use std::fmt;
use std::str::FromStr;

/// How one offboarding request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// At least one step changed something and the verification passed.
    Succeeded,
    /// Nothing was left to remove.
    AlreadyDone,
    /// Deliberately not touched: protected account or dry run.
    Skipped,
    /// A human must act (e.g. the user is the last owner).
    NeedsAttention,
    /// A permanent error: bad credentials, invalid id, malformed request.
    Failed,
    /// Transient errors outlasted the retry budget.
    Dead,
    /// Stopped by a person before it ran.
    Cancelled,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Succeeded,
        Outcome::AlreadyDone,
        Outcome::Skipped,
        Outcome::NeedsAttention,
        Outcome::Failed,
        Outcome::Dead,
        Outcome::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::AlreadyDone => "already_done",
            Outcome::Skipped => "skipped",
            Outcome::NeedsAttention => "needs_attention",
            Outcome::Failed => "failed",
            Outcome::Dead => "dead",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// Whether this outcome asks for a person's attention (exit code 3).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::NeedsAttention | Outcome::Failed | Outcome::Dead
        )
    }

    /// Whether a later submission of the same request may reuse this result.
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Succeeded | Outcome::AlreadyDone)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown outcome {0:?}")]
pub struct UnknownOutcome(pub String);

impl FromStr for Outcome {
    type Err = UnknownOutcome;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| UnknownOutcome(s.to_owned()))
    }
}

/// Counts of a batch's entries by outcome; open and held requests are
/// counted apart, as are rows rejected at intake.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutcomeCounts {
    pub succeeded: u64,
    pub already_done: u64,
    pub skipped: u64,
    pub needs_attention: u64,
    pub failed: u64,
    pub dead: u64,
    pub cancelled: u64,
    pub rejected: u64,
    /// Held until their `effective_at`.
    pub scheduled: u64,
    /// Not final yet (queued or running).
    pub open: u64,
    /// Previewed in a held batch, waiting for its release.
    pub held: u64,
}

impl OutcomeCounts {
    pub fn add(&mut self, outcome: Outcome, n: u64) {
        let slot = match outcome {
            Outcome::Succeeded => &mut self.succeeded,
            Outcome::AlreadyDone => &mut self.already_done,
            Outcome::Skipped => &mut self.skipped,
            Outcome::NeedsAttention => &mut self.needs_attention,
            Outcome::Failed => &mut self.failed,
            Outcome::Dead => &mut self.dead,
            Outcome::Cancelled => &mut self.cancelled,
        };
        *slot += n;
    }

    pub fn finished(&self) -> u64 {
        self.succeeded
            + self.already_done
            + self.skipped
            + self.needs_attention
            + self.failed
            + self.dead
            + self.cancelled
    }

    /// Requests (not rejected rows) in the batch.
    pub fn requests(&self) -> u64 {
        self.finished() + self.open + self.scheduled + self.held
    }

    pub fn failures(&self) -> u64 {
        self.needs_attention + self.failed + self.dead
    }

    /// The batch state derived from the counts (`../shared/conventions.md`); `halted`
    /// and `cancelled` are stored, not derived, and handled by the caller.
    pub fn derived_state(&self) -> BatchState {
        if self.open > 0 || self.scheduled > 0 {
            if self.finished() == 0 {
                BatchState::Queued
            } else {
                BatchState::Running
            }
        } else if self.failures() > 0 {
            BatchState::CompletedWithFailures
        } else {
            BatchState::Completed
        }
    }

    /// The one-line summary printed by `offboard run`.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} succeeded, {} already_done, {} skipped, {} needs_attention, {} failed, {} dead, {} rejected",
            self.succeeded,
            self.already_done,
            self.skipped,
            self.needs_attention,
            self.failed,
            self.dead,
            self.rejected
        );
        if self.cancelled > 0 {
            line.push_str(&format!(", {} cancelled", self.cancelled));
        }
        if self.scheduled > 0 {
            line.push_str(&format!(", {} scheduled", self.scheduled));
        }
        if self.held > 0 {
            line.push_str(&format!(", {} held", self.held));
        }
        line
    }
}

/// The state of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    Queued,
    Running,
    /// A preview waiting for its submitter to release it.
    Held,
    Halted,
    Completed,
    CompletedWithFailures,
    Cancelled,
}

impl BatchState {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Queued => "queued",
            BatchState::Running => "running",
            BatchState::Held => "held",
            BatchState::Halted => "halted",
            BatchState::Completed => "completed",
            BatchState::CompletedWithFailures => "completed_with_failures",
            BatchState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for BatchState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_round_trip() {
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>().unwrap(), o);
        }
        assert!("rejected".parse::<Outcome>().is_err());
    }

    #[test]
    fn state_follows_counts() {
        let mut c = OutcomeCounts {
            open: 2,
            ..Default::default()
        };
        assert_eq!(c.derived_state(), BatchState::Queued);
        c.add(Outcome::Succeeded, 1);
        assert_eq!(c.derived_state(), BatchState::Running);
        c.open = 0;
        assert_eq!(c.derived_state(), BatchState::Completed);
        c.add(Outcome::Dead, 1);
        assert_eq!(c.derived_state(), BatchState::CompletedWithFailures);
    }
}
