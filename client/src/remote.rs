//! Talking to proxyconf-server within a deadline: connects, calls, and retries what may succeed
//! on a second try (unreachable, not loaded yet, overloaded) with jittered backoff until the
//! deadline; anything else fails at once.

use std::{
    future::Future,
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use proxyconf_proto::{
    transport::{Backoff, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, error_chain},
    v1::proxy_config_client::ProxyConfigClient,
};
use tokio::time::Instant;
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

use crate::exit::Failure;

/// Where the servers are, validated: one address, or several separated by commas. Calls rotate
/// over them, starting at a random one, so that clients spread over replicas and a retry or a
/// reconnect goes to the next replica.
#[derive(Debug)]
pub struct Servers {
    urls: Vec<String>,
    next: AtomicUsize,
    /// For `https://` servers: the CA to trust and, for mutual TLS, this client's identity.
    tls: Option<ClientTlsConfig>,
}

/// The files for talking TLS to the server.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// CA certificates (PEM) that the server's certificate must chain to.
    pub ca_cert: Option<PathBuf>,
    /// This client's certificate (PEM), for servers that require one.
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub client_key: Option<PathBuf>,
}

impl TlsFiles {
    fn config(&self) -> Result<Option<ClientTlsConfig>, Failure> {
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| {
                Failure::Usage(format!("{flag} {}: cannot read it: {e}", path.display()))
            })
        };
        let Some(ca) = &self.ca_cert else {
            if self.client_cert.is_some() || self.client_key.is_some() {
                return Err(Failure::Usage(
                    "--client-cert and --client-key need --ca-cert (and an https:// server)"
                        .to_owned(),
                ));
            }
            return Ok(None);
        };
        let mut config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--ca-cert", ca)?));
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(
                    read("--client-cert", cert)?,
                    read("--client-key", key)?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(Failure::Usage(
                    "--client-cert and --client-key go together".to_owned(),
                ));
            }
        }
        Ok(Some(config))
    }
}

impl Servers {
    /// Accepts `http://host:port`, `https://host:port` (with `tls.ca_cert`) or a bare `host:port`
    /// (taken as `http://`), comma-separated.
    pub fn parse(value: &str, tls: &TlsFiles) -> Result<Self, Failure> {
        let urls = value
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(parse_one)
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(Failure::Usage(
                "--server is empty: expected http://HOST:PORT (or HOST:PORT), comma-separated"
                    .to_owned(),
            ));
        }
        let tls = tls.config()?;
        let secure = urls.iter().filter(|u| u.starts_with("https://")).count();
        match (secure, &tls) {
            (0, Some(_)) => {
                return Err(Failure::Usage(
                    "--ca-cert is given but --server is plaintext: use https://HOST:PORT"
                        .to_owned(),
                ));
            }
            (n, None) if n > 0 => {
                return Err(Failure::Usage(
                    "an https:// server needs --ca-cert: the CA that signed its certificate"
                        .to_owned(),
                ));
            }
            (n, Some(_)) if n != urls.len() => {
                return Err(Failure::Usage(
                    "mixing http:// and https:// servers would send some calls in plaintext"
                        .to_owned(),
                ));
            }
            _ => {}
        }
        let start = fastrand::usize(..urls.len());
        Ok(Self {
            urls,
            next: AtomicUsize::new(start),
            tls,
        })
    }

    /// The next server to try.
    pub fn pick(&self) -> &str {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.urls[i % self.urls.len()]
    }

    /// Opens a connection to the next server.
    pub async fn connect_next(&self) -> Result<Channel, CallError> {
        let mut endpoint = tonic::transport::Endpoint::from_shared(self.pick().to_owned())
            .map_err(CallError::Connect)?
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(CallError::Connect)?;
        }
        endpoint.connect().await.map_err(CallError::Connect)
    }

    /// All of them, for messages.
    pub fn describe(&self) -> String {
        self.urls.join(",")
    }
}

fn parse_one(value: &str) -> Result<String, Failure> {
    let url = if value.contains("://") {
        value.to_owned()
    } else {
        format!("http://{value}")
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    if rest.is_none_or(str::is_empty) {
        return Err(Failure::Usage(format!(
            "--server {value:?}: expected http://HOST:PORT, https://HOST:PORT or HOST:PORT"
        )));
    }
    tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| Failure::Usage(format!("--server {value:?} is not a valid address: {e}")))?;
    Ok(url)
}

/// The largest answer accepted: the largest ConfigMap Kubernetes stores (1 MiB) resolves to an
/// answer of about 3 MiB (every URL appears as a setting and as a variable); anything far beyond
/// is not an answer this client should act on.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// The longest pause between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The first pause.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Connects to `server` and runs `call`, retrying retryable failures until `deadline`.
pub async fn call_with_retries<T, F, Fut>(
    servers: &Servers,
    deadline: Instant,
    mut call: F,
) -> Result<T, CallError>
where
    F: FnMut(ProxyConfigClient<Channel>) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
    loop {
        let attempt = async {
            let channel = servers.connect_next().await?;
            call(ProxyConfigClient::new(channel).max_decoding_message_size(MAX_ANSWER_BYTES))
                .await
                .map_err(CallError::Status)
        };
        let last = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) if error.is_retryable() => error,
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(CallError::DeadlineExceeded(None)),
        };
        let pause = backoff.next_pause();
        if Instant::now() + pause >= deadline {
            return Err(CallError::DeadlineExceeded(Some(Box::new(last))));
        }
        tokio::time::sleep(pause).await;
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot connect")]
    Connect(#[source] tonic::transport::Error),
    #[error("{}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
    #[error("deadline exceeded")]
    DeadlineExceeded(Option<Box<CallError>>),
}

