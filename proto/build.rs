//! Compiles `proxyconf/v1/proxyconf.proto` with protox (pure Rust: no `protoc` needed), then
//! generates the prost messages, the tonic client and server, the proto3 JSON mapping (pbjson) and
//! the encoded descriptor set that server reflection serves.

use std::{env, path::PathBuf};

use prost::Message;

const PROTO: &str = "proxyconf/v1/proxyconf.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let fds = protox::compile([PROTO], ["."])?;
    let descriptor_bytes = fds.encode_to_vec();
    std::fs::write(out_dir.join("proxyconf_descriptor.bin"), &descriptor_bytes)?;

    tonic_prost_build::configure()
        .codec_path("crate::codec::SmallBufferCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".proxyconf.v1"])?;
    Ok(())
}
