//! `deploy/` as a platform team applies it: rendered by `kubectl kustomize` (kubectl must be on
//! PATH; `.ci/run` checks), every object parsed as its k8s-openapi type, and the properties that
//! matter asserted: least-privilege RBAC, probes on the gRPC health service, hardening.

use std::{collections::BTreeMap, process::Command};

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{Namespace, Service, ServiceAccount},
        networking::v1::NetworkPolicy,
        policy::v1::PodDisruptionBudget,
        rbac::v1::{PolicyRule, Role, RoleBinding},
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use serde_json::Value;

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
