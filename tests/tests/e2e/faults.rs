//! Faults a build step must survive or fail closed on: the server killed, a half-written file,
//! garbage on the wire, and a server whose answer tries to set dangerous variables.

use std::{
    io::Write,
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use proxyconf_proto::{
    Encoded,
    v1::{
        EnvVar, GetStatusRequest, PackageManager, Resolution, ResolveRequest, Status, WatchRequest,
        proxy_config_server::{ProxyConfig, ProxyConfigServer},
    },
};
use tonic::{Request, Response};

use super::util::{
    NEXUS, ServerProcess, assert_exported_nothing, binary, env_file, eventually, repo_root, run,
    stderr, stdout,
};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn sigkill_while_clients_wait_fails_closed_within_the_deadline_or_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster-config.env");
    std::fs::write(&file, env_file(&[("npm", &format!("{NEXUS}/npm/"))])).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = ServerProcess::start_with_args(&file, &["--listen", &listen]);
    assert!(
        run(server.client().args(["env", "--quiet"]))
            .status
            .success()
    );

    server.kill();
    let started = Instant::now();
    let out = run(server.client().args(["env", "--timeout", "2s"]));
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert_exported_nothing(&out);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "failed after {took:?} for a 2s deadline"
    );

    // A client already retrying succeeds when the server comes back inside its deadline.
    let waiting = server
        .client()
        .args(["env", "--quiet", "--timeout", "20s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _restarted = ServerProcess::start_with_args(&file, &["--listen", &listen]);
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("HERMETO_NPM__PROXY_URL"));
}

#[test]
fn a_truncated_manifest_keeps_the_last_good_state() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster-config.yaml");
    let manifest =
        std::fs::read_to_string(repo_root().join("deploy/examples/cluster-config.yaml")).unwrap();
    std::fs::write(&file, &manifest).unwrap();
    let server = ServerProcess::start(&file);
    let before = stdout(&run(server.client().args(["env", "--quiet"])));
    assert_eq!(before.lines().count(), 7);

    // Half-written, as by a writer that crashed: cut inside a value.
    let cut = manifest.find("package-registry-proxy-pip-url").unwrap() + 20;
    std::fs::write(&file, &manifest[..cut]).unwrap();
    eventually("status shows the file as stale", || {
        stdout(&run(server.client().args(["status"]))).contains("state:            stale for ")
    });
    let after = run(server.client().args(["env", "--quiet"]));
    assert!(after.status.success());
    assert_eq!(stdout(&after), before, "the last good state, unchanged");

    std::fs::write(&file, "").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        stdout(&run(server.client().args(["env", "--quiet"]))),
        before
    );
}

#[test]
fn garbage_on_the_grpc_port_leaves_the_server_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster-config.env");
    std::fs::write(&file, env_file(&[("npm", &format!("{NEXUS}/npm/"))])).unwrap();
    let server = ServerProcess::start(&file);
    let address = server.url.trim_start_matches("http://").to_owned();
    for garbage in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
        (0..65_536u32).map(|i| (i * 7919 % 251) as u8).collect(),
    ] {
        let mut stream = TcpStream::connect(&address).unwrap();
        let _ = stream.write_all(&garbage);
        drop(stream);
    }
    let out = run(server.client().args(["env", "--quiet"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("HERMETO_NPM__PROXY_URL"));
}

/// A server that answers what a compromised or buggy one might.
struct HostileServer {
    env: Vec<(&'static str, &'static str)>,
    /// Padding added to the answer's URL, to make it huge.
    padding: usize,
}

#[tonic::async_trait]
impl ProxyConfig for HostileServer {
    async fn resolve(
        &self,
        _: Request<ResolveRequest>,
    ) -> Result<Response<Encoded<Resolution>>, tonic::Status> {
        Ok(Response::new(Encoded::new(&Resolution {
            version: "0000000000000bad".into(),
            active: true,
            decision: proxyconf_proto::v1::Decision::Active.into(),
            package_managers: vec![PackageManager {
                name: "npm".into(),
                url: format!("https://evil.example/{}", "a".repeat(self.padding)),
                env: self
                    .env
                    .iter()
                    .map(|(n, v)| EnvVar {
                        name: (*n).into(),
                        value: (*v).into(),
                    })
                    .collect(),
            }],
            ..Resolution::default()
        })))
    }

    type WatchStream = futures::stream::Empty<Result<Encoded<Resolution>, tonic::Status>>;

    async fn watch(
        &self,
        _: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not here"))
    }

    async fn get_status(
        &self,
        _: Request<GetStatusRequest>,
    ) -> Result<Response<Status>, tonic::Status> {
        Err(tonic::Status::unimplemented("not here"))
    }
}

#[test]
fn an_answer_exporting_path_or_ld_preload_is_refused() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for env in [
        vec![
            ("HERMETO_NPM__PROXY_URL", "https://evil.example/"),
            ("PATH", "/tmp/evil"),
        ],
        vec![("LD_PRELOAD", "/tmp/evil.so")],
        vec![("HERMETO_NPM__PROXY_URL\nexport PATH", "x")],
    ] {
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address = listener.local_addr().unwrap();
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(ProxyConfigServer::new(HostileServer {
                    env: env.clone(),
                    padding: 0,
                }))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let out =
            run(Command::new(binary("proxyconf")).args(["env", "--server", &address.to_string()]));
        assert_eq!(out.status.code(), Some(1), "{env:?}: {}", stderr(&out));
        assert_exported_nothing(&out);
        assert!(
            stderr(&out).contains("refusing the server's answer"),
            "{}",
            stderr(&out)
        );

        let exec = run(Command::new(binary("proxyconf")).args([
            "exec",
            "--server",
            &address.to_string(),
            "--",
            "true",
        ]));
        assert_eq!(exec.status.code(), Some(1), "exec refuses too");
    }
}

#[test]
fn an_oversized_answer_is_refused() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap();
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(
                ProxyConfigServer::new(HostileServer {
                    env: vec![("HERMETO_NPM__PROXY_URL", "https://evil.example/")],
                    padding: 20 * 1024 * 1024,
                })
                .max_encoding_message_size(usize::MAX),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let out =
        run(Command::new(binary("proxyconf")).args(["env", "--server", &address.to_string()]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_exported_nothing(&out);
    assert!(
        stderr(&out).contains("message length too large"),
        "{}",
        stderr(&out)
    );
}
