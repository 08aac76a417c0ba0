//! SIGTERM on one of two replicas: its Watch streams end, and `proxyconf watch` goes on from the
//! other replica without printing a version twice and without missing a change.

use std::{collections::BTreeSet, time::Duration};

use super::util::{
    LineProcess, NEXUS, ServerProcess, env_file, eventually, replace_file, run, stdout,
};

fn subscribers(server: &ServerProcess) -> u64 {
    let out = run(server.client().args(["status", "--json"]));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    status["subscribers"].as_str().map_or_else(
        || status["subscribers"].as_u64().unwrap_or(0),
        |s| s.parse().unwrap(),
    )
}

#[test]
fn watch_survives_sigterm_of_its_replica_without_duplicate_or_gap() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster-config.env");
    std::fs::write(&file, env_file(&[("npm", &format!("{NEXUS}/npm/"))])).unwrap();
    let mut a = ServerProcess::start(&file);
    let mut b = ServerProcess::start(&file);

    let lines =
        LineProcess::spawn(
            a.client()
                .args(["watch", "--server", &format!("{},{}", a.url, b.url)]),
        );
    let mut versions = Vec::new();
    let first = lines.next_json();
    versions.push(first["version"].as_str().unwrap().to_owned());

    // Find the replica the watch is on, and terminate it.
    eventually("the watch is counted by one replica", || {
        subscribers(&a) + subscribers(&b) == 1
    });
    let (victim, survivor) = if subscribers(&a) == 1 {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    let status = victim.terminate();
    assert!(status.success(), "graceful exit: {status:?}");
    eventually("the watch moved to the other replica", || {
        subscribers(survivor) == 1
    });

    // A change after the failover arrives exactly once.
    replace_file(
        &file,
        &env_file(&[
            ("npm", &format!("{NEXUS}/npm/")),
            ("pip", &format!("{NEXUS}/pypi/simple/")),
        ]),
    );
    let second = lines.next_json();
    versions.push(second["version"].as_str().unwrap().to_owned());
    assert_eq!(second["package_managers"][1]["name"], "pip", "no gap");
    assert!(
        lines.silent_for(Duration::from_millis(500)),
        "nothing else printed: the resumed stream did not repeat the version it had"
    );
    let distinct: BTreeSet<&String> = versions.iter().collect();
    assert_eq!(
        distinct.len(),
        versions.len(),
        "no version printed twice: {versions:?}"
    );

    let env = run(survivor.client().args(["env", "--quiet"]));
    assert!(stdout(&env).contains("HERMETO_PIP__PROXY_URL"));
}
