//! The HTTP/1 serve loop (instead of `axum::serve`), which owns connection hygiene:
//!
//! - a cap on open connections: past it the loop stops accepting, so new connections wait in
//!   the kernel's backlog (and are refused by the kernel once that is full); it never crashes;
//! - a header-read timeout, counted from the first byte of a request head, and a keep-alive idle
//!   timeout, counted from the end of the previous response (or the accept) while no byte of a
//!   new request has arrived — hyper arms a per-connection [`hyper::rt::Timer`] when it starts
//!   reading a head, and a per-connection watchdog closes the connection when either passes;
//! - the peer address as `ConnectInfo<SocketAddr>` in every request's extensions;
//! - hyper's own error responses (unparsable request line or header, > 100 headers, a head
//!   larger than the read buffer, a URI hyper cannot hold) rewritten into DMS-shaped JSON with an
//!   `X-Request-Id`: hyper writes an empty 400/414/431 itself and offers no hook, so the
//!   connection's IO recognises such a head — the only kind that lacks `x-request-id`, which every
//!   response of ours carries — at the end of what hyper writes, and writes ours instead;
//! - a write-progress deadline: a response whose bytes the client does not take (a slow or
//!   stalled reader) closes the connection once its write has been blocked for
//!   `--write-timeout-ms`, counted from the first write the socket refused since the last
//!   completed flush, so a reader that takes a byte now and then cannot stretch it; hyper answers
//!   the requests of a connection one at a time and reads no further head while a response is
//!   being written, so what a pipelining client has sent but not had answered is bounded by the
//!   32 KiB read buffer, and a connection holds one response in memory at most;
//! - a per-connection end set by a response (the [`CloseConnectionAt`] extension): an event
//!   stream's lifetime is enforced by the watchdog's timer, whether or not its client reads;
//! - a cap on open connections per client address (`--max-connections-per-address`), so that one
//!   address cannot hold every slot;
//! - graceful shutdown bounded by a grace period: in-flight requests finish, idle connections
//!   close, and whatever is still open when the grace period ends is dropped;
//! - `accept` errors (EMFILE, ENFILE, ECONNABORTED) logged at most once a second and answered
//!   with a short pause, never a busy loop.
//!
//! The body-read timeout and the memory budget for bodies are per request, in
//! [`super::body_guard`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::error::ApiError;

/// Hyper's read buffer cap, and so the largest request head (request line plus headers).
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// Headers a request may carry (hyper's default; more is 431).
pub const MAX_HEADERS: usize = 100;

