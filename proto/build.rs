//! Compiles `proxyconf/v1/proxyconf.proto` with protox (pure Rust: no `protoc` needed), then
//! generates the prost messages, the tonic client, the tonic server (see [`server`]), the proto3
//! JSON mapping (pbjson) and the encoded descriptor set that server reflection serves.

use std::{env, error::Error, path::PathBuf};

use prost::Message;
use prost_types::{FileDescriptorProto, FileDescriptorSet, ServiceDescriptorProto};
use tonic_prost_build::manual;

const PROTO: &str = "proxyconf/v1/proxyconf.proto";
const PACKAGE: &str = "proxyconf.v1";
const CODEC: &str = "crate::codec::SmallBufferCodec";
/// The message the server sends pre-encoded, and the Rust type it is sent as.
const PRE_ENCODED: (&str, &str) = (
    ".proxyconf.v1.Resolution",
    "crate::encoded::Encoded<crate::v1::Resolution>",
);

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let fds = protox::compile([PROTO], ["."])?;
    let descriptor_bytes = fds.encode_to_vec();
    std::fs::write(out_dir.join("proxyconf_descriptor.bin"), &descriptor_bytes)?;

    let services = server(&fds)?;
    tonic_prost_build::configure()
        .codec_path(CODEC)
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)?;
    manual::Builder::new()
        .build_client(false)
        .build_server(true)
        .compile(&services);

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".proxyconf.v1"])?;
    Ok(())
}

/// The server of every service in the proto, generated from its descriptor as tonic's prost
/// generator would, except that a method answering [`PRE_ENCODED`]'s message sends its Rust
/// type: the server encodes each answer once and sends the same bytes to every caller.
fn server(fds: &FileDescriptorSet) -> Result<Vec<manual::Service>, Box<dyn Error>> {
    let file = fds
        .file
        .iter()
        .find(|f| f.name() == PROTO)
        .ok_or_else(|| format!("{PROTO} is not in the descriptor set"))?;
    file.service
        .iter()
        .enumerate()
        .map(|(index, descriptor)| service(file, index, descriptor))
        .collect()
}

fn service(
    file: &FileDescriptorProto,
    index: usize,
    descriptor: &ServiceDescriptorProto,
) -> Result<manual::Service, Box<dyn Error>> {
    let mut service = manual::Service::builder()
        .name(descriptor.name())
        .package(PACKAGE)
        .comment(format!(
            " Generated server of `{PACKAGE}.{}`; `Resolution` answers are sent as \
             `Encoded<Resolution>`.",
            descriptor.name()
        ));
    for (method_index, method) in descriptor.method.iter().enumerate() {
        if method.client_streaming() {
            return Err(format!("{}: client streaming is not generated", method.name()).into());
        }
        let output = if method.output_type() == PRE_ENCODED.0 {
            PRE_ENCODED.1.to_owned()
        } else {
            rust_type(method.output_type())?
        };
        let mut builder = manual::Method::builder()
            .name(snake_case(method.name()))
            .route_name(method.name())
            .input_type(rust_type(method.input_type())?)
            .output_type(output)
            .codec_path(CODEC);
        for line in comment(file, index, method_index) {
            builder = builder.comment(line);
        }
        if method.server_streaming() {
            builder = builder.server_streaming();
        }
        service = service.method(builder.build());
    }
    Ok(service.build())
}

/// The proto comment of method `method` of service `service`, line by line (for its doc).
fn comment(file: &FileDescriptorProto, service: usize, method: usize) -> Vec<String> {
    // Descriptor paths: field 6 of a file is its services, field 2 of a service its methods.
    let path = [6, service as i32, 2, method as i32];
    file.source_code_info
        .iter()
        .flat_map(|info| &info.location)
        .find(|location| location.path == path)
        .and_then(|location| location.leading_comments.as_deref())
        .map(|text| text.trim_end().lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// `.proxyconf.v1.Name` → `crate::v1::Name`.
fn rust_type(proto_type: &str) -> Result<String, Box<dyn Error>> {
    proto_type
        .strip_prefix(&format!(".{PACKAGE}."))
        .map(|name| format!("crate::v1::{name}"))
        .ok_or_else(|| format!("{proto_type} is not a message of {PACKAGE}").into())
}

/// `GetStatus` → `get_status`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}
