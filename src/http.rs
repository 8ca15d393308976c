//! A small hyper 1 server loop shared by the admin server and the router:
//! accept until told to stop, then drain open connections within a grace
//! period. Lifecycle is a parameter (`listener`, `shutdown`) so tests start
//! the real server on `127.0.0.1:0`.
//!
//! No starvation by connections (issue 22 item 5, docs/threat-model.md):
//!
//! - each listener holds at most [`ConnLimits::max_connections`] client
//!   connections; one more is answered with [`ConnLimits::refusal`] (a
//!   complete `503` with `Connection: close`) and closed, so a client sees
//!   why instead of a hang or a reset, and the process keeps descriptors
//!   for its own work (upstream calls, AWS, the admin listener);
//! - hyper's header-read timer ([`ConnLimits::header_read_timeout`]) runs
//!   from the moment a connection waits for a request's head until the
//!   head is complete: it closes slow-header senders and idle keep-alive
//!   connections alike (one deadline for the whole head, not per byte);
//! - a head is at most [`MAX_HEADER_BYTES`] (hyper answers 431 above);
//! - the process's soft open-file limit is raised to the hard limit at
//!   start ([`raise_open_file_limit`]), so the cap, not `EMFILE`, decides.
//!
//! The count is one atomic shared by a listener's threads: taken when a
//! connection is accepted, given back when its task ends (however it
//! ends); no lock per connection.
//!
//! TLS (issue 22 item 1): a listener with [`ConnLimits::tls`] runs rustls's
//! handshake in the connection's task (bounded by the header-read timeout,
//! so a client that never finishes it is closed like a slow-header one),
//! then serves HTTP/1.1 over it. The server configuration is read from a
//! [`TlsCell`] once per connection: a reload swaps the cell's contents, new
//! connections get the new certificate, and connections already open keep
//! the one they were made with. Without TLS the connection path is what it
//! was: no cell, no lock, nothing per request.
//!
//! Mutual TLS (issue 22 item 2): when the cell's configuration verifies
//! client certificates, the handshake fails without one, and the verified
//! certificate's subject alternative name becomes the connection's
//! [`Identity`]: its first URI SAN (`spiffe://...`), else its first DNS
//! SAN. A verified certificate with neither is closed after the
//! handshake. Each request on the connection carries the identity as a
//! request extension (one `Arc` clone and the extension map's allocation
//! per request, only on listeners with client certificates).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tracing::{Instrument, debug, warn};

/// Response type used by failoverd's servers.
pub type HttpResponse = Response<Full<Bytes>>;

/// A body a listener can answer with: a whole one ([`HttpResponse`]'s), or
/// one sent as it is produced (the router's response streams, as
/// `http_body_util::Either` of the two, so a whole answer costs no box).
pub trait ResponseBody:
    hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
    + Send
    + 'static
{
}

impl<T> ResponseBody for T where
    T: hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static
{
}

/// A shutdown signal: `true` once shutdown has begun.
pub type ShutdownRx = watch::Receiver<bool>;

/// The most bytes a request head (request line and headers) may take;
/// hyper answers `431 Request Header Fields Too Large` above. SageMaker's
/// own headers are small (custom attributes: 1,024 characters); nginx
/// takes 4 x 8 KiB by default.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// A listener's limits on the connections it holds.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections held open at most; one more gets [`ConnLimits::refusal`].
    pub max_connections: usize,
    /// Time a connection has to send a request's head, from when it starts
    /// waiting for one (so idle keep-alive connections close too).
    pub header_read_timeout: Duration,
    /// How long a write to the connection may make no progress (the client
    /// does not read) before the connection is closed ([`StallGuard`]).
    pub send_timeout: Duration,
    /// The complete response written to a connection over the cap, before
    /// it is closed.
    pub refusal: Bytes,
    /// TLS, if the listener speaks it; `None` is plain HTTP.
    pub tls: Option<Arc<TlsCell>>,
}

/// Who is calling, as the listener authenticated them (a request
/// extension): the client certificate's SAN under mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity(pub Arc<str>);

