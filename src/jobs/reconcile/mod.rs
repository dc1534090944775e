//! Scheduled reconciliation: compare the HR roster (who should be a
//! member) with the provider's members, and offboard the drift — behind
//! rails that halt before the first change when the plan looks wrong.

mod plan;
pub mod rails;
mod roster;
pub mod schedule;

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::Config;
use crate::connectors::{capabilities, kinds_that};
use crate::domain::ids::check_safe;
use crate::engine::Engine;

pub use plan::{ReconcileError, ReconcileResult, Trigger, reconcile};
pub use rails::{JobRails, Rail};
pub use roster::{RosterError, read_roster};

/// Which member field the roster lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchOn {
    #[default]
    Email,
    UserId,
}

/// Where the roster comes from: a CSV file, or a URL answering CSV.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterSource {
    pub csv: Option<PathBuf>,
    pub url: Option<String>,
    /// Variable holding a bearer token for `url`.
    pub token_env: Option<String>,
    #[serde(default)]
    pub match_on: MatchOn,
    /// Lets `url` be `http://` to another host (the roster and its token
    /// then travel in clear text; `offboard check` warns).
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// A validated reconciliation job.
#[derive(Debug, Clone)]
pub struct ReconcileSpec {
    pub name: String,
    pub schedule: cron::Schedule,
    pub timezone: chrono_tz::Tz,
    pub provider: String,
    pub organization_id: String,
    pub roster: RosterSource,
    pub transfer_to_department_id: Option<String>,
    pub rails: JobRails,
    pub dry_run: bool,
}

type SpecError = (&'static str, String);

impl ReconcileSpec {
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        name: String,
        schedule: &str,
        timezone: &Option<String>,
        provider: Option<String>,
        organization_id: Option<String>,
        roster: Option<RosterSource>,
        transfer_to_department_id: Option<String>,
        rails: JobRails,
        dry_run: bool,
        config: &Config,
    ) -> Result<Self, SpecError> {
        check_safe(&name, &['.']).map_err(|e| ("name", format!("the job name {e}")))?;
        let schedule = schedule::parse_cron(schedule).map_err(|e| {
            (
                "schedule",
                format!("not a cron expression (5 fields, or 6 with seconds first): {e}"),
            )
        })?;
        let timezone = match timezone.as_deref() {
            None => chrono_tz::UTC,
            Some(tz) => tz
                .parse()
                .map_err(|_| ("timezone", format!("unknown time zone {tz:?}")))?,
        };
        let provider = provider.ok_or(("provider", "is required".to_owned()))?;
        let kind = config.providers.get(&provider).map(|p| p.kind());
        if let Some(kind) = kind
            && !capabilities(kind).list_members
        {
            return Err((
                "provider",
                format!(
                    "{} cannot list organization members, so it cannot be reconciled",
                    kind.as_str()
                ),
            ));
        }
        let organization_id =
            organization_id.ok_or(("organization_id", "is required".to_owned()))?;
        check_safe(&organization_id, &['.', '@', ':'])
            .map_err(|e| ("organization_id", format!("{organization_id:?} {e}")))?;
        let roster = roster.ok_or(("roster", "is required (csv = … or url = …)".to_owned()))?;
        match (&roster.csv, &roster.url) {
            (Some(_), None) => {}
            (None, Some(url)) => {
                let url = reqwest::Url::parse(url)
                    .map_err(|e| ("roster", format!("url is not a URL: {e}")))?;
                crate::config::check_transport(&url, roster.allow_insecure_http)
                    .map_err(|m| ("roster", format!("url {m}")))?;
            }
            _ => return Err(("roster", "give exactly one of csv or url".into())),
        }
        if let Some(d) = &transfer_to_department_id {
            if !kind.is_some_and(|k| capabilities(k).transfer_resources) {
                return Err((
                    "transfer_to_department_id",
                    format!(
                        "only {} can transfer resources",
                        kinds_that(|c| c.transfer_resources).join(" and ")
                    ),
                ));
            }
            crate::domain::ids::check_prefixed(d, "dept_")
                .map_err(|e| ("transfer_to_department_id", format!("{d:?} {e}")))?;
        }
        rails.validate()?;
        Ok(Self {
            name,
            schedule,
            timezone,
            provider,
            organization_id,
            roster,
            transfer_to_department_id,
            rails,
            dry_run,
        })
    }
}

/// Why a reconciliation's roster could not be read again.
#[derive(Debug, thiserror::Error)]
pub enum StillWantedError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Spec(#[from] super::JobSpecError),
    #[error("job {name} of batch {batch} is no longer in {dir}")]
    JobGone {
        name: String,
        batch: String,
        dir: String,
    },
    #[error(transparent)]
    Roster(#[from] RosterError),
    #[error("provider {0} is not configured")]
    UnknownProvider(String),
    #[error(transparent)]
    Listing(crate::connectors::StepError),
}

/// For a reconciliation batch: the members the job's roster wants, read
/// again now (as user ids), so that an approval or a retry leaves them
/// alone; nobody for other batches. The job specs are read from `jobs_dir`,
/// or from `[jobs] dir` when `None`.
pub async fn still_wanted(
    engine: &Engine,
    batch_id: &str,
    jobs_dir: Option<&std::path::Path>,
) -> Result<HashSet<String>, StillWantedError> {
    let store = engine.store();
    let Some(batch) = store.batch(batch_id).await? else {
        return Ok(HashSet::new());
    };
    if batch.source != "reconcile" {
        return Ok(HashSet::new());
    }
    let config = engine.config();
    let configured = std::path::PathBuf::from(&config.jobs.dir);
    let jobs_dir = jobs_dir.unwrap_or(&configured);
    let jobs = super::load(jobs_dir, config)?;
    let name = batch.source_name.unwrap_or_default();
    let spec = jobs
        .reconcile(&name)
        .ok_or_else(|| StillWantedError::JobGone {
            name: name.clone(),
            batch: batch_id.to_owned(),
            dir: jobs_dir.display().to_string(),
        })?;
    let roster = read_roster(&spec.roster).await?;
    let wanted: HashSet<String> = match spec.roster.match_on {
        MatchOn::UserId => roster,
        MatchOn::Email => {
            // The plan holds provider ids: read their emails again.
            let connector = engine
                .connector(&spec.provider)
                .ok_or_else(|| StillWantedError::UnknownProvider(spec.provider.clone()))?;
            let cx = crate::connectors::CallContext::default();
            let org = crate::domain::OrgId::new_unchecked(spec.organization_id.clone());
            let members = connector
                .list_members(&cx, &org)
                .await
                .map_err(StillWantedError::Listing)?;
            members
                .into_iter()
                .filter(|m| {
                    m.email
                        .as_deref()
                        .is_some_and(|e| roster.contains(&e.trim().to_ascii_lowercase()))
                })
                .map(|m| m.user_id)
                .collect()
        }
    };
    Ok(wanted)
}
