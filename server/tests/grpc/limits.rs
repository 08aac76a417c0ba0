//! Bounded Watch streams.

use futures::future::join_all;
use proxyconf_proto::v1::{ResolveRequest, WatchRequest, proxy_config_client::ProxyConfigClient};
use proxyconf_server::ServerOptions;
use tonic::Code;

use super::util::{ConfigMapFixture, NEXUS, TestServer, eventually, within};

fn npm() -> ConfigMapFixture {
    ConfigMapFixture::new()
        .allow("true")
        .url("npm", &format!("{NEXUS}/npm/"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_max_watch_streams_are_open_and_a_closed_one_lets_another_in() {
    let max = 5;
    let server = TestServer::start_with(ServerOptions {
        max_watch_streams: max,
        ..ServerOptions::default()
    })
    .await;
    server.observe(npm()).await;
    let channels = [server.channel().await, server.channel().await];
    // max + 1 at once, over two connections: exactly max are admitted.
    let opened = join_all((0..=max).map(|i| {
        let mut client = ProxyConfigClient::new(channels[i % 2].clone());
        async move { client.watch(WatchRequest::default()).await }
    }))
    .await;
    let (mut open, refused): (Vec<_>, Vec<_>) = opened.into_iter().partition(Result::is_ok);
    assert_eq!((open.len(), refused.len()), (max, 1));
    let refused = refused.into_iter().next().unwrap().unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(
        refused.message(),
        "this replica serves its maximum of 5 Watch streams; retry with backoff or on another \
         replica"
    );
    assert_eq!(server.metric("proxyconf_watch_rejected_total").await, 1.0);
    assert_eq!(server.metric("proxyconf_watch_streams_max").await, 5.0);
    assert_eq!(server.metric("proxyconf_watch_subscribers").await, 5.0);
    let mut client = ProxyConfigClient::new(channels[0].clone());
    let again = client.watch(WatchRequest::default()).await.unwrap_err();
    assert_eq!(again.code(), Code::ResourceExhausted);

    // Closing one lets exactly one more in.
    drop(open.pop());
    eventually(|| async { server.metric("proxyconf_watch_subscribers").await == 4.0 }).await;
    let mut admitted = client
        .watch(WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    within(admitted.message()).await.unwrap().unwrap();
    let full = client.watch(WatchRequest::default()).await.unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted);
    assert_eq!(server.metric("proxyconf_watch_rejected_total").await, 3.0);
    // Unary calls are not limited.
    client.resolve(ResolveRequest::default()).await.unwrap();
}
