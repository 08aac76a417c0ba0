//! Fuzz targets as property tests (proptest): cargo-fuzz needs a nightly toolchain, which these
//! machines do not have. Each target feeds arbitrary and adversarial input and checks that nothing
//! panics and that the invariants a build relies on hold.
//!
//! CI runs a bounded number of cases per target; run longer with, e.g.,
//! `PROPTEST_CASES=200000 cargo test --release -p proxyconf-server --test fuzz`. A failing case
//! is saved under `proptest-regressions/` (commit it: it becomes a regression test).

use std::{collections::BTreeMap, path::Path};

use proptest::{prelude::*, test_runner::Config};
use proxyconf_proto::contract::{is_hermeto_variable_name, parse_go_bool};
use proxyconf_server::{
    resolve::{ALLOW_KEY, Policy, cache_proxy, host_allowlist::HostAllowlist, proxy_url, resolve},
    source::file_format,
};

/// Cases per target: `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config::with_cases(cases)
}

/// Strings that look like what administrators (and attackers) write into a URL.
fn url_like() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        "https://", "http://", "HTTP://", "ftp://", "", "https:", "//"
    ];
    let userinfo = prop_oneof![Just(String::new()), "[a-z]{1,6}:[A-Za-z0-9]{1,8}@", "@"];
    let host = prop_oneof![
        "[a-z0-9-]{1,12}(\\.[a-z0-9-]{1,12}){0,3}",
        "10\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        "\\[[0-9a-f:]{2,12}\\]",
        Just(String::new()),
    ];
    let port = prop_oneof![Just(String::new()), ":[0-9]{1,6}"];
    let path = "(/[A-Za-z0-9._~%!$&'()*+,;=:@ #?|\\\\-]{0,10}){0,4}";
    (scheme, userinfo, host, port, path)
        .prop_map(|(s, u, h, p, path)| format!("{s}{u}{h}{p}{path}"))
}

fn any_value() -> impl Strategy<Value = String> {
    prop_oneof![url_like(), any::<String>(), "[ -~]{0,40}"]
}

fn configmap() -> impl Strategy<Value = BTreeMap<String, String>> {
    let key = prop_oneof![
        Just(ALLOW_KEY.to_owned()),
        "[a-zA-Z0-9-]{0,10}".prop_map(|pm| format!("package-registry-proxy-{pm}-url")),
        Just(cache_proxy::ALLOW_KEY.to_owned()),
        Just(cache_proxy::HTTP_PROXY_KEY.to_owned()),
        Just(cache_proxy::NO_PROXY_KEY.to_owned()),
        "[a-z.-]{1,20}",
    ];
    proptest::collection::btree_map(key, any_value(), 0..12)
}

