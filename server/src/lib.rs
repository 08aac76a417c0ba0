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

pub mod error;
pub mod health;
pub mod resolve;
pub mod service;
pub mod signal;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod telemetry;

use std::{future::Future, sync::Arc};

use proxyconf_proto::v1::proxy_config_server::ProxyConfigServer;
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::wrappers::TcpListenerStream;
use tracing::info;

pub use error::{Error, Result};

use crate::{service::ProxyConfigService, snapshot::Snapshot, source::Source};

/// How long bursts of source events are folded together (see [`state::track`]).
pub const COALESCE: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves `source` on `listener` until `shutdown` resolves.
///
/// Health is NOT_SERVING and `Resolve` answers UNAVAILABLE until the source's first state; from
/// then on, every request reads the latest snapshot.
pub async fn run(
    listener: TcpListener,
    source: Source,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let (sender, snapshots) =
        watch::channel(Arc::new(Snapshot::not_synced(source.description.clone())));
    let tracker = tokio::spawn(state::track(source.events, sender, COALESCE));

    let (reporter, health_service) = tonic_health::server::health_reporter();
    health::not_serving(&reporter).await;
    let health_task = tokio::spawn(health::serve_when_synced(reporter, snapshots.clone()));

    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    match listener.local_addr() {
        Ok(address) => info!(%address, source = %source.description, "serving proxyconf.v1"),
        Err(error) => info!(%error, source = %source.description, "serving proxyconf.v1"),
    }
    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ProxyConfigServer::new(ProxyConfigService::new(snapshots)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    tracker.abort();
    health_task.abort();
    info!("server stopped");
    Ok(result?)
}

/// Reflection over this server's services. grpcurl 1.8 speaks only v1alpha, newer tools v1, so
/// both are served from the same descriptors.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proxyconf_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}
