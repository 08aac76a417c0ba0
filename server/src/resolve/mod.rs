//! ConfigMap data → resolved package registry proxy settings (docs/configuration.md §2–§4).
//!
//! Pure: no I/O, no clock, no request. The server resolves once per ConfigMap change into an
//! immutable [`Resolved`]; each request then only selects from it (see `snapshot`).

pub mod cache_proxy;
mod dns;
pub mod host_allowlist;
pub mod package_manager;
pub mod proxy_url;

use std::collections::BTreeMap;

use proxyconf_proto::contract::parse_go_bool;

/// The administrator's switch (ADR 0064). Missing or empty means false.
pub const ALLOW_KEY: &str = proxyconf_proto::contract::ALLOW_PACKAGE_REGISTRY_PROXY_KEY;

const URL_KEY_PREFIX: &str = "package-registry-proxy-";
const URL_KEY_SUFFIX: &str = "-url";

/// What the server's operator decides, applied to every ConfigMap state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Defaults for the cache proxy keys.
    pub cache_proxy: cache_proxy::CacheProxyDefaults,
    /// The proxy hosts package registry URLs may point at; `None` accepts every valid host.
    pub allowed_proxy_hosts: Option<host_allowlist::HostAllowlist>,
}

/// The settings of one ConfigMap state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// `allow-package-registry-proxy` parsed; false when missing, empty or invalid.
    pub allowed: bool,
    /// Every package manager with a valid URL, by name (the `<pm>` of its key).
    pub package_managers: BTreeMap<String, PackageManagerSetting>,
    /// Every rejected package registry proxy value, sorted by key.
    pub problems: Vec<Problem>,
    /// The OCI cache proxy settings, with their own problems.
    pub cache_proxy: cache_proxy::CacheProxy,
}

/// A package manager routed through the proxy (its name is the key it is stored under).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageManagerSetting {
    /// The validated URL, as configured.
    pub url: String,
    /// The Hermeto variable to export it as; `None` for `gomod-sum`.
    pub hermeto_variable: Option<String>,
}

/// A rejected ConfigMap value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The ConfigMap key.
    pub key: String,
    /// The value, redacted (see [`proxy_url::redact`]).
    pub value: String,
    /// What is wrong and what to do.
    pub reason: String,
    /// The package manager concerned; `None` when the problem concerns all of them.
    pub package_manager: Option<String>,
    /// The class of problem.
    pub code: ProblemCode,
}

/// The classes of configuration problem, as the API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemCode {
    InvalidBoolean,
    InvalidUrl,
    InvalidPackageManager,
    InvalidProxy,
    InvalidNoProxy,
    HostNotAllowed,
}

/// Resolves the `data` of the ConfigMap. Keys that are neither a switch nor a proxy key are
/// ignored; an empty URL means "not proxied", exactly like a missing key.
pub fn resolve(data: &BTreeMap<String, String>, policy: &Policy) -> Resolved {
    let mut resolved = Resolved {
        cache_proxy: cache_proxy::resolve(data, &policy.cache_proxy),
        ..Resolved::default()
    };

    if let Some(value) = data.get(ALLOW_KEY).filter(|v| !v.is_empty()) {
        match parse_go_bool(value) {
            Some(allowed) => resolved.allowed = allowed,
            None => resolved.problems.push(Problem {
                key: ALLOW_KEY.to_owned(),
                value: proxy_url::redact(value),
                reason: "not a boolean (use true or false); the proxy is treated as not allowed \
                         until this is fixed"
                    .to_owned(),
                package_manager: None,
                code: ProblemCode::InvalidBoolean,
            }),
        }
    }

    // Collected, then built in one go: keys arrive almost sorted, which a bulk build exploits.
    let mut settings = Vec::new();
    for (key, value) in data {
        let Some(name) = key
            .strip_prefix(URL_KEY_PREFIX)
            .and_then(|rest| rest.strip_suffix(URL_KEY_SUFFIX))
        else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        if !package_manager::is_valid_name(name) {
            resolved.problems.push(Problem {
                key: key.clone(),
                value: proxy_url::redact(value),
                reason: format!(
                    "{name:?} is not a package manager name (lowercase letters, digits and single \
                     '-', starting with a letter), so this URL is not used"
                ),
                package_manager: None,
                code: ProblemCode::InvalidPackageManager,
            });
            continue;
        }
        let checked =
            proxy_url::validate(name, value).and_then(|url| match &policy.allowed_proxy_hosts {
                Some(allowlist) if !allowlist.allows(&url.host, Some(url.port)) => Err(
                    proxy_url::UrlRejection::HostNotAllowed(allowlist.to_string()),
                ),
                _ => Ok(()),
            });
        match checked {
            Ok(()) => settings.push((
                name.to_owned(),
                PackageManagerSetting {
                    url: value.clone(),
                    hermeto_variable: package_manager::hermeto_variable(name),
                },
            )),
            Err(rejection) => resolved.problems.push(Problem {
                key: key.clone(),
                value: proxy_url::redact(value),
                reason: format!("{rejection}; {name} is not proxied until this is fixed"),
                package_manager: Some(name.to_owned()),
                code: match rejection {
                    proxy_url::UrlRejection::HostNotAllowed(_) => ProblemCode::HostNotAllowed,
                    _ => ProblemCode::InvalidUrl,
                },
            }),
        }
    }
    resolved.package_managers = settings.into_iter().collect();
    resolved.problems.sort_by(|a, b| a.key.cmp(&b.key));
    resolved
}

#[cfg(test)]
mod tests;
