//! The rails a reconciliation passes before its first change: each on by
//! default, each one that a job may turn `"off"` (and `offboard check`
//! then warns about it).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::roster::RosterError;
use crate::domain::{Halt, HaltCode};

/// A limit, or `"off"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rail<T> {
    Off,
    Limit(T),
}

impl<T: Copy> Rail<T> {
    pub fn limit(self) -> Option<T> {
        match self {
            Rail::Off => None,
            Rail::Limit(v) => Some(v),
        }
    }
}

/// A number a rail holds, read from TOML's integers or floats.
pub trait RailValue: Sized + Copy {
    fn from_f64(v: f64) -> Option<Self>;
}

impl RailValue for f64 {
    fn from_f64(v: f64) -> Option<Self> {
        v.is_finite().then_some(v)
    }
}

impl RailValue for u64 {
    fn from_f64(v: f64) -> Option<Self> {
        (v >= 0.0 && v.fract() == 0.0 && v <= u64::MAX as f64).then_some(v as u64)
    }
}

impl<'de, T: RailValue> Deserialize<'de> for Rail<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T: RailValue> Visitor<'_> for V<T> {
            type Value = Rail<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, or \"off\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Rail<T>, E> {
                if v == "off" {
                    Ok(Rail::Off)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Rail<T>, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Rail<T>, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Rail<T>, E> {
                T::from_f64(v)
                    .map(Rail::Limit)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A job's rails, with their defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobRails {
    /// Planned removals, at most (no default).
    pub max_removals: Rail<u64>,
    /// Planned removals as a share of the members, in percent (default 5).
    pub max_removal_percent: Rail<f64>,
    /// Roster rows, at least, on every run (default 1).
    pub min_roster_rows: Rail<u64>,
    /// Roster rows as a share of the last good run's (default 0.5).
    pub min_roster_ratio: Rail<f64>,
    /// Members the roster cannot match, as a share in percent (default 1).
    pub max_unmatched_percent: Rail<f64>,
}

impl Default for JobRails {
    fn default() -> Self {
        JobRails {
            max_removals: Rail::Off,
            max_removal_percent: Rail::Limit(5.0),
            min_roster_rows: Rail::Limit(1),
            min_roster_ratio: Rail::Limit(0.5),
            max_unmatched_percent: Rail::Limit(1.0),
        }
    }
}

impl JobRails {
    /// Checks the ranges; the key and the message of the first bad one.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let percent = |key: &'static str, rail: Rail<f64>| match rail.limit() {
            Some(p) if !(0.0..=100.0).contains(&p) => {
                Err((key, "must be between 0 and 100, or \"off\"".to_owned()))
            }
            _ => Ok(()),
        };
        percent("max_removal_percent", self.max_removal_percent)?;
        percent("max_unmatched_percent", self.max_unmatched_percent)?;
        if let Some(r) = self.min_roster_ratio.limit()
            && !(0.0..=1.0).contains(&r)
        {
            return Err((
                "min_roster_ratio",
                "must be between 0 and 1, or \"off\"".into(),
            ));
        }
        Ok(())
    }

    /// The rails turned off, by key, for `offboard check`'s warnings.
    pub fn off(&self) -> Vec<&'static str> {
        let mut off = Vec::new();
        if self.max_removal_percent == Rail::Off {
            off.push("max_removal_percent");
        }
        if self.min_roster_rows == Rail::Off {
            off.push("min_roster_rows");
        }
        if self.min_roster_ratio == Rail::Off {
            off.push("min_roster_ratio");
        }
        if self.max_unmatched_percent == Rail::Off {
            off.push("max_unmatched_percent");
        }
        off
    }
}

/// What a plan looked like, for the rails to judge.
pub struct PlanFacts<'a> {
    /// The roster's rows, or why it could not be read.
    pub roster: Result<usize, &'a RosterError>,
    /// Roster rows of the job's last run that reached a final state.
    pub last_good_roster: Option<u64>,
    pub members: usize,
    pub removals: usize,
    /// Members the roster cannot match (no email to match on).
    pub unmatched: usize,
    /// `[safety] max_batch_requests`.
    pub max_batch_requests: u64,
}

fn share(part: usize, whole: usize) -> f64 {
    part as f64 * 100.0 / whole.max(1) as f64
}

