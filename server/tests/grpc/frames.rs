//! HTTP/2 abuse carried in the frames themselves: SETTINGS floods, a header list over the limit,
//! CONTINUATION floods. Each is refused on its own connection, and the server goes on serving.

use std::time::Duration;

use proxyconf_proto::v1::ResolveRequest;
use proxyconf_server::{
    ServerOptions,
    incoming::{MAX_SETTINGS_PER_SECOND, PREFACE},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::util::{ConfigMapFixture, NEXUS, TestServer, within};

const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
/// The flag that ends a header block.
const END_HEADERS: u8 = 0x4;
/// The flag that ends the request.
const END_STREAM: u8 = 0x1;
/// GOAWAY's error code for a peer that sends too much.
const ENHANCE_YOUR_CALM: u32 = 0xb;
/// The largest frame payload the server takes (its SETTINGS_MAX_FRAME_SIZE).
const MAX_FRAME: usize = 16 * 1024;

async fn serving() -> TestServer {
    let server = TestServer::start_with(ServerOptions::default()).await;
    let npm = ConfigMapFixture::new()
        .allow("true")
        .url("npm", &format!("{NEXUS}/npm/"));
    server.observe(npm).await;
    server.wait_synced().await;
    server
}

/// A frame of `kind` with `flags` on `stream`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![length[1], length[2], length[3], kind, flags];
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// The next frame from `stream` (kind, flags, payload); `None` once the server has closed it.
async fn next_frame(stream: &mut TcpStream) -> Option<(u8, u8, Vec<u8>)> {
    let mut header = [0; 9];
    within(stream.read_exact(&mut header)).await.ok()?;
    let length =
        usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let mut payload = vec![0; length];
    within(stream.read_exact(&mut payload)).await.ok()?;
    Some((header[3], header[4], payload))
}

/// Reads frames until `count` acknowledgements of SETTINGS have come.
async fn read_settings_acks(stream: &mut TcpStream, count: u32) {
    let mut acks = 0;
    while acks < count {
        let (kind, flags, _) = next_frame(stream).await.expect("the connection stays open");
        if kind == SETTINGS && flags & ACK != 0 {
            acks += 1;
        }
    }
}

/// A Resolve on a connection of its own is answered.
async fn still_serving(server: &TestServer) {
    let mut client = server.client().await;
    within(client.resolve(ResolveRequest::default()))
        .await
        .expect("Resolve answered while the abuse is refused");
}

#[tokio::test]
async fn a_settings_flood_is_closed_and_a_few_settings_are_answered() {
    let server = serving().await;
    let empty_settings = frame(SETTINGS, 0, 0, &[]);
    // The SETTINGS after the preface counts: `burst` in all.
    let burst = MAX_SETTINGS_PER_SECOND;
    let polite_frames: Vec<u8> = (0..burst).flat_map(|_| empty_settings.clone()).collect();
    let mut polite = TcpStream::connect(server.addr).await.unwrap();
    polite
        .write_all(&[PREFACE.as_slice(), &polite_frames].concat())
        .await
        .unwrap();
    read_settings_acks(&mut polite, burst).await;

    let mut flood = TcpStream::connect(server.addr).await.unwrap();
    let flood_frames: Vec<u8> = (0..=burst).flat_map(|_| empty_settings.clone()).collect();
    flood
        .write_all(&[PREFACE.as_slice(), &flood_frames].concat())
        .await
        .unwrap();
    while next_frame(&mut flood).await.is_some() {}
    assert_eq!(
        server.metric("proxyconf_connections_flood_total").await,
        1.0
    );
    still_serving(&server).await;

    // The polite one is still served: SETTINGS a second later is acknowledged.
    tokio::time::sleep(Duration::from_secs(1)).await;
    polite.write_all(&empty_settings).await.unwrap();
    read_settings_acks(&mut polite, 1).await;
}

/// A POST of `/proxyconf.v1.ProxyConfig/Resolve` with a header of `padding` bytes.
fn resolve_request(server: &TestServer, padding: usize) -> http::Request<()> {
    let uri = format!("http://{}/proxyconf.v1.ProxyConfig/Resolve", server.addr);
    http::Request::post(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-padding", "p".repeat(padding))
        .body(())
        .unwrap()
}

#[tokio::test]
async fn a_header_list_over_the_limit_is_refused_and_the_connection_serves_on() {
    let server = serving().await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);

    // Over the 16 KiB header list the server takes: h2 answers 431 and refuses the stream.
    let mut client = within(client.ready()).await.unwrap();
    let (response, _) = client
        .send_request(resolve_request(&server, 20 * 1024), true)
        .unwrap();
    match within(response).await {
        Ok(response) => assert_eq!(response.status(), 431),
        Err(error) => assert_eq!(error.reason(), Some(h2::Reason::REFUSED_STREAM), "{error}"),
    }

    // The same connection then serves a proper call (an empty ResolveRequest).
    let mut client = within(client.ready()).await.unwrap();
    let (response, mut body) = client
        .send_request(resolve_request(&server, 16), false)
        .unwrap();
    body.send_data(vec![0; 5].into(), true).unwrap();
    let response = within(response).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(!connection.is_finished(), "the connection stays open");
    still_serving(&server).await;
}

/// The error code of a GOAWAY the server sends on `stream` within `wait`, if any; the frames
/// read are taken from `pending`, where a frame cut by the wait stays for the next call.
async fn goaway_within(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    wait: Duration,
) -> Option<u32> {
    let mut chunk = [0; 4096];
    // TcpStream::read is cancel-safe: nothing read is lost when the wait ends.
    if let Ok(Ok(n)) = tokio::time::timeout(wait, stream.read(&mut chunk)).await {
        pending.extend(&chunk[..n]);
    }
    let mut code = None;
    while pending.len() >= 9 {
        let length =
            usize::from(pending[0]) << 16 | usize::from(pending[1]) << 8 | usize::from(pending[2]);
        if pending.len() < 9 + length {
            break;
        }
        let frame: Vec<u8> = pending.drain(..9 + length).collect();
        if frame[3] == GOAWAY {
            code = Some(u32::from_be_bytes(frame[13..17].try_into().unwrap()));
        }
    }
    code
}

#[tokio::test]
async fn a_continuation_flood_is_closed_with_enhance_your_calm() {
    let server = serving().await;
    let mut flood = TcpStream::connect(server.addr).await.unwrap();
    // Header fields `x: y` (literal, not indexed) filling a frame, in a header block that never
    // ends: HEADERS without END_HEADERS, then CONTINUATION frames, each without it either.
    let fields: Vec<u8> = [0x00, 1, b'x', 1, b'y'].repeat(MAX_FRAME / 5);
    let opening = [
        PREFACE.as_slice(),
        &frame(SETTINGS, 0, 0, &[]),
        &frame(HEADERS, 0, 1, &fields),
    ]
    .concat();
    flood.write_all(&opening).await.unwrap();
    let continuation = frame(CONTINUATION, 0, 1, &fields);
    let (mut pending, mut sent) = (Vec::new(), 0);
    // One frame at a time, until the server answers: a write after its GOAWAY would make the
    // kernel reset the connection and lose the GOAWAY.
    let code = loop {
        assert!(
            sent < 100,
            "the server took 100 CONTINUATION frames (1.6 MiB) of one header block"
        );
        flood.write_all(&continuation).await.unwrap();
        sent += 1;
        let wait = Duration::from_millis(100);
        if let Some(code) = goaway_within(&mut flood, &mut pending, wait).await {
            break code;
        }
    };
    assert_eq!(code, ENHANCE_YOUR_CALM, "after {sent} CONTINUATION frames");
    still_serving(&server).await;

    // A header block that ends is served, CONTINUATION and all: POST, http, :authority x, :path.
    let mut block = vec![0x83, 0x86, 0x41, 1, b'x'];
    let path = b"/proxyconf.v1.ProxyConfig/Resolve";
    block.extend([0x04, u8::try_from(path.len()).unwrap()]);
    block.extend(path);
    let (first, rest) = block.split_at(4);
    let mut polite = TcpStream::connect(server.addr).await.unwrap();
    let request = [
        PREFACE.as_slice(),
        &frame(SETTINGS, 0, 0, &[]),
        &frame(HEADERS, END_STREAM, 1, first),
        &frame(CONTINUATION, END_HEADERS, 1, rest),
    ]
    .concat();
    polite.write_all(&request).await.unwrap();
    loop {
        let (kind, _, _) = next_frame(&mut polite)
            .await
            .expect("an answer to a header block in two frames");
        assert_ne!(kind, GOAWAY, "a well-formed header block is refused");
        if kind == HEADERS {
            break;
        }
    }
}
