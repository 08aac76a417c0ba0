//! Running shell recipes and Tekton steps the way a build runs them: in bash under
//! `set -euo pipefail` and in `sh -e`, with stand-in `hermeto` and `konflux-build-cli` executables
//! on `PATH` that record how they were run, against a real server, an invalid one or none.

use std::{
    collections::BTreeMap,
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use super::util::{ServerProcess, binary, run};

/// The shells a documented recipe must stop in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// `bash -c 'set -euo pipefail; …'`
    BashStrict,
    /// `sh -ec '…'` (dash on Debian)
    ShE,
}

impl Shell {
    pub const ALL: [Self; 2] = [Self::BashStrict, Self::ShE];

    /// The command that runs `script` in this shell.
    pub fn command(self, script: &str) -> Command {
        match self {
            Self::BashStrict => {
                let mut c = Command::new("bash");
                c.arg("-c").arg(format!("set -euo pipefail\n{script}"));
                c
            }
            Self::ShE => {
                let mut c = Command::new("sh");
                c.arg("-ec").arg(script);
                c
            }
        }
    }
}

/// Records each run of a stand-in: its name and arguments on a `=== ` line, then the variables a
/// build cares about, sorted. `konflux-build-cli prefetch-dependencies` then runs `hermeto` with
/// its inherited environment, as the real one does.
const STANDIN: &str = r#"#!/bin/sh
{
  printf '=== %s' "$(basename "$0")"
  for arg in "$@"; do printf ' %s' "$arg"; done
  printf '\n'
  env | grep -E '^(HERMETO_|KBC_PD_ENABLE_PACKAGE_REGISTRY_PROXY=|HTTP_PROXY=|HTTPS_PROXY=|NO_PROXY=)' | sort
} >> "$STANDIN_LOG"
if [ "$(basename "$0")" = konflux-build-cli ] && [ "$1" = prefetch-dependencies ]; then
  exec hermeto fetch-deps "${KBC_PD_INPUT:-}"
fi
"#;

/// One run of a stand-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `hermeto` or `konflux-build-cli`.
    pub program: String,
    pub args: Vec<String>,
    /// The recorded variables.
    pub env: BTreeMap<String, String>,
}

impl Invocation {
    /// The `HERMETO_*` variables it got.
    pub fn hermeto_vars(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .filter(|(k, _)| k.starts_with("HERMETO_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A scratch directory with the stand-ins, standing in for `/tmp`, `/tekton/results` and the
/// shared volumes of a task.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        for sub in ["bin", "tmp", "results", "volume"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        for name in ["hermeto", "konflux-build-cli"] {
            let path = bin.join(name);
            std::fs::write(&path, STANDIN).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `/tmp` of the recipes.
    pub fn tmp(&self) -> PathBuf {
        self.path().join("tmp")
    }

    /// `/tekton/results` of the recipes.
    pub fn results(&self) -> PathBuf {
        self.path().join("results")
    }

    /// `PATH` with the stand-ins and the `proxyconf` under test first.
    pub fn path_env(&self) -> String {
        let proxyconf_dir = binary("proxyconf").parent().unwrap().to_owned();
        format!(
            "{}:{}:{}",
            self.path().join("bin").display(),
            proxyconf_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// Runs `script` in `shell` with the stand-ins; `env` adds variables.
    pub fn run(&self, shell: Shell, script: &str, env: &[(&str, &str)]) -> Output {
        let mut command = shell.command(script);
        command
            .current_dir(self.path())
            .env("PATH", self.path_env())
            .env("STANDIN_LOG", self.log())
            .env("HOME", self.path())
            .env_remove("PROXYCONF_SERVER");
        for (name, value) in env {
            command.env(name, value);
        }
        run(&mut command)
    }

    fn log(&self) -> PathBuf {
        self.path().join("standins.log")
    }

    /// Every run of a stand-in so far, in order.
    pub fn invocations(&self) -> Vec<Invocation> {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let mut runs: Vec<Invocation> = Vec::new();
        for line in text.lines() {
            if let Some(header) = line.strip_prefix("=== ") {
                let mut words = header.split(' ').map(str::to_owned);
                runs.push(Invocation {
                    program: words.next().unwrap_or_default(),
                    args: words.collect(),
                    env: BTreeMap::new(),
                });
            } else if let (Some(run), Some((name, value))) = (runs.last_mut(), line.split_once('='))
            {
                run.env.insert(name.to_owned(), value.to_owned());
            }
        }
        runs
    }

    /// The runs of `program`.
    pub fn runs_of(&self, program: &str) -> Vec<Invocation> {
        self.invocations()
            .into_iter()
            .filter(|i| i.program == program)
            .collect()
    }
}

/// A ConfigMap env file on which the proxy applies and every setting is invalid: each package
/// manager's URL carries credentials, and so does the cache proxy.
pub const INVALID_FOR_EVERY_PACKAGE_MANAGER: &str = "\
allow-package-registry-proxy=true
package-registry-proxy-npm-url=https://user:pw@nexus.example.org/npm/
package-registry-proxy-pnpm-url=https://user:pw@nexus.example.org/npm/
package-registry-proxy-yarn-url=https://user:pw@nexus.example.org/npm/
package-registry-proxy-gomod-url=https://nexus.example.org/go/,direct
package-registry-proxy-pip-url=ftp://nexus.example.org/pypi/simple/
package-registry-proxy-cargo-url=https://user:pw@nexus.example.org/cargo/
package-registry-proxy-bundler-url=https://user:pw@nexus.example.org/rubygems/
http-proxy=user:pw@squid.caching.svc.cluster.local:3128
";

/// The servers a recipe is tried against.
pub struct Servers {
    pub valid: ServerProcess,
    pub invalid: ServerProcess,
    _invalid_file: tempfile::TempDir,
    /// The address of a port nothing listens on.
    pub unreachable: String,
}

impl Servers {
    pub fn start() -> Self {
        let valid = ServerProcess::start(
            &super::util::repo_root().join("deploy/examples/cluster-config.yaml"),
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cluster-config.env");
        std::fs::write(&file, INVALID_FOR_EVERY_PACKAGE_MANAGER).unwrap();
        let invalid = ServerProcess::start(&file);
        Self {
            valid,
            invalid,
            _invalid_file: dir,
            unreachable: unreachable_address(),
        }
    }
}

/// `http://127.0.0.1:PORT` where nothing listens (a port just released).
pub fn unreachable_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// The variables the example ConfigMap gives an active build, by name.
pub fn example_variables() -> BTreeMap<String, String> {
    use super::util::NEXUS;
    [
        ("BUNDLER", "rubygems"),
        ("CARGO", "cargo"),
        ("GOMOD", "go"),
        ("NPM", "npm"),
        ("PIP", "pypi/simple"),
        ("PNPM", "npm"),
        ("YARN", "npm"),
    ]
    .iter()
    .map(|(pm, repo)| {
        (
            format!("HERMETO_{pm}__PROXY_URL"),
            format!("{NEXUS}/{repo}/"),
        )
    })
    .collect()
}
