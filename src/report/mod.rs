//! Batch reports as CSV (spreadsheet-safe) or JSON.

pub mod status;
mod stream;

pub use stream::{
    Parts, ReportError, ReportFile, csv_parts, json_parts, json_report, until_error, write_parts,
};

use std::io::Write;

use crate::domain::{BatchEvent, HaltCode, OutcomeCounts};
use crate::store::{BatchRow, ReportRow, Store};

/// Report CSV columns, in order (the ten, then `../shared/conventions.md`'s).
pub const COLUMNS: [&str; 14] = [
    "line",
    "provider",
    "organization_id",
    "user_id",
    "outcome",
    "roles_removed",
    "transfer_to_department_id",
    "attempts",
    "error_code",
    "error_message",
    "request_id",
    "batch_id",
    "reason",
    "finished_at",
];

/// A cell that a spreadsheet would read as a formula gets a leading `'`.
/// Tab and carriage return are included: some spreadsheets strip them and
/// then evaluate what follows.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// A CSV report written a page of rows at a time, so a million-line batch
/// never sits in memory whole.
pub struct CsvReport<W: Write> {
    writer: csv::Writer<W>,
}

impl<W: Write> CsvReport<W> {
    /// Starts the report with its header.
    pub fn new(out: W) -> Result<Self, csv::Error> {
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record(COLUMNS)?;
        Ok(CsvReport { writer })
    }

    /// Goes on with a report whose header an earlier part already wrote.
    pub fn continued(out: W) -> Self {
        CsvReport {
            writer: csv::Writer::from_writer(out),
        }
    }

    pub fn rows(&mut self, rows: &[ReportRow]) -> Result<(), csv::Error> {
        for r in rows {
            let line = r.line.to_string();
            let attempts = r.attempts.to_string();
            let roles = r.roles_removed.join(";");
            let cells = [
                line.as_str(),
                &r.provider,
                &r.organization_id,
                &r.user_id,
                &r.outcome,
                &roles,
                &r.transfer_to_department_id,
                &attempts,
                &r.error_code,
                &r.error_message,
                &r.request_id,
                &r.batch_id,
                &r.reason,
                &r.finished_at,
            ];
            self.writer
                .write_record(cells.iter().map(|c| neutralise(c).into_owned()))?;
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<(), csv::Error> {
        self.writer.flush()?;
        Ok(())
    }
}

/// The JSON report: batch, state, counts, the halt and events, and rows
/// (`json_parts` streams the rows into it; they come last).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct JsonReport<'a> {
    pub batch_id: &'a str,
    pub state: &'a str,
    pub counts: &'a OutcomeCounts,
    /// The rail a halted batch waits on.
    pub halt_code: Option<HaltCode>,
    pub halt_reason: Option<&'a str>,
    /// Who did what to the batch, oldest first.
    pub events: &'a [BatchEvent],
    pub rows: &'a [ReportRow],
}

impl<'a> JsonReport<'a> {
    /// The report's head for `batch`, without rows.
    pub fn head(
        batch: &'a BatchRow,
        counts: &'a OutcomeCounts,
        events: &'a [BatchEvent],
    ) -> JsonReport<'a> {
        JsonReport {
            batch_id: &batch.id,
            state: Store::batch_state(batch, counts).as_str(),
            counts,
            halt_code: batch.halt_code,
            halt_reason: batch.halt_reason.as_deref(),
            events,
            rows: &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(neutralise("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise("+1"), "'+1");
        assert_eq!(neutralise("-2"), "'-2");
        assert_eq!(neutralise("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise("usr_1"), "usr_1");
        assert_eq!(neutralise(""), "");
    }
}
