//! A batch's report read and written a page at a time, as CSV or JSON, so
//! a million-line batch never sits in memory whole. The HTTP report streams
//! the parts as its body; `offboard report` writes them out. A database
//! error ends the parts with that error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, StreamExt};

use super::{CsvReport, JsonReport};
use crate::store::{ReportRow, Store, StoreError};

/// Report lines per page, and so per part of a streamed report.
const PAGE: u32 = 1_000;

/// A streamed report's parts.
pub type Parts = std::pin::Pin<Box<dyn Stream<Item = Result<Vec<u8>, std::io::Error>> + Send>>;

/// The report's rows a page at a time, in line order (keyset on line). The
/// first page comes even when empty; a short page is the last.
fn pages(
    store: Store,
    batch_id: String,
) -> impl Stream<Item = Result<Vec<ReportRow>, StoreError>> + Send + 'static {
    // `Some(after)` while pages remain; `Some(None)` before the first.
    futures::stream::unfold(Some(None), move |state: Option<Option<u64>>| {
        let store = store.clone();
        let batch_id = batch_id.clone();
        async move {
            let after = state?;
            match store.report_page(&batch_id, None, after, PAGE).await {
                Ok(rows) => {
                    let next = (rows.len() == PAGE as usize).then(|| rows.last().map(|r| r.line));
                    Some((Ok(rows), next))
                }
                Err(e) => {
                    tracing::error!(batch = %batch_id, error = %e, "report stream failed");
                    Some((Err(e), None))
                }
            }
        }
    })
}

/// `parts` up to and including its first error: nothing is written after
/// a failure, so a consumer that goes on never closes a broken report.
pub fn until_error(
    parts: impl Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static,
) -> Parts {
    let mut failed = false;
    parts
        .take_while(move |part| {
            let go = !failed;
            failed = part.is_err();
            futures::future::ready(go)
        })
        .boxed()
}

/// The CSV report in parts, the header in the first.
pub fn csv_parts(store: Store, batch_id: String) -> Parts {
    let mut first = true;
    let parts = pages(store, batch_id).map(move |page| {
        let rows = page.map_err(std::io::Error::other)?;
        let mut part = Vec::new();
        let mut csv = if std::mem::take(&mut first) {
            CsvReport::new(&mut part)?
        } else {
            CsvReport::continued(&mut part)
        };
        csv.rows(&rows)?;
        csv.finish()?;
        Ok(part)
    });
    until_error(parts)
}

/// Why a report could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// The batch's whole JSON report in parts: its head (counts and events)
/// read now, its rows streamed a page at a time.
pub async fn json_report(
    store: &Store,
    batch: &crate::store::BatchRow,
    pretty: bool,
) -> Result<Parts, ReportError> {
    let counts = store.batch_counts(batch).await?;
    let events = store.events(&batch.id).await?;
    let head = JsonReport::head(batch, &counts, &events);
    Ok(json_parts(store.clone(), batch.id.clone(), &head, pretty)?)
}

/// The JSON report in parts: `head` (whose `rows` is ignored) with the
/// batch's rows streamed into its `rows` array. The bytes are the ones
/// `serde_json` writes for the whole report, pretty or compact.
pub fn json_parts(
    store: Store,
    batch_id: String,
    head: &JsonReport<'_>,
    pretty: bool,
) -> Result<Parts, serde_json::Error> {
    let JsonFrame {
        open,
        close_empty,
        close,
    } = json_frame(head, pretty)?;
    let any = Arc::new(AtomicBool::new(false));
    let seen = any.clone();
    let rows = pages(store, batch_id).map(move |page| {
        let rows = page.map_err(std::io::Error::other)?;
        let mut part = Vec::new();
        for row in &rows {
            let first = !seen.swap(true, Ordering::Relaxed);
            push_json_row(&mut part, row, first, pretty)?;
        }
        Ok(part)
    });
    let tail = futures::stream::once(async move {
        Ok(if any.load(Ordering::Relaxed) {
            close
        } else {
            close_empty
        })
    });
    Ok(until_error(
        futures::stream::once(async move { Ok(open) })
            .chain(rows)
            .chain(tail),
    ))
}

/// Appends `row` to the `rows` array as `serde_json` lays it out there.
fn push_json_row(
    part: &mut Vec<u8>,
    row: &ReportRow,
    first: bool,
    pretty: bool,
) -> Result<(), serde_json::Error> {
    if !first {
        part.push(b',');
    }
    if pretty {
        // A row sits two levels in; JSON strings hold no raw newline, so
        // every newline is layout.
        let text = serde_json::to_string_pretty(row)?;
        part.extend_from_slice(b"\n    ");
        part.extend_from_slice(text.replace('\n', "\n    ").as_bytes());
        Ok(())
    } else {
        serde_json::to_writer(part, row)
    }
}

