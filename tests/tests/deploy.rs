//! `deploy/` as a platform team applies it: rendered by `kubectl kustomize` (kubectl must be on
//! PATH; `.ci/run` checks), every object parsed as its k8s-openapi type, and the properties that
//! matter asserted: least-privilege RBAC, probes on the gRPC health service, hardening.

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{Container, Namespace, Service, ServiceAccount},
        networking::v1::NetworkPolicy,
        policy::v1::PodDisruptionBudget,
        rbac::v1::{PolicyRule, Role, RoleBinding},
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use serde_json::Value;

use crate::e2e::util::binary;

/// The rendered base, by kind.
fn render() -> BTreeMap<String, Vec<Value>> {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base");
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(&base)
        .output()
        .expect("kubectl must be installed to test deploy/ (see .ci/run)");
    assert!(
        output.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).expect("rendered YAML parses");
    let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for doc in documents {
        let kind = doc["kind"]
            .as_str()
            .expect("every object has a kind")
            .to_owned();
        by_kind.entry(kind).or_default().push(doc);
    }
    by_kind
}

fn one<T: serde::de::DeserializeOwned>(objects: &BTreeMap<String, Vec<Value>>, kind: &str) -> T {
    let list = &objects[kind];
    assert_eq!(list.len(), 1, "one {kind}");
    serde_json::from_value(list[0].clone()).unwrap_or_else(|e| panic!("{kind} parses: {e}"))
}

#[test]
fn every_object_parses_as_its_type() {
    let objects = render();
    let kinds: Vec<&str> = objects.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        [
            "Deployment",
            "Namespace",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    let _: Namespace = one(&objects, "Namespace");
    let _: ServiceAccount = one(&objects, "ServiceAccount");
    let _: PodDisruptionBudget = one(&objects, "PodDisruptionBudget");
    let _: NetworkPolicy = one(&objects, "NetworkPolicy");
    for service in &objects["Service"] {
        let _: Service = serde_json::from_value(service.clone()).unwrap();
    }
}

#[test]
fn rbac_is_exactly_read_and_watch_of_the_one_configmap() {
    let objects = render();
    assert!(!objects.contains_key("ClusterRole") && !objects.contains_key("ClusterRoleBinding"));
    let role: Role = one(&objects, "Role");
    assert_eq!(role.metadata.namespace.as_deref(), Some("konflux-info"));
    assert_eq!(
        role.rules.unwrap(),
        [PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            resource_names: Some(vec!["cluster-config".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            non_resource_urls: None,
        }]
    );
    let binding: RoleBinding = one(&objects, "RoleBinding");
    assert_eq!(binding.metadata.namespace.as_deref(), Some("konflux-info"));
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
    let subjects = binding.subjects.unwrap();
    assert_eq!(subjects.len(), 1);
    let sa: ServiceAccount = one(&objects, "ServiceAccount");
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), sa.metadata.name.as_ref());
    assert_eq!(subjects[0].namespace, sa.metadata.namespace);
}

#[test]
fn deployment_is_hardened_and_probes_the_grpc_health_service() {
    let objects = render();
    let deployment: Deployment = one(&objects, "Deployment");
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    let sa: ServiceAccount = one(&objects, "ServiceAccount");
    assert_eq!(pod.service_account_name, sa.metadata.name);
    assert!(
        pod.topology_spread_constraints
            .is_some_and(|c| c.iter().any(|c| c.topology_key == "kubernetes.io/hostname")),
        "spread across nodes"
    );
    let pod_security = pod.security_context.unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(
        pod_security.seccomp_profile.unwrap().type_,
        "RuntimeDefault"
    );

    let container = &pod.containers[0];
    let ports = container.ports.as_ref().unwrap();
    let grpc_port = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("grpc"))
        .unwrap()
        .container_port;
    assert!(ports.iter().any(|p| p.name.as_deref() == Some("metrics")));
    let args = container.args.as_ref().unwrap();
    assert!(
        args.contains(&format!("--listen=0.0.0.0:{grpc_port}")),
        "{args:?}"
    );

    let readiness = container
        .readiness_probe
        .as_ref()
        .unwrap()
        .grpc
        .as_ref()
        .unwrap();
    assert_eq!(readiness.port, grpc_port);
    assert_eq!(
        readiness.service.as_deref(),
        Some(proxyconf_proto::SERVICE_NAME)
    );
    let liveness = container
        .liveness_probe
        .as_ref()
        .unwrap()
        .grpc
        .as_ref()
        .unwrap();
    assert_eq!(liveness.port, grpc_port);
    assert_eq!(
        liveness.service.as_deref(),
        Some(proxyconf_server::health::LIVENESS)
    );

    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_owned()][..])
    );
    let resources = container.resources.as_ref().unwrap();
    for key in ["cpu", "memory"] {
        assert!(
            resources.requests.as_ref().unwrap().contains_key(key),
            "request {key}"
        );
        assert!(
            resources.limits.as_ref().unwrap().contains_key(key),
            "limit {key}"
        );
    }
}

