//! proxyconf-server: watches the Konflux `cluster-config` ConfigMap and serves resolved package
//! registry proxy settings (ADR 0064) over gRPC.
//!
//! # Layout
//!
//! - [`source`]: where ConfigMap states come from (a file; the Kubernetes watch beside it).
//! - [`resolve`]: ConfigMap data → settings and problems. Pure.
//! - [`state`]: source events → published [`snapshot::Snapshot`]s, one per change.
//! - [`snapshot`]: what is served now, and the per-request selection from it.
//! - [`service`]: the `proxyconf.v1.ProxyConfig` handlers; [`health`]: `grpc.health.v1`;
//!   [`admission`]: which Watch streams are admitted; `watch_route`: Watch's transport, which
//!   sends each answer's shared frame to every subscriber.
//! - [`incoming`]: connections from accept to tonic, bounded; [`tls`]: their TLS handshake.
//! - [`telemetry`], [`signal`]: logging and shutdown for the binary.
//!
//! Modules only the server itself uses (`admission`, `error`, `history`, `metrics`, `service`,
//! `watch_route`) are private; the others are public for the binary, the benches, the fuzz
//! targets and the tests.
#![forbid(unsafe_code)]

mod admission;
pub mod check;
mod error;
pub mod health;
mod history;
pub mod incoming;
mod metrics;
pub mod resolve;
mod service;
pub mod signal;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod telemetry;
pub mod tls;
mod watch_route;
mod write_batch;

use std::{future::Future, pin::pin, sync::Arc, time::Duration};

use proxyconf_proto::transport;
use tokio::{net::TcpListener, sync::watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;
use tracing::{info, warn};

pub use error::{Error, Result};

use crate::{
    incoming::{ConnectionLimits, Handshake, Lifetime, Plaintext},
    metrics::Metrics,
    service::{ProxyConfigService, WatchLimits},
    snapshot::Snapshot,
    source::Source,
    tls::TlsHandshake,
    watch_route::WatchRoute,
};

/// The largest request accepted. Requests are a few flags and package manager names; anything
/// near this is garbage or an attack, answered OUT_OF_RANGE without being decoded.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// How the server runs. `Default` gives the production settings.
#[derive(Debug)]
pub struct ServerOptions {
    /// How long bursts of source events are folded together (see [`state::track`]).
    pub coalesce: Duration,
    /// HTTP/2 keepalive: a PING after this much idle time...
    pub keepalive_interval: Duration,
    /// ...must be answered within this, or the connection is closed.
    pub keepalive_timeout: Duration,
    /// Connections (and Watch streams) are closed after about this long so that long-lived
    /// subscribers rebalance over replicas; each process spreads it by ±10 %.
    pub max_connection_age: Option<Duration>,
    /// How long a connection past its age may finish its calls before it is closed.
    pub max_connection_age_grace: Duration,
    /// Streams per connection.
    pub max_concurrent_streams: u32,
    /// Connections open at once; one more is closed at once (see [`incoming`]).
    pub max_connections: usize,
    /// How long a new connection may take for its TLS handshake, its HTTP/2 preface and its
    /// first stream (at most [`incoming::MAX_HANDSHAKE_TIMEOUT`]).
    pub handshake_timeout: Duration,
    /// Admission of new Watch streams.
    pub watch_setups_per_second: u32,
    /// Watch streams admitted at once.
    pub watch_setup_burst: u32,
    /// Watch streams open at once; one more is refused with RESOURCE_EXHAUSTED.
    pub max_watch_streams: usize,
    /// After shutdown starts, how long calls in flight may take before the server exits anyway.
    pub shutdown_grace: Duration,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_listener: Option<TcpListener>,
    /// What the operator decided for every ConfigMap state (defaults, allowlists).
    pub policy: resolve::Policy,
    /// Serve TLS (optionally mutual) instead of plaintext.
    pub tls: Option<tls::TlsFiles>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            coalesce: Duration::from_millis(100),
            keepalive_interval: transport::KEEPALIVE_INTERVAL,
            keepalive_timeout: transport::KEEPALIVE_TIMEOUT,
            max_connection_age: Some(Duration::from_secs(30 * 60)),
            max_connection_age_grace: Duration::from_secs(30),
            max_concurrent_streams: 1024,
            max_connections: 20_000,
            handshake_timeout: Duration::from_secs(10),
            watch_setups_per_second: 1000,
            watch_setup_burst: 10_000,
            // About 4 KiB each (README, Performance): 20,000 ≈ 80 MiB, what 2 cores serve.
            max_watch_streams: 20_000,
            shutdown_grace: Duration::from_secs(10),
            metrics_listener: None,
            policy: resolve::Policy::default(),
            tls: None,
        }
    }
}

