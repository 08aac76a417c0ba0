//! `Resolve` latency while HTTP/2 attackers (rapid reset, PING floods) hit the server, beside the
//! same measurement unloaded, in alternating rounds on the same connection.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Context;
use proxyconf_e2e::attack::{AttackCounts, Attackers};
use proxyconf_proto::v1::{ResolveRequest, proxy_config_client::ProxyConfigClient};
use tonic::transport::Channel;

use crate::{load, percentiles, processes::ServerProcess};

/// What one round measured.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    pub unloaded_p99: Duration,
    pub attacked_p99: Duration,
    /// What the attackers did while the attacked p99 was measured.
    pub attack: AttackCounts,
}

impl Round {
    /// The attacked p99 over the unloaded one.
    pub fn ratio(&self) -> f64 {
        self.attacked_p99.as_secs_f64() / self.unloaded_p99.as_secs_f64().max(1e-9)
    }
}

/// The 99th percentile of `calls` sequential `Resolve` latencies.
async fn sequential_p99(
    client: &mut ProxyConfigClient<Channel>,
    calls: usize,
) -> anyhow::Result<Duration> {
    let mut latencies = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        client.resolve(ResolveRequest::default()).await?;
        latencies.push(start.elapsed());
    }
    Ok(percentiles(&mut latencies).1)
}

/// Until the attackers are at full rate (or an error after 10 s).
async fn attack_under_way(attackers: &Attackers) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counts = attackers.attack.counts();
        if counts.resets >= 1000 && counts.pings >= 10_000 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the attack did not get going: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `rounds` rounds of `calls` sequential calls each way; each round's unloaded p99 is measured
/// right before its attacked one.
pub async fn measure(
    server: &ServerProcess,
    calls: usize,
    rounds: usize,
) -> anyhow::Result<Vec<Round>> {
    let addr: SocketAddr = server.address.parse().context("the server's address")?;
    let channel = load::connect(&server.address, 1).await?.remove(0);
    let mut client = ProxyConfigClient::new(channel);
    sequential_p99(&mut client, calls / 10 + 1).await?; // warm up
    let mut measured = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let unloaded_p99 = sequential_p99(&mut client, calls).await?;
        let attackers = Attackers::start(addr);
        attack_under_way(&attackers).await?;
        let before = attackers.attack.counts();
        let attacked_p99 = sequential_p99(&mut client, calls).await;
        let attack = attackers.attack.counts() - before;
        attackers.stop().await;
        measured.push(Round {
            unloaded_p99,
            attacked_p99: attacked_p99.context("Resolve under attack")?,
            attack,
        });
    }
    Ok(measured)
}
