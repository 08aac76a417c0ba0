//! Bounded connections: a cap on open ones; connections closed that do not send the HTTP/2
//! preface or open a stream within the handshake timeout, or that flood PINGs or stream resets.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use proxyconf_proto::v1::{ResolveRequest, proxy_config_client::ProxyConfigClient};
use proxyconf_server::{
    ServerOptions,
    incoming::{MAX_PINGS_PER_SECOND, MAX_RESETS_PER_SECOND, PREFACE},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::util::{ConfigMapFixture, NEXUS, TestServer, eventually, within};

async fn serving(options: ServerOptions) -> TestServer {
    let server = TestServer::start_with(options).await;
    server
        .observe(
            ConfigMapFixture::new()
                .allow("true")
                .url("npm", &format!("{NEXUS}/npm/")),
        )
        .await;
    server.wait_synced().await;
    server
}

/// Reads until the server closes `stream`; how long that took. Whatever the server sent before
/// (its SETTINGS) is skipped.
async fn closed_after(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0; 1024];
    loop {
        match within(stream.read(&mut buf)).await {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => {}
        }
    }
}

/// An empty SETTINGS frame: what a client sends after the preface.
const SETTINGS: [u8; 9] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_then_let_in_when_one_closes() {
    let server = serving(ServerOptions {
        max_connections: 3,
        ..ServerOptions::default()
    })
    .await;
    eventually(|| async { server.metric("proxyconf_connections_open").await == 0.0 }).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = server.client().await;
        client.resolve(ResolveRequest::default()).await.unwrap();
        clients.push(client);
    }
    assert_eq!(server.metric("proxyconf_connections_open").await, 3.0);

    let mut refused = TcpStream::connect(server.addr).await.unwrap();
    let _ = refused.write_all(PREFACE).await;
    assert!(closed_after(&mut refused).await < Duration::from_secs(1));
    assert_eq!(
        server.metric("proxyconf_connections_refused_total").await,
        1.0
    );
    assert_eq!(server.metric("proxyconf_connections_open").await, 3.0);
    for client in &mut clients {
        client.resolve(ResolveRequest::default()).await.unwrap();
    }

    clients.pop();
    eventually(|| async { server.metric("proxyconf_connections_open").await == 2.0 }).await;
    let mut another = server.client().await;
    another.resolve(ResolveRequest::default()).await.unwrap();
    assert_eq!(
        server.metric("proxyconf_connections_refused_total").await,
        1.0
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_handshake_timeout() {
    let timeout = Duration::from_millis(300);
    let server = serving(ServerOptions {
        handshake_timeout: timeout,
        ..ServerOptions::default()
    })
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let waited = closed_after(&mut silent).await;
    assert!(
        waited >= timeout - Duration::from_millis(50) && waited < timeout * 4,
        "closed after {waited:?}"
    );
    assert_eq!(
        server.metric("proxyconf_connections_timed_out_total").await,
        1.0
    );
    eventually(|| async { server.metric("proxyconf_connections_open").await == 0.0 }).await;
}

#[tokio::test]
async fn a_connection_that_opens_no_stream_is_closed_at_the_handshake_timeout() {
    let timeout = Duration::from_millis(300);
    let server = serving(ServerOptions {
        handshake_timeout: timeout,
        ..ServerOptions::default()
    })
    .await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(PREFACE).await.unwrap();
    idle.write_all(&SETTINGS).await.unwrap();
    let mut settings = [0; 9];
    within(idle.read_exact(&mut settings)).await.unwrap();
    assert_eq!(settings[3], 0x4, "hyper answered with its SETTINGS");
    let waited = closed_after(&mut idle).await;
    assert!(waited < timeout * 4, "closed after {waited:?}");
    assert_eq!(
        server.metric("proxyconf_connections_timed_out_total").await,
        1.0
    );
}

#[tokio::test]
async fn anything_but_http2_is_closed_at_once() {
    let server = serving(ServerOptions::default()).await;
    let mut http1 = TcpStream::connect(server.addr).await.unwrap();
    http1
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_after(&mut http1).await < Duration::from_secs(1));
    assert_eq!(
        server.metric("proxyconf_connections_timed_out_total").await,
        0.0
    );
}

