//! The Kubernetes source: one list + watch of the ConfigMap, instead of one GET per build.
//!
//! The loop is written against kube's `Api::list` / `Api::watch` rather than `kube::runtime`'s
//! watcher because the server must know when the API server is reachable again: after a failure
//! the runtime watcher resumes silently, so a recovered but quiet watch could never be told from a
//! broken one. Here a watch that the API server accepts is the recovery signal.
//!
//! Protocol: LIST with `fieldSelector=metadata.name=NAME` gives the state and a resourceVersion;
//! WATCH from it (with bookmarks) gives every later change. An expired resourceVersion (410 Gone)
//! relists; a dropped connection re-watches from the last resourceVersion seen, so no update is
//! lost. Failures are reported (the last good state stays served) and retried with backoff.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    api::{ListParams, WatchEvent, WatchParams},
};
use proxyconf_proto::transport::Backoff;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info};

use super::{BoxError, ConfigMapState, Source, SourceDescription, SourceEvent};

/// Which ConfigMap to follow, and how patiently.
#[derive(Debug, Clone)]
pub struct KubernetesSourceOptions {
    /// The ConfigMap's namespace.
    pub namespace: String,
    /// The ConfigMap's name.
    pub name: String,
    /// How long the API server keeps one watch open before the source re-watches (it must be
    /// below the client's read timeout of 295 s).
    pub watch_timeout: Duration,
    /// How long a LIST may take, or a watch may stay silent beyond `watch_timeout`, before the
    /// API server is taken as hung.
    pub request_timeout: Duration,
    /// The first and the longest pause between retries after a failure.
    pub backoff: (Duration, Duration),
}

impl Default for KubernetesSourceOptions {
    fn default() -> Self {
        Self {
            namespace: "konflux-info".into(),
            name: "cluster-config".into(),
            watch_timeout: Duration::from_secs(290),
            request_timeout: Duration::from_secs(30),
            backoff: (Duration::from_millis(500), Duration::from_secs(30)),
        }
    }
}

/// Why the API server could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error(
        "forbidden: the server's service account may not {verb} configmaps in namespace \
         {namespace}; grant get, list and watch on configmaps with resourceNames [{name}] (see the \
         Role in deploy/)"
    )]
    Forbidden {
        verb: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot {verb} ConfigMap {namespace}/{name}")]
    Request {
        verb: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the API server did not answer the {verb} of ConfigMap {namespace}/{name} within {timeout:?}"
    )]
    Timeout {
        verb: &'static str,
        namespace: String,
        name: String,
        timeout: Duration,
    },
    #[error("the watch of ConfigMap {namespace}/{name} failed: {code} {message}")]
    WatchError {
        namespace: String,
        name: String,
        code: u16,
        message: String,
    },
}

/// Follows the ConfigMap through `client`.
pub fn follow(client: Client, options: KubernetesSourceOptions) -> Source {
    let description = SourceDescription {
        kind: "kubernetes",
        location: format!("{}/{}", options.namespace, options.name),
    };
    let (tx, rx) = mpsc::channel(1);
    let api = Api::<ConfigMap>::namespaced(client, &options.namespace);
    tokio::spawn(async move {
        let mut watcher = Watcher {
            api,
            backoff: Backoff::new(options.backoff.0, options.backoff.1),
            options,
            tx,
            failing: false,
            state: None,
            resource_version: String::new(),
        };
        watcher.run().await;
    });
    Source {
        description,
        events: ReceiverStream::new(rx).boxed(),
    }
}

/// The list/watch loop's state.
struct Watcher {
    api: Api<ConfigMap>,
    options: KubernetesSourceOptions,
    tx: mpsc::Sender<SourceEvent>,
    /// Whether the last thing reported was a failure (the next success reports the state again,
    /// which clears the server's staleness).
    failing: bool,
    /// The last state reported.
    state: Option<ConfigMapState>,
    /// Where the next watch starts.
    resource_version: String,
    /// Pauses between retries; reset whenever the API server answers.
    backoff: Backoff,
}

/// What ended a watch.
enum WatchEnd {
    /// The API server closed it (timeout): watch again from the last resourceVersion.
    Closed,
    /// The resourceVersion expired: list again.
    Expired,
    /// It failed: back off, then watch again.
    Failed(BoxError),
}

/// The server is gone; stop.
struct Gone;

impl Watcher {
    async fn run(&mut self) {
        loop {
            if let Err(error) = self.list().await {
                if self.fail(error).await.is_err() {
                    return;
                }
                tokio::time::sleep(self.backoff.next_pause()).await;
                continue;
            }
            self.backoff.reset();
            loop {
                match self.watch().await {
                    Ok(WatchEnd::Closed) => continue,
                    Ok(WatchEnd::Expired) => {
                        info!(resource_version = %self.resource_version, "watch expired (410 Gone); listing again");
                        break;
                    }
                    Ok(WatchEnd::Failed(error)) => {
                        if self.fail(error).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(self.backoff.next_pause()).await;
                    }
                    Err(Gone) => return,
                }
            }
        }
    }

