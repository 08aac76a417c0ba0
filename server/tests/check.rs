//! `proxyconf-server check`, the real binary on realistic files (tests/fixtures/): the output,
//! the JSON document, the exit codes; and that serving an INI file works.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use k8s_openapi::serde_json::{self, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_proxyconf-server");
const EXAMPLE: &str = "deploy/examples/cluster-config.yaml";
const ALLOWLIST: &str = "--allowed-proxy-hosts=*.caching.svc.cluster.local";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> String {
    format!("server/tests/fixtures/{name}")
}

/// What a run of `proxyconf-server check ARGS` (from the repository's root) gave.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn check(args: &[&str]) -> Run {
    let out = Command::new(BINARY)
        .arg("check")
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("run proxyconf-server check");
    Run {
        code: out.status.code().expect("an exit code"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn json(args: &[&str]) -> (i32, Value) {
    let run = check(&[&["--format", "json"], args].concat());
    let doc = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.stdout));
    (run.code, doc)
}

#[test]
fn the_example_configmap_is_valid() {
    let run = check(&[EXAMPLE]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout,
        "deploy/examples/cluster-config.yaml: valid: package registry proxy allowed, 8 package \
         managers (bundler, cargo, gomod, gomod-sum, npm, pip, pnpm, yarn), cache proxy allowed \
         (squid.caching.svc.cluster.local:3128)\n"
    );
    assert_eq!(run.stderr, "");
    // Its hosts are all in-cluster: valid under the operator's allowlist too.
    assert_eq!(check(&[ALLOWLIST, EXAMPLE]).code, 0);
}

