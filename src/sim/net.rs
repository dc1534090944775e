//! A TCP listener whose connections can be reset from inside a handler.
//!
//! axum offers no way to answer "no HTTP response at all", which is what a
//! connection reset looks like to a client. Each accepted stream therefore
//! carries a flag that handlers reach through `ConnectInfo<Connection>`. Once
//! the flag is set, the stream sets `SO_LINGER` to zero and fails every read
//! and write, so hyper gives up on the connection without writing a byte and
//! dropping the socket sends a TCP RST.

use axum::extract::Request;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Accepts TCP connections whose streams can be reset on demand.
pub(crate) struct ResettableListener(pub TcpListener);

impl Listener for ResettableListener {
    type Io = ResettableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = Listener::accept(&mut self.0).await;
        // Small JSON answers must not wait for Nagle's algorithm on loopback.
        let _ = stream.set_nodelay(true);
        let reset = Arc::new(AtomicBool::new(false));
        (ResettableStream { stream, reset }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A TCP stream that fails all I/O once its connection has been marked for reset.
pub(crate) struct ResettableStream {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl ResettableStream {
    fn check(&self) -> io::Result<()> {
        if self.reset.load(Ordering::Acquire) {
            // Zero linger turns the coming close into a RST instead of a FIN.
            let _ = self.stream.set_zero_linger();
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        Ok(())
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

/// The handle a request holds on its connection.
#[derive(Clone, Debug)]
pub(crate) struct Connection(Arc<AtomicBool>);

impl Connected<IncomingStream<'_, ResettableListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, ResettableListener>) -> Self {
        Connection(stream.io().reset.clone())
    }
}

/// Marks a response that never reached the client, for the call log.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NoAnswer;

/// Reset the request's connection; the returned response is never written.
pub(crate) fn drop_connection(req: &Request) -> Response {
    if let Some(ConnectInfo(Connection(reset))) = req.extensions().get::<ConnectInfo<Connection>>()
    {
        reset.store(true, Ordering::Release);
    }
    let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    response.extensions_mut().insert(NoAnswer);
    response
}

/// Serves `app` on a random loopback port for a unit test; its base URL.
#[cfg(test)]
pub(crate) async fn serve_on_loopback(app: axum::Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}
