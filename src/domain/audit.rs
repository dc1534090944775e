//! The record of one outbound provider call attempt, and the clock that
//! stamps it: what the connectors' shared client writes and the store keeps.

/// One provider call attempt, as recorded. Never a header or a token.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEvent {
    pub request_id: Option<String>,
    pub provider: String,
    pub method: String,
    pub path: String,
    /// `None` when no answer came (timeout, reset, refused).
    pub status: Option<u16>,
    pub error_code: Option<String>,
    pub attempt: u32,
    pub latency_ms: u64,
    /// Unix ms when the call started.
    pub at: i64,
}

/// Milliseconds since the Unix epoch, the timestamp unit of every table.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