#[test]
fn a_cluster_config_env_as_clusters_keep_it() {
    let file = fixture("cluster-config.env");
    let run = check(&["--allowed-proxy-hosts", "nexus.example", &file]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(
        run.stdout,
        format!(
            "{file}: valid: package registry proxy allowed, 4 package managers (gomod, npm, pip, \
             yarn), cache proxy allowed (squid.caching.svc.cluster.local:3128)\n"
        )
    );
    // The same file against an allowlist that does not name Nexus: a problem per URL, each on
    // its line.
    let (code, doc) = json(&[ALLOWLIST, &file]);
    assert_eq!(code, 78);
    let lines: Vec<(&str, u64)> = doc[0]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["code"].as_str().unwrap(), p["line"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        lines,
        [
            ("HOST_NOT_ALLOWED", 10),
            ("HOST_NOT_ALLOWED", 11),
            ("HOST_NOT_ALLOWED", 12),
            ("HOST_NOT_ALLOWED", 13),
        ]
    );
}

#[test]
fn kustomize_output_is_read_for_its_cluster_config() {
    let file = fixture("kustomized.yaml");
    let run = check(&[ALLOWLIST, &file]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(
        run.stdout,
        format!(
            "{file}: valid: package registry proxy allowed, 3 package managers (gomod, npm, pip), \
             cache proxy allowed (squid.caching.svc.cluster.local:3128)\n"
        )
    );

    let dir = tempfile::tempdir().unwrap();
    let content = std::fs::read_to_string(repo_root().join(&file)).unwrap();
    let renamed = dir.path().join("renamed.yaml");
    std::fs::write(
        &renamed,
        content.replace("name: cluster-config", "name: cluster-config-v2"),
    )
    .unwrap();
    let twice = dir.path().join("twice.yaml");
    std::fs::write(&twice, format!("{content}---\n{content}")).unwrap();
    let (code, doc) = json(&[renamed.to_str().unwrap(), twice.to_str().unwrap()]);
    assert_eq!(code, 78);
    assert_eq!(
        doc[0]["problems"][0]["reason"],
        "none of the 3 documents is the ConfigMap cluster-config (in namespace konflux-info or \
         without one); ConfigMaps found: konflux-info/cluster-config-v2"
    );
    assert_eq!(doc[0]["problems"][0]["code"], "UNPARSABLE");
    assert!(
        doc[1]["problems"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("2 documents are the ConfigMap cluster-config"),
        "{doc}"
    );
}

#[test]
fn a_broken_env_file_shows_every_problem_where_it_is() {
    let file = fixture("broken.env");
    let run = check(&[ALLOWLIST, &file]);
    assert_eq!(run.code, 78, "{}", run.stderr);
    let want = format!(
        "\
{file}:2: problem: allow-package-registry-proxy = yes
  not a boolean (use true or false); the proxy is treated as not allowed until this is fixed
  to fix: write true or false (Go's strconv.ParseBool spellings: 1 t T TRUE true True, 0 f F FALSE false False)
{file}:4: problem: package-registry-proxy-npm-url = https://***@artifact-registry-proxy.caching.svc.cluster.local/repository/npm/
  URL contains credentials (user-info); credentials belong in the reverse proxy, never in the ConfigMap; npm is not proxied until this is fixed
  to fix: remove the credentials from the URL: the reverse proxy in front of the registry adds them
{file}:6: problem: package-registry-proxy-gomod-url = https://artifact-registry-proxy.caching.svc.cluster.local/repository/go/,direct
  gomod takes a single proxy URL, not a GOPROXY list (a list could fall back to 'direct' and bypass the policy proxy); gomod is not proxied until this is fixed
  to fix: keep one URL, without ',direct' or '|' alternatives
{file}:8: problem: package-registry-proxy-pip-url = https://pypi-mirror.example.org/simple/
  the host is not in the server's --allowed-proxy-hosts (*.caching.svc.cluster.local); pip is not proxied until this is fixed
  to fix: point the URL at a host that --allowed-proxy-hosts (*.caching.svc.cluster.local) matches, or have the operator allow this one
{file}:11: problem: http-proxy = squid.caching.svc.cluster.local
  expected host:port, e.g. squid.caching.svc.cluster.local:3128
  to fix: write host:port (e.g. squid.caching.svc.cluster.local:3128) or an http(s):// URL, without credentials
{file}: invalid: 5 problems
"
    );
    assert_eq!(run.stdout, want);
    assert!(!run.stdout.contains("s3cret") && !run.stdout.contains("ci-bot"));
}

#[test]
fn json_for_ci() {
    let broken = fixture("broken.env");
    let (code, doc) = json(&[ALLOWLIST, EXAMPLE, &broken]);
    assert_eq!(code, 78);
    let files = doc.as_array().expect("an array of files");
    assert_eq!(files.len(), 2);

    assert_eq!(files[0]["file"], EXAMPLE);
    assert_eq!(files[0]["format"], "manifest");
    assert_eq!(files[0]["valid"], true);
    assert_eq!(files[0]["error"], Value::Null);
    assert!(
        files[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("package registry proxy allowed, 8 package managers")
    );
    assert_eq!(files[0]["problems"], serde_json::json!([]));

    assert_eq!(files[1]["file"], broken);
    assert_eq!(files[1]["format"], "env");
    assert_eq!(files[1]["valid"], false);
    assert_eq!(files[1]["summary"], Value::Null);
    let problems = files[1]["problems"].as_array().unwrap();
    let rows: Vec<(&str, &str, u64)> = problems
        .iter()
        .map(|p| {
            (
                p["key"].as_str().unwrap(),
                p["code"].as_str().unwrap(),
                p["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("allow-package-registry-proxy", "INVALID_BOOLEAN", 2),
            ("package-registry-proxy-npm-url", "INVALID_URL", 4),
            ("package-registry-proxy-gomod-url", "INVALID_URL", 6),
            ("package-registry-proxy-pip-url", "HOST_NOT_ALLOWED", 8),
            ("http-proxy", "INVALID_PROXY", 11),
        ]
    );
    assert_eq!(
        problems[1]["value"],
        "https://***@artifact-registry-proxy.caching.svc.cluster.local/repository/npm/"
    );
    for p in problems {
        assert!(!p["reason"].as_str().unwrap().is_empty(), "{p}");
        assert!(!p["action"].as_str().unwrap().is_empty(), "{p}");
    }
    assert!(!doc.to_string().contains("s3cret"));
}

#[test]
fn broken_values_the_server_would_reject() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("allow-package-registry-proxy: yes", "INVALID_BOOLEAN"),
        (
            "package-registry-proxy-gomod-url: https://artifact-registry-proxy.caching.svc.cluster.local/go/,direct",
            "INVALID_URL",
        ),
        (
            "http-proxy: squid.caching.svc.cluster.local",
            "INVALID_PROXY",
        ),
        (
            "package-registry-proxy-npm-url: https://registry.npmjs.org/",
            "HOST_NOT_ALLOWED",
        ),
        (
            "package-registry-proxy-npm-url: https://user:hunter2@artifact-registry-proxy.caching.svc.cluster.local/npm/",
            "INVALID_URL",
        ),
    ];
    for (entry, code) in cases {
        let path = dir.path().join("cm.yaml");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cluster-config\ndata:\n  {entry}\n"
            ),
        )
        .unwrap();
        let (exit, doc) = json(&[ALLOWLIST, path.to_str().unwrap()]);
        assert_eq!(exit, 78, "{entry}");
        let problem = &doc[0]["problems"][0];
        assert_eq!(problem["code"], code, "{entry}: {doc}");
        assert_eq!(problem["line"], 6, "{entry}: the key's line in the YAML");
        assert!(!doc.to_string().contains("hunter2"), "{doc}");
    }
}

#[test]
fn an_unparsable_file_is_a_problem_on_one_line() {
    let file = fixture("broken.yaml");
    let run = check(&[&file]);
    assert_eq!(run.code, 78);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert_eq!(
        lines[0],
        format!(
            "{file}:6: problem: not a valid ConfigMap manifest: error: line 6 column 33: unclosed \
             quote"
        )
    );
    assert!(lines[1].starts_with("  to fix: "), "{}", lines[1]);
    assert_eq!(lines[2], format!("{file}: invalid: 1 problem"));

    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "cut.env",
            "allow-package-registry-proxy=true\nhalf a line\n",
        ),
        ("empty.yaml", "# nothing\n"),
        ("binary", "\u{0}\u{1}"),
    ];
    for (name, content) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let run = check(&[path.to_str().unwrap()]);
        assert_eq!(run.code, 78, "{name}: {}", run.stdout);
        assert!(run.stdout.contains(": problem: "), "{name}: {}", run.stdout);
    }
    let not_utf8 = dir.path().join("latin1.env");
    std::fs::write(&not_utf8, b"a=\xe9\n").unwrap();
    let (code, doc) = json(&[not_utf8.to_str().unwrap()]);
    assert_eq!(code, 78);
    assert_eq!(doc[0]["problems"][0]["code"], "UNPARSABLE");
}

