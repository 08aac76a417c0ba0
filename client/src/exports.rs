//! Turns a server's answer into the variables to export, refusing anything the build must not
//! get: variables outside `HERMETO_[A-Z0-9_]+` (or, for the cache proxy, outside `HTTP_PROXY`,
//! `HTTPS_PROXY`, `NO_PROXY`), package managers outside the requested scope, and an answer whose
//! in-scope configuration is broken (fail closed).

use std::collections::{BTreeMap, BTreeSet};

use proxyconf_proto::{
    contract::is_hermeto_variable_name,
    v1::{CacheProxy, Decision, EnvVar, Problem, Resolution},
};

use crate::exit::Failure;

/// The variables to export, sorted by name.
pub type Variables = BTreeMap<String, String>;

/// The only variables the cache proxy section may set.
pub const CACHE_PROXY_VARIABLES: [&str; 3] = ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"];

/// The variables of `resolution` for a build using `scope` (all package managers when `None`),
/// with the cache proxy's when `cache_proxy` was requested.
pub fn variables(
    resolution: &Resolution,
    scope: Option<&BTreeSet<String>>,
    cache_proxy: bool,
) -> Result<Variables, Failure> {
    let mut variables = package_registry_variables(resolution, scope)?;
    if cache_proxy {
        let section = resolution.cache_proxy.as_ref().ok_or_else(|| {
            Failure::Other(
                "the server's answer has no cache proxy section: it is older than this client; \
                 upgrade proxyconf-server"
                    .to_owned(),
            )
        })?;
        for (name, value) in cache_proxy_variables(section)? {
            insert(&mut variables, name, value)?;
        }
    }
    Ok(variables)
}

/// The cache proxy's variables; fails closed on its problems, since the build asked for it.
fn cache_proxy_variables(section: &CacheProxy) -> Result<Variables, Failure> {
    if !section.problems.is_empty() {
        let problems: Vec<&Problem> = section.problems.iter().collect();
        return Err(Failure::Misconfigured(format!(
            "the OCI cache proxy configuration is invalid: {}. Ask the cluster administrator to \
             fix the ConfigMap konflux-info/cluster-config, or set enable-cache-proxy to false",
            describe(&problems)
        )));
    }
    let mut variables = Variables::new();
    if !section.active {
        return Ok(variables);
    }
    for EnvVar { name, value } in &section.env {
        if !CACHE_PROXY_VARIABLES.contains(&name.as_str()) {
            return Err(refuse(name));
        }
        insert(&mut variables, name.clone(), value.clone())?;
    }
    Ok(variables)
}

/// The package registry proxy's variables.
fn package_registry_variables(
    resolution: &Resolution,
    scope: Option<&BTreeSet<String>>,
) -> Result<Variables, Failure> {
    let in_scope = |name: &str| scope.is_none_or(|s| s.contains(name));
    let decision = resolution.decision();
    if decision == Decision::UserOptedOut {
        return Ok(Variables::new());
    }
    // A problem with a global key (the administrator's switch) means nobody can tell whether the
    // proxy should apply: fail rather than silently build without it.
    let blocking: Vec<&Problem> = resolution
        .problems
        .iter()
        .filter(|p| {
            p.package_manager.is_empty() || (resolution.active && in_scope(&p.package_manager))
        })
        .collect();
    if !blocking.is_empty() {
        return Err(Failure::Misconfigured(misconfigured_message(&blocking)));
    }
    if !resolution.active {
        return Ok(Variables::new());
    }
    let mut variables = Variables::new();
    for pm in resolution
        .package_managers
        .iter()
        .filter(|p| in_scope(&p.name))
    {
        for var in &pm.env {
            if !is_hermeto_variable_name(&var.name) {
                return Err(refuse(&var.name));
            }
            insert(&mut variables, var.name.clone(), var.value.clone())?;
        }
    }
    Ok(variables)
}

fn refuse(name: &str) -> Failure {
    Failure::Other(format!(
        "refusing the server's answer: it asks to export {:?}, which this client does not \
         accept; check which server --server points at",
        name.chars().take(64).collect::<String>()
    ))
}

/// Adds a variable, refusing values that cannot be in an environment and contradictions.
fn insert(variables: &mut Variables, name: String, value: String) -> Result<(), Failure> {
    if value.contains('\0') {
        return Err(Failure::Other(format!(
            "refusing the server's answer: the value of {name} contains a NUL byte"
        )));
    }
    match variables.get(&name) {
        Some(old) if *old != value => Err(Failure::Other(format!(
            "refusing the server's answer: it gives {name} two different values"
        ))),
        _ => {
            variables.insert(name, value);
            Ok(())
        }
    }
}