    fn fields(&self) -> String {
        format!("metadata.name={}", self.options.name)
    }

    fn error(&self, verb: &'static str, source: kube::Error) -> BoxError {
        let (namespace, name) = (self.options.namespace.clone(), self.options.name.clone());
        match &source {
            kube::Error::Api(status) if status.code == 403 => {
                Box::new(KubernetesError::Forbidden {
                    verb,
                    namespace,
                    name,
                    source,
                })
            }
            _ => Box::new(KubernetesError::Request {
                verb,
                namespace,
                name,
                source,
            }),
        }
    }

    fn timeout(&self, verb: &'static str, timeout: Duration) -> BoxError {
        Box::new(KubernetesError::Timeout {
            verb,
            namespace: self.options.namespace.clone(),
            name: self.options.name.clone(),
            timeout,
        })
    }

    /// Lists the ConfigMap and reports its state.
    async fn list(&mut self) -> Result<(), BoxError> {
        let params = ListParams::default().fields(&self.fields());
        let list = tokio::time::timeout(self.options.request_timeout, self.api.list(&params))
            .await
            .map_err(|_| self.timeout("list", self.options.request_timeout))?
            .map_err(|e| self.error("list", e))?;
        self.resource_version = list.metadata.resource_version.unwrap_or_default();
        let state = list
            .items
            .into_iter()
            .find(|cm| cm.metadata.name.as_deref() == Some(&self.options.name))
            .map_or(ConfigMapState::Missing, present);
        debug!(resource_version = %self.resource_version, "listed");
        self.report(state, true)
            .await
            .map_err(|Gone| "server gone".into())
    }

    /// Watches from the current resourceVersion until the watch ends.
    async fn watch(&mut self) -> Result<WatchEnd, Gone> {
        let params = WatchParams::default().fields(&self.fields()).timeout(
            self.options
                .watch_timeout
                .as_secs()
                .try_into()
                .unwrap_or(290),
        );
        let started = tokio::time::timeout(
            self.options.request_timeout,
            self.api.watch(&params, &self.resource_version),
        )
        .await;
        let stream = match started {
            Err(_) => {
                return Ok(WatchEnd::Failed(
                    self.timeout("watch", self.options.request_timeout),
                ));
            }
            Ok(Err(kube::Error::Api(status))) if status.code == 410 => {
                return Ok(WatchEnd::Expired);
            }
            Ok(Err(e)) => return Ok(WatchEnd::Failed(self.error("watch", e))),
            Ok(Ok(stream)) => stream,
        };
        self.backoff.reset();
        if self.failing {
            // The API server answers again: what is served is current again.
            let state = self.state.clone().unwrap_or(ConfigMapState::Missing);
            self.report(state, true).await?;
        }
        let silence = self.options.watch_timeout + self.options.request_timeout;
        let mut stream = std::pin::pin!(stream.into_stream());
        loop {
            let event = match tokio::time::timeout(silence, stream.next()).await {
                Err(_) => return Ok(WatchEnd::Failed(self.timeout("watch", silence))),
                Ok(None) => return Ok(WatchEnd::Closed),
                Ok(Some(Err(e))) => return Ok(WatchEnd::Failed(self.error("watch", e))),
                Ok(Some(Ok(event))) => event,
            };
            match event {
                WatchEvent::Added(cm) | WatchEvent::Modified(cm) => {
                    self.remember(&cm);
                    self.report(present(cm), false).await?;
                }
                WatchEvent::Deleted(cm) => {
                    self.remember(&cm);
                    self.report(ConfigMapState::Missing, false).await?;
                }
                WatchEvent::Bookmark(bookmark) => {
                    self.resource_version = bookmark.metadata.resource_version;
                }
                WatchEvent::Error(status) if status.code == 410 => return Ok(WatchEnd::Expired),
                WatchEvent::Error(status) => {
                    return Ok(WatchEnd::Failed(Box::new(KubernetesError::WatchError {
                        namespace: self.options.namespace.clone(),
                        name: self.options.name.clone(),
                        code: status.code,
                        message: status.message,
                    })));
                }
            }
        }
    }

    fn remember(&mut self, cm: &ConfigMap) {
        if let Some(rv) = &cm.metadata.resource_version {
            self.resource_version.clone_from(rv);
        }
    }

    /// Reports `state`: always when `force`, otherwise only when it differs from the last one.
    async fn report(&mut self, state: ConfigMapState, force: bool) -> Result<(), Gone> {
        if !force && !self.failing && self.state.as_ref() == Some(&state) {
            return Ok(());
        }
        self.failing = false;
        self.state = Some(state.clone());
        self.tx
            .send(SourceEvent::Observed(state))
            .await
            .map_err(|_| Gone)
    }

    async fn fail(&mut self, error: BoxError) -> Result<(), Gone> {
        self.failing = true;
        self.tx
            .send(SourceEvent::Failed(error))
            .await
            .map_err(|_| Gone)
    }
}

fn present(cm: ConfigMap) -> ConfigMapState {
    ConfigMapState::Present {
        data: cm.data.unwrap_or_default(),
        resource_version: cm.metadata.resource_version,
    }
}
