//! Fuzz target for the shell quoting (proptest; see `server/tests/fuzz.rs` for running longer):
//! any value, once quoted by `proxyconf env`, comes back unchanged through `bash -c 'eval …'`
//! and runs nothing.

use std::process::Command;

use proptest::{prelude::*, test_runner::Config};
use proxyconf::render::shell_quote;

fn cases(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config::with_cases(cases)
}

/// Values full of what shells treat specially.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,30}",
        "[$`'\"\\\\(){};&|<>!*?~#\n\t ]{0,20}",
        "[a-z$`'(){}]{0,10}\\$\\([a-z ]{0,10}\\)[a-z']{0,5}",
        any::<String>().prop_map(|s| s.replace('\0', "")),
    ]
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn any_value_round_trips_through_bash_eval(values in proptest::collection::vec(hostile(), 1..6)) {
        let dir = tempfile::tempdir().unwrap();
        let mut script = format!("cd {}\n", shell_quote(&dir.path().display().to_string()));
        for (i, value) in values.iter().enumerate() {
            script.push_str(&format!("export V{i}={}\n", shell_quote(value)));
        }
        // What `eval "$(proxyconf env)"` does with the lines, then print each value NUL-separated.
        let program = format!(
            "eval \"$1\"; for i in $(seq 0 {}); do v=V$i; printf '%s\\0' \"${{!v}}\"; done",
            values.len() - 1
        );
        let out = Command::new("bash")
            .args(["-c", &program, "bash", &script])
            .output()
            .unwrap();
        prop_assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let printed: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
            .collect();
        prop_assert_eq!(&printed[..values.len()], &values[..]);
        prop_assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing ran");
    }
}

#[test]
fn command_substitution_is_inert() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let value = format!(
        "$(touch {m}) `touch {m}` '; touch {m}; '",
        m = marker.display()
    );
    let script = format!("export X={}", shell_quote(&value));
    let out = Command::new("bash")
        .args(["-c", "eval \"$1\"; printf '%s' \"$X\"", "bash", &script])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), value);
    assert!(!marker.exists());
}
