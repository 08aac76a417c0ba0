//! Test support shared by the integration tests and the bench: a Kubernetes API server fake that
//! speaks the real list/watch wire protocol, fixtures, certificates, HTTP/2 attackers.
#![forbid(unsafe_code)]

pub mod attack;
pub mod fake_apiserver;
pub mod fixtures;
pub mod pki;
