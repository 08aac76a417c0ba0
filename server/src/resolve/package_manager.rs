//! Package manager names and the Hermeto variable each one is exported as (SPEC §2).

/// The package manager whose URL Hermeto has no setting for (the Go checksum database, ADR 0064).
/// It is resolved and served, but never exported: Hermeto's config model forbids unknown fields.
pub const GOMOD_SUM: &str = "gomod-sum";

pub use proxyconf_proto::contract::is_valid_package_manager_name as is_valid_name;

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
            let variable = hermeto_variable(name);
            assert_eq!(variable.as_deref(), want, "{name}");
            if let Some(v) = variable {
                assert!(
                    proxyconf_proto::contract::is_hermeto_variable_name(&v),
                    "{v}"
                );
            }
        }
    }
}
