//! An upload's body as the handler reads it: under a limit on the whole
//! body (multipart part headers included, not only the file), with what
//! the handler left unread discarded after its answer, up to a bound, so a
//! client still sending (Python's urllib and requests do) reads a 413
//! rather than a broken pipe.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::Frame;
use http_body_util::{BodyExt, Limited};

/// Multipart framing allowed beyond `max_upload_bytes`: boundaries and the
/// part headers of a form with one file.
pub(super) const MULTIPART_ALLOWANCE: u64 = 64 * 1024;

/// Longest a rejected upload's rest is read for.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The request body, shared between the handler's limited view and the
/// drain after its answer.
#[derive(Clone)]
pub(super) struct Upload {
    inner: Arc<Mutex<Body>>,
}

impl Upload {
    pub(super) fn new(body: Body) -> Upload {
        Upload {
            inner: Arc::new(Mutex::new(body)),
        }
    }

    /// The body for the handler: an error once more than `limit` bytes
    /// arrive (`is_too_large` recognises it).
    pub(super) fn limited(&self, limit: u64) -> Body {
        Body::new(Limited::new(self.clone(), limit as usize))
    }

    /// Reads and discards what is left, up to `max_bytes` or 10 s.
    pub(super) async fn drain(mut self, max_bytes: u64) {
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            let mut read = 0u64;
            while let Some(Ok(frame)) = self.frame().await {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if read > max_bytes {
                    break;
                }
            }
        })
        .await;
    }
}

impl http_body::Body for Upload {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut body = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Pin::new(&mut *body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_end_stream()
    }
}

/// Whether a body read failed because the body passed its limit.
pub(super) fn is_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
}
