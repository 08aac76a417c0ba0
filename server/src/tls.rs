//! TLS for the gRPC listener (rustls), optionally with client certificates (mutual TLS), reloaded
//! when the files change — cert-manager rotates them in place — without restarting the server or
//! dropping its connections: each new connection is accepted with the newest configuration.
//! [`crate::incoming`] runs the handshake of each connection, within its deadline.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use tokio::net::TcpStream;
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        RootCertStore, ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        server::WebPkiClientVerifier,
    },
    server::TlsStream,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::incoming::{Handshake, Refusals};

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

/// The TLS handshake of each new connection, with the newest configuration from the files.
pub(crate) struct TlsHandshake {
    pub(crate) files: TlsFiles,
    current: Arc<RwLock<Arc<ServerConfig>>>,
    refusals: Refusals,
}

impl TlsHandshake {
    /// Loads the files; fails when they are unusable at start (a bad rotation later is logged
    /// and the previous configuration kept).
    pub(crate) fn load(files: TlsFiles) -> Result<Self, TlsError> {
        Ok(Self {
            current: Arc::new(RwLock::new(Arc::new(files.load()?))),
            files,
            refusals: Refusals::new(
                "TLS handshake refused (a client certificate this server does not accept, a \
                 client that does not trust this server's certificate, or plaintext on the TLS \
                 port)",
            ),
        })
    }

    /// Reloads the configuration when the files change, in a task of `tasks`, until `stop`.
    pub(crate) fn follow_files(&self, tasks: &TaskTracker, stop: CancellationToken) {
        tasks.spawn(reload(self.files.clone(), self.current.clone(), stop));
    }
}

impl Handshake for TlsHandshake {
    type Io = TlsStream<TcpStream>;

    async fn handshake(&self, tcp: TcpStream, peer: SocketAddr) -> Option<Self::Io> {
        // The lock is held only to clone an Arc; a poisoned lock still holds a valid config.
        let config = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        TlsAcceptor::from(config)
            .accept(tcp)
            .await
            .inspect_err(|error| self.refusals.refused(peer, error))
            .ok()
    }
}

/// Checks the files every [`RELOAD_CHECK`] until `stop`, and swaps in a new configuration when
/// they changed and are usable.
async fn reload(files: TlsFiles, current: Arc<RwLock<Arc<ServerConfig>>>, stop: CancellationToken) {
    let mut seen = files.fingerprint();
    let pause = |duration| stop.run_until_cancelled(tokio::time::sleep(duration));
    while pause(RELOAD_CHECK).await.is_some() {
        let now = files.fingerprint();
        if now == seen {
            continue;
        }
        // Let a rotation that writes several files finish.
        if pause(Duration::from_millis(200)).await.is_none() {
            return;
        }
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
