//! The INI form of the configuration (`konflux-build-cli`'s file, gopkg.in/ini.v1 rules):
//! `source::file_format::ini::parse`.
//!
//! Properties:
//! - nothing panics; an error names a line of the file;
//! - every key read is one proxyconf reads (the cache proxy keys, the switch, the
//!   `package-registry-proxy-<pm>-url` keys), with a line of the file; notes name lines of the
//!   file and show values redacted (no control characters);
//! - what is read round-trips: the data written back as an INI file (each key in its section,
//!   values verbatim in backquotes) reads back identically.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use proxyconf_server::{
    resolve::{ALLOW_KEY, cache_proxy},
    source::file_format::ini::{self, ARTIFACT_REGISTRY_SECTION, CACHE_PROXY_SECTION},
};

fn section_of(key: &str) -> Option<&'static str> {
    if [
        cache_proxy::ALLOW_KEY,
        cache_proxy::HTTP_PROXY_KEY,
        cache_proxy::NO_PROXY_KEY,
    ]
    .contains(&key)
    {
        Some(CACHE_PROXY_SECTION)
    } else if key == ALLOW_KEY
        || (key.starts_with("package-registry-proxy-") && key.ends_with("-url"))
    {
        Some(ARTIFACT_REGISTRY_SECTION)
    } else {
        None
    }
}

fuzz_target!(|text: &str| {
    let lines = text.split_inclusive('\n').count().max(1);
    let file = match ini::parse(text) {
        Ok(file) => file,
        Err((line, syntax)) => {
            assert!(
                (1..=lines).contains(&line),
                "line {line} of {lines}: {syntax}"
            );
            let _ = syntax.to_string();
            return;
        }
    };
    let mut sections: BTreeMap<&str, Vec<(&String, &String)>> = BTreeMap::new();
    for (key, value) in &file.data {
        let section = section_of(key).unwrap_or_else(|| panic!("{key:?} is read"));
        sections.entry(section).or_default().push((key, value));
        let line = file.lines.get(key).copied();
        assert!(
            line.is_some_and(|l| (1..=lines).contains(&l)),
            "{key}: {line:?}"
        );
    }
    for note in &file.notes {
        assert!((1..=lines).contains(&note.line), "{note:?}");
        assert!(!note.value.chars().any(char::is_control), "{note:?}");
    }

    // Written back: keys and values in backquotes, which ini.v1 takes verbatim.
    if file
        .data
        .iter()
        .all(|(k, v)| !k.contains('`') && !v.contains('`'))
    {
        let mut written = String::new();
        for (section, entries) in &sections {
            written.push_str(&format!("[{section}]\n"));
            for (key, value) in entries {
                written.push_str(&format!("`{key}` = `{value}`\n"));
            }
        }
        match ini::parse(&written) {
            Ok(again) => assert_eq!(again.data, file.data, "{written:?}"),
            Err(error) => panic!("{error:?} in {written:?}"),
        }
    }
});
