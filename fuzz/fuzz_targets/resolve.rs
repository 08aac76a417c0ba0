//! A whole ConfigMap → resolution → answer → what the client exports: `resolve::resolve`, the
//! snapshot the server builds from a source event (`state::apply`), `Snapshot::resolution` for a
//! request, then the client's `exports::variables` and shell rendering.
//!
//! Input: lines of text, `key=value` entries of the ConfigMap (split at the first `=`), except
//! for lines starting with `!`, which set the operator's policy and the request:
//! `!allowed-proxy-hosts=LIST`, `!default-http-proxy=VALUE`, `!default-no-proxy=VALUE` (ignored
//! when invalid, as the server refuses to start with them), `!enable=BOOL`, `!cache=BOOL` and
//! `!pm=NAME` (repeated: the request's package managers).
//!
//! Properties:
//! - resolution: the switch is exactly Go's `ParseBool` of the value; every exported package
//!   manager has a valid name, a URL that validates (and that the allowlist allows) exactly as
//!   configured, and the contract's Hermeto variable; every non-empty URL key is exported or
//!   reported, never both, never dropped; problems are sorted, show the redacted value, and never
//!   repeat credentials; cache proxy settings validate;
//! - answer: active exactly when allowed and not opted out; only package managers in scope; the
//!   version depends on the content only;
//! - client: an answer without problems is always accepted; whatever the client exports
//!   validates on the server's rules; its `export` lines parse back (shell words) to the values.
#![no_main]

use std::{
    collections::{BTreeMap, BTreeSet},
    time::SystemTime,
};

use libfuzzer_sys::fuzz_target;
use proxyconf::{
    exports::{self, CACHE_PROXY_VARIABLES, Wanted},
    render::{Format, render},
};
use proxyconf_proto::{
    contract::{hermeto_variable, is_hermeto_variable_name, parse_go_bool},
    v1::ResolveRequest,
};
use proxyconf_server::{
    resolve::{
        self, ALLOW_KEY, Policy, cache_proxy, host_allowlist::HostAllowlist, package_manager,
        proxy_url,
    },
    snapshot::{Scope, Snapshot},
    source::{ConfigMapState, SourceDescription, SourceEvent},
    state,
};

/// The configuration and request a fuzz input describes.
#[derive(Default)]
struct Input {
    data: BTreeMap<String, String>,
    allowlist: Option<String>,
    default_http_proxy: Option<String>,
    default_no_proxy: Option<String>,
    request: ResolveRequest,
}

impl Input {
    fn new(text: &str) -> Self {
        let mut input = Self::default();
        for line in text.split('\n') {
            let (key, value) = line.split_once('=').unwrap_or((line, ""));
            let flag = |v: &str| v.parse::<bool>().ok();
            match key {
                "!allowed-proxy-hosts" => input.allowlist = Some(value.to_owned()),
                "!default-http-proxy" => input.default_http_proxy = Some(value.to_owned()),
                "!default-no-proxy" => input.default_no_proxy = Some(value.to_owned()),
                "!enable" => input.request.enable_package_registry_proxy = flag(value),
                "!cache" => input.request.enable_cache_proxy = flag(value),
                "!pm" => input.request.package_managers.push(value.to_owned()),
                key => {
                    input.data.insert(key.to_owned(), value.to_owned());
                }
            }
        }
        input
    }
}

fn url_key(name: &str) -> String {
    format!("package-registry-proxy-{name}-url")
}

/// The password in `value` (`user:password@`, between `://` or the start and the last `@`), when
/// distinctive enough to look for: six or more letters and digits, with both, found nowhere else
/// in the value (no message text has such a word).
fn secret(value: &str) -> Option<&str> {
    let at = value.rfind('@')?;
    let start = value[..at].find("://").map_or(0, |i| i + 3);
    let (_, password) = value[start..at].split_once(':')?;
    let distinctive = password.len() >= 6
        && password.bytes().all(|b| b.is_ascii_alphanumeric())
        && password.bytes().any(|b| b.is_ascii_digit())
        && password.bytes().any(|b| b.is_ascii_alphabetic());
    let elsewhere = value[at..].contains(password) || value[..start].contains(password);
    (distinctive && !elsewhere).then_some(password)
}

