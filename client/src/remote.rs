//! Talking to proxyconf-server within a deadline: connects, calls, and retries what may succeed
//! on a second try (unreachable, not loaded yet, overloaded) with jittered backoff until the
//! deadline; anything else fails at once.

use std::{
    future::Future,
    time::{Duration, SystemTime},
};

use proxyconf_proto::v1::proxy_config_client::ProxyConfigClient;
use tokio::time::Instant;
use tonic::{Code, transport::Channel};

use crate::exit::Failure;

/// Where the server is, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress(String);

impl ServerAddress {
    /// Accepts `http://host:port` or a bare `host:port` (taken as `http://`).
    pub fn parse(value: &str) -> Result<Self, Failure> {
        let url = if value.contains("://") {
            value.to_owned()
        } else {
            format!("http://{value}")
        };
        if url.starts_with("https://") {
            return Err(Failure::Usage(format!(
                "--server {value}: TLS is not supported by this version of proxyconf; use \
                 http:// inside the cluster"
            )));
        }
        if !url.starts_with("http://") || url.len() == "http://".len() {
            return Err(Failure::Usage(format!(
                "--server {value:?}: expected http://HOST:PORT (or HOST:PORT)"
            )));
        }
        tonic::transport::Endpoint::from_shared(url.clone()).map_err(|e| {
            Failure::Usage(format!("--server {value:?} is not a valid address: {e}"))
        })?;
        Ok(Self(url))
    }

    /// The address as a URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The longest pause between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The first pause.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Connects to `server` and runs `call`, retrying retryable failures until `deadline`.
pub async fn call_with_retries<T, F, Fut>(
    server: &ServerAddress,
    deadline: Instant,
    mut call: F,
) -> Result<T, CallError>
where
    F: FnMut(ProxyConfigClient<Channel>) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut jitter = Jitter::new();
    loop {
        let attempt = async {
            let channel = connect(server).await?;
            call(ProxyConfigClient::new(channel))
                .await
                .map_err(CallError::Status)
        };
        let last = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) if error.is_retryable() => error,
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(CallError::DeadlineExceeded(None)),
        };
        let pause = jitter.spread(backoff);
        if Instant::now() + pause >= deadline {
            return Err(CallError::DeadlineExceeded(Some(Box::new(last))));
        }
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Opens a connection to `server`.
pub async fn connect(server: &ServerAddress) -> Result<Channel, CallError> {
    tonic::transport::Endpoint::from_shared(server.0.clone())
        .map_err(CallError::Connect)?
        .connect()
        .await
        .map_err(CallError::Connect)
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

    /// The cause, as one line: the innermost error of a connection failure says the most.
    pub fn describe(&self) -> String {
        match self {
            Self::Connect(e) => {
                let mut text = e.to_string();
                let mut cause = std::error::Error::source(e);
                while let Some(c) = cause {
                    text = format!("{text}: {c}");
                    cause = c.source();
                }
                format!("cannot connect: {text}")
            }
            Self::Status(_) => self.to_string(),
            Self::DeadlineExceeded(Some(last)) => last.describe(),
            Self::DeadlineExceeded(None) => "no answer".to_owned(),
        }
    }

    /// The client failure for this error when talking to `server` with `timeout`.
    pub fn into_failure(self, server: &ServerAddress, timeout: Duration) -> Failure {
        match &self {
            Self::Status(status) if status.code() == Code::InvalidArgument => Failure::Usage(
                format!("the server refused the request: {}", status.message()),
            ),
            Self::Status(status) if !self.is_retryable() => Failure::Other(format!(
                "the server at {} failed: {}: {}",
                server.as_str(),
                status.code(),
                status.message()
            )),
            _ => Failure::Unavailable(format!(
                "cannot get package registry proxy settings from {} within {} ({}); the build \
                 stops instead of fetching from upstream: check that proxyconf-server runs and \
                 --server points at it, or pass --allow-direct-on-unavailable to go on without \
                 the proxy",
                server.as_str(),
                humantime::format_duration(timeout),
                self.describe()
            )),
        }
    }
}

/// Spreads pauses over [½, 1½) of their nominal length, so that many clients restarted together
/// do not retry together. Not for cryptography: a xorshift seeded from the clock and the pid.
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self(u64::from(nanos) ^ (u64::from(std::process::id()) << 32) | 1)
    }

    fn spread(&mut self, nominal: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let fraction = (self.0 % 1000) as f64 / 1000.0;
        nominal.mul_f64(0.5 + fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        assert_eq!(
            ServerAddress::parse("localhost:50051").unwrap().as_str(),
            "http://localhost:50051"
        );
        assert_eq!(
            ServerAddress::parse("http://proxyconf.konflux-info.svc:50051")
                .unwrap()
                .as_str(),
            "http://proxyconf.konflux-info.svc:50051"
        );
        for bad in ["", "ftp://x", "https://x:1", "http://", "http://a b"] {
            assert!(
                matches!(ServerAddress::parse(bad), Err(Failure::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let mut j = Jitter::new();
        for _ in 0..1000 {
            let d = j.spread(Duration::from_millis(100));
            assert!(
                d >= Duration::from_millis(50) && d < Duration::from_millis(150),
                "{d:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unreachable_server_fails_at_the_deadline() {
        // Port 1 on loopback refuses connections.
        let server = ServerAddress::parse("127.0.0.1:1").unwrap();
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
