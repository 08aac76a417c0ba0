//! Turns a server's answer into the variables to export, refusing anything the build must not
//! get: variables outside `HERMETO_[A-Z0-9_]+` (or, for the cache proxy, outside `HTTP_PROXY`,
//! `HTTPS_PROXY`, `NO_PROXY`), package managers outside the requested scope, and an answer whose
//! in-scope configuration is broken (fail closed).

use std::collections::{BTreeMap, BTreeSet};

use proxyconf_proto::{
    contract::{
        ALLOW_CACHE_PROXY_KEY, ALLOW_PACKAGE_REGISTRY_PROXY_KEY, hermeto_variable,
        is_hermeto_variable_name, is_valid_package_manager_name,
    },
    v1::{CacheProxy, CacheProxyDecision, Decision, EnvVar, Problem, Resolution},
};

use crate::exit::Failure;

/// The variables to export, sorted by name.
pub type Variables = BTreeMap<String, String>;

/// The only variables the cache proxy section may set.
pub const CACHE_PROXY_VARIABLES: [&str; 3] = ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"];

/// What the build asked for.
#[derive(Debug, Clone, Default)]
pub struct Wanted<'a> {
    /// The pipeline's `enable-package-registry-proxy`.
    pub package_registry_proxy: bool,
    /// Only these package managers; `None` for all.
    pub scope: Option<&'a BTreeSet<String>>,
    /// The pipeline's `enable-cache-proxy`.
    pub cache_proxy: bool,
}

/// The variables of `resolution` for a build that asked for `wanted`.
pub fn variables(resolution: &Resolution, wanted: &Wanted<'_>) -> Result<Variables, Failure> {
    let mut variables = if wanted.package_registry_proxy {
        package_registry_variables(resolution, wanted.scope)?
    } else {
        // The build opted out (ADR 0064 gives it that right): nothing to export, nothing to fail.
        Variables::new()
    };
    let cache_proxy = wanted.cache_proxy;
    if cache_proxy {
        let section = resolution.cache_proxy.as_ref().ok_or_else(|| {
            Failure::Other(
                "the server's answer has no cache proxy section: it is older than this client; \
                 upgrade proxyconf-server"
                    .to_owned(),
            )
        })?;
        for (name, value) in cache_proxy_variables(section, &source_name(resolution))? {
            insert(&mut variables, name, value)?;
        }
    }
    Ok(variables)
}

