//! The OCI cache proxy settings of the same ConfigMap (ADR 0057, docs/configuration.md §7): `allow-cache-proxy`,
//! `http-proxy`, `no-proxy`, resolved for the init task that hands them to the image build.
//!
//! Unlike the package registry proxy, the administrator's switch defaults to **allowed** and the
//! pipeline parameter to **off**: caching is an optimisation each pipeline opts into.

use std::{collections::BTreeMap, net::IpAddr};

use proxyconf_proto::contract::parse_go_bool;

use super::{
    Problem, ProblemCode, dns,
    proxy_url::{UrlRejection, redact, reject_characters},
};

/// The administrator's switch. Missing or empty means allowed.
pub const ALLOW_KEY: &str = proxyconf_proto::contract::ALLOW_CACHE_PROXY_KEY;
/// The proxy, `host:port` or an `http(s)://` URL. Missing or empty: the server's default.
pub const HTTP_PROXY_KEY: &str = "http-proxy";
/// Hosts, domains and CIDRs that bypass the proxy, comma-separated. Missing or empty: the
/// server's default.
pub const NO_PROXY_KEY: &str = "no-proxy";

/// Longest value accepted for either key.
const MAX_LEN: usize = 4096;

/// What the server's operator sets, used when the ConfigMap leaves a key empty. Never hard-coded
/// in clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheProxyDefaults {
    /// The proxy when `http-proxy` is empty; empty for none.
    pub http_proxy: String,
    /// The no-proxy list when `no-proxy` is empty.
    pub no_proxy: String,
}

impl Default for CacheProxyDefaults {
    /// What today's clusters use.
    fn default() -> Self {
        Self {
            http_proxy: "squid.caching.svc.cluster.local:3128".into(),
            no_proxy: String::new(),
        }
    }
}

impl CacheProxyDefaults {
    /// Checks the defaults themselves, so that a bad flag stops the server at start.
    pub fn validate(&self) -> Result<(), DefaultsError> {
        if !self.http_proxy.is_empty() {
            validate_proxy(&self.http_proxy).map_err(|source| DefaultsError::HttpProxy {
                value: self.http_proxy.clone(),
                source,
            })?;
        }
        validate_no_proxy(&self.no_proxy).map_err(|source| DefaultsError::NoProxy {
            value: self.no_proxy.clone(),
            source,
        })
    }
}

/// `--default-http-proxy` as clap parses it: empty (no default) or a valid proxy.
pub fn parse_default_http_proxy(value: &str) -> Result<String, Rejection> {
    if !value.is_empty() {
        validate_proxy(value)?;
    }
    Ok(value.to_owned())
}

/// `--default-no-proxy` as clap parses it: a valid no-proxy list, possibly empty.
pub fn parse_default_no_proxy(value: &str) -> Result<String, Rejection> {
    validate_no_proxy(value).map(|()| value.to_owned())
}

/// A server default that is not a valid value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefaultsError {
    #[error("--default-http-proxy {value:?}: {source}")]
    HttpProxy { value: String, source: Rejection },
    #[error("--default-no-proxy {value:?}: {source}")]
    NoProxy { value: String, source: Rejection },
}

/// Why an `http-proxy` or `no-proxy` value is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{len} bytes long; at most {MAX_LEN} are accepted")]
    TooLong { len: usize },
    /// Whitespace, control characters, a backslash: the checks every proxy value shares.
    #[error("{0}")]
    Characters(UrlRejection),
    #[error(
        "contains credentials (user-info); they must never travel in a ConfigMap or an environment"
    )]
    UserInfo,
    #[error("a proxy URL must be http:// or https://")]
    NotHttp,
    #[error("malformed URL: {0}")]
    Malformed(url::ParseError),
    #[error("the proxy URL has no host")]
    NoHost,
    #[error("a proxy URL takes no query or fragment")]
    QueryOrFragment,
    #[error("expected host:port, e.g. squid.caching.svc.cluster.local:3128")]
    NotHostPort,
    #[error("{0:?} is not a port")]
    NotAPort(String),
    #[error("port 0 is not a port")]
    PortZero,
    #[error("{0:?} is not a host name or IP address")]
    NotAHost(String),
    #[error("{0:?} is not a host name or IP address ({1})")]
    NotAUrlHost(String, url::ParseError),
    #[error("{0:?} is not a host, domain, IP address or CIDR (entries are comma-separated)")]
    NotANoProxyEntry(String),
}