/// Connection limits and timeouts of `serve` (flags of `kafka-tasks serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct NetArgs {
    /// A request's head (request line and headers) must arrive within this (ms) of its first byte.
    #[arg(long, env = "KAFKA_TASKS_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub header_timeout_ms: u64,

    /// A request's body must arrive within this (ms) of its head; a slower one is answered 408.
    #[arg(long, env = "KAFKA_TASKS_BODY_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub body_timeout_ms: u64,

    /// A keep-alive connection with no request under way is closed after this (ms).
    #[arg(long, env = "KAFKA_TASKS_IDLE_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub idle_timeout_ms: u64,

    /// A response the client does not read is abandoned, and its connection closed, once its
    /// write has been blocked this long (ms), counted from the first refused write since the last
    /// completed flush: a reader that trickles cannot stretch it.
    #[arg(long, env = "KAFKA_TASKS_WRITE_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub write_timeout_ms: u64,

    /// Open connections one client address may hold at once; past it, its new connections are
    /// closed at once. Behind a proxy (every client one address) raise it to `--max-connections`.
    #[arg(long, env = "KAFKA_TASKS_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections_per_address: u64,

    /// Open client connections at most; more wait in the listen backlog. Lowered to fit the
    /// process's file-descriptor limit.
    #[arg(long, env = "KAFKA_TASKS_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,

    /// On SIGTERM, how long (ms) in-flight requests may take before their connections are dropped.
    #[arg(long, env = "KAFKA_TASKS_SHUTDOWN_GRACE_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub shutdown_grace_ms: u64,

    /// Bytes of request bodies buffered at once across all requests. Bytes are reserved as they
    /// arrive (never from a declared length); a request that cannot reserve within half a second
    /// is answered 503 DMS.00503001.
    #[arg(long, env = "KAFKA_TASKS_BODY_BUDGET_BYTES", default_value_t = 16 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(262_144..=1 << 34))]
    pub body_budget_bytes: u64,

    /// Bytes of request bodies one holder may have buffered at once: each client address, and
    /// each verified credential (a token's access key). Past it the request is answered 429.
    /// Behind a proxy (every client one address) raise it towards `--body-budget-bytes`.
    #[arg(long, env = "KAFKA_TASKS_BODY_BYTES_PER_HOLDER", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(262_144..=1 << 34))]
    pub body_bytes_per_holder: u64,

    /// A signed body must arrive within this (ms): its signature cannot be checked before it is
    /// whole, and an access key is no secret, so a stranger's body gets less time than a
    /// verified caller's (`--body-timeout-ms`). A slower one is answered 408.
    #[arg(long, env = "KAFKA_TASKS_UNVERIFIED_BODY_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub unverified_body_timeout_ms: u64,

    /// The certificate chain (PEM, leaf first) to serve HTTPS with; needs `--tls-key`. Both files
    /// are read again on SIGHUP (a bad new pair keeps the old one, and the log says why).
    /// `/metrics` on its own listener stays plain HTTP.
    #[arg(long, env = "KAFKA_TASKS_TLS_CERT", requires = "tls_key", value_name = "PATH")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of `--tls-cert`.
    #[arg(long, env = "KAFKA_TASKS_TLS_KEY", requires = "tls_cert", value_name = "PATH")]
    pub tls_key: Option<std::path::PathBuf>,

    /// With TLS, the handshake must be done within this (ms) of the accept, or the connection is
    /// dropped: a client that sends nothing, or trickles its ClientHello, holds no slot longer.
    #[arg(long, env = "KAFKA_TASKS_TLS_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub tls_handshake_timeout_ms: u64,

    /// Where `GET /metrics` is served: an address of its own (the default, loopback only, so
    /// that a stranger on the API's address can neither read every tenant's activity nor spend
    /// the server's time on scrapes), `api` for the API's own address (unauthenticated, as
    /// before), or `off`. When the default port is taken the server starts without metrics
    /// and says so; an address given here must be free.
    #[arg(long, env = "KAFKA_TASKS_METRICS_LISTEN", default_value = DEFAULT_METRICS_LISTEN, value_parser = MetricsListen::parse)]
    pub metrics_listen: MetricsListen,
}

/// The default `--metrics-listen`: Prometheus exporters' customary port, on loopback.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// Where `/metrics` is served (`--metrics-listen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    /// On a listener of its own.
    At(SocketAddr),
    /// On the API's address.
    Api,
    Off,
}

impl MetricsListen {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "api" => Ok(MetricsListen::Api),
            "off" => Ok(MetricsListen::Off),
            _ => s
                .parse()
                .map(MetricsListen::At)
                .map_err(|_| format!("'{s}' is not an address such as 127.0.0.1:9464, nor 'api' or 'off'")),
        }
    }

    /// Whether this is the default address (whose port may be taken by another server).
    pub fn is_default(&self) -> bool {
        Self::parse(DEFAULT_METRICS_LISTEN).is_ok_and(|d| d == *self)
    }
}

/// What [`serve`] needs from the flags.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub grace: Duration,
    /// How long a TLS handshake may take (unused without TLS).
    pub handshake_timeout: Duration,
}

impl NetArgs {
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            max_connections: self.max_connections as usize,
            max_connections_per_address: self.max_connections_per_address as usize,
            grace: Duration::from_millis(self.shutdown_grace_ms),
            handshake_timeout: Duration::from_millis(self.tls_handshake_timeout_ms),
        }
    }
}

/// Descriptors kept for everything but client connections (database files and connections,
/// the listeners, logs).
const RESERVED_FDS: u64 = 128;

/// Raises the soft file-descriptor limit to the hard one (cheap, and the default soft limit of
/// 1024 is what a few hundred slow clients exhaust) and returns the connection cap that fits.
pub fn fit_connection_cap(wanted: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let raised = rustix::process::Rlimit { current: lim.maximum, maximum: lim.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => lim = getrlimit(Resource::Nofile),
            Err(e) => tracing::warn!(error = %e, "cannot raise the file-descriptor limit"),
        }
    }
    let Some(soft) = lim.current else {
        return wanted;
    };
    let fits = soft.saturating_sub(RESERVED_FDS).max(16) as usize;
    if fits < wanted {
        tracing::warn!(wanted, cap = fits, fd_limit = soft, "connection cap lowered to fit the file-descriptor limit");
        fits
    } else {
        wanted
    }
}

