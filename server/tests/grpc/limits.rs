//! Bounded Watch streams, and HTTP/2 abuse (rapid reset, PING floods) that leaves the server
//! serving others.

use std::time::{Duration, Instant};

use futures::future::join_all;
use proxyconf_e2e::attack::Attackers;
use proxyconf_proto::v1::{ResolveRequest, WatchRequest, proxy_config_client::ProxyConfigClient};
use proxyconf_server::ServerOptions;
use tonic::{Code, transport::Channel};

use super::util::{
    ConfigMapFixture, IsolatedServer, NEXUS, TestServer, eventually, metric_at, within,
};

fn npm() -> ConfigMapFixture {
    ConfigMapFixture::new()
        .allow("true")
        .url("npm", &format!("{NEXUS}/npm/"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_max_watch_streams_are_open_and_a_closed_one_lets_another_in() {
    let max = 5;
    let server = TestServer::start_with(ServerOptions {
        max_watch_streams: max,
        ..ServerOptions::default()
    })
    .await;
    server.observe(npm()).await;
    let channels = [server.channel().await, server.channel().await];
    // max + 1 at once, over two connections: exactly max are admitted.
    let opened = join_all((0..=max).map(|i| {
        let mut client = ProxyConfigClient::new(channels[i % 2].clone());
        async move { client.watch(WatchRequest::default()).await }
    }))
    .await;
    let (mut open, refused): (Vec<_>, Vec<_>) = opened.into_iter().partition(Result::is_ok);
    assert_eq!((open.len(), refused.len()), (max, 1));
    let refused = refused.into_iter().next().unwrap().unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(
        refused.message(),
        "this replica serves its maximum of 5 Watch streams; retry with backoff or on another \
         replica"
    );
    assert_eq!(server.metric("proxyconf_watch_rejected_total").await, 1.0);
    assert_eq!(server.metric("proxyconf_watch_streams_max").await, 5.0);
    assert_eq!(server.metric("proxyconf_watch_subscribers").await, 5.0);
    let mut client = ProxyConfigClient::new(channels[0].clone());
    let again = client.watch(WatchRequest::default()).await.unwrap_err();
    assert_eq!(again.code(), Code::ResourceExhausted);

    // Closing one lets exactly one more in.
    drop(open.pop());
    eventually(|| async { server.metric("proxyconf_watch_subscribers").await == 4.0 }).await;
    let mut admitted = client
        .watch(WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    within(admitted.message()).await.unwrap().unwrap();
    let full = client.watch(WatchRequest::default()).await.unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted);
    assert_eq!(server.metric("proxyconf_watch_rejected_total").await, 3.0);
    // Unary calls are not limited.
    client.resolve(ResolveRequest::default()).await.unwrap();
}

/// The 99th percentile of `calls` sequential `Resolve` latencies.
async fn resolve_p99(client: &mut ProxyConfigClient<Channel>, calls: usize) -> Duration {
    let mut latencies = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        client.resolve(ResolveRequest::default()).await.unwrap();
        latencies.push(start.elapsed());
    }
    latencies.sort();
    latencies[calls * 99 / 100]
}

#[tokio::test]
async fn rapid_reset_and_ping_floods_leave_resolve_latency_within_bounds() {
    let server = IsolatedServer::start(ServerOptions::default);
    server.observe(npm()).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ProxyConfigClient::new(channel);
    eventually(|| {
        let mut client = client.clone();
        async move { client.resolve(ResolveRequest::default()).await.is_ok() }
    })
    .await;
    resolve_p99(&mut client, 300).await; // warm up
    let unloaded = resolve_p99(&mut client, 2000).await;

    // The attackers run on a runtime of their own, as another process would, at a set rate (5,000
    // resets and 500,000 PINGs a second).
    let attackers = Attackers::start(server.addr);
    let attack = attackers.attack.clone();
    eventually(|| async {
        let counts = attack.counts();
        counts.resets >= 1000 && counts.pings >= 10_000
    })
    .await;
    let before = attack.counts();
    let loaded = resolve_p99(&mut client, 2000).await;
    let during = attack.counts() - before;
    within(attackers.stop()).await;
    let floods = metric_at(server.metrics_addr, "proxyconf_connections_flood_total").await;
    eprintln!(
        "Resolve p99 unloaded {unloaded:?}, under attack {loaded:?}; during the measurement: \
         {} streams reset, {} GOAWAYs, {} PINGs sent; {floods} floods closed in all",
        during.resets, during.goaways, during.pings
    );
    assert!(
        during.resets >= 1000 && during.pings >= 10_000,
        "the attack went on"
    );
    // Noise on 2 shared cores moves a p99 by a few ms whatever the server does. Measured: 0.8-0.9
    // ms unloaded, 2.3-3.5 ms under attack; 56 ms without the flood limits and the read budget.
    let bound = unloaded * 2 + Duration::from_millis(5);
    assert!(
        loaded <= bound,
        "p99 {loaded:?} under attack, over {bound:?}"
    );
    assert!(during.goaways > 0, "rapid reset is answered with GOAWAY");
    assert!(floods > 0.0, "floods are closed");

    client.resolve(ResolveRequest::default()).await.unwrap();
    let (result, alive) = server.stop().await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(alive, 0);
}