/// The resolved cache proxy settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheProxy {
    /// `allow-cache-proxy` parsed; true when missing or empty, false when invalid.
    pub allowed: bool,
    /// The proxy to use, default applied; `None` when invalid or when neither the ConfigMap nor
    /// the server has one.
    pub http_proxy: Option<String>,
    /// The no-proxy list, default applied; `None` when invalid.
    pub no_proxy: Option<String>,
    /// Rejected values of these keys.
    pub problems: Vec<Problem>,
}

/// Resolves the cache proxy keys of `data`.
pub fn resolve(data: &BTreeMap<String, String>, defaults: &CacheProxyDefaults) -> CacheProxy {
    let mut problems = Vec::new();
    let mut problem = |key: &str, value: &str, reason: String, code: ProblemCode| {
        problems.push(Problem {
            key: key.to_owned(),
            value: redact(value),
            reason,
            package_manager: None,
            code,
        });
    };
    let value_of = |key: &str| data.get(key).map(String::as_str).filter(|v| !v.is_empty());

    let allowed = match value_of(ALLOW_KEY) {
        None => true,
        Some(value) => parse_go_bool(value).unwrap_or_else(|| {
            problem(
                ALLOW_KEY,
                value,
                "not a boolean (use true or false); the cache proxy is treated as not allowed \
                 until this is fixed"
                    .into(),
                ProblemCode::InvalidBoolean,
            );
            false
        }),
    };

    // As the incumbent (konflux-build-cli) does: the server's defaults apply only when both keys
    // are empty; otherwise an empty key stays empty (no proxy, or no exceptions).
    let (http_value, no_proxy_value) = match (value_of(HTTP_PROXY_KEY), value_of(NO_PROXY_KEY)) {
        (None, None) => (defaults.http_proxy.as_str(), defaults.no_proxy.as_str()),
        (http, no_proxy) => (http.unwrap_or(""), no_proxy.unwrap_or("")),
    };
    let http_proxy = match validate_proxy(http_value) {
        _ if http_value.is_empty() => Some(String::new()),
        Ok(()) => Some(http_value.to_owned()),
        Err(reason) => {
            problem(
                HTTP_PROXY_KEY,
                http_value,
                reason.to_string(),
                ProblemCode::InvalidProxy,
            );
            None
        }
    };
    let no_proxy = match validate_no_proxy(no_proxy_value) {
        Ok(()) => Some(no_proxy_value.to_owned()),
        Err(reason) => {
            problem(
                NO_PROXY_KEY,
                no_proxy_value,
                reason.to_string(),
                ProblemCode::InvalidNoProxy,
            );
            None
        }
    };

    CacheProxy {
        allowed,
        http_proxy,
        no_proxy,
        problems,
    }
}

/// A proxy is `host:port` or an `http://` / `https://` URL with a host, without credentials.
pub fn validate_proxy(value: &str) -> Result<(), Rejection> {
    if value.len() > MAX_LEN {
        return Err(Rejection::TooLong { len: value.len() });
    }
    reject_characters(value).map_err(Rejection::Characters)?;
    if value.contains('@') {
        return Err(Rejection::UserInfo);
    }
    if value.contains("://") {
        return validate_proxy_url(value);
    }
    let (host, port) = split_host_port(value).ok_or(Rejection::NotHostPort)?;
    let port: u16 = decimal(port).ok_or_else(|| Rejection::NotAPort(port.to_owned()))?;
    if port == 0 {
        return Err(Rejection::PortZero);
    }
    if !is_host(host) {
        return Err(Rejection::NotAHost(host.to_owned()));
    }
    // Clients read it as `http://host:port`: a name ending in a number is an IPv4 address to a
    // URL parser (`2a7.0.0.1` is none), and punycode must decode.
    url::Url::parse(&format!("http://{value}"))
        .map_err(|e| Rejection::NotAUrlHost(host.to_owned(), e))?;
    Ok(())
}

