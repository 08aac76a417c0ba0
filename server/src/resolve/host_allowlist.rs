//! The operator's allowlist of proxy hosts (`--allowed-proxy-hosts`, docs/configuration.md §4): globs in the style
//! of the kubelet's credential provider `matchImages`, so that an administrator's ConfigMap can only
//! point builds at proxies the operator approved. Without an allowlist every valid host is
//! accepted: there are deliberately no built-in registry domain patterns (Flux issue 1974).
//!
//! A pattern is `host` or `host:port`. The host is matched label by label and must have the same
//! number of labels, so a glob never spans a dot: `*.svc.cluster.local` matches
//! `nginx.svc.cluster.local` but not `nginx.caching.svc.cluster.local` (write
//! `*.*.svc.cluster.local` for that), and a label may hold a partial glob (`nexus-*.example.org`).
//! Without a port any port matches; with one, the URL's port (or its scheme's default) must equal
//! it. Matching ignores ASCII case.

use std::fmt;

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    labels: Vec<String>,
    port: Option<u16>,
    text: String,
}

/// Why an `--allowed-proxy-hosts` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowlistError {
    #[error("the allowlist is empty; leave the flag out to allow every host")]
    Empty,
    #[error("{pattern:?} is not a host pattern: {why}")]
    Pattern { pattern: String, why: &'static str },
}

/// A list of patterns; a host is allowed when any matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAllowlist(Vec<HostPattern>);

impl fmt::Display for HostAllowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<&str> = self.0.iter().map(|p| p.text.as_str()).collect();
        f.write_str(&texts.join(","))
    }
}

impl HostAllowlist {
    /// Parses a comma-separated list of patterns.
    pub fn parse(list: &str) -> Result<Self, AllowlistError> {
        let patterns = list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(HostPattern::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if patterns.is_empty() {
            return Err(AllowlistError::Empty);
        }
        Ok(Self(patterns))
    }

    /// Whether `host` (as `url` gives it: lowercase, IPv6 in brackets) on `port` is allowed.
    pub fn allows(&self, host: &str, port: Option<u16>) -> bool {
        self.0.iter().any(|p| p.matches(host, port))
    }
}

impl HostPattern {
    /// Parses `host` or `host:port`, with `*` and `?` globs in host labels.
    pub fn parse(pattern: &str) -> Result<Self, AllowlistError> {
        let invalid = |why: &'static str| {
            Err(AllowlistError::Pattern {
                pattern: pattern.to_owned(),
                why,
            })
        };
        let (host, port) = if pattern.starts_with('[') {
            match pattern.split_once(']') {
                Some((v6, "")) => (&pattern[..=v6.len()], None),
                Some((v6, rest)) => match rest.strip_prefix(':') {
                    Some(port) => (&pattern[..=v6.len()], Some(port)),
                    None => return invalid("only ':port' may follow an IPv6 address"),
                },
                None => return invalid("an IPv6 address needs its closing ']'"),
            }
        } else {
            match pattern.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (pattern, None),
            }
        };
        let port = match port.map(str::parse::<u16>) {
            None => None,
            Some(Ok(p)) if p > 0 => Some(p),
            Some(_) => return invalid("the port must be a number from 1 to 65535"),
        };
        if host.is_empty() {
            return invalid("no host");
        }
        let host = host.to_ascii_lowercase();
        let labels: Vec<String> = if host.starts_with('[') {
            // Canonical form (RFC 5952), as the url crate prints the hosts it is compared with.
            match host[1..host.len() - 1].parse::<std::net::Ipv6Addr>() {
                Ok(address) if host.ends_with(']') => vec![format!("[{address}]")],
                _ => return invalid("a bracketed host must be an IPv6 address"),
            }
        } else {
            host.split('.').map(str::to_owned).collect()
        };
        for label in &labels {
            // A bracketed host was checked as an IPv6 address above; a `[` elsewhere is not.
            let ok = !label.is_empty()
                && (host.starts_with('[')
                    || label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'*' | b'?')));
            if !ok {
                return invalid("labels hold letters, digits, '-', and the globs '*' and '?'");
            }
        }
        Ok(Self {
            labels,
            port,
            text: pattern.to_owned(),
        })
    }

    /// Whether `host` on `port` matches.
    pub fn matches(&self, host: &str, port: Option<u16>) -> bool {
        if self.port.is_some() && self.port != port {
            return false;
        }
        // Only an IPv6 pattern matches an IPv6 address: a glob never does.
        if host.starts_with('[') != self.labels[0].starts_with('[') {
            return false;
        }
        let host = host.to_ascii_lowercase();
        let labels: Vec<&str> = if host.starts_with('[') {
            vec![host.as_str()]
        } else {
            host.split('.').collect()
        };
        labels.len() == self.labels.len()
            && self
                .labels
                .iter()
                .zip(&labels)
                .all(|(pattern, label)| glob(pattern.as_bytes(), label.as_bytes()))
    }
}

