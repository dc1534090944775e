//! The offboarding domain: identifiers, outcomes, steps, the shape of a
//! request, a batch's stored and derived states, a CSV record's cells and
//! the audit event of one provider call. Nothing here knows about HTTP,
//! SQL or files; every other module may use it.

pub mod audit;
pub mod batch;
pub mod ids;
pub mod outcome;
pub mod protection;
pub mod request;
pub mod role;
pub mod row;
pub mod step;
pub mod undo;

pub use audit::{AuditEvent, now_ms};
pub use batch::{Actor, BatchEvent, EventAction, Halt, HaltCode, StoredState};
pub use ids::{DepartmentId, IdError, OrgId, ProviderName, RoleId, UserId};
pub use outcome::{BatchState, Outcome, OutcomeCounts};
pub use protection::{IdCase, Protection};
pub use request::{IdempotencyKey, Rejection, RunMode, Target};
pub use role::{Role, check_token_name};
pub use row::{RowFields, truncate};
pub use step::Step;
pub use undo::{Removal, Restore};
