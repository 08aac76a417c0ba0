//! Boolean ConfigMap values, parsed exactly like Go's `strconv.ParseBool`, which the incumbent
//! (`konflux-build-cli`) uses: the same ConfigMap must mean the same thing to both.

/// Parses `1 t T TRUE true True` as true and `0 f F FALSE false False` as false; anything else
/// (including surrounding whitespace) is `None`.
pub fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_go_bool;

    #[test]
    fn every_go_spelling() {
        for v in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(v), Some(true), "{v:?}");
        }
        for v in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(v), Some(false), "{v:?}");
        }
        for v in [
            "", "yes", "no", "on", "off", "tRUE", "y", " true", "true\n", "2", "-1", "enabled",
        ] {
            assert_eq!(parse_go_bool(v), None, "{v:?}");
        }
    }
}
