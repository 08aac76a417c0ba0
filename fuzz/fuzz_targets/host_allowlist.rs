//! The operator's host allowlist (`--allowed-proxy-hosts`): `resolve::host_allowlist`.
//!
//! Input: lines of text: a pattern list, a host, a port (anything else: none), and text to fill
//! the pattern's globs with.
//!
//! Properties:
//! - nothing panics; a parsed list prints as its entries and parses back to the same list;
//! - matching agrees with a reference matcher (label by label, same number of labels, `*` any run
//!   of bytes, `?` one byte, ASCII case ignored, the pattern's port if it has one);
//! - a glob never matches an IPv6 address: only a bracketed pattern allows a bracketed host;
//! - a host made from a pattern by filling its globs (never with a dot) is allowed by it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxyconf_server::resolve::host_allowlist::{HostAllowlist, HostPattern};

struct Input<'a> {
    list: &'a str,
    host: &'a str,
    port: Option<u16>,
    fill: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(text: &'a str) -> Self {
        let mut lines = text.splitn(4, '\n');
        Self {
            list: lines.next().unwrap_or_default(),
            host: lines.next().unwrap_or_default(),
            port: lines.next().and_then(|p| p.parse().ok()),
            fill: lines.next().unwrap_or_default().as_bytes(),
        }
    }
}

/// `*` matches any run of bytes, `?` exactly one; by dynamic programming.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let mut row = vec![false; text.len() + 1];
    row[0] = true;
    for &p in pattern {
        let mut next = vec![false; text.len() + 1];
        if p == b'*' {
            let mut any = false;
            for (j, cell) in next.iter_mut().enumerate() {
                any |= row[j];
                *cell = any;
            }
        } else {
            for j in 0..text.len() {
                next[j + 1] = row[j] && (p == b'?' || p == text[j]);
            }
        }
        row = next;
    }
    row[text.len()]
}

fn labels(host: &str) -> Vec<&str> {
    if host.starts_with('[') {
        vec![host]
    } else {
        host.split('.').collect()
    }
}

/// Whether the single, unbracketed pattern `pattern` (already accepted) allows `host` on `port`.
fn reference(pattern: &str, host: &str, port: Option<u16>) -> bool {
    let (pattern_host, pattern_port) = match pattern.split_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().unwrap())),
        None => (pattern, None),
    };
    if pattern_port.is_some() && pattern_port != port {
        return false;
    }
    if host.starts_with('[') {
        return false;
    }
    let (pattern_host, host) = (pattern_host.to_ascii_lowercase(), host.to_ascii_lowercase());
    let (want, have) = (labels(&pattern_host), labels(&host));
    want.len() == have.len()
        && want
            .iter()
            .zip(&have)
            .all(|(p, h)| glob(p.as_bytes(), h.as_bytes()))
}

fuzz_target!(|text: &str| {
    let input = Input::new(text);
    let Ok(list) = HostAllowlist::parse(input.list) else {
        return;
    };
    let entries: Vec<&str> = input
        .list
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(list.to_string(), entries.join(","));
    assert_eq!(HostAllowlist::parse(&list.to_string()).as_ref(), Ok(&list));

    let allowed = list.allows(input.host, input.port);
    assert_eq!(
        allowed,
        entries.iter().any(|entry| HostPattern::parse(entry)
            .unwrap()
            .matches(input.host, input.port)),
        "a list allows what one of its patterns matches"
    );
    if input.host.starts_with('[') && allowed {
        assert!(
            entries.iter().any(|e| e.starts_with('[')),
            "{:?} allows the IPv6 host {:?}",
            input.list,
            input.host
        );
    }
    if entries.len() == 1 && !entries[0].starts_with('[') {
        assert_eq!(
            allowed,
            reference(entries[0], input.host, input.port),
            "{:?} vs {:?} port {:?}",
            entries[0],
            input.host,
            input.port
        );

        // Fill the globs: `*` with a run of the fill bytes, `?` with one; never a dot.
        let (pattern_host, pattern_port) = match entries[0].split_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok()),
            None => (entries[0], None),
        };
        let mut fill = input
            .fill
            .iter()
            .map(|b| b"abcdefghijklmnopqrstuvwxyz0123456789-"[usize::from(*b) % 37]);
        let mut host = String::new();
        for c in pattern_host.chars() {
            match c {
                '*' => {
                    let n = fill.next().map_or(0, |b| usize::from(b % 4));
                    host.extend(fill.by_ref().take(n).map(char::from));
                }
                '?' => host.push(fill.next().map_or('x', char::from)),
                c => host.push(c),
            }
        }
        let port = pattern_port.or(input.port);
        assert!(
            list.allows(&host, port),
            "{:?} does not allow {host:?} made from it",
            entries[0]
        );
    }
});
