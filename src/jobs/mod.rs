//! Declarative jobs (`jobs/*.toml`) and what they run. A spec with `watch`
//! is a drop folder (run by [`crate::intake::dropfolder`]), one with
//! `schedule` a reconciliation ([`reconcile`]); both is an error. Specs are
//! loaded and validated at start, and a bad one is reported with its file
//! and key.

pub mod reconcile;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::Config;
use crate::intake::dropfolder::DropFolderSpec;
use reconcile::{JobRails, Rail, ReconcileSpec, RosterSource};

/// Every job of a jobs folder.
#[derive(Debug, Default)]
pub struct Jobs {
    pub dropfolders: Vec<DropFolderSpec>,
    pub reconciles: Vec<ReconcileSpec>,
}

impl Jobs {
    pub fn reconcile(&self, name: &str) -> Option<&ReconcileSpec> {
        self.reconciles.iter().find(|r| r.name == name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    name: Option<String>,
    // Drop folders.
    watch: Option<PathBuf>,
    poll_ms: Option<u64>,
    // Both.
    provider: Option<String>,
    #[serde(default)]
    dry_run: bool,
    /// Drop folders: each file a held preview.
    #[serde(default)]
    hold: bool,
    // Reconciliations.
    schedule: Option<String>,
    timezone: Option<String>,
    organization_id: Option<String>,
    roster: Option<RosterSource>,
    transfer_to_department_id: Option<String>,
    max_removals: Option<Rail<u64>>,
    max_removal_percent: Option<Rail<f64>>,
    min_roster_rows: Option<Rail<u64>>,
    min_roster_ratio: Option<Rail<f64>>,
    max_unmatched_percent: Option<Rail<f64>>,
}

impl SpecFile {
    /// The job's rails: each key given, or its default.
    fn rails(&self) -> JobRails {
        let d = JobRails::default();
        JobRails {
            max_removals: self.max_removals.unwrap_or(d.max_removals),
            max_removal_percent: self.max_removal_percent.unwrap_or(d.max_removal_percent),
            min_roster_rows: self.min_roster_rows.unwrap_or(d.min_roster_rows),
            min_roster_ratio: self.min_roster_ratio.unwrap_or(d.min_roster_ratio),
            max_unmatched_percent: self
                .max_unmatched_percent
                .unwrap_or(d.max_unmatched_percent),
        }
    }
}

/// A job spec that cannot be used, named by its file (and key).
#[derive(Debug, thiserror::Error)]
pub enum JobSpecError {
    /// The file cannot be read or is not TOML of a spec's shape.
    #[error("job spec {file}: {message}")]
    Unreadable { file: String, message: String },
    /// A key's value is refused.
    #[error("job spec {file}: `{key}`: {message}")]
    Invalid {
        file: String,
        key: &'static str,
        message: String,
    },
}

/// Loads and validates every `*.toml` in `dir`; a missing folder means no
/// jobs.
pub fn load(dir: &Path, config: &Config) -> Result<Jobs, JobSpecError> {
    let mut jobs = Jobs::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(jobs);
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let shown = path.display().to_string();
        let unreadable = |message: String| JobSpecError::Unreadable {
            file: shown.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| unreadable(e.to_string()))?;
        let spec: SpecFile =
            toml::from_str(&text).map_err(|e| unreadable(e.message().to_owned()))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = spec.name.clone().unwrap_or(stem);
        let err = |key: &'static str, msg: &str| JobSpecError::Invalid {
            file: shown.clone(),
            key,
            message: msg.to_owned(),
        };
        if let Some(p) = &spec.provider
            && !config.providers.contains_key(p)
        {
            return Err(err(
                "provider",
                &format!("{p:?} is not a configured provider connection"),
            ));
        }
        match (&spec.watch, &spec.schedule) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "schedule",
                    "a spec has `watch` or `schedule`, not both",
                ));
            }
            (None, None) => {
                return Err(err(
                    "watch",
                    "a spec needs `watch` (drop folder) or `schedule` (reconciliation)",
                ));
            }
            (Some(watch), None) => {
                if watch.as_os_str().is_empty() {
                    return Err(err("watch", "is empty"));
                }
                if spec.hold && spec.dry_run {
                    return Err(err("hold", "a spec has `hold` or `dry_run`, not both"));
                }
                jobs.dropfolders.push(DropFolderSpec {
                    name,
                    watch: watch.clone(),
                    provider: spec.provider,
                    dry_run: spec.dry_run,
                    hold: spec.hold,
                    poll: Duration::from_millis(spec.poll_ms.unwrap_or(1000).clamp(50, 60_000)),
                });
            }
            (None, Some(schedule)) => {
                if spec.hold {
                    return Err(err(
                        "hold",
                        "applies to drop folders; a reconciliation over a rail halts for approval",
                    ));
                }
                let rails = spec.rails();
                let r = ReconcileSpec::build(
                    name,
                    schedule,
                    &spec.timezone,
                    spec.provider,
                    spec.organization_id,
                    spec.roster,
                    spec.transfer_to_department_id,
                    rails,
                    spec.dry_run,
                    config,
                )
                .map_err(|(key, msg)| err(key, &msg))?;
                jobs.reconciles.push(r);
            }
        }
    }
    Ok(jobs)
}
