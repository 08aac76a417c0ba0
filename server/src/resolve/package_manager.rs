//! Package manager names and the Hermeto variable each one is exported as (docs/configuration.md §2).

pub use proxyconf_proto::contract::{
    hermeto_variable, is_valid_package_manager_name as is_valid_name,
};

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
