//! The Tekton tasks of `deploy/tekton/`, run step by step as Tekton would (parameters and result
//! paths substituted, a failing step ends the task), with stand-in `konflux-build-cli` and
//! `hermeto`, against a real `proxyconf-server`; and the release binaries' glibc needs.

use std::{collections::BTreeMap, path::Path, process::Command};

use serde_json::Value;

use super::{
    standins::{Servers, Shell, Workspace, example_variables, unreachable_address},
    util::{ServerProcess, binary, repo_root, run, stderr},
};

/// A task of `deploy/tekton/`, parsed.
struct Task(Value);

impl Task {
    fn load(file: &str) -> Self {
        let text = std::fs::read_to_string(repo_root().join("deploy/tekton").join(file)).unwrap();
        Self(serde_saphyr::from_str(&text).unwrap())
    }

    fn steps(&self) -> &[Value] {
        self.0["spec"]["steps"].as_array().expect("steps")
    }

    fn param_defaults(&self) -> BTreeMap<String, String> {
        self.0["spec"]["params"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| {
                Some((
                    p["name"].as_str()?.to_owned(),
                    p["default"].as_str()?.to_owned(),
                ))
            })
            .collect()
    }
}

/// How one run of a task ended.
struct TaskRun {
    /// The exit code of the first failing step, or 0.
    code: i32,
    /// The name of the step that failed.
    failed_step: Option<String>,
    stderr: String,
}

