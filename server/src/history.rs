//! The server's recent history: the last distinct changes of what it serves and of its source's
//! health, for `GetStatus` and `proxyconf status --history`. In memory only: it starts empty.

use std::{collections::VecDeque, sync::Arc, time::SystemTime};

use proxyconf_proto::v1::HistoryEntry;

use crate::resolve::Resolved;

/// How many entries are kept.
pub const MAX_ENTRIES: usize = 32;

/// The entries, newest first. Shared by snapshots; a new entry makes a new list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History(Arc<VecDeque<HistoryEntry>>);

impl History {
    /// This history with `entry` as its newest, the oldest dropped beyond [`MAX_ENTRIES`].
    #[must_use]
    pub fn with(&self, entry: HistoryEntry) -> Self {
        let mut entries = VecDeque::clone(&self.0);
        entries.push_front(entry);
        entries.truncate(MAX_ENTRIES);
        Self(Arc::new(entries))
    }

    /// The entries, newest first.
    pub fn entries(&self) -> impl Iterator<Item = &HistoryEntry> {
        self.0.iter()
    }
}

/// What changed between two resolutions, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub problems_appeared: Vec<String>,
    pub problems_cleared: Vec<String>,
    pub switches: Vec<String>,
}

impl Change {
    /// The difference from `before` to `after`.
    pub fn between(before: &Resolved, after: &Resolved) -> Self {
        let names = |from: &Resolved, to: &Resolved| -> Vec<String> {
            from.package_managers
                .keys()
                .filter(|k| !to.package_managers.contains_key(*k))
                .cloned()
                .collect()
        };
        let problems = |from: &Resolved, to: &Resolved| -> Vec<String> {
            all_problems(from)
                .filter(|p| !all_problems(to).any(|q| q == *p))
                .map(|p| format!("{}: {}", p.key, p.reason))
                .collect()
        };
        let mut switches = Vec::new();
        let mut flip = |name: &str, old: bool, new: bool| {
            if old != new {
                switches.push(format!("{name}: {old} -> {new}"));
            }
        };
        flip(
            "allow-package-registry-proxy",
            before.allowed,
            after.allowed,
        );
        flip(
            "allow-cache-proxy",
            before.cache_proxy.allowed,
            after.cache_proxy.allowed,
        );
        Self {
            added: names(after, before),
            removed: names(before, after),
            changed: after
                .package_managers
                .iter()
                .filter(|(k, v)| before.package_managers.get(*k).is_some_and(|b| b != *v))
                .map(|(k, _)| k.clone())
                .collect(),
            problems_appeared: problems(after, before),
            problems_cleared: problems(before, after),
            switches,
        }
    }

    /// The history entry of this change.
    pub fn entry(self, event: &str, at: SystemTime) -> HistoryEntry {
        HistoryEntry {
            unix_ms: unix_ms(at),
            event: event.to_owned(),
            added: self.added,
            removed: self.removed,
            changed: self.changed,
            problems_appeared: self.problems_appeared,
            problems_cleared: self.problems_cleared,
            switches: self.switches,
            ..HistoryEntry::default()
        }
    }
}

fn all_problems(resolved: &Resolved) -> impl Iterator<Item = &crate::resolve::Problem> {
    resolved
        .problems
        .iter()
        .chain(&resolved.cache_proxy.problems)
}

/// Milliseconds since the Unix epoch; 0 for times before it.
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::resolve::{Policy, resolve};

    fn resolved(pairs: &[(&str, &str)]) -> Resolved {
        let data: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        resolve(&data, &Policy::default())
    }

    #[test]
    fn a_change_names_what_changed() {
        let before = resolved(&[
            ("allow-package-registry-proxy", "false"),
            ("package-registry-proxy-npm-url", "https://n/npm/"),
            ("package-registry-proxy-pip-url", "https://n/pip/"),
        ]);
        let after = resolved(&[
            ("allow-package-registry-proxy", "true"),
            ("package-registry-proxy-npm-url", "https://n/npm2/"),
            ("package-registry-proxy-cargo-url", "https://n/cargo/"),
            ("package-registry-proxy-gomod-url", "https://u:p@n/go/"),
        ]);
        let change = Change::between(&before, &after);
        assert_eq!(change.added, ["cargo"]);
        assert_eq!(change.removed, ["pip"]);
        assert_eq!(change.changed, ["npm"]);
        assert_eq!(
            change.switches,
            ["allow-package-registry-proxy: false -> true"]
        );
        assert_eq!(change.problems_appeared.len(), 1, "{change:?}");
        assert!(change.problems_appeared[0].starts_with("package-registry-proxy-gomod-url: "));
        let back = Change::between(&after, &before);
        assert_eq!(back.problems_cleared, change.problems_appeared);
    }

    #[test]
    fn at_most_the_last_32_newest_first() {
        let mut history = History::default();
        for i in 0..40 {
            history = history.with(HistoryEntry {
                version: i.to_string(),
                ..HistoryEntry::default()
            });
        }
        let versions: Vec<&str> = history.entries().map(|e| e.version.as_str()).collect();
        assert_eq!(versions.len(), MAX_ENTRIES);
        assert_eq!(versions[0], "39");
        assert_eq!(versions[31], "8");
    }
}