/// Connections the kernel queues for us past the cap (it also caps this at `somaxconn`).
const BACKLOG: u32 = 4096;

/// Binds a listener with a deep backlog (tokio's `bind` asks for 1024), so that connections past
/// the cap wait instead of being refused.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `app` on `listener` until `stop` turns true, then shuts down within `opts.grace`;
/// HTTPS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let per_address = PerAddress::new(opts.max_connections_per_address);
    let (closing_tx, closing) = watch::channel(false);
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                crate::limited!(
                    warn,
                    "connection cap",
                    cap = opts.max_connections,
                    "connection cap reached; new connections wait in the backlog"
                );
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    _ = stopped(&mut stop) => break,
                }
            }
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                crate::limited!(error, &format!("accept {e}"), error = %e, "accept failed; pausing");
                // EMFILE and friends do not clear by retrying at once.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(counted) = per_address.admit(peer.ip()) else {
            crate::limited!(
                warn,
                "connections per address",
                cap = opts.max_connections_per_address,
                "a client address holds its share of connections; its new connection is closed"
            );
            metrics::counter!(crate::telemetry::CONNECTIONS_CLOSED, "reason" => "per_address_cap").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let closing = closing.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            match tls {
                None => serve_connection(stream, peer, app, opts, closing).await,
                Some(acceptor) => {
                    if let Some(stream) = handshake(stream, peer, &acceptor, opts.handshake_timeout).await {
                        serve_connection(stream, peer, app, opts, closing).await;
                    }
                }
            }
            drop(counted);
            drop(permit);
        });
    }
    drop(listener);
    let open = conns.len();
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(opts.grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            grace_ms = opts.grace.as_millis() as u64,
            "connections still open after the grace period; dropping them"
        );
        conns.shutdown().await;
    }
    tracing::info!(connections_at_stop = open, "HTTP server stopped");
}

/// The TLS handshake of an accepted connection, within `deadline` of the accept (the
/// connection holds its slot and its address's place meanwhile, so a client that sends nothing
/// or trickles its ClientHello is dropped then, like a slow head). A client that speaks plain
/// HTTP to this port (its first byte is no TLS handshake record) is answered a plain 400 that
/// says so, then closed.
async fn handshake(
    mut stream: TcpStream,
    peer: SocketAddr,
    acceptor: &TlsAcceptor,
    deadline: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    /// The content type of a TLS handshake record: the first byte of every ClientHello.
    const HANDSHAKE_RECORD: u8 = 0x16;
    let done = tokio::time::timeout(deadline, async {
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if first[0] != HANDSHAKE_RECORD {
            use tokio::io::AsyncWriteExt;
            metrics::counter!(crate::telemetry::CONNECTIONS_CLOSED, "reason" => "plain_http_on_tls").increment(1);
            stream.write_all(&plain_http_refusal()).await?;
            let _ = stream.shutdown().await;
            return Err(io::Error::other("plain HTTP on the TLS port"));
        }
        acceptor.accept(stream).await
    })
    .await;
    match done {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            crate::limited!(debug, "tls handshake", error = %e, %peer, "TLS handshake failed");
            metrics::counter!(crate::telemetry::CONNECTIONS_CLOSED, "reason" => "tls_handshake").increment(1);
            None
        }
        Err(_) => {
            crate::limited!(info, "tls handshake timeout", %peer, "TLS handshake not done in time; connection dropped");
            metrics::counter!(crate::telemetry::CONNECTIONS_CLOSED, "reason" => "tls_handshake_timeout").increment(1);
            None
        }
    }
}

/// The answer to plain HTTP on the TLS port: a DMS-shaped 400 that names the cause.
fn plain_http_refusal() -> Vec<u8> {
    let body = serde_json::json!({
        "error_code": "DMS.00400800",
        "error_msg": "this port speaks HTTPS: use an https:// URL"
    })
    .to_string();
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Open connections per client address, under a cap; an address's entry goes with its last
/// connection, so the map never holds more entries than there are open connections.
#[derive(Clone)]
struct PerAddress {
    cap: usize,
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

/// One connection counted against its address; dropping it gives the place back.
struct Counted {
    of: PerAddress,
    addr: std::net::IpAddr,
}

impl PerAddress {
    fn new(cap: usize) -> Self {
        PerAddress { cap: cap.max(1), open: Arc::default() }
    }

    fn admit(&self, addr: std::net::IpAddr) -> Option<Counted> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(addr).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Counted { of: self.clone(), addr })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.of.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.addr);
            }
        }
    }
}

