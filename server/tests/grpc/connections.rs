//! Bounded connections: a cap on open ones, and connections that do not send the HTTP/2 preface
//! or open a stream within the handshake timeout closed.

use std::time::{Duration, Instant};

use proxyconf_proto::v1::{ResolveRequest, proxy_config_client::ProxyConfigClient};
use proxyconf_server::{ServerOptions, incoming::PREFACE};
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
