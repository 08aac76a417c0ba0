//! Fuzz targets as property tests (proptest), beside the coverage-guided targets of `fuzz/`
//! (cargo-fuzz, see `fuzz/README.md`). Each target feeds arbitrary and adversarial input and
//! checks that nothing panics and that the invariants a build relies on hold.
//!
//! CI runs a bounded number of cases per target; run longer with, e.g.,
//! `PROPTEST_CASES=200000 cargo test --release -p proxyconf-server --test fuzz`. A failing case
//! is saved under `proptest-regressions/` (commit it: it becomes a regression test). What the
//! cargo-fuzz targets found is kept at the end of this file as plain tests.

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

// Found by the cargo-fuzz targets (fuzz/): each input as the fuzzer found it, or minimised.

/// `fuzz/proxy_url`: control characters are shown escaped, so a value of a few dozen of them made
/// a problem's value several hundred characters long; the bound now counts what is shown.
#[test]
fn redaction_bounds_what_is_shown_not_what_was_given() {
    let value = format!(
        "https{}\u{8}{}\u{8}{}://@nexu8s/npm/",
        "\0".repeat(28),
        "\0".repeat(10),
        "\0".repeat(8)
    );
    // What stood before `://` is no scheme, so it is hidden with the (empty) credentials.
    assert_eq!(proxy_url::redact(&value), "***@nexu8s/npm/");
    let value = format!("https://nexus/{}", "\0".repeat(60));
    let redacted = proxy_url::redact(&value);
    assert!(redacted.chars().count() <= 201, "{redacted:?}");
    assert!(redacted.ends_with('…'), "{redacted:?}");
    assert_eq!(proxy_url::redact(&"\n".repeat(300)).chars().count(), 201);
}

/// `fuzz/cache_proxy` and `fuzz/resolve`: only a scheme may stand shown before the credentials;
/// a `://` after other text ended "the scheme" and showed the credentials before it.
#[test]
fn redaction_shows_nothing_before_the_credentials_but_a_scheme() {
    let value = "http\u{1a}//user:'secre@sq:1:uid:31http://user:'secre@s129";
    assert_eq!(proxy_url::redact(value), "***@s129");
    let listed = proxy_url::redact("user:pw1234@a,http://u2:pw5678@b");
    assert!(
        !listed.contains("pw1234") && !listed.contains("pw5678"),
        "{listed}"
    );
    assert_eq!(
        proxy_url::redact("https://user:s3cret@nexus/npm/"),
        "https://***@nexus/npm/"
    );
}

/// `fuzz/cache_proxy`: a rejected no-proxy entry was quoted verbatim in the problem's reason,
/// credentials included (the value itself was redacted).
#[test]
fn a_rejected_no_proxy_entry_is_quoted_redacted() {
    let reason = cache_proxy::validate_no_proxy("http://user:s3cret@squid:3128")
        .unwrap_err()
        .to_string();
    assert!(!reason.contains("s3cret"), "{reason}");
    let data = BTreeMap::from([(
        cache_proxy::NO_PROXY_KEY.to_owned(),
        ".svc,http://user:s3cret@squid:3128".to_owned(),
    )]);
    let resolved = resolve(&data, &Policy::default());
    assert_eq!(resolved.cache_proxy.no_proxy, None);
    for p in &resolved.cache_proxy.problems {
        assert!(
            !p.value.contains("s3cret") && !p.reason.contains("s3cret"),
            "{p:?}"
        );
    }
}

/// `fuzz/cache_proxy`: proxies that `http://host:port` does not parse as (WHATWG), so clients
/// could not use them: brackets around something other than an IPv6 address, a `+` before the
/// port (Rust's integer parsers take one), a name ending in a number that is no IPv4 address.
#[test]
fn cache_proxies_that_are_no_url_authority_are_refused() {
    for bad in [
        "[01]:328",
        "[nexus]:3128",
        "squid:+3128",
        "2A7.0.0.1:8",
        "999.1:3128",
    ] {
        assert!(cache_proxy::validate_proxy(bad).is_err(), "{bad}");
    }
    for good in ["[fd00::1]:3128", "10.0.0.1:3128", "squid.caching.svc:3128"] {
        assert_eq!(cache_proxy::validate_proxy(good), Ok(()), "{good}");
    }
}

/// `fuzz/cache_proxy`: a `+` before a no-proxy port or CIDR prefix length was accepted.
#[test]
fn no_proxy_numbers_are_plain_decimal() {
    for bad in [
        "registr:50,0, istr:+50,0, .c",
        "::/+79",
        "10.0.0.0/+8",
        "[01]:80",
    ] {
        assert!(cache_proxy::validate_no_proxy(bad).is_err(), "{bad:?}");
    }
    assert_eq!(cache_proxy::validate_no_proxy("registr:50, ::/79"), Ok(()));
}

/// `fuzz/proxy_url`: the direct check passed punycode labels that the WHATWG parser (which
/// decodes them) refuses, so the two disagreed.
#[test]
fn punycode_is_left_to_the_url_parser() {
    let value = "https://xn--nxms-lxbep.a.example/npm&/";
    assert_eq!(
        proxy_url::validate("npm", value),
        proxy_url::validate_strictly("npm", value)
    );
    assert!(proxy_url::validate("npm", value).is_err());
    // Valid punycode is still accepted, as the parser reads it.
    let idn = "https://xn--nxus-bpa.example/npm/";
    assert_eq!(
        proxy_url::validate("npm", idn),
        proxy_url::validate_strictly("npm", idn)
    );
}