fn describe(problems: &[&Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}={:?}: {}", p.key, p.value, p.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

fn misconfigured_message(problems: &[&Problem]) -> String {
    format!(
        "the package registry proxy configuration is invalid, so the build stops instead of \
         fetching from upstream: {}. Ask the cluster administrator to fix the ConfigMap \
         konflux-info/cluster-config, or opt out with --enable-package-registry-proxy=false",
        describe(problems)
    )
}

#[cfg(test)]
mod tests {
    use proxyconf_proto::v1::{EnvVar, PackageManager, ProblemCode};

    use super::*;

    fn pm(name: &str, var: Option<&str>) -> PackageManager {
        PackageManager {
            name: name.into(),
            url: format!("https://nexus/{name}/"),
            env: var
                .map(|v| EnvVar {
                    name: v.into(),
                    value: format!("https://nexus/{name}/"),
                })
                .into_iter()
                .collect(),
        }
    }

    fn answer(decision: Decision, pms: Vec<PackageManager>, problems: Vec<Problem>) -> Resolution {
        Resolution {
            active: decision == Decision::Active,
            decision: decision.into(),
            package_managers: pms,
            problems,
            ..Resolution::default()
        }
    }

    fn problem(key: &str, pm: &str) -> Problem {
        Problem {
            key: key.into(),
            value: "https://***@nexus/".into(),
            reason: "URL contains credentials".into(),
            package_manager: pm.into(),
            code: ProblemCode::InvalidUrl.into(),
        }
    }

    #[test]
    fn active_exports_hermeto_variables_only() {
        let r = answer(
            Decision::Active,
            vec![
                pm("npm", Some("HERMETO_NPM__PROXY_URL")),
                pm("gomod-sum", None),
            ],
            vec![],
        );
        let vars = variables(&r, None, false).unwrap();
        assert_eq!(vars.len(), 1);
        assert_eq!(vars["HERMETO_NPM__PROXY_URL"], "https://nexus/npm/");
    }

    #[test]
    fn hostile_names_are_refused() {
        for name in ["PATH", "LD_PRELOAD", "HERMETO_X;rm", "BASH_ENV"] {
            let r = answer(Decision::Active, vec![pm("npm", Some(name))], vec![]);
            let err = variables(&r, None, false).unwrap_err();
            assert!(matches!(err, Failure::Other(_)), "{name}");
            assert!(err.to_string().contains("refusing"), "{err}");
        }
    }

    #[test]
    fn scope_is_enforced_client_side_too() {
        let r = answer(
            Decision::Active,
            vec![
                pm("npm", Some("HERMETO_NPM__PROXY_URL")),
                pm("pip", Some("HERMETO_PIP__PROXY_URL")),
            ],
            vec![problem("package-registry-proxy-cargo-url", "cargo")],
        );
        let scope: BTreeSet<String> = ["pip".to_owned()].into();
        let vars = variables(&r, Some(&scope), false).unwrap();
        assert_eq!(vars.keys().collect::<Vec<_>>(), ["HERMETO_PIP__PROXY_URL"]);
        assert!(matches!(
            variables(&r, None, false),
            Err(Failure::Misconfigured(_))
        ));
    }

    fn cache(active: bool, env: &[(&str, &str)], problems: Vec<Problem>) -> CacheProxy {
        CacheProxy {
            active,
            env: env
                .iter()
                .map(|(n, v)| EnvVar {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            problems,
            ..CacheProxy::default()
        }
    }

    #[test]
    fn cache_proxy_variables_only_when_asked_and_only_the_three_names() {
        let squid = "squid.caching.svc.cluster.local:3128";
        let mut r = answer(Decision::UserOptedOut, vec![], vec![]);
        r.cache_proxy = Some(cache(
            true,
            &[
                ("HTTP_PROXY", squid),
                ("HTTPS_PROXY", squid),
                ("NO_PROXY", ".svc"),
            ],
            vec![],
        ));
        assert!(variables(&r, None, false).unwrap().is_empty());
        let vars = variables(&r, None, true).unwrap();
        assert_eq!(
            vars.keys().collect::<Vec<_>>(),
            ["HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"]
        );

        r.cache_proxy = Some(cache(true, &[("LD_PRELOAD", "/evil.so")], vec![]));
        assert!(matches!(variables(&r, None, true), Err(Failure::Other(_))));
        r.cache_proxy = Some(cache(true, &[("HERMETO_NPM__PROXY_URL", "x")], vec![]));
        assert!(matches!(variables(&r, None, true), Err(Failure::Other(_))));

        r.cache_proxy = Some(cache(false, &[], vec![problem("http-proxy", "")]));
        let err = variables(&r, None, true).unwrap_err();
        assert!(matches!(err, Failure::Misconfigured(_)));
        assert!(err.to_string().contains("http-proxy"), "{err}");
        assert!(
            variables(&r, None, false).is_ok(),
            "not asked: not blocking"
        );

        r.cache_proxy = None;
        assert!(matches!(variables(&r, None, true), Err(Failure::Other(_))));
    }

    #[test]
    fn problems_fail_closed_only_when_they_apply() {
        let bad_npm = problem("package-registry-proxy-npm-url", "npm");
        let active = answer(Decision::Active, vec![], vec![bad_npm.clone()]);
        let err = variables(&active, None, false).unwrap_err();
        assert!(matches!(err, Failure::Misconfigured(_)));
        assert!(err.to_string().contains("package-registry-proxy-npm-url"));

        let off = answer(Decision::AdministratorOff, vec![], vec![bad_npm.clone()]);
        assert!(variables(&off, None, false).unwrap().is_empty());
        let opted_out = answer(Decision::UserOptedOut, vec![], vec![bad_npm]);
        assert!(variables(&opted_out, None, false).unwrap().is_empty());

        let bad_switch = problem("allow-package-registry-proxy", "");
        let off = answer(Decision::AdministratorOff, vec![], vec![bad_switch.clone()]);
        assert!(matches!(
            variables(&off, None, false),
            Err(Failure::Misconfigured(_))
        ));
        let opted_out = answer(Decision::UserOptedOut, vec![], vec![bad_switch]);
        assert!(variables(&opted_out, None, false).unwrap().is_empty());
    }
}
