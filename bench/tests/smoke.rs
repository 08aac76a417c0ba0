//! The benchmark suite at its smallest scale, against the real binaries: proves that every
//! measurement runs. Figures from a debug build mean nothing and are not checked.

use std::process::Command;

#[test]
fn the_whole_suite_runs_at_smoke_scale() {
    let out = Command::new(env!("CARGO_BIN_EXE_proxyconf-bench"))
        .args(["all", "--smoke"])
        .output()
        .expect("run proxyconf-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "resolve a typical ConfigMap",
        "resolve a 1 MiB ConfigMap",
        "server idle",
        "Kubernetes API requests for 50 Resolve calls | 0 |",
        "unary Resolve, 256 concurrent",
        "Resolve latency at 200 requests/s",
        "`proxyconf env` whole process",
        "`Resolve` p99, 100 sequential calls, under rapid reset",
        "server memory with 50 idle subscribers",
        "one ConfigMap change reaches 50 subscribers",
        "server memory with 20 connections of one Watch stream each",
    ] {
        assert!(stdout.contains(row), "missing {row:?} in\n{stdout}");
    }
}
