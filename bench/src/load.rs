//! The unary load generator: real tonic clients over several connections.

use std::time::{Duration, Instant};

use anyhow::Context;
use proxyconf_proto::v1::{ResolveRequest, proxy_config_client::ProxyConfigClient};
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
