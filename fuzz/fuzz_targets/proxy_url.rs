//! Proxy URL validation (docs/configuration.md §4): `resolve::proxy_url::validate`, its reference
//! `validate_strictly`, and `redact`.
//!
//! The first input byte picks the package manager (gomod has its own rules), the rest is the value.
//!
//! Properties:
//! - the direct check and the WHATWG parser (url crate) agree on every input, target included;
//! - an accepted URL is absolute http(s), at most `MAX_URL_LEN` bytes, without whitespace, control
//!   characters, backslashes, credentials or a fragment, and as a WHATWG parser reads it has the
//!   host and port `validate` returned; for gomod it is no GOPROXY list (`,` or `|`);
//! - the URL as the parser normalises it is accepted too, with the same target;
//! - `redact` is bounded, escapes control characters and hides everything before the last `@`
//!   but a scheme.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxyconf_server::resolve::proxy_url::{self, MAX_URL_LEN};

const PACKAGE_MANAGERS: [&str; 4] = ["npm", "gomod", "pip", "gomod-sum"];

fuzz_target!(|bytes: &[u8]| {
    let Some((&pick, rest)) = bytes.split_first() else {
        return;
    };
    let Ok(value) = std::str::from_utf8(rest) else {
        return;
    };
    let pm = PACKAGE_MANAGERS[usize::from(pick) % PACKAGE_MANAGERS.len()];

    let checked = proxy_url::validate(pm, value);
    assert_eq!(
        checked,
        proxy_url::validate_strictly(pm, value),
        "the direct check and the url crate disagree on {pm} {value:?}"
    );
    match &checked {
        Ok(target) => {
            let lower = value.to_ascii_lowercase();
            assert!(lower.starts_with("http://") || lower.starts_with("https://"));
            assert!(value.len() <= MAX_URL_LEN);
            assert!(!value.chars().any(|c| c.is_whitespace() || c.is_control()));
            assert!(!value.contains('\\'));
            if pm == "gomod" {
                assert!(!value.contains([',', '|']), "a GOPROXY list: {value:?}");
            }
            let url = url::Url::parse(value).expect("an accepted URL parses");
            assert!(matches!(url.scheme(), "http" | "https"));
            assert!(
                url.username().is_empty() && url.password().is_none(),
                "{value:?}"
            );
            assert!(url.fragment().is_none(), "{value:?}");
            assert_eq!(url.host_str(), Some(&*target.host), "{value:?}");
            assert_eq!(url.port_or_known_default(), Some(target.port), "{value:?}");
            let normalised = url.as_str();
            if normalised.len() <= MAX_URL_LEN {
                let again = proxy_url::validate(pm, normalised);
                assert_eq!(
                    again.as_ref().ok(),
                    Some(target),
                    "{value:?} normalised to {normalised:?}: {again:?}"
                );
            }
        }
        Err(rejection) => {
            let _ = rejection.to_string();
        }
    }

    let redacted = proxy_url::redact(value);
    assert!(redacted.chars().count() <= 201, "{redacted:?}");
    assert!(!redacted.chars().any(char::is_control), "{redacted:?}");
    // Nothing before the last `@` is shown but a scheme.
    assert!(
        redacted.matches('@').count() <= 1,
        "{value:?} -> {redacted:?}"
    );
    if value.contains('@') && !redacted.ends_with('…') {
        assert!(redacted.contains("***@"), "{value:?} -> {redacted:?}");
    }
    if let Some(at) = value.rfind('@') {
        let start = value[..at].find("://").map_or(0, |i| i + 3);
        let secret = &value[start..at];
        // What stood before the `@` is gone, unless the same text appears elsewhere (or could be
        // made of the `***` or of escapes).
        let elsewhere = value[at..].contains(secret) || value[..start].contains(secret);
        let made_up = secret.contains('*') || value.chars().any(char::is_control);
        if secret.len() >= 4 && !elsewhere && !made_up {
            assert!(!redacted.contains(secret), "{value:?} -> {redacted:?}");
        }
    }
});
