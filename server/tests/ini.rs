//! The INI file of `konflux-build-cli` as a `--configmap-file` source, at the library level: it
//! parses to the data of the equivalent ConfigMap, resolves with the same rules, and the file
//! source follows it as it changes.

use std::{collections::BTreeMap, path::Path, time::Duration};

use futures::StreamExt;
use proptest::prelude::*;
use proxyconf_server::{
    resolve::{self, Policy, ProblemCode},
    source::{
        ConfigMapState, SourceEvent,
        file::{self, FileSourceOptions},
        file_format::{self, FileFormat},
    },
};

fn data_of(state: &ConfigMapState) -> &BTreeMap<String, String> {
    match state {
        ConfigMapState::Present { data, .. } => data,
        ConfigMapState::Missing => panic!("a file is never a missing ConfigMap"),
    }
}

/// The file of konflux-build-cli's own integration test (`/etc/konflux-config`, no extension,
/// indented as its Go source indents it).
const INCUMBENT_TEST_FILE: &str = "
\t\t            [cache-proxy]
\t\t\t\t\tallow-cache-proxy = false
\t\t\t\t\thttp-proxy = some.proxy.net
\t\t\t\t\tno-proxy = localhost:1234
\t\t\t\t";

#[tokio::test]
async fn the_incumbents_file_is_read_where_the_server_used_to_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("konflux-config");
    std::fs::write(&path, INCUMBENT_TEST_FILE).unwrap();
    // What the server reads at start before it serves.
    let state = file::read(&path).await.expect("an INI file is a source");
    let data = data_of(&state);
    assert_eq!(data["allow-cache-proxy"], "false");
    assert_eq!(data["http-proxy"], "some.proxy.net");
    assert_eq!(data["no-proxy"], "localhost:1234");

    let resolved = resolve::resolve(data, &Policy::default());
    assert!(!resolved.cache_proxy.allowed);
    // konflux-build-cli passes `some.proxy.net` on as it is; proxyconf's rule wants host:port.
    let codes: Vec<_> = resolved
        .cache_proxy
        .problems
        .iter()
        .map(|p| (p.key.as_str(), p.code))
        .collect();
    assert_eq!(codes, [("http-proxy", ProblemCode::InvalidProxy)]);
}

#[test]
fn an_ini_file_resolves_as_the_same_configmap() {
    let ini = "; platform config\n\
               [cache-proxy]\n\
               http-proxy = squid.caching.svc.cluster.local:3128\n\
               no-proxy = .svc ; in-cluster\n\
               [artifact-registry]\n\
               allow-package-registry-proxy = true\n\
               package-registry-proxy-npm-url = https://nexus.example/repository/npm-proxy/\n\
               package-registry-proxy-gomod-url = https://nexus.example/go/,direct\n\
               package-registry-proxy-NPM-url = https://nexus.example/npm/\n";
    let env = "http-proxy=squid.caching.svc.cluster.local:3128\n\
               no-proxy=.svc\n\
               allow-package-registry-proxy=true\n\
               package-registry-proxy-npm-url=https://nexus.example/repository/npm-proxy/\n\
               package-registry-proxy-gomod-url=https://nexus.example/go/,direct\n\
               package-registry-proxy-NPM-url=https://nexus.example/npm/\n";
    let from_ini = file_format::parse(Path::new("platform.ini"), ini).unwrap();
    let from_env = file_format::parse(Path::new("cluster-config.env"), env).unwrap();
    assert_eq!(from_ini, from_env);
    let policy = Policy::default();
    let resolved = resolve::resolve(data_of(&from_ini), &policy);
    assert_eq!(resolved, resolve::resolve(data_of(&from_env), &policy));
    assert!(resolved.allowed);
    assert_eq!(
        resolved.package_managers.keys().collect::<Vec<_>>(),
        ["npm"]
    );
    let problems: Vec<_> = resolved.problems.iter().map(|p| p.code).collect();
    assert_eq!(
        problems,
        [ProblemCode::InvalidPackageManager, ProblemCode::InvalidUrl]
    );
}

#[test]
fn located_parse_gives_lines_and_notes() {
    let ini = "[artifact-registry]\n\
               allow-package-registry-proxy = true\n\
               http-proxy = squid:3128\n";
    let parsed = file_format::parse_located(Path::new("x"), ini).unwrap();
    assert_eq!(parsed.format, FileFormat::Ini);
    assert_eq!(parsed.lines["allow-package-registry-proxy"], 2);
    assert_eq!(parsed.notes.len(), 1);
    assert_eq!(parsed.notes[0].line, 3);
    assert_eq!(
        parsed.state,
        file_format::parse(Path::new("x"), ini).unwrap()
    );
}

#[tokio::test]
async fn the_file_source_follows_an_ini_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("platform-config.ini");
    let write = |allow: &str| {
        std::fs::write(
            &path,
            format!(
                "[artifact-registry]\nallow-package-registry-proxy = {allow}\n\
                 package-registry-proxy-npm-url = https://nexus.example/npm/\n"
            ),
        )
        .unwrap();
    };
    write("true");
    let mut source = file::follow(
        path.clone(),
        FileSourceOptions {
            poll_interval: Duration::from_millis(20),
            settle: Duration::from_millis(5),
        },
    );
    let mut next = async || match tokio::time::timeout(Duration::from_secs(5), source.events.next())
        .await
        .expect("an event within 5s")
        .expect("the source does not end")
    {
        SourceEvent::Observed(state) => Ok(data_of(&state).clone()),
        SourceEvent::Failed(error) => Err(proxyconf_server::source::error_chain(&*error)),
    };
    assert_eq!(
        next().await.unwrap()["allow-package-registry-proxy"],
        "true"
    );
    write("false");
    assert_eq!(
        next().await.unwrap()["allow-package-registry-proxy"],
        "false"
    );
    std::fs::write(&path, "[artifact-registry\n").unwrap();
    let error = next().await.unwrap_err();
    assert!(error.contains("line 1: unclosed section header"), "{error}");
    write("1");
    assert_eq!(next().await.unwrap()["allow-package-registry-proxy"], "1");
}

proptest! {
    #[test]
    fn ini_parsing_never_panics(content in prop_oneof![
        any::<String>(),
        "[\\[\\]a-z:;#=\"'`\\\\ \\n\\t-]{0,200}",
        "(\\[(cache-proxy|artifact-registry)\\]\\n)?([a-z-]{1,12} ?[=:] ?[ -~]{0,20}\\n){0,6}",
    ]) {
        let _ = file_format::parse(Path::new("cm.ini"), &content);
        if let Ok(parsed) = file_format::parse_located(Path::new("cm.ini"), &content) {
            let data = data_of(&parsed.state);
            prop_assert!(parsed.lines.keys().eq(data.keys()));
            let _ = resolve::resolve(data, &Policy::default());
        }
    }
}
