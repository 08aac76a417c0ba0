//! ConfigMap data shared by the benchmarks: a typical cluster-config and the largest one.

use std::collections::BTreeMap;

/// The example ConfigMap's proxy base URL.
pub const NEXUS: &str = "https://artifact-registry-proxy.caching.svc.cluster.local/repository";

/// A typical cluster-config: the switch, 8 package managers, one unrelated key (10 keys).
pub fn typical() -> BTreeMap<String, String> {
    let mut data = BTreeMap::from([
        ("allow-package-registry-proxy".to_owned(), "true".to_owned()),
        ("enable-keyless-signing".to_owned(), "true".to_owned()),
    ]);
    for pm in [
        "npm",
        "pnpm",
        "yarn",
        "gomod",
        "gomod-sum",
        "pip",
        "cargo",
        "bundler",
    ] {
        data.insert(
            format!("package-registry-proxy-{pm}-url"),
            format!("{NEXUS}/{pm}/"),
        );
    }
    data
}

/// `count` package managers with long URLs; 5,000 make about 1 MiB, the most a ConfigMap holds.
pub fn large(count: usize) -> BTreeMap<String, String> {
    let mut data = BTreeMap::from([("allow-package-registry-proxy".to_owned(), "true".to_owned())]);
    for i in 0..count {
        data.insert(
            format!("package-registry-proxy-pm{i}-url"),
            format!(
                "{NEXUS}/repository-with-a-long-name-{i:05}/and/some/more/path/segments/to/reach/\
                 the/size/of/the/largest/configmap/kubernetes/stores/"
            ),
        );
    }
    data
}

/// The size of a ConfigMap's data in bytes (keys and values).
pub fn size_of(data: &BTreeMap<String, String>) -> usize {
    data.iter().map(|(k, v)| k.len() + v.len()).sum()
}