fuzz_target!(|text: &str| {
    let input = Input::new(text);
    let data = input.data;
    let mut policy = Policy {
        allowed_proxy_hosts: input
            .allowlist
            .as_deref()
            .and_then(|l| HostAllowlist::parse(l).ok()),
        ..Policy::default()
    };
    let defaults = cache_proxy::CacheProxyDefaults {
        http_proxy: input
            .default_http_proxy
            .clone()
            .unwrap_or(policy.cache_proxy.http_proxy.clone()),
        no_proxy: input.default_no_proxy.clone().unwrap_or_default(),
    };
    // The server refuses to start with invalid defaults.
    if defaults.validate().is_ok() {
        policy.cache_proxy = defaults;
    }

    let resolved = resolve::resolve(&data, &policy);
    check_resolved(&data, &policy, &resolved);

    // The snapshot the server builds from this state, and the answer to the request.
    let request = input.request;
    let Ok(scope) = Scope::from_request(&request) else {
        return;
    };
    let observed = || {
        state::apply(
            &Snapshot::not_synced(
                SourceDescription {
                    kind: "file",
                    location: "cluster-config.yaml".into(),
                },
                policy.clone(),
            ),
            SourceEvent::Observed(ConfigMapState::Present {
                data: data.clone(),
                resource_version: Some("1".into()),
            }),
            SystemTime::UNIX_EPOCH,
        )
    };
    let snapshot = observed();
    assert_eq!(snapshot.resolved.as_deref(), Some(&resolved));
    let answer = snapshot
        .resolution(&scope)
        .expect("a synced snapshot answers");
    let in_scope = |name: &str| {
        scope
            .package_managers
            .as_ref()
            .is_none_or(|s| s.contains(name))
    };
    assert_eq!(answer.active, resolved.allowed && scope.enable);
    if !answer.active {
        assert!(answer.package_managers.is_empty());
    }
    for pm in &answer.package_managers {
        assert!(in_scope(&pm.name), "{} is out of scope", pm.name);
        assert_eq!(resolved.package_managers[&pm.name].url, pm.url);
    }
    for problem in &answer.problems {
        assert!(problem.package_manager.is_empty() || in_scope(&problem.package_manager));
    }
    assert_eq!(answer.cache_proxy.is_some(), scope.enable_cache_proxy);
    let again = observed().resolution(&scope).unwrap();
    assert_eq!(
        answer, again,
        "the same content, the same answer and version"
    );

    // What the client makes of the answer.
    let wanted = Wanted {
        package_registry_proxy: scope.enable,
        scope: scope.package_managers.as_ref(),
        cache_proxy: scope.enable_cache_proxy,
    };
    let exported = exports::variables(&answer, &wanted);
    let problem_free = resolved.problems.is_empty() && resolved.cache_proxy.problems.is_empty();
    if problem_free {
        assert!(
            exported.is_ok(),
            "the client refuses a problem-free answer: {:?}\n{answer:?}",
            exported.err()
        );
    }
    let Ok(variables) = exported else {
        return;
    };
    check_exported(&policy, &answer, &variables);
});