/// Set by a handler on its response (as an extension): the connection that carries the
/// response is closed at this instant if the response is not completely written by then,
/// whatever the client does. Event streams use it so that their lifetime holds against a
/// client that stops reading. Once hyper waits for the connection's next request (so the
/// response was written whole), the end is taken back.
#[derive(Debug, Clone, Copy)]
pub struct CloseConnectionAt(pub Instant);

/// Resolves once the flag turns true (or its sender is gone).
async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|s| *s).await;
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    opts: ServeOptions,
    mut closing: watch::Receiver<bool>,
) {
    let clock = Arc::new(ConnClock::new());
    let io = TokioIo::new(ConnIo::new(stream, clock.clone()));
    let on_response = clock.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let answer = app.clone().oneshot(req.map(axum::body::Body::new));
        let clock = on_response.clone();
        async move {
            let res = answer.await?;
            if let Some(CloseConnectionAt(at)) = res.extensions().get::<CloseConnectionAt>() {
                clock.close_at(*at);
            }
            Ok::<_, std::convert::Infallible>(res)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(ConnTimer { clock: clock.clone() })
        .header_read_timeout(opts.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let watchdog = watchdog(clock, opts.header_timeout, opts.idle_timeout, opts.write_timeout);
    tokio::pin!(watchdog);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        why = &mut watchdog => return closed_by_watchdog(why, peer),
        _ = stopped(&mut closing) => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn.as_mut() => r,
                why = &mut watchdog => return closed_by_watchdog(why, peer),
            }
        }
    };
    if let Err(e) = result {
        // Client behaviour (resets, garbage) rather than faults: debug, and limited.
        crate::limited!(debug, "connection error", error = %e, %peer, "connection ended with an error");
    }
}

/// Why the watchdog ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    HeadOrIdle,
    WriteStalled,
    ResponseEnd,
}

fn closed_by_watchdog(why: Closed, peer: SocketAddr) {
    let reason = match why {
        Closed::HeadOrIdle => "head_or_idle",
        Closed::WriteStalled => {
            crate::limited!(info, "write stalled", %peer, "a client did not read its response in time; connection closed");
            "write_stalled"
        }
        Closed::ResponseEnd => "response_end",
    };
    metrics::counter!(crate::telemetry::CONNECTIONS_CLOSED, "reason" => reason).increment(1);
}

/// The head-reading state of one connection, shared by its IO (which counts reads), hyper's
/// timer (armed while hyper waits for a request head) and the connection's watchdog. Times are
/// milliseconds since the connection opened, plus one (0 means "not set").
struct ConnClock {
    origin: Instant,
    reads: AtomicU64,
    /// When hyper started waiting for the current head; 0 while a request is under way.
    armed_at: AtomicU64,
    /// Which arming `armed_at` belongs to (hyper replaces its timer by making a new one first).
    generation: AtomicU64,
    reads_at_arm: AtomicU64,
    /// When the first byte of the current head was read.
    head_at: AtomicU64,
    /// When a write was first refused by the socket since the last completed flush; 0 while
    /// nothing waits to be written.
    write_blocked_at: AtomicU64,
    /// When a response asked the connection to end ([`CloseConnectionAt`]); 0 for never.
    close_at: AtomicU64,
    /// Wakes the watchdog when `close_at` is set.
    changed: tokio::sync::Notify,
}

