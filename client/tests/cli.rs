//! The `proxyconf` binary's command line, without a server: help, usage errors and their exit
//! codes. (Being an integration test of this package also makes `cargo test --workspace` build the
//! binary that the end-to-end tests in `tests/` run.)

use std::process::{Command, Output};

fn proxyconf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_proxyconf"))
        .args(args)
        .env_remove("PROXYCONF_SERVER")
        .output()
        .expect("run proxyconf")
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let out = proxyconf(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "--package-managers npm,gomod --record /tmp/proxy-outcome.json -- hermeto fetch-deps",
        "PROXYCONF_SERVER",
        "69 server unavailable",
        "78 configuration invalid",
    ] {
        assert!(help.contains(want), "--help lacks {want:?}:\n{help}");
    }
}

#[test]
fn usage_errors_exit_2_with_one_clear_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["env", "--enable-package-registry-proxy=maybe"],
            "not a boolean",
        ),
        (
            &["env", "--package-managers", "npm,NPM"],
            "not a package manager name",
        ),
        (&["env", "--format", "xml"], "invalid value 'xml'"),
        (
            &["env", "--server", "ftp://x:1"],
            "expected http://HOST:PORT",
        ),
        (&["--timeout", "soon", "env"], "--timeout"),
        (&["exec"], "required"),
    ];
    for (args, want) in cases {
        let out = proxyconf(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        // `eval "$(proxyconf env …)"` must fail on a usage error too.
        let guard = if args.contains(&"env") {
            "(exit 2)\n"
        } else {
            ""
        };
        assert!(
            String::from_utf8_lossy(&out.stdout).ends_with(guard),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(out.stdout.is_empty(), guard.is_empty(), "{args:?}");
    }
}
