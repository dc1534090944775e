//! A batch's CSV report read and written a page at a time.

use std::io::Write;

use futures::StreamExt;

use super::CsvReport;
use crate::store::Store;

/// Report lines per part of a streamed CSV report.
const CSV_PAGE: u32 = 1_000;

/// The CSV report in parts of a page of lines each (keyset on line), the
/// header in the first, so a million-line batch never sits in memory whole.
/// The HTTP report streams the parts as its body; `offboard report` writes
/// them out. A database error ends the parts with that error.
pub fn csv_parts(
    store: Store,
    batch_id: String,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    // `Some(after)` while lines remain; `Some(None)` before the first page.
    futures::stream::unfold(Some(None), move |state: Option<Option<u64>>| {
        let store = store.clone();
        let batch_id = batch_id.clone();
        async move {
            let after = state?;
            let rows = match store.report_after(&batch_id, after, CSV_PAGE).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(batch = %batch_id, error = %e, "report stream failed");
                    return Some((Err(std::io::Error::other(e)), None));
                }
            };
            if rows.is_empty() && after.is_some() {
                return None;
            }
            let mut part = Vec::new();
            let written = match after {
                None => CsvReport::new(&mut part),
                Some(_) => Ok(CsvReport::continued(&mut part)),
            }
            .and_then(|mut csv| csv.rows(&rows).and_then(|()| csv.finish()));
            if let Err(e) = written {
                return Some((Err(std::io::Error::other(e)), None));
            }
            let next = rows.last().map(|r| Some(r.line));
            Some((Ok(part), next))
        }
    })
}

/// Writes the whole CSV report to `out`, a part at a time.
pub async fn write_csv_report<W: Write>(
    store: &Store,
    batch_id: &str,
    out: &mut W,
) -> Result<(), std::io::Error> {
    let mut parts = std::pin::pin!(csv_parts(store.clone(), batch_id.to_owned()));
    while let Some(part) = parts.next().await {
        out.write_all(&part?)?;
    }
    Ok(())
}
