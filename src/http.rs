//! A small hyper 1 server loop shared by the admin server and the router:
//! accept until told to stop, then drain open connections within a grace
//! period. Lifecycle is a parameter (`listener`, `shutdown`) so tests start
//! the real server on `127.0.0.1:0`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tracing::{Instrument, debug, warn};

/// Response type used by failoverd's servers.
pub type HttpResponse = Response<Full<Bytes>>;

/// A shutdown signal: `true` once shutdown has begun.
pub type ShutdownRx = watch::Receiver<bool>;

/// Wait until `rx` says shutdown (or its sender is gone).
pub async fn shutdown_signalled(rx: &mut ShutdownRx) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Serve `handler` on `listener` until `shutdown`, then drain for at most `grace`.
pub async fn serve<H, Fut>(
    listener: TcpListener,
    handler: H,
    mut shutdown: ShutdownRx,
    grace: Duration,
    name: &'static str,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = HttpResponse> + Send + 'static,
{
    let drain = Arc::new(Drain::default());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        warn!(server = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let h = handler.clone();
                let svc = hyper::service::service_fn(move |req| {
                    let h = h.clone();
                    async move { Ok::<_, Infallible>(h(req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), svc);
                let conn = Drain::watch(&drain, conn);
                tokio::spawn(
                    async move {
                        if let Err(e) = conn.await {
                            debug!(error = %e, "connection ended with error");
                        }
                    }
                    .instrument(tracing::debug_span!("conn", server = name, %peer)),
                );
            }
            _ = shutdown_signalled(&mut shutdown) => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = drain.shutdown() => debug!(server = name, "drained"),
        _ = tokio::time::sleep(grace) => warn!(server = name, grace = ?grace, "grace period over; closing connections still open"),
    }
}

/// A server's open connections, so that a shutdown can ask each to finish
/// (hyper's graceful shutdown: answer what is in flight, then close) and
/// wait until they have.
///
/// hyper-util's `GracefulShutdown` does the same with a watch channel whose
/// change every connection polls each time it is polled: a lock of the
/// channel's waiter list per poll, shared by every connection. Here a
/// connection registers its waker in a slot of its own (an atomic swap,
/// no clone when it is the same task's), and only a shutdown walks them.
#[derive(Default)]
struct Drain {
    stopping: AtomicBool,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<AtomicWaker>>>,
    /// Told when the last connection closes.
    closed: Notify,
}

impl Drain {
    /// `conn`, counted as open until it ends (or is dropped).
    fn watch<C>(this: &Arc<Self>, conn: C) -> Watched<C> {
        let id = this.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(AtomicWaker::new());
        this.lock().insert(id, slot.clone());
        Watched {
            conn,
            slot,
            drain: this.clone(),
            id,
            shutting: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<AtomicWaker>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask every connection to finish, and wait until none is open.
    async fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for slot in self.lock().values() {
            slot.wake();
        }
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.lock().is_empty() {
                return;
            }
            closed.await;
        }
    }
}

/// A connection that finishes gracefully once its server shuts down.
struct Watched<C> {
    conn: C,
    slot: Arc<AtomicWaker>,
    drain: Arc<Drain>,
    id: u64,
    shutting: bool,
}

impl<C> Drop for Watched<C> {
    fn drop(&mut self) {
        let mut open = self.drain.lock();
        open.remove(&self.id);
        if open.is_empty() {
            self.drain.closed.notify_waiters();
        }
    }
}

impl<I, S, B> Future for Watched<hyper::server::conn::http1::Connection<I, S>>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // hyper's server connection is `Unpin` when its IO is.
        let this = self.get_mut();
        if !this.shutting {
            this.slot.register(cx.waker());
            if this.drain.stopping.load(Ordering::SeqCst) {
                this.shutting = true;
                Pin::new(&mut this.conn).graceful_shutdown();
            }
        }
        Pin::new(&mut this.conn).poll(cx)
    }
}

/// A plain-text response.
pub fn text(status: hyper::StatusCode, body: impl Into<String>) -> HttpResponse {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.into())))
        .expect("static response parts are valid")
}

/// Undo percent-encoding of a URL path segment (SDKs encode the endpoint
/// label: `a%20b` is `a b`). A `%` not followed by two hex digits stays as
/// it is; bytes that do not form UTF-8 become U+FFFD. Shared by the router
/// and the lab's model server, so both read a label the same way.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return s.to_string();
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JSON response.
pub fn json(status: hyper::StatusCode, value: &serde_json::Value) -> HttpResponse {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(percent_decode("default"), "default");
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("%41%7a"), "Az");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%e2%82%ac"), "\u{20ac}");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