/// `fuzz/host_allowlist`: a label starting with `[` passed as if it were a bracketed IPv6 address,
/// whatever followed (here control characters).
#[test]
fn a_bracket_inside_a_host_pattern_is_refused() {
    assert!(HostAllowlist::parse("nexus-*.[8e\r\r\r\r84exu").is_err());
    assert!(HostAllowlist::parse("a.[fd00::1]").is_err());
    assert!(HostAllowlist::parse("[fd00::1]:8443").is_ok());
}

/// `fuzz/host_allowlist`: a glob such as `*` matched IPv6 addresses (one "label"), so an
/// allowlist meant for short in-cluster names allowed any IPv6 proxy.
#[test]
fn globs_never_match_ipv6_addresses() {
    let list = HostAllowlist::parse("1,,,*").unwrap();
    assert!(!list.allows("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[02.", Some(443)));
    assert!(!list.allows("[2001:db8::1]", Some(443)));
    assert!(list.allows("nexus", Some(443)));
    let ipv6 = HostAllowlist::parse("[2001:db8::1]").unwrap();
    assert!(ipv6.allows("[2001:db8::1]", Some(443)));
}

/// `fuzz/proxy_url` (in CI): the url crate decodes `%2c` in a host into `,`, so a gomod URL whose
/// normalised form is a GOPROXY list was accepted.
#[test]
fn a_gomod_host_with_an_encoded_comma_is_a_list() {
    for value in ["http://%2c'0020!.08pc:0", "https://nexus%2Cdirect/go/"] {
        assert_eq!(
            proxy_url::validate("gomod", value).unwrap_err(),
            proxy_url::UrlRejection::GoproxyList,
            "{value}"
        );
        assert_eq!(
            proxy_url::validate_strictly("gomod", value).unwrap_err(),
            proxy_url::UrlRejection::GoproxyList,
            "{value}"
        );
    }
}

/// `fuzz/manifest` (a 150 s run): YAML cannot carry some characters raw (U+FFFE, U+FFFF, C1
/// controls but NEL), though JSON can and `kubectl -o json` writes them so. Such a file is a clear
/// parse error naming the character, never a ConfigMap with the value cut or dropped; the same
/// value escaped (as `\uFFFF`) reads.
#[test]
fn a_character_yaml_cannot_carry_raw_is_a_clear_error() {
    let manifest = |value: &str| {
        format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"cluster-config\"}},\
             \"data\":{{\"allow-package-registry-proxy\":\"true\",\"n\":\"{value}\"}}}}"
        )
    };
    let error = file_format::parse_manifest(&manifest("a\u{ffff}n")).unwrap_err();
    let message = proxyconf_server::source::error_chain(&error);
    assert!(message.contains("unexpected character"), "{message}");
    let escaped = file_format::parse_manifest(&manifest("a\\uFFFFn")).unwrap();
    let proxyconf_server::source::ConfigMapState::Present { data, .. } = escaped else {
        panic!("a ConfigMap");
    };
    assert_eq!(data["n"], "a\u{ffff}n");
}

/// `fuzz/cache_proxy` (a 10-million-execution run): a false alarm of the target's own check, kept
/// as the case it shows: in a no-proxy list whose first bad entry happens to contain the password
/// of a later `user:password@` entry, the reason quotes that first entry, and never the entry with
/// the credentials.
#[test]
fn a_no_proxy_reason_quotes_the_first_bad_entry_not_a_later_credential() {
    let reason = cache_proxy::validate_no_proxy("10.0.0.0s3cret/8,.svc,squid:s3cret@proxy")
        .unwrap_err()
        .to_string();
    assert!(reason.contains("10.0.0.0s3cret/8"), "{reason}");
    assert!(!reason.contains("squid:s3cret"), "{reason}");
}

/// `fuzz/manifest` (a 10-million-execution run): YAML also ends a line at a lone CR, so
/// `# comment\r{…}` holds a ConfigMap; the blank-file check split lines at LF only, saw one
/// comment line, and refused the file as empty while the manifest parser read it.
#[test]
fn a_comment_ended_by_a_lone_cr_does_not_make_a_manifest_blank() {
    let text = "# exported\r{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":\
                {\"name\":\"cluster-config\"},\"data\":{\"allow-package-registry-proxy\":\"true\"}}\n";
    let parsed = file_format::parse(std::path::Path::new("cluster-config.yaml"), text).unwrap();
    assert_eq!(parsed, file_format::parse_manifest(text).unwrap());
    let proxyconf_server::source::ConfigMapState::Present { data, .. } = parsed else {
        panic!("a ConfigMap");
    };
    assert_eq!(data["allow-package-registry-proxy"], "true");
    // A comment alone, whatever ends its lines, is still a blank file.
    assert!(matches!(
        file_format::parse(std::path::Path::new("cluster-config.yaml"), "# a\r# b\r\n"),
        Err(file_format::FormatError::Empty)
    ));
}
