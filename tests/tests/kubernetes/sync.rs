//! The normal life of the watched ConfigMap: first sync, updates, delete and recreate, bursts,
//! and what it costs the API server.

use proxyconf_proto::v1::{Decision, SourceState};

use super::util::{Harness, NPM, next, npm_at, pairs, url_of};

#[tokio::test]
async fn first_sync_serves_the_configmap_with_its_resource_version() {
    let h = Harness::start(Some(&pairs(&npm_at(NPM)))).await;
    let status = h
        .status_until("synced", |s| {
            s.source.as_ref().unwrap().state() == SourceState::Synced
        })
        .await;
    assert_eq!(status.source_kind, "kubernetes");
    assert_eq!(status.source_location, "konflux-info/cluster-config");
    assert_eq!(status.source.unwrap().resource_version, "101");
    assert!(status.last_seen_unix_ms > 0);
    let r = h.resolve().await.unwrap();
    assert_eq!(url_of(&r, "npm"), Some(NPM));
    let list = h
        .api
        .requests()
        .into_iter()
        .find(|r| r.verb == "list")
        .unwrap();
    assert_eq!(list.query["fieldSelector"], "metadata.name=cluster-config");
}

#[tokio::test]
async fn updates_reach_subscribers() {
    let h = Harness::start(Some(&pairs(&npm_at(NPM)))).await;
    let mut watch = h.watch().await;
    assert_eq!(url_of(&next(&mut watch).await, "npm"), Some(NPM));
    let group = format!("{NPM}group/");
    h.api.apply(&pairs(&npm_at(&group)));
    assert_eq!(url_of(&next(&mut watch).await, "npm"), Some(group.as_str()));
    let r = h.resolve().await.unwrap();
    assert_eq!(r.source.unwrap().resource_version, "102");
}

#[tokio::test]
async fn delete_means_everything_off_and_recreate_brings_it_back() {
    let h = Harness::start(Some(&pairs(&npm_at(NPM)))).await;
    let mut watch = h.watch().await;
    assert!(next(&mut watch).await.active);

    h.api.delete();
    let gone = next(&mut watch).await;
    assert!(!gone.active);
    assert_eq!(gone.decision(), Decision::AdministratorOff);
    assert_eq!(gone.source.unwrap().state(), SourceState::Missing);

    h.api.apply(&pairs(&npm_at(NPM)));
    let back = next(&mut watch).await;
    assert!(back.active);
    assert_eq!(back.source.unwrap().state(), SourceState::Synced);
}

#[tokio::test]
async fn absent_at_start_is_missing_and_served() {
    let h = Harness::start(None).await;
    h.status_until("missing", |s| {
        s.source.as_ref().unwrap().state() == SourceState::Missing
    })
    .await;
    let r = h.resolve().await.unwrap();
    assert!(!r.active, "the administrator's switch defaults to off");
    let mut watch = h.watch().await;
    next(&mut watch).await;
    h.api.apply(&pairs(&npm_at(NPM)));
    assert!(
        next(&mut watch).await.active,
        "created later: subscribers notified"
    );
}

#[tokio::test]
async fn a_burst_of_100_updates_ends_on_the_last() {
    let h = Harness::start(Some(&pairs(&npm_at(NPM)))).await;
    let mut watch = h.watch().await;
    next(&mut watch).await;
    let last = format!("{NPM}v100/");
    for i in 1..=100 {
        h.api.apply(&pairs(&npm_at(&format!("{NPM}v{i}/"))));
    }
    let mut messages = 0;
    loop {
        let r = next(&mut watch).await;
        messages += 1;
        if url_of(&r, "npm") == Some(last.as_str()) {
            break;
        }
    }
    assert!(
        messages < 100,
        "bursts are coalesced: {messages} messages for 100 updates"
    );
    assert_eq!(
        url_of(&h.resolve().await.unwrap(), "npm"),
        Some(last.as_str())
    );
}

#[tokio::test]
async fn client_calls_cost_the_api_server_nothing() {
    let h = Harness::start(Some(&pairs(&npm_at(NPM)))).await;
    h.status_until("synced", |s| {
        s.source.as_ref().unwrap().state() == SourceState::Synced
    })
    .await;
    // Bookmarks keep the watch current without new requests either.
    h.api.bookmark();
    let before = h.api.requests().len();
    for _ in 0..1000 {
        h.resolve().await.unwrap();
    }
    assert_eq!(
        h.api.requests().len(),
        before,
        "0 API requests per 1,000 Resolve calls"
    );
    assert_eq!((h.api.count("list"), h.api.count("watch")), (1, 1));
}
