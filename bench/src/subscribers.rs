//! Watch subscribers as cheap as a client can be, for the fan-out figures: h2 directly, one task
//! per connection, and no decoding. A subscriber's message counts as received when its last byte
//! is in the subscriber's hands, which is what the server delivers; decoding it is the
//! subscriber's own cost.
//!
//! Why not tonic clients: 10,000 tonic streams (a task, a decoder and a message each) cost the
//! load generator about as much CPU per message as the server (measured: 35-50 µs against
//! 30-40 µs), on the same two cores, so the fan-out figures measured the generator as much as the
//! server. Real subscribers are platform services with a few streams each, on other machines.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bytes::{Buf, Bytes, BytesMut};
use futures::{StreamExt, stream::FuturesUnordered};
use h2::{RecvStream, client::SendRequest};
use http::{HeaderMap, Request};
use proxyconf_proto::{
    Encoded,
    encoded::{GRPC_PREFIX_LEN, grpc_prefix},
    v1::WatchRequest,
};
use tokio::{net::TcpStream, sync::Barrier, task::JoinSet};

/// The gRPC method every subscriber calls.
const WATCH: &str = "/proxyconf.v1.ProxyConfig/Watch";
/// gRPC's RESOURCE_EXHAUSTED: the server's admission control asks to come back later.
const RESOURCE_EXHAUSTED: &str = "8";
/// Receive windows large enough that flow control never holds a fan-out back.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 64 << 20;

/// Open Watch streams over HTTP/2 connections, each stream having received its first message.
/// Dropping this closes them all.
pub struct Subscribers {
    connections: Vec<Vec<Subscriber>>,
    /// The tasks that drive the connections.
    drivers: JoinSet<()>,
}

impl Subscribers {
    /// Opens `subscribers` streams to `address` (`HOST:PORT`, plaintext) over `connections`
    /// connections, each connection's share one after the other, the connections at once.
    pub async fn open(
        address: &str,
        connections: usize,
        subscribers: usize,
    ) -> anyhow::Result<Self> {
        let mut drivers = JoinSet::new();
        let mut openers = JoinSet::new();
        for i in 0..connections {
            let share = subscribers / connections + usize::from(i < subscribers % connections);
            let sender = connect(address, &mut drivers).await?;
            let authority = address.to_owned();
            openers.spawn(async move {
                let mut streams = Vec::with_capacity(share);
                while streams.len() < share {
                    if let Some(subscriber) = Subscriber::open(sender.clone(), &authority).await? {
                        streams.push(subscriber);
                    }
                }
                Ok::<_, anyhow::Error>(streams)
            });
        }
        let mut opened = Vec::with_capacity(connections);
        while let Some(streams) = openers.join_next().await {
            opened.push(streams??);
        }
        Ok(Self {
            connections: opened,
            drivers,
        })
    }

    /// Runs `change`, then waits for every subscriber's next message; returns each one's delay
    /// from the change to its receipt.
    pub async fn delays_after(
        self,
        change: impl Future<Output = anyhow::Result<()>>,
    ) -> anyhow::Result<Vec<Duration>> {
        let ready = Arc::new(Barrier::new(self.connections.len() + 1));
        let changed_at = Arc::new(std::sync::OnceLock::<Instant>::new());
        let mut readers = JoinSet::new();
        for streams in self.connections {
            let (ready, changed_at) = (ready.clone(), changed_at.clone());
            readers.spawn(async move {
                ready.wait().await;
                let received = receive_next(streams).await?;
                let changed_at = changed_at.get().copied().context("the change's time")?;
                Ok::<_, anyhow::Error>(
                    received
                        .into_iter()
                        .map(|at| at.saturating_duration_since(changed_at))
                        .collect::<Vec<_>>(),
                )
            });
        }
        ready.wait().await;
        let _ = changed_at.set(Instant::now());
        change.await?;
        let mut delays = Vec::new();
        while let Some(received) = readers.join_next().await {
            delays.extend(received??);
        }
        // The connections live until every subscriber has its message: one closed early would
        // make the server tear its streams down while it still fans out to the others.
        drop(self.drivers);
        Ok(delays)
    }
}

