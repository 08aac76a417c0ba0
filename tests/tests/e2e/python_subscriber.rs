//! The Python subscriber of `docs/subscribing.md` against a real server: stubs generated from the
//! proto with grpcio-tools, the first answer, then a change. Needs `grpcio` and `grpcio-tools`
//! (`.ci/run` installs them); without them the test fails in CI and is skipped elsewhere.

use std::process::Command;

use super::util::{
    LineProcess, NEXUS, ServerProcess, env_file, replace_file, repo_root, run, stderr,
};

fn grpcio_available() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn python_subscriber_follows_changes() {
    if !grpcio_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with grpcio and grpcio-tools is required in CI"
        );
        eprintln!("skipped: pip install grpcio grpcio-tools to run the Python subscriber test");
        return;
    }
    let root = repo_root();
    let dir = tempfile::tempdir().unwrap();
    let generated = dir.path().join("gen");
    std::fs::create_dir(&generated).unwrap();
    let out = run(Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(root.join("proto"))
        .arg(format!("--python_out={}", generated.display()))
        .arg(format!("--grpc_python_out={}", generated.display()))
        .arg(root.join("proto/proxyconf/v1/proxyconf.proto")));
    assert!(out.status.success(), "protoc: {}", stderr(&out));

    let file = dir.path().join("cluster-config.env");
    std::fs::write(&file, env_file(&[("npm", &format!("{NEXUS}/npm/"))])).unwrap();
    let server = ServerProcess::start(&file);
    let address = server.url.trim_start_matches("http://").to_owned();

    let lines = LineProcess::spawn(
        Command::new("python3")
            .arg(root.join("docs/examples/subscriber.py"))
            .args([&address, "npm,pip", "--count", "2"])
            .env("PYTHONPATH", &generated),
    );
    let first = lines.next();
    assert!(first.contains("DECISION_ACTIVE"), "{first}");
    assert!(first.ends_with(&format!("npm={NEXUS}/npm/")), "{first}");

    replace_file(
        &file,
        &env_file(&[
            ("npm", &format!("{NEXUS}/npm/")),
            ("pip", &format!("{NEXUS}/pypi/simple/")),
        ]),
    );
    let second = lines.next();
    assert!(
        second.contains(&format!("pip={NEXUS}/pypi/simple/")),
        "{second}"
    );
    assert_ne!(
        first.split(' ').next(),
        second.split(' ').next(),
        "a new version"
    );
    let status = lines.wait();
    assert!(status.success(), "the subscriber stops after --count 2");
}
