//! Streaming CSV reader: header detection, then records in chunks, each
//! record either accepted or rejected with its line number. A file is never
//! held in memory whole; the people it names so far are kept on disk
//! ([`super::people`]).

use std::io::{BufRead, BufReader, Cursor, Read};

use super::header::{Column, ColumnMap, detect_delimiter};
use super::people::{PeopleError, SeenPeople};
use super::row::ProviderCatalog;
use crate::domain::Rejection;
use crate::domain::{RowFields, truncate};
use crate::store::{IntakeChunk, RejectedRow};

/// The input as a whole cannot be used (exit code 2), or, for `People`
/// only, intake's own scratch database failed (`SubmitError::People`, an
/// internal error).
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("cannot read the CSV input: {0}")]
    Io(#[from] std::io::Error),
    #[error("the CSV input is empty: a header row is required")]
    Empty,
    #[error("the CSV header is not valid UTF-8")]
    HeaderEncoding,
    #[error("bad CSV header: {0}")]
    Header(String),
    #[error("CSV parse error at line {line}: {message}")]
    Parse { line: u64, message: String },
    /// Not the input's fault; `SubmitError`'s `From` keeps it apart.
    #[error(transparent)]
    People(#[from] PeopleError),
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The header line read ahead for sniffing, put back before the rest.
type Source<R> = LineIndex<std::io::Chain<Cursor<Vec<u8>>, BufReader<R>>>;

/// Reads a CSV stream chunk by chunk.
pub struct CsvIntake<'c, R: Read> {
    reader: csv::Reader<Source<R>>,
    columns: ColumnMap,
    catalog: &'c ProviderCatalog,
    record: csv::ByteRecord,
    /// Every person an accepted row names, to refuse a second row for them.
    people: SeenPeople,
    /// Rows of nothing but delimiters and spaces, skipped so far.
    blank_rows: u64,
    done: bool,
}

impl<'c, R: Read> CsvIntake<'c, R> {
    /// Reads and checks the header row.
    pub fn new(input: R, catalog: &'c ProviderCatalog) -> Result<Self, IntakeError> {
        let mut buffered = BufReader::with_capacity(64 * 1024, input);
        let mut first = read_header_line(&mut buffered)?;
        if first.starts_with(UTF8_BOM) {
            first.drain(..UTF8_BOM.len());
        }
        if first.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(IntakeError::Empty);
        }
        let delimiter = detect_delimiter(&first);
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .has_headers(true)
            .from_reader(LineIndex::new(Cursor::new(first).chain(buffered)));
        let headers = reader
            .byte_headers()
            .map_err(|e| IntakeError::Header(e.to_string()))?
            .clone();
        let cells: Vec<&str> = headers
            .iter()
            .map(std::str::from_utf8)
            .collect::<Result<_, _>>()
            .map_err(|_| IntakeError::HeaderEncoding)?;
        let columns = ColumnMap::from_headers(cells.into_iter())
            .map_err(|e| IntakeError::Header(e.to_string()))?;
        Ok(Self {
            reader,
            columns,
            catalog,
            record: csv::ByteRecord::new(),
            people: SeenPeople::new()?,
            blank_rows: 0,
            done: false,
        })
    }

    /// Reads up to `max_rows` records; `None` at the end of the input.
    pub fn next_chunk(&mut self, max_rows: usize) -> Result<Option<IntakeChunk>, IntakeError> {
        if self.done {
            return Ok(None);
        }
        let mut chunk = IntakeChunk::default();
        let mut rows = 0;
        while rows < max_rows {
            let more = self
                .reader
                .read_byte_record(&mut self.record)
                .map_err(|e| {
                    let line = e.position().map_or(0, |p| p.line());
                    IntakeError::Parse {
                        line,
                        message: e.to_string(),
                    }
                })?;
            if !more {
                self.done = true;
                break;
            }
            // The csv crate's own line counter skips blank lines and CRLF
            // ends; reports need the physical line.
            let byte = self.record.position().map_or(0, |p| p.byte());
            let line = self.reader.get_mut().line_at(byte);
            if self
                .record
                .iter()
                .all(|c| c.iter().all(u8::is_ascii_whitespace))
            {
                // Spreadsheets export empty rows as `,,,`: layout, not
                // requests, but counted so that none vanishes unseen.
                self.blank_rows += 1;
                continue;
            }
            rows += 1;
            let (row, echo) = match self.check_record(line) {
                Ok(checked) => checked,
                Err((rejection, echo)) => {
                    chunk.rejected.push(rejected_row(line, rejection, echo));
                    continue;
                }
            };
            match self.people.refusal(&row.target, line)? {
                None => chunk.accepted.push(row),
                Some(repeat) => chunk.rejected.push(rejected_row(line, repeat, echo)),
            }
        }
        if rows == 0 && self.done {
            return Ok(None);
        }
        Ok(Some(chunk))
    }

    /// Rows of only delimiters and spaces skipped so far.
    pub fn blank_rows(&self) -> u64 {
        self.blank_rows
    }

    /// The record as a row, or why it is refused; either way with the ids
    /// it gave, as a report echoes them.
    fn check_record(
        &self,
        line: u64,
    ) -> Result<(crate::store::AcceptedRow, Echo), (Rejection, Echo)> {
        let record = &self.record;
        let cell = |col: Column| -> Result<Option<&str>, Rejection> {
            let Some(i) = self.columns.get(col) else {
                return Ok(None);
            };
            let Some(raw) = record.get(i) else {
                return Ok(None);
            };
            let text = std::str::from_utf8(raw).map_err(|_| {
                Rejection::new(
                    "invalid_encoding",
                    format!("column {} is not valid UTF-8", col.name()),
                )
            })?;
            // PostgreSQL's text cannot hold a NUL byte; refused here, a row
            // never reaches the database as an error.
            if text.contains('\0') {
                return Err(Rejection::new(
                    "invalid_encoding",
                    format!("column {} contains a NUL byte", col.name()),
                ));
            }
            let text = text.trim();
            Ok((!text.is_empty()).then_some(text))
        };
        let fields = (|| -> Result<RowFields<'_>, Rejection> {
            Ok(RowFields {
                user_id: cell(Column::UserId)?,
                email: cell(Column::Email)?,
                organization_id: cell(Column::OrganizationId)?,
                provider: cell(Column::Provider)?,
                transfer_to_department_id: cell(Column::TransferToDepartmentId)?,
                reason: cell(Column::Reason)?,
                effective_at: cell(Column::EffectiveAt)?,
            })
        })();
        let fields = match fields {
            Ok(f) => f,
            Err(r) => return Err((r, (None, None, None))),
        };
        let echo = |s: Option<&str>| s.map(truncate);
        let context = (
            echo(fields.provider),
            echo(fields.organization_id),
            echo(fields.user_id.or(fields.email)),
        );
        match self.catalog.accept(line, &fields) {
            Ok(row) => Ok((row, context)),
            Err(r) => Err((r, context)),
        }
    }
}