#[test]
fn services_and_network_policy_expose_only_what_is_needed() {
    let objects = render();
    let services: Vec<Service> = objects["Service"]
        .iter()
        .map(|s| serde_json::from_value(s.clone()).unwrap())
        .collect();
    assert_eq!(services.len(), 2);
    let headless = services
        .iter()
        .filter(|s| s.spec.as_ref().unwrap().cluster_ip.as_deref() == Some("None"))
        .count();
    assert_eq!(
        headless, 1,
        "one headless Service for client-side balancing"
    );
    for service in &services {
        let ports = service.spec.as_ref().unwrap().ports.as_ref().unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(
            ports[0].target_port,
            Some(IntOrString::String("grpc".into()))
        );
    }

    let policy: NetworkPolicy = one(&objects, "NetworkPolicy");
    let spec = policy.spec.unwrap();
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_owned()][..])
    );
    let ports: Vec<IntOrString> = spec
        .ingress
        .unwrap()
        .iter()
        .flat_map(|rule| rule.ports.clone().unwrap_or_default())
        .filter_map(|p| p.port)
        .collect();
    assert_eq!(ports, [IntOrString::Int(50051), IntOrString::Int(9090)]);

    let pdb: PodDisruptionBudget = one(&objects, "PodDisruptionBudget");
    assert_eq!(pdb.spec.unwrap().min_available, Some(IntOrString::Int(1)));
}

/// The server's container in the rendered base.
fn server_container() -> Container {
    let deployment: Deployment = one(&render(), "Deployment");
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    pod.containers.into_iter().next().expect("a container")
}

/// The value of `--flag=VALUE` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|arg| arg.strip_prefix(flag)?.strip_prefix('='))
}

/// A memory quantity in KiB (`Mi` and `Gi`, the suffixes deploy/ uses).
fn kib(quantity: &str) -> u64 {
    let (number, unit) = quantity.split_at(quantity.len() - 2);
    let number: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("quantity {quantity}"));
    match unit {
        "Mi" => number * 1024,
        "Gi" => number * 1024 * 1024,
        _ => panic!("quantity {quantity}: only Mi and Gi are read here"),
    }
}

/// What a connection costs the server once HTTP/2 is up, with its first Watch stream, KiB: the
/// bound of proxyconf-bench's row "server memory with 5000 connections of one Watch stream each"
/// (measured 24.7 KiB).
const CONNECTION_KIB: u64 = 32;
/// What another Watch stream costs, KiB: the bound of the bench's idle subscriber rows (measured
/// 1.97 KiB at 10,000, 2.64 KiB at 100,000).
const WATCH_STREAM_KIB: u64 = 4;
/// Everything else, KiB: measured peak 57 MiB serving a 1 MiB ConfigMap, its answers cached for
/// 21 scopes, across a change (12.5 MiB with a typical ConfigMap).
const REST_KIB: u64 = 64 * 1024;

#[test]
fn the_memory_limit_covers_every_connection_and_watch_stream_the_caps_let_in() {
    let container = server_container();
    let args = container.args.unwrap();
    // Without the flags, the binary's defaults (20,000 each) hold 700 MiB.
    let cap = |name: &str| -> u64 {
        let value = flag(&args, name).unwrap_or_else(|| panic!("{name} is not set: {args:?}"));
        value.parse().unwrap_or_else(|_| panic!("{name}={value}"))
    };
    let (connections, streams) = (cap("--max-connections"), cap("--max-watch-streams"));
    let limits = container.resources.unwrap().limits.unwrap();
    let limit = kib(&limits["memory"].0);
    let needed = connections * CONNECTION_KIB + streams * WATCH_STREAM_KIB + REST_KIB;
    assert!(
        needed <= limit,
        "{connections} connections and {streams} Watch streams need up to {needed} KiB, over \
         the memory limit of {limit} KiB: the replica would be OOM-killed before it refuses"
    );
}

#[test]
fn the_server_binary_takes_the_deployments_arguments() {
    let args: Vec<String> = server_container()
        .args
        .unwrap()
        .into_iter()
        .map(|arg| match arg.split_once('=') {
            Some(("--listen" | "--metrics-listen", _)) => {
                format!("{}=127.0.0.1:0", arg.split_once('=').unwrap().0)
            }
            _ => arg,
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    // No cluster here: with every argument accepted, the server stops at its Kubernetes client
    // (exit 1); a wrong flag or value stops it before, at the command line (exit 2).
    let mut server = Command::new(binary("proxyconf-server"))
        .args(&args)
        .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            server.kill().unwrap();
            panic!("proxyconf-server {args:?} did not stop without a cluster");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::io::read_to_string(server.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
    assert!(
        stderr.contains("cannot configure the Kubernetes client"),
        "{args:?}: {stderr}"
    );
}

#[test]
fn containerfile_copies_every_workspace_member() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members_line = manifest
        .lines()
        .find(|l| l.starts_with("members"))
        .expect("a members line");
    let containerfile = std::fs::read_to_string(root.join("deploy/Containerfile")).unwrap();
    let members: Vec<&str> = members_line.split('"').skip(1).step_by(2).collect();
    assert!(members.len() >= 4, "{members:?}");
    for member in members {
        assert!(
            containerfile.contains(&format!("COPY {member} {member}")),
            "deploy/Containerfile does not copy workspace member {member}"
        );
    }
}
