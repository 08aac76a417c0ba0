//! Cache proxy validation (ADR 0057): `resolve::cache_proxy::validate_proxy` (`http-proxy`) and
//! `validate_no_proxy` (`no-proxy`).
//!
//! The whole input is tried as both values.
//!
//! Properties:
//! - nothing panics, and a rejection's message never repeats credentials (what stands before an
//!   `@`) from the value;
//! - an accepted proxy is at most 4096 bytes, without whitespace, control characters, backslashes
//!   or credentials; as a URL (`http://` or `https://`) it parses (WHATWG) with a host and no
//!   query or fragment; as `host:port` it has a port from 1 to 65535, and the `http://host:port`
//!   that clients make of it (Go's, curl's, the url crate) parses with that host and port;
//! - an accepted no-proxy list is at most 4096 bytes of comma-separated, non-empty entries of
//!   host, IP and CIDR characters only (spaces around commas allowed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxyconf_server::resolve::cache_proxy::{validate_no_proxy, validate_proxy};

const MAX_LEN: usize = 4096;

/// The password in `value` (`user:password@`, between `://` or the start and the last `@`), when
/// distinctive enough to look for: six or more letters and digits, with both, found nowhere else
/// in the value (no message text has such a word; and a message may quote another part of the
/// value, such as a no-proxy entry before the credentials, that happens to contain it).
fn secret(value: &str) -> Option<&str> {
    let at = value.rfind('@')?;
    let start = value[..at].find("://").map_or(0, |i| i + 3);
    let (_, password) = value[start..at].split_once(':')?;
    let distinctive = password.len() >= 6
        && password.bytes().all(|b| b.is_ascii_alphanumeric())
        && password.bytes().any(|b| b.is_ascii_digit())
        && password.bytes().any(|b| b.is_ascii_alphabetic());
    let elsewhere = value.matches(password).count() > 1;
    (distinctive && !elsewhere).then_some(password)
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(value) = std::str::from_utf8(bytes) else {
        return;
    };

    match validate_proxy(value) {
        Ok(()) => {
            assert!(value.len() <= MAX_LEN);
            assert!(!value.chars().any(|c| c.is_whitespace() || c.is_control()));
            assert!(!value.contains(['\\', '@']), "{value:?}");
            if value.contains("://") {
                let url = url::Url::parse(value).expect("an accepted proxy URL parses");
                assert!(matches!(url.scheme(), "http" | "https"), "{value:?}");
                assert!(url.host().is_some(), "{value:?}");
                assert!(url.username().is_empty() && url.password().is_none());
                assert!(
                    url.query().is_none() && url.fragment().is_none(),
                    "{value:?}"
                );
            } else {
                let (_, port) = value.rsplit_once(':').expect("host:port");
                let port: u16 = port.parse().expect("a port");
                assert_ne!(port, 0);
                let as_url = format!("http://{value}");
                let url = url::Url::parse(&as_url)
                    .unwrap_or_else(|e| panic!("accepted {value:?}, but {as_url:?}: {e}"));
                assert!(url.host().is_some(), "{value:?}");
                assert_eq!(url.port_or_known_default(), Some(port), "{value:?}");
                assert_eq!(url.path(), "/", "{value:?}");
            }
        }
        Err(rejection) => {
            let reason = rejection.to_string();
            if let Some(secret) = secret(value) {
                assert!(!reason.contains(secret), "{value:?}: {reason}");
            }
        }
    }

    match validate_no_proxy(value) {
        Ok(()) => {
            assert!(value.len() <= MAX_LEN);
            assert!(
                value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b" ,.-:[]/*".contains(&b)),
                "{value:?}"
            );
            if !value.is_empty() {
                assert!(
                    value.split(',').all(|e| !e.trim_matches(' ').is_empty()),
                    "{value:?}"
                );
            }
        }
        Err(rejection) => {
            let reason = rejection.to_string();
            if let Some(secret) = secret(value) {
                assert!(!reason.contains(secret), "{value:?}: {reason}");
            }
        }
    }
});