impl JobRails {
    /// The first rail the plan is over, in the order checked: the roster
    /// itself, then who the plan cannot match, then how many it removes.
    pub fn halt(&self, f: &PlanFacts<'_>) -> Option<Halt> {
        let rows = match f.roster {
            Err(e @ RosterError::MissingKey(_)) => {
                return Some(Halt::new(
                    HaltCode::RosterMissingKey,
                    format!("{e}; nothing was removed"),
                ));
            }
            Err(e) => {
                return Some(Halt::new(
                    HaltCode::RosterUnreadable,
                    format!("{e}; nothing was removed"),
                ));
            }
            Ok(rows) => rows,
        };
        if rows == 0 {
            return Some(Halt::new(
                HaltCode::EmptyRoster,
                "the roster is empty: an empty roster never means \"remove everyone\"",
            ));
        }
        if let Some(floor) = self.min_roster_rows.limit()
            && (rows as u64) < floor
        {
            return Some(Halt::new(
                HaltCode::MinRosterRows,
                format!("the roster has {rows} rows, fewer than min_roster_rows = {floor}"),
            ));
        }
        if let (Some(last), Some(ratio)) = (f.last_good_roster, self.min_roster_ratio.limit())
            && (rows as f64) < last as f64 * ratio
        {
            return Some(Halt::new(
                HaltCode::RosterShrunk,
                format!(
                    "the roster has {rows} rows, fewer than min_roster_ratio = {ratio} of the {last} rows of the job's last good run"
                ),
            ));
        }
        if let Some(pct) = self.max_unmatched_percent.limit()
            && f.unmatched > 0
            && share(f.unmatched, f.members) > pct
        {
            return Some(Halt::new(
                HaltCode::UnmatchedMembers,
                format!(
                    "{} of {} members ({:.1}%) have no email to match the roster on, over max_unmatched_percent = {pct}; they are never removed",
                    f.unmatched,
                    f.members,
                    share(f.unmatched, f.members)
                ),
            ));
        }
        if f.removals as u64 > f.max_batch_requests {
            return Some(Halt::new(
                HaltCode::MaxBatchRequests,
                format!(
                    "{} planned removals exceed [safety] max_batch_requests = {}",
                    f.removals, f.max_batch_requests
                ),
            ));
        }
        if let Some(cap) = self.max_removals.limit()
            && f.removals as u64 > cap
        {
            return Some(Halt::new(
                HaltCode::MaxRemovals,
                format!(
                    "{} planned removals exceed max_removals = {cap}",
                    f.removals
                ),
            ));
        }
        if let Some(pct) = self.max_removal_percent.limit()
            && f.removals > 0
            && share(f.removals, f.members) > pct
        {
            return Some(Halt::new(
                HaltCode::MaxRemovalPercent,
                format!(
                    "{} planned removals are {:.1}% of {} members, over max_removal_percent = {pct}",
                    f.removals,
                    share(f.removals, f.members),
                    f.members
                ),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(rows: usize, members: usize, removals: usize) -> PlanFacts<'static> {
        PlanFacts {
            roster: Ok(rows),
            last_good_roster: None,
            members,
            removals,
            unmatched: 0,
            max_batch_requests: 500,
        }
    }

    fn code(rails: &JobRails, f: &PlanFacts<'_>) -> Option<HaltCode> {
        rails.halt(f).map(|h| h.code)
    }

    #[test]
    fn a_one_row_roster_halts_with_no_rail_set() {
        let rails = JobRails::default();
        assert_eq!(
            code(&rails, &facts(1, 17, 16)),
            Some(HaltCode::MaxRemovalPercent)
        );
        assert_eq!(code(&rails, &facts(0, 17, 17)), Some(HaltCode::EmptyRoster));
        assert_eq!(code(&rails, &facts(100, 100, 3)), None, "3% is under 5%");
    }

    #[test]
    fn a_roster_that_shrank_against_the_last_good_run_halts() {
        let rails = JobRails::default();
        let mut f = facts(40, 100, 0);
        f.last_good_roster = Some(100);
        assert_eq!(code(&rails, &f), Some(HaltCode::RosterShrunk));
        f.roster = Ok(50);
        assert_eq!(code(&rails, &f), None, "exactly half is allowed");
        let off = JobRails {
            min_roster_ratio: Rail::Off,
            ..rails
        };
        f.roster = Ok(40);
        assert_eq!(code(&off, &f), None);
        let floor = JobRails {
            min_roster_rows: Rail::Limit(90),
            ..off
        };
        assert_eq!(
            code(&floor, &f),
            Some(HaltCode::MinRosterRows),
            "a floor always holds"
        );
    }

    #[test]
    fn unmatched_members_and_the_batch_cap_halt() {
        let rails = JobRails::default();
        let mut f = facts(100, 100, 0);
        f.unmatched = 2;
        assert_eq!(code(&rails, &f), Some(HaltCode::UnmatchedMembers));
        f.unmatched = 1;
        assert_eq!(code(&rails, &f), None, "1% is not over 1%");
        let all_off = JobRails {
            max_removal_percent: Rail::Off,
            ..rails
        };
        let big = facts(10_000, 10_000, 501);
        assert_eq!(code(&all_off, &big), Some(HaltCode::MaxBatchRequests));
    }

    #[test]
    fn rails_read_numbers_and_off() {
        #[derive(serde::Deserialize)]
        struct T {
            a: Rail<f64>,
            b: Rail<u64>,
            c: Rail<f64>,
        }
        let t: T = toml::from_str("a = \"off\"\nb = 3\nc = 2").unwrap();
        assert_eq!(
            (t.a, t.b, t.c),
            (Rail::Off, Rail::Limit(3), Rail::Limit(2.0))
        );
        assert!(toml::from_str::<T>("a = \"of\"\nb = 3\nc = 1").is_err());
        assert!(toml::from_str::<T>("a = 1\nb = 1.5\nc = 1").is_err());
    }
}
