//! What the server serves now: an immutable snapshot of the resolved ConfigMap and its source's
//! state, and the per-request selection from it (the `Resolution` a build step gets).
//!
//! A snapshot is built once per source event and shared (`Arc`) by every request and stream;
//! requests only read it.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use prost::Message;
use proxyconf_proto::{
    Encoded,
    v1::{
        self as pb, CacheProxyDecision, Decision, Resolution, ResolveRequest, SourceRef,
        SourceState,
    },
};

use crate::{
    history::History,
    resolve::{self, Policy, ProblemCode, Resolved, cache_proxy::CacheProxy, package_manager},
    source::SourceDescription,
};

/// The served state. Cheap to clone (`Arc`s inside).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// What the source reads.
    pub source: Arc<SourceDescription>,
    /// What the operator decided, applied to each ConfigMap state.
    pub policy: Arc<Policy>,
    /// The resolved ConfigMap; `None` until the source first observed it.
    pub resolved: Option<Arc<Resolved>>,
    /// Whether the ConfigMap exists (meaningful once `resolved` is set).
    pub state: SourceState,
    /// The ConfigMap's resourceVersion, when known.
    pub resource_version: Option<String>,
    /// When the resolved content last changed.
    pub last_change: Option<SystemTime>,
    /// When the source last delivered a state.
    pub last_seen: Option<SystemTime>,
    /// Set while the source fails: the last good state is served meanwhile.
    pub failure: Option<SourceFailure>,
    /// Answers already computed from this snapshot, by request: every request and Watch
    /// subscriber with the same scope shares one (computed, versioned) answer.
    pub answers: Arc<AnswerCache>,
    /// The last distinct changes, newest first.
    pub history: History,
}

/// One answer, as a message and as the bytes every caller of its scope is sent.
#[derive(Debug)]
pub struct Answer {
    /// The resolution.
    pub resolution: Arc<Resolution>,
    /// `resolution`, encoded once.
    pub encoded: Encoded<Resolution>,
}

impl Answer {
    fn new(resolution: Resolution) -> Self {
        Self {
            encoded: Encoded::new(&resolution),
            resolution: Arc::new(resolution),
        }
    }

    /// Memory held: the message and its encoding, each about the encoded size.
    fn size(&self) -> usize {
        2 * self.encoded.as_bytes().len()
    }
}

/// Answers computed from one snapshot, bounded so that many distinct scopes over a huge
/// ConfigMap cannot hold much memory (beyond the bounds, answers are computed per request).
#[derive(Debug, Default)]
pub struct AnswerCache {
    entries: Mutex<(HashMap<Scope, Arc<Answer>>, usize)>,
}

impl AnswerCache {
    /// Most distinct scopes kept.
    const MAX_ENTRIES: usize = 64;
    /// Most bytes kept.
    const MAX_BYTES: usize = 16 * 1024 * 1024;

    fn get_or_insert(&self, scope: &Scope, compute: impl FnOnce() -> Resolution) -> Arc<Answer> {
        // A poisoned lock only means a panic elsewhere; the map is still consistent.
        let lock = || {
            self.entries
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(answer) = lock().0.get(scope) {
            return answer.clone();
        }
        let answer = Arc::new(Answer::new(compute()));
        let size = answer.size();
        let mut entries = lock();
        let (map, bytes) = &mut *entries;
        if map.len() < Self::MAX_ENTRIES && *bytes + size <= Self::MAX_BYTES {
            *bytes += size;
            map.entry(scope.clone()).or_insert_with(|| answer.clone());
        }
        answer
    }
}

/// A failing source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFailure {
    /// When it started failing.
    pub since: SystemTime,
    /// The latest error, with its causes.
    pub error: String,
}

impl Snapshot {
    /// The snapshot before the source said anything.
    pub fn not_synced(source: SourceDescription, policy: Policy) -> Self {
        Self {
            source: Arc::new(source),
            policy: Arc::new(policy),
            resolved: None,
            state: SourceState::NotSynced,
            resource_version: None,
            last_change: None,
            last_seen: None,
            failure: None,
            answers: Arc::default(),
            history: History::default(),
        }
    }

    /// The one state of the source: not yet synced, synced, stale or missing.
    pub fn serving_state(&self) -> pb::ServingState {
        match (self.is_synced(), &self.failure, self.state) {
            (false, _, _) => pb::ServingState::NotSynced,
            (true, Some(_), _) => pb::ServingState::Stale,
            (true, None, SourceState::Missing) => pb::ServingState::Missing,
            (true, None, _) => pb::ServingState::Synced,
        }
    }

