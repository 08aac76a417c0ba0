//! The server's errors, and the one place they become gRPC statuses.

use crate::snapshot::InvalidScope;

/// What can go wrong in the server library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ConfigMap has not been loaded yet; the request may be retried.
    #[error("the server has not loaded the ConfigMap yet; retry shortly or ask another replica")]
    NotSynced,
    /// The request is invalid.
    #[error("invalid request")]
    InvalidRequest(#[from] InvalidScope),
    /// The reflection service could not be built from the descriptor sets.
    #[error("cannot build the gRPC reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed.
    #[error("the gRPC server failed")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS files are not usable.
    #[error("cannot set up TLS")]
    Tls(#[from] crate::tls::TlsError),
}

/// The result type of the server library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        match &error {
            Error::NotSynced => tonic::Status::unavailable(error.to_string()),
            Error::InvalidRequest(scope) => {
                tonic::Status::invalid_argument(format!("{error}: {scope}"))
            }
            Error::Reflection(_) | Error::Transport(_) | Error::Tls(_) => {
                tonic::Status::internal(error.to_string())
            }
        }
    }
}
