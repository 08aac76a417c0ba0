//! Turns a source's events into published snapshots: resolves each new ConfigMap state once,
//! keeps the last good state when the source fails, and logs each change once with a summary.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::{Stream, StreamExt};
use proxyconf_proto::v1::{HistoryEntry, SourceState};
use tokio::{sync::watch, time::Instant};
use tracing::{info, warn};

use crate::{
    history::Change,
    metrics::Metrics,
    resolve::{Resolved, resolve},
    snapshot::{Scope, Snapshot, SourceFailure},
    source::{ConfigMapState, SourceEvent, error_chain},
};

/// Applies `events` to the snapshot in `snapshots` until the stream ends or every receiver is gone.
///
/// Bursts are coalesced: the first change is published at once, and further changes within
/// `coalesce` of a publication are folded into one publication at the end of that window, so a
/// lone change is not delayed and a burst wakes subscribers a few times, not once per event.
pub async fn track(
    mut events: impl Stream<Item = SourceEvent> + Unpin,
    snapshots: watch::Sender<Arc<Snapshot>>,
    coalesce: Duration,
    metrics: Arc<Metrics>,
) {
    let mut window_ends: Option<Instant> = None;
    let mut pending: Option<Snapshot> = None;
    loop {
        let flush_at = window_ends.filter(|_| pending.is_some());
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { break };
                let base = match pending.take() {
                    Some(p) => p,
                    None => Snapshot::clone(&snapshots.borrow()),
                };
                if matches!(event, SourceEvent::Failed(_)) {
                    metrics.source_errors.inc();
                }
                let next = apply(&base, event, SystemTime::now());
                if next.last_change != base.last_change {
                    metrics.config_changes.inc();
                }
                let now = Instant::now();
                if window_ends.is_some_and(|end| now < end) {
                    pending = Some(next);
                } else {
                    if snapshots.send(Arc::new(next)).is_err() {
                        return;
                    }
                    window_ends = Some(now + coalesce);
                }
            }
            () = sleep_until_or_forever(flush_at) => {
                if let Some(next) = pending.take() {
                    if snapshots.send(Arc::new(next)).is_err() {
                        return;
                    }
                    window_ends = Some(Instant::now() + coalesce);
                }
            }
        }
    }
    if let Some(next) = pending.take() {
        let _ = snapshots.send(Arc::new(next));
    }
    warn!(source = %snapshots.borrow().source, "source ended; serving the last state");
}

/// Sleeps until `deadline`, or forever when there is none (a disabled branch of a `select!`).
pub(crate) async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The snapshot that follows `current` after `event` at `now`.
pub fn apply(current: &Snapshot, event: SourceEvent, now: SystemTime) -> Snapshot {
    match event {
        SourceEvent::Observed(state) => observed(current, state, now),
        SourceEvent::Failed(error) => failed(current, &one_line(&error_chain(error.as_ref())), now),
    }
}

/// The source delivered a state: resolved, compared, recorded in the history when it differs.
fn observed(current: &Snapshot, state: ConfigMapState, now: SystemTime) -> Snapshot {
    let mut history = current.history.clone();
    if let Some(failure) = &current.failure {
        info!(source = %current.source, failed_since = %rfc3339(failure.since), "source recovered");
        history = history.with(Change::default().entry("recovered", now));
    }
    let (resolved, state_kind, resource_version) = match state {
        ConfigMapState::Present {
            data,
            resource_version,
        } => (
            resolve(&data, &current.policy),
            SourceState::Synced,
            resource_version,
        ),
        // An absent ConfigMap: every key has its default.
        ConfigMapState::Missing => (
            resolve(&BTreeMap::new(), &current.policy),
            SourceState::Missing,
            None,
        ),
    };
    let changed = current.resolved.as_deref() != Some(&resolved) || current.state != state_kind;
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
    let mut next = Snapshot {
        source: current.source.clone(),
        policy: current.policy.clone(),
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
        answers: Arc::default(),
        history,
    };
    if changed {
        let event = match (current.is_synced(), state_kind) {
            (false, _) => "first-sync",
            (true, SourceState::Missing) => "missing",
            (true, _) => "changed",
        };
        let mut entry = history_entry(current, &next, event, now);
        if event == "first-sync" {
            // Against nothing, every switch "flips": the state itself is what matters.
            entry.switches.clear();
        }
        next.history = next.history.with(entry);
    }
    next
}