#[tokio::test]
async fn a_client_that_opened_a_stream_in_time_stays_connected_past_the_timeout() {
    let timeout = Duration::from_millis(300);
    let server = serving(ServerOptions {
        handshake_timeout: timeout,
        ..ServerOptions::default()
    })
    .await;
    eventually(|| async { server.metric("proxyconf_connections_open").await == 0.0 }).await;
    let channel = server.channel().await;
    let mut client = ProxyConfigClient::new(channel);
    client.resolve(ResolveRequest::default()).await.unwrap();
    tokio::time::sleep(timeout * 3).await;
    client.resolve(ResolveRequest::default()).await.unwrap();
    assert_eq!(
        server.metric("proxyconf_connections_timed_out_total").await,
        0.0
    );
    assert_eq!(server.metric("proxyconf_connections_open").await, 1.0);
}

/// A PING frame carrying `n`.
fn ping(n: u64) -> Vec<u8> {
    let mut frame = vec![0, 0, 8, 0x6, 0, 0, 0, 0, 0];
    frame.extend(n.to_be_bytes());
    frame
}

/// Reads frames from `stream` until `count` PING answers (ACK) have come.
async fn read_ping_acks(stream: &mut TcpStream, count: u64) {
    let mut acks = 0;
    while acks < count {
        let mut header = [0; 9];
        within(stream.read_exact(&mut header)).await.unwrap();
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let mut payload = vec![0; length];
        within(stream.read_exact(&mut payload)).await.unwrap();
        if header[3] == 0x6 && header[4] & 0x1 == 1 {
            acks += 1;
        }
    }
}

#[tokio::test]
async fn a_ping_flood_is_closed_and_a_few_pings_are_answered() {
    let server = serving(ServerOptions::default()).await;
    let hello = [PREFACE.as_slice(), &SETTINGS].concat();
    let burst = u64::from(MAX_PINGS_PER_SECOND);

    let mut polite = TcpStream::connect(server.addr).await.unwrap();
    polite.write_all(&hello).await.unwrap();
    for n in 0..burst {
        polite.write_all(&ping(n)).await.unwrap();
    }
    read_ping_acks(&mut polite, burst).await;

    let mut flood = TcpStream::connect(server.addr).await.unwrap();
    let pings: Vec<u8> = (0..=burst).flat_map(ping).collect();
    flood.write_all(&[hello, pings].concat()).await.unwrap();
    assert!(closed_after(&mut flood).await < Duration::from_secs(1));
    assert_eq!(
        server.metric("proxyconf_connections_flood_total").await,
        1.0
    );

    // The polite one is still served: another PING a second later is answered.
    tokio::time::sleep(Duration::from_secs(1)).await;
    polite.write_all(&ping(burst)).await.unwrap();
    read_ping_acks(&mut polite, 1).await;
}

/// Opens `count` Watch streams on `client` one after the other, and resets each once it is
/// answered, as a client cancelling its calls does.
async fn watch_and_reset(
    mut client: h2::client::SendRequest<tokio_util::bytes::Bytes>,
    addr: SocketAddr,
    count: u32,
) {
    for _ in 0..count {
        let Ok(ready) = client.ready().await else {
            return;
        };
        client = ready;
        let request = http::Request::post(format!("http://{addr}/proxyconf.v1.ProxyConfig/Watch"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let Ok((response, mut stream)) = client.send_request(request, false) else {
            return;
        };
        // An empty WatchRequest, as one gRPC message.
        let empty = tokio_util::bytes::Bytes::from_static(&[0; 5]);
        if stream.send_data(empty, true).is_err() || within(response).await.is_err() {
            return;
        }
        stream.send_reset(h2::Reason::CANCEL);
    }
}

#[tokio::test]
async fn a_connection_resetting_more_streams_than_the_limit_in_a_second_is_closed() {
    let server = serving(ServerOptions::default()).await;
    let connect = || async {
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        (client, tokio::spawn(connection))
    };

    let (polite_client, polite) = connect().await;
    watch_and_reset(
        polite_client.clone(),
        server.addr,
        MAX_RESETS_PER_SECOND / 2,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!polite.is_finished(), "half the limit is fine");

    let (flooding_client, flooding) = connect().await;
    watch_and_reset(
        flooding_client.clone(),
        server.addr,
        MAX_RESETS_PER_SECOND + 1,
    )
    .await;
    // Closed (the client sees the end of the connection, without GOAWAY).
    within(flooding).await.unwrap().ok();
    assert_eq!(
        server.metric("proxyconf_connections_flood_total").await,
        1.0
    );
    assert!(!polite.is_finished());
    drop((polite_client, flooding_client));
}