/// The cache proxy's variables. The build asked for it, so it fails closed when the settings are
/// invalid or the administrator's switch is unreadable; problems with values the administrator
/// does not use (the cache proxy switched off) do not block.
fn cache_proxy_variables(section: &CacheProxy, source: &str) -> Result<Variables, Failure> {
    let blocking: Vec<&Problem> = section
        .problems
        .iter()
        .filter(|p| {
            section.decision() == CacheProxyDecision::Invalid || p.key == ALLOW_CACHE_PROXY_KEY
        })
        .collect();
    if !blocking.is_empty() {
        return Err(Failure::Misconfigured(format!(
            "the OCI cache proxy configuration is invalid: {}. Ask the cluster administrator to \
             fix {source}, or set enable-cache-proxy to false",
            describe(&blocking)
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
    // An unreadable administrator's switch means nobody can tell whether the proxy should apply:
    // fail rather than silently build without it. Other problems block only when the proxy
    // applies: those of the package managers in scope, and those that cannot be attributed to a
    // package manager (a misspelt key might be this build's).
    let blocking: Vec<&Problem> = resolution
        .problems
        .iter()
        .filter(|p| {
            p.key == ALLOW_PACKAGE_REGISTRY_PROXY_KEY
                || (resolution.active
                    && (p.package_manager.is_empty() || in_scope(&p.package_manager)))
        })
        .collect();
    if !blocking.is_empty() {
        return Err(Failure::Misconfigured(misconfigured_message(
            &blocking,
            &source_name(resolution),
        )));
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
        // Exactly the variable the contract names for this package manager, or none for
        // gomod-sum: a server cannot route one package manager's variable through another.
        let expected = is_valid_package_manager_name(&pm.name)
            .then(|| hermeto_variable(&pm.name))
            .flatten();
        for var in &pm.env {
            if !is_hermeto_variable_name(&var.name) || expected.as_deref() != Some(&var.name) {
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
        .map(|p| format!("{}={:?}: {}", p.key, p.value, one_line(&p.reason)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn misconfigured_message(problems: &[&Problem], source: &str) -> String {
    format!(
        "the package registry proxy configuration is invalid, so the build stops instead of \
         fetching from upstream: {}. Ask the cluster administrator to fix {source}, or opt out \
         with --enable-package-registry-proxy=false",
        describe(problems)
    )
}

/// What the answer came from, for messages: `kubernetes konflux-info/cluster-config`, `file
/// PATH`, or, from a server older than this client, the default ConfigMap.
fn source_name(resolution: &Resolution) -> String {
    match resolution.source.as_ref().map(|s| s.location.as_str()) {
        Some(location) if !location.is_empty() => one_line(location),
        _ => "the ConfigMap konflux-info/cluster-config".to_owned(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use proxyconf_proto::v1::{EnvVar, PackageManager, ProblemCode};

    use super::*;

    fn all() -> Wanted<'static> {
        Wanted {
            package_registry_proxy: true,
            scope: None,
            cache_proxy: false,
        }
    }

    fn with_cache() -> Wanted<'static> {
        Wanted {
            cache_proxy: true,
            ..all()
        }
    }

    fn opted_out() -> Wanted<'static> {
        Wanted {
            package_registry_proxy: false,
            ..all()
        }
    }

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
        let vars = variables(&r, &all()).unwrap();
        assert_eq!(vars.len(), 1);
        assert_eq!(vars["HERMETO_NPM__PROXY_URL"], "https://nexus/npm/");
    }

    #[test]
    fn hostile_names_are_refused() {
        for name in ["PATH", "LD_PRELOAD", "HERMETO_X;rm", "BASH_ENV"] {
            let r = answer(Decision::Active, vec![pm("npm", Some(name))], vec![]);
            let err = variables(&r, &all()).unwrap_err();
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
        let vars = variables(
            &r,
            &Wanted {
                scope: Some(&scope),
                ..all()
            },
        )
        .unwrap();
        assert_eq!(vars.keys().collect::<Vec<_>>(), ["HERMETO_PIP__PROXY_URL"]);
        assert!(matches!(
            variables(&r, &all()),
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
        assert!(variables(&r, &all()).unwrap().is_empty());
        let vars = variables(&r, &with_cache()).unwrap();
        assert_eq!(
            vars.keys().collect::<Vec<_>>(),
            ["HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"]
        );

        r.cache_proxy = Some(cache(true, &[("LD_PRELOAD", "/evil.so")], vec![]));
        assert!(matches!(
            variables(&r, &with_cache()),
            Err(Failure::Other(_))
        ));
        r.cache_proxy = Some(cache(true, &[("HERMETO_NPM__PROXY_URL", "x")], vec![]));
        assert!(matches!(
            variables(&r, &with_cache()),
            Err(Failure::Other(_))
        ));

        let mut invalid = cache(false, &[], vec![problem("http-proxy", "")]);
        invalid.decision = CacheProxyDecision::Invalid.into();
        r.cache_proxy = Some(invalid);
        let err = variables(&r, &with_cache()).unwrap_err();
        assert!(matches!(err, Failure::Misconfigured(_)));
        assert!(err.to_string().contains("http-proxy"), "{err}");
        assert!(variables(&r, &all()).is_ok(), "not asked: not blocking");

        // Values the administrator does not use block nobody; an unreadable switch does.
        let mut off = cache(false, &[], vec![problem("http-proxy", "")]);
        off.decision = CacheProxyDecision::AdministratorOff.into();
        r.cache_proxy = Some(off.clone());
        assert!(variables(&r, &with_cache()).unwrap().is_empty());
        off.problems = vec![problem("allow-cache-proxy", "")];
        r.cache_proxy = Some(off);
        assert!(matches!(
            variables(&r, &with_cache()),
            Err(Failure::Misconfigured(_))
        ));

        r.cache_proxy = None;
        assert!(matches!(
            variables(&r, &with_cache()),
            Err(Failure::Other(_))
        ));
    }

    #[test]
    fn each_package_manager_gets_only_its_own_variable() {
        let swapped = answer(
            Decision::Active,
            vec![pm("pip", Some("HERMETO_GOMOD__PROXY_URL"))],
            vec![],
        );
        assert!(matches!(
            variables(&swapped, &all()),
            Err(Failure::Other(_))
        ));
        let gosum = answer(
            Decision::Active,
            vec![pm("gomod-sum", Some("HERMETO_GOMOD_SUM__PROXY_URL"))],
            vec![],
        );
        assert!(matches!(variables(&gosum, &all()), Err(Failure::Other(_))));
        let future = answer(
            Decision::Active,
            vec![pm("conda-forge", Some("HERMETO_CONDA_FORGE__PROXY_URL"))],
            vec![],
        );
        assert_eq!(variables(&future, &all()).unwrap().len(), 1);
    }

    #[test]
    fn problems_fail_closed_only_when_they_apply() {
        let bad_npm = problem("package-registry-proxy-npm-url", "npm");
        let active = answer(Decision::Active, vec![], vec![bad_npm.clone()]);
        let err = variables(&active, &all()).unwrap_err();
        assert!(matches!(err, Failure::Misconfigured(_)));
        assert!(err.to_string().contains("package-registry-proxy-npm-url"));

        let off = answer(Decision::AdministratorOff, vec![], vec![bad_npm.clone()]);
        assert!(variables(&off, &all()).unwrap().is_empty());
        let opted_out_answer = answer(Decision::UserOptedOut, vec![], vec![bad_npm]);
        assert!(variables(&opted_out_answer, &all()).unwrap().is_empty());

        let bad_switch = problem("allow-package-registry-proxy", "");
        let off = answer(Decision::AdministratorOff, vec![], vec![bad_switch.clone()]);
        assert!(matches!(
            variables(&off, &all()),
            Err(Failure::Misconfigured(_))
        ));
        // The server answers ADMINISTRATOR_OFF whatever the request; a build that opted out is
        // never blocked.
        assert!(variables(&off, &opted_out()).unwrap().is_empty());

        // A key that names no valid package manager blocks only while the proxy applies.
        let misspelt = problem("package-registry-proxy-NPM-url", "");
        let off = answer(Decision::AdministratorOff, vec![], vec![misspelt.clone()]);
        assert!(variables(&off, &all()).unwrap().is_empty());
        let active = answer(Decision::Active, vec![], vec![misspelt]);
        assert!(matches!(
            variables(&active, &all()),
            Err(Failure::Misconfigured(_))
        ));
    }
}
