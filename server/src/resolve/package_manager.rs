//! Package manager names and the Hermeto variable each one is exported as (SPEC §2).

/// The package manager whose URL Hermeto has no setting for (the Go checksum database, ADR 0064).
/// It is resolved and served, but never exported: Hermeto's config model forbids unknown fields.
pub const GOMOD_SUM: &str = "gomod-sum";

/// Whether `name` is a valid package manager name: lowercase ASCII letters, digits and single `-`
/// between them, starting with a letter. A `--` is refused because it would become `__`, the
/// separator between Hermeto's config sections.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    first.is_ascii_lowercase()
        && !name.ends_with('-')
        && !name.contains("--")
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// The Hermeto variable that carries the proxy URL of `name`, or `None` for `gomod-sum`.
///
/// Hermeto reads `HERMETO_` + section + `__` + field, so `npm` is `HERMETO_NPM__PROXY_URL`. A
/// package manager Hermeto adds later gets the same conventional name with no change here.
/// `name` must satisfy [`is_valid_name`].
pub fn hermeto_variable(name: &str) -> Option<String> {
    if name == GOMOD_SUM {
        return None;
    }
    let section: String = name
        .chars()
        .map(|c| match c {
            '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    Some(format!("HERMETO_{section}__PROXY_URL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_of_the_table_and_beyond() {
        let table = [
            ("npm", Some("HERMETO_NPM__PROXY_URL")),
            ("pnpm", Some("HERMETO_PNPM__PROXY_URL")),
            ("yarn", Some("HERMETO_YARN__PROXY_URL")),
            ("gomod", Some("HERMETO_GOMOD__PROXY_URL")),
            ("pip", Some("HERMETO_PIP__PROXY_URL")),
            ("cargo", Some("HERMETO_CARGO__PROXY_URL")),
            ("bundler", Some("HERMETO_BUNDLER__PROXY_URL")),
            ("gomod-sum", None),
            ("rpm", Some("HERMETO_RPM__PROXY_URL")),
            ("generic-2", Some("HERMETO_GENERIC_2__PROXY_URL")),
        ];
        for (name, want) in table {
            assert!(is_valid_name(name), "{name}");
            assert_eq!(hermeto_variable(name).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn names() {
        for bad in [
            "", "NPM", "Npm", "-npm", "npm-", "go--mod", "1pm", "np m", "npm_x", "ñpm", "npm.x",
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
        for good in ["a", "npm", "gomod-sum", "x1", "a-b-c"] {
            assert!(is_valid_name(good), "{good:?}");
        }
    }
}
