//! Shutdown signals: resolves on the first SIGTERM (Kubernetes) or SIGINT (Ctrl-C).

use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

/// Waits for SIGTERM or SIGINT.
pub async fn shutdown() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(error) => {
            warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received; shutting down"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received; shutting down"),
    }
}
