//! The server library, its real kube client, and the API server fake, wired together.

use std::time::Duration;

use proxyconf_e2e::fake_apiserver::FakeApiServer;
use proxyconf_proto::v1::{
    GetStatusRequest, Resolution, ResolveRequest, Status, WatchRequest,
    proxy_config_client::ProxyConfigClient,
};
use proxyconf_server::source::kubernetes::{self, KubernetesSourceOptions};
use tokio::{net::TcpListener, sync::oneshot};
use tonic::{Streaming, transport::Channel};

pub const NAMESPACE: &str = "konflux-info";
pub const NAME: &str = "cluster-config";
pub const NPM: &str = "https://artifact-registry-proxy.caching.svc.cluster.local/repository/npm/";

/// The options the tests use: quick retries, short request timeouts.
pub fn options() -> KubernetesSourceOptions {
    KubernetesSourceOptions {
        namespace: NAMESPACE.into(),
        name: NAME.into(),
        watch_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(1),
        backoff: (Duration::from_millis(20), Duration::from_millis(200)),
    }
}

/// An in-process proxyconf server following the fake API server.
pub struct Harness {
    pub api: FakeApiServer,
    pub client: ProxyConfigClient<Channel>,
    _stop: oneshot::Sender<()>,
}

impl Harness {
    /// Starts the fake (with `initial` data, or without the ConfigMap when `None`) and a server
    /// watching it.
    pub async fn start(initial: Option<&[(&str, &str)]>) -> Self {
        Self::start_with(options(), |api| {
            if let Some(data) = initial {
                api.apply(data);
            }
        })
        .await
    }

    /// Starts the fake, lets `prepare` set it up, then starts the server with `options`.
    pub async fn start_with(
        options: KubernetesSourceOptions,
        prepare: impl FnOnce(&FakeApiServer),
    ) -> Self {
        let api = FakeApiServer::start(NAMESPACE, NAME).await;
        prepare(&api);
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&api.kubeconfig()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        let kube_client = kube::Client::try_from(config).unwrap();
        let source = kubernetes::follow(kube_client, options);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            proxyconf_server::run(listener, source, Default::default(), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            api,
            client: ProxyConfigClient::new(channel),
            _stop: stop,
        }
    }

    pub async fn status(&self) -> Status {
        self.client
            .clone()
            .get_status(GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn resolve(&self) -> Result<Resolution, tonic::Status> {
        self.client
            .clone()
            .resolve(ResolveRequest::default())
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn watch(&self) -> Streaming<Resolution> {
        self.client
            .clone()
            .watch(WatchRequest::default())
            .await
            .unwrap()
            .into_inner()
    }

    /// Waits until the status satisfies `check`.
    pub async fn status_until(&self, what: &str, check: impl Fn(&Status) -> bool) -> Status {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.status().await;
            if check(&status) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not within 10s: {what}; last status {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The next message of a Watch, within 10 s.
pub async fn next(stream: &mut Streaming<Resolution>) -> Resolution {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a Watch message within 10s")
        .expect("stream ok")
        .expect("stream not ended")
}

/// The proxied URL of `pm` in `resolution`, if any.
pub fn url_of<'a>(resolution: &'a Resolution, pm: &str) -> Option<&'a str> {
    resolution
        .package_managers
        .iter()
        .find(|p| p.name == pm)
        .map(|p| p.url.as_str())
}

/// ConfigMap data allowing the proxy with npm at `url`.
pub fn npm_at(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("allow-package-registry-proxy", "true".to_owned()),
        ("package-registry-proxy-npm-url", url.to_owned()),
    ]
}

/// Borrows owned pairs as the fake takes them.
pub fn pairs<'a>(data: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    data.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