impl Identity {
    /// The caller identity of a verified client certificate (DER): its
    /// first URI SAN, else its first DNS SAN; `None` if it has neither or
    /// cannot be read.
    pub fn of_certificate(der: &rustls::pki_types::CertificateDer<'_>) -> Option<Self> {
        let cert = webpki::EndEntityCert::try_from(der).ok()?;
        let name = cert
            .valid_uri_names()
            .next()
            .or_else(|| cert.valid_dns_names().next())?;
        Some(Self(Arc::from(name)))
    }
}

/// A listener's TLS server configuration, replaced whole on reload. Read
/// once per connection (a read lock and an `Arc` clone), never per request.
pub struct TlsCell(std::sync::RwLock<Arc<rustls::ServerConfig>>);

impl TlsCell {
    pub fn new(cfg: rustls::ServerConfig) -> Arc<Self> {
        Arc::new(Self(std::sync::RwLock::new(Arc::new(cfg))))
    }

    /// The configuration new connections get.
    pub fn get(&self) -> Arc<rustls::ServerConfig> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Give new connections `cfg`; open ones keep theirs.
    pub fn set(&self, cfg: rustls::ServerConfig) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(cfg);
    }
}

impl std::fmt::Debug for TlsCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsCell")
    }
}

impl ConnLimits {
    /// The admin listener's (operators and Prometheus need a few), and
    /// so any server started with [`serve`].
    pub fn admin() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
            refusal: refusal_text(
                "text/plain; charset=utf-8",
                "",
                "too many connections to this listener; retry later\n",
            ),
            tls: None,
        }
    }
}

/// A complete `503` response that closes the connection: `content_type`,
/// `extra` header lines (each ending in CRLF) and `body`.
pub fn refusal_text(content_type: &str, extra: &str, body: &str) -> Bytes {
    Bytes::from(format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {content_type}\r\nretry-after: 1\r\n{extra}connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// One connection's place under its listener's cap, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A place under `max`, if there is one.
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        let mut n = open.load(Ordering::Relaxed);
        loop {
            if n >= max {
                return None;
            }
            match open.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(Slot(open.clone())),
                Err(now) => n = now,
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answer a connection over the cap with `refusal` and close it. The
/// write is one non-blocking attempt (a fresh socket's send buffer takes
/// a few hundred bytes); the refused connection never gets a task, so a
/// flood of them costs no memory beyond the moment of the accept.
fn refuse(stream: TcpStream, refusal: &[u8], name: &'static str) {
    if let Err(e) = stream.try_write(refusal) {
        debug!(server = name, error = %e, "cannot write the refusal");
    }
    // Closing a socket with unread input sends a reset, which can cost the
    // client the refusal: read (and drop) what has already arrived, then
    // close our side first.
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
    if let Ok(s) = stream.into_std() {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
}

/// What [`raise_open_file_limit`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit the process started with.
    pub soft_before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit (the most the soft limit may be raised to).
    pub hard: u64,
}

static OPEN_FILES: std::sync::OnceLock<std::io::Result<OpenFiles>> = std::sync::OnceLock::new();

/// Raise this process's soft open-file limit (`RLIMIT_NOFILE`) to its hard
/// limit, once; later calls return the first call's result. Rust's
/// standard library does not (Go's runtime does): without it a daemon
/// under systemd's default soft limit (1,024) runs out of descriptors at
/// about a thousand connections, whatever the hard limit allows.
pub fn raise_open_file_limit() -> &'static std::io::Result<OpenFiles> {
    OPEN_FILES.get_or_init(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given, nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let soft_before = lim.rlim_cur;
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: setrlimit reads the struct it is given, nothing else.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            lim = want;
        }
        Ok(OpenFiles {
            soft_before,
            soft: lim.rlim_cur,
            hard: lim.rlim_max,
        })
    })
}

