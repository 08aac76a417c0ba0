//! When `run` returns, nothing of the server is left: every task it started has ended — counted by
//! the runtime it ran on, which runs nothing else — its port is closed, and so are its
//! connections, even those kept open past the grace period.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use proxyconf_proto::v1::{WatchRequest, proxy_config_client::ProxyConfigClient};
use proxyconf_server::{ServerOptions, incoming::PREFACE, tls::TlsFiles};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::util::{ConfigMapFixture, IsolatedServer, NEXUS, scrape, within};

/// Shuts `server` down, waits for `run` to return, and checks what it left.
async fn stop_and_check(server: IsolatedServer) {
    let (addr, metrics_addr) = (server.addr, server.metrics_addr);
    let (result, alive) = server.stop().await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        alive, 0,
        "tasks of the server still alive after run returned"
    );
    for addr in [addr, metrics_addr] {
        assert!(
            TcpStream::connect(addr).is_err(),
            "{addr} still accepts connections"
        );
    }
}

fn npm() -> ConfigMapFixture {
    ConfigMapFixture::new()
        .allow("true")
        .url("npm", &format!("{NEXUS}/npm/"))
}

/// Connections in every state a server can hold: one that never sent a byte, one that sent only
/// the preface, and a client with a Watch stream and a metrics scrape behind it.
struct Clients {
    silent: TcpStream,
    prefaced: TcpStream,
}

impl Clients {
    fn connect(addr: SocketAddr) -> Self {
        let silent = TcpStream::connect(addr).unwrap();
        let mut prefaced = TcpStream::connect(addr).unwrap();
        prefaced.write_all(PREFACE).unwrap();
        Self { silent, prefaced }
    }

    /// Both were closed by the server.
    fn assert_closed(mut self) {
        for (name, stream) in [
            ("silent", &mut self.silent),
            ("prefaced", &mut self.prefaced),
        ] {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut rest = Vec::new();
            // The prefaced one may have received the server's SETTINGS before the end.
            let end = stream.read_to_end(&mut rest);
            assert!(
                end.is_ok()
                    || end
                        .as_ref()
                        .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
                "{name} connection still open: {end:?}"
            );
        }
    }
}

/// A Watch stream that has received its first message, on `channel`.
async fn watching(channel: Channel) -> tonic::Streaming<proxyconf_proto::v1::Resolution> {
    let mut stream = ProxyConfigClient::new(channel)
        .watch(WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    within(stream.message()).await.unwrap().unwrap();
    stream
}

#[tokio::test]
async fn plaintext_leaves_nothing_running_even_past_the_grace_period() {
    let server = IsolatedServer::start(|| ServerOptions {
        shutdown_grace: Duration::from_millis(300),
        ..ServerOptions::default()
    });
    server.observe(npm()).await;
    let channel = Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let _watch = watching(channel.clone()).await;
    // A health Watch stream does not end on shutdown: its connection outlives the grace period
    // and must be closed by force.
    let mut health = HealthClient::new(channel)
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    within(health.message()).await.unwrap().unwrap();
    let clients = Clients::connect(server.addr);
    scrape(server.metrics_addr).await;

    stop_and_check(server).await;
    clients.assert_closed();
    let end = within(async {
        loop {
            match health.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await;
    assert!(
        end.is_err(),
        "the forced close ends the health stream: {end:?}"
    );
}

#[tokio::test]
async fn tls_leaves_nothing_running_and_stops_reloading() {
    let dir = tempfile::tempdir().unwrap();
    let ca = proxyconf_e2e::pki::TestCa::new(dir.path(), "ca");
    let cert = ca.server(dir.path(), "server");
    let files = TlsFiles {
        cert: cert.cert,
        key: cert.key,
        client_ca: None,
    };
    let server = IsolatedServer::start(move || ServerOptions {
        tls: Some(files),
        ..ServerOptions::default()
    });
    server.observe(npm()).await;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&ca.cert_path).unwrap()))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://{}", server.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watch = watching(channel).await;
    let clients = Clients::connect(server.addr);

    stop_and_check(server).await;
    clients.assert_closed();
    let end = within(watch.message()).await.unwrap_err();
    assert!(end.message().contains("shutting down"), "{end}");
}
