//! Getting offboarding requests in: CSV files (streamed, validated row by
//! row, each provider's columns checked by its connector), the people a
//! file names, drop folders (`jobs/*.toml` with `watch`), and the hand-off
//! of a stored batch to the queue.

pub mod csv;
pub mod dropfolder;
pub mod header;
pub mod people;
pub mod row;
pub mod submit;

pub use self::csv::{CsvIntake, IntakeError};
pub use row::ProviderCatalog;
pub use submit::{IntakeOptions, IntakeSummary, SubmitError, submit_csv};
