//! The env-file parser (`kubectl create configmap --from-env-file` rules):
//! `source::file_format::parse_env_file`, and `parse` for `.env` and extension-less files.
//!
//! Properties:
//! - nothing panics, errors render and name a line of the file;
//! - every key read is a valid ConfigMap key and no value spans lines;
//! - what is read round-trips: written back as `key=value` lines it reads back identically
//!   (values ending in `\r` excepted: line splitting drops a final `\r`, as kubectl's does);
//! - `parse` of a `.env` file is `parse_env_file`, except that a blank file is `Empty`; it never
//!   yields an empty ConfigMap (that is what a truncated write leaves);
//! - an extension-less file detected as an env file parses exactly as one.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use proxyconf_server::source::{
    ConfigMapState,
    file_format::{self, FileFormat, FormatError},
};

fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let parsed = file_format::parse_env_file(text);
    match &parsed {
        Ok(data) => {
            for (key, value) in data {
                assert!(is_key(key), "{key:?}");
                assert!(!value.contains('\n'), "{value:?}");
            }
            if data.values().all(|v| !v.ends_with('\r')) {
                let written: String = data.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
                assert_eq!(
                    file_format::parse_env_file(&written).ok().as_ref(),
                    Some(data),
                    "{written:?}"
                );
            }
        }
        Err(error) => {
            let lines = text.lines().count();
            match error {
                FormatError::EnvLine { line, .. } | FormatError::EnvKey { line, .. } => {
                    assert!((1..=lines).contains(line), "{error} of {lines} lines");
                }
                other => panic!("an env file cannot fail with {other:?}"),
            }
            let _ = error.to_string();
        }
    }

    let as_state = |data: &std::collections::BTreeMap<String, String>| ConfigMapState::Present {
        data: data.clone(),
        resource_version: None,
    };
    match file_format::parse(Path::new("cluster-config.env"), text) {
        Err(FormatError::Empty) => {
            assert!(
                !parsed.as_ref().is_ok_and(|d| !d.is_empty()),
                "a blank file holds keys: {parsed:?}"
            );
        }
        Ok(state) => {
            assert_eq!(Some(&state), parsed.as_ref().ok().map(as_state).as_ref());
            let ConfigMapState::Present { data, .. } = state else {
                unreachable!()
            };
            assert!(!data.is_empty(), "a file with content read as no keys");
        }
        Err(error) => assert!(parsed.is_err(), "{error}"),
    }

    if FileFormat::detect(Path::new("cluster-config"), text) == FileFormat::EnvFile {
        let untyped = file_format::parse(Path::new("cluster-config"), text);
        let typed = file_format::parse(Path::new("cluster-config.env"), text);
        assert_eq!(untyped.ok(), typed.ok());
    }
});
