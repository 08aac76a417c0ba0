//! Connections, from TCP accept until tonic serves them, bounded so that a client cannot make the
//! server hold what it does not use. Measured before: 3,000 TCP connections that never sent a byte
//! stayed open forever, at about 15 KiB each in hyper's buffers (RSS 8.5 → 54.6 MiB).
//!
//! - At most `max_connections` are open at once. One more is accepted and closed at once, counted
//!   and logged (at most one warning per 10 s).
//! - A small task owned by the server does the TLS handshake, if any, and reads the 24-byte HTTP/2
//!   client preface. Only then is the connection handed to tonic, as a [`Connection`] that replays
//!   the preface: a connection that never sends costs its socket and that task, not hyper's
//!   buffers.
//! - A connection must open its first stream within `handshake_timeout` of being accepted, or it
//!   is closed: [`Connection`] follows the frame headers hyper reads, and sees the first HEADERS.
//! - Floods of cheap frames leave the others served: each connection gets about 16 KiB read per
//!   turn of its task, then yields, and one sending more than [`MAX_PINGS_PER_SECOND`] PINGs,
//!   [`MAX_SETTINGS_PER_SECOND`] SETTINGS or [`MAX_RESETS_PER_SECOND`] stream resets (RST_STREAM)
//!   in a second is closed. (h2 itself refuses header lists over the limit with 431, and closes a
//!   connection that sends more CONTINUATION frames than that limit needs.) Measured in a
//!   debug build, Resolve p99 under 5,000 resets and 500,000 PINGs a second: 56 ms without
//!   either, 2.3-3.5 ms with both (0.8-0.9 ms unloaded); the budget alone took an unpaced PING
//!   flood's 88 ms to 22 ms.
//! - When the server stops, the accept loop and the tasks end, and each [`Connection`] fails its
//!   next read or write once told to close, so that no connection outlives `run`.

use std::{
    fmt,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
    time::Duration,
};

use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    time::{Instant, Sleep},
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::{
    sync::{CancellationToken, WaitForCancellationFutureOwned},
    task::{TaskTracker, task_tracker::TaskTrackerToken},
};
use tonic::transport::server::Connected;
use tracing::{debug, warn};

use crate::{metrics::Metrics, write_batch::BatchedWrites};

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The longest handshake timeout: a client opening connections that send nothing holds each for
/// the timeout, so at 20 s it takes 1,000 new connections a second to keep 20,000 open.
pub const MAX_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// The listen backlog asked for; the kernel caps it at `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: i32 = 4096;

/// How long the accept loop pauses after a failed accept (out of file descriptors, typically:
/// the connection waits in the listen backlog meanwhile), instead of spinning.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// What a connection may hold.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Connections open at once (at least 1).
    pub max_connections: usize,
    /// How long a new connection may take for its TLS handshake, its HTTP/2 preface and its
    /// first stream, together; at most [`MAX_HANDSHAKE_TIMEOUT`] (larger values are lowered).
    pub handshake_timeout: Duration,
}

/// Why a handshake timeout is refused.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeTimeoutError {
    #[error(transparent)]
    Unparsable(#[from] humantime::DurationError),
    #[error(
        "must be more than 0 and at most {}",
        humantime::format_duration(MAX_HANDSHAKE_TIMEOUT)
    )]
    OutOfRange,
}

/// Parses a handshake timeout flag (`10s`), between 0 (excluded) and [`MAX_HANDSHAKE_TIMEOUT`].
pub fn parse_handshake_timeout(text: &str) -> Result<Duration, HandshakeTimeoutError> {
    let timeout = humantime::parse_duration(text)?;
    if timeout.is_zero() || timeout > MAX_HANDSHAKE_TIMEOUT {
        return Err(HandshakeTimeoutError::OutOfRange);
    }
    Ok(timeout)
}

/// What turns an accepted TCP connection into the stream HTTP/2 is read from.
pub(crate) trait Handshake: Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static;

    /// The stream, or `None` when the client is refused (logged here).
    fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> impl Future<Output = Option<Self::Io>> + Send;
}

