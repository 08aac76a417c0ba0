//! The `proxyconf.v1` API, generated from `proxyconf/v1/proxyconf.proto` at build time.
//!
//! Messages derive serde through the proto3 JSON mapping (pbjson), with the proto field names
//! (`snake_case`) so that JSON printed by the `proxyconf` client reads like the proto.
#![forbid(unsafe_code)]

pub mod codec;
pub mod contract;
pub mod encoded;
pub mod transport;

/// Generated messages, client and server of `proxyconf.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("proxyconf.v1");
    include!(concat!(env!("OUT_DIR"), "/proxyconf.v1.ProxyConfig.rs"));
    include!(concat!(env!("OUT_DIR"), "/proxyconf.v1.serde.rs"));
}

/// The encoded `FileDescriptorSet` of `proxyconf.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/proxyconf_descriptor.bin"));

/// The fully qualified name of the service, as health checks and reflection name it (generated).
pub use v1::proxy_config_server::SERVICE_NAME;

pub use encoded::Encoded;
