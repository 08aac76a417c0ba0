//! `proxyconf status` for a person: the server's source, state, problems and package managers.

use std::{
    fmt::Write,
    time::{Duration, SystemTime},
};

use proxyconf_proto::v1::{SourceState, Status};

/// The status as aligned `label: value` lines.
pub fn render(status: &Status, now: SystemTime) -> String {
    let source = status.source.clone().unwrap_or_default();
    let state = match source.state() {
        SourceState::Synced => "synced",
        SourceState::Missing => "ConfigMap missing: every setting is off",
        SourceState::NotSynced => "not synced yet: nothing is served",
        SourceState::Unspecified => "unknown",
    };
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<17} {value}");
    };
    line(
        "source:",
        format!("{} {}", status.source_kind, status.source_location),
    );
    let rv = if source.resource_version.is_empty() {
        String::new()
    } else {
        format!(" (resourceVersion {})", source.resource_version)
    };
    line("state:", format!("{state}{rv}"));
    line("last change:", when(status.last_change_unix_ms, now));
    line("last seen:", when(status.last_seen_unix_ms, now));
    line(
        "stale:",
        if status.stale {
            format!(
                "yes, for {}: {}",
                humantime::format_duration(Duration::from_secs(status.stale_seconds)),
                status.source_error
            )
        } else {
            "no".to_owned()
        },
    );
    line(
        "proxy:",
        if status.package_registry_proxy_allowed {
            "allowed by the administrator".to_owned()
        } else {
            "not allowed by the administrator (allow-package-registry-proxy)".to_owned()
        },
    );
    line(
        "package managers:",
        if status.package_managers.is_empty() {
            "none".to_owned()
        } else {
            status.package_managers.join(", ")
        },
    );
    line(
        "cache proxy:",
        match (status.cache_proxy_allowed, status.cache_http_proxy.as_str()) {
            (false, _) => "not allowed by the administrator (allow-cache-proxy)".to_owned(),
            (true, "") => "allowed, but http-proxy is invalid".to_owned(),
            (true, proxy) => format!("{proxy} for pipelines that enable it"),
        },
    );
    line(
        "problems:",
        if status.problems.is_empty() {
            "none".to_owned()
        } else {
            status.problems.len().to_string()
        },
    );
    for p in &status.problems {
        let _ = writeln!(out, "  - {}={:?}: {}", p.key, p.value, p.reason);
    }
    let _ = writeln!(out, "{:<17} {}", "subscribers:", status.subscribers);
    let _ = writeln!(
        out,
        "{:<17} proxyconf-server {}, up {}",
        "server:",
        status.server_version,
        humantime::format_duration(Duration::from_secs(status.uptime_seconds))
    );
    out
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
    use proxyconf_proto::v1::{Problem, SourceRef};

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
            }),
            last_change_unix_ms: 1_800_000_000_000 - 90_000,
            last_seen_unix_ms: 1_800_000_000_000,
            stale: true,
            stale_seconds: 65,
            source_error: "connection refused".into(),
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
        };
        let text = render(&status, now);
        for want in [
            "source:           kubernetes konflux-info/cluster-config\n",
            "state:            synced (resourceVersion 4711)\n",
            "last change:      2027-01-15T07:58:30Z (1m 30s ago)\n",
            "stale:            yes, for 1m 5s: connection refused\n",
            "proxy:            allowed by the administrator\n",
            "package managers: gomod, npm\n",
            "cache proxy:      squid.caching.svc.cluster.local:3128 for pipelines that enable it\n",
            "problems:         1\n",
            "  - package-registry-proxy-pip-url=\"ftp://x/\": not an absolute",
            "subscribers:      3\n",
            "server:           proxyconf-server 0.1.0, up 1h\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn absurd_times_are_shown_not_panicked_on() {
        let now = SystemTime::UNIX_EPOCH;
        assert!(when(u64::MAX, now).starts_with("invalid time"));
        assert_eq!(when(0, now), "never");
    }
}
