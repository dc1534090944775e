//! The API's accept loop: axum's router on hyper's HTTP/1 connections,
//! with what `axum::serve` lacks — a deadline for a request's headers, a
//! cap on open connections, and a shutdown that waits for open requests
//! only so long. A client that sends half a request and stalls cannot hold
//! a connection, or `serve`'s exit, for as long as it likes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::HttpConfig;

/// The limits of [`serve`], from `[http]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From accepting a connection (or the end of its last answer) to the
    /// end of the next request's headers.
    pub header_read: Duration,
    /// Open connections at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// How long a stop waits for open requests before it closes them.
    pub shutdown_grace: Duration,
}

impl Limits {
    pub fn new(http: &HttpConfig) -> Limits {
        Limits {
            header_read: Duration::from_millis(http.header_read_timeout_ms),
            max_connections: http.max_connections,
            shutdown_grace: Duration::from_millis(http.shutdown_grace_ms),
        }
    }
}

/// Serves `app` on `listener` until `stop` resolves; then stops accepting,
/// lets open requests finish within the grace period, and closes the rest.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, close) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: give the open
                // connections a moment to end rather than spin.
                tracing::warn!(error = %e, "cannot accept an API connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        // The peer's address reaches the handlers: a trusted proxy's
        // header is believed only from the proxy's own addresses.
        let service = TowerToHyperService::new(
            app.clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
        );
        let header_read = limits.header_read;
        let mut close = close.clone();
        connections.spawn(async move {
            let _slot = slot;
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let closing = async move {
                let _ = close.wait_for(|c| *c).await;
            };
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = closing => {
                    // Finish the request in flight, take no other.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "closing API connections still open after the shutdown grace"
        );
        connections.shutdown().await;
    }
}

/// The answer to a connection over `max_connections`: 503 in our envelope,
/// then the connection is closed.
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"error":{"code":"too_many_connections","message":"the API has as many connections open as http.max_connections allows; try again shortly","details":{}}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
        // Reading what the client sent until it closes keeps the kernel
        // from resetting the connection under the answer.
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