/// The history entry of the change from `before` to `after`, with the new version.
fn history_entry(
    before: &Snapshot,
    after: &Snapshot,
    event: &str,
    now: SystemTime,
) -> HistoryEntry {
    let empty = Resolved::default();
    let old = before.resolved.as_deref().unwrap_or(&empty);
    let new = after.resolved.as_deref().unwrap_or(&empty);
    HistoryEntry {
        version: after
            .resolution(&Scope::all())
            .map(|r| r.version.clone())
            .unwrap_or_default(),
        resource_version: after.resource_version.clone().unwrap_or_default(),
        ..Change::between(old, new).entry(event, now)
    }
}

/// The source failed: the last good state is kept, marked stale from the first failure on.
fn failed(current: &Snapshot, error: &str, now: SystemTime) -> Snapshot {
    if current.is_synced() {
        warn!(source = %current.source, error = %error, "source failed; serving the last good state");
    } else {
        warn!(source = %current.source, error = %error, "source failed before the first state; not serving yet");
    }
    let mut next = Snapshot {
        failure: Some(SourceFailure {
            since: current.failure.as_ref().map_or(now, |f| f.since),
            error: error.to_owned(),
        }),
        ..current.clone()
    };
    if current.failure.is_none() {
        // Answers say whether they are stale: a new snapshot state needs new answers.
        next.answers = Arc::default();
        if current.is_synced() {
            let entry = HistoryEntry {
                error: error.to_owned(),
                ..history_entry(current, current, "stale", now)
            };
            next.history = next.history.with(entry);
        }
    }
    next
}

/// `text` on one line: a parse error that quotes the file must not break a log line or the
/// status layout.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `t` as RFC 3339 UTC with seconds, for logs.
pub fn rfc3339(t: SystemTime) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(t)
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
    use std::time::Duration;

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
        Snapshot::not_synced(
            SourceDescription {
                kind: "file",
                location: "cm".into(),
            },
            Default::default(),
        )
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

    #[tokio::test(start_paused = true)]
    async fn bursts_are_coalesced_and_a_lone_change_is_not_delayed() {
        let (events_tx, events_rx) = tokio::sync::mpsc::channel(256);
        let (sender, mut snapshots) = watch::channel(Arc::new(start()));
        let window = Duration::from_millis(100);
        tokio::spawn(track(
            tokio_stream::wrappers::ReceiverStream::new(events_rx),
            sender,
            window,
            Arc::default(),
        ));
        let value = |s: &Snapshot| s.resource_version.clone().unwrap_or_default();

        // A lone change is published without waiting for the window.
        let t0 = Instant::now();
        events_tx.send(present(&[("a", "0")], "0")).await.unwrap();
        snapshots.changed().await.unwrap();
        assert_eq!(value(&snapshots.borrow_and_update()), "0");
        assert_eq!(Instant::now(), t0, "no delay for a lone change");

        // A burst of 100 inside the window: one more publication, carrying the last.
        tokio::time::sleep(Duration::from_millis(10)).await;
        for i in 1..=100 {
            events_tx
                .send(present(&[("a", &i.to_string())], &i.to_string()))
                .await
                .unwrap();
        }
        let mut publications = 0;
        while tokio::time::timeout(window * 3, snapshots.changed())
            .await
            .is_ok()
        {
            publications += 1;
            snapshots.borrow_and_update();
        }
        assert_eq!(publications, 1, "the burst is folded into one publication");
        let last = snapshots.borrow().clone();
        assert_eq!(value(&last), "100", "the last one wins");
    }
}