/// Wait until `rx` says shutdown (or its sender is gone).
pub async fn shutdown_signalled(rx: &mut ShutdownRx) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Serve `handler` on `listener` until `shutdown`, then drain for at most `grace`.
/// Connections run as tasks of the runtime this is called on, under
/// [`ConnLimits::admin`].
pub async fn serve<H, Fut, B>(
    listener: TcpListener,
    handler: H,
    shutdown: ShutdownRx,
    grace: Duration,
    name: &'static str,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: ResponseBody,
{
    serve_limited(
        listener,
        handler,
        shutdown,
        grace,
        name,
        ConnLimits::admin(),
    )
    .await;
}

/// [`serve`] under `limits`.
pub async fn serve_limited<H, Fut, B>(
    listener: TcpListener,
    handler: H,
    shutdown: ShutdownRx,
    grace: Duration,
    name: &'static str,
    limits: ConnLimits,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: ResponseBody,
{
    let drain = Arc::new(Drain::default());
    let timeout = limits.header_read_timeout;
    let send = limits.send_timeout;
    let tls = limits.tls.clone();
    let spawn = {
        let drain = drain.clone();
        move |stream: TcpStream, peer: SocketAddr, slot: Slot| {
            tokio::spawn(connection(
                stream,
                peer,
                handler.clone(),
                &drain,
                name,
                (timeout, send, tls.clone()),
                slot,
            ));
        }
    };
    accept_until(listener, spawn, shutdown, name, limits).await;
    finish(&drain, grace, name).await;
}

/// [`serve`], with the connections spread over `threads` OS threads, each
/// running a current-thread runtime of its own (thread-per-core, as
/// nginx's workers): a connection's request, its upstream calls
/// ([`worker`] tells them apart) and their timers stay on one thread, with
/// no work-stealing scheduler between them. Connections are handed out in
/// turn by the accepting task. After the drain (or the grace period) the
/// threads stop, closing what is still open. If no thread can be started,
/// connections run on the calling runtime, as with [`serve`]. `limits` is
/// the listener's, shared by its threads.
pub async fn serve_per_core<H, Fut, B>(
    listener: TcpListener,
    handler: H,
    shutdown: ShutdownRx,
    grace: Duration,
    name: &'static str,
    threads: usize,
    limits: ConnLimits,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: ResponseBody,
{
    let drain = Arc::new(Drain::default());
    let timeout = limits.header_read_timeout;
    let send = limits.send_timeout;
    let tls = limits.tls.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = Vec::with_capacity(threads);
    let mut ended = Vec::with_capacity(threads);
    for i in 0..threads.max(1) {
        let (end_tx, end_rx) = tokio::sync::oneshot::channel::<()>();
        match Worker::start(
            i,
            name,
            handler.clone(),
            drain.clone(),
            stop_rx.clone(),
            end_tx,
            (timeout, send, tls.clone()),
        )
        .await
        {
            Ok(w) => {
                workers.push(w);
                ended.push(end_rx);
            }
            Err(e) => {
                warn!(server = name, error = %e, thread = i, "cannot start a server thread");
                break;
            }
        }
    }
    if workers.is_empty() {
        warn!(
            server = name,
            "no server thread started: serving on the shared runtime"
        );
    }
    let mut next = 0usize;
    let spawn = {
        let drain = drain.clone();
        move |stream: TcpStream, peer: SocketAddr, slot: Slot| {
            if workers.is_empty() {
                tokio::spawn(connection(
                    stream,
                    peer,
                    handler.clone(),
                    &drain,
                    name,
                    (timeout, send, tls.clone()),
                    slot,
                ));
                return;
            }
            // Registered again with the receiving thread's reactor.
            let stream = match stream.into_std() {
                Ok(s) => s,
                Err(e) => {
                    debug!(server = name, error = %e, "cannot hand a connection over");
                    return;
                }
            };
            let w = &workers[next % workers.len()];
            next = next.wrapping_add(1);
            if w.conns.send((stream, peer, slot)).is_err() {
                warn!(server = name, "a server thread is gone; connection dropped");
            }
        }
    };
    accept_until(listener, spawn, shutdown, name, limits).await;
    finish(&drain, grace, name).await;
    // The threads' receivers see the end of their channel once `spawn`
    // (and its senders) is dropped, which `accept_until` did; `stop`
    // ends them, dropping connections still open after the grace period.
    let _ = stop_tx.send(true);
    for end in ended {
        // A thread drops its end (its runtime gone) as it returns.
        let _ = tokio::time::timeout(Duration::from_secs(5), end).await;
    }
}

/// Which of a per-core server's threads this is ([`serve_per_core`]), if
/// any: clients keep their idle connections per thread, so that a
/// connection is used on the runtime whose reactor it is registered with.
pub fn worker() -> Option<usize> {
    WORKER.with(|w| w.get())
}

thread_local! {
    static WORKER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The number of threads a per-core server runs on this host: one per
/// core the process may use.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// One thread of a per-core server.
struct Worker {
    conns: tokio::sync::mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr, Slot)>,
}

impl Worker {
    /// Start thread `index`; its runtime is built on the thread itself (a
    /// runtime must not be dropped in async context, as it would be if
    /// the thread could not start).
    async fn start<H, Fut, B>(
        index: usize,
        name: &'static str,
        handler: H,
        drain: Arc<Drain>,
        mut stop: watch::Receiver<bool>,
        end: tokio::sync::oneshot::Sender<()>,
        conn: ConnSettings,
    ) -> std::io::Result<Self>
    where
        H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<B>> + Send + 'static,
        B: ResponseBody,
    {
        let (tx, mut rx) =
            tokio::sync::mpsc::unbounded_channel::<(std::net::TcpStream, SocketAddr, Slot)>();
        let (ready_tx, ready) = tokio::sync::oneshot::channel::<std::io::Result<()>>();
        std::thread::Builder::new()
            .name(format!("{name}-{index}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                WORKER.with(|w| w.set(Some(index)));
                rt.block_on(async move {
                    let mut open = true;
                    loop {
                        tokio::select! {
                            c = rx.recv(), if open => match c {
                                Some((s, peer, slot)) => match TcpStream::from_std(s) {
                                    Ok(s) => {
                                        tokio::spawn(connection(s, peer, handler.clone(), &drain, name, conn.clone(), slot));
                                    }
                                    Err(e) => debug!(server = name, error = %e, "cannot take a connection over"),
                                },
                                None => open = false,
                            },
                            _ = shutdown_signalled(&mut stop) => break,
                        }
                    }
                });
                // Dropping the runtime drops the connections still open.
                drop(rt);
                drop(end);
            })?;
        match ready.await {
            Ok(Ok(())) => Ok(Self { conns: tx }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::other("the server thread ended at start")),
        }
    }
}

/// Accept connections on `listener` and hand each to `spawn` with its
/// place under `limits`' cap (or refuse it, over the cap) until
/// `shutdown`; then close the listener.
async fn accept_until(
    listener: TcpListener,
    mut spawn: impl FnMut(TcpStream, SocketAddr, Slot),
    mut shutdown: ShutdownRx,
    name: &'static str,
    limits: ConnLimits,
) {
    let open = Arc::new(AtomicUsize::new(0));
    // Refusals are counted; logged at the 1st, 2nd, 4th, 8th... (no clock
    // read on this path, and a flood logs a few dozen lines at most).
    let mut refused = 0u64;
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
                let Some(slot) = Slot::take(&open, limits.max_connections) else {
                    refused += 1;
                    if refused.is_power_of_two() {
                        warn!(server = name, max_connections = limits.max_connections, refused, "connection limit reached; refusing new connections with 503");
                    }
                    refuse(stream, &limits.refusal, name);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                spawn(stream, peer, slot);
            }
            _ = shutdown_signalled(&mut shutdown) => break,
        }
    }
}

/// Ask every open connection to finish, and wait for them at most `grace`.
async fn finish(drain: &Drain, grace: Duration, name: &'static str) {
    tokio::select! {
        _ = drain.shutdown() => debug!(server = name, "drained"),
        _ = tokio::time::sleep(grace) => warn!(server = name, grace = ?grace, "grace period over; closing connections still open"),
    }
}

/// What every connection of a listener is served with: the header-read
/// timeout, the send timeout and the TLS cell, if any.
type ConnSettings = (Duration, Duration, Option<Arc<TlsCell>>);

/// One connection served by hyper's HTTP/1 server until it closes, after
/// a TLS handshake if the listener has TLS.
fn connection<H, Fut, B>(
    stream: TcpStream,
    peer: SocketAddr,
    handler: H,
    drain: &Arc<Drain>,
    name: &'static str,
    (header_read_timeout, send_timeout, tls): ConnSettings,
    slot: Slot,
) -> impl Future<Output = ()> + Send + 'static
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: ResponseBody,
{
    let drain = drain.clone();
    async move {
        match tls {
            None => {
                serve_io(
                    StallGuard::new(TokioIo::new(stream), send_timeout),
                    handler,
                    &drain,
                    header_read_timeout,
                    None,
                )
                .await
            }
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.get());
                match tokio::time::timeout(header_read_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        // Only a verifying configuration asks for client
                        // certificates; what arrives here passed it.
                        let identity = match s.get_ref().1.peer_certificates() {
                            None => None,
                            Some(certs) => match certs.first().and_then(Identity::of_certificate) {
                                Some(id) => Some(id),
                                None => {
                                    debug!("client certificate has no URI or DNS name; closing");
                                    drop(slot);
                                    return;
                                }
                            },
                        };
                        serve_io(
                            StallGuard::new(TokioIo::new(s), send_timeout),
                            handler,
                            &drain,
                            header_read_timeout,
                            identity,
                        )
                        .await
                    }
                    Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
                    Err(_) => debug!("TLS handshake timed out"),
                }
            }
        }
        // Given back only once the connection (and its socket) is gone.
        drop(slot);
    }
    .instrument(tracing::debug_span!("conn", server = name, %peer))
}

