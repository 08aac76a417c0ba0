//! The servers under test as child processes, found beside this binary, and what `/proc` says of
//! them.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context, bail};

/// A binary of this workspace: beside the running one (`target/<profile>/`), or one level up when
/// running as a test (`target/<profile>/deps/`).
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join(name);
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!(
        "{name} not found beside {}: build the workspace's binaries first \
         (cargo build --release --workspace --bins)",
        exe.display()
    )
}

/// A server process, killed on drop.
pub struct ServerProcess {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl ServerProcess {
    /// Starts `proxyconf-server` watching the Kubernetes API of `kubeconfig`.
    pub fn proxyconf(kubeconfig: &Path) -> anyhow::Result<Self> {
        Self::proxyconf_with(kubeconfig, &[])
    }

    /// [`ServerProcess::proxyconf`] with `args` added to its command line.
    pub fn proxyconf_with(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut command = Command::new(sibling("proxyconf-server")?);
        command
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn,proxyconf_server=info")
            .env_remove("KUBERNETES_SERVICE_HOST");
        Self::spawn(command, |line| {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            (event["message"] == "serving proxyconf.v1")
                .then(|| event["address"].as_str().map(str::to_owned))?
        })
    }

    /// Starts `proxyconf-server` on a ConfigMap file (`--configmap-file`) or a projected
    /// ConfigMap directory (`--configmap-dir`): `flag` says which.
    pub fn proxyconf_local(flag: &str, path: &Path) -> anyhow::Result<Self> {
        let mut command = Command::new(sibling("proxyconf-server")?);
        command
            .args(["--listen", "127.0.0.1:0", "--log-format", "json", flag])
            .arg(path)
            .env("RUST_LOG", "warn,proxyconf_server=info");
        Self::spawn(command, |line| {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            (event["message"] == "serving proxyconf.v1")
                .then(|| event["address"].as_str().map(str::to_owned))?
        })
    }

    /// Starts the bare tonic server (this binary's `bare-server`) answering the encoded
    /// `Resolution` in `answer`.
    pub fn bare(answer: &Path) -> anyhow::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        if command.get_program().to_string_lossy().contains("/deps/") {
            command = Command::new(sibling("proxyconf-bench")?);
        }
        command
            .args(["bare-server", "--listen", "127.0.0.1:0", "--answer"])
            .arg(answer);
        Self::spawn(command, |line| {
            line.strip_prefix("listening on ").map(str::to_owned)
        })
    }

    fn spawn(
        mut command: Command,
        address_of: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {:?}", command.get_program()))?;
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().context("piped stdout")?;
        let stderr = child.stderr.take().context("piped stderr")?;
        forward_lines(stdout, tx.clone());
        forward_lines(stderr, tx);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .context("the server did not say where it listens within 20s")?;
            if let Some(address) = address_of(&line) {
                // Keep draining its output so that it never blocks on a full pipe.
                std::thread::spawn(move || for _ in rx {});
                return Ok(Self { child, address });
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/PID/status")
    }

    /// CPU time used so far (user + system), in clock ticks.
    pub fn cpu_ticks(&self) -> anyhow::Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // The command name may hold spaces; fields after it are space-separated.
        let after = stat.rsplit_once(')').context("malformed /proc/PID/stat")?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: u64 = fields.get(11).context("no utime")?.parse()?;
        let stime: u64 = fields.get(12).context("no stime")?.parse()?;
        Ok(utime + stime)
    }
}

/// Sends each line of `output` to `tx`, from a thread of its own.
fn forward_lines(output: impl std::io::Read + Send + 'static, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