fn check_resolved(data: &BTreeMap<String, String>, policy: &Policy, resolved: &resolve::Resolved) {
    let allow = data.get(ALLOW_KEY).map_or("", String::as_str);
    assert_eq!(resolved.allowed, parse_go_bool(allow) == Some(true));
    for (name, setting) in &resolved.package_managers {
        assert!(package_manager::is_valid_name(name), "{name:?}");
        assert_eq!(data.get(&url_key(name)), Some(&setting.url));
        let target = proxy_url::validate(name, &setting.url).expect("an exported URL validates");
        if let Some(list) = &policy.allowed_proxy_hosts {
            assert!(
                list.allows(&target.host, Some(target.port)),
                "{}",
                setting.url
            );
        }
        assert_eq!(setting.hermeto_variable, hermeto_variable(name));
        if let Some(variable) = &setting.hermeto_variable {
            assert!(is_hermeto_variable_name(variable), "{variable}");
        }
    }
    for (key, value) in data {
        let Some(pm) = key
            .strip_prefix("package-registry-proxy-")
            .and_then(|k| k.strip_suffix("-url"))
        else {
            continue;
        };
        let exported = resolved.package_managers.contains_key(pm);
        let reported = resolved.problems.iter().any(|p| &p.key == key);
        if value.is_empty() {
            assert!(!exported && !reported, "{key} is empty");
        } else {
            assert!(exported != reported, "{key} = {value:?}");
        }
    }
    assert!(resolved.problems.is_sorted_by(|a, b| a.key <= b.key));

    let cache = &resolved.cache_proxy;
    let cache_allow = data.get(cache_proxy::ALLOW_KEY).map_or("", String::as_str);
    assert_eq!(
        cache.allowed,
        cache_allow.is_empty() || parse_go_bool(cache_allow) == Some(true)
    );
    // An empty proxy is none (no proxy configured anywhere).
    if let Some(proxy) = cache.http_proxy.as_ref().filter(|p| !p.is_empty()) {
        assert_eq!(cache_proxy::validate_proxy(proxy), Ok(()), "{proxy:?}");
    }
    if let Some(no_proxy) = &cache.no_proxy {
        assert_eq!(
            cache_proxy::validate_no_proxy(no_proxy),
            Ok(()),
            "{no_proxy:?}"
        );
    }

    let allowlist = policy
        .allowed_proxy_hosts
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let default_of = |key: &str| match key {
        cache_proxy::HTTP_PROXY_KEY => policy.cache_proxy.http_proxy.as_str(),
        cache_proxy::NO_PROXY_KEY => policy.cache_proxy.no_proxy.as_str(),
        _ => "",
    };
    for problem in resolved.problems.iter().chain(&cache.problems) {
        let value = data.get(&problem.key).map_or("", String::as_str);
        // The configured value, or for an empty cache proxy key possibly the server's default.
        let shown = [value, default_of(&problem.key)].map(proxy_url::redact);
        assert!(shown.contains(&problem.value), "{problem:?}");
        if let Some(secret) = secret(value)
            && !problem.key.contains(secret)
            && !allowlist.contains(secret)
        {
            assert!(!problem.value.contains(secret), "{problem:?}");
            assert!(!problem.reason.contains(secret), "{problem:?}");
        }
    }
}

fn check_exported(
    policy: &Policy,
    answer: &proxyconf_proto::v1::Resolution,
    variables: &exports::Variables,
) {
    let served: BTreeSet<String> = answer
        .package_managers
        .iter()
        .flat_map(|pm| pm.env.iter().map(|e| e.name.clone()))
        .collect();
    for (name, value) in variables {
        assert!(!value.contains('\0'));
        match name.as_str() {
            "HTTP_PROXY" | "HTTPS_PROXY" => {
                assert_eq!(cache_proxy::validate_proxy(value), Ok(()), "{value:?}");
            }
            "NO_PROXY" => {
                assert_eq!(cache_proxy::validate_no_proxy(value), Ok(()), "{value:?}");
            }
            hermeto => {
                assert!(is_hermeto_variable_name(hermeto), "{hermeto}");
                assert!(served.contains(hermeto), "{hermeto} was not served");
                let pm = answer
                    .package_managers
                    .iter()
                    .find(|pm| pm.env.iter().any(|e| e.name == hermeto))
                    .unwrap();
                let target = proxy_url::validate(&pm.name, value).expect("exported URL");
                if let Some(list) = &policy.allowed_proxy_hosts {
                    assert!(list.allows(&target.host, Some(target.port)));
                }
            }
        }
        assert!(
            is_hermeto_variable_name(name) || CACHE_PROXY_VARIABLES.contains(&name.as_str()),
            "{name}"
        );
    }

    let shell = render(variables, Format::Shell);
    let words = shell_words::split(&shell).expect("the export lines parse");
    let want: Vec<String> = variables
        .iter()
        .flat_map(|(name, value)| ["export".to_owned(), format!("{name}={value}")])
        .collect();
    assert_eq!(words, want, "{shell}");
}
