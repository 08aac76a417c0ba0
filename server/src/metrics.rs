//! Prometheus metrics (at `/metrics` on a listener of their own), so that the gRPC port stays
//! gRPC-only and the NetworkPolicy can admit each from different places.
//!
//! OpenMetrics when the scraper accepts it (Prometheus does), the Prometheus text format 0.0.4
//! otherwise (curl, `promtool check metrics`, which reads only that one); the sample names are
//! the same in both.

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::IntoResponse,
    routing::get,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, prometheus_text, text},
    metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info},
    registry::Registry,
};
use tokio::{net::TcpListener, sync::watch};

use crate::snapshot::Snapshot;

/// The outcome of a `Resolve` call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    Ok,
    Unavailable,
    InvalidArgument,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

/// The one state of the source, as `GetStatus` and `proxyconf status` name it.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the label values, as PromQL writes them
enum SourceState {
    not_synced,
    synced,
    stale,
    missing,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: SourceState,
}

/// Every metric the server exports. Cheap to share (`Arc`); updating is lock-free.
#[derive(Debug, Default)]
pub struct Metrics {
    resolve_requests: Family<OutcomeLabels, Counter>,
    /// Open Watch streams.
    pub subscribers: Gauge,
    /// Messages sent on Watch streams.
    pub watch_messages: Counter,
    /// Watch streams refused: too many open, or too many opened at once.
    pub watch_rejected: Counter,
    /// The most Watch streams open at once (`--max-watch-streams`).
    pub watch_streams_max: Gauge,
    /// Open gRPC connections (accepted and not closed yet, counted against the cap).
    pub connections_open: Gauge,
    /// Connections closed at once because the cap was reached.
    pub connections_refused: Counter,
    /// Connections closed because they did not complete the TLS handshake, send the HTTP/2
    /// preface or open a stream within the handshake timeout.
    pub connections_timed_out: Counter,
    /// Connections closed because they sent more PINGs or stream resets in a second than the
    /// server takes.
    pub connections_flood: Counter,
    /// Changes of the served configuration.
    pub config_changes: Counter,
    /// Failures of the source.
    pub source_errors: Counter,
    source_stale: Gauge,
    source_stale_seconds: Gauge,
    source_synced: Gauge,
    source_state: Family<StateLabels, Gauge>,
    config_problems: Gauge,
    proxy_allowed: Gauge,
    package_managers: Gauge,
}

impl Metrics {
    /// Counts a `Resolve` call.
    pub fn resolved(&self, outcome: Outcome) {
        self.resolve_requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Creates the `Resolve` counter of every outcome at 0, so that the first failure shows in
    /// `rate()` (a series that first appears at 1 has no increase) and alerts see the series.
    fn export_every_outcome(&self) {
        for outcome in [Outcome::Ok, Outcome::Unavailable, Outcome::InvalidArgument] {
            drop(
                self.resolve_requests
                    .get_or_create(&OutcomeLabels { outcome }),
            );
        }
    }

    /// Sets the gauges that describe `snapshot`, as of `now`.
    pub fn observe(&self, snapshot: &Snapshot, now: SystemTime) {
        let stale = snapshot.failure.as_ref();
        self.source_stale.set(i64::from(stale.is_some()));
        self.source_stale_seconds.set(
            stale
                .map(|f| now.duration_since(f.since).unwrap_or_default().as_secs())
                .map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX)),
        );
        self.source_synced.set(i64::from(snapshot.is_synced()));
        let current = match snapshot.serving_state() {
            proxyconf_proto::v1::ServingState::Synced => SourceState::synced,
            proxyconf_proto::v1::ServingState::Stale => SourceState::stale,
            proxyconf_proto::v1::ServingState::Missing => SourceState::missing,
            _ => SourceState::not_synced,
        };
        for state in [
            SourceState::not_synced,
            SourceState::synced,
            SourceState::stale,
            SourceState::missing,
        ] {
            self.source_state
                .get_or_create(&StateLabels { state })
                .set(i64::from(state == current));
        }
        let resolved = snapshot.resolved.as_deref();
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.config_problems
            .set(resolved.map_or(0, |r| count(r.problems.len())));
        self.proxy_allowed
            .set(i64::from(resolved.is_some_and(|r| r.allowed)));
        self.package_managers
            .set(resolved.map_or(0, |r| count(r.package_managers.len())));
    }

    /// A registry (prefix `proxyconf`) holding these metrics and the build info.
    fn registry(self: &Arc<Self>) -> Registry {
        self.export_every_outcome();
        let mut registry = Registry::with_prefix("proxyconf");
        registry.register(
            "resolve_requests",
            "Resolve calls by outcome",
            self.resolve_requests.clone(),
        );
        registry.register(
            "watch_subscribers",
            "Open Watch streams",
            self.subscribers.clone(),
        );
        registry.register(
            "watch_messages",
            "Messages sent on Watch streams",
            self.watch_messages.clone(),
        );
        registry.register(
            "watch_rejected",
            "Watch streams refused with RESOURCE_EXHAUSTED: as many open as \
             proxyconf_watch_streams_max, or too many opened at once",
            self.watch_rejected.clone(),
        );
        registry.register(
            "watch_streams_max",
            "The most Watch streams this replica serves at once",
            self.watch_streams_max.clone(),
        );
        registry.register(
            "connections_open",
            "Open gRPC connections",
            self.connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "gRPC connections closed at once because as many were open as this replica serves",
            self.connections_refused.clone(),
        );
        registry.register(
            "connections_timed_out",
            "gRPC connections closed because they did not complete their TLS handshake, send the \
             HTTP/2 preface or open a stream within the handshake timeout",
            self.connections_timed_out.clone(),
        );
        registry.register(
            "connections_flood",
            "gRPC connections closed because they sent more PINGs or stream resets in a second \
             than this server takes from a connection",
            self.connections_flood.clone(),
        );
        registry.register(
            "config_changes",
            "Changes of the served configuration",
            self.config_changes.clone(),
        );
        registry.register(
            "source_errors",
            "Failures to read the ConfigMap",
            self.source_errors.clone(),
        );
        registry.register(
            "source_state",
            "1 for the source's state (not_synced, synced, stale, missing), 0 for the others",
            self.source_state.clone(),
        );
        registry.register(
            "source_stale",
            "1 while the source fails and the last good state is served",
            self.source_stale.clone(),
        );
        registry.register(
            "source_stale_seconds",
            "How long the source has been failing",
            self.source_stale_seconds.clone(),
        );
        registry.register(
            "source_synced",
            "1 once the ConfigMap has been loaded",
            self.source_synced.clone(),
        );
        registry.register(
            "config_problems",
            "Rejected values in the ConfigMap",
            self.config_problems.clone(),
        );
        registry.register(
            "package_registry_proxy_allowed",
            "1 when allow-package-registry-proxy is true",
            self.proxy_allowed.clone(),
        );
        registry.register(
            "package_managers",
            "Package managers with a valid proxy URL",
            self.package_managers.clone(),
        );
        registry.register(
            "build",
            "The server's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry
    }
}

