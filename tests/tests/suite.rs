//! Integration tests, in one binary so that linking happens once:
//!
//! - `e2e`: the real `proxyconf-server` and `proxyconf` binaries as separate processes, talking
//!   over loopback, driven the way a build step and an operator use them. The binaries are the
//!   ones `cargo test --workspace` builds into the same target directory. `e2e::recipes` and
//!   `e2e::tekton` run the documented recipes and the Tekton tasks as written.
//! - `kubernetes`: the server library with the real kube client against an API server fake that
//!   speaks the list/watch wire protocol.
//! - `deploy`: the manifests in `deploy/` render with `kubectl kustomize`, parse as their
//!   Kubernetes types, and grant exactly the least privilege.
//! - `repository`: nothing in the repository points outside it.

mod e2e {
    pub mod standins;
    pub mod util;

    mod cache_proxy;
    mod client_contract;
    mod failover;
    mod faults;
    mod file_changes;
    mod idle_connections;
    mod kubernetes;
    mod python_subscriber;
    mod recipes;
    mod tekton;
    mod tls;
}

mod kubernetes {
    pub mod util;

    mod faults;
    mod sync;
}

mod deploy;
mod monitoring;
mod repository;
