//! The per-request rules: allow × enable, scope, problems in scope, versions.

use std::collections::BTreeMap;

use super::*;
use crate::resolve::resolve;

fn snapshot(pairs: &[(&str, &str)]) -> Snapshot {
    let data: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Snapshot {
        resolved: Some(Arc::new(resolve(&data, &Policy::default()))),
        state: SourceState::Synced,
        resource_version: Some("7".into()),
        ..Snapshot::not_synced(
            SourceDescription {
                kind: "file",
                location: "cm.yaml".into(),
            },
            Policy::default(),
        )
    }
}

fn scope(enable: bool, pms: &[&str]) -> Scope {
    Scope::from_request(&ResolveRequest {
        enable_package_registry_proxy: Some(enable),
        package_managers: pms.iter().map(|s| (*s).to_owned()).collect(),
        enable_cache_proxy: None,
    })
    .unwrap()
}

fn env_of(r: &Resolution) -> Vec<(String, String)> {
    r.package_managers
        .iter()
        .flat_map(|p| p.env.iter().map(|e| (e.name.clone(), e.value.clone())))
        .collect()
}

const NPM: &str = "https://nexus.svc/npm/";
const GO: &str = "https://nexus.svc/go/";

#[test]
fn allow_times_enable() {
    let table = [
        (Some("true"), true, true, Decision::Active),
        (Some("true"), false, false, Decision::UserOptedOut),
        (Some("false"), true, false, Decision::AdministratorOff),
        (Some("false"), false, false, Decision::AdministratorOff),
        (None, true, false, Decision::AdministratorOff),
        (Some(""), true, false, Decision::AdministratorOff),
        (Some("bogus"), true, false, Decision::AdministratorOff),
    ];
    for (allow, enable, active, decision) in table {
        let mut pairs = vec![("package-registry-proxy-npm-url", NPM)];
        if let Some(a) = allow {
            pairs.push(("allow-package-registry-proxy", a));
        }
        let r = snapshot(&pairs).resolution(&scope(enable, &[])).unwrap();
        assert_eq!(r.active, active, "{allow:?} {enable}");
        assert_eq!(r.decision(), decision, "{allow:?} {enable}");
        if active {
            assert_eq!(
                env_of(&r),
                [("HERMETO_NPM__PROXY_URL".to_owned(), NPM.to_owned())]
            );
        } else {
            assert!(
                r.package_managers.is_empty(),
                "nothing exported when inactive"
            );
        }
    }
}

#[test]
fn unset_enable_means_true() {
    let scope = Scope::from_request(&ResolveRequest::default()).unwrap();
    assert_eq!(scope, Scope::all());
}

#[test]
fn scope_limits_package_managers_and_their_problems() {
    let s = snapshot(&[
        ("allow-package-registry-proxy", "true"),
        ("package-registry-proxy-npm-url", NPM),
        ("package-registry-proxy-gomod-url", GO),
        (
            "package-registry-proxy-gomod-sum-url",
            "https://nexus.svc/gosum/",
        ),
        (
            "package-registry-proxy-pip-url",
            "https://user:pw@nexus.svc/pip/",
        ),
    ]);
    let all = s.resolution(&Scope::all()).unwrap();
    assert_eq!(
        all.package_managers
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["gomod", "gomod-sum", "npm"]
    );
    assert_eq!(all.problems.len(), 1);
    let gosum = &all.package_managers[1];
    assert_eq!(gosum.url, "https://nexus.svc/gosum/");
    assert!(gosum.env.is_empty(), "gomod-sum has no Hermeto variable");

    let npm_only = s.resolution(&scope(true, &["npm"])).unwrap();
    assert_eq!(
        env_of(&npm_only),
        [("HERMETO_NPM__PROXY_URL".to_owned(), NPM.to_owned())]
    );
    assert!(
        npm_only.problems.is_empty(),
        "pip's problem is out of scope"
    );

    let pip = s.resolution(&scope(true, &["pip", "cargo"])).unwrap();
    assert!(pip.package_managers.is_empty());
    assert_eq!(pip.problems[0].package_manager, "pip");
}

#[test]
fn global_problems_are_always_in_scope() {
    let s = snapshot(&[("allow-package-registry-proxy", "yes")]);
    let r = s.resolution(&scope(true, &["npm"])).unwrap();
    assert_eq!(r.problems.len(), 1);
    assert_eq!(r.problems[0].key, "allow-package-registry-proxy");
}

#[test]
fn invalid_scope_names_are_refused() {
    for bad in ["NPM", "", "npm;rm -rf", "go--mod"] {
        let request = ResolveRequest {
            package_managers: vec![bad.to_owned()],
            ..ResolveRequest::default()
        };
        assert!(Scope::from_request(&request).is_err(), "{bad:?}");
    }
}

#[test]
fn not_synced_has_no_resolution() {
    let s = Snapshot::not_synced(
        SourceDescription {
            kind: "file",
            location: "x".into(),
        },
        Policy::default(),
    );
    assert!(s.resolution(&Scope::all()).is_none());
    assert!(!s.is_synced());
}

