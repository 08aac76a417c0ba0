//! ConfigMap data shared by the benchmarks and tests: a typical cluster-config, the largest one,
//! and a ConfigMap volume laid out as kubelet projects it.

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

/// Lays out `dir` as kubelet projects a ConfigMap volume, or updates it as kubelet does: the
/// values in a new `..<stamp>/` directory, `KEY -> ..data/KEY` links, and `..data` swapped to the
/// new directory by renaming a new link over it (atomic).
pub fn project_configmap(dir: &std::path::Path, stamp: &str, data: &[(&str, &str)]) {
    use std::os::unix::fs::symlink;
    let generation = dir.join(format!("..{stamp}"));
    std::fs::create_dir(&generation).expect("create the generation directory");
    for (key, value) in data {
        std::fs::write(generation.join(key), value).expect("write a key");
        let link = dir.join(key);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(std::path::Path::new("..data").join(key), &link).expect("link a key");
        }
    }
    let tmp = dir.join("..data_tmp");
    symlink(format!("..{stamp}"), &tmp).expect("link the generation");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
}
