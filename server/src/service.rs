//! The `proxyconf.v1.ProxyConfig` gRPC handlers. Each request reads the current snapshot; nothing
//! here blocks on the source.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Instant, SystemTime},
};

use futures::Stream;
use proxyconf_proto::v1::{
    GetStatusRequest, Resolution, ResolveRequest, Status, WatchRequest,
    proxy_config_server::ProxyConfig,
};
use tokio::sync::watch;
use tonic::{Request, Response};
use tracing::{debug, instrument};

use crate::{
    error::Error,
    snapshot::{Scope, Snapshot},
};

/// The gRPC service over the published snapshots.
#[derive(Clone)]
pub struct ProxyConfigService {
    /// The latest snapshot; each request or stream reads from its own receiver.
    snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Open Watch streams, for status.
    subscribers: Arc<AtomicU64>,
    /// When the server started, for status.
    started: Instant,
}

impl ProxyConfigService {
    /// A service answering from `snapshots`.
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>) -> Self {
        Self {
            snapshots,
            subscribers: Arc::default(),
            started: Instant::now(),
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<Resolution, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl ProxyConfig for ProxyConfigService {
    #[instrument(level = "debug", skip_all)]
    async fn resolve(
        &self,
        request: Request<ResolveRequest>,
    ) -> Result<Response<Resolution>, tonic::Status> {
        let scope = Scope::from_request(request.get_ref()).map_err(Error::from)?;
        let snapshot = self.snapshots.borrow().clone();
        let resolution = snapshot.resolution(&scope).ok_or(Error::NotSynced)?;
        Ok(Response::new(resolution))
    }

    type WatchStream = WatchStream;

    #[instrument(level = "debug", skip_all)]
    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, tonic::Status> {
        let request = request.into_inner();
        let scope =
            Scope::from_request(&request.request.unwrap_or_default()).map_err(Error::from)?;
        let subscription = Subscription {
            snapshots: self.snapshots.clone(),
            scope,
            last_version: request.resume_from_version,
            _counted: Counted::new(self.subscribers.clone()),
        };
        debug!(
            subscribers = self.subscribers.load(Ordering::Relaxed),
            "watch opened"
        );
        Ok(Response::new(Box::pin(futures::stream::unfold(
            subscription,
            Subscription::next,
        ))))
    }

    #[instrument(level = "debug", skip_all)]
    async fn get_status(
        &self,
        _request: Request<GetStatusRequest>,
    ) -> Result<Response<Status>, tonic::Status> {
        let snapshot = self.snapshots.borrow().clone();
        let mut status = snapshot.status(SystemTime::now());
        status.subscribers = self.subscribers.load(Ordering::Relaxed);
        status.uptime_seconds = self.started.elapsed().as_secs();
        Ok(Response::new(status))
    }
}

/// One Watch stream. It computes a message only when the client is ready for one, from the
/// latest snapshot: a slow client skips versions instead of queueing them.
struct Subscription {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    scope: Scope,
    /// The version the client has; nothing is sent while it stays current.
    last_version: String,
    _counted: Counted,
}

impl Subscription {
    async fn next(mut self) -> Option<(Result<Resolution, tonic::Status>, Self)> {
        loop {
            let snapshot = self.snapshots.borrow_and_update().clone();
            if let Some(resolution) = snapshot.resolution(&self.scope)
                && resolution.version != self.last_version
            {
                self.last_version.clone_from(&resolution.version);
                return Some((Ok(resolution), self));
            }
            // The server is shutting down when the sender is gone: end the stream.
            self.snapshots.changed().await.ok()?;
        }
    }
}

/// Counts itself in a gauge while it lives.
struct Counted(Arc<AtomicU64>);

impl Counted {
    fn new(gauge: Arc<AtomicU64>) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
