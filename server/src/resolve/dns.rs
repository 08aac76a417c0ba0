//! The one DNS-name rule that proxy URLs, `http-proxy` hosts and `no-proxy` entries share:
//! labels of letters, digits and `-` (not at either end), 1–63 bytes, 253 in all.

/// Whether `label` is a DNS label.
#[inline]
pub fn is_label(label: &[u8]) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && label[0] != b'-'
        && label[label.len() - 1] != b'-'
}

/// Whether `name` is a DNS name: labels separated by single dots.
#[inline]
pub fn is_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(|l| is_label(l.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        for ok in [
            "nexus",
            "nexus.svc.cluster.local",
            "a-b.c",
            "x1",
            &"a".repeat(63),
        ] {
            assert!(is_name(ok), "{ok}");
        }
        let too_long_label = "a".repeat(64);
        let too_long_name = ["a"; 127].join(".") + ".bc";
        for bad in [
            "",
            ".",
            "a..b",
            "-a",
            "a-",
            "a_b",
            "a.",
            &too_long_label,
            &too_long_name,
        ] {
            assert!(!is_name(bad), "{bad}");
        }
    }
}