#[test]
fn version_changes_exactly_with_content() {
    let base = [
        ("allow-package-registry-proxy", "true"),
        ("package-registry-proxy-npm-url", NPM),
    ];
    let a = snapshot(&base).resolution(&Scope::all()).unwrap();
    let mut other_rv = snapshot(&[base[0], base[1], ("unrelated", "x")]);
    other_rv.resource_version = Some("8".into());
    let b = other_rv.resolution(&Scope::all()).unwrap();
    assert_eq!(
        a.version, b.version,
        "unrelated keys and resourceVersion do not change it"
    );
    assert_eq!(b.source.as_ref().unwrap().resource_version, "8");
    assert_eq!(a.version.len(), 16);

    let c = snapshot(&[base[0], ("package-registry-proxy-npm-url", GO)])
        .resolution(&Scope::all())
        .unwrap();
    assert_ne!(a.version, c.version);
    let off = snapshot(&base).resolution(&scope(false, &[])).unwrap();
    assert_ne!(a.version, off.version);

    let mut missing = snapshot(&[]);
    missing.state = SourceState::Missing;
    let present_empty = snapshot(&[]).resolution(&Scope::all()).unwrap();
    let missing = missing.resolution(&Scope::all()).unwrap();
    assert_ne!(missing.version, present_empty.version, "missing is visible");
    assert_eq!(missing.decision(), Decision::AdministratorOff);
}

#[test]
fn status_lists_everything() {
    let mut s = snapshot(&[
        ("allow-package-registry-proxy", "true"),
        ("package-registry-proxy-npm-url", NPM),
        ("package-registry-proxy-pip-url", "ftp://x/"),
    ]);
    let now = SystemTime::now();
    s.failure = Some(SourceFailure {
        since: now - std::time::Duration::from_secs(30),
        error: "cannot read".into(),
    });
    let st = s.status(now);
    assert_eq!(st.source_kind, "file");
    assert_eq!(st.source_location, "cm.yaml");
    assert!(st.package_registry_proxy_allowed);
    assert_eq!(st.package_managers, ["npm"]);
    assert_eq!(st.problems.len(), 1);
    assert!(st.stale);
    assert_eq!(st.stale_seconds, 30);
    assert_eq!(st.source_error, "cannot read");
    assert_eq!(st.source.unwrap().resource_version, "7");
}

fn cache_scope(enable_cache_proxy: Option<bool>) -> Scope {
    Scope::from_request(&ResolveRequest {
        enable_cache_proxy,
        ..ResolveRequest::default()
    })
    .unwrap()
}

/// (enable-cache-proxy, allow-cache-proxy, http-proxy) → (decision, HTTP_PROXY) of the section,
/// if there is one.
type CacheRow<'a> = (
    Option<bool>,
    Option<&'a str>,
    Option<&'a str>,
    Option<(CacheProxyDecision, &'a str)>,
);

#[test]
fn cache_proxy_enable_times_allow_times_keys() {
    let squid = "squid.caching.svc.cluster.local:3128";
    // (enable, allow-cache-proxy, http-proxy) → (section?, decision, HTTP_PROXY)
    let table: &[CacheRow] = &[
        (None, None, None, None),
        (Some(false), None, None, None),
        (
            Some(true),
            None,
            None,
            Some((CacheProxyDecision::Active, squid)),
        ),
        (
            Some(true),
            Some(""),
            Some(""),
            Some((CacheProxyDecision::Active, squid)),
        ),
        (
            Some(true),
            Some("true"),
            Some("proxy.corp:8080"),
            Some((CacheProxyDecision::Active, "proxy.corp:8080")),
        ),
        (
            Some(true),
            Some("false"),
            None,
            Some((CacheProxyDecision::AdministratorOff, "")),
        ),
        (
            Some(true),
            Some("nope"),
            None,
            Some((CacheProxyDecision::AdministratorOff, "")),
        ),
        (
            Some(true),
            None,
            Some("user:pw@proxy:1"),
            Some((CacheProxyDecision::Invalid, "")),
        ),
    ];
    for (enable, allow, proxy, want) in table {
        let mut pairs = vec![("allow-package-registry-proxy", "true")];
        if let Some(a) = allow {
            pairs.push(("allow-cache-proxy", a));
        }
        if let Some(p) = proxy {
            pairs.push(("http-proxy", p));
        }
        let r = snapshot(&pairs).resolution(&cache_scope(*enable)).unwrap();
        let case = format!("{enable:?} {allow:?} {proxy:?}");
        assert!(r.active, "the package registry part is untouched: {case}");
        match (want, &r.cache_proxy) {
            (None, None) => {}
            (Some((decision, http_proxy)), Some(section)) => {
                assert_eq!(section.decision(), *decision, "{case}");
                assert_eq!(
                    section.active,
                    *decision == CacheProxyDecision::Active,
                    "{case}"
                );
                assert_eq!(section.http_proxy, *http_proxy, "{case}");
                let env: Vec<(&str, &str)> = section
                    .env
                    .iter()
                    .map(|e| (e.name.as_str(), e.value.as_str()))
                    .collect();
                if section.active {
                    assert_eq!(
                        env,
                        [
                            ("HTTP_PROXY", *http_proxy),
                            ("HTTPS_PROXY", *http_proxy),
                            ("NO_PROXY", "")
                        ],
                        "{case}"
                    );
                } else {
                    assert!(env.is_empty(), "{case}");
                }
                let problems = usize::from(allow == &Some("nope"))
                    + usize::from(proxy == &Some("user:pw@proxy:1"));
                assert_eq!(section.problems.len(), problems, "{case}");
                assert!(
                    r.problems.is_empty(),
                    "cache problems stay in their section: {case}"
                );
            }
            (want, got) => panic!("{case}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn cache_proxy_changes_do_not_touch_requests_without_it() {
    let before = snapshot(&[
        ("allow-package-registry-proxy", "true"),
        ("http-proxy", "a:1"),
    ]);
    let after = snapshot(&[
        ("allow-package-registry-proxy", "true"),
        ("http-proxy", "b:1"),
    ]);
    let plain = Scope::all();
    assert_eq!(
        before.resolution(&plain).unwrap().version,
        after.resolution(&plain).unwrap().version
    );
    let cached = cache_scope(Some(true));
    assert_ne!(
        before.resolution(&cached).unwrap().version,
        after.resolution(&cached).unwrap().version
    );
}