impl ConnClock {
    fn new() -> Self {
        ConnClock {
            origin: Instant::now(),
            reads: AtomicU64::new(0),
            armed_at: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            reads_at_arm: AtomicU64::new(0),
            head_at: AtomicU64::new(0),
            write_blocked_at: AtomicU64::new(0),
            close_at: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Ends the connection at `at`, unless hyper starts waiting for a further request first.
    fn close_at(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.origin).as_millis() as u64 + 1;
        self.close_at.store(ms, Ordering::Relaxed);
        self.changed.notify_one();
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64 + 1
    }

    /// Notes the head's first byte if a read happened since the timer was armed.
    fn note_head(&self) {
        if self.head_at.load(Ordering::Relaxed) == 0
            && self.reads.load(Ordering::Relaxed) != self.reads_at_arm.load(Ordering::Relaxed)
        {
            self.head_at.store(self.now(), Ordering::Relaxed);
        }
    }
}

/// Closes the connection (by ending) when a head is not complete `header` after its first
/// byte, when a new connection sends nothing for `header`, when no byte of a further request
/// came `idle` after hyper started waiting for one, when a write has been blocked for `write`
/// (the client does not read), or at the instant a response set ([`CloseConnectionAt`]).
/// Checking at least every `min(header, idle, write)` keeps it on time; a request under way is
/// not timed here (its body has its own deadline in the body guard). One sleep per connection
/// and period rather than a timer per request: the latter cost several per cent of throughput.
async fn watchdog(clock: Arc<ConnClock>, header: Duration, idle: Duration, write: Duration) -> Closed {
    let step = header.min(idle).min(write).max(Duration::from_millis(1));
    let (header, idle, write) = (header.as_millis() as u64, idle.as_millis() as u64, write.as_millis() as u64);
    let mut wait = step;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = clock.changed.notified() => {}
        }
        wait = step;
        let now = clock.now();
        let mut next = u64::MAX;
        let close_at = clock.close_at.load(Ordering::Relaxed);
        if close_at != 0 {
            if now >= close_at {
                return Closed::ResponseEnd;
            }
            next = close_at;
        }
        let blocked = clock.write_blocked_at.load(Ordering::Relaxed);
        if blocked != 0 {
            if now >= blocked + write {
                return Closed::WriteStalled;
            }
            next = next.min(blocked + write);
        }
        let armed = clock.armed_at.load(Ordering::Relaxed);
        if armed != 0 {
            clock.note_head();
            let head = clock.head_at.load(Ordering::Relaxed);
            // A connection that has not sent a single byte yet gets the header timeout, not the
            // keep-alive one: idle connections that never speak must not hold the slots for long.
            let silent = clock.reads.load(Ordering::Relaxed) == 0;
            let deadline = if head != 0 || silent { head.max(armed) + header } else { armed + idle };
            if now >= deadline {
                return Closed::HeadOrIdle;
            }
            next = next.min(deadline);
        }
        if next != u64::MAX {
            wait = Duration::from_millis(next - now).min(step);
        }
    }
}

/// hyper's timer for one connection: hyper arms it when it starts reading a request head and
/// drops it once the head is read. It never fires itself: it records the arming in the
/// [`ConnClock`], and the [`watchdog`] closes the connection. (hyper polls it after each read
/// that leaves the head incomplete, which is when the head's first byte is noted.)
#[derive(Clone)]
struct ConnTimer {
    clock: Arc<ConnClock>,
}

impl hyper::rt::Timer for ConnTimer {
    fn sleep(&self, _: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HeadSleep::new(&self.clock))
    }

    fn sleep_until(&self, _: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HeadSleep::new(&self.clock))
    }
}

struct HeadSleep {
    clock: Arc<ConnClock>,
    generation: u64,
}

impl HeadSleep {
    fn new(clock: &Arc<ConnClock>) -> Self {
        let generation = clock.generation.fetch_add(1, Ordering::Relaxed) + 1;
        // hyper waits for a further request once it has the previous response in hand; written
        // whole (nothing waits for the socket), an end that response set no longer applies.
        // (Else the flush that completes it takes the end back: see `ConnIo::poll_flush`.)
        if clock.write_blocked_at.load(Ordering::Relaxed) == 0 {
            clock.close_at.store(0, Ordering::Relaxed);
        }
        clock.reads_at_arm.store(clock.reads.load(Ordering::Relaxed), Ordering::Relaxed);
        clock.head_at.store(0, Ordering::Relaxed);
        clock.armed_at.store(clock.now(), Ordering::Relaxed);
        HeadSleep { clock: clock.clone(), generation }
    }
}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        if self.clock.generation.load(Ordering::Relaxed) == self.generation {
            self.clock.armed_at.store(0, Ordering::Relaxed);
        }
    }
}

impl hyper::rt::Sleep for HeadSleep {}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        self.clock.note_head();
        Poll::Pending
    }
}

