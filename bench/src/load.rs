//! The load generator: real tonic clients opening many connections and streams.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use proxyconf_proto::v1::{ResolveRequest, WatchRequest, proxy_config_client::ProxyConfigClient};
use tonic::transport::Channel;

/// `connections` separate HTTP/2 connections to `address`.
pub async fn connect(address: &str, connections: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
            .connect()
            .await
            .with_context(|| format!("cannot connect to {address}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Sustained unary throughput: `concurrency` callers, spread over `channels`, each calling
/// `Resolve` back to back for `duration`. Returns requests per second and the latencies.
pub async fn closed_loop(
    channels: &[Channel],
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut callers = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let mut client = ProxyConfigClient::new(channels[i % channels.len()].clone());
        callers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                client.resolve(ResolveRequest::default()).await?;
                latencies.push(sent.elapsed());
            }
            Ok::<_, tonic::Status>(latencies)
        }));
    }
    let mut all = Vec::new();
    for caller in callers {
        all.extend(caller.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok((all.len() as f64 / elapsed, all))
}

/// Latency at a fixed rate (open loop): request `i` is due at `start + i / rate`, and its latency
/// counts from when it was due, so a slow server cannot hide its queueing (no coordinated
/// omission). A thread of its own paces the requests, since tokio's timers tick in milliseconds.
/// Returns the latencies and the achieved rate.
pub async fn open_loop(
    channels: &[Channel],
    rate: u32,
    duration: Duration,
) -> anyhow::Result<(Vec<Duration>, f64)> {
    let total = (f64::from(rate) * duration.as_secs_f64()) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let start = Instant::now();
    std::thread::spawn(move || {
        for i in 0..total {
            let due = start + interval.mul_f64(i as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if due_tx.send(due).is_err() {
                return;
            }
        }
    });
    let mut requests = Vec::with_capacity(total);
    let mut i = 0;
    while let Some(due) = due_rx.recv().await {
        let mut client = ProxyConfigClient::new(channels[i % channels.len()].clone());
        i += 1;
        requests.push(tokio::spawn(async move {
            client.resolve(ResolveRequest::default()).await?;
            Ok::<_, tonic::Status>(due.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for request in requests {
        latencies.push(request.await??);
    }
    let achieved = total as f64 / start.elapsed().as_secs_f64();
    Ok((latencies, achieved))
}

/// Open Watch streams: `subscribers` over `channels`, each having received its first message.
pub struct Subscribers {
    streams: Vec<tonic::Streaming<proxyconf_proto::v1::Resolution>>,
}

impl Subscribers {
    /// Opens them all, the connections' shares at once, and waits for every first message.
    pub async fn open(channels: &[Channel], subscribers: usize) -> anyhow::Result<Self> {
        let mut openers = tokio::task::JoinSet::new();
        for (i, channel) in channels.iter().enumerate() {
            let share =
                subscribers / channels.len() + usize::from(i < subscribers % channels.len());
            let client = ProxyConfigClient::new(channel.clone());
            openers.spawn(open_streams(client, share));
        }
        let mut streams = Vec::with_capacity(subscribers);
        while let Some(opened) = openers.join_next().await {
            streams.extend(opened??);
        }
        Ok(Self { streams })
    }

    /// Runs `change`, then waits for every subscriber's next message; returns each one's delay
    /// from the change to its receipt.
    pub async fn delays_after(
        self,
        change: impl Future<Output = anyhow::Result<()>>,
    ) -> anyhow::Result<Vec<Duration>> {
        let ready = Arc::new(tokio::sync::Barrier::new(self.streams.len() + 1));
        let changed_at = Arc::new(std::sync::OnceLock::<Instant>::new());
        let mut readers = tokio::task::JoinSet::new();
        for mut stream in self.streams {
            let ready = ready.clone();
            let changed_at = changed_at.clone();
            readers.spawn(async move {
                ready.wait().await;
                stream
                    .message()
                    .await?
                    .context("a message after the change")?;
                let at = Instant::now();
                let since = changed_at
                    .get()
                    .map_or(Duration::ZERO, |t| at.saturating_duration_since(*t));
                // Kept until every subscriber has its message: a stream dropped here would make
                // the server tear it down while it still fans out to the others.
                Ok::<_, anyhow::Error>((since, stream))
            });
        }
        ready.wait().await;
        let _ = changed_at.set(Instant::now());
        change.await?;
        let mut delays = Vec::with_capacity(readers.len());
        let mut streams = Vec::with_capacity(readers.len());
        while let Some(received) = readers.join_next().await {
            let (delay, stream) = received??;
            delays.push(delay);
            streams.push(stream);
        }
        Ok(delays)
    }
}

/// Opens `count` Watch streams with `client`, one after the other, each with its first message.
async fn open_streams(
    mut client: ProxyConfigClient<Channel>,
    count: usize,
) -> anyhow::Result<Vec<tonic::Streaming<proxyconf_proto::v1::Resolution>>> {
    let mut streams = Vec::with_capacity(count);
    while streams.len() < count {
        let mut stream = match client.watch(WatchRequest::default()).await {
            Ok(response) => response.into_inner(),
            // Admission control: back off and retry, as real subscribers do.
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(status) => return Err(status.into()),
        };
        stream.message().await?.context("a first message")?;
        streams.push(stream);
    }
    Ok(streams)
}
