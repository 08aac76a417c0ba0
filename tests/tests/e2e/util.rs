//! Running the real binaries: a server process on an ephemeral port, client invocations, and a
//! ConfigMap file to edit.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

/// The path of a workspace binary, built beside this test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-<hash> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` so that the binaries are built",
        path.display()
    );
    path
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

/// A running `proxyconf-server`, killed on drop.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Every log line so far.
    logs: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts the server on `configmap_file`, on an ephemeral port, and waits until it listens.
    pub fn start(configmap_file: &Path) -> Self {
        Self::start_with_args(configmap_file, &[])
    }

    /// Like [`Self::start`], with more server flags.
    pub fn start_with_args(configmap_file: &Path, args: &[&str]) -> Self {
        let mut command = Command::new(binary("proxyconf-server"));
        command
            .arg("--configmap-file")
            .arg(configmap_file)
            .args(args);
        Self::spawn(command)
    }

    /// Starts the server on a ConfigMap directory as kubelet projects a volume.
    pub fn start_dir(dir: &Path) -> Self {
        let mut command = Command::new(binary("proxyconf-server"));
        command.arg("--configmap-dir").arg(dir);
        Self::spawn(command)
    }

    /// Starts the server watching the Kubernetes API that `kubeconfig` points at.
    pub fn start_kubernetes(kubeconfig: &Path) -> Self {
        let mut command = Command::new(binary("proxyconf-server"));
        command
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST");
        Self::spawn(command)
    }

    fn spawn(mut command: Command) -> Self {
        if !command.get_args().any(|a| a == "--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start proxyconf-server");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = mpsc::channel();
        let sink = logs.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && event["message"] == "serving proxyconf.v1"
                    && let Some(address) = event["address"].as_str()
                {
                    let _ = address_tx.send(address.to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let address = address_rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("server did not start: {:?}", logs.lock().unwrap()));
        Self {
            child,
            url: format!("http://{address}"),
            logs,
        }
    }

    /// Kills the process with SIGKILL: no shutdown, connections cut.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM, as Kubernetes does, and waits for the process to exit (at most 30 s).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within 30s of SIGTERM"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// A `proxyconf` command aimed at this server.
    pub fn client(&self) -> Command {
        let mut command = Command::new(binary("proxyconf"));
        command.env("PROXYCONF_SERVER", &self.url);
        command
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` to completion, failing the test if it takes more than 30 s.
pub fn run(command: &mut Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(output) => output.expect("command output"),
        Err(_) => {
            // Leave no process behind for the next tests.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("command did not finish within 30s");
        }
    }
}

/// Asserts that a failed `proxyconf env` printed nothing but the shell failure guard for its exit
/// code: no variable, only what makes `eval "$(proxyconf env)"` fail with the same code.
pub fn assert_exported_nothing(output: &Output) {
    let code = output.status.code().expect("an exit code");
    assert_ne!(code, 0, "{}", stderr(output));
    let guard = proxyconf::render::shell_failure_guard(u8::try_from(code).unwrap());
    assert_eq!(
        stdout(output),
        guard,
        "nothing exported: {}",
        stderr(output)
    );
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Replaces `path` atomically, as editors and kubelet do.
pub fn replace_file(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Retries `check` every 50 ms until it holds, for at most 10 s.
pub fn eventually(what: &str, check: impl FnMut() -> bool) {
    eventually_within(Duration::from_secs(10), what, check);
}

/// Retries `check` every 50 ms until it holds, for at most `limit`.
pub fn eventually_within(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The example ConfigMap's proxy URLs.
pub const NEXUS: &str = "https://artifact-registry-proxy.caching.svc.cluster.local/repository";

/// An env-file ConfigMap allowing the proxy with `urls` (package manager, URL).
pub fn env_file(urls: &[(&str, &str)]) -> String {
    let mut content = String::from("allow-package-registry-proxy=true\n");
    for (pm, url) in urls {
        content.push_str(&format!("package-registry-proxy-{pm}-url={url}\n"));
    }
    content
}

/// A process whose standard output is read line by line as it comes (a `proxyconf watch`, a
/// subscriber); killed on drop.
pub struct LineProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl LineProcess {
    /// Starts `command` with its standard output piped and its standard error discarded.
    pub fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// The next line, within 20 s.
    pub fn next(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a line within 20s")
    }

    /// The next line, parsed as JSON.
    pub fn next_json(&self) -> serde_json::Value {
        let line = self.next();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Whether nothing is printed for `quiet`.
    pub fn silent_for(&self, quiet: Duration) -> bool {
        self.lines.recv_timeout(quiet).is_err()
    }

    /// Waits for the process to exit by itself (at most 30 s).
    pub fn wait(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "did not exit within 30s");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
