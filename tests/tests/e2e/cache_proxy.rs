//! The init task's use: the OCI cache proxy settings as variables and as Tekton results files.

use std::path::Path;

use super::util::{NEXUS, ServerProcess, env_file, run, stderr, stdout};

const SQUID: &str = "squid.caching.svc.cluster.local:3128";

fn results(dir: &Path) -> (String, String) {
    (
        std::fs::read_to_string(dir.join("http-proxy")).unwrap(),
        std::fs::read_to_string(dir.join("no-proxy")).unwrap(),
    )
}

fn server_with(extra: &str, args: &[&str]) -> (tempfile::TempDir, ServerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster-config.env");
    let content = env_file(&[("npm", &format!("{NEXUS}/npm/"))]) + extra;
    std::fs::write(&file, content).unwrap();
    let server = ServerProcess::start_with_args(&file, args);
    (dir, server)
}

#[test]
fn enabled_cache_proxy_gives_variables_and_tekton_results_with_the_server_default() {
    let (_dir, server) = server_with("", &[]);
    let results_dir = tempfile::tempdir().unwrap();
    let out = run(server
        .client()
        .args([
            "env",
            "--quiet",
            "--enable-cache-proxy=true",
            "--tekton-results",
        ])
        .arg(results_dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "export HERMETO_NPM__PROXY_URL='{NEXUS}/npm/'\n\
             export HTTPS_PROXY='{SQUID}'\nexport HTTP_PROXY='{SQUID}'\nexport NO_PROXY=''\n"
        )
    );
    assert_eq!(
        results(results_dir.path()),
        (SQUID.to_owned(), String::new())
    );

    // Not enabled (the pipeline parameter's default): empty results, no proxy variables.
    let out = run(server
        .client()
        .args(["env", "--quiet", "--tekton-results"])
        .arg(results_dir.path()));
    assert!(out.status.success());
    assert!(!stdout(&out).contains("HTTP_PROXY"));
    assert_eq!(results(results_dir.path()), (String::new(), String::new()));
}

#[test]
fn configmap_values_and_server_flags() {
    let (_dir, server) = server_with(
        "http-proxy=http://proxy.corp.example:8080\nno-proxy=.svc,.cluster.local,10.0.0.0/8\n",
        &["--default-http-proxy", "fallback.example:3128"],
    );
    let results_dir = tempfile::tempdir().unwrap();
    let out = run(server
        .client()
        .args([
            "env",
            "--quiet",
            "--enable-cache-proxy=true",
            "--format",
            "json",
        ])
        .arg("--tekton-results")
        .arg(results_dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["HTTP_PROXY"], "http://proxy.corp.example:8080");
    assert_eq!(json["NO_PROXY"], ".svc,.cluster.local,10.0.0.0/8");
    assert_eq!(
        results(results_dir.path()),
        (
            "http://proxy.corp.example:8080".to_owned(),
            ".svc,.cluster.local,10.0.0.0/8".to_owned()
        )
    );

    let (_dir, default_server) =
        server_with("", &["--default-http-proxy", "fallback.example:3128"]);
    let out = run(default_server.client().args([
        "env",
        "--quiet",
        "--enable-cache-proxy=true",
        "--format",
        "json",
    ]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["HTTP_PROXY"], "fallback.example:3128",
        "the server's default, not the client's"
    );
}

#[test]
fn administrator_off_gives_empty_results() {
    let (_dir, server) = server_with("allow-cache-proxy=false\n", &[]);
    let results_dir = tempfile::tempdir().unwrap();
    let out = run(server
        .client()
        .args(["env", "--enable-cache-proxy=true", "--tekton-results"])
        .arg(results_dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("OCI cache proxy not used"),
        "{}",
        stderr(&out)
    );
    assert_eq!(results(results_dir.path()), (String::new(), String::new()));
}

#[test]
fn invalid_proxy_fails_closed_only_for_pipelines_that_enable_it() {
    let (_dir, server) = server_with("http-proxy=http://user:s3cret@squid:3128\n", &[]);
    let results_dir = tempfile::tempdir().unwrap();
    let out = run(server
        .client()
        .args(["env", "--enable-cache-proxy=true", "--tekton-results"])
        .arg(results_dir.path()));
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("http-proxy"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("s3cret"));
    assert!(
        !results_dir.path().join("http-proxy").exists(),
        "no results on failure"
    );

    let out = run(server.client().args(["env", "--quiet"]));
    assert!(
        out.status.success(),
        "the prefetch step does not care: {}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("HERMETO_NPM__PROXY_URL"));
}