/// The connection's socket, counting reads (for the [`ConnClock`]) and replacing hyper's own error
/// responses with DMS-shaped ones.
struct ConnIo<S> {
    inner: S,
    clock: Arc<ConnClock>,
    /// Our replacement for hyper's error response, and how much of it is written. Once set,
    /// everything hyper writes is swallowed (hyper closes the connection after such a response).
    replacement: Option<(Vec<u8>, usize)>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ConnIo<S> {
    fn new(inner: S, clock: Arc<ConnClock>) -> Self {
        ConnIo { inner, clock, replacement: None }
    }

    /// Writes what is left of the replacement.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((bytes, done)) = &mut self.replacement {
            while *done < bytes.len() {
                let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *done += n;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ConnIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.clock.reads.fetch_add(1, Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ConnIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.replacement.is_some() {
            ready!(self.poll_replacement(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        match find_stack_error(buf) {
            None => {
                let written = Pin::new(&mut self.inner).poll_write(cx, buf);
                if written.is_pending() && self.clock.write_blocked_at.load(Ordering::Relaxed) == 0 {
                    self.clock.write_blocked_at.store(self.clock.now(), Ordering::Relaxed);
                }
                written
            }
            Some((0, status)) => {
                self.replacement = Some((stack_error_response(status), 0));
                ready!(self.poll_replacement(cx))?;
                Poll::Ready(Ok(buf.len()))
            }
            Some((at, _)) => Pin::new(&mut self.inner).poll_write(cx, &buf[..at]),
        }
    }

    /// hyper flushes once everything it buffered is written: nothing waits any longer, and if
    /// hyper already waits for the next request, the previous response is written whole.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        self.clock.write_blocked_at.store(0, Ordering::Relaxed);
        if self.clock.armed_at.load(Ordering::Relaxed) != 0 {
            self.clock.close_at.store(0, Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Where, in a buffer hyper is about to write, a response head of hyper's own starts, and its
/// status: a head at the very end of the buffer (hyper writes nothing after it and closes)
/// whose status is 4xx or 5xx and whose headers are only those hyper adds
/// (`connection`, `content-length: 0`, `date`). Every response of ours carries `x-request-id`
/// and a body, so none matches.
fn find_stack_error(buf: &[u8]) -> Option<(usize, u16)> {
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let start = buf.windows(9).rposition(|w| w == b"HTTP/1.1 " || w == b"HTTP/1.0 ")?;
    let head = std::str::from_utf8(&buf[start..]).ok()?;
    let mut lines = head.strip_suffix("\r\n\r\n")?.split("\r\n");
    let status: u16 = lines.next()?.get(9..12)?.parse().ok()?;
    if !(400..600).contains(&status) {
        return None;
    }
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let ok = match name.to_ascii_lowercase().as_str() {
            "connection" | "date" => true,
            "content-length" => value.trim() == "0",
            _ => false,
        };
        if !ok {
            return None;
        }
    }
    Some((start, status))
}

/// Our answer in place of hyper's empty one.
fn stack_error_response(status: u16) -> Vec<u8> {
    let err = match status {
        414 => ApiError::UriTooLong,
        431 => ApiError::HeadersTooLarge,
        _ => ApiError::InvalidBody,
    };
    let status = err.status();
    let (code, msg) = err.code_and_message();
    let id = uuid::Uuid::new_v4().simple().to_string();
    crate::limited!(
        info,
        &format!("stack error {}", status.as_u16()),
        request_id = %id,
        status = status.as_u16(),
        error_code = code,
        "request refused by the HTTP parser"
    );
    let body =
        serde_json::to_string(&crate::wire::error::ErrorBody::new(code, &msg, || id.clone())).unwrap_or_default();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\nx-request-id: {id}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_own_error_heads_are_recognised_and_ours_are_not() {
        let hyper400 = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sat, 28 Nov 2026 06:04:11 GMT\r\n\r\n";
        assert_eq!(find_stack_error(hyper400), Some((0, 400)));
        let ours = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-request-id: e7\r\ncontent-length: 2\r\ndate: x\r\n\r\nok";
        let mut both = ours.to_vec();
        both.extend_from_slice(hyper400);
        assert_eq!(find_stack_error(&both), Some((ours.len(), 400)));
        assert_eq!(find_stack_error(ours), None);
        let ours_empty = b"HTTP/1.1 404 Not Found\r\nx-request-id: e7\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(find_stack_error(ours_empty), None);
        let continue100 = b"HTTP/1.1 100 Continue\r\n\r\n";
        assert_eq!(find_stack_error(continue100), None);
        let r = String::from_utf8(stack_error_response(431)).unwrap_or_default();
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
        assert!(r.contains("x-request-id: ") && r.contains("\"error_code\""), "{r}");
    }
}