/// Serves `source` on `listener` until `shutdown` resolves, then shuts down gracefully.
///
/// Health is NOT_SERVING and `Resolve` answers UNAVAILABLE until the source's first state; from
/// then on, every request reads the latest snapshot. On shutdown, health goes NOT_SERVING first,
/// open Watch streams end with UNAVAILABLE (clients reconnect elsewhere and resume), new calls
/// are refused, and calls in flight get `shutdown_grace` to finish. When it returns, every task
/// it started has ended and every connection is closed.
pub async fn run(
    listener: TcpListener,
    source: Source,
    mut options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let (publish, snapshots) = watch::channel(Arc::new(Snapshot::not_synced(
        source.description.clone(),
        std::mem::take(&mut options.policy),
    )));
    let (end_streams, draining) = watch::channel(false);
    let service = ProxyConfigService::new(
        snapshots.clone(),
        metrics.clone(),
        draining,
        &watch_limits(&options),
    );
    let (reporter, router) = router(&options, service)?;
    let tls = options.tls.take().map(TlsHandshake::load).transpose()?;

    let tasks = Tasks::default();
    health::not_serving(&reporter).await;
    tasks.spawn_background(state::track(
        source.events,
        publish,
        options.coalesce,
        metrics.clone(),
    ));
    tasks.spawn_background(health::serve_when_synced(
        reporter.clone(),
        snapshots.clone(),
    ));
    if let Some(listener) = options.metrics_listener.take() {
        serve_metrics(listener, &metrics, snapshots, &tasks);
    }
    match listener.local_addr() {
        Ok(address) => info!(%address, source = %source.description, "serving proxyconf.v1"),
        Err(error) => info!(%error, source = %source.description, "serving proxyconf.v1"),
    }
    let serving = Serving {
        options: &options,
        metrics: &metrics,
        tasks: &tasks,
        reporter: &reporter,
        end_streams: &end_streams,
    };
    let result = match tls {
        Some(tls) => {
            let files = &tls.files;
            info!(cert = %files.cert.display(), mutual = files.client_ca.is_some(), "serving TLS");
            tls.follow_files(&tasks.lifetime.tasks, tasks.lifetime.accepting.clone());
            serving.serve(router, listener, tls, shutdown).await
        }
        None => serving.serve(router, listener, Plaintext, shutdown).await,
    };
    tasks.end().await;
    info!("server stopped");
    Ok(result?)
}

fn watch_limits(options: &ServerOptions) -> WatchLimits {
    WatchLimits {
        setups_per_second: options.watch_setups_per_second,
        setup_burst: options.watch_setup_burst,
        max_streams: options.max_watch_streams,
        max_stream_age: options.max_connection_age,
    }
}

/// The gRPC services with the transport settings, and the reporter of their health.
fn router(
    options: &ServerOptions,
    service: ProxyConfigService,
) -> Result<(HealthReporter, Router)> {
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(options.keepalive_interval))
        .http2_keepalive_timeout(Some(options.keepalive_timeout))
        .max_concurrent_streams(options.max_concurrent_streams)
        // A client that resets streams before they are served (rapid reset) gets GOAWAY after
        // this many: h2's default, set here so that it stays.
        .http2_max_pending_accept_reset_streams(Some(20))
        // Streams the server itself resets because of the client's errors (MadeYouReset): tonic
        // passes `None` unless set, and hyper then applies no limit at all instead of its 1024.
        .http2_max_local_error_reset_streams(Some(1024))
        // Requests carry a few short headers; these are hyper's defaults, set so that they stay.
        .http2_max_header_list_size(16 * 1024)
        .max_frame_size(16 * 1024);
    if let Some(age) = options.max_connection_age {
        builder = builder
            .max_connection_age(transport::spread(age, 0.9, 1.1))
            .max_connection_age_grace(options.max_connection_age_grace);
    }
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let router = builder
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(WatchRoute::new(service));
    Ok((reporter, router))
}

