//! `grpc.health.v1.Health`: NOT_SERVING until the first ConfigMap state is loaded, SERVING after.
//! A source that fails later keeps the server SERVING: it serves the last good state.
//!
//! Names: `""` (the server) and `proxyconf.v1.ProxyConfig` follow the source — readiness.
//! `liveness` is SERVING whenever the process answers at all — for a liveness probe, so that a
//! server that cannot reach its source is not restarted in a loop (restarting would not help).

use std::sync::Arc;

use tokio::sync::watch;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::snapshot::Snapshot;

/// The names health is reported under: the whole server (`""`) and the service.
const SERVICES: [&str; 2] = ["", proxyconf_proto::SERVICE_NAME];

/// The name a liveness probe checks: SERVING as long as the server runs.
pub const LIVENESS: &str = "liveness";

/// Sets every readiness name NOT_SERVING, and liveness SERVING.
pub async fn not_serving(reporter: &HealthReporter) {
    reporter
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;
    for name in SERVICES {
        reporter
            .set_service_status(name, ServingStatus::NotServing)
            .await;
    }
}

/// Reports SERVING once `snapshots` holds a synced state. Returns when that happened or the
/// snapshots are gone.
pub async fn serve_when_synced(
    reporter: HealthReporter,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
) {
    if snapshots.wait_for(|s| s.is_synced()).await.is_ok() {
        for name in SERVICES {
            reporter
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
    }
}
