//! The `proxyconf.v1.ProxyConfig` gRPC handlers. Each request reads the current snapshot; nothing
//! here blocks on the source.

use std::{
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use futures::Stream;
use proxyconf_proto::{
    Encoded,
    v1::{
        GetStatusRequest, Resolution, ResolveRequest, Status, WatchRequest,
        proxy_config_server::ProxyConfig,
    },
};
use tokio::sync::watch;
use tonic::{Request, Response};
use tracing::{debug, instrument};

use crate::{
    admission::{Admitted, WatchAdmission},
    error::Error,
    metrics::{Metrics, Outcome},
    snapshot::{Scope, Snapshot},
};

/// The gRPC service over the published snapshots.
#[derive(Clone)]
pub struct ProxyConfigService {
    /// The latest snapshot; each request or stream reads from its own receiver.
    snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Counters and gauges, shared with the metrics endpoint.
    metrics: Arc<Metrics>,
    /// Becomes true when the server shuts down: streams end, new ones are refused.
    draining: watch::Receiver<bool>,
    /// Bounds how many Watch streams are open and how fast they may be opened.
    admission: Arc<WatchAdmission>,
    /// Each Watch stream ends (UNAVAILABLE, to be resumed) after about this long, so that
    /// long-lived subscribers spread again over replicas; `None` keeps streams open forever.
    max_stream_age: Option<Duration>,
    /// When the server started, for status.
    started: Instant,
}

/// How the service treats Watch streams.
#[derive(Debug, Clone)]
pub struct WatchLimits {
    /// New streams admitted per second, after the burst.
    pub setups_per_second: u32,
    /// New streams admitted at once.
    pub setup_burst: u32,
    /// Streams open at once.
    pub max_streams: usize,
    /// See [`ProxyConfigService::max_stream_age`].
    pub max_stream_age: Option<Duration>,
}

impl ProxyConfigService {
    /// A service answering from `snapshots`.
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        metrics: Arc<Metrics>,
        draining: watch::Receiver<bool>,
        limits: &WatchLimits,
    ) -> Self {
        let admission = WatchAdmission::new(
            limits.max_streams,
            limits.setups_per_second,
            limits.setup_burst,
        );
        metrics
            .watch_streams_max
            .set(i64::try_from(admission.max_streams()).unwrap_or(i64::MAX));
        Self {
            snapshots,
            metrics,
            draining,
            admission: Arc::new(admission),
            max_stream_age: limits.max_stream_age,
            started: Instant::now(),
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<Encoded<Resolution>, tonic::Status>> + Send>>;

const SHUTTING_DOWN: &str = "proxyconf-server is shutting down; reconnect (to another replica) and resume from your last version";

#[tonic::async_trait]
impl ProxyConfig for ProxyConfigService {
    #[instrument(level = "debug", skip_all)]
    async fn resolve(
        &self,
        request: Request<ResolveRequest>,
    ) -> Result<Response<Encoded<Resolution>>, tonic::Status> {
        let result = Scope::from_request(request.get_ref())
            .map_err(Error::from)
            .and_then(|scope| {
                let snapshot = self.snapshots.borrow().clone();
                snapshot.answer(&scope).ok_or(Error::NotSynced)
            });
        self.metrics.resolved(match &result {
            Ok(_) => Outcome::Ok,
            Err(Error::NotSynced) => Outcome::Unavailable,
            Err(_) => Outcome::InvalidArgument,
        });
        Ok(Response::new(result?.encoded.clone()))
    }

    type WatchStream = WatchStream;

    #[instrument(level = "debug", skip_all)]
    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, tonic::Status> {
        if *self.draining.borrow() {
            return Err(tonic::Status::unavailable(SHUTTING_DOWN));
        }
        let request = request.into_inner();
        let scope =
            Scope::from_request(&request.request.unwrap_or_default()).map_err(Error::from)?;
        let admitted = self.admission.admit().map_err(|refused| {
            self.metrics.watch_rejected.inc();
            tonic::Status::resource_exhausted(refused.to_string())
        })?;
        let expires = self
            .max_stream_age
            // Spread over [70 %, 90 %] so that streams opened together end apart, and before
            // their connection's own age (±10 %) forces them.
            .map(|age| {
                Box::pin(tokio::time::sleep(proxyconf_proto::transport::spread(
                    age, 0.7, 0.9,
                )))
            });
        let subscription = Subscription {
            snapshots: self.snapshots.clone(),
            draining: self.draining.clone(),
            scope,
            last_version: request.resume_from_version,
            last_stale: false,
            expires,
            ended: false,
            _counted: Counted::new(self.metrics.clone(), admitted),
        };
        debug!(subscribers = self.metrics.subscribers.get(), "watch opened");
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
        status.subscribers = u64::try_from(self.metrics.subscribers.get()).unwrap_or_default();
        status.uptime_seconds = self.started.elapsed().as_secs();
        Ok(Response::new(status))
    }
}

/// One Watch stream. It computes a message only when the client is ready for one, from the
/// latest snapshot: a slow client skips versions instead of queueing them.
struct Subscription {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    draining: watch::Receiver<bool>,
    scope: Scope,
    /// The version the client has; nothing is sent while it stays current.
    last_version: String,
    /// Whether the client was last told that the source is stale (a resuming client is assumed
    /// to believe it fresh).
    last_stale: bool,
    /// Ends this stream so that the client reconnects; armed once (a timer registered anew at
    /// each message cost every subscriber a lock of the runtime's timer wheel per change).
    expires: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Set after the final status, to end the stream.
    ended: bool,
    _counted: Counted,
}

impl Subscription {
    async fn next(mut self) -> Option<(Result<Encoded<Resolution>, tonic::Status>, Self)> {
        if self.ended {
            return None;
        }
        loop {
            if *self.draining.borrow_and_update() {
                return self.end(SHUTTING_DOWN);
            }
            let snapshot = self.snapshots.borrow_and_update().clone();
            if let Some(answer) = snapshot.answer(&self.scope)
                && (answer.resolution.version != self.last_version
                    || is_stale(&answer.resolution) != self.last_stale)
            {
                self.last_version.clone_from(&answer.resolution.version);
                self.last_stale = is_stale(&answer.resolution);
                self._counted.metrics.watch_messages.inc();
                return Some((Ok(answer.encoded.clone()), self));
            }
            let why = tokio::select! {
                // The sender is gone only when the server stops: say so, so that the client
                // reconnects elsewhere instead of taking it for a normal end.
                changed = self.snapshots.changed() => changed.err().map(|_| SHUTTING_DOWN),
                changed = self.draining.changed() => changed.err().map(|_| SHUTTING_DOWN),
                () = expiry(&mut self.expires) => Some(
                    "this Watch stream reached its maximum age; reconnect and resume from your \
                     last version",
                ),
            };
            if let Some(why) = why {
                return self.end(why);
            }
        }
    }

    fn end(mut self, why: &str) -> Option<(Result<Encoded<Resolution>, tonic::Status>, Self)> {
        self.ended = true;
        Some((Err(tonic::Status::unavailable(why)), self))
    }
}

/// Completes when `expires` does; never without one.
async fn expiry(expires: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match expires {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Whether an answer says that its source is stale.
fn is_stale(resolution: &Resolution) -> bool {
    resolution.source.as_ref().is_some_and(|s| s.stale)
}

/// Counts itself in the subscribers gauge, and holds its place among the open streams, while it
/// lives.
struct Counted {
    metrics: Arc<Metrics>,
    _admitted: Admitted,
}

impl Counted {
    fn new(metrics: Arc<Metrics>, admitted: Admitted) -> Self {
        metrics.subscribers.inc();
        Self {
            metrics,
            _admitted: admitted,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.metrics.subscribers.dec();
    }
}
