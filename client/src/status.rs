//! `proxyconf status` for a person: the server's source, state, problems and package managers.

use std::{
    fmt::Write,
    time::{Duration, SystemTime},
};

use proxyconf_proto::v1::{HistoryEntry, ServingState, Status};

/// How many history entries `proxyconf status` shows without `--history`.
pub const RECENT_HISTORY: usize = 3;

/// The status as aligned `label: value` lines, with the last `history` entries of its history.
pub fn render(status: &Status, now: SystemTime, history: usize) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<17} {value}");
    };
    line(
        "source:",
        format!("{} {}", status.source_kind, status.source_location),
    );
    line("state:", state_line(status));
    line("last change:", when(status.last_change_unix_ms, now));
    line("last seen:", when(status.last_seen_unix_ms, now));
    line("proxy:", proxy_line(status));
    line("package managers:", list_or_none(&status.package_managers));
    line("cache proxy:", cache_proxy_line(status));
    line("problems:", problems_count(status));
    for p in &status.problems {
        let _ = writeln!(
            out,
            "  - {}={:?}: {}",
            one_line(&p.key),
            one_line(&p.value),
            one_line(&p.reason)
        );
    }
    let _ = writeln!(out, "{:<17} {}", "subscribers:", status.subscribers);
    let _ = writeln!(
        out,
        "{:<17} proxyconf-server {}, up {}",
        "server:",
        status.server_version,
        humantime::format_duration(Duration::from_secs(status.uptime_seconds))
    );
    render_history(&mut out, &status.history, history, now);
    out
}

/// The one state: not yet synced, synced, stale since …, or ConfigMap missing.
fn state_line(status: &Status) -> String {
    let rv = status
        .source
        .as_ref()
        .map(|s| s.resource_version.as_str())
        .filter(|rv| !rv.is_empty())
        .map(|rv| format!(" (resourceVersion {rv})"))
        .unwrap_or_default();
    let error = one_line(&status.source_error);
    match status.state() {
        ServingState::Synced => format!("synced{rv}"),
        ServingState::Stale => format!(
            "stale for {}: serving the last good state{rv}; the source fails: {error}",
            humantime::format_duration(Duration::from_secs(status.stale_seconds))
        ),
        ServingState::Missing => "ConfigMap missing: every setting is off".to_owned(),
        ServingState::NotSynced if status.source_error.is_empty() => {
            "not synced yet: nothing is served".to_owned()
        }
        ServingState::NotSynced => {
            format!("not synced yet: nothing is served; the source fails: {error}")
        }
        ServingState::Unspecified => "unknown (a server older than this client)".to_owned(),
    }
}

fn proxy_line(status: &Status) -> String {
    if status.package_registry_proxy_allowed {
        "allowed by the administrator".to_owned()
    } else {
        "not allowed by the administrator (allow-package-registry-proxy)".to_owned()
    }
}

fn cache_proxy_line(status: &Status) -> String {
    match (status.cache_proxy_allowed, status.cache_http_proxy.as_str()) {
        (false, _) => "not allowed by the administrator (allow-cache-proxy)".to_owned(),
        (true, "") => "allowed, but no valid http-proxy".to_owned(),
        (true, proxy) => format!("{proxy} for pipelines that enable it"),
    }
}

