//! A server on an ephemeral port with a source the test drives, and ConfigMap fixtures.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use futures::StreamExt;
use proxyconf_proto::v1::{ResolveRequest, proxy_config_client::ProxyConfigClient};
use proxyconf_server::{
    ServerOptions,
    source::{ConfigMapState, Source, SourceDescription, SourceEvent},
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// A running server and the handles to drive it.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Where metrics are served, when asked for.
    pub metrics_addr: Option<SocketAddr>,
    events: mpsc::Sender<SourceEvent>,
    stop: Option<oneshot::Sender<()>>,
    /// `run`'s outcome.
    pub finished: Option<tokio::task::JoinHandle<proxyconf_server::Result<()>>>,
}

impl TestServer {
    /// Starts a server whose source has said nothing yet.
    pub async fn start() -> Self {
        Self::start_with(ServerOptions::default()).await
    }

    /// Starts a server with `options` (and metrics on an ephemeral port).
    pub async fn start_with(mut options: ServerOptions) -> Self {
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_addr = Some(metrics.local_addr().unwrap());
        options.metrics_listener = Some(metrics);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (events, rx) = mpsc::channel(16);
        let source = Source {
            description: SourceDescription {
                kind: "file",
                location: "test/cluster-config.yaml".into(),
            },
            events: ReceiverStream::new(rx).boxed(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let finished = tokio::spawn(proxyconf_server::run(listener, source, options, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            metrics_addr,
            events,
            stop: Some(stop),
            finished: Some(finished),
        }
    }

    /// Starts the server's shutdown, as SIGTERM does.
    pub fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// The Prometheus text the metrics endpoint serves.
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.metrics_addr.unwrap())
            .await
            .unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response
    }

    /// The value of the metric line starting with `name` (e.g. `proxyconf_watch_subscribers`).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
            .parse()
            .unwrap()
    }

    /// Starts a server that has observed `configmap`.
    pub async fn with(configmap: ConfigMapFixture) -> Self {
        let server = Self::start().await;
        server.observe(configmap).await;
        server
    }

    /// The source observes `configmap`.
    pub async fn observe(&self, configmap: ConfigMapFixture) {
        self.send(SourceEvent::Observed(configmap.state())).await;
    }

    /// The source reports something.
    pub async fn send(&self, event: SourceEvent) {
        self.events.send(event).await.unwrap();
    }

    /// A connected channel.
    pub async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A connected ProxyConfig client.
    pub async fn client(&self) -> ProxyConfigClient<Channel> {
        ProxyConfigClient::new(self.channel().await)
    }

    /// Resolves with default fields until the server answers (the source is asynchronous).
    pub async fn wait_synced(&self) {
        let client = self.client().await;
        eventually(|| {
            let mut client = client.clone();
            async move { client.resolve(ResolveRequest::default()).await.is_ok() }
        })
        .await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Retries `check` every 10 ms until it holds, for at most 5 s.
pub async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 5s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Bounds an await in a test so that a bug fails instead of hanging.
pub async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), future)
        .await
        .expect("no answer within 5s")
}

pub const NEXUS: &str = "https://artifact-registry-proxy.caching.svc.cluster.local/repository";

/// A ConfigMap's data, built the way an administrator writes it.
#[derive(Debug, Clone, Default)]
pub struct ConfigMapFixture {
    data: BTreeMap<String, String>,
    resource_version: Option<String>,
}

impl ConfigMapFixture {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn allow(self, value: &str) -> Self {
        self.set("allow-package-registry-proxy", value)
    }
    pub fn url(self, pm: &str, url: &str) -> Self {
        self.set(&format!("package-registry-proxy-{pm}-url"), url)
    }
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.data.insert(key.to_owned(), value.to_owned());
        self
    }
    pub fn resource_version(mut self, rv: &str) -> Self {
        self.resource_version = Some(rv.to_owned());
        self
    }
    pub fn state(&self) -> ConfigMapState {
        ConfigMapState::Present {
            data: self.data.clone(),
            resource_version: self.resource_version.clone(),
        }
    }
}
