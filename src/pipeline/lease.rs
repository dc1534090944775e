//! Keeps a request's claim alive while its steps run, so a long step is
//! never mistaken for a dead worker's.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::store::Store;

/// Renews the claim every third of the lease until aborted.
pub fn keep_alive(store: Store, request_id: &str, owner: &str, lease: Duration) -> JoinHandle<()> {
    let (id, owner) = (request_id.to_owned(), owner.to_owned());
    let period = (lease / 3).max(Duration::from_millis(200));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.tick().await; // the first tick is immediate; the claim is fresh
        loop {
            tick.tick().await;
            match store.renew_claim(&id, &owner, lease).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => tracing::warn!(error = %e, request = %id, "cannot renew claim"),
            }
        }
    })
}
