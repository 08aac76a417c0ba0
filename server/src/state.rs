//! Turns a source's events into published snapshots: resolves each new ConfigMap state once,
//! keeps the last good state when the source fails, and logs each change once with a summary.

use std::{sync::Arc, time::SystemTime};

use futures::{Stream, StreamExt};
use proxyconf_proto::v1::SourceState;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    resolve::{Resolved, resolve},
    snapshot::{Snapshot, SourceFailure},
    source::{ConfigMapState, SourceEvent, error_chain},
};

/// Applies `events` to the snapshot in `snapshots` until the stream ends or every receiver is gone.
pub async fn track(
    mut events: impl Stream<Item = SourceEvent> + Unpin,
    snapshots: watch::Sender<Arc<Snapshot>>,
) {
    while let Some(event) = events.next().await {
        let current = snapshots.borrow().clone();
        let next = apply(&current, event, SystemTime::now());
        if snapshots.send(Arc::new(next)).is_err() {
            return;
        }
    }
    warn!(source = %snapshots.borrow().source, "source ended; serving the last state");
}

/// The snapshot that follows `current` after `event` at `now`.
pub fn apply(current: &Snapshot, event: SourceEvent, now: SystemTime) -> Snapshot {
    match event {
        SourceEvent::Observed(state) => {
            if let Some(failure) = &current.failure {
                info!(source = %current.source, failed_since = ?failure.since, "source recovered");
            }
            let (resolved, state_kind, resource_version) = match state {
                ConfigMapState::Present {
                    data,
                    resource_version,
                } => (resolve(&data), SourceState::Synced, resource_version),
                ConfigMapState::Missing => (Resolved::default(), SourceState::Missing, None),
            };
            let changed =
                current.resolved.as_deref() != Some(&resolved) || current.state != state_kind;
            let resolved = if changed {
                log_change(current, &resolved, state_kind);
                Arc::new(resolved)
            } else {
                // Keep the same allocation: nothing a request sees has changed.
                current
                    .resolved
                    .clone()
                    .unwrap_or_else(|| Arc::new(resolved))
            };
            Snapshot {
                source: current.source.clone(),
                resolved: Some(resolved),
                state: state_kind,
                resource_version,
                last_change: if changed {
                    Some(now)
                } else {
                    current.last_change
                },
                last_seen: Some(now),
                failure: None,
            }
        }
        SourceEvent::Failed(error) => {
            let error = error_chain(error.as_ref());
            if current.is_synced() {
                warn!(source = %current.source, error = %error, "source failed; serving the last good state");
            } else {
                warn!(source = %current.source, error = %error, "source failed before the first state; not serving yet");
            }
            Snapshot {
                failure: Some(SourceFailure {
                    since: current.failure.as_ref().map_or(now, |f| f.since),
                    error,
                }),
                ..current.clone()
            }
        }
    }
}

/// One info line per change, saying what changed; one warning per problem that is new.
fn log_change(current: &Snapshot, next: &Resolved, state: SourceState) {
    let empty = Resolved::default();
    let before = current.resolved.as_deref().unwrap_or(&empty);
    let added: Vec<&str> = next
        .package_managers
        .keys()
        .filter(|k| !before.package_managers.contains_key(*k))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = before
        .package_managers
        .keys()
        .filter(|k| !next.package_managers.contains_key(*k))
        .map(String::as_str)
        .collect();
    let changed: Vec<&str> = next
        .package_managers
        .iter()
        .filter(|(k, v)| before.package_managers.get(*k).is_some_and(|b| b != *v))
        .map(|(k, _)| k.as_str())
        .collect();
    info!(
        source = %current.source,
        first = !current.is_synced(),
        state = state.as_str_name(),
        allowed = next.allowed,
        package_managers = next.package_managers.len(),
        ?added,
        ?removed,
        ?changed,
        problems = next.problems.len(),
        "configuration changed"
    );
    for problem in next
        .problems
        .iter()
        .filter(|p| !before.problems.contains(p))
    {
        warn!(
            key = %problem.key,
            value = %problem.value,
            reason = %problem.reason,
            "configuration problem"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use super::*;
    use crate::source::SourceDescription;

    fn present(pairs: &[(&str, &str)], rv: &str) -> SourceEvent {
        SourceEvent::Observed(ConfigMapState::Present {
            data: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            resource_version: Some(rv.to_owned()),
        })
    }

    fn start() -> Snapshot {
        Snapshot::not_synced(SourceDescription {
            kind: "file",
            location: "cm".into(),
        })
    }

    #[test]
    fn failures_keep_the_last_good_state() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let s1 = apply(
            &start(),
            present(&[("allow-package-registry-proxy", "true")], "1"),
            t0,
        );
        assert!(s1.resolved.as_ref().unwrap().allowed);
        assert_eq!(s1.last_change, Some(t0));

        let t1 = t0 + Duration::from_secs(5);
        let s2 = apply(&s1, SourceEvent::Failed("boom".into()), t1);
        let s3 = apply(
            &s2,
            SourceEvent::Failed("boom again".into()),
            t1 + Duration::from_secs(5),
        );
        assert!(
            s3.resolved.as_ref().unwrap().allowed,
            "last good state kept"
        );
        let failure = s3.failure.as_ref().unwrap();
        assert_eq!(failure.since, t1, "stale since the first failure");
        assert_eq!(failure.error, "boom again");

        let t2 = t1 + Duration::from_secs(20);
        let s4 = apply(
            &s3,
            present(&[("allow-package-registry-proxy", "true")], "2"),
            t2,
        );
        assert!(s4.failure.is_none());
        assert_eq!(s4.last_change, Some(t0), "same content is not a change");
        assert_eq!(s4.last_seen, Some(t2));
        assert_eq!(s4.resource_version.as_deref(), Some("2"));
        assert!(Arc::ptr_eq(
            s1.resolved.as_ref().unwrap(),
            s4.resolved.as_ref().unwrap()
        ));
    }

    #[test]
    fn missing_defaults_everything_off_and_recreate_restores() {
        let t = SystemTime::UNIX_EPOCH;
        let on = apply(
            &start(),
            present(&[("allow-package-registry-proxy", "true")], "1"),
            t,
        );
        let gone = apply(&on, SourceEvent::Observed(ConfigMapState::Missing), t);
        assert_eq!(gone.state, SourceState::Missing);
        assert!(!gone.resolved.as_ref().unwrap().allowed);
        assert_eq!(gone.resource_version, None);
        let back = apply(
            &gone,
            present(&[("allow-package-registry-proxy", "true")], "3"),
            t,
        );
        assert_eq!(back.state, SourceState::Synced);
        assert!(back.resolved.as_ref().unwrap().allowed);
    }

    #[test]
    fn failure_before_first_state_stays_not_synced() {
        let s = apply(
            &start(),
            SourceEvent::Failed("nope".into()),
            SystemTime::UNIX_EPOCH,
        );
        assert!(!s.is_synced());
        assert!(s.failure.is_some());
    }
}