/// `*` matches any run of bytes, `?` one byte; nothing else is special.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(list: &str, host: &str, port: Option<u16>) -> bool {
        HostAllowlist::parse(list).unwrap().allows(host, port)
    }

    #[test]
    fn table() {
        let table: &[(&str, &str, Option<u16>, bool)] = &[
            (
                "*.svc.cluster.local",
                "nginx.svc.cluster.local",
                Some(443),
                true,
            ),
            (
                "*.svc.cluster.local",
                "nginx.caching.svc.cluster.local",
                Some(443),
                false,
            ),
            (
                "*.*.svc.cluster.local",
                "nginx.caching.svc.cluster.local",
                Some(443),
                true,
            ),
            ("*.svc.cluster.local", "svc.cluster.local", Some(443), false),
            (
                "nexus.example.org:8443",
                "nexus.example.org",
                Some(8443),
                true,
            ),
            (
                "nexus.example.org:8443",
                "nexus.example.org",
                Some(443),
                false,
            ),
            ("nexus.example.org", "nexus.example.org", Some(8443), true),
            ("NEXUS.Example.org", "nexus.example.org", Some(443), true),
            (
                "nexus-*.example.org",
                "nexus-eu.example.org",
                Some(443),
                true,
            ),
            (
                "nexus-*.example.org",
                "proxy-eu.example.org",
                Some(443),
                false,
            ),
            ("k8s.*", "k8s.io", Some(443), true),
            ("*.io", "registry.k8s.io", Some(443), false),
            ("ne?us.example.org", "nexus.example.org", None, true),
            ("10.0.0.*", "10.0.0.12", Some(80), true),
            ("10.0.0.*", "10.0.1.12", Some(80), false),
            ("[fd00::1]:8443", "[fd00::1]", Some(8443), true),
            ("[fd00::1]", "[fd00::2]", Some(8443), false),
            ("[fd00:0:0::1]:8443", "[fd00::1]", Some(8443), true),
            (
                "a.example.org,*.svc.cluster.local",
                "x.svc.cluster.local",
                Some(80),
                true,
            ),
        ];
        for (list, host, port, want) in table {
            assert_eq!(
                allows(list, host, *port),
                *want,
                "{list} vs {host}:{port:?}"
            );
        }
    }

    #[test]
    fn invalid_patterns() {
        for bad in [
            "",
            ",",
            "host:0",
            "host:99999",
            "host:port",
            "a..b",
            "a/b",
            "[zz]",
            "a b",
            "[fd00::1]8443",
        ] {
            assert!(HostAllowlist::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            HostAllowlist::parse("*.svc.cluster.local, nexus.example.org:8443")
                .unwrap()
                .to_string(),
            "*.svc.cluster.local,nexus.example.org:8443"
        );
    }

    #[test]
    fn globs() {
        assert!(glob(b"*", b""));
        assert!(glob(b"a*c", b"abbbc"));
        assert!(!glob(b"a*c", b"abbb"));
        assert!(glob(b"*a*", b"xxaxx"));
        assert!(!glob(b"?", b""));
    }
}
