//! Bounded Watch streams, and HTTP/2 abuse (rapid reset, PING floods) that leaves the server
//! serving others.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::future::join_all;
use proxyconf_proto::v1::{ResolveRequest, WatchRequest, proxy_config_client::ProxyConfigClient};
use proxyconf_server::{ServerOptions, incoming::PREFACE};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;
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

/// What the attackers did.
#[derive(Default)]
struct Attack {
    resets: AtomicU64,
    goaways: AtomicU64,
    pings: AtomicU64,
}

impl Attack {
    fn counts(&self) -> (u64, u64, u64) {
        (
            self.resets.load(Ordering::Relaxed),
            self.goaways.load(Ordering::Relaxed),
            self.pings.load(Ordering::Relaxed),
        )
    }
}

/// How often the attackers send a burst.
const TICK: Duration = Duration::from_millis(10);
/// Streams each rapid-reset attacker opens and resets per tick: 2,500 a second.
const RESETS_PER_TICK: usize = 25;
/// PINGs each PING flooder sends per tick: 250,000 a second.
const PINGS_PER_TICK: u64 = 2_500;

/// Opens a stream on `client` and resets it at once; the client again, unless the connection
/// ended.
async fn open_and_reset(
    client: h2::client::SendRequest<tokio_util::bytes::Bytes>,
    uri: &str,
) -> Option<h2::client::SendRequest<tokio_util::bytes::Bytes>> {
    let mut client = client.ready().await.ok()?;
    let request = http::Request::post(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (_response, mut stream) = client.send_request(request, false).ok()?;
    stream.send_reset(h2::Reason::CANCEL);
    Some(client)
}

/// Rapid reset (CVE-2023-44487): opens streams and resets each at once, [`RESETS_PER_TICK`] per
/// tick, reconnecting whenever the server ends the connection, until `stop`.
async fn rapid_reset(addr: std::net::SocketAddr, attack: Arc<Attack>, stop: CancellationToken) {
    let uri = format!("http://{addr}/proxyconf.v1.ProxyConfig/Resolve");
    let mut tick = tokio::time::interval(TICK);
    while !stop.is_cancelled() {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let Ok((client, connection)) = h2::client::handshake(tcp).await else {
            continue;
        };
        let driver = tokio::spawn(connection);
        let mut client = Some(client);
        while stop.run_until_cancelled(tick.tick()).await.is_some() {
            for _ in 0..RESETS_PER_TICK {
                let Some(open) = client.take() else { break };
                client = open_and_reset(open, &uri).await;
                attack
                    .resets
                    .fetch_add(u64::from(client.is_some()), Ordering::Relaxed);
            }
            if client.is_none() {
                break;
            }
        }
        drop(client);
        if let Ok(Err(error)) = driver.await
            && error.is_go_away()
        {
            attack.goaways.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A PING flood: [`PINGS_PER_TICK`] PING frames per tick (the PONGs read and dropped),
/// reconnecting when the server closes the connection, until `stop`.
async fn ping_flood(addr: std::net::SocketAddr, attack: Arc<Attack>, stop: CancellationToken) {
    let pings: Vec<u8> = (0..PINGS_PER_TICK)
        .flat_map(|i| [[0, 0, 8, 0x6, 0, 0, 0, 0, 0].as_slice(), &i.to_be_bytes()].concat())
        .collect();
    let hello = [PREFACE.as_slice(), &[0, 0, 0, 0x4, 0, 0, 0, 0, 0]].concat();
    let mut tick = tokio::time::interval(TICK);
    while !stop.is_cancelled() {
        let (mut read, mut write) = TcpStream::connect(addr).await.unwrap().into_split();
        let drain = tokio::spawn(async move {
            let mut buf = vec![0; 64 * 1024];
            while read.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        let mut open = write.write_all(&hello).await.is_ok();
        while open && stop.run_until_cancelled(tick.tick()).await.is_some() {
            open = write.write_all(&pings).await.is_ok();
            attack
                .pings
                .fetch_add(PINGS_PER_TICK * u64::from(open), Ordering::Relaxed);
        }
        drop(write);
        drain.abort();
        let _ = drain.await;
    }
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
    // resets and 500,000 PINGs a second): as fast as they can, their own CPU on the 2 cores they
    // share with the server is what the measurement sees (measured: a thread merely burning CPU,
    // even at nice 5, took Resolve p99 from 0.9 ms to 5 ms).
    let attack = Arc::new(Attack::default());
    let stop = CancellationToken::new();
    let attackers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut running = Vec::new();
    for _ in 0..2 {
        running.push(attackers.spawn(rapid_reset(server.addr, attack.clone(), stop.clone())));
        running.push(attackers.spawn(ping_flood(server.addr, attack.clone(), stop.clone())));
    }
    eventually(|| async {
        let (resets, _, pings) = attack.counts();
        resets >= 1000 && pings >= 10_000
    })
    .await;
    let before = attack.counts();
    let loaded = resolve_p99(&mut client, 2000).await;
    let during = attack.counts();
    stop.cancel();
    for attacker in running {
        within(attacker).await.unwrap();
    }
    attackers.shutdown_background();
    let (resets, goaways, pings) = (
        during.0 - before.0,
        during.1 - before.1,
        during.2 - before.2,
    );
    let floods = metric_at(server.metrics_addr, "proxyconf_connections_flood_total").await;
    eprintln!(
        "Resolve p99 unloaded {unloaded:?}, under attack {loaded:?}; during the measurement: \
         {resets} streams reset, {goaways} GOAWAYs, {pings} PINGs sent; {floods} floods \
         closed in all"
    );
    assert!(resets >= 1000 && pings >= 10_000, "the attack went on");
    // Noise on 2 shared cores moves a p99 by a few ms whatever the server does. Measured: 0.8-0.9
    // ms unloaded, 2.3-3.5 ms under attack; 56 ms without the flood limits and the read budget.
    let bound = unloaded * 2 + Duration::from_millis(5);
    assert!(
        loaded <= bound,
        "p99 {loaded:?} under attack, over {bound:?}"
    );
    assert!(goaways > 0, "rapid reset is answered with GOAWAY");
    assert!(floods > 0.0, "floods are closed");

    client.resolve(ResolveRequest::default()).await.unwrap();
    let (result, alive) = server.stop().await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(alive, 0);
}
