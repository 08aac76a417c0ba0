//! Resolve and GetStatus.

use proxyconf_proto::v1::{Decision, GetStatusRequest, ResolveRequest, SourceState};
use proxyconf_server::source::SourceEvent;
use tonic::Code;

use super::util::{ConfigMapFixture, NEXUS, TestServer, eventually};

fn request(enable: Option<bool>, pms: &[&str]) -> ResolveRequest {
    ResolveRequest {
        enable_package_registry_proxy: enable,
        package_managers: pms.iter().map(|s| (*s).to_owned()).collect(),
        enable_cache_proxy: None,
    }
}

#[tokio::test]
async fn unavailable_until_the_first_state() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let err = client.resolve(request(None, &[])).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.message().contains("not loaded the ConfigMap yet"),
        "{err}"
    );

    let status = client
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.source.unwrap().state(), SourceState::NotSynced);

    server.observe(ConfigMapFixture::new().allow("true")).await;
    server.wait_synced().await;
    assert!(client.resolve(request(None, &[])).await.is_ok());
}

#[tokio::test]
async fn resolves_per_request() {
    let server = TestServer::with(
        ConfigMapFixture::new()
            .allow("true")
            .url("npm", &format!("{NEXUS}/npm/"))
            .url("gomod", &format!("{NEXUS}/go/"))
            .url("pip", "https://user:secret@nexus/pypi/simple/")
            .resource_version("991"),
    )
    .await;
    server.wait_synced().await;
    let mut client = server.client().await;

    let all = client
        .resolve(request(None, &[]))
        .await
        .unwrap()
        .into_inner();
    assert!(all.active);
    assert_eq!(all.decision(), Decision::Active);
    let names: Vec<_> = all
        .package_managers
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["gomod", "npm"]);
    assert_eq!(
        all.package_managers[1].env[0].name,
        "HERMETO_NPM__PROXY_URL"
    );
    assert_eq!(all.problems.len(), 1);
    assert_eq!(all.problems[0].value, "https://***@nexus/pypi/simple/");
    let source = all.source.unwrap();
    assert_eq!(source.state(), SourceState::Synced);
    assert_eq!(source.resource_version, "991");

    let npm = client
        .resolve(request(None, &["npm"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(npm.package_managers.len(), 1);
    assert!(npm.problems.is_empty());

    let off = client
        .resolve(request(Some(false), &[]))
        .await
        .unwrap()
        .into_inner();
    assert!(!off.active);
    assert_eq!(off.decision(), Decision::UserOptedOut);
    assert!(off.package_managers.is_empty());

    let again = client
        .resolve(request(None, &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.version, all.version, "same content, same version");
    assert_ne!(npm.version, all.version);
}

#[tokio::test]
async fn invalid_scope_is_invalid_argument() {
    let server = TestServer::with(ConfigMapFixture::new()).await;
    server.wait_synced().await;
    let err = server
        .client()
        .await
        .resolve(request(None, &["NPM; rm -rf /"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("not a package manager name"),
        "{err}"
    );
}

#[tokio::test]
async fn status_reports_source_problems_and_staleness() {
    let server = TestServer::with(
        ConfigMapFixture::new()
            .allow("true")
            .url("npm", &format!("{NEXUS}/npm/"))
            .url("cargo", "ftp://nexus/cargo/")
            .resource_version("12"),
    )
    .await;
    server.wait_synced().await;
    let mut client = server.client().await;
    let status = client
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.source_kind, "file");
    assert_eq!(status.source_location, "test/cluster-config.yaml");
    assert_eq!(status.source.as_ref().unwrap().resource_version, "12");
    assert!(status.package_registry_proxy_allowed);
    assert_eq!(status.package_managers, ["npm"]);
    assert_eq!(status.problems.len(), 1);
    assert_eq!(status.problems[0].key, "package-registry-proxy-cargo-url");
    assert!(!status.stale);
    assert!(status.last_change_unix_ms > 0);
    assert_eq!(status.server_version, env!("CARGO_PKG_VERSION"));

    server
        .send(SourceEvent::Failed(
            "cannot read ConfigMap file: gone".into(),
        ))
        .await;
    eventually(|| {
        let mut client = client.clone();
        async move {
            let s = client
                .get_status(GetStatusRequest {})
                .await
                .unwrap()
                .into_inner();
            s.stale && s.source_error.contains("gone")
        }
    })
    .await;
    let still = client
        .resolve(request(None, &["npm"]))
        .await
        .unwrap()
        .into_inner();
    assert!(still.active, "the last good state is still served");
}

#[tokio::test]
async fn the_largest_configmap_resolves() {
    // About 1 MiB of data, the most Kubernetes stores in a ConfigMap: 5,000 package managers.
    let mut cm = ConfigMapFixture::new().allow("true");
    for i in 0..5000 {
        cm = cm.url(
            &format!("pm{i}"),
            &format!("{NEXUS}/repository-with-a-long-name-{i:05}/and/a/path/"),
        );
    }
    let server = TestServer::with(cm).await;
    server.wait_synced().await;
    let mut client = server
        .client()
        .await
        .max_decoding_message_size(16 * 1024 * 1024);
    let all = client
        .resolve(request(None, &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.package_managers.len(), 5000);
    let status = client
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.package_managers.len(), 5000);
}

#[tokio::test]
async fn an_oversized_request_is_refused_and_the_server_carries_on() {
    let server = TestServer::with(ConfigMapFixture::new().allow("true")).await;
    server.wait_synced().await;
    let mut client = server.client().await;
    let huge = ResolveRequest {
        package_managers: (0..20_000)
            .map(|i| format!("package-manager-{i}"))
            .collect(),
        ..ResolveRequest::default()
    };
    let err = client.resolve(huge).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err}");
    assert!(client.resolve(request(None, &[])).await.is_ok());
}