/// What comes before the first row and after the last, cut from
/// `serde_json`'s own rendering of the report with no rows (`rows` is its
/// last field).
struct JsonFrame {
    open: Vec<u8>,
    /// After no row at all.
    close_empty: Vec<u8>,
    /// After the last of some rows.
    close: Vec<u8>,
}

fn json_frame(head: &JsonReport<'_>, pretty: bool) -> Result<JsonFrame, serde_json::Error> {
    let empty = JsonReport { rows: &[], ..*head };
    let text = if pretty {
        serde_json::to_string_pretty(&empty)?
    } else {
        serde_json::to_string(&empty)?
    };
    let cut = text.rfind('[').map_or(text.len(), |i| i + 1);
    let (open, close_empty) = text.split_at(cut);
    let close = if pretty {
        format!("\n  {close_empty}")
    } else {
        close_empty.to_owned()
    };
    Ok(JsonFrame {
        open: open.as_bytes().to_vec(),
        close_empty: close_empty.as_bytes().to_vec(),
        close: close.into_bytes(),
    })
}

/// A report file written whole or not at all: the parts go to a hidden
/// file beside `path`, which takes `path`'s place only once every part is
/// written and synced, so a failure half-way leaves no truncated report
/// for a person to trust.
pub struct ReportFile {
    path: PathBuf,
    partial: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl ReportFile {
    pub fn create(path: &Path) -> std::io::Result<ReportFile> {
        let (partial, file) = crate::safe_fs::create_partial(path)?;
        let file = std::io::BufWriter::new(file);
        Ok(ReportFile {
            path: path.to_owned(),
            partial,
            file,
        })
    }

    pub async fn write(mut self, parts: Parts) -> std::io::Result<()> {
        let written = async {
            write_parts(parts, &mut self.file).await?;
            self.file.flush()?;
            self.file.get_ref().sync_all()
        }
        .await;
        match written {
            Ok(()) => std::fs::rename(&self.partial, &self.path),
            Err(e) => {
                let _ = std::fs::remove_file(&self.partial);
                Err(e)
            }
        }
    }
}

/// Writes every part to `out`.
pub async fn write_parts<W: Write>(mut parts: Parts, out: &mut W) -> Result<(), std::io::Error> {
    while let Some(part) = parts.next().await {
        out.write_all(&part?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OutcomeCounts;

    fn row(line: u64) -> ReportRow {
        ReportRow {
            line,
            provider: "acme".into(),
            organization_id: "org_1".into(),
            user_id: format!("usr_{line}"),
            outcome: "succeeded".into(),
            roles_removed: vec!["r1".into(), "r\n2\"".into()],
            transfer_to_department_id: String::new(),
            attempts: 1,
            error_code: String::new(),
            error_message: "a \"quoted\"\nmessage".into(),
            request_id: "req".into(),
            batch_id: "b".into(),
            reason: String::new(),
            finished_at: String::new(),
        }
    }

    /// A part that failed is the last one: the JSON tail (or anything
    /// else) never follows it.
    #[tokio::test]
    async fn parts_end_at_the_first_error() {
        let parts = futures::stream::iter(vec![
            Ok(b"a".to_vec()),
            Err(std::io::Error::other("page 2")),
            Ok(b"]}".to_vec()),
        ]);
        let seen: Vec<_> = until_error(parts).collect().await;
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].as_ref().unwrap(), b"a");
        assert!(seen[1].is_err());
    }

    /// The frame and the row layout put together are byte for byte what
    /// `serde_json` writes for the whole report, with and without rows.
    #[test]
    fn streamed_json_equals_the_whole_report() {
        let counts = OutcomeCounts::default();
        for n in [0, 1, 3] {
            let rows: Vec<ReportRow> = (2..2 + n).map(row).collect();
            // An event whose detail holds brackets, before the rows.
            let events = [crate::domain::BatchEvent {
                at: "2026-12-06T00:00:00.000Z".into(),
                actor: "cli:a@h".into(),
                action: crate::domain::EventAction::Approved,
                detail: serde_json::json!({"only": ["[x]"]}),
            }];
            let report = JsonReport {
                batch_id: "b",
                state: "done",
                counts: &counts,
                halt_code: None,
                halt_reason: None,
                events: &events,
                rows: &rows,
            };
            for pretty in [true, false] {
                let frame = json_frame(&report, pretty).unwrap();
                let mut streamed = frame.open;
                for (i, r) in rows.iter().enumerate() {
                    push_json_row(&mut streamed, r, i == 0, pretty).unwrap();
                }
                streamed.extend(if rows.is_empty() {
                    frame.close_empty
                } else {
                    frame.close
                });
                let whole = if pretty {
                    serde_json::to_string_pretty(&report).unwrap()
                } else {
                    serde_json::to_string(&report).unwrap()
                };
                assert_eq!(
                    String::from_utf8(streamed).unwrap(),
                    whole,
                    "{n} rows, pretty {pretty}"
                );
            }
        }
    }
}
