//! proxyconf-server: watches the Konflux `cluster-config` ConfigMap and serves resolved package
//! registry proxy settings (ADR 0064) over gRPC.
//!
//! # Layout
//!
//! - [`source`]: where ConfigMap states come from (a file; the Kubernetes watch beside it).
//! - [`resolve`]: ConfigMap data → settings and problems. Pure.
//! - [`state`]: source events → published [`snapshot::Snapshot`]s, one per change.
//! - [`snapshot`]: what is served now, and the per-request selection from it.
//! - [`service`]: the `proxyconf.v1.ProxyConfig` handlers; [`health`]: `grpc.health.v1`.
//! - [`telemetry`], [`signal`]: logging and shutdown for the binary.
#![forbid(unsafe_code)]

pub mod admission;
pub mod check;
pub mod error;
pub mod health;
pub mod history;
pub mod metrics;
pub mod resolve;
pub mod service;
pub mod signal;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod telemetry;
pub mod tls;

use std::{future::Future, sync::Arc, time::Duration};

use futures::StreamExt;
use proxyconf_proto::{transport, v1::proxy_config_server::ProxyConfigServer};
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{info, warn};

pub use error::{Error, Result};

use crate::{
    metrics::Metrics,
    service::{ProxyConfigService, WatchLimits},
    snapshot::Snapshot,
    source::Source,
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
    /// Admission of new Watch streams.
    pub watch_setups_per_second: u32,
    /// Watch streams admitted at once.
    pub watch_setup_burst: u32,
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
            watch_setups_per_second: 1000,
            watch_setup_burst: 10_000,
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
/// are refused, and calls in flight get `shutdown_grace` to finish.
pub async fn run(
    listener: TcpListener,
    source: Source,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let (sender, snapshots) = watch::channel(Arc::new(Snapshot::not_synced(
        source.description.clone(),
        options.policy,
    )));
    let tracker = tokio::spawn(state::track(
        source.events,
        sender,
        options.coalesce,
        metrics.clone(),
    ));

    let (reporter, health_service) = tonic_health::server::health_reporter();
    health::not_serving(&reporter).await;
    let health_task = tokio::spawn(health::serve_when_synced(
        reporter.clone(),
        snapshots.clone(),
    ));

    let (drain, draining) = watch::channel(false);
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_task = options.metrics_listener.map(|listener| {
        if let Ok(address) = listener.local_addr() {
            info!(%address, "serving metrics at /metrics");
        }
        tokio::spawn(metrics::serve(
            listener,
            metrics.clone(),
            snapshots.clone(),
            async {
                let _ = metrics_stopped.await;
            },
        ))
    });

    let service = ProxyConfigService::new(
        snapshots,
        metrics,
        draining,
        &WatchLimits {
            setups_per_second: options.watch_setups_per_second,
            setup_burst: options.watch_setup_burst,
            max_stream_age: options.max_connection_age,
        },
    );
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(options.keepalive_interval))
        .http2_keepalive_timeout(Some(options.keepalive_timeout))
        .max_concurrent_streams(options.max_concurrent_streams);
    if let Some(age) = options.max_connection_age {
        builder = builder
            .max_connection_age(transport::spread(age, 0.9, 1.1))
            .max_connection_age_grace(options.max_connection_age_grace);
    }
    match listener.local_addr() {
        Ok(address) => info!(%address, source = %source.description, "serving proxyconf.v1"),
        Err(error) => info!(%error, source = %source.description, "serving proxyconf.v1"),
    }
    let (stop_grpc, grpc_stopped) = tokio::sync::oneshot::channel::<()>();
    let router = builder
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(ProxyConfigServer::new(service).max_decoding_message_size(MAX_REQUEST_BYTES));
    let stopped = async {
        let _ = grpc_stopped.await;
    };
    let mut server: std::pin::Pin<Box<dyn Future<Output = _> + Send>> = match options.tls {
        Some(files) => {
            info!(cert = %files.cert.display(), mutual = files.client_ca.is_some(), "serving TLS");
            let incoming = tls::incoming(listener, files)?;
            Box::pin(router.serve_with_incoming_shutdown(incoming, stopped))
        }
        None => {
            // tonic sets TCP_NODELAY only on connections it accepts itself. Without it, Nagle's
            // algorithm meets the client's delayed ACK and a small answer waits 40 ms (measured:
            // `proxyconf env` took 44 ms).
            let incoming = TcpListenerStream::new(listener).map(|accepted| {
                let stream = accepted?;
                stream.set_nodelay(true)?;
                Ok::<_, std::io::Error>(stream)
            });
            Box::pin(router.serve_with_incoming_shutdown(incoming, stopped))
        }
    };

    let result = tokio::select! {
        result = &mut server => result,
        () = shutdown => {
            info!(grace = ?options.shutdown_grace, "shutting down: not serving, ending Watch streams");
            health::not_serving(&reporter).await;
            let _ = drain.send(true);
            let _ = stop_grpc.send(());
            match tokio::time::timeout(options.shutdown_grace, &mut server).await {
                Ok(result) => result,
                Err(_) => {
                    warn!(grace = ?options.shutdown_grace, "calls still in flight after the grace period; exiting anyway");
                    Ok(())
                }
            }
        }
    };
    let _ = stop_metrics.send(());
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    tracker.abort();
    health_task.abort();
    info!("server stopped");
    Ok(result?)
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
