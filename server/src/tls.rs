//! TLS for the gRPC listener (rustls), optionally with client certificates (mutual TLS), reloaded
//! when the files change — cert-manager rotates them in place — without restarting the server or
//! dropping its connections: each new connection is accepted with the newest configuration.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use futures::Stream;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        RootCertStore, ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        server::WebPkiClientVerifier,
    },
    server::TlsStream,
};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info, warn};

/// Where the certificate, its key and (for mutual TLS) the client CA are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server's certificate chain, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    /// CA certificates that client certificates must chain to, PEM; `None` for no client
    /// authentication.
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM {what}")]
    Empty { path: PathBuf, what: &'static str },
    #[error("cannot parse {path}")]
    Pem {
        path: PathBuf,
        #[source]
        source: tokio_rustls::rustls::pki_types::pem::Error,
    },
    #[error("the certificate, key or client CA is not usable")]
    Rustls(#[from] tokio_rustls::rustls::Error),
    #[error("the client CA is not usable")]
    ClientCa(#[from] tokio_rustls::rustls::server::VerifierBuilderError),
}

/// How often the files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(2);
/// How long a client may take for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsFiles {
    /// Builds a rustls configuration from the files.
    pub fn load(&self) -> Result<ServerConfig, TlsError> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let certs = read_certs(&self.cert)?;
        let key =
            PrivateKeyDer::from_pem_slice(&read(&self.key)?).map_err(|source| match source {
                tokio_rustls::rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
                    path: self.key.clone(),
                    what: "private key",
                },
                source => TlsError::Pem {
                    path: self.key.clone(),
                    source,
                },
            })?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match &self.client_ca {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(path)? {
                    roots.add(cert)?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    /// The files' modification times and sizes, to notice a rotation.
    fn fingerprint(&self) -> Vec<Option<(SystemTime, u64)>> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// Accepts TLS connections on `listener` with the configuration from `files`, reloaded when they
/// change. Fails only when the files are unusable at start; a bad rotation later is logged and the
/// previous configuration kept.
pub fn incoming(
    listener: TcpListener,
    files: TlsFiles,
) -> Result<impl Stream<Item = std::io::Result<TlsStream<tokio::net::TcpStream>>>, TlsError> {
    let current = Arc::new(RwLock::new(Arc::new(files.load()?)));
    tokio::spawn(reload(files, current.clone()));
    let (tx, rx) = mpsc::channel(64);
    let refusals = Arc::new(Refusals::default());
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // The lock is held only to clone an Arc; a poisoned lock still holds a valid config.
            let config = current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            if tx.is_closed() {
                return; // The server stopped.
            }
            // Small answers must not wait for Nagle's algorithm (see lib.rs).
            if let Err(error) = tcp.set_nodelay(true) {
                debug!(%peer, %error, "cannot set TCP_NODELAY");
            }
            let tx = tx.clone();
            let refusals = refusals.clone();
            tokio::spawn(async move {
                let handshake = TlsAcceptor::from(config).accept(tcp);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => refusals.refused(peer, &error),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// How often a refused TLS handshake is logged at most: a scanner or a misconfigured client
/// retrying in a loop must not flood the log.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Logs refused TLS handshakes (a client certificate the server does not accept, a client that
/// does not trust the server, plaintext on the TLS port), one warning per interval with the count
/// of those not logged.
#[derive(Debug, Default)]
struct Refusals {
    /// When the last warning was written, and how many refusals came since.
    state: std::sync::Mutex<(Option<tokio::time::Instant>, u64)>,
}

impl Refusals {
    fn refused(&self, peer: std::net::SocketAddr, error: &std::io::Error) {
        let now = tokio::time::Instant::now();
        // A poisoned lock only means a panic elsewhere; the counters are still usable.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_INTERVAL) {
            *suppressed += 1;
            debug!(%peer, %error, "TLS handshake refused");
            return;
        }
        warn!(
            %peer,
            %error,
            not_logged_since_last = *suppressed,
            "TLS handshake refused (a client certificate this server does not accept, a client \
             that does not trust this server's certificate, or plaintext on the TLS port)"
        );
        *last = Some(now);
        *suppressed = 0;
    }
}

async fn reload(files: TlsFiles, current: Arc<RwLock<Arc<ServerConfig>>>) {
    let mut seen = files.fingerprint();
    loop {
        tokio::time::sleep(RELOAD_CHECK).await;
        let now = files.fingerprint();
        if now == seen {
            continue;
        }
        // Let a rotation that writes several files finish.
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen = files.fingerprint();
        match files.load() {
            Ok(config) => {
                *current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
                info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(error) => warn!(
                error = %crate::source::error_chain(&error),
                "TLS files changed but cannot be used; keeping the previous certificate"
            ),
        }
    }
}
