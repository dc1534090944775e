//! Getting offboarding requests in: CSV files (streamed, validated row by
//! row) and, later, drop folders and schedules.

pub mod csv;
pub mod dropfolder;
pub mod header;
pub mod people;
pub mod row;
pub mod submit;

pub use self::csv::{CsvIntake, IntakeError};
pub use row::{ProviderCatalog, RowFields};
pub use submit::{IntakeOptions, IntakeSummary, SubmitError, submit_csv};
