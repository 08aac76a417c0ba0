//! TLS and mutual TLS between the real binaries, with certificates made in the test, and a
//! certificate rotation picked up without restarting the server.

use std::process::Command;

use proxyconf_e2e::pki::TestCa;

use super::util::{
    LineProcess, NEXUS, ServerProcess, assert_exported_nothing, binary, env_file, eventually,
    replace_file, run, stderr, stdout,
};

/// `https://localhost:PORT` for a server started on 127.0.0.1.
fn https(server: &ServerProcess) -> String {
    server.url.replace("http://127.0.0.1", "https://localhost")
}

fn proxyconf() -> Command {
    let mut command = Command::new(binary("proxyconf"));
    command.env_remove("PROXYCONF_SERVER");
    command
}

#[test]
fn tls_serves_clients_that_trust_its_ca_and_rotates_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca-1");
    let server_cert = ca.server(dir.path(), "server");
    let file = dir.path().join("cluster-config.env");
    std::fs::write(&file, env_file(&[("npm", &format!("{NEXUS}/npm/"))])).unwrap();
    let server = ServerProcess::start_with_args(
        &file,
        &[
            "--tls-cert",
            server_cert.cert.to_str().unwrap(),
            "--tls-key",
            server_cert.key.to_str().unwrap(),
        ],
    );
    let url = https(&server);
    let ca1 = ca.cert_path.to_str().unwrap().to_owned();

    let out = run(proxyconf().args(["env", "--quiet", "--server", &url, "--ca-cert", &ca1]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("HERMETO_NPM__PROXY_URL"));

    // Plaintext against the TLS port, or https without a CA: no answer, nothing exported.
    let plaintext = run(proxyconf().args(["env", "--timeout", "1s", "--server", &server.url]));
    assert!(!plaintext.status.success());
    assert_exported_nothing(&plaintext);
    assert!(
        stderr(&plaintext).contains("https://"),
        "{}",
        stderr(&plaintext)
    );
    let no_ca = run(proxyconf().args(["env", "--server", &url]));
    assert_eq!(no_ca.status.code(), Some(2));
    assert!(stderr(&no_ca).contains("--ca-cert"), "{}", stderr(&no_ca));

    // A subscriber connected before the rotation...
    let lines =
        LineProcess::spawn(proxyconf().args(["watch", "--server", &url, "--ca-cert", &ca1]));
    lines.next();

    // ...then cert-manager rotates the certificate to one from a new CA, in place.
    let ca2 = TestCa::new(dir.path(), "ca-2");
    let rotated = ca2.server(dir.path(), "rotated");
    std::fs::rename(&rotated.key, &server_cert.key).unwrap();
    std::fs::rename(&rotated.cert, &server_cert.cert).unwrap();
    let ca2_path = ca2.cert_path.to_str().unwrap().to_owned();
    eventually("new connections get the new certificate", || {
        run(proxyconf().args([
            "env",
            "--quiet",
            "--timeout",
            "1s",
            "--server",
            &url,
            "--ca-cert",
            &ca2_path,
        ]))
        .status
        .success()
    });
    let old = run(proxyconf().args([
        "env",
        "--timeout",
        "1s",
        "--server",
        &url,
        "--ca-cert",
        &ca1,
    ]));
    assert_eq!(
        old.status.code(),
        Some(69),
        "the old CA no longer verifies the server"
    );
    assert!(
        stderr(&old).contains("this client refused the server's certificate"),
        "says which side refused: {}",
        stderr(&old)
    );

    // The server never restarted: the subscriber's connection carries the next change.
    replace_file(
        &file,
        &env_file(&[
            ("npm", &format!("{NEXUS}/npm/")),
            ("pip", &format!("{NEXUS}/pypi/simple/")),
        ]),
    );
    let next = lines.next();
    assert!(next.contains("pypi/simple"), "{next}");
}

#[test]
fn mutual_tls_admits_only_clients_with_a_certificate_from_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = TestCa::new(dir.path(), "server-ca");
    let client_ca = TestCa::new(dir.path(), "client-ca");
    let rogue_ca = TestCa::new(dir.path(), "rogue-ca");
    let server_cert = server_ca.server(dir.path(), "server");
    let client = client_ca.client(dir.path(), "build");
    let rogue = rogue_ca.client(dir.path(), "rogue");
    let file = dir.path().join("cluster-config.env");
    std::fs::write(&file, env_file(&[("npm", &format!("{NEXUS}/npm/"))])).unwrap();
    let server = ServerProcess::start_with_args(
        &file,
        &[
            "--tls-cert",
            server_cert.cert.to_str().unwrap(),
            "--tls-key",
            server_cert.key.to_str().unwrap(),
            "--tls-client-ca",
            client_ca.cert_path.to_str().unwrap(),
        ],
    );
    let url = https(&server);
    let ca = server_ca.cert_path.to_str().unwrap();

    let with = |cert: &std::path::Path, key: &std::path::Path| {
        run(proxyconf()
            .args([
                "env",
                "--quiet",
                "--timeout",
                "1s",
                "--server",
                &url,
                "--ca-cert",
                ca,
            ])
            .arg("--client-cert")
            .arg(cert)
            .arg("--client-key")
            .arg(key))
    };
    let ok = with(&client.cert, &client.key);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("HERMETO_NPM__PROXY_URL"));

    // Refused during the handshake (TLS 1.3 tells the client only when it sends its request).
    let refused = with(&rogue.cert, &rogue.key);
    assert!(!refused.status.success(), "{}", stderr(&refused));
    assert_exported_nothing(&refused);
    assert!(
        stderr(&refused).contains("--client-cert"),
        "{}",
        stderr(&refused)
    );
    let anonymous =
        run(proxyconf().args(["env", "--timeout", "1s", "--server", &url, "--ca-cert", ca]));
    assert!(!anonymous.status.success(), "{}", stderr(&anonymous));
    assert_exported_nothing(&anonymous);
    for out in [&refused, &anonymous] {
        assert!(
            stderr(out).contains("the server ended the TLS connection: it refused this client"),
            "says which side refused: {}",
            stderr(out)
        );
    }

    // The server says so too, once per interval however often clients retry.
    eventually("the server logs the refused handshake", || {
        server
            .logs()
            .iter()
            .any(|l| l.contains("TLS handshake refused"))
    });
    let warnings = server
        .logs()
        .iter()
        .filter(|l| l.contains("TLS handshake refused") && l.contains("WARN"))
        .count();
    assert_eq!(warnings, 1, "rate-limited: {:?}", server.logs());
}

#[test]
fn unusable_tls_files_stop_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster-config.env");
    std::fs::write(&file, env_file(&[])).unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let out = run(Command::new(binary("proxyconf-server")).args([
        "--listen",
        "127.0.0.1:0",
        "--configmap-file",
        file.to_str().unwrap(),
        "--tls-cert",
        empty.to_str().unwrap(),
        "--tls-key",
        empty.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("holds no PEM certificate"),
        "{}",
        stderr(&out)
    );
    let half = run(Command::new(binary("proxyconf-server")).args(["--tls-cert", "x.pem"]));
    assert_eq!(half.status.code(), Some(2), "--tls-cert needs --tls-key");
}
