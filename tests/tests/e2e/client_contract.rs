//! The client's contract with a build step (docs/configuration.md §5), against a real server process.

use std::{process::Command, time::Instant};

use super::util::{
    NEXUS, ServerProcess, assert_exported_nothing, binary, env_file, repo_root, run, stderr, stdout,
};

fn example_server() -> ServerProcess {
    ServerProcess::start(&repo_root().join("deploy/examples/cluster-config.yaml"))
}

/// Runs `script` in bash with `proxyconf` on PATH and the server's address exported.
fn bash(server: &ServerProcess, script: &str) -> std::process::Output {
    let bin_dir = binary("proxyconf").parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run(Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .env("PATH", path)
        .env("PROXYCONF_SERVER", &server.url))
}

#[test]
fn eval_env_exports_exactly_the_hermeto_variables() {
    let server = example_server();
    let out = bash(
        &server,
        r#"eval "$(proxyconf env --quiet)"; env | grep '^HERMETO_' | sort"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let want: String = super::standins::example_variables()
        .iter()
        .map(|(name, url)| format!("{name}={url}\n"))
        .collect();
    assert_eq!(stdout(&out), want, "gomod-sum is never exported");
}

#[test]
fn opting_out_exports_nothing() {
    let server = example_server();
    let out = run(server
        .client()
        .args(["env", "--enable-package-registry-proxy=false"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("enable-package-registry-proxy to false"),
        "{}",
        stderr(&out)
    );

    let out = bash(
        &server,
        r#"eval "$(proxyconf env --enable-package-registry-proxy=false)"; env | grep -c '^HERMETO_' || true"#,
    );
    assert_eq!(stdout(&out).trim(), "0");
}

#[test]
fn formats_and_scope() {
    let server = example_server();
    let out = run(server.client().args([
        "env",
        "--format",
        "json",
        "--package-managers",
        "npm,gomod-sum",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!({ "HERMETO_NPM__PROXY_URL": format!("{NEXUS}/npm/") })
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hermeto.env");
    let out = run(server
        .client()
        .args([
            "env",
            "--format",
            "dotenv",
            "--package-managers",
            "pip",
            "--output",
        ])
        .arg(&file));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "--output writes the file, not stdout");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        format!("HERMETO_PIP__PROXY_URL={NEXUS}/pypi/simple/\n")
    );
}

#[test]
fn exec_passes_variables_and_exit_codes() {
    let server = example_server();
    let out = run(server.client().args([
        "exec",
        "--quiet",
        "--package-managers",
        "npm",
        "--",
        "sh",
        "-c",
        r#"printf '%s\n' "$HERMETO_NPM__PROXY_URL" "${HERMETO_PIP__PROXY_URL:-unset}"; exit 7"#,
    ]));
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{NEXUS}/npm/\nunset\n"));

    let out = run(server.client().args(["exec", "--", "/nonexistent/hermeto"]));
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot run /nonexistent/hermeto"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn credentials_in_a_url_fail_closed_without_printing_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster-config.env");
    std::fs::write(
        &file,
        env_file(&[
            ("npm", "https://admin:hunter2-s3cret@nexus.svc/npm/"),
            ("pip", &format!("{NEXUS}/pypi/simple/")),
        ]),
    )
    .unwrap();
    let server = ServerProcess::start(&file);

    let out = run(server.client().args(["env"]));
    assert_eq!(out.status.code(), Some(78), "misconfigured exit code");
    assert_exported_nothing(&out);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    assert!(err.contains("package-registry-proxy-npm-url"), "{err}");
    assert!(err.contains("https://***@nexus.svc/npm/"), "{err}");
    assert!(!err.contains("hunter2") && !err.contains("admin:"), "{err}");

    let exec = run(server.client().args(["exec", "--", "true"]));
    assert_eq!(exec.status.code(), Some(78), "exec fails closed too");

    // A build that does not use npm is not blocked by npm's problem.
    let pip = run(server.client().args(["env", "--package-managers", "pip"]));
    assert!(pip.status.success(), "{}", stderr(&pip));
    assert!(stdout(&pip).contains("HERMETO_PIP__PROXY_URL"));

    let status = run(server.client().args(["status"]));
    assert!(!stdout(&status).contains("hunter2"));
    assert!(
        server.logs().iter().all(|l| !l.contains("hunter2")),
        "nor in the server's logs"
    );
}

#[test]
fn hostile_characters_survive_eval_and_execute_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let value = format!(
        "https://nexus.svc/it's/$(touch${{IFS}}{m})/`touch${{IFS}}{m}`/\"x\"/;x",
        m = marker.display()
    );
    let file = dir.path().join("cluster-config.env");
    std::fs::write(&file, env_file(&[("npm", &value)])).unwrap();
    let server = ServerProcess::start(&file);

    let out = bash(
        &server,
        r#"eval "$(proxyconf env --quiet)"; printf '%s' "$HERMETO_NPM__PROXY_URL""#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), value, "the value round-trips unchanged");
    assert!(!marker.exists(), "nothing was executed");
}

#[test]
fn unreachable_server_fails_within_the_deadline() {
    // Bind and drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let out = run(Command::new(binary("proxyconf")).args([
        "env",
        "--server",
        &format!("127.0.0.1:{port}"),
        "--timeout",
        "1s",
    ]));
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(69), "unavailable exit code");
    assert_exported_nothing(&out);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("within 1s"), "{err}");
    assert!(took.as_secs_f64() < 3.0, "took {took:?} for a 1s deadline");

    let direct = run(Command::new(binary("proxyconf")).args([
        "env",
        "--server",
        &format!("127.0.0.1:{port}"),
        "--timeout",
        "300ms",
        "--allow-direct-on-unavailable",
    ]));
    assert!(direct.status.success(), "explicit opt-in goes on");
    assert_eq!(stdout(&direct), "");
    assert!(stderr(&direct).contains("WITHOUT the package registry proxy"));
}

#[test]
fn server_refuses_to_start_on_a_missing_file() {
    let out = run(Command::new(binary("proxyconf-server")).args([
        "--listen",
        "127.0.0.1:0",
        "--configmap-file",
        "/nonexistent/cm.yaml",
    ]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot read ConfigMap file /nonexistent/cm.yaml"),
        "{err}"
    );
}
