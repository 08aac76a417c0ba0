//! The server binary watching a Kubernetes API (the wire-protocol fake) through a kubeconfig,
//! and the client binary seeing each change of the ConfigMap.

use proxyconf_e2e::fake_apiserver::FakeApiServer;

use super::util::{LineProcess, NEXUS, ServerProcess, eventually, run, stderr, stdout};

#[test]
fn the_client_sees_each_change_of_the_watched_configmap() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = runtime.block_on(FakeApiServer::start("konflux-info", "cluster-config"));
    let npm = format!("{NEXUS}/npm/");
    api.apply(&[
        ("allow-package-registry-proxy", "true"),
        ("package-registry-proxy-npm-url", &npm),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let server = ServerProcess::start_kubernetes(&kubeconfig);

    let env = run(server.client().args(["env", "--quiet"]));
    assert!(env.status.success(), "{}", stderr(&env));
    assert_eq!(
        stdout(&env),
        format!("export HERMETO_NPM__PROXY_URL='{npm}'\n")
    );

    let lines = LineProcess::spawn(server.client().args(["watch"]));
    let first = lines.next_json();
    assert_eq!(first["source"]["resource_version"], "101");

    let pip = format!("{NEXUS}/pypi/simple/");
    api.apply(&[
        ("allow-package-registry-proxy", "true"),
        ("package-registry-proxy-npm-url", &npm),
        ("package-registry-proxy-pip-url", &pip),
    ]);
    let second = lines.next_json();
    assert_eq!(second["package_managers"][1]["url"], pip.as_str());

    api.delete();
    let third = lines.next_json();
    assert_eq!(third["active"], false);
    assert_eq!(third["source"]["state"], "SOURCE_STATE_MISSING");
    let env = run(server.client().args(["env", "--quiet"]));
    assert!(env.status.success());
    assert_eq!(stdout(&env), "", "a deleted ConfigMap turns the proxy off");

    api.apply(&[
        ("allow-package-registry-proxy", "true"),
        ("package-registry-proxy-npm-url", &npm),
    ]);
    assert_eq!(lines.next_json()["active"], true);

    // Behind the client calls: one list and one watch, nothing per call.
    eventually("one list, one watch", || {
        api.count("list") == 1 && api.count("watch") == 1
    });
    let status = run(server.client().args(["status"]));
    assert!(
        stdout(&status).contains("kubernetes konflux-info/cluster-config"),
        "{}",
        stdout(&status)
    );
}