/// An `http://` or `https://` proxy URL: a host, no query, no fragment.
fn validate_proxy_url(value: &str) -> Result<(), Rejection> {
    let scheme_ok = ["http://", "https://"].iter().any(|s| {
        value
            .get(..s.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(s))
    });
    if !scheme_ok {
        return Err(Rejection::NotHttp);
    }
    let url = url::Url::parse(value).map_err(Rejection::Malformed)?;
    if url.host().is_none() {
        return Err(Rejection::NoHost);
    }
    if url.fragment().is_some() || url.query().is_some() {
        return Err(Rejection::QueryOrFragment);
    }
    Ok(())
}

/// A no-proxy list: comma-separated host names, domains (`.example.com`), IP addresses, CIDRs, or
/// `*`, each optionally with `:port`; spaces around the commas are allowed.
pub fn validate_no_proxy(value: &str) -> Result<(), Rejection> {
    if value.len() > MAX_LEN {
        return Err(Rejection::TooLong { len: value.len() });
    }
    if value.is_empty() {
        return Ok(());
    }
    for entry in value.split(',').map(|e| e.trim_matches(' ')) {
        if !is_no_proxy_entry(entry) {
            return Err(Rejection::NotANoProxyEntry(redact(entry)));
        }
    }
    Ok(())
}

fn is_no_proxy_entry(entry: &str) -> bool {
    if entry == "*" {
        return true;
    }
    if let Some((ip, bits)) = entry.split_once('/') {
        return match (ip.parse::<IpAddr>(), decimal::<u8>(bits)) {
            (Ok(IpAddr::V4(_)), Some(bits)) => bits <= 32,
            (Ok(IpAddr::V6(_)), Some(bits)) => bits <= 128,
            _ => false,
        };
    }
    let host = match split_host_port(entry) {
        Some((host, port)) if decimal::<u16>(port).is_some() => host,
        Some(_) => return false,
        None => entry,
    };
    is_host(host.strip_prefix('.').unwrap_or(host))
}

/// A port or prefix length: decimal digits only (Rust's integer parsers also take a leading `+`,
/// which URLs and CIDRs do not).
fn decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse().ok())
        .flatten()
}

/// Splits `host:port` and `[v6]:port`; `None` when there is no port.
fn split_host_port(value: &str) -> Option<(&str, &str)> {
    if let Some(rest) = value.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        // Brackets hold an IPv6 address, nothing else (`[nexus]:3128` is no URL authority).
        let v6 = host.parse::<std::net::Ipv6Addr>().is_ok();
        return v6.then_some((host, port));
    }
    if value.matches(':').count() > 1 {
        return None; // A bare IPv6 address.
    }
    value.split_once(':')
}

