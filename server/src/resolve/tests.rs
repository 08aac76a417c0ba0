//! Table-driven tests of the resolution rules (docs/configuration.md §2–§4).

use std::collections::BTreeMap;

use super::*;

/// A ConfigMap's `data`, built the way an administrator writes it.
#[derive(Default, Clone)]
struct ConfigMapFixture(BTreeMap<String, String>);

impl ConfigMapFixture {
    fn new() -> Self {
        Self::default()
    }
    fn allow(self, value: &str) -> Self {
        self.set(ALLOW_KEY, value)
    }
    fn url(self, pm: &str, url: &str) -> Self {
        self.set(&format!("package-registry-proxy-{pm}-url"), url)
    }
    fn set(mut self, key: &str, value: &str) -> Self {
        self.0.insert(key.to_owned(), value.to_owned());
        self
    }
    fn resolve(&self) -> Resolved {
        resolve(&self.0, &Policy::default())
    }
}

const NEXUS: &str = "https://artifact-registry-proxy.caching.svc.cluster.local/repository";

fn exported(r: &Resolved) -> Vec<(String, Option<String>, String)> {
    r.package_managers
        .iter()
        .map(|(name, p)| (name.clone(), p.hermeto_variable.clone(), p.url.clone()))
        .collect()
}

#[test]
fn every_package_manager_of_the_table() {
    let table = [
        ("npm", Some("HERMETO_NPM__PROXY_URL")),
        ("pnpm", Some("HERMETO_PNPM__PROXY_URL")),
        ("yarn", Some("HERMETO_YARN__PROXY_URL")),
        ("gomod", Some("HERMETO_GOMOD__PROXY_URL")),
        ("pip", Some("HERMETO_PIP__PROXY_URL")),
        ("cargo", Some("HERMETO_CARGO__PROXY_URL")),
        ("bundler", Some("HERMETO_BUNDLER__PROXY_URL")),
        ("gomod-sum", None),
        ("conda", Some("HERMETO_CONDA__PROXY_URL")),
    ];
    let mut cm = ConfigMapFixture::new().allow("true");
    for (pm, _) in table {
        cm = cm.url(pm, &format!("{NEXUS}/{pm}/"));
    }
    let r = cm.resolve();
    assert!(r.allowed);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.package_managers.len(), table.len());
    for (pm, var) in table {
        let s = &r.package_managers[pm];
        assert_eq!(s.hermeto_variable.as_deref(), var, "{pm}");
        assert_eq!(s.url, format!("{NEXUS}/{pm}/"));
    }
}

#[test]
fn allow_switch_missing_empty_and_every_spelling() {
    assert!(!ConfigMapFixture::new().resolve().allowed);
    let empty = ConfigMapFixture::new().allow("").resolve();
    assert!(!empty.allowed);
    assert!(
        empty.problems.is_empty(),
        "empty means false, not a problem"
    );
    for v in ["1", "t", "T", "TRUE", "true", "True"] {
        let r = ConfigMapFixture::new().allow(v).resolve();
        assert!(r.allowed && r.problems.is_empty(), "{v}");
    }
    for v in ["0", "f", "F", "FALSE", "false", "False"] {
        let r = ConfigMapFixture::new().allow(v).resolve();
        assert!(!r.allowed && r.problems.is_empty(), "{v}");
    }
}

#[test]
fn unparsable_switch_is_false_and_reported() {
    for v in ["yes", "on", "tru", " true", "true "] {
        let r = ConfigMapFixture::new()
            .allow(v)
            .url("npm", &format!("{NEXUS}/npm/"))
            .resolve();
        assert!(!r.allowed, "{v:?} must never be silently true");
        assert_eq!(r.problems.len(), 1, "{v:?}");
        let p = &r.problems[0];
        assert_eq!(p.key, ALLOW_KEY);
        assert_eq!(p.code, ProblemCode::InvalidBoolean);
        assert_eq!(p.package_manager, None);
        assert_eq!(p.value, v);
    }
}

#[test]
fn missing_and_empty_urls_are_not_proxied_and_not_problems() {
    let r = ConfigMapFixture::new()
        .allow("true")
        .url("npm", "")
        .url("pip", &format!("{NEXUS}/pypi/simple/"))
        .resolve();
    assert_eq!(
        exported(&r),
        vec![(
            "pip".into(),
            Some("HERMETO_PIP__PROXY_URL".into()),
            format!("{NEXUS}/pypi/simple/")
        )]
    );
    assert!(r.problems.is_empty());
}

#[test]
fn shared_urls() {
    let shared = format!("{NEXUS}/npm-group/");
    let r = ConfigMapFixture::new()
        .allow("true")
        .url("npm", &shared)
        .url("pnpm", &shared)
        .url("yarn", &shared)
        .resolve();
    assert_eq!(r.package_managers.len(), 3);
    assert!(r.package_managers.values().all(|p| p.url == shared));
}

#[test]
fn urls_resolve_even_when_not_allowed() {
    // The switch decides what is exported per request; the settings stay visible for status.
    let r = ConfigMapFixture::new()
        .allow("false")
        .url("npm", &format!("{NEXUS}/npm/"))
        .resolve();
    assert!(!r.allowed);
    assert_eq!(r.package_managers.len(), 1);
}