/// Plaintext: the TCP connection as it is.
pub(crate) struct Plaintext;

impl Handshake for Plaintext {
    type Io = TcpStream;

    async fn handshake(&self, tcp: TcpStream, _peer: SocketAddr) -> Option<TcpStream> {
        Some(tcp)
    }
}

/// What ties connections to the server's lifetime.
pub(crate) struct Lifetime {
    /// Owns the accept loop, the connections being prepared, and (through a token each) those
    /// tonic serves.
    pub tasks: TaskTracker,
    /// Ends the accept loop and the connections not handed to tonic yet.
    pub accepting: CancellationToken,
    /// Closes the connections tonic serves.
    pub connections: CancellationToken,
}

/// Accepts connections on `listener` until `lifetime.accepting` is cancelled, and yields those
/// ready for tonic.
pub(crate) fn accept<H: Handshake>(
    listener: TcpListener,
    handshake: H,
    limits: &ConnectionLimits,
    metrics: &Metrics,
    lifetime: &Lifetime,
) -> ReceiverStream<io::Result<Connection<H::Io>>> {
    // tokio (mio) listens with a backlog of 128, as std does: a burst of connections larger than
    // what the accept loop takes in one turn overflows it, and each client overflowed waits a
    // second for its SYN to be sent again (measured: 15,000 connections from 16 threads took 10 s,
    // 1.4 s with a plain accept loop). Listening again only changes the backlog.
    if let Err(error) = socket2::SockRef::from(&listener).listen(LISTEN_BACKLOG) {
        warn!(%error, "cannot raise the listen backlog; bursts of connections may wait");
    }
    // tonic takes connections as they come; the channel only decouples the tasks from it.
    let (ready, incoming) = mpsc::channel(64);
    let gate = Gate::new(limits.max_connections, metrics);
    let shared = Arc::new(Shared {
        handshake,
        ready,
        timeout: limits.handshake_timeout.min(MAX_HANDSHAKE_TIMEOUT),
        watchdog: Arc::new(Watchdog {
            timed_out: metrics.connections_timed_out.clone(),
            floods: metrics.connections_flood.clone(),
            flood_log: Refusals::new(
                "connection closed: a flood of PINGs or stream resets (more in a second than this \
                 server takes from a connection)",
            ),
        }),
        tasks: lifetime.tasks.clone(),
        accepting: lifetime.accepting.clone(),
        closing: lifetime.connections.clone(),
    });
    lifetime.tasks.spawn(accept_loop(listener, gate, shared));
    ReceiverStream::new(incoming)
}

/// What every connection task needs, shared.
struct Shared<H: Handshake> {
    handshake: H,
    ready: mpsc::Sender<io::Result<Connection<H::Io>>>,
    timeout: Duration,
    watchdog: Arc<Watchdog>,
    tasks: TaskTracker,
    accepting: CancellationToken,
    closing: CancellationToken,
}

async fn accept_loop<H: Handshake>(listener: TcpListener, gate: Gate, shared: Arc<Shared<H>>) {
    while let Some(accepted) = shared
        .accepting
        .run_until_cancelled(listener.accept())
        .await
    {
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "accept failed");
                let pause = tokio::time::sleep(ACCEPT_RETRY);
                if shared.accepting.run_until_cancelled(pause).await.is_none() {
                    break;
                }
                continue;
            }
        };
        let Some(open) = gate.admit(peer) else {
            continue; // `tcp` is dropped: closed at once.
        };
        // tonic sets TCP_NODELAY only on connections it accepts itself. Without it, Nagle's
        // algorithm meets the client's delayed ACK and a small answer waits 40 ms (measured:
        // `proxyconf env` took 44 ms).
        if let Err(error) = tcp.set_nodelay(true) {
            debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let deadline = Instant::now() + shared.timeout;
        shared
            .tasks
            .spawn(prepare(shared.clone(), tcp, peer, open, deadline));
    }
}

