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
        resolved: Some(Arc::new(resolve(&data))),
        state: SourceState::Synced,
        resource_version: Some("7".into()),
        ..Snapshot::not_synced(SourceDescription {
            kind: "file",
            location: "cm.yaml".into(),
        })
    }
}

fn scope(enable: bool, pms: &[&str]) -> Scope {
    Scope::from_request(&ResolveRequest {
        enable_package_registry_proxy: Some(enable),
        package_managers: pms.iter().map(|s| (*s).to_owned()).collect(),
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
            enable_package_registry_proxy: None,
            package_managers: vec![bad.to_owned()],
        };
        assert!(Scope::from_request(&request).is_err(), "{bad:?}");
    }
}

#[test]
fn not_synced_has_no_resolution() {
    let s = Snapshot::not_synced(SourceDescription {
        kind: "file",
        location: "x".into(),
    });
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