#[test]
fn exit_codes() {
    assert_eq!(check(&[EXAMPLE]).code, 0);
    assert_eq!(check(&[&fixture("broken.env")]).code, 78);

    // A missing file is a usage error, even beside valid ones; the others are still checked.
    let run = check(&[EXAMPLE, "no/such/cluster-config.yaml"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stdout
            .starts_with("deploy/examples/cluster-config.yaml: valid")
    );
    assert!(
        run.stderr
            .starts_with("proxyconf-server check: cannot read no/such/cluster-config.yaml: "),
        "{}",
        run.stderr
    );
    let (code, doc) = json(&["no/such/cluster-config.yaml"]);
    assert_eq!(code, 2);
    assert!(doc[0]["error"].as_str().unwrap().contains("cannot read"));
    assert_eq!(check(&["server/tests"]).code, 2, "a directory");

    // Usage: no file, a wrong flag, a bad default.
    assert_eq!(check(&[]).code, 2);
    assert_eq!(check(&["--format", "yaml", EXAMPLE]).code, 2);
    assert_eq!(check(&["--allowed-proxy-hosts", "a b", EXAMPLE]).code, 2);
    let run = check(&["--default-http-proxy", "not a proxy", EXAMPLE]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("--default-http-proxy"),
        "{}",
        run.stderr
    );
}

#[test]
fn ini_files_of_konflux_build_cli() {
    let good = fixture("platform-config.ini");
    let run = check(&[&good]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(
        run.stdout,
        format!(
            "{good}: valid: package registry proxy allowed, 3 package managers (gomod, npm, yarn), \
             cache proxy allowed (squid.caching.svc.cluster.local:3128)\n"
        )
    );

    let quirks = fixture("quirks.ini");
    let (code, doc) = json(&[&quirks]);
    assert_eq!(code, 78, "the #fragment kept in the value is a problem");
    assert_eq!(doc[0]["format"], "ini");
    let codes = |list: &str| -> Vec<(String, u64)> {
        doc[0][list]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["code"].as_str().unwrap().to_owned(),
                    f["line"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(codes("problems"), [("INVALID_URL".to_owned(), 4)]);
    assert_eq!(
        codes("warnings"),
        [
            ("INI_INLINE_COMMENT".to_owned(), 4),
            ("INI_INLINE_COMMENT".to_owned(), 5),
            ("INI_MISPLACED_KEY".to_owned(), 7),
            ("INI_UNKNOWN_KEY".to_owned(), 8),
            ("INI_MISPLACED_KEY".to_owned(), 11),
        ]
    );
    assert_eq!(
        doc[0]["warnings"][0]["reason"],
        "konflux-build-cli (gopkg.in/ini.v1) ends this value at its '#' or ';' and reads \
         \"https://nexus.example/repository/npm/\"; proxyconf reads the whole value"
    );

    // Warnings alone do not fail.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("konflux-config");
    std::fs::write(
        &path,
        "[cache-proxy]\nhttp-proxy = squid.caching.svc.cluster.local:3128\n\
         [artifact-registry]\nno-proxy = .svc\n",
    )
    .unwrap();
    let run = check(&[path.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout
            .contains(&format!("{}:4: warning: no-proxy = .svc\n", path.display())),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with(
            ": valid, 1 warning: package registry proxy not allowed \
             (allow-package-registry-proxy is not set), no package managers, cache proxy allowed \
             (squid.caching.svc.cluster.local:3128)\n"
        ),
        "{}",
        run.stdout
    );
}

/// The server serves the incumbent's INI file (it used to stop at once: "not a valid ConfigMap
/// manifest: expected mapping start").
#[test]
fn the_server_serves_an_ini_file() {
    let mut child = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0", "--configmap-file"])
        .arg(repo_root().join(fixture("platform-config.ini")))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start proxyconf-server");
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let synced = loop {
        match received.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains("configuration changed") => break line,
            Ok(line) => seen.push(line),
            Err(e) => {
                let _ = child.kill();
                panic!("no configuration within 20s ({e}): {seen:#?}");
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        synced.contains("allowed=true") && synced.contains("package_managers=3"),
        "{synced}"
    );
    assert!(synced.contains("problems=0"), "{synced}");
}

/// The runs shown in docs/configuration.md §9: each `$ proxyconf-server check …` of its `console`
/// blocks gives the output shown under it, and `$ echo $?` the exit code shown.
#[test]
fn the_documented_runs_are_real() {
    let doc = std::fs::read_to_string(repo_root().join("docs/configuration.md")).unwrap();
    let section = doc
        .split("\n## 9. ")
        .nth(1)
        .expect("docs/configuration.md has a §9");
    let mut runs = 0;
    for block in section.split("```console\n").skip(1) {
        let block = block.split("```").next().unwrap();
        let mut last: Option<Run> = None;
        for step in block.split("$ ").filter(|s| !s.is_empty()) {
            let (command, shown) = step.split_once('\n').unwrap();
            if command == "echo $?" {
                let run = last.as_ref().expect("a command before `echo $?`");
                assert_eq!(shown.trim(), run.code.to_string(), "the exit code shown");
                continue;
            }
            let args: Vec<String> = command
                .split_whitespace()
                .map(|a| a.trim_matches('\'').to_owned())
                .collect();
            assert_eq!(args[..2], ["proxyconf-server", "check"], "{command}");
            let args: Vec<&str> = args[2..].iter().map(String::as_str).collect();
            let run = check(&args);
            assert_eq!(run.stdout, shown, "the output of `{command}`");
            last = Some(run);
            runs += 1;
        }
    }
    assert_eq!(runs, 4, "the runs of §9");
}
