//! Drop folders: an HRIS exports CSV files into a watched folder; each file
//! is taken once it is complete, claimed by an atomic rename into
//! `processing/`, run as a batch, and moved to `done/` (or `failed/`) with a
//! report beside it. Files are known by content (sha-256), so a copy of an
//! already processed file is not run again, and a file left in
//! `processing/` by a crash is finished after a restart.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::{IntakeOptions, ProviderCatalog, SubmitError, submit_csv};
use crate::engine::Engine;
use crate::report::{ReportFile, csv_parts};
use crate::safe_fs;
use crate::store::{DropFileState, FIRST_REJECTED, Store, StoreError};

/// A drop-folder job spec (`jobs/NAME.toml` with `watch = …`).
#[derive(Debug, Clone)]
pub struct DropFolderSpec {
    pub name: String,
    pub watch: PathBuf,
    pub provider: Option<String>,
    pub dry_run: bool,
    /// Each file becomes a held preview, released by `offboard approve`;
    /// the file stays in `processing/` until its batch has run.
    pub hold: bool,
    pub poll: Duration,
}

/// The watched folder and its three subfolders.
struct Folders {
    inbox: PathBuf,
    processing: PathBuf,
    done: PathBuf,
    failed: PathBuf,
}

impl Folders {
    fn new(watch: &Path) -> std::io::Result<Self> {
        let f = Self {
            inbox: watch.to_path_buf(),
            processing: watch.join("processing"),
            done: watch.join("done"),
            failed: watch.join("failed"),
        };
        // A subfolder that is a link could lead every write of ours
        // anywhere: refused, the folder is not served.
        for d in [&f.processing, &f.done, &f.failed] {
            safe_fs::ensure_dir(d)?;
        }
        Ok(f)
    }
}

