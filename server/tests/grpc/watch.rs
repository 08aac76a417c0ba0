//! Watch: initial message, one message per change for the request, nothing otherwise, resume.

use proxyconf_proto::v1::{
    GetStatusRequest, Resolution, ResolveRequest, WatchRequest,
    proxy_config_client::ProxyConfigClient,
};
use tonic::transport::Channel;

use super::util::{ConfigMapFixture, NEXUS, TestServer, eventually, within};

/// Opens a Watch stream (the server accepts it).
async fn subscribe(
    client: &mut ProxyConfigClient<Channel>,
    request: WatchRequest,
) -> tonic::Streaming<Resolution> {
    client.watch(request).await.unwrap().into_inner()
}

fn watch_request(pms: &[&str], resume: &str) -> WatchRequest {
    WatchRequest {
        request: Some(ResolveRequest {
            enable_package_registry_proxy: None,
            package_managers: pms.iter().map(|s| (*s).to_owned()).collect(),
            enable_cache_proxy: None,
        }),
        resume_from_version: resume.to_owned(),
    }
}

fn base() -> ConfigMapFixture {
    ConfigMapFixture::new()
        .allow("true")
        .url("npm", &format!("{NEXUS}/npm/"))
}

#[tokio::test]
async fn initial_message_then_each_change() {
    let server = TestServer::with(base()).await;
    let mut client = server.client().await;
    let mut stream = subscribe(&mut client, watch_request(&[], "")).await;
    let first = within(stream.message()).await.unwrap().unwrap();
    assert_eq!(first.package_managers.len(), 1);

    server
        .observe(base().url("pip", &format!("{NEXUS}/pypi/simple/")))
        .await;
    let second = within(stream.message()).await.unwrap().unwrap();
    assert_eq!(second.package_managers.len(), 2);
    assert_ne!(second.version, first.version);

    server.observe(base().allow("false")).await;
    let third = within(stream.message()).await.unwrap().unwrap();
    assert!(!third.active);
}

#[tokio::test]
async fn a_change_outside_the_request_sends_nothing() {
    let server = TestServer::with(base()).await;
    let mut client = server.client().await;
    let mut npm = subscribe(&mut client, watch_request(&["npm"], "")).await;
    let first = within(npm.message()).await.unwrap().unwrap();

    // Not this subscriber's business: another package manager, an unrelated key, a new
    // resourceVersion with the same content.
    server
        .observe(base().url("pip", &format!("{NEXUS}/pypi/simple/")))
        .await;
    server
        .observe(
            base()
                .url("pip", &format!("{NEXUS}/pypi/simple/"))
                .set("enable-keyless-signing", "true")
                .resource_version("77"),
        )
        .await;
    // Then a change that is: it must be the very next message.
    server
        .observe(base().url("npm", &format!("{NEXUS}/npm-group/")))
        .await;
    let next = within(npm.message()).await.unwrap().unwrap();
    assert_ne!(next.version, first.version);
    assert_eq!(next.package_managers[0].url, format!("{NEXUS}/npm-group/"));
}

#[tokio::test]
async fn resume_from_the_current_version_sends_no_initial_message() {
    let server = TestServer::with(base()).await;
    let mut client = server.client().await;
    let current = within(async {
        let mut s = subscribe(&mut client, watch_request(&[], "")).await;
        s.message().await.unwrap().unwrap()
    })
    .await;

    let mut resumed = subscribe(&mut client, watch_request(&[], &current.version)).await;
    server.observe(base().allow("false")).await;
    let next = within(resumed.message()).await.unwrap().unwrap();
    assert!(
        !next.active,
        "the first message is the change, not the version it already had"
    );

    let mut stale = subscribe(&mut client, watch_request(&[], &current.version)).await;
    let first = within(stale.message()).await.unwrap().unwrap();
    assert!(
        !first.active,
        "an outdated version gets the current answer at once"
    );
}

