//! Test support shared by the integration tests: a Kubernetes API server fake that speaks the
//! real list/watch wire protocol.
#![forbid(unsafe_code)]

pub mod fake_apiserver;
pub mod fixtures;
pub mod pki;
