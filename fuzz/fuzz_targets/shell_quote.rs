//! The client's shell quoting (`render::shell_quote`, used for `proxyconf env`'s `export` lines),
//! against a POSIX shell word parser (the shell-words crate) as the reference.
//!
//! Input: a value (any string without NUL, which an environment cannot hold).
//!
//! Properties:
//! - the quoted value parses back as exactly one word, equal to the value;
//! - appended to other words it stays one word (nothing can end the quoting early);
//! - a rendered `export NAME='value'` line parses as `export` and `NAME=value`.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use proxyconf::render::{Format, render, shell_quote};

fuzz_target!(|value: &str| {
    if value.contains('\0') {
        return;
    }
    let quoted = shell_quote(value);
    assert_eq!(
        shell_words::split(&quoted).as_deref(),
        Ok(&[value.to_owned()][..]),
        "{quoted}"
    );

    let line = format!("a {quoted} b");
    assert_eq!(
        shell_words::split(&line),
        Ok(vec!["a".to_owned(), value.to_owned(), "b".to_owned()]),
        "{line}"
    );

    let variables = BTreeMap::from([("HERMETO_NPM__PROXY_URL".to_owned(), value.to_owned())]);
    let rendered = render(&variables, Format::Shell);
    assert_eq!(
        shell_words::split(&rendered),
        Ok(vec![
            "export".to_owned(),
            format!("HERMETO_NPM__PROXY_URL={value}")
        ]),
        "{rendered}"
    );
});
