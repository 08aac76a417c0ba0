//! Watch fan-out: how soon one change reaches every subscriber, and what each idle subscriber
//! costs the server; for proxyconf-server watching a Kubernetes API and for the bare tonic floor.

use std::{future::Future, time::Duration};

use anyhow::Context;
use prost::Message;
use proxyconf_e2e::fake_apiserver::FakeApiServer;
use proxyconf_proto::v1::{
    GetStatusRequest, ResolveRequest, proxy_config_client::ProxyConfigClient,
};

use crate::{load, percentiles, processes::ServerProcess, subscribers::Subscribers};

/// What one fan-out run measured.
#[derive(Debug, Clone)]
pub struct FanOut {
    pub subscribers: usize,
    pub connections: usize,
    /// The first subscriber's delay: how long the change takes to reach the server's streams.
    pub first: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// Server memory before the subscribers and with them all idle, KiB.
    pub rss_before_kib: u64,
    pub rss_with_kib: u64,
    /// The server's CPU time (user and system) from the change until every subscriber had its
    /// message: steadier than the delays on a noisy machine (counted in 10 ms ticks).
    pub server_cpu: Duration,
}

impl FanOut {
    /// The server memory each idle subscriber adds, KiB.
    pub fn per_subscriber_kib(&self) -> f64 {
        self.rss_with_kib.saturating_sub(self.rss_before_kib) as f64 / self.subscribers as f64
    }

    /// The server's CPU time per message delivered, in microseconds.
    pub fn cpu_per_message_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.subscribers as f64
    }
}

/// Opens `subscribers` Watch streams over `connections` to `server`, lets them idle, then runs
/// `change` and measures until each subscriber has its next message.
pub async fn measure(
    server: &ServerProcess,
    subscribers: usize,
    connections: usize,
    change: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<FanOut> {
    let rss_before_kib = server.rss_kib()?;
    let streams = Subscribers::open(&server.address, connections, subscribers)
        .await
        .context("opening the subscribers")?;
    // Let the server settle after the burst of stream setups.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_with_kib = server.rss_kib()?;
    let ticks_before = server.cpu_ticks()?;
    let mut delays = streams.delays_after(change).await?;
    let server_cpu = ticks(server.cpu_ticks()?.saturating_sub(ticks_before));
    let (p50, p99) = percentiles(&mut delays);
    Ok(FanOut {
        subscribers,
        connections,
        first: delays.first().copied().unwrap_or_default(),
        p50,
        p99,
        rss_before_kib,
        rss_with_kib,
        server_cpu,
    })
}

/// `count` clock ticks of CPU time.
fn ticks(count: u64) -> Duration {
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).unwrap_or(100).max(1);
    Duration::from_micros(count * 1_000_000 / per_second)
}

/// proxyconf-server on a Kubernetes API: the change is a ConfigMap update on the API, which
/// reaches the server as a watch event. `server_args` are added to the server's command line.
/// Also returns the server's first answer, encoded, for the bare floor to send.
pub async fn kubernetes(
    subscribers: usize,
    connections: usize,
    server_args: &[&str],
) -> anyhow::Result<(FanOut, Vec<u8>)> {
    let api = FakeApiServer::start("konflux-info", "cluster-config").await;
    apply(&api, &npm_data(""));
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig())?;
    let server = ServerProcess::proxyconf_with(&kubeconfig, server_args)?;
    let answer = first_answer(&server.address).await?;
    let fan_out = measure(&server, subscribers, connections, async {
        apply(&api, &npm_data("changed/"));
        Ok(())
    })
    .await?;
    Ok((fan_out, answer))
}

/// The server's answer to a default `Resolve`, encoded, once it has one.
pub async fn first_answer(address: &str) -> anyhow::Result<Vec<u8>> {
    let channel = load::connect(address, 1).await?.remove(0);
    let mut client = ProxyConfigClient::new(channel);
    for _ in 0..500 {
        match client.resolve(ResolveRequest::default()).await {
            Ok(answer) => return Ok(answer.into_inner().encode_to_vec()),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    anyhow::bail!("the server at {address} did not answer Resolve within 10 s")
}

/// The bare tonic floor: the change is a call that makes it send its constant answer (`answer`,
/// an encoded `Resolution`) to every subscriber.
pub async fn bare(subscribers: usize, connections: usize, answer: &[u8]) -> anyhow::Result<FanOut> {
    let dir = tempfile::tempdir()?;
    let answer_file = dir.path().join("answer.bin");
    std::fs::write(&answer_file, answer)?;
    let server = ServerProcess::bare(&answer_file)?;
    let trigger = load::connect(&server.address, 1).await?;
    measure(&server, subscribers, connections, async {
        ProxyConfigClient::new(trigger[0].clone())
            .get_status(GetStatusRequest::default())
            .await?;
        Ok(())
    })
    .await
}

/// The typical ConfigMap, its npm URL suffixed with `url_suffix` (a change when it differs).
pub fn npm_data(url_suffix: &str) -> Vec<(String, String)> {
    crate::costs::typical()
        .into_iter()
        .map(|(k, v)| {
            if k == "package-registry-proxy-npm-url" {
                (k, format!("{v}{url_suffix}"))
            } else {
                (k, v)
            }
        })
        .collect()
}

/// Makes `data` the ConfigMap on `api`.
pub fn apply(api: &FakeApiServer, data: &[(String, String)]) {
    let pairs: Vec<(&str, &str)> = data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    api.apply(&pairs);
}