#[test]
fn unrelated_keys_are_ignored() {
    let r = ConfigMapFixture::new()
        .allow("true")
        .set("enable-keyless-signing", "true")
        .set("http-proxy", "squid.caching.svc.cluster.local:3128")
        .set("package-registry-proxy", "https://x/")
        .set("package-registry-proxy-url", "not a url")
        .set("package-registry-proxy-npm-urls", "not a url")
        .set("xpackage-registry-proxy-npm-url", "not a url")
        .url("npm", &format!("{NEXUS}/npm/"))
        .resolve();
    assert_eq!(r.package_managers.keys().collect::<Vec<_>>(), ["npm"]);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

#[test]
fn invalid_package_manager_names_are_reported() {
    let r = ConfigMapFixture::new()
        .allow("true")
        .set("package-registry-proxy-NPM-url", "https://x/")
        .set("package-registry-proxy-go--mod-url", "https://x/")
        .resolve();
    assert!(r.package_managers.is_empty());
    assert_eq!(r.problems.len(), 2);
    assert!(
        r.problems
            .iter()
            .all(|p| p.code == ProblemCode::InvalidPackageManager && p.package_manager.is_none())
    );
}

#[test]
fn every_url_rejection_class_is_a_problem_never_exported() {
    let table = [
        ("npm", "ftp://nexus/npm/", "not an absolute http"),
        ("pip", "https:///simple/", "no host"),
        ("yarn", "https://admin:hunter2@nexus/yarn/", "credentials"),
        ("cargo", "https://nexus/cargo/ ", "whitespace"),
        ("bundler", "https://nexus/\u{1b}[31m/", "control"),
        ("pnpm", "https://nexus/pnpm/#top", "fragment"),
        ("gomod", "https://nexus/go/,direct", "GOPROXY list"),
    ];
    for (pm, url, reason) in table {
        let r = ConfigMapFixture::new().allow("true").url(pm, url).resolve();
        assert!(r.package_managers.is_empty(), "{pm} {url:?} exported");
        assert_eq!(r.problems.len(), 1, "{pm} {url:?}");
        let p = &r.problems[0];
        assert_eq!(p.code, ProblemCode::InvalidUrl);
        assert_eq!(p.package_manager.as_deref(), Some(pm));
        assert_eq!(p.key, format!("package-registry-proxy-{pm}-url"));
        assert!(p.reason.contains(reason), "{pm}: {:?}", p.reason);
    }
    let long = format!("https://nexus/{}", "a".repeat(proxy_url::MAX_URL_LEN));
    let r = ConfigMapFixture::new()
        .allow("true")
        .url("npm", &long)
        .resolve();
    assert!(r.package_managers.is_empty());
    assert!(r.problems[0].reason.contains("bytes long"));
    assert!(r.problems[0].value.len() < 300, "long values are shortened");
}

#[test]
fn credentials_never_appear_in_problems() {
    let r = ConfigMapFixture::new()
        .allow("true")
        .url("npm", "https://admin:hunter2@nexus/npm/")
        .resolve();
    let p = &r.problems[0];
    assert!(!p.value.contains("hunter2") && !p.value.contains("admin"));
    assert!(!p.reason.contains("hunter2"));
    assert_eq!(p.value, "https://***@nexus/npm/");
}

#[test]
fn in_cluster_names_ips_and_ports_accepted() {
    let r = ConfigMapFixture::new()
        .allow("true")
        .url("npm", "http://nginx.caching.svc.cluster.local:8080/npm/")
        .url("pip", "http://10.96.0.15/simple/")
        .url("cargo", "https://[fd00::15]:8443/cargo/")
        .url("gomod", "https://nexus.corp.example:8443/go")
        .resolve();
    assert_eq!(r.package_managers.len(), 4);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

#[test]
fn problems_are_sorted_by_key() {
    let r = ConfigMapFixture::new()
        .allow("maybe")
        .url("pip", "nope")
        .url("cargo", "nope")
        .resolve();
    let keys: Vec<_> = r.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            ALLOW_KEY,
            "package-registry-proxy-cargo-url",
            "package-registry-proxy-pip-url"
        ]
    );
}

#[test]
fn allowlist_rejects_other_hosts_as_problems() {
    let policy = Policy {
        allowed_proxy_hosts: Some(
            host_allowlist::HostAllowlist::parse("*.svc.cluster.local,nexus.example.org:8443")
                .unwrap(),
        ),
        ..Policy::default()
    };
    let data = ConfigMapFixture::new()
        .allow("true")
        .url("npm", "https://nginx.svc.cluster.local/npm/")
        .url("pip", "https://nexus.example.org:8443/pypi/simple/")
        .url("cargo", "https://nexus.example.org/cargo/")
        .url("gomod", "https://proxy.golang.org/")
        .0;
    let r = resolve(&data, &policy);
    assert_eq!(
        r.package_managers.keys().collect::<Vec<_>>(),
        ["npm", "pip"]
    );
    let rejected: Vec<(&str, ProblemCode)> = r
        .problems
        .iter()
        .map(|p| (p.package_manager.as_deref().unwrap(), p.code))
        .collect();
    assert_eq!(
        rejected,
        [
            ("cargo", ProblemCode::HostNotAllowed),
            ("gomod", ProblemCode::HostNotAllowed)
        ]
    );
    assert!(
        r.problems[0].reason.contains("--allowed-proxy-hosts"),
        "{}",
        r.problems[0].reason
    );

    // Without an allowlist, every valid host.
    assert_eq!(resolve(&data, &Policy::default()).package_managers.len(), 4);
}
