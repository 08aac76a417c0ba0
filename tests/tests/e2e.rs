//! End-to-end tests: the real `proxyconf-server` and `proxyconf` binaries as separate processes,
//! talking over loopback, driven the way a build step and an operator use them.
//!
//! The binaries are the ones `cargo test --workspace` builds into the same target directory.

mod e2e {
    pub mod util;

    mod client_contract;
    mod file_changes;
}
