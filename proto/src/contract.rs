//! Rules of the API contract that the server and the client must apply identically: how booleans
//! are spelled, what a package manager name is, and which variable names may be exported.

/// The administrator's switch of the package registry proxy (ADR 0064). Missing or empty: false.
pub const ALLOW_PACKAGE_REGISTRY_PROXY_KEY: &str = "allow-package-registry-proxy";

/// The administrator's switch of the OCI cache proxy (ADR 0057). Missing or empty: allowed.
pub const ALLOW_CACHE_PROXY_KEY: &str = "allow-cache-proxy";

/// Parses a boolean exactly like Go's `strconv.ParseBool` (what the incumbent uses, and how
/// Tekton parameters are usually spelled): `1 t T TRUE true True` are true, `0 f F FALSE false
/// False` are false, anything else (including surrounding whitespace) is `None`.
pub fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Whether `name` is a valid package manager name: lowercase ASCII letters, digits and single `-`
/// between them, starting with a letter. A `--` is refused because it would become `__`, the
/// separator between Hermeto's config sections.
pub fn is_valid_package_manager_name(name: &str) -> bool {
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

/// The package manager whose URL Hermeto has no setting for (the Go checksum database, ADR 0064).
/// It is resolved and served, but never exported: Hermeto's config model forbids unknown fields.
pub const GOMOD_SUM: &str = "gomod-sum";

/// The Hermeto variable that carries the proxy URL of package manager `name`, or `None` for
/// `gomod-sum`. Hermeto reads `HERMETO_` + section + `__` + field, so `npm` is
/// `HERMETO_NPM__PROXY_URL`; a package manager Hermeto adds later gets the same conventional name.
/// `name` must satisfy [`is_valid_package_manager_name`]. The server names variables with it and
/// the client accepts exactly the names it gives.
pub fn hermeto_variable(name: &str) -> Option<String> {
    if name == GOMOD_SUM {
        return None;
    }
    let mut variable = String::with_capacity(name.len() + "HERMETO___PROXY_URL".len());
    variable.push_str("HERMETO_");
    variable.extend(name.chars().map(|c| match c {
        '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    variable.push_str("__PROXY_URL");
    Some(variable)
}

/// Whether a package registry proxy variable may be exported under `name`: `HERMETO_[A-Z0-9_]+`.
/// Anything else (`PATH`, `LD_PRELOAD`, …) is refused by the client whatever the server says.
pub fn is_hermeto_variable_name(name: &str) -> bool {
    name.strip_prefix("HERMETO_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_go_spelling() {
        for v in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(v), Some(true), "{v:?}");
        }
        for v in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(v), Some(false), "{v:?}");
        }
        for v in [
            "", "yes", "no", "on", "off", "tRUE", "y", " true", "true\n", "2", "-1",
        ] {
            assert_eq!(parse_go_bool(v), None, "{v:?}");
        }
    }

    #[test]
    fn package_manager_names() {
        for bad in [
            "", "NPM", "Npm", "-npm", "npm-", "go--mod", "1pm", "np m", "npm_x", "ñpm",
        ] {
            assert!(!is_valid_package_manager_name(bad), "{bad:?}");
        }
        for good in ["a", "npm", "gomod-sum", "x1", "a-b-c"] {
            assert!(is_valid_package_manager_name(good), "{good:?}");
        }
    }

    #[test]
    fn variable_names() {
        for good in [
            "HERMETO_NPM__PROXY_URL",
            "HERMETO_X",
            "HERMETO_GENERIC_2__PROXY_URL",
        ] {
            assert!(is_hermeto_variable_name(good), "{good}");
        }
        for bad in [
            "PATH",
            "LD_PRELOAD",
            "HERMETO_",
            "HERMETO_npm",
            "hermeto_NPM",
            "HERMETO_NPM;PATH",
            "HERMETO_NPM=x",
            "XHERMETO_NPM",
            "HERMETO_NPM\n",
        ] {
            assert!(!is_hermeto_variable_name(bad), "{bad:?}");
        }
    }
}
