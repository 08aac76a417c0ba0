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
        scrape(self.metrics_addr.unwrap()).await
    }

    /// The value of the metric line starting with `name` (e.g. `proxyconf_watch_subscribers`).
    pub async fn metric(&self, name: &str) -> f64 {
        metric_at(self.metrics_addr.unwrap(), name).await
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

/// The Prometheus text served at `addr`.
pub async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the metric line starting with `name` served at `addr`.
pub async fn metric_at(addr: SocketAddr, name: &str) -> f64 {
    let text = scrape(addr).await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
        .parse()
        .unwrap()
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

/// A server on a runtime of its own: what is alive on that runtime once `run` has returned was
/// left behind by the server.
pub struct IsolatedServer {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    events: mpsc::Sender<SourceEvent>,
    stop: oneshot::Sender<()>,
    /// `run`'s outcome and the tasks still alive on its runtime after it returned.
    finished: oneshot::Receiver<(proxyconf_server::Result<()>, usize)>,
}

impl IsolatedServer {
    /// Starts a server with `options` (made on its runtime), metrics on an ephemeral port.
    pub fn start(options: impl FnOnce() -> ServerOptions + Send + 'static) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (addr, metrics_addr) = (
            listener.local_addr().unwrap(),
            metrics.local_addr().unwrap(),
        );
        let (events, rx) = mpsc::channel(16);
        let (stop, stopped) = oneshot::channel::<()>();
        let (done, finished) = oneshot::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let result = runtime.block_on(async move {
                let source = Source {
                    description: SourceDescription {
                        kind: "file",
                        location: "test/cluster-config.yaml".into(),
                    },
                    events: ReceiverStream::new(rx).boxed(),
                };
                let listener = into_tokio(listener);
                let options = ServerOptions {
                    metrics_listener: Some(into_tokio(metrics)),
                    ..options()
                };
                proxyconf_server::run(listener, source, options, async {
                    let _ = stopped.await;
                })
                .await
            });
            let _ = done.send((result, alive_after(&runtime, Duration::from_millis(100))));
        });
        Self {
            addr,
            metrics_addr,
            events,
            stop,
            finished,
        }
    }

    /// The source observes `configmap`.
    pub async fn observe(&self, configmap: ConfigMapFixture) {
        self.events
            .send(SourceEvent::Observed(configmap.state()))
            .await
            .unwrap();
    }

    /// Shuts the server down; `run`'s outcome and the tasks it left alive on its runtime.
    pub async fn stop(self) -> (proxyconf_server::Result<()>, usize) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(20), self.finished)
            .await
            .expect("run returns")
            .expect("the server thread reports")
    }
}

/// The tasks alive on `runtime`, once none are or after `settle`. A stream's task is hyper's, not
/// the server's: when its connection is closed by force it ends a moment later (measured: under
/// 20 ms; 1 left at the instant `run` returned). A task the server left behind never ends.
fn alive_after(runtime: &tokio::runtime::Runtime, settle: Duration) -> usize {
    let deadline = std::time::Instant::now() + settle;
    loop {
        let alive = runtime.metrics().num_alive_tasks();
        if alive == 0 || std::time::Instant::now() > deadline {
            return alive;
        }
        runtime.block_on(async { tokio::time::sleep(Duration::from_millis(5)).await });
    }
}

/// A std listener as a tokio one, on the runtime this runs on.
fn into_tokio(listener: std::net::TcpListener) -> tokio::net::TcpListener {
    listener.set_nonblocking(true).unwrap();
    tokio::net::TcpListener::from_std(listener).unwrap()
}
