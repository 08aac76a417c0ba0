//! Turns a server's answer into the variables to export, refusing anything the build must not
//! get: variables outside `HERMETO_[A-Z0-9_]+`, package managers outside the requested scope, and
//! an answer whose in-scope configuration is broken (fail closed).

use std::collections::{BTreeMap, BTreeSet};

use proxyconf_proto::{
    contract::is_hermeto_variable_name,
    v1::{Decision, Problem, Resolution},
};

use crate::exit::Failure;

/// The variables to export, sorted by name.
pub type Variables = BTreeMap<String, String>;

/// The variables of `resolution` for a build using `scope` (all package managers when `None`).
pub fn variables(
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
                return Err(Failure::Other(format!(
                    "refusing the server's answer: it asks to export {:?}, which is not a \
                     HERMETO_ variable; check which server --server points at",
                    var.name.chars().take(64).collect::<String>()
                )));
            }
            if var.value.contains('\0') {
                return Err(Failure::Other(format!(
                    "refusing the server's answer: the value of {} contains a NUL byte",
                    var.name
                )));
            }
            if let Some(old) = variables.insert(var.name.clone(), var.value.clone())
                && old != var.value
            {
                return Err(Failure::Other(format!(
                    "refusing the server's answer: it gives {} two different values",
                    var.name
                )));
            }
        }
    }
    Ok(variables)
}

fn misconfigured_message(problems: &[&Problem]) -> String {
    let each: Vec<String> = problems
        .iter()
        .map(|p| format!("{}={:?}: {}", p.key, p.value, p.reason))
        .collect();
    format!(
        "the package registry proxy configuration is invalid, so the build stops instead of \
         fetching from upstream: {}. Ask the cluster administrator to fix the ConfigMap \
         konflux-info/cluster-config, or opt out with --enable-package-registry-proxy=false",
        each.join("; ")
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
        let vars = variables(&r, None).unwrap();
        assert_eq!(vars.len(), 1);
        assert_eq!(vars["HERMETO_NPM__PROXY_URL"], "https://nexus/npm/");
    }

    #[test]
    fn hostile_names_are_refused() {
        for name in ["PATH", "LD_PRELOAD", "HERMETO_X;rm", "BASH_ENV"] {
            let r = answer(Decision::Active, vec![pm("npm", Some(name))], vec![]);
            let err = variables(&r, None).unwrap_err();
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
        let vars = variables(&r, Some(&scope)).unwrap();
        assert_eq!(vars.keys().collect::<Vec<_>>(), ["HERMETO_PIP__PROXY_URL"]);
        assert!(matches!(
            variables(&r, None),
            Err(Failure::Misconfigured(_))
        ));
    }

    #[test]
    fn problems_fail_closed_only_when_they_apply() {
        let bad_npm = problem("package-registry-proxy-npm-url", "npm");
        let active = answer(Decision::Active, vec![], vec![bad_npm.clone()]);
        let err = variables(&active, None).unwrap_err();
        assert!(matches!(err, Failure::Misconfigured(_)));
        assert!(err.to_string().contains("package-registry-proxy-npm-url"));

        let off = answer(Decision::AdministratorOff, vec![], vec![bad_npm.clone()]);
        assert!(variables(&off, None).unwrap().is_empty());
        let opted_out = answer(Decision::UserOptedOut, vec![], vec![bad_npm]);
        assert!(variables(&opted_out, None).unwrap().is_empty());

        let bad_switch = problem("allow-package-registry-proxy", "");
        let off = answer(Decision::AdministratorOff, vec![], vec![bad_switch.clone()]);
        assert!(matches!(
            variables(&off, None),
            Err(Failure::Misconfigured(_))
        ));
        let opted_out = answer(Decision::UserOptedOut, vec![], vec![bad_switch]);
        assert!(variables(&opted_out, None).unwrap().is_empty());
    }
}
