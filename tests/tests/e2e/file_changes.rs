//! A change to the ConfigMap file, or to a ConfigMap volume as kubelet projects it, reaches
//! `proxyconf env` and `proxyconf watch`.

use super::util::{
    LineProcess, NEXUS, ServerProcess, env_file, eventually, replace_file, run, stderr, stdout,
};

#[test]
fn a_file_edit_reaches_env_and_watch() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster-config.env");
    std::fs::write(&file, env_file(&[("npm", &format!("{NEXUS}/npm/"))])).unwrap();
    let server = ServerProcess::start(&file);

    let lines =
        LineProcess::spawn(
            server
                .client()
                .args(["watch", "--package-managers", "npm,pip"]),
        );

    let first = lines.next_json();
    assert_eq!(first["active"], true);
    assert_eq!(first["package_managers"][0]["name"], "npm");

    // An edit that does not concern this watcher's scope sends nothing; the next line is the
    // edit that does.
    replace_file(
        &file,
        &env_file(&[
            ("npm", &format!("{NEXUS}/npm/")),
            ("cargo", &format!("{NEXUS}/cargo/")),
        ]),
    );
    eventually("env sees cargo", || {
        stdout(&run(server.client().args(["env", "--quiet"]))).contains("HERMETO_CARGO__PROXY_URL")
    });
    replace_file(
        &file,
        &env_file(&[
            ("npm", &format!("{NEXUS}/npm/")),
            ("pip", &format!("{NEXUS}/pypi/simple/")),
        ]),
    );
    let second = lines.next_json();
    assert_ne!(second["version"], first["version"]);
    let names: Vec<&str> = second["package_managers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["npm", "pip"]);

    let env = run(server.client().args(["env", "--quiet"]));
    assert!(
        stdout(&env).contains("HERMETO_PIP__PROXY_URL"),
        "{}",
        stderr(&env)
    );
    assert!(!stdout(&env).contains("HERMETO_CARGO__PROXY_URL"));

    // A broken file keeps the last good state, visible as stale in status; the watcher is told
    // without polling (the same version, marked stale).
    std::fs::write(&file, "this line is not key=value\nbroken\n").unwrap();
    let stale = lines.next_json();
    assert_eq!(
        stale["version"], second["version"],
        "the content did not change"
    );
    assert_eq!(stale["source"]["stale"], true, "{stale}");
    let status = stdout(&run(server.client().args(["status"])));
    assert!(status.contains("state:            stale for "), "{status}");
    assert!(
        !status.contains("synced"),
        "one state, no contradiction: {status}"
    );
    assert!(status.contains(") stale; version"), "history: {status}");
    let env = run(server.client().args(["env", "--quiet"]));
    assert!(env.status.success());
    assert!(
        stdout(&env).contains("HERMETO_PIP__PROXY_URL"),
        "last good state served"
    );

    // Turning the proxy off reaches the watcher (the source recovers with it).
    replace_file(&file, "allow-package-registry-proxy=false\n");
    let third = lines.next_json();
    assert_eq!(third["active"], false);
    assert_eq!(third["source"]["stale"], false, "not stale: {third}");
    assert_eq!(third["decision"], "DECISION_ADMINISTRATOR_OFF");
}

#[test]
fn a_mounted_configmap_volume_and_its_data_swap_reach_watch() {
    use proxyconf_e2e::fixtures::project_configmap;
    let dir = tempfile::tempdir().unwrap();
    let npm = format!("{NEXUS}/npm/");
    project_configmap(
        dir.path(),
        "2026_12_02_06_00_00.1",
        &[
            ("allow-package-registry-proxy", "true"),
            ("package-registry-proxy-npm-url", &npm),
        ],
    );
    let server = ServerProcess::start_dir(dir.path());
    let env = run(server.client().args(["env", "--quiet"]));
    assert!(env.status.success(), "{}", stderr(&env));
    assert_eq!(
        stdout(&env),
        format!("export HERMETO_NPM__PROXY_URL='{npm}'\n")
    );

    let lines = LineProcess::spawn(server.client().args(["watch"]));
    let first = lines.next_json();
    assert_eq!(
        first["source"]["location"],
        format!("directory {}", dir.path().display())
    );
    let group = format!("{NEXUS}/npm-group/");
    project_configmap(
        dir.path(),
        "2026_12_02_06_05_00.2",
        &[
            ("allow-package-registry-proxy", "true"),
            ("package-registry-proxy-npm-url", &group),
        ],
    );
    let second = lines.next_json();
    assert_eq!(second["package_managers"][0]["url"], group.as_str());
}