/// A DNS name or an IP address.
fn is_host(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok() || dns::is_name(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// (allow, http-proxy, no-proxy) → (allowed, http_proxy, no_proxy, number of problems)
    type Row<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        bool,
        Option<String>,
        Option<String>,
        usize,
    );

    #[test]
    fn rule_table() {
        let defaults = CacheProxyDefaults::default();
        let squid = Some("squid.caching.svc.cluster.local:3128".to_owned());
        // (allow, http-proxy, no-proxy) → (allowed, http_proxy, no_proxy, problems)
        let table: &[Row] = &[
            (
                None,
                None,
                None,
                true,
                squid.clone(),
                Some(String::new()),
                0,
            ),
            (
                Some(""),
                Some(""),
                Some(""),
                true,
                squid.clone(),
                Some(String::new()),
                0,
            ),
            (
                Some("true"),
                Some("proxy.corp:8080"),
                Some(".svc,10.0.0.0/8"),
                true,
                Some("proxy.corp:8080".into()),
                Some(".svc,10.0.0.0/8".into()),
                0,
            ),
            (
                Some("false"),
                None,
                None,
                false,
                squid.clone(),
                Some(String::new()),
                0,
            ),
            (
                Some("0"),
                None,
                None,
                false,
                squid.clone(),
                Some(String::new()),
                0,
            ),
            (
                Some("yes"),
                None,
                None,
                false,
                squid.clone(),
                Some(String::new()),
                1,
            ),
            (
                None,
                Some("user:pw@proxy:3128"),
                None,
                true,
                None,
                Some(String::new()),
                1,
            ),
            (
                None,
                Some("proxy"),
                None,
                true,
                None,
                Some(String::new()),
                1,
            ),
            // Only one key set: the defaults do not apply to the other (as the incumbent).
            (None, None, Some("a b"), true, Some(String::new()), None, 1),
            (
                None,
                None,
                Some(".svc"),
                true,
                Some(String::new()),
                Some(".svc".into()),
                0,
            ),
            (
                None,
                Some("proxy.corp:8080"),
                None,
                true,
                Some("proxy.corp:8080".into()),
                Some(String::new()),
                0,
            ),
            (
                Some("maybe"),
                Some("ftp://x:1"),
                Some("%%"),
                false,
                None,
                None,
                3,
            ),
        ];
        for (allow, proxy, no_proxy, allowed, want_proxy, want_no_proxy, problems) in table {
            let mut pairs = Vec::new();
            if let Some(v) = allow {
                pairs.push((ALLOW_KEY, *v));
            }
            if let Some(v) = proxy {
                pairs.push((HTTP_PROXY_KEY, *v));
            }
            if let Some(v) = no_proxy {
                pairs.push((NO_PROXY_KEY, *v));
            }
            let r = resolve(&data(&pairs), &defaults);
            let case = format!("{allow:?} {proxy:?} {no_proxy:?}");
            assert_eq!(r.allowed, *allowed, "{case}");
            assert_eq!(&r.http_proxy, want_proxy, "{case}");
            assert_eq!(&r.no_proxy, want_no_proxy, "{case}");
            assert_eq!(r.problems.len(), *problems, "{case}: {:?}", r.problems);
        }
    }

    #[test]
    fn server_defaults_apply_to_empty_keys() {
        let defaults = CacheProxyDefaults {
            http_proxy: "http://cache.internal:3128".into(),
            no_proxy: "localhost,.svc".into(),
        };
        assert_eq!(defaults.validate(), Ok(()));
        let r = resolve(&data(&[(HTTP_PROXY_KEY, "")]), &defaults);
        assert_eq!(r.http_proxy.as_deref(), Some("http://cache.internal:3128"));
        assert_eq!(r.no_proxy.as_deref(), Some("localhost,.svc"));

        let none = CacheProxyDefaults {
            http_proxy: String::new(),
            no_proxy: String::new(),
        };
        let r = resolve(&BTreeMap::new(), &none);
        assert_eq!(r.http_proxy.as_deref(), Some(""), "no proxy anywhere: none");
        assert!(r.problems.is_empty());

        let bad = CacheProxyDefaults {
            http_proxy: "not a proxy".into(),
            no_proxy: String::new(),
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("--default-http-proxy")
        );
    }

    #[test]
    fn proxy_values() {
        for ok in [
            "squid.caching.svc.cluster.local:3128",
            "10.0.0.1:3128",
            "[fd00::1]:3128",
            "http://squid.caching.svc:3128",
            "https://proxy.example.org",
            "HTTP://proxy:8080/",
        ] {
            assert_eq!(validate_proxy(ok), Ok(()), "{ok}");
        }
        for bad in [
            "squid",
            "squid:",
            "squid:99999",
            "squid:0",
            "http://user:pw@squid:3128",
            "user@squid:3128",
            "socks5://squid:1080",
            "squid :3128",
            "-bad-.host:3128",
            "http://squid:3128/?x=1",
            "http://",
        ] {
            assert!(validate_proxy(bad).is_err(), "{bad}");
        }
        assert!(!redact("http://user:pw@squid:3128").contains("pw"));
    }

    #[test]
    fn no_proxy_lists() {
        for ok in [
            "",
            "*",
            "localhost",
            "localhost,127.0.0.1,.svc,.cluster.local,10.0.0.0/8,fd00::/8",
            "registry.example.org:5000, .corp",
            "::1",
        ] {
            assert_eq!(validate_no_proxy(ok), Ok(()), "{ok}");
        }
        for bad in [
            "a,,b",
            "10.0.0.0/33",
            "host:port",
            "a\tb",
            "$(id)",
            "a b",
            "*.example.org",
        ] {
            assert!(validate_no_proxy(bad).is_err(), "{bad}");
        }
    }
}