/// When each of `streams` received its next message. The streams are dropped together, at the
/// end.
async fn receive_next(mut streams: Vec<Subscriber>) -> anyhow::Result<Vec<Instant>> {
    let mut pending: FuturesUnordered<_> = streams
        .iter_mut()
        .map(|stream| async move {
            stream.next_message().await?;
            Ok::<_, anyhow::Error>(Instant::now())
        })
        .collect();
    let mut received = Vec::with_capacity(pending.len());
    while let Some(at) = pending.next().await {
        received.push(at?);
    }
    Ok(received)
}

/// One HTTP/2 connection to `address`, driven by a task in `drivers`.
async fn connect(address: &str, drivers: &mut JoinSet<()>) -> anyhow::Result<SendRequest<Bytes>> {
    let tcp = TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot connect to {address}"))?;
    tcp.set_nodelay(true)?;
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake(tcp)
        .await
        .with_context(|| format!("HTTP/2 handshake with {address}"))?;
    drivers.spawn(async move {
        // Ends with an error when the connection is closed under it, as at the end of a run.
        let _ = connection.await;
    });
    Ok(sender)
}

/// A Watch stream, with what it has read past its last complete message.
struct Subscriber {
    body: RecvStream,
    unread: BytesMut,
}

impl Subscriber {
    /// Opens a Watch stream and reads its first message; `None` when the server's admission
    /// control refused it for now (after a pause, as real subscribers back off).
    async fn open(sender: SendRequest<Bytes>, authority: &str) -> anyhow::Result<Option<Self>> {
        let mut sender = sender.ready().await.context("a stream slot")?;
        let request = Request::post(format!("http://{authority}{WATCH}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())?;
        let (response, mut body) = sender.send_request(request, false)?;
        body.send_data(Encoded::new(&WatchRequest::default()).grpc_frame(), true)?;
        let response = response.await.context("the Watch response")?;
        if response.status() != http::StatusCode::OK {
            bail!("Watch answered with HTTP status {}", response.status());
        }
        if let Some(code) = grpc_status(response.headers()) {
            if code == RESOURCE_EXHAUSTED {
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Ok(None);
            }
            bail!("Watch refused with gRPC status {code}");
        }
        let mut subscriber = Self {
            body: response.into_body(),
            unread: BytesMut::new(),
        };
        subscriber.next_message().await.context("a first message")?;
        Ok(Some(subscriber))
    }

    /// Waits until the next complete message has arrived.
    async fn next_message(&mut self) -> anyhow::Result<()> {
        loop {
            if let Some(length) = complete_message(&self.unread) {
                self.unread.advance(length);
                return Ok(());
            }
            let chunk = match self.body.data().await {
                Some(chunk) => chunk.context("reading the Watch stream")?,
                None => bail!("the Watch stream ended"),
            };
            self.body.flow_control().release_capacity(chunk.len())?;
            self.unread.extend_from_slice(&chunk);
        }
    }
}

/// The length of the gRPC frame at the start of `unread`, prefix included, once it is complete.
fn complete_message(unread: &[u8]) -> Option<usize> {
    let (_, length) = grpc_prefix(unread)?;
    let length = GRPC_PREFIX_LEN.checked_add(length)?;
    (unread.len() >= length).then_some(length)
}

/// The `grpc-status` of a trailers-only answer, if the headers are one.
fn grpc_status(headers: &HeaderMap) -> Option<&str> {
    headers.get("grpc-status")?.to_str().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_complete_once_its_prefixed_length_has_arrived() {
        let frame = [0, 0, 0, 0, 3, b'a', b'b', b'c', 0, 0];
        assert_eq!(complete_message(&frame[..4]), None);
        assert_eq!(complete_message(&frame[..7]), None);
        assert_eq!(complete_message(&frame[..8]), Some(8));
        assert_eq!(complete_message(&frame), Some(8));
        assert_eq!(complete_message(&[0, 0, 0, 0, 0]), Some(5));
    }
}
