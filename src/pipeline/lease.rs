//! Keeps a request's claim alive while its steps run, so a long step is
//! never mistaken for a dead worker's; and says when the claim was lost
//! anyway (the lease lapsed, another worker took it), so the run stops at
//! once rather than at its next write.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::store::Store;

/// A claim being renewed.
pub(super) struct Lease {
    renewal: JoinHandle<()>,
    lost: oneshot::Receiver<()>,
}

impl Lease {
    /// Resolves once a renewal finds the claim held by another; never
    /// otherwise.
    pub(super) async fn lost(&mut self) {
        if (&mut self.lost).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Stops renewing (the run is over).
    pub(super) fn stop(self) {
        self.renewal.abort();
    }
}

/// Renews the claim every third of the lease until stopped.
pub(super) fn keep_alive(store: Store, request_id: &str, owner: &str, lease: Duration) -> Lease {
    let (id, owner) = (request_id.to_owned(), owner.to_owned());
    let period = (lease / 3).max(Duration::from_millis(200));
    let (tell, lost) = oneshot::channel();
    let renewal = tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.tick().await; // the first tick is immediate; the claim is fresh
        loop {
            tick.tick().await;
            match store.renew_claim(&id, &owner, lease).await {
                Ok(true) => {}
                Ok(false) => {
                    let _ = tell.send(());
                    return;
                }
                Err(e) => tracing::warn!(error = %e, request = %id, "cannot renew claim"),
            }
        }
    });
    Lease { renewal, lost }
}