#[tokio::test]
async fn status_counts_subscribers() {
    let server = TestServer::with(base()).await;
    let mut client = server.client().await;
    let mut a = subscribe(&mut client, watch_request(&[], "")).await;
    let mut b = subscribe(&mut client, watch_request(&["npm"], "")).await;
    within(a.message()).await.unwrap();
    within(b.message()).await.unwrap();
    let count = |mut c: proxyconf_proto::v1::proxy_config_client::ProxyConfigClient<_>| async move {
        c.get_status(GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .subscribers
    };
    assert_eq!(count(client.clone()).await, 2);
    drop(a);
    eventually(|| {
        let c = client.clone();
        async move { count(c).await == 1 }
    })
    .await;
}

#[tokio::test]
async fn cache_proxy_changes_reach_only_subscribers_that_enabled_it() {
    let server = TestServer::with(base().set("http-proxy", "squid.caching.svc:3128")).await;
    let mut client = server.client().await;
    let cached = WatchRequest {
        request: Some(ResolveRequest {
            enable_cache_proxy: Some(true),
            ..ResolveRequest::default()
        }),
        resume_from_version: String::new(),
    };
    let mut with_cache = subscribe(&mut client, cached).await;
    let mut without = subscribe(&mut client, watch_request(&[], "")).await;
    let first = within(with_cache.message()).await.unwrap().unwrap();
    let section = first.cache_proxy.unwrap();
    assert!(section.active);
    assert_eq!(section.http_proxy, "squid.caching.svc:3128");
    let plain = within(without.message()).await.unwrap().unwrap();
    assert!(plain.cache_proxy.is_none(), "no section unless asked for");

    server
        .observe(
            base()
                .set("http-proxy", "proxy.corp.example:8080")
                .set("no-proxy", ".svc"),
        )
        .await;
    let second = within(with_cache.message()).await.unwrap().unwrap();
    let section = second.cache_proxy.unwrap();
    assert_eq!(section.http_proxy, "proxy.corp.example:8080");
    let env: Vec<(&str, &str)> = section
        .env
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("HTTP_PROXY", "proxy.corp.example:8080"),
            ("HTTPS_PROXY", "proxy.corp.example:8080"),
            ("NO_PROXY", ".svc"),
        ]
    );

    // The subscriber without the cache proxy got nothing for that; its next message is this.
    server
        .observe(
            base()
                .set("http-proxy", "proxy.corp.example:8080")
                .set("no-proxy", ".svc")
                .allow("false"),
        )
        .await;
    let next = within(without.message()).await.unwrap().unwrap();
    assert!(!next.active);
}

#[tokio::test]
async fn a_subscriber_learns_that_the_source_went_stale_and_recovered() {
    let server = TestServer::with(base().resource_version("1")).await;
    let mut client = server.client().await;
    let mut stream = subscribe(&mut client, watch_request(&[], "")).await;
    let first = within(stream.message()).await.unwrap().unwrap();
    assert!(!first.source.as_ref().unwrap().stale);

    server
        .send(proxyconf_server::source::SourceEvent::Failed(
            "the API server refused: 403\nForbidden".into(),
        ))
        .await;
    let stale = within(stream.message()).await.unwrap().unwrap();
    assert_eq!(stale.version, first.version, "the content did not change");
    let source = stale.source.as_ref().unwrap();
    assert!(source.stale);
    assert!(source.stale_since_unix_ms > 0);
    assert_eq!(source.location, "file test/cluster-config.yaml");

    // Another failure while stale is not news; recovery is.
    server
        .send(proxyconf_server::source::SourceEvent::Failed(
            "still refused".into(),
        ))
        .await;
    server.observe(base().resource_version("2")).await;
    let recovered = within(stream.message()).await.unwrap().unwrap();
    assert_eq!(recovered.version, first.version);
    assert!(!recovered.source.as_ref().unwrap().stale);

    let status = client
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.state(), proxyconf_proto::v1::ServingState::Synced);
    let events: Vec<&str> = status.history.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(events, ["recovered", "stale", "first-sync"], "newest first");
    assert_eq!(
        status.history[1].error, "the API server refused: 403 Forbidden",
        "one line"
    );
    assert_eq!(status.history[2].version, first.version);
}

/// Watch has a transport of its own (it sends each answer's shared frame): the same refusals as
/// the generated methods, and the server carries on.
#[tokio::test]
async fn an_oversized_or_invalid_watch_request_is_refused_and_the_server_carries_on() {
    let server = TestServer::with(base()).await;
    server.wait_synced().await;
    let mut client = server.client().await;
    let huge = WatchRequest {
        resume_from_version: "v".repeat(100_000),
        ..WatchRequest::default()
    };
    let err = client.watch(huge).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");
    let invalid = client.watch(watch_request(&["NPM"], "")).await.unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument, "{invalid}");
    assert!(invalid.message().contains("NPM"), "{invalid}");
    let mut stream = subscribe(&mut client, watch_request(&["npm"], "")).await;
    let first = within(stream.message()).await.unwrap().unwrap();
    assert_eq!(first.package_managers[0].name, "npm");
}