impl CallError {
    /// Whether another try may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect(_) | Self::DeadlineExceeded(_) => true,
            Self::Status(status) => matches!(
                status.code(),
                Code::Unavailable
                    | Code::ResourceExhausted
                    | Code::Aborted
                    | Code::DeadlineExceeded
            ),
        }
    }

    /// Which side refused a TLS connection, when the error shows it: the client's verification of
    /// the server's certificate, or the server ending the connection at its first request (TLS
    /// 1.3 servers refuse a client certificate only after the client finished its handshake).
    fn tls_refusal(&self, servers: &Servers) -> Option<&'static str> {
        let text = self.describe();
        if text.contains("invalid peer certificate") {
            return Some(
                "this client refused the server's certificate: it is not signed by --ca-cert, or \
                 not for the host in --server",
            );
        }
        // hyper reports the connection the server closed as a transport error, or as a
        // cancelled request when the close races with it.
        let server_closed = servers.urls.iter().any(|u| u.starts_with("https://"))
            && matches!(self, Self::Status(s) if matches!(s.code(), Code::Unknown | Code::Cancelled));
        (server_closed || text.contains("received fatal alert")).then_some(
            "the server ended the TLS connection: it refused this client, most likely its \
             certificate (none given, or not signed by the server's --tls-client-ca)",
        )
    }

    /// The cause, as one line: the innermost error of a connection failure says the most.
    pub fn describe(&self) -> String {
        match self {
            Self::Connect(e) => format!("cannot connect: {}", error_chain(e)),
            Self::Status(_) => self.to_string(),
            Self::DeadlineExceeded(Some(last)) => last.describe(),
            Self::DeadlineExceeded(None) => "no answer".to_owned(),
        }
    }

    /// The failure of `proxyconf status` for this error: the same as [`Self::into_failure`] but
    /// for the advice, which is about reaching the server, not about a build.
    pub fn into_status_failure(self, servers: &Servers, timeout: Duration) -> Failure {
        let cause = self.describe();
        match self.into_failure(servers, timeout) {
            Failure::Unavailable(_) => Failure::Unavailable(format!(
                "no status from {} within {} ({}): check that proxyconf-server runs and that \
                 --server points at it (in a cluster: kubectl -n proxyconf get pods, then \
                 kubectl -n proxyconf port-forward svc/proxyconf 50051), or give it longer with \
                 --timeout",
                servers.describe(),
                humantime::format_duration(timeout),
                cause
            )),
            other => other,
        }
    }

    /// The client failure for this error when talking to `server` with `timeout`.
    pub fn into_failure(self, servers: &Servers, timeout: Duration) -> Failure {
        match &self {
            Self::Status(status) if status.code() == Code::InvalidArgument => Failure::Usage(
                format!("the server refused the request: {}", status.message()),
            ),
            Self::Status(_) if self.tls_refusal(servers).is_some() => Failure::Other(format!(
                "{} ({}); check --server, --ca-cert, --client-cert and --client-key",
                self.tls_refusal(servers).unwrap_or_default(),
                self.describe()
            )),
            Self::Status(status) if !self.is_retryable() => Failure::Other(format!(
                "the server at {} failed: {}: {}; check that --server points at proxyconf-server, \
                 with https:// and --ca-cert if it serves TLS, and --client-cert/--client-key \
                 if it requires client certificates",
                servers.describe(),
                status.code(),
                status.message()
            )),
            _ => Failure::Unavailable(format!(
                "cannot get package registry proxy settings from {} within {} ({}{}); the build \
                 stops instead of fetching from upstream: check that proxyconf-server runs and \
                 --server points at it, or pass --allow-direct-on-unavailable to go on without \
                 the proxy",
                servers.describe(),
                humantime::format_duration(timeout),
                self.tls_refusal(servers)
                    .map(|r| format!("{r}: "))
                    .unwrap_or_default(),
                self.describe()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        let plain = TlsFiles::default();
        let one = Servers::parse("localhost:50051", &plain).unwrap();
        assert_eq!(one.pick(), "http://localhost:50051");
        assert_eq!(one.pick(), "http://localhost:50051");
        let two = Servers::parse("http://a.svc:50051, b:1", &plain).unwrap();
        let picks: std::collections::BTreeSet<&str> = (0..4).map(|_| two.pick()).collect();
        assert_eq!(
            picks,
            ["http://a.svc:50051", "http://b:1"].into(),
            "rotates"
        );
        assert_eq!(two.describe(), "http://a.svc:50051,http://b:1");
        for bad in [
            "",
            ",",
            "ftp://x",
            "https://x:1",
            "http://",
            "http://a b",
            "a:1,ftp://b",
        ] {
            assert!(
                matches!(Servers::parse(bad, &plain), Err(Failure::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unreachable_server_fails_at_the_deadline() {
        // Port 1 on loopback refuses connections.
        let server = Servers::parse("127.0.0.1:1", &TlsFiles::default()).unwrap();
        let start = Instant::now();
        let deadline = start + Duration::from_secs(3);
        let err = call_with_retries(&server, deadline, |mut c| async move {
            c.get_status(proxyconf_proto::v1::GetStatusRequest {}).await
        })
        .await
        .unwrap_err();
        assert!(
            matches!(err, CallError::DeadlineExceeded(Some(_))),
            "{err:?}"
        );
        assert!(Instant::now() <= deadline);
        let failure = err.into_failure(&server, Duration::from_secs(3));
        assert!(matches!(failure, Failure::Unavailable(_)));
        assert!(
            failure
                .to_string()
                .contains("--allow-direct-on-unavailable")
        );
    }
}