fn serve_metrics(
    listener: TcpListener,
    metrics: &Arc<Metrics>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    tasks: &Tasks,
) {
    if let Ok(address) = listener.local_addr() {
        info!(%address, "serving metrics at /metrics");
    }
    // Stopped with the others at the end, gracefully: a scrape in progress is answered.
    let stop = tasks.background.clone().cancelled_owned();
    let serve = metrics::serve(listener, metrics.clone(), snapshots, stop);
    tasks.lifetime.tasks.spawn(async move {
        if let Err(error) = serve.await {
            warn!(%error, "the metrics endpoint failed");
        }
    });
}

/// Every task the server starts, and the signals that end them.
struct Tasks {
    lifetime: Lifetime,
    /// Ends the rest: the snapshot tracker, health, the metrics endpoint.
    background: CancellationToken,
}

impl Default for Tasks {
    fn default() -> Self {
        Self {
            lifetime: Lifetime {
                tasks: TaskTracker::new(),
                accepting: CancellationToken::new(),
                connections: CancellationToken::new(),
            },
            background: CancellationToken::new(),
        }
    }
}

impl Tasks {
    /// Runs `task` until it ends or the server stops.
    fn spawn_background(&self, task: impl Future<Output = ()> + Send + 'static) {
        let until = self.background.clone();
        self.lifetime
            .tasks
            .spawn(until.run_until_cancelled_owned(task));
    }

    /// Ends every task and waits for them (each ends at its next step once cancelled).
    async fn end(self) {
        self.lifetime.accepting.cancel();
        self.lifetime.connections.cancel();
        self.background.cancel();
        self.lifetime.tasks.close();
        self.lifetime.tasks.wait().await;
    }
}

/// What serving needs beside the router and the connections.
struct Serving<'a> {
    options: &'a ServerOptions,
    metrics: &'a Metrics,
    tasks: &'a Tasks,
    reporter: &'a HealthReporter,
    /// Tells Watch streams to end (and new ones to be refused).
    end_streams: &'a watch::Sender<bool>,
}

impl Serving<'_> {
    /// Serves the connections accepted on `listener` until `shutdown`, then drains them.
    async fn serve<H: Handshake>(
        &self,
        router: Router,
        listener: TcpListener,
        handshake: H,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let limits = ConnectionLimits {
            max_connections: self.options.max_connections,
            handshake_timeout: self.options.handshake_timeout,
        };
        let lifetime = &self.tasks.lifetime;
        let incoming = incoming::accept(listener, handshake, &limits, self.metrics, lifetime);
        let stopped = lifetime.accepting.clone().cancelled_owned();
        let server = router.serve_with_incoming_shutdown(incoming, stopped);
        self.drain(server, shutdown).await
    }

    /// Runs `server` until `shutdown`; then NOT_SERVING, Watch streams told to end, no new
    /// connections, and calls in flight get the grace period; connections still open after it
    /// are closed.
    async fn drain(
        &self,
        server: impl Future<Output = Result<(), tonic::transport::Error>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let mut server = pin!(server);
        tokio::select! {
            result = &mut server => return result,
            () = shutdown => {}
        }
        let grace = self.options.shutdown_grace;
        info!(?grace, "shutting down: not serving, ending Watch streams");
        health::not_serving(self.reporter).await;
        let _ = self.end_streams.send(true);
        self.tasks.lifetime.accepting.cancel();
        if let Ok(result) = tokio::time::timeout(grace, &mut server).await {
            return result;
        }
        warn!(
            ?grace,
            "calls still in flight after the grace period; exiting anyway"
        );
        // Each connection fails its next read or write, and tonic's server returns.
        self.tasks.lifetime.connections.cancel();
        server.await
    }
}

/// Reflection over this server's services. grpcurl 1.8 speaks only v1alpha, newer tools v1, so
/// both are served from the same descriptors, and each lists both (by default each lists only
/// itself, and `grpcurl list` would not show v1).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(proxyconf_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}