proptest! {
    #![proptest_config(cases(4096))]

    #[test]
    fn resolution_never_panics_and_exports_only_valid_settings(data in configmap()) {
        let resolved = resolve(&data, &Policy::default());
        let allow = data.get(ALLOW_KEY).map(String::as_str).unwrap_or("");
        prop_assert_eq!(resolved.allowed, parse_go_bool(allow) == Some(true));
        for (name, setting) in &resolved.package_managers {
            prop_assert!(proxy_url::validate(name, &setting.url).is_ok());
            prop_assert_eq!(&data[&format!("package-registry-proxy-{name}-url")], &setting.url);
            if let Some(variable) = &setting.hermeto_variable {
                prop_assert!(is_hermeto_variable_name(variable), "{}", variable);
            }
        }
        // A key is either exported, a problem, empty, or not a proxy key: never silently dropped.
        for (key, value) in &data {
            let Some(pm) = key
                .strip_prefix("package-registry-proxy-")
                .and_then(|k| k.strip_suffix("-url"))
            else {
                continue;
            };
            let exported = resolved.package_managers.contains_key(pm);
            let reported = resolved.problems.iter().any(|p| &p.key == key);
            prop_assert!(value.is_empty() || exported != reported, "{} = {:?}", key, value);
        }
    }

    #[test]
    fn credentials_never_reach_a_problem(
        user in "[a-z]{1,8}",
        secret in "[A-Za-z0-9]{12,20}",
        rest in "[a-z./:-]{0,20}",
    ) {
        let value = format!("https://{user}:{secret}@{rest}");
        let data = BTreeMap::from([
            (ALLOW_KEY.to_owned(), "true".to_owned()),
            ("package-registry-proxy-npm-url".to_owned(), value.clone()),
            (cache_proxy::HTTP_PROXY_KEY.to_owned(), value),
        ]);
        let resolved = resolve(&data, &Policy::default());
        prop_assert!(resolved.package_managers.is_empty());
        let problems = resolved.problems.iter().chain(&resolved.cache_proxy.problems);
        for p in problems {
            prop_assert!(!p.value.contains(&secret), "{:?}", p);
            prop_assert!(!p.reason.contains(&secret), "{:?}", p);
        }
    }

    #[test]
    fn accepted_urls_are_absolute_http_without_credentials(value in url_like()) {
        if proxy_url::validate("npm", &value).is_ok() {
            let lower = value.to_ascii_lowercase();
            prop_assert!(lower.starts_with("http://") || lower.starts_with("https://"));
            prop_assert!(!value.chars().any(|c| c.is_whitespace() || c.is_control()));
            prop_assert!(!value.contains('\\'), "parsers disagree on backslashes");
            // As any WHATWG URL parser (npm, pip, Go, Hermeto) reads it: a host, no credentials,
            // no fragment.
            let url = url::Url::parse(&value).unwrap();
            prop_assert!(url.username().is_empty() && url.password().is_none(), "{}", value);
            prop_assert!(url.host_str().is_some_and(|h| !h.is_empty()), "{}", value);
            prop_assert!(url.fragment().is_none());
            prop_assert!(value.len() <= proxy_url::MAX_URL_LEN);
        }
        if proxy_url::validate("gomod", &value).is_ok() {
            prop_assert!(!value.contains(',') && !value.contains('|'));
        }
        let _ = proxy_url::redact(&value);
    }

    #[test]
    fn the_direct_url_check_agrees_with_the_whatwg_parser(value in prop_oneof![
        url_like(),
        "https?://[a-zA-Z0-9.-]{0,20}(:[0-9]{0,6})?(/[ -~]{0,20})?",
        "https://[0-9.x]{1,16}(:[0-9]{1,5})?/",
    ]) {
        for pm in ["npm", "gomod"] {
            prop_assert_eq!(
                proxy_url::validate(pm, &value),
                proxy_url::validate_strictly(pm, &value),
                "{}", value
            );
        }
    }

    #[test]
    fn arbitrary_urls_never_panic(value in any::<String>()) {
        let _ = proxy_url::validate("npm", &value);
        let _ = cache_proxy::validate_proxy(&value);
        let _ = cache_proxy::validate_no_proxy(&value);
        let redacted = proxy_url::redact(&value);
        prop_assert!(redacted.chars().count() <= 201);
    }

    #[test]
    fn file_parsers_never_panic(content in prop_oneof![
        any::<String>(),
        "[a-z:{}\\[\\]\"' \\n#=-]{0,200}",
        "apiVersion: v1\nkind: ConfigMap\ndata:\n( {1,3}[a-z-]{1,10}: [ -~]{0,20}\n){0,6}",
    ]) {
        let _ = file_format::parse(Path::new("cm.yaml"), &content);
        let _ = file_format::parse(Path::new("cm.env"), &content);
        let _ = file_format::parse(Path::new("cm"), &content);
    }

    #[test]
    fn env_files_round_trip(data in proptest::collection::btree_map(
        "[A-Za-z0-9_.][A-Za-z0-9._-]{0,19}",
        "[^\n\r]{0,40}",
        0..10,
    )) {
        let text: String = data.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        prop_assert_eq!(file_format::parse_env_file(&text).unwrap(), data);
    }

    #[test]
    fn host_globs(
        labels in proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", 1..5),
        star in any::<prop::sample::Index>(),
        pattern in "[a-z0-9*?.:\\[\\]-]{0,30}",
    ) {
        let host = labels.join(".");
        let mut globbed = labels.clone();
        globbed[star.index(labels.len())] = "*".to_owned();
        let list = HostAllowlist::parse(&globbed.join(".")).unwrap();
        prop_assert!(list.allows(&host, Some(443)), "{} vs {}", list, host);
        let deeper = HostAllowlist::parse(&format!("*.{}", globbed.join("."))).unwrap();
        prop_assert!(!deeper.allows(&host, Some(443)), "a glob never spans a dot");
        if let Ok(list) = HostAllowlist::parse(&pattern) {
            let _ = list.allows(&host, None);
        }
    }
}