    /// Whether there is a state to serve.
    pub fn is_synced(&self) -> bool {
        self.resolved.is_some()
    }

    /// The answer for `scope`, or `None` while not synced. Computed and encoded once per
    /// snapshot and scope, then shared.
    pub fn answer(&self, scope: &Scope) -> Option<Arc<Answer>> {
        let resolved = self.resolved.as_deref()?;
        Some(
            self.answers
                .get_or_insert(scope, || self.compute_resolution(resolved, scope)),
        )
    }

    /// The resolution for `scope`, or `None` while not synced (see [`Snapshot::answer`]).
    pub fn resolution(&self, scope: &Scope) -> Option<Arc<Resolution>> {
        self.answer(scope).map(|answer| answer.resolution.clone())
    }

    fn compute_resolution(&self, resolved: &Resolved, scope: &Scope) -> Resolution {
        let decision = if !resolved.allowed {
            Decision::AdministratorOff
        } else if !scope.enable {
            Decision::UserOptedOut
        } else {
            Decision::Active
        };
        let active = decision == Decision::Active;
        let package_managers = if active {
            resolved
                .package_managers
                .iter()
                .filter(|(name, _)| scope.includes(name))
                .map(|(name, p)| pb::PackageManager {
                    name: name.clone(),
                    url: p.url.clone(),
                    env: p
                        .hermeto_variable
                        .iter()
                        .map(|name| pb::EnvVar {
                            name: name.clone(),
                            value: p.url.clone(),
                        })
                        .collect(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let problems = resolved
            .problems
            .iter()
            .filter(|p| {
                p.package_manager
                    .as_deref()
                    .is_none_or(|pm| scope.includes(pm))
            })
            .map(problem_to_proto)
            .collect();
        let mut resolution = Resolution {
            version: String::new(),
            active,
            decision: decision.into(),
            package_managers,
            problems,
            source: Some(SourceRef {
                state: self.state.into(),
                ..SourceRef::default()
            }),
            cache_proxy: scope
                .enable_cache_proxy
                .then(|| cache_proxy_section(&resolved.cache_proxy)),
        };
        // The version covers everything but itself and the source's informational fields.
        resolution.version = content_version(&resolution.encode_to_vec());
        if let Some(source) = resolution.source.as_mut() {
            source.resource_version = self.resource_version.clone().unwrap_or_default();
            source.stale = self.failure.is_some();
            source.stale_since_unix_ms = unix_ms(self.failure.as_ref().map(|f| f.since));
            source.location = self.source.to_string();
        }
        resolution
    }

    /// The server's status, as `GetStatus` reports it.
    pub fn status(&self, now: SystemTime) -> pb::Status {
        let resolved = self.resolved.as_deref();
        pb::Status {
            source_kind: self.source.kind.to_owned(),
            source_location: self.source.location.clone(),
            source: Some(SourceRef {
                state: self.state.into(),
                resource_version: self.resource_version.clone().unwrap_or_default(),
                stale: self.failure.is_some(),
                stale_since_unix_ms: unix_ms(self.failure.as_ref().map(|f| f.since)),
                location: self.source.to_string(),
            }),
            last_change_unix_ms: unix_ms(self.last_change),
            last_seen_unix_ms: unix_ms(self.last_seen),
            stale: self.failure.is_some(),
            stale_seconds: self
                .failure
                .as_ref()
                .map(|f| now.duration_since(f.since).unwrap_or_default().as_secs())
                .unwrap_or_default(),
            source_error: self
                .failure
                .as_ref()
                .map(|f| f.error.clone())
                .unwrap_or_default(),
            problems: resolved
                .map(|r| {
                    r.problems
                        .iter()
                        .chain(&r.cache_proxy.problems)
                        .map(problem_to_proto)
                        .collect()
                })
                .unwrap_or_default(),
            package_registry_proxy_allowed: resolved.is_some_and(|r| r.allowed),
            package_managers: resolved
                .map(|r| r.package_managers.keys().cloned().collect())
                .unwrap_or_default(),
            subscribers: 0,
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: 0,
            cache_proxy_allowed: resolved.is_some_and(|r| r.cache_proxy.allowed),
            cache_http_proxy: resolved
                .and_then(|r| r.cache_proxy.http_proxy.clone())
                .unwrap_or_default(),
            state: self.serving_state().into(),
            history: self.history.entries().cloned().collect(),
        }
    }
}

/// The cache proxy section for a request that enabled it.
fn cache_proxy_section(cache: &CacheProxy) -> pb::CacheProxy {
    let problems: Vec<pb::Problem> = cache.problems.iter().map(problem_to_proto).collect();
    let decision = if !cache.allowed {
        CacheProxyDecision::AdministratorOff
    } else {
        match (&cache.http_proxy, &cache.no_proxy) {
            (Some(_), Some(_)) => CacheProxyDecision::Active,
            _ => CacheProxyDecision::Invalid,
        }
    };
    let mut section = pb::CacheProxy {
        active: decision == CacheProxyDecision::Active,
        decision: decision.into(),
        problems,
        ..pb::CacheProxy::default()
    };
    if let (true, Some(proxy), Some(no_proxy)) =
        (section.active, &cache.http_proxy, &cache.no_proxy)
    {
        section.http_proxy.clone_from(proxy);
        section.no_proxy.clone_from(no_proxy);
        // No proxy configured anywhere (an empty `http-proxy` beside a `no-proxy`, or no
        // server default): nothing to route through, only the exceptions are passed on.
        let proxy_vars = if proxy.is_empty() {
            &[][..]
        } else {
            &["HTTP_PROXY", "HTTPS_PROXY"][..]
        };
        section.env = proxy_vars
            .iter()
            .map(|name| (*name, proxy))
            .chain([("NO_PROXY", no_proxy)])
            .map(|(name, value)| pb::EnvVar {
                name: name.to_owned(),
                value: value.clone(),
            })
            .collect();
    }
    section
}

fn unix_ms(t: Option<SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn problem_to_proto(p: &resolve::Problem) -> pb::Problem {
    pb::Problem {
        key: p.key.clone(),
        value: p.value.clone(),
        reason: p.reason.clone(),
        package_manager: p.package_manager.clone().unwrap_or_default(),
        code: match p.code {
            ProblemCode::InvalidBoolean => pb::ProblemCode::InvalidBoolean,
            ProblemCode::InvalidUrl => pb::ProblemCode::InvalidUrl,
            ProblemCode::InvalidPackageManager => pb::ProblemCode::InvalidPackageManager,
            ProblemCode::InvalidProxy => pb::ProblemCode::InvalidProxy,
            ProblemCode::InvalidNoProxy => pb::ProblemCode::InvalidNoProxy,
            ProblemCode::HostNotAllowed => pb::ProblemCode::HostNotAllowed,
        }
        .into(),
    }
}

/// A stable 64-bit content hash (FNV-1a) of the encoded resolution, in hex. Stable across
/// processes and builds, so that every replica gives the same content the same version and a
/// subscriber can resume on another replica.
fn content_version(encoded: &[u8]) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = encoded
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME));
    format!("{hash:016x}")
}

/// What one request asks for, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The user's `enable-package-registry-proxy`.
    pub enable: bool,
    /// Only these package managers; `None` for all.
    pub package_managers: Option<BTreeSet<String>>,
    /// The pipeline's `enable-cache-proxy`: whether the cache proxy section is wanted.
    pub enable_cache_proxy: bool,
}

/// A request that names something that cannot be a package manager.
#[derive(Debug, thiserror::Error)]
#[error(
    "{name:?} is not a package manager name (lowercase letters, digits and '-', e.g. npm, gomod)"
)]
pub struct InvalidScope {
    /// The offending name.
    pub name: String,
}

impl Scope {
    /// Everything, proxy enabled: what a request with no fields asks for.
    pub fn all() -> Self {
        Self {
            enable: true,
            package_managers: None,
            enable_cache_proxy: false,
        }
    }

    /// Validates a request.
    pub fn from_request(request: &ResolveRequest) -> Result<Self, InvalidScope> {
        let mut names = BTreeSet::new();
        for name in &request.package_managers {
            if !package_manager::is_valid_name(name) {
                return Err(InvalidScope {
                    name: name.chars().take(64).collect(),
                });
            }
            names.insert(name.clone());
        }
        Ok(Self {
            enable: request.enable_package_registry_proxy.unwrap_or(true),
            package_managers: (!names.is_empty()).then_some(names),
            enable_cache_proxy: request.enable_cache_proxy.unwrap_or(false),
        })
    }

    fn includes(&self, name: &str) -> bool {
        self.package_managers
            .as_ref()
            .is_none_or(|names| names.contains(name))
    }
}

#[cfg(test)]
mod tests;