/// Watches one drop folder until `stop` turns true.
pub async fn run(engine: Arc<Engine>, spec: DropFolderSpec, mut stop: watch::Receiver<bool>) {
    let mut seen: HashMap<String, ((u64, SystemTime), u32)> = HashMap::new();
    loop {
        if let Err(e) = tick(&engine, &spec, &mut seen).await {
            tracing::warn!(job = %spec.name, error = %e, "drop folder pass failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(spec.poll) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Why a pass over a drop folder stopped; it is logged, and the next pass
/// tries again.
#[derive(Debug, thiserror::Error)]
enum DropFolderError {
    #[error("cannot prepare {dir}: {error}")]
    Prepare { dir: String, error: std::io::Error },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Submit(SubmitError),
    #[error("batch {batch} of {file} is missing")]
    BatchMissing { batch: String, file: String },
    #[error("cannot write {path}: {error}")]
    Write { path: String, error: std::io::Error },
}

/// Why a file in the inbox is not taken.
fn ignored(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part")
}

async fn tick(
    engine: &Engine,
    spec: &DropFolderSpec,
    seen: &mut HashMap<String, ((u64, SystemTime), u32)>,
) -> Result<(), DropFolderError> {
    let folders = Folders::new(&spec.watch).map_err(|error| DropFolderError::Prepare {
        dir: spec.watch.display().to_string(),
        error,
    })?;
    // Files claimed earlier (in this run or before a crash) first.
    for name in list_files(&folders.processing)? {
        advance(engine, spec, &folders, &name, false).await?;
    }
    let mut present = Vec::new();
    let entries = std::fs::read_dir(&folders.inbox).map_err(DropFolderError::from)?;
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            refuse(&folders, &entry.path(), "the file name is not valid UTF-8")?;
            continue;
        };
        if ignored(&name) {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() {
            refuse(&folders, &entry.path(), "symbolic links are refused")?;
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        if name.chars().any(char::is_control) {
            refuse(
                &folders,
                &entry.path(),
                "the file name has control characters",
            )?;
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let now = (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        present.push(name.clone());
        // Complete once passes in a row see the same size and mtime: two,
        // or ten when the file does not end with a line break (a writer
        // that paused mid-row would otherwise hand us a cut-off id).
        let needed = if ends_with_newline(&entry.path()) {
            2
        } else {
            10
        };
        match seen.get_mut(&name) {
            Some((state, count)) if *state == now => {
                *count += 1;
                if *count < needed {
                    continue;
                }
            }
            _ => {
                seen.insert(name, (now, 1));
                continue;
            }
        }
        seen.remove(&name);
        let target = unique(&folders.processing, &name);
        if std::fs::rename(entry.path(), &target).is_err() {
            continue; // taken by another process, or gone
        }
        let claimed = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or(name);
        tracing::info!(job = %spec.name, file = %claimed, "drop folder file taken");
        advance(engine, spec, &folders, &claimed, true).await?;
    }
    seen.retain(|name, _| present.contains(name));
    Ok(())
}

fn ends_with_newline(path: &Path) -> bool {
    use std::io::{Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut last = [0u8; 1];
    f.seek(SeekFrom::End(-1)).is_ok() && f.read_exact(&mut last).is_ok() && last[0] == b'\n'
}

fn list_files(dir: &Path) -> Result<Vec<String>, DropFolderError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(DropFolderError::from)?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// A path in `dir` for `name` where nothing is yet, not even a dangling
/// link.
fn unique(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !safe_fs::occupied(&first) {
        return first;
    }
    (1..)
        .map(|n| dir.join(format!("{name}.{n}")))
        .find(|p| !safe_fs::occupied(p))
        .unwrap_or(first)
}

fn refuse(folders: &Folders, path: &Path, why: &str) -> Result<(), DropFolderError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let safe: String = name
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    let target = unique(&folders.failed, &safe);
    // Renaming a symlink moves the link itself, never what it points to.
    std::fs::rename(path, &target).map_err(DropFolderError::from)?;
    let note = folders.failed.join(format!(
        "{}.errors.txt",
        target
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    safe_fs::write_new(&note, format!("refused: {why}\n").as_bytes())
        .map_err(DropFolderError::from)?;
    tracing::warn!(file = %safe, reason = why, "drop folder file refused");
    Ok(())
}

fn sha256_file(mut f: std::fs::File) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Moves a claimed file one step on: intake, then (once its batch has no
/// open request) the report and the move to `done/` or `failed/`.
async fn advance(
    engine: &Engine,
    spec: &DropFolderSpec,
    folders: &Folders,
    name: &str,
    fresh: bool,
) -> Result<(), DropFolderError> {
    let path = folders.processing.join(name);
    // The claiming rename moved whatever was at the name by then: a link
    // swapped in after the inbox's check is refused, never read through.
    let file = match safe_fs::open_regular(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            return refuse(folders, &path, "not a regular file (a symbolic link?)");
        }
        Err(e) => return Err(e.into()),
    };
    let sha = sha256_file(file).map_err(DropFolderError::from)?;
    let store = engine.store();
    let record = store.drop_file(&sha).await.map_err(DropFolderError::from)?;
    match record {
        Some(rec) if fresh || rec.state.is_finished() => {
            let target = unique(&folders.done, name);
            std::fs::rename(&path, &target).map_err(DropFolderError::from)?;
            let note = format!(
                "duplicate: the same content as {} was already taken (batch {}); no second batch was created\n",
                rec.file_name,
                rec.batch_id.as_deref().unwrap_or("-")
            );
            safe_fs::write_new(&sidecar(&target, "duplicate.txt"), note.as_bytes())
                .map_err(DropFolderError::from)?;
            tracing::info!(file = %name, "duplicate drop folder file");
            Ok(())
        }
        Some(rec) if rec.batch_id.is_some() => {
            finish_if_done(
                engine,
                spec,
                folders,
                name,
                &rec.sha256,
                rec.batch_id.as_deref().unwrap_or_default(),
            )
            .await
        }
        _ => {
            // New, or crashed before its batch was recorded: take it in now.
            // Requests deduplicate by key, so a partial earlier intake never
            // runs anyone twice.
            store
                .record_drop_file(&sha, &spec.name, name)
                .await
                .map_err(DropFolderError::from)?;
            intake(engine, spec, folders, name, &sha).await
        }
    }
}

fn sidecar(file: &Path, suffix: &str) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.with_file_name(format!("{name}.{suffix}"))
}

async fn intake(
    engine: &Engine,
    spec: &DropFolderSpec,
    folders: &Folders,
    name: &str,
    sha: &str,
) -> Result<(), DropFolderError> {
    let path = folders.processing.join(name);
    let store = engine.store();
    let config = engine.config();
    let fail = |why: String| -> Result<(), DropFolderError> {
        let target = unique(&folders.failed, name);
        std::fs::rename(&path, &target).map_err(DropFolderError::from)?;
        safe_fs::write_new(
            &sidecar(&target, "errors.txt"),
            format!("{why}\n").as_bytes(),
        )
        .map_err(DropFolderError::from)
    };
    let catalog = match ProviderCatalog::new(
        config,
        spec.provider.as_deref(),
        "provider = \"NAME\" in the job spec",
    ) {
        Ok(c) => c,
        Err(e) => {
            let why = format!("job {}: {e}", spec.name);
            notice_failed(store, spec, name, sha, None, &why).await?;
            fail(why)?;
            return store
                .update_drop_file(sha, None, DropFileState::Failed)
                .await
                .map_err(DropFolderError::from);
        }
    };
    let options = IntakeOptions {
        source: "dropfolder".into(),
        source_name: Some(format!("{}/{name}", spec.name)),
        dry_run: spec.dry_run,
        hold: spec.hold,
        dedupe_window: Some(config.intake.dedupe_window()),
        max_requests: Some(config.safety.max_batch_requests),
        actor: crate::domain::Actor::dropfolder(&spec.name),
        origin: "dropfolder",
    };
    let file = safe_fs::open_regular(&path).map_err(DropFolderError::from)?;
    match submit_csv(store, engine.queue(), &catalog, file, &options).await {
        Ok(summary) => {
            store
                .update_drop_file(sha, Some(&summary.batch_id), DropFileState::Running)
                .await
                .map_err(DropFolderError::from)?;
            tracing::info!(file = %name, batch = %summary.batch_id, "drop folder batch queued");
            Ok(())
        }
        Err(SubmitError::Input(e)) => {
            notice_failed(store, spec, name, sha, None, &e.to_string()).await?;
            fail(e.to_string())?;
            store
                .update_drop_file(sha, None, DropFileState::Failed)
                .await
                .map_err(DropFolderError::from)
        }
        Err(SubmitError::NoValidRow { batch_id, rejected }) => {
            let rows = store
                .report_window(&batch_id, FIRST_REJECTED)
                .await
                .map_err(DropFolderError::from)?;
            let mut text = format!("the CSV has no valid row ({rejected} rejected)\n");
            for r in &rows {
                text.push_str(&format!(
                    "line {}: {}: {}\n",
                    r.line, r.error_code, r.error_message
                ));
            }
            let why = format!("the CSV has no valid row ({rejected} rejected)");
            notice_failed(store, spec, name, sha, Some(&batch_id), &why).await?;
            fail(text)?;
            store
                .update_drop_file(sha, Some(&batch_id), DropFileState::Failed)
                .await
                .map_err(DropFolderError::from)
        }
        Err(e) => Err(DropFolderError::Submit(e)),
    }
}

async fn finish_if_done(
    engine: &Engine,
    spec: &DropFolderSpec,
    folders: &Folders,
    name: &str,
    sha: &str,
    batch_id: &str,
) -> Result<(), DropFolderError> {
    let store = engine.store();
    // Most looks find work still open: that takes reading up to the first
    // open entry, where the counts read every one.
    if store
        .first_open_entry(batch_id, 0)
        .await
        .map_err(DropFolderError::from)?
        .is_some()
    {
        return Ok(());
    }
    let Some(batch) = store.batch(batch_id).await.map_err(DropFolderError::from)? else {
        return Err(DropFolderError::BatchMissing {
            batch: batch_id.to_owned(),
            file: name.to_owned(),
        });
    };
    let counts = store
        .batch_counts(&batch)
        .await
        .map_err(DropFolderError::from)?;
    // A preview waits for its release, and then runs: done only after.
    if counts.open > 0 || counts.held > 0 {
        return Ok(());
    }
    // A cancelled batch (by a person, or a hold that expired) ran nothing.
    let failed = counts.failures() > 0
        || counts.rejected > 0
        || batch.stored_state == Some(crate::domain::StoredState::Cancelled);
    let dest = if failed {
        &folders.failed
    } else {
        &folders.done
    };
    if failed {
        let why = format!(
            "{} needs_attention, {} failed, {} dead, {} rejected{}",
            counts.needs_attention,
            counts.failed,
            counts.dead,
            counts.rejected,
            if batch.stored_state == Some(crate::domain::StoredState::Cancelled) {
                "; the batch was cancelled"
            } else {
                ""
            }
        );
        notice_failed(store, spec, name, sha, Some(batch_id), &why).await?;
    }
    let target = unique(dest, name);
    // The report comes last: once it is there, so is everything else.
    write_events_file(store, batch_id, &sidecar(&target, "events.json")).await?;
    write_report_file(store, batch_id, &sidecar(&target, "report.csv")).await?;
    std::fs::rename(folders.processing.join(name), &target).map_err(DropFolderError::from)?;
    store
        .update_drop_file(
            sha,
            None,
            if failed {
                DropFileState::Failed
            } else {
                DropFileState::Done
            },
        )
        .await
        .map_err(DropFolderError::from)?;
    tracing::info!(file = %name, batch = %batch_id, "drop folder file finished");
    Ok(())
}

/// Records `dropfolder.file_failed` for the file (once per content),
/// before it is moved to `failed/`: a crash after the record still tells.
async fn notice_failed(
    store: &Store,
    spec: &DropFolderSpec,
    name: &str,
    sha: &str,
    batch_id: Option<&str>,
    why: &str,
) -> Result<(), DropFolderError> {
    let notice = crate::store::Notice {
        kind: "dropfolder.file_failed",
        dedupe_key: format!("dropfolder.file_failed/{sha}"),
        batch_id: batch_id.map(str::to_owned),
        facts: serde_json::json!({
            "job": spec.name,
            "file": name,
            "sha256": sha,
            "error": why,
        }),
        problems: true,
    };
    store
        .record_notice(&notice)
        .await
        .map(|_| ())
        .map_err(DropFolderError::from)
}

/// Writes the batch's CSV report to `path` whole or not at all.
async fn write_report_file(
    store: &Store,
    batch_id: &str,
    path: &Path,
) -> Result<(), DropFolderError> {
    let parts = csv_parts(store.clone(), batch_id.to_owned());
    let written = async { ReportFile::create(path)?.write(parts).await }.await;
    written.map_err(|error| DropFolderError::Write {
        path: path.display().to_string(),
        error,
    })
}

/// Writes the batch's events (who submitted, halted, approved it) to
/// `path` as a JSON array, whole or not at all.
async fn write_events_file(
    store: &Store,
    batch_id: &str,
    path: &Path,
) -> Result<(), DropFolderError> {
    let events = store
        .events(batch_id)
        .await
        .map_err(DropFolderError::from)?;
    let mut json = serde_json::to_vec_pretty(&events).map_err(DropFolderError::from)?;
    json.push(b'\n');
    let parts: crate::report::Parts = Box::pin(futures::stream::once(async { Ok(json) }));
    let written = async { ReportFile::create(path)?.write(parts).await }.await;
    written.map_err(|error| DropFolderError::Write {
        path: path.display().to_string(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report that cannot be read whole leaves no file behind, not even
    /// a partial one.
    #[tokio::test]
    async fn a_report_that_fails_half_way_leaves_no_file() {
        let (dir, _url, store) = crate::store::scratch_store().await;
        let path = dir.path().join("leavers.csv.report.csv");
        write_report_file(&store, "b_none", &path).await.unwrap();
        let header = std::fs::read_to_string(&path).unwrap();
        assert!(header.starts_with("line,provider,"), "{header}");

        store.close().await;
        let again = dir.path().join("again.csv.report.csv");
        let error = write_report_file(&store, "b_none", &again)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("again.csv.report.csv"),
            "{error}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("again"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
