//! Connections, from TCP accept until tonic serves them, owned by the server: the accept loop
//! and the TLS handshakes are tasks of its tracker and end when it stops accepting, and each
//! connection handed to tonic holds a token of the tracker and fails its next read or write once
//! told to close, so that no connection outlives `run` (tonic's own connection tasks included).

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

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    time::Instant,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::{
    sync::{CancellationToken, WaitForCancellationFutureOwned},
    task::{TaskTracker, task_tracker::TaskTrackerToken},
};
use tonic::transport::server::Connected;
use tracing::{debug, warn};

/// How long a client may take for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the accept loop pauses after a failed accept (out of file descriptors, typically:
/// the connection waits in the listen backlog meanwhile), instead of spinning.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

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
    lifetime: &Lifetime,
) -> ReceiverStream<io::Result<Connection<H::Io>>> {
    // tonic takes connections as they come; the channel only decouples the tasks from it.
    let (ready, incoming) = mpsc::channel(64);
    let shared = Arc::new(Shared {
        handshake,
        ready,
        tasks: lifetime.tasks.clone(),
        accepting: lifetime.accepting.clone(),
        closing: lifetime.connections.clone(),
    });
    lifetime.tasks.spawn(accept_loop(listener, shared));
    ReceiverStream::new(incoming)
}

/// What every connection task needs, shared.
struct Shared<H: Handshake> {
    handshake: H,
    ready: mpsc::Sender<io::Result<Connection<H::Io>>>,
    tasks: TaskTracker,
    accepting: CancellationToken,
    closing: CancellationToken,
}

async fn accept_loop<H: Handshake>(listener: TcpListener, shared: Arc<Shared<H>>) {
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
        // tonic sets TCP_NODELAY only on connections it accepts itself. Without it, Nagle's
        // algorithm meets the client's delayed ACK and a small answer waits 40 ms (measured:
        // `proxyconf env` took 44 ms).
        if let Err(error) = tcp.set_nodelay(true) {
            debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        shared.tasks.spawn(prepare(shared.clone(), tcp, peer));
    }
}

/// The handshake, within its timeout; then the connection goes to tonic.
async fn prepare<H: Handshake>(shared: Arc<Shared<H>>, tcp: TcpStream, peer: SocketAddr) {
    let timed = tokio::time::timeout(HANDSHAKE_TIMEOUT, shared.handshake.handshake(tcp, peer));
    let io = match shared.accepting.run_until_cancelled(timed).await {
        Some(Ok(Some(io))) => io,
        Some(Err(_)) => {
            debug!(%peer, "TLS handshake timed out");
            return;
        }
        // Refused (logged where seen), or the server stops.
        Some(Ok(None)) | None => return,
    };
    let closing = shared.closing.clone().cancelled_owned();
    let connection = Connection {
        io,
        closing: Box::pin(closing),
        _task: shared.tasks.token(),
    };
    let handed = shared.ready.send(Ok(connection));
    let _ = shared.accepting.run_until_cancelled(handed).await;
}

/// A connection as tonic gets it: once the server closes connections, reading and writing fail,
/// and hyper drops a connection whose I/O fails.
pub struct Connection<IO> {
    io: IO,
    closing: Pin<Box<WaitForCancellationFutureOwned>>,
    _task: TaskTrackerToken,
}

impl<IO> Connection<IO> {
    /// An error once the server closes connections.
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.closing.as_mut().poll(cx).is_ready() {
            let closed = "proxyconf-server stopped: the grace period for calls in flight is over";
            return Poll::Ready(io::Error::new(io::ErrorKind::ConnectionAborted, closed));
        }
        Poll::Pending
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Connection<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_closed(cx) {
            return Poll::Ready(Err(error));
        }
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Connection<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_closed(cx) {
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
        if let Poll::Ready(error) = this.poll_closed(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(error) = this.poll_closed(cx) {
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
        self.io.connect_info()
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