/// Longest header line read; past it the input is no CSV we can use.
const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// The header line up to and with its line break, which may be CR, LF or
/// CRLF (its LF then starts the next read): a file of bare-CR rows must not
/// be read whole as one "line".
fn read_header_line<R: Read>(input: &mut BufReader<R>) -> Result<Vec<u8>, IntakeError> {
    let mut line = Vec::new();
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(line);
        }
        let (take, ended) = match buf.iter().position(|b| *b == b'\n' || *b == b'\r') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        input.consume(take);
        if ended {
            return Ok(line);
        }
        if line.len() > MAX_HEADER_BYTES {
            return Err(IntakeError::Header(format!(
                "the first line is longer than {MAX_HEADER_BYTES} bytes"
            )));
        }
    }
}

/// A row's provider, organization and user (or e-mail) as given, cut short.
type Echo = (Option<String>, Option<String>, Option<String>);

fn rejected_row(line: u64, rejection: Rejection, echo: Echo) -> RejectedRow {
    RejectedRow {
        line,
        code: rejection.code.to_owned(),
        message: rejection.message,
        provider: echo.0,
        organization_id: echo.1,
        user_id: echo.2,
    }
}

/// Remembers where line breaks are in the bytes read ahead by the CSV
/// parser, so a record's byte offset maps to its physical line. The parser
/// reports a record as starting at the line break(s) before it (CRLF, blank
/// lines), so those are skipped. Only breaks past the last asked-for offset
/// are kept: memory stays bounded by the read-ahead.
///
/// A line ends at CRLF, a bare LF or a bare CR (old Mac exports), as the
/// CSV parser reads them, so a file mixing them still numbers every record
/// on a line of its own.
struct LineIndex<R> {
    inner: R,
    read: u64,
    /// Offsets of `\r` and `\n` bytes, with whether each ends a line (an
    /// LF right after a CR is the same line break).
    breaks: std::collections::VecDeque<(u64, bool)>,
    passed: u64,
    /// The last byte read was a CR (its LF may come in the next read).
    after_cr: bool,
}

impl<R> LineIndex<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            read: 0,
            breaks: std::collections::VecDeque::new(),
            passed: 0,
            after_cr: false,
        }
    }

    /// 1-based line of the first byte at or after `offset` that is not a
    /// line break; offsets must not decrease.
    fn line_at(&mut self, offset: u64) -> u64 {
        let mut pos = offset;
        while let Some(&(at, ends_line)) = self.breaks.front() {
            if at > pos {
                break;
            }
            if at == pos {
                pos += 1;
            }
            self.breaks.pop_front();
            if ends_line {
                self.passed += 1;
            }
        }
        self.passed + 1
    }
}

impl<R: Read> Read for LineIndex<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for (i, b) in buf[..n].iter().enumerate() {
            let at = self.read + i as u64;
            match *b {
                b'\r' => self.breaks.push_back((at, true)),
                b'\n' => self.breaks.push_back((at, !self.after_cr)),
                _ => {}
            }
            self.after_cr = *b == b'\r';
        }
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
