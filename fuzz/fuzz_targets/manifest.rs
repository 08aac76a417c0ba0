//! The ConfigMap manifest parser (YAML or JSON, as `kubectl get configmap -o yaml|json` prints
//! it): `source::file_format::parse_manifest`, and `parse` for a `.yaml` file.
//!
//! Properties:
//! - nothing panics, errors render;
//! - a manifest is never read as a missing ConfigMap;
//! - a blank file (blanks and comments only) is `Empty`, never a ConfigMap, and otherwise `parse`
//!   of a `.yaml` file is exactly `parse_manifest`;
//! - the data read round-trips: the same data written as a JSON manifest (what `kubectl -o json`
//!   prints, also valid YAML) reads back identically, for keys whose JSON form YAML can read (at
//!   most 1024 characters) and data without characters YAML cannot carry raw (U+FFFE, U+FFFF,
//!   C1 controls; JSON writes them raw, YAML rejects them: a clear error, tested in
//!   server/tests/fuzz.rs).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use proxyconf_server::source::{
    ConfigMapState, error_chain,
    file_format::{self, FormatError},
};

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let manifest = file_format::parse_manifest(text);
    match &manifest {
        // YAML reads no implicit key over 1024 characters, so a key whose JSON form is longer
        // cannot round-trip through it (no ConfigMap the API server holds has one: its keys are
        // at most 253 letters, digits, `-`, `_` and `.`).
        Ok(ConfigMapState::Present {
            data,
            resource_version,
        }) if data
            .keys()
            .all(|k| serde_json::to_string(k).unwrap().chars().count() <= 1024)
            && data
                .iter()
                .all(|(k, v)| yaml_printable(k) && yaml_printable(v)) =>
        {
            let json = serde_json::json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": { "name": "cluster-config", "resourceVersion": resource_version },
                "data": data,
            })
            .to_string();
            match file_format::parse_manifest(&json) {
                Ok(ConfigMapState::Present {
                    data: again,
                    resource_version: version_again,
                }) => {
                    assert_eq!(&again, data, "{json}");
                    assert_eq!(&version_again, resource_version, "{json}");
                }
                other => panic!("the JSON form of an accepted manifest: {other:?}\n{json}"),
            }
        }
        Ok(ConfigMapState::Present { .. }) => {}
        Ok(ConfigMapState::Missing) => panic!("a manifest is never a missing ConfigMap"),
        Err(error) => {
            let _ = error_chain(error);
        }
    }

    match file_format::parse(Path::new("cluster-config.yaml"), text) {
        Err(FormatError::Empty) => {
            assert!(manifest.is_err(), "a blank file read as a ConfigMap");
        }
        parsed => assert_eq!(parsed.ok(), manifest.ok()),
    }
});

/// Whether YAML can carry `text` raw: its printable set (YAML 1.2, c-printable).
fn yaml_printable(text: &str) -> bool {
    text.chars().all(|c| {
        matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}')
            || matches!(c, '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
    })
}