/// The TLS handshake and the preface, before `deadline`; then the connection goes to tonic.
///
/// This future is what an idle connection costs, so it is kept small: a `select!` rather than
/// `run_until_cancelled`, and the rare wait for a full channel boxed (measured in a debug build:
/// 1,440 bytes before, 664 after).
async fn prepare<H: Handshake>(
    shared: Arc<Shared<H>>,
    tcp: TcpStream,
    peer: SocketAddr,
    open: Open,
    deadline: Instant,
) {
    let ready = async {
        let mut io = shared.handshake.handshake(tcp, peer).await?;
        read_preface(&mut io, peer).await.then_some(io)
    };
    let io = tokio::select! {
        () = shared.accepting.cancelled() => return,
        ready = tokio::time::timeout_at(deadline, ready) => match ready {
            Ok(Some(io)) => io,
            // Refused or not HTTP/2, logged where seen.
            Ok(None) => return,
            Err(_) => {
                shared.watchdog.timed_out.inc();
                debug!(%peer, "closed: no TLS handshake or HTTP/2 preface within the handshake timeout");
                return;
            }
        },
    };
    let connection = Connection {
        io: BatchedWrites::new(io),
        peer,
        replayed: 0,
        frames: Frames::default(),
        first_stream: Some(Box::pin(tokio::time::sleep_until(deadline))),
        pings: PerSecond::new(MAX_PINGS_PER_SECOND),
        settings: PerSecond::new(MAX_SETTINGS_PER_SECOND),
        resets: PerSecond::new(MAX_RESETS_PER_SECOND),
        closing: Box::pin(shared.closing.clone().cancelled_owned()),
        watchdog: shared.watchdog.clone(),
        _open: open,
        _task: shared.tasks.token(),
    };
    // tonic takes connections as they come: the channel is full only while it is busy.
    if let Err(mpsc::error::TrySendError::Full(connection)) = shared.ready.try_send(Ok(connection))
    {
        let handed = Box::pin(shared.ready.send(connection));
        let _ = shared.accepting.run_until_cancelled(handed).await;
    }
}

/// Reads exactly the client preface (what follows stays for hyper); false when the client closes
/// or sends something else.
async fn read_preface(io: &mut (impl AsyncRead + Unpin), peer: SocketAddr) -> bool {
    let mut got = [0; PREFACE.len()];
    let mut filled = 0;
    while filled < PREFACE.len() {
        let n = match io.read(&mut got[filled..]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        if got[filled..filled + n] != PREFACE[filled..filled + n] {
            debug!(%peer, "closed: not HTTP/2 (no client preface)");
            return false;
        }
        filled += n;
    }
    true
}

/// Counts open connections against the cap.
struct Gate {
    open: Arc<Semaphore>,
    max: usize,
    gauge: Gauge,
    refused: Counter,
    refusals: Refusals,
}

impl Gate {
    fn new(max: usize, metrics: &Metrics) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            open: Arc::new(Semaphore::new(max)),
            max,
            gauge: metrics.connections_open.clone(),
            refused: metrics.connections_refused.clone(),
            refusals: Refusals::new(
                "connection refused: this replica has as many connections open as it serves \
                 (--max-connections); clients should retry with backoff or on another replica",
            ),
        }
    }

    /// A place for the connection from `peer`, or `None` (counted and logged) when all are taken.
    fn admit(&self, peer: SocketAddr) -> Option<Open> {
        let Ok(permit) = self.open.clone().try_acquire_owned() else {
            self.refused.inc();
            let open = format_args!("{} connections open", self.max);
            self.refusals.refused(peer, &open);
            return None;
        };
        self.gauge.inc();
        Some(Open {
            _permit: permit,
            gauge: self.gauge.clone(),
        })
    }
}

