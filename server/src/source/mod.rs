//! Where ConfigMap states come from: the seam between the server and its source.
//!
//! A source is a stream of [`SourceEvent`]s: each time it observes the ConfigMap it yields the
//! whole state (present with its data, or missing); when it cannot observe it, it yields a failure
//! and the server keeps serving the last good state. The file source ([`file`]) is the embedded
//! default for local runs and tests; the Kubernetes watch plugs in beside it.

pub mod file;
pub mod file_format;
pub mod kubernetes;

use std::{collections::BTreeMap, fmt};

use futures::stream::BoxStream;

/// A boxed error with its cause chain intact.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The ConfigMap as a source observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigMapState {
    /// The ConfigMap exists.
    Present {
        /// Its `data`.
        data: BTreeMap<String, String>,
        /// Its `metadata.resourceVersion`, when the source knows one.
        resource_version: Option<String>,
    },
    /// The ConfigMap does not exist: every setting has its default (the proxy is off).
    Missing,
}

/// What a source reports.
#[derive(Debug)]
pub enum SourceEvent {
    /// The ConfigMap's current state, whether it changed or not.
    Observed(ConfigMapState),
    /// The source could not observe the ConfigMap; the last good state stays in force.
    Failed(BoxError),
}

/// What a source reads, for status and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDescription {
    /// `file` or `kubernetes`.
    pub kind: &'static str,
    /// A file path, or `namespace/name`.
    pub location: String,
}

impl fmt::Display for SourceDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.location)
    }
}

/// A source: its description and its events. The stream ends only when the source cannot go on.
pub struct Source {
    /// What it reads.
    pub description: SourceDescription,
    /// Its observations, in order.
    pub events: BoxStream<'static, SourceEvent>,
}

/// An error and its causes on one line (shared with the client).
pub use proxyconf_proto::transport::error_chain;