/// A connection's I/O that fails a write making no progress for
/// `timeout` (the client stopped reading): hyper's HTTP/1 server has no
/// write timeout, so without it a client that sends requests and never
/// reads the answers holds its connection, and the answer's buffers, for
/// as long as it likes (issue 22 item 5). The timer is armed only when a
/// write is refused for want of room (`Pending`) and disarmed by the next
/// write that progresses: a connection whose client reads costs one
/// branch per write and no timer. Reads are untouched (the header-read
/// and body timeouts bound them).
pub struct StallGuard<I> {
    io: I,
    timeout: Duration,
    /// Armed while a write waits for room; `None` otherwise.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> StallGuard<I> {
    pub fn new(io: I, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            stall: None,
        }
    }

    /// After a write-side poll: disarm on progress; on `Pending`, arm the
    /// timer (once per stall) and fail the write once it has run out.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Pending => {
                let timeout = self.timeout;
                let stall = self
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match stall.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the client read nothing for {timeout:?} (send timeout)"),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.stall = None;
                ready
            }
        }
    }
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for StallGuard<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: hyper::rt::Write + Unpin> hyper::rt::Write for StallGuard<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, r)
    }
}

/// Serve HTTP/1.1 on `io` until the connection closes.
async fn serve_io<I, H, Fut, B>(
    io: I,
    handler: H,
    drain: &Arc<Drain>,
    header_read_timeout: Duration,
    identity: Option<Identity>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: ResponseBody,
{
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        if let Some(id) = &identity {
            req.extensions_mut().insert(id.clone());
        }
        let h = handler.clone();
        async move { Ok::<_, Infallible>(h(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .serve_connection(io, svc);
    if let Err(e) = Drain::watch(drain, conn).await {
        debug!(error = %e, "connection ended with error");
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
    match percent_bytes(s) {
        None => s.to_string(),
        Some(b) => String::from_utf8_lossy(&b).into_owned(),
    }
}

/// [`percent_decode`], or `None` when the decoded bytes are not UTF-8
/// (the router refuses such a label rather than guess at it).
pub fn percent_decode_utf8(s: &str) -> Option<String> {
    match percent_bytes(s) {
        None => Some(s.to_string()),
        Some(b) => String::from_utf8(b).ok(),
    }
}

/// The bytes `s` percent-decodes to, or `None` if it has no `%`.
fn percent_bytes(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return None;
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
    Some(out)
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

    /// One request on a kept-alive connection `s`: the answer's body.
    async fn get(s: &mut tokio::net::TcpStream, path: &str) -> std::io::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(at) = text.find("\r\n\r\n") {
                let len: usize = text[..at]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= at + 4 + len {
                    return Ok(text[at + 4..at + 4 + len].to_string());
                }
            }
        }
    }

    #[tokio::test]
    async fn per_core_server_spreads_connections_and_drains() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        let handler = |req: Request<Incoming>| async move {
            if req.uri().path() == "/slow" {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            text(hyper::StatusCode::OK, format!("{:?}", worker()))
        };
        let server = tokio::spawn(serve_per_core(
            listener,
            handler,
            rx,
            Duration::from_secs(5),
            "test",
            2,
            ConnLimits::admin(),
        ));
        let mut a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut b = tokio::net::TcpStream::connect(addr).await.unwrap();
        let on_a = get(&mut a, "/").await.unwrap();
        let on_b = get(&mut b, "/").await.unwrap();
        // Handed out in turn: one connection per thread, each request on
        // its connection's thread.
        let mut seen = [on_a.clone(), on_b.clone()];
        seen.sort();
        assert_eq!(seen, ["Some(0)", "Some(1)"]);
        assert_eq!(get(&mut a, "/").await.unwrap(), on_a);
        // Shutdown with a request in flight: it is answered, the idle
        // connection is closed, and the server returns.
        let slow = tokio::spawn(async move { get(&mut a, "/slow").await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(true).unwrap();
        assert_eq!(slow.await.unwrap().unwrap(), on_a);
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server returns after the drain")
            .unwrap();
        assert!(get(&mut b, "/").await.is_err(), "idle connection closed");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err()
                || tokio::time::timeout(Duration::from_secs(1), async {
                    let mut c = tokio::net::TcpStream::connect(addr).await?;
                    get(&mut c, "/").await
                })
                .await
                .map_or(true, |r| r.is_err()),
            "no longer accepting"
        );
    }

    #[tokio::test]
    async fn per_core_server_closes_what_outlives_the_grace_period() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        let handler = |_req: Request<Incoming>| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            text(hyper::StatusCode::OK, "late")
        };
        let server = tokio::spawn(serve_per_core(
            listener,
            handler,
            rx,
            Duration::from_millis(200),
            "test",
            2,
            ConnLimits::admin(),
        ));
        let mut a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let hung = tokio::spawn(async move { get(&mut a, "/").await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server returns after the grace period")
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), hung)
            .await
            .expect("the connection is closed, not left hanging")
            .unwrap();
        assert!(got.is_err(), "{got:?}");
    }

    /// Over the cap a connection reads a complete 503 and is closed; once a
    /// held connection closes, its place is free again.
    #[tokio::test]
    async fn connections_over_the_cap_are_refused_with_503() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        let handler = |_req: Request<Incoming>| async move { text(hyper::StatusCode::OK, "fine") };
        let limits = ConnLimits {
            max_connections: 2,
            header_read_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            refusal: refusal_text("text/plain", "x-why: cap\r\n", "full\n"),
            tls: None,
        };
        let server = tokio::spawn(serve_per_core(
            listener,
            handler,
            rx,
            Duration::from_secs(1),
            "test",
            2,
            limits,
        ));
        let mut a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut b = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert_eq!(get(&mut a, "/").await.unwrap(), "fine");
        assert_eq!(get(&mut b, "/").await.unwrap(), "fine");
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut got = String::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_string(&mut got))
            .await
            .expect("the refused connection is closed")
            .unwrap();
        assert!(
            got.starts_with("HTTP/1.1 503 ")
                && got.contains("x-why: cap\r\n")
                && got.contains("connection: close")
                && got.ends_with("\r\n\r\nfull\n"),
            "{got:?}"
        );
        drop(a);
        let ok = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let mut d = tokio::net::TcpStream::connect(addr).await.unwrap();
                match get(&mut d, "/").await {
                    Ok(body) if body == "fine" => return body,
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("a place frees up when a connection closes");
        assert_eq!(ok, "fine");
        assert_eq!(get(&mut b, "/").await.unwrap(), "fine");
        stop.send(true).unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let got = raise_open_file_limit().as_ref().expect("getrlimit works");
        assert_eq!(got.soft, got.hard, "{got:?}");
        assert!(got.soft_before <= got.soft, "{got:?}");
    }

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
        assert_eq!(percent_decode_utf8("%ff"), None);
        assert_eq!(percent_decode_utf8("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode_utf8("plain").as_deref(), Some("plain"));
    }
}