/// Runs `task` in `ws` with `params` over its defaults, scripts in `shell`, as Tekton runs it.
/// The deadline of each client call is 2 s (PROXYCONF_TIMEOUT), so that an unreachable server
/// fails fast.
fn run_task(ws: &Workspace, task: &Task, params: &[(&str, &str)], shell: Shell) -> TaskRun {
    let mut values = task.param_defaults();
    for (name, value) in params {
        values.insert((*name).to_owned(), (*value).to_owned());
    }
    let substitute = |text: &str| {
        let mut text = text.replace(
            "/var/proxyconf",
            &ws.path().join("volume").display().to_string(),
        );
        text = text.replace(
            "/usr/local/bin/proxyconf",
            &binary("proxyconf").display().to_string(),
        );
        for (name, value) in &values {
            text = text.replace(&format!("$(params.{name})"), value);
        }
        while let Some(start) = text.find("$(results.") {
            let end = start + text[start..].find(".path)").expect("a result path");
            let name = &text[start + "$(results.".len()..end];
            let path = ws.results().join(name).display().to_string();
            text.replace_range(start..end + ".path)".len(), &path);
        }
        text
    };
    let mut stderr_all = String::new();
    for step in task.steps() {
        let env: Vec<(String, String)> = step["env"]
            .as_array()
            .map(|env| {
                env.iter()
                    .map(|e| {
                        (
                            e["name"].as_str().unwrap().to_owned(),
                            substitute(e["value"].as_str().unwrap_or("")),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut env: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.push(("PROXYCONF_TIMEOUT", "2s"));
        let output = if let Some(script) = step["script"].as_str() {
            ws.run(shell, &substitute(script), &env)
        } else {
            let words: Vec<String> = step["command"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(step["args"].as_array().into_iter().flatten())
                .map(|w| substitute(w.as_str().unwrap()))
                .collect();
            let mut command = Command::new(&words[0]);
            command
                .args(&words[1..])
                .current_dir(ws.path())
                .env("PATH", ws.path_env())
                .env_remove("PROXYCONF_SERVER");
            command.envs(env.iter().copied());
            run(&mut command)
        };
        stderr_all.push_str(&stderr(&output));
        let code = output.status.code().unwrap_or(-1);
        if code != 0 {
            return TaskRun {
                code,
                failed_step: step["name"].as_str().map(str::to_owned),
                stderr: stderr_all,
            };
        }
    }
    TaskRun {
        code: 0,
        failed_step: None,
        stderr: stderr_all,
    }
}

fn record(ws: &Workspace) -> Value {
    let text = std::fs::read_to_string(ws.results().join("package-registry-proxy"))
        .expect("the record result");
    assert!(text.len() <= 512 && !text.ends_with('\n'), "{text:?}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn prefetch_active_gives_hermeto_exactly_the_variables_and_konflux_build_cli_reads_nothing() {
    let servers = Servers::start();
    let task = Task::load("prefetch-dependencies.yaml");
    for shell in Shell::ALL {
        for enable in ["true", ""] {
            let ws = Workspace::new();
            let params = [
                ("proxyconf-server", servers.valid.url.as_str()),
                ("enable-package-registry-proxy", enable),
                ("input", r#"{"type":"npm"}"#),
            ];
            let outcome = run_task(&ws, &task, &params, shell);
            assert_eq!(outcome.code, 0, "{shell:?} {enable:?}: {}", outcome.stderr);
            let kbc = ws.runs_of("konflux-build-cli");
            assert_eq!(kbc.len(), 1, "{kbc:?}");
            assert_eq!(kbc[0].args, ["prefetch-dependencies"]);
            assert_eq!(
                kbc[0]
                    .env
                    .get("KBC_PD_ENABLE_PACKAGE_REGISTRY_PROXY")
                    .map(String::as_str),
                Some("false"),
                "konflux-build-cli must not read the ConfigMap itself"
            );
            let hermeto = ws.runs_of("hermeto");
            assert_eq!(hermeto.len(), 1);
            assert_eq!(
                hermeto[0].hermeto_vars(),
                example_variables(),
                "{shell:?} {enable:?}"
            );
            let record = record(&ws);
            assert_eq!(record["outcome"], "applied");
            assert_eq!(record["active"], true);
            assert_eq!(
                record["package_managers"].as_array().unwrap().len(),
                7,
                "{record}"
            );
            if enable.is_empty() {
                assert!(outcome.stderr.contains("is empty"), "{}", outcome.stderr);
            }
        }
    }
}

#[test]
fn prefetch_opted_out_gives_hermeto_nothing_even_without_a_server() {
    let task = Task::load("prefetch-dependencies.yaml");
    let nowhere = unreachable_address();
    for shell in Shell::ALL {
        let ws = Workspace::new();
        let params = [
            ("proxyconf-server", nowhere.as_str()),
            ("enable-package-registry-proxy", "false"),
        ];
        let outcome = run_task(&ws, &task, &params, shell);
        assert_eq!(outcome.code, 0, "{shell:?}: {}", outcome.stderr);
        let hermeto = ws.runs_of("hermeto");
        assert_eq!(hermeto.len(), 1);
        assert!(hermeto[0].hermeto_vars().is_empty(), "{hermeto:?}");
        assert_eq!(record(&ws)["outcome"], "opted-out");
    }
}

#[test]
fn prefetch_fails_closed_and_runs_nothing() {
    let servers = Servers::start();
    let task = Task::load("prefetch-dependencies.yaml");
    for shell in Shell::ALL {
        for (server, code) in [
            (servers.unreachable.as_str(), 69),
            (servers.invalid.url.as_str(), 78),
        ] {
            let ws = Workspace::new();
            let outcome = run_task(&ws, &task, &[("proxyconf-server", server)], shell);
            assert_eq!(outcome.code, code, "{shell:?} {server}: {}", outcome.stderr);
            assert_eq!(
                outcome.failed_step.as_deref(),
                Some("prefetch-dependencies")
            );
            assert!(
                ws.invocations().is_empty(),
                "nothing ran: {:?}",
                ws.invocations()
            );
            let record = record(&ws);
            assert_eq!(record["outcome"], "failed", "{record}");
            assert_eq!(record["exit_code"], code);
        }
    }
}

/// The OCI cache proxy defaults deploy/base gives the server (today's init task's
/// DEFAULT_HTTP_PROXY and DEFAULT_NO_PROXY).
fn deployed_defaults() -> (String, String) {
    let text = std::fs::read_to_string(repo_root().join("deploy/base/deployment.yaml")).unwrap();
    let flag = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("- --{name}="))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("deploy/base passes --{name}"))
    };
    (flag("default-http-proxy"), flag("default-no-proxy"))
}

/// What `konflux-build-cli config cache-proxy --enable ENABLE` writes for a ConfigMap holding
/// `data`, with its defaults: the incumbent's rules (literal "true"; empty allow means allowed;
/// the defaults only when both keys are empty).
fn incumbent_results(
    enable: &str,
    data: &BTreeMap<&str, &str>,
    defaults: &(String, String),
) -> (String, String) {
    let get = |key: &str| data.get(key).copied().unwrap_or("");
    let allowed = match get("allow-cache-proxy") {
        "" => true,
        value => proxyconf_proto::contract::parse_go_bool(value).unwrap_or(false),
    };
    let (http, no) = match (get("http-proxy"), get("no-proxy")) {
        ("", "") => (defaults.0.clone(), defaults.1.clone()),
        (http, no) => (http.to_owned(), no.to_owned()),
    };
    if allowed && enable == "true" {
        (http, no)
    } else {
        (String::new(), String::new())
    }
}

#[test]
fn init_writes_what_the_incumbent_writes() {
    let defaults = deployed_defaults();
    assert_eq!(defaults.0, "squid.caching.svc.cluster.local:3128");
    assert_eq!(
        defaults.1.split(',').count(),
        15,
        "today's DEFAULT_NO_PROXY list"
    );
    let task = Task::load("init.yaml");
    let configmaps: &[&[(&str, &str)]] = &[
        &[],
        &[("allow-cache-proxy", "")],
        &[("allow-cache-proxy", "false")],
        &[
            ("allow-cache-proxy", "True"),
            ("http-proxy", ""),
            ("no-proxy", ""),
        ],
        &[("http-proxy", "proxy.corp:8080")],
        &[("no-proxy", ".svc,10.0.0.0/8")],
        &[
            ("http-proxy", "http://proxy.corp:8080"),
            ("no-proxy", "quay.io"),
        ],
    ];
    for data in configmaps {
        let data: BTreeMap<&str, &str> = data.iter().copied().collect();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cluster-config.env");
        // Another feature's key: an env file with no key at all is refused as truncated.
        let content: String = std::iter::once("enable-keyless-signing=true\n".to_owned())
            .chain(data.iter().map(|(k, v)| format!("{k}={v}\n")))
            .collect();
        std::fs::write(&file, content).unwrap();
        let server = ServerProcess::start_with_args(
            &file,
            &[
                &format!("--default-http-proxy={}", defaults.0),
                &format!("--default-no-proxy={}", defaults.1),
            ],
        );
        for enable in ["true", "false", "True", "1", ""] {
            let ws = Workspace::new();
            let params = [
                ("proxyconf-server", server.url.as_str()),
                ("enable-cache-proxy", enable),
            ];
            let outcome = run_task(&ws, &task, &params, Shell::BashStrict);
            let case = format!("{data:?} --enable {enable:?}");
            assert_eq!(outcome.code, 0, "{case}: {}", outcome.stderr);
            let read = |name: &str| std::fs::read_to_string(ws.results().join(name)).unwrap();
            let want = incumbent_results(enable, &data, &defaults);
            assert_eq!((read("http-proxy"), read("no-proxy")), want, "{case}");
        }
    }
}

#[test]
fn init_fails_closed_where_it_deliberately_differs() {
    let servers = Servers::start();
    let task = Task::load("init.yaml");
    for (server, code) in [
        (servers.unreachable.as_str(), 69),
        (servers.invalid.url.as_str(), 78),
    ] {
        let ws = Workspace::new();
        let params = [("proxyconf-server", server), ("enable-cache-proxy", "true")];
        let outcome = run_task(&ws, &task, &params, Shell::BashStrict);
        assert_eq!(outcome.code, code, "{server}: {}", outcome.stderr);
        // Not enabled: no server needed, empty results, as the incumbent.
        let ws = Workspace::new();
        let params = [
            ("proxyconf-server", server),
            ("enable-cache-proxy", "false"),
        ];
        assert_eq!(run_task(&ws, &task, &params, Shell::BashStrict).code, 0);
        assert_eq!(
            std::fs::read_to_string(ws.results().join("http-proxy")).unwrap(),
            ""
        );
    }
}

/// The highest `GLIBC_x.y` symbol version `binary` needs, read with objdump.
fn highest_glibc(binary: &Path) -> (u32, u32) {
    let out = run(Command::new("objdump").arg("-T").arg(binary));
    assert!(
        out.status.success(),
        "objdump -T {}: {}",
        binary.display(),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .expect("a dynamically linked binary names GLIBC_ versions")
}

/// The Hermeto image is UBI 9 or later: glibc 2.34. The release binaries are what ships; `.ci/run`
/// builds them before the tests, and the binaries of this test's profile are checked too.
#[test]
fn the_binaries_run_on_glibc_2_34() {
    let profile_dir = binary("proxyconf").parent().unwrap().to_owned();
    let release_dir = profile_dir.parent().unwrap().join("release");
    let mut dirs = vec![profile_dir];
    if release_dir.join("proxyconf").exists() {
        dirs.push(release_dir);
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must check the release binaries: build them first (cargo build --release --bins)"
        );
        eprintln!("note: no release binaries in target/release; checked {dirs:?} only");
    }
    for dir in dirs {
        for name in ["proxyconf", "proxyconf-server"] {
            let path = dir.join(name);
            if !path.exists() {
                continue;
            }
            let highest = highest_glibc(&path);
            assert!(
                highest <= (2, 34),
                "{} needs GLIBC_{}.{}",
                path.display(),
                highest.0,
                highest.1
            );
        }
    }
}