fn problems_count(status: &Status) -> String {
    if status.problems.is_empty() {
        "none".to_owned()
    } else {
        status.problems.len().to_string()
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// The newest `count` history entries, one line each.
fn render_history(out: &mut String, history: &[HistoryEntry], count: usize, now: SystemTime) {
    if count == 0 {
        return;
    }
    let more = history.len().saturating_sub(count);
    let header = match (history.is_empty(), more) {
        (true, _) => "none since the server started".to_owned(),
        (false, 0) => format!("{} (newest first)", history.len()),
        (false, more) => format!(
            "{} (newest first; {more} more with --history)",
            history.len()
        ),
    };
    let _ = writeln!(out, "{:<17} {header}", "history:");
    for entry in history.iter().take(count) {
        let _ = writeln!(
            out,
            "  - {} {}",
            when(entry.unix_ms, now),
            history_line(entry)
        );
    }
}

/// What one history entry says.
fn history_line(entry: &HistoryEntry) -> String {
    let mut parts = vec![entry.event.clone()];
    if !entry.version.is_empty() {
        parts.push(format!("version {}", entry.version));
    }
    let mut list = |label: &str, items: &[String]| {
        if !items.is_empty() {
            parts.push(format!("{label} {}", one_line(&items.join(", "))));
        }
    };
    list("added", &entry.added);
    list("removed", &entry.removed);
    list("changed", &entry.changed);
    list("switched", &entry.switches);
    list("new problems:", &entry.problems_appeared);
    list("problems cleared:", &entry.problems_cleared);
    if !entry.error.is_empty() {
        parts.push(format!("error: {}", one_line(&entry.error)));
    }
    parts.join("; ")
}

/// `text` on one line: a multi-line message (a parse error quoting the file) keeps the layout.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Year 9999: beyond it, RFC 3339 has no representation (and humantime would panic).
const LATEST_PRINTABLE_MS: u64 = 253_402_300_799_000;

fn when(unix_ms: u64, now: SystemTime) -> String {
    if unix_ms == 0 {
        return "never".to_owned();
    }
    if unix_ms > LATEST_PRINTABLE_MS {
        return format!("invalid time ({unix_ms} ms after 1970)");
    }
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(unix_ms);
    let ago = now.duration_since(at).unwrap_or_default();
    format!(
        "{} ({} ago)",
        humantime::format_rfc3339_seconds(at),
        humantime::format_duration(Duration::from_secs(ago.as_secs()))
    )
}

#[cfg(test)]
mod tests {
    use proxyconf_proto::v1::{Problem, SourceRef, SourceState};

    use super::*;

    #[test]
    fn readable_status() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let status = Status {
            source_kind: "kubernetes".into(),
            source_location: "konflux-info/cluster-config".into(),
            source: Some(SourceRef {
                state: SourceState::Synced.into(),
                resource_version: "4711".into(),
                ..SourceRef::default()
            }),
            last_change_unix_ms: 1_800_000_000_000 - 90_000,
            last_seen_unix_ms: 1_800_000_000_000,
            stale: true,
            stale_seconds: 65,
            source_error: "connection refused\n  (while listing)".into(),
            problems: vec![Problem {
                key: "package-registry-proxy-pip-url".into(),
                value: "ftp://x/".into(),
                reason: "not an absolute http:// or https:// URL".into(),
                ..Problem::default()
            }],
            package_registry_proxy_allowed: true,
            package_managers: vec!["gomod".into(), "npm".into()],
            subscribers: 3,
            server_version: "0.1.0".into(),
            uptime_seconds: 3600,
            cache_proxy_allowed: true,
            cache_http_proxy: "squid.caching.svc.cluster.local:3128".into(),
            state: ServingState::Stale.into(),
            history: vec![
                HistoryEntry {
                    unix_ms: 1_800_000_000_000 - 65_000,
                    event: "stale".into(),
                    version: "abc".into(),
                    error: "connection refused".into(),
                    ..HistoryEntry::default()
                },
                HistoryEntry {
                    unix_ms: 1_800_000_000_000 - 90_000,
                    event: "changed".into(),
                    version: "abc".into(),
                    added: vec!["npm".into()],
                    switches: vec!["allow-package-registry-proxy: false -> true".into()],
                    ..HistoryEntry::default()
                },
            ],
        };
        let text = render(&status, now, 1);
        for want in [
            "source:           kubernetes konflux-info/cluster-config\n",
            "state:            stale for 1m 5s: serving the last good state (resourceVersion \
             4711); the source fails: connection refused (while listing)\n",
            "last change:      2027-01-15T07:58:30Z (1m 30s ago)\n",
            "proxy:            allowed by the administrator\n",
            "package managers: gomod, npm\n",
            "cache proxy:      squid.caching.svc.cluster.local:3128 for pipelines that enable it\n",
            "problems:         1\n",
            "  - package-registry-proxy-pip-url=\"ftp://x/\": not an absolute",
            "subscribers:      3\n",
            "server:           proxyconf-server 0.1.0, up 1h\n",
            "history:          2 (newest first; 1 more with --history)\n",
            "  - 2027-01-15T07:58:55Z (1m 5s ago) stale; version abc; error: connection refused\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("stale:"), "one state line, no contradiction");
        let all = render(&status, now, usize::MAX);
        assert!(
            all.contains("changed; version abc; added npm; switched allow-package-registry-proxy: false -> true"),
            "{all}"
        );
        for line in all.lines() {
            assert!(line.len() < 200, "one line per item: {line}");
        }
    }

    #[test]
    fn absurd_times_are_shown_not_panicked_on() {
        let now = SystemTime::UNIX_EPOCH;
        assert!(when(u64::MAX, now).starts_with("invalid time"));
        assert_eq!(when(0, now), "never");
    }
}