#[derive(Clone)]
struct Scrape {
    metrics: Arc<Metrics>,
    registry: Arc<Mutex<Registry>>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
}

/// Serves `/metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let registry = Arc::new(Mutex::new(metrics.registry()));
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape {
            metrics,
            registry,
            snapshots,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn scrape(State(scrape): State<Scrape>, headers: HeaderMap) -> impl IntoResponse {
    let snapshot = scrape.snapshots.borrow().clone();
    scrape.metrics.observe(&snapshot, SystemTime::now());
    let format = Format::negotiate(headers.get(header::ACCEPT));
    let mut body = String::new();
    // Encoding into a String cannot fail; a poisoned lock only means a panicked scrape.
    let registry = scrape
        .registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _ = format.encode(&mut body, &registry);
    ([(header::CONTENT_TYPE, format.content_type())], body)
}

/// The exposition formats served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Text,
}

impl Format {
    /// OpenMetrics when `accept` names it, the text format otherwise.
    fn negotiate(accept: Option<&HeaderValue>) -> Self {
        let accepted = accept
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.contains("application/openmetrics-text"));
        if accepted {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => prometheus_text::CONTENT_TYPE,
        }
    }

    fn encode(self, body: &mut String, registry: &Registry) -> std::fmt::Result {
        match self {
            Self::OpenMetrics => text::encode(body, registry),
            Self::Text => prometheus_text::encode(body, registry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Prometheus sends by default.
    const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn openmetrics_only_when_asked_for() {
        let negotiate =
            |accept: &'static str| Format::negotiate(Some(&HeaderValue::from_static(accept)));
        assert_eq!(negotiate(PROMETHEUS_ACCEPT), Format::OpenMetrics);
        assert_eq!(negotiate("text/plain;version=0.0.4"), Format::Text);
        assert_eq!(negotiate("*/*"), Format::Text);
        assert_eq!(Format::negotiate(None), Format::Text);
    }

    #[test]
    fn both_formats_name_the_samples_alike() {
        let metrics = Arc::new(Metrics::default());
        metrics.resolved(Outcome::Unavailable);
        let registry = metrics.registry();
        for format in [Format::OpenMetrics, Format::Text] {
            let mut body = String::new();
            format.encode(&mut body, &registry).unwrap();
            for line in [
                "proxyconf_resolve_requests_total{outcome=\"Unavailable\"} 1",
                "proxyconf_resolve_requests_total{outcome=\"InvalidArgument\"} 0",
                "proxyconf_build_info{version=\"",
            ] {
                assert!(body.contains(line), "{format:?}: no {line:?} in\n{body}");
            }
            assert_eq!(
                body.contains("# EOF"),
                format == Format::OpenMetrics,
                "{body}"
            );
        }
    }
}
