//! Decoding of the gRPC requests and their validation, as the server's handlers do it: prost
//! decodes `proxyconf.v1.ResolveRequest` (the `Resolve` call) or `WatchRequest` (the `Watch`
//! call), then `Scope::from_request` validates it, an invalid one becomes INVALID_ARGUMENT
//! (`Error` → `tonic::Status`), and a valid one selects from a snapshot (`Snapshot::resolution`).
//!
//! The first input byte picks the message, the rest is its encoding (tonic refuses anything over
//! `MAX_REQUEST_BYTES` before decoding).
//!
//! Properties:
//! - decoding never panics; a decoded message re-encodes to bytes that decode to the same message;
//! - a request is valid exactly when every package manager name it lists is valid; its scope is
//!   what the fields say (unset `enable_package_registry_proxy` means true, unset
//!   `enable_cache_proxy` false, no names means all);
//! - an invalid request is INVALID_ARGUMENT with a bounded message naming (a prefix of) an
//!   invalid name;
//! - the answer to a valid request holds only package managers and problems in scope, and the
//!   cache proxy section exactly when asked for.
#![no_main]

use std::{collections::BTreeSet, sync::LazyLock, time::SystemTime};

use libfuzzer_sys::fuzz_target;
use prost::Message;
use proxyconf_proto::{
    contract::is_valid_package_manager_name,
    v1::{ResolveRequest, WatchRequest},
};
use proxyconf_server::{
    Error, MAX_REQUEST_BYTES,
    resolve::Policy,
    snapshot::{Scope, Snapshot},
    source::{ConfigMapState, SourceDescription, SourceEvent, file_format},
    state,
};

/// The example ConfigMap, plus a broken package manager URL and a misspelt key.
const CONFIGMAP: &str = include_str!("../../deploy/examples/cluster-config.yaml");

static SNAPSHOT: LazyLock<Snapshot> = LazyLock::new(|| {
    let ConfigMapState::Present { mut data, .. } =
        file_format::parse_manifest(CONFIGMAP).expect("the example ConfigMap parses")
    else {
        unreachable!()
    };
    data.insert(
        "package-registry-proxy-rpm-url".into(),
        "https://user:secret@nexus/rpm/".into(),
    );
    data.insert("package-registry-proxy-Npm-url".into(), "https://x/".into());
    state::apply(
        &Snapshot::not_synced(
            SourceDescription {
                kind: "file",
                location: "cluster-config.yaml".into(),
            },
            Policy::default(),
        ),
        SourceEvent::Observed(ConfigMapState::Present {
            data,
            resource_version: Some("7".into()),
        }),
        SystemTime::UNIX_EPOCH,
    )
});

fuzz_target!(|bytes: &[u8]| {
    let Some((&pick, encoded)) = bytes.split_first() else {
        return;
    };
    if encoded.len() > MAX_REQUEST_BYTES {
        return;
    }
    let request = if pick % 2 == 0 {
        let Ok(request) = ResolveRequest::decode(encoded) else {
            return;
        };
        round_trips(&request);
        request
    } else {
        let Ok(watch) = WatchRequest::decode(encoded) else {
            return;
        };
        round_trips(&watch);
        // As the Watch handler does.
        watch.request.unwrap_or_default()
    };

    let all_valid = request
        .package_managers
        .iter()
        .all(|n| is_valid_package_manager_name(n));
    match Scope::from_request(&request) {
        Ok(scope) => {
            assert!(all_valid);
            assert_eq!(
                scope.enable,
                request.enable_package_registry_proxy.unwrap_or(true)
            );
            assert_eq!(
                scope.enable_cache_proxy,
                request.enable_cache_proxy.unwrap_or(false)
            );
            let names: BTreeSet<String> = request.package_managers.iter().cloned().collect();
            assert_eq!(scope.package_managers, (!names.is_empty()).then_some(names));

            let answer = SNAPSHOT.resolution(&scope).expect("synced");
            let in_scope = |name: &str| {
                scope
                    .package_managers
                    .as_ref()
                    .is_none_or(|s| s.contains(name))
            };
            assert!(answer.package_managers.iter().all(|pm| in_scope(&pm.name)));
            assert!(
                answer
                    .problems
                    .iter()
                    .all(|p| p.package_manager.is_empty() || in_scope(&p.package_manager))
            );
            assert_eq!(answer.cache_proxy.is_some(), scope.enable_cache_proxy);
            assert_eq!(answer.active, scope.enable);
        }
        Err(invalid) => {
            assert!(!all_valid);
            assert!(invalid.name.chars().count() <= 64);
            assert!(
                request
                    .package_managers
                    .iter()
                    .any(|n| !is_valid_package_manager_name(n) && n.starts_with(&invalid.name)),
                "{:?} is not one of the invalid names",
                invalid.name
            );
            let status = tonic::Status::from(Error::from(invalid));
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().len() <= 1024, "{}", status.message().len());
        }
    }
});

fn round_trips<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M) {
    let encoded = message.encode_to_vec();
    assert_eq!(encoded.len(), message.encoded_len());
    assert_eq!(&M::decode(encoded.as_slice()).expect("re-decodes"), message);
}
