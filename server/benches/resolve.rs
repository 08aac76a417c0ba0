//! Criterion benchmarks of the pure hot paths: resolving a ConfigMap into a snapshot, and
//! selecting one request's answer from a snapshot. `cargo bench -p proxyconf-server`.

use std::{collections::BTreeMap, hint::black_box, sync::Arc};

use proxyconf_e2e::fixtures::{large, typical};

use criterion::{Criterion, criterion_group, criterion_main};
use proxyconf_proto::v1::{ResolveRequest, SourceState};
use proxyconf_server::{
    resolve::{Policy, resolve},
    snapshot::{Scope, Snapshot},
    source::SourceDescription,
};

fn snapshot(data: &BTreeMap<String, String>) -> Snapshot {
    Snapshot {
        resolved: Some(Arc::new(resolve(data, &Policy::default()))),
        state: SourceState::Synced,
        ..Snapshot::not_synced(
            SourceDescription {
                kind: "file",
                location: "bench".into(),
            },
            Policy::default(),
        )
    }
}

fn benches(c: &mut Criterion) {
    let policy = Policy::default();
    let typical = typical();
    let largest = large(5000);
    c.bench_function("resolve typical ConfigMap (10 keys)", |b| {
        b.iter(|| resolve(black_box(&typical), &policy))
    });
    c.bench_function("resolve 1 MiB ConfigMap (5,000 package managers)", |b| {
        b.iter(|| resolve(black_box(&largest), &policy))
    });
    let snap = snapshot(&typical);
    let all = Scope::all();
    c.bench_function("answer one request from a snapshot (typical)", |b| {
        b.iter(|| snap.resolution(black_box(&all)))
    });
    let scoped = Scope::from_request(&ResolveRequest {
        package_managers: vec!["npm".into(), "gomod".into()],
        ..ResolveRequest::default()
    })
    .expect("valid scope");
    c.bench_function("answer a scoped request from a snapshot (typical)", |b| {
        b.iter(|| snap.resolution(black_box(&scoped)))
    });
}

criterion_group!(resolve_benches, benches);
criterion_main!(resolve_benches);
