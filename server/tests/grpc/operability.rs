//! Watch at scale, slow subscribers, admission, stream age, metrics and graceful shutdown.

use std::time::Duration;

use futures::future::join_all;
use proxyconf_proto::v1::{ResolveRequest, WatchRequest, proxy_config_client::ProxyConfigClient};
use proxyconf_server::ServerOptions;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::util::{ConfigMapFixture, NEXUS, TestServer, eventually, within};

fn npm_at(url: &str) -> ConfigMapFixture {
    ConfigMapFixture::new().allow("true").url("npm", url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_all_receive_a_change() {
    let server = TestServer::with(npm_at(&format!("{NEXUS}/npm/"))).await;
    let mut channels = Vec::new();
    for _ in 0..10 {
        channels.push(server.channel().await);
    }
    let mut streams = Vec::new();
    for i in 0..1000 {
        let mut client = ProxyConfigClient::new(channels[i % 10].clone());
        streams.push(
            client
                .watch(WatchRequest::default())
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let firsts = within(join_all(streams.iter_mut().map(|s| s.message()))).await;
    assert!(firsts.iter().all(|m| matches!(m, Ok(Some(_)))));
    assert_eq!(server.metric("proxyconf_watch_subscribers").await, 1000.0);

    let changed = format!("{NEXUS}/npm-group/");
    server.observe(npm_at(&changed)).await;
    let seconds = within(join_all(streams.iter_mut().map(|s| s.message()))).await;
    for message in seconds {
        let resolution = message.unwrap().unwrap();
        assert_eq!(resolution.package_managers[0].url, changed);
    }
}

/// A ConfigMap whose resolution is about 40 KB, so that a few messages fill a small window.
fn large(generation: u32) -> ConfigMapFixture {
    let mut cm = ConfigMapFixture::new().allow("true");
    for i in 0..200 {
        cm = cm.url(
            &format!("pm{i}"),
            &format!("{NEXUS}/a-rather-long-repository-name-{i}/generation-{generation}/"),
        );
    }
    cm
}

#[tokio::test]
async fn a_stalled_subscriber_holds_no_queue_and_delays_nobody() {
    let server = TestServer::start_with(ServerOptions {
        coalesce: Duration::ZERO,
        ..ServerOptions::default()
    })
    .await;
    server.observe(large(0)).await;
    // The stalled subscriber's connection has a small HTTP/2 window: once a message or two are in
    // flight, the server can send it nothing more until it reads.
    let small_window = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut stalled = ProxyConfigClient::new(small_window)
        .watch(WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    within(stalled.message()).await.unwrap().unwrap();

    let mut active = server
        .client()
        .await
        .watch(WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    within(active.message()).await.unwrap().unwrap();
    let changes: u32 = 100;
    for generation in 1..=changes {
        server.observe(large(generation)).await;
        // The reading subscriber gets every change while the other one is stalled.
        let got = within(active.message()).await.unwrap().unwrap();
        assert!(
            got.package_managers[0]
                .url
                .ends_with(&format!("generation-{generation}/"))
        );
    }
    // Every message the server produced: the two first ones, the active subscriber's 100, and
    // the few the stalled one had room for. No queue of 100 versions exists anywhere.
    let sent = server.metric("proxyconf_watch_messages_total").await;
    let stalled_sent = sent - f64::from(changes) - 2.0;
    assert!(
        stalled_sent <= 4.0,
        "{stalled_sent} messages produced for the stalled subscriber"
    );

    // When it reads again, it reaches the latest version after at most those few.
    let last = format!("generation-{changes}/");
    let mut read = 0;
    loop {
        let m = within(stalled.message()).await.unwrap().unwrap();
        read += 1;
        if m.package_managers[0].url.ends_with(&last) {
            break;
        }
    }
    assert!(read <= 5, "read {read} messages to catch up");
}

#[tokio::test]
async fn too_many_stream_setups_get_a_retryable_status() {
    let server = TestServer::start_with(ServerOptions {
        watch_setups_per_second: 1,
        watch_setup_burst: 3,
        ..ServerOptions::default()
    })
    .await;
    server.observe(npm_at(&format!("{NEXUS}/npm/"))).await;
    let mut client = server.client().await;
    let mut admitted = Vec::new();
    for _ in 0..3 {
        admitted.push(client.watch(WatchRequest::default()).await.unwrap());
    }
    let refused = client.watch(WatchRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("retry"), "{refused}");
    assert_eq!(server.metric("proxyconf_watch_rejected_total").await, 1.0);
    // Unary calls are not limited.
    client.resolve(ResolveRequest::default()).await.unwrap();
}

#[tokio::test]
async fn streams_end_at_their_maximum_age_for_rebalancing() {
    let server = TestServer::start_with(ServerOptions {
        max_connection_age: Some(Duration::from_millis(300)),
        max_connection_age_grace: Duration::from_secs(5),
        ..ServerOptions::default()
    })
    .await;
    server.observe(npm_at(&format!("{NEXUS}/npm/"))).await;
    let mut stream = server
        .client()
        .await
        .watch(WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    within(stream.message()).await.unwrap().unwrap();
    let end = within(stream.message()).await.unwrap_err();
    assert_eq!(end.code(), Code::Unavailable);
    assert!(end.message().contains("maximum age"), "{end}");
}

#[tokio::test]
async fn metrics_describe_calls_and_configuration() {
    let server = TestServer::with(npm_at(&format!("{NEXUS}/npm/")).url("pip", "ftp://nope/")).await;
    server.wait_synced().await;
    let mut client = server.client().await;
    for _ in 0..3 {
        client.resolve(ResolveRequest::default()).await.unwrap();
    }
    let bad = ResolveRequest {
        enable_package_registry_proxy: None,
        package_managers: vec!["NPM".into()],
        enable_cache_proxy: None,
    };
    client.resolve(bad).await.unwrap_err();
    let text = server.metrics().await;
    for line in [
        "proxyconf_resolve_requests_total{outcome=\"Ok\"} ",
        "proxyconf_resolve_requests_total{outcome=\"InvalidArgument\"} 1",
        "proxyconf_config_problems 1",
        "proxyconf_package_managers 1",
        "proxyconf_package_registry_proxy_allowed 1",
        "proxyconf_source_synced 1",
        "proxyconf_source_stale 0",
        "proxyconf_source_state{state=\"synced\"} 1",
        "proxyconf_source_state{state=\"stale\"} 0",
        "proxyconf_source_state{state=\"not_synced\"} 0",
        "proxyconf_config_changes_total 1",
        "proxyconf_watch_subscribers 0",
        concat!(
            "proxyconf_build_info{version=\"",
            env!("CARGO_PKG_VERSION"),
            "\"} 1"
        ),
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // 3 Ok calls, plus the ones wait_synced made.
    assert!(
        server
            .metric("proxyconf_resolve_requests_total{outcome=\"Ok\"}")
            .await
            >= 3.0
    );

    server
        .send(proxyconf_server::source::SourceEvent::Failed("gone".into()))
        .await;
    // (A sample line, not the HELP text, which also starts with "proxyconf_source_stale 1".)
    eventually(|| async { server.metric("proxyconf_source_stale").await == 1.0 }).await;
    assert_eq!(server.metric("proxyconf_source_errors_total").await, 1.0);
    let text = server.metrics().await;
    for line in [
        "proxyconf_source_state{state=\"stale\"} 1",
        "proxyconf_source_state{state=\"synced\"} 0",
    ] {
        assert!(
            text.contains(line),
            "one state at a time: {line:?} in\n{text}"
        );
    }
}

#[tokio::test]
async fn shutdown_ends_streams_refuses_new_ones_and_exits() {
    let mut server = TestServer::with(npm_at(&format!("{NEXUS}/npm/"))).await;
    let channel = server.channel().await;
    let mut client = ProxyConfigClient::new(channel.clone());
    let mut health = HealthClient::new(channel);
    let mut stream = client
        .watch(WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    within(stream.message()).await.unwrap().unwrap();

    server.shut_down();
    let end = within(stream.message()).await.unwrap_err();
    assert_eq!(end.code(), Code::Unavailable, "{end}");
    assert!(end.message().contains("shutting down"), "{end}");

    // Health went NOT_SERVING (or the connection is already closed: both send clients away).
    if let Ok(status) = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
    {
        assert_eq!(status.into_inner().status(), ServingStatus::NotServing);
    }
    let finished = server.finished.take().unwrap();
    let result = tokio::time::timeout(Duration::from_secs(15), finished)
        .await
        .expect("run returns within the grace period")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}