/// One open connection's place, counted in the gauge until dropped.
struct Open {
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// What connections report to, shared by all of them.
struct Watchdog {
    timed_out: Counter,
    floods: Counter,
    flood_log: Refusals,
}

/// A connection as tonic gets it: the preface that was read first, then the client's bytes.
/// Until the first stream opens, reading fails once the handshake deadline passes; once the
/// server closes connections, reading and writing fail; a flood of PINGs, SETTINGS or resets fails
/// reading. hyper drops a connection whose I/O fails.
pub struct Connection<IO> {
    io: BatchedWrites<IO>,
    peer: SocketAddr,
    /// How much of [`PREFACE`] has been handed back.
    replayed: usize,
    /// Where the frames are in what the client sends.
    frames: Frames,
    /// Until the first HEADERS frame: when the connection is closed without one.
    first_stream: Option<Pin<Box<Sleep>>>,
    pings: PerSecond,
    settings: PerSecond,
    resets: PerSecond,
    closing: Pin<Box<WaitForCancellationFutureOwned>>,
    watchdog: Arc<Watchdog>,
    _open: Open,
    _task: TaskTrackerToken,
}

impl<IO> Connection<IO> {
    /// An error once the server closes connections, or the first stream is late.
    fn poll_failure(&mut self, cx: &mut Context<'_>, reading: bool) -> Poll<io::Error> {
        if self.closing.as_mut().poll(cx).is_ready() {
            let closed = "proxyconf-server stopped: the grace period for calls in flight is over";
            return Poll::Ready(io::Error::new(io::ErrorKind::ConnectionAborted, closed));
        }
        if let Some(deadline) = self.first_stream.as_mut().filter(|_| reading)
            && deadline.as_mut().poll(cx).is_ready()
        {
            self.watchdog.timed_out.inc();
            debug!(peer = %self.peer, "closed: no HTTP/2 stream opened within the handshake timeout");
            let late = "no HTTP/2 stream opened within the handshake timeout";
            return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, late));
        }
        Poll::Pending
    }

    /// Follows the frames in `read`: the first HEADERS disarms the deadline, a flood fails.
    fn follow(&mut self, mut read: &[u8]) -> io::Result<()> {
        while let Some(header) = self.frames.next_header(&mut read) {
            let now = Instant::now();
            let (flood, what) = match header[3] {
                HEADERS => {
                    self.first_stream = None;
                    continue;
                }
                PING if header[4] & ACK == 0 => (self.pings.spent(now), "PINGs"),
                SETTINGS if header[4] & ACK == 0 => (self.settings.spent(now), "SETTINGS frames"),
                RST_STREAM => (self.resets.spent(now), "stream resets"),
                _ => continue,
            };
            if let Some(limit) = flood {
                self.watchdog.floods.inc();
                let why = format_args!("more than {limit} {what} in a second");
                self.watchdog.flood_log.refused(self.peer, &why);
                let error = format!("flood: {why}");
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
        Ok(())
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Connection<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_failure(cx, true) {
            return Poll::Ready(Err(error));
        }
        if this.replayed < PREFACE.len() {
            let n = buf.remaining().min(PREFACE.len() - this.replayed);
            buf.put_slice(&PREFACE[this.replayed..this.replayed + n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        charge(cx, read.len());
        this.follow(read)?;
        Poll::Ready(Ok(()))
    }
}

/// Bytes read per unit of tokio's cooperative budget (128 units per turn of a task).
const BYTES_PER_BUDGET_UNIT: usize = 128;

/// Charges the task for `read` bytes: a connection gets about 16 KiB processed per turn, then
/// yields to the others, however cheap its frames (PINGs, resets) are to send.
fn charge(cx: &mut Context<'_>, read: usize) {
    // The read itself took one unit.
    for _ in 1..read.div_ceil(BYTES_PER_BUDGET_UNIT) {
        match tokio::task::coop::poll_proceed(cx) {
            Poll::Ready(unit) => unit.made_progress(),
            // Spent: the task is woken again, and its next read waits for its next turn.
            Poll::Pending => break,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Connection<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_failure(cx, false) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_failure(cx, false) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_failure(cx, false) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for Connection<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.get_ref().connect_info()
    }
}

/// The HTTP/2 frame type that opens a stream.
const HEADERS: u8 = 0x1;
/// The frame type that resets a stream.
const RST_STREAM: u8 = 0x3;
/// The frame type of settings.
const SETTINGS: u8 = 0x4;
/// The frame type of PINGs.
const PING: u8 = 0x6;
/// The flag of an answer to SETTINGS or a PING.
const ACK: u8 = 0x1;
/// Length (3 bytes), type, flags, stream identifier (4 bytes).
const FRAME_HEADER: usize = 9;

/// PINGs a client may send in a second; one more closes its connection. Clients ping to keep a
/// connection alive (every 30 s and more) or to size their flow-control window after receiving
/// data (gRPC C-core: 10 a second at most); a flood sends thousands.
pub const MAX_PINGS_PER_SECOND: u32 = 100;

/// SETTINGS frames a client may send in a second; one more closes its connection. A client sends
/// one after the preface and a few more when it resizes its windows (grpc-go's BDP estimation);
/// each one costs the server an acknowledgement, and a flood sends thousands.
pub const MAX_SETTINGS_PER_SECOND: u32 = 100;

/// Streams a client may reset in a second; one more closes its connection. A client cancels a
/// call it gave up on; one that resets streams as fast as it opens them (rapid reset) costs the
/// server a handler each and waits for nothing. h2 sends GOAWAY only when more than 20 reset
/// streams wait to be accepted at once, which a server that keeps up never sees.
pub const MAX_RESETS_PER_SECOND: u32 = 200;

/// Frames of one kind in the current second.
struct PerSecond {
    limit: u32,
    left: u32,
    since: Instant,
}

impl PerSecond {
    fn new(limit: u32) -> Self {
        Self {
            limit,
            left: limit,
            since: Instant::now(),
        }
    }

    /// Counts one frame received at `now`; the limit when it is one too many.
    fn spent(&mut self, now: Instant) -> Option<u32> {
        if now.duration_since(self.since) >= Duration::from_secs(1) {
            self.left = self.limit;
            self.since = now;
        }
        match self.left.checked_sub(1) {
            Some(left) => {
                self.left = left;
                None
            }
            None => Some(self.limit),
        }
    }
}

/// Follows the frames in the bytes a client sends (after the preface) without buffering them:
/// reads each 9-byte frame header, skips its payload.
#[derive(Debug, Default)]
struct Frames {
    /// Payload bytes of the current frame still to skip.
    skip: usize,
    header: [u8; FRAME_HEADER],
    /// Bytes of the next frame header seen so far.
    filled: usize,
}

impl Frames {
    /// The next frame header completed in `bytes`, which are consumed up to its end.
    fn next_header(&mut self, bytes: &mut &[u8]) -> Option<[u8; FRAME_HEADER]> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                *bytes = &bytes[n..];
                continue;
            }
            let n = (FRAME_HEADER - self.filled).min(bytes.len());
            self.header[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            *bytes = &bytes[n..];
            if self.filled == FRAME_HEADER {
                let [a, b, c, ..] = self.header;
                self.skip = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                self.filled = 0;
                return Some(self.header);
            }
        }
        None
    }
}

/// How often a refusal is logged at most: a scanner or a client retrying in a loop must not flood
/// the log.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A warning for refusals that clients can cause in a loop: at most one per 10 s, with the count
/// of those not logged since; the others are logged at debug.
#[derive(Debug)]
pub(crate) struct Refusals {
    /// What the warning says.
    what: &'static str,
    /// When the last warning was written, and how many refusals came since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Refusals {
    pub(crate) const fn new(what: &'static str) -> Self {
        Self {
            what,
            state: Mutex::new((None, 0)),
        }
    }

    /// Logs the refusal of `peer`, for the reason `why`.
    pub(crate) fn refused(&self, peer: SocketAddr, why: &dyn fmt::Display) {
        let now = Instant::now();
        // A poisoned lock only means a panic elsewhere; the counters are still usable.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_INTERVAL) {
            *suppressed += 1;
            debug!(%peer, error = %why, "{}", self.what);
            return;
        }
        warn!(%peer, error = %why, not_logged_since_last = *suppressed, "{}", self.what);
        *last = Some(now);
        *suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A frame header: `length`, `kind`, no flags, stream 1.
    fn frame(length: usize, kind: u8) -> Vec<u8> {
        let mut header = u32::try_from(length).unwrap().to_be_bytes()[1..].to_vec();
        header.extend([kind, 0, 0, 0, 0, 1]);
        header.extend(vec![0xAA; length]);
        header
    }

    /// The types of the frames completed in `bytes`, and how many bytes had been seen at each.
    fn types(frames: &mut Frames, bytes: &[u8], seen_before: usize) -> Vec<(u8, usize)> {
        let mut rest = bytes;
        let mut found = Vec::new();
        while let Some(header) = frames.next_header(&mut rest) {
            found.push((header[3], seen_before + bytes.len() - rest.len()));
        }
        found
    }

    #[test]
    fn frames_are_found_in_any_split_and_payloads_are_skipped() {
        // A payload of bytes equal to HEADERS must not be taken for frame headers.
        let mut bytes = frame(18, SETTINGS);
        bytes.extend(
            frame(9, 0x0)
                .into_iter()
                .map(|b| if b == 0xAA { HEADERS } else { b }),
        );
        bytes.extend(frame(8, PING));
        let headers_at = bytes.len();
        bytes.extend(frame(5, HEADERS));
        for chunk in 1..=bytes.len() {
            let mut frames = Frames::default();
            let mut seen = 0;
            let mut found = Vec::new();
            for part in bytes.chunks(chunk) {
                found.extend(types(&mut frames, part, seen));
                seen += part.len();
            }
            let kinds: Vec<u8> = found.iter().map(|(kind, _)| *kind).collect();
            assert_eq!(kinds, [SETTINGS, 0x0, PING, HEADERS], "chunks of {chunk}");
            // Found exactly where its header ends.
            assert_eq!(found[3].1, headers_at + FRAME_HEADER, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_large_payload_is_skipped_to_the_next_frame() {
        let mut frames = Frames::default();
        let mut bytes = frame(70_000, 0x0);
        bytes.extend(frame(8, PING));
        assert_eq!(
            types(&mut frames, &bytes, 0),
            [(0x0, FRAME_HEADER), (PING, bytes.len() - 8)]
        );
        assert_eq!((frames.skip, frames.filled), (0, 0), "at a frame boundary");
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_the_limit_in_a_second() {
        let mut frames = PerSecond::new(3);
        let start = Instant::now();
        assert!((0..3).all(|_| frames.spent(start).is_none()));
        assert_eq!(frames.spent(start + Duration::from_millis(999)), Some(3));
        let later = start + Duration::from_secs(1);
        assert!((0..3).all(|_| frames.spent(later).is_none()));
        assert_eq!(frames.spent(later), Some(3));
    }

    #[tokio::test]
    async fn the_preface_is_read_in_pieces_and_nothing_after_it() {
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for piece in [&PREFACE[..3], &PREFACE[3..20], &PREFACE[20..]] {
                client.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            client.write_all(b"frames").await.unwrap();
            client
        });
        assert!(read_preface(&mut server, peer).await);
        let mut rest = [0; 6];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(
            &rest, b"frames",
            "what follows the preface is left for hyper"
        );
        drop(writer.await.unwrap());

        for wrong in [&b"GET / HTTP/1.1\r\n\r\n"[..], &PREFACE[..10]] {
            let (mut client, mut server) = tokio::io::duplex(64);
            client.write_all(wrong).await.unwrap();
            drop(client);
            assert!(!read_preface(&mut server, peer).await, "{wrong:?}");
        }
    }

    #[test]
    fn handshake_timeouts_are_bounded() {
        assert_eq!(
            parse_handshake_timeout("10s").unwrap(),
            Duration::from_secs(10)
        );
        assert_eq!(
            parse_handshake_timeout("20s").unwrap(),
            MAX_HANDSHAKE_TIMEOUT
        );
        for refused in ["0s", "21s", "1m", "soon"] {
            assert!(parse_handshake_timeout(refused).is_err(), "{refused}");
        }
    }
}
