//! The API server misbehaving: expired watches, dropped connections, errors, 403, outages. The last
//! good state is always served, marked stale, and no update is lost.

use std::time::Duration;

use proxyconf_proto::v1::SourceState;
use tonic::Code;

use super::util::{Harness, NPM, next, npm_at, options, pairs, url_of};

#[tokio::test]
async fn expired_watch_relists_without_losing_an_update() {
    let h = Harness::start(Some(&pairs(&npm_at(NPM)))).await;
    let mut watch = h.watch().await;
    next(&mut watch).await;

    // The open watch gets an ERROR 410 event, and the update after it is only visible by listing.
    h.api.expire_open_watches();
    let missed = format!("{NPM}after-410/");
    h.api.apply(&pairs(&npm_at(&missed)));
    h.api.compact();
    assert_eq!(
        url_of(&next(&mut watch).await, "npm"),
        Some(missed.as_str())
    );
    assert!(h.api.count("list") >= 2, "relisted");
}

#[tokio::test]
async fn a_dropped_watch_resumes_from_its_resource_version() {
    let h = Harness::start(Some(&pairs(&npm_at(NPM)))).await;
    let mut watch = h.watch().await;
    next(&mut watch).await;
    h.status_until("watching", |_| h.api.count("watch") == 1)
        .await;

    h.api.cut_connections();
    let update = format!("{NPM}after-cut/");
    h.api.apply(&pairs(&npm_at(&update)));
    assert_eq!(
        url_of(&next(&mut watch).await, "npm"),
        Some(update.as_str())
    );
    assert_eq!(
        h.api.count("list"),
        1,
        "resumed by watching, not by listing again"
    );
    let rewatch = h
        .api
        .requests()
        .into_iter()
        .filter(|r| r.verb == "watch")
        .nth(1)
        .unwrap();
    assert_eq!(rewatch.query["resourceVersion"], "101");
    h.status_until("not stale", |s| !s.stale).await;
}

#[tokio::test]
async fn forbidden_is_not_synced_and_spells_out_the_missing_permission() {
    let h = Harness::start_with(options(), |api| {
        api.apply(&pairs(&npm_at(NPM)));
        api.fail_with(403);
    })
    .await;
    let status = h
        .status_until("403 reported", |s| s.source_error.contains("forbidden"))
        .await;
    assert!(
        status.source_error.contains(
            "grant get, list and watch on configmaps with resourceNames [cluster-config]"
        ),
        "{}",
        status.source_error
    );
    assert_eq!(status.source.unwrap().state(), SourceState::NotSynced);
    let err = h.resolve().await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.message().contains("not loaded the ConfigMap yet"),
        "{err}"
    );

    // Once the Role is fixed, the server syncs without a restart.
    h.api.recover();
    h.status_until("synced", |s| {
        s.source.as_ref().unwrap().state() == SourceState::Synced
    })
    .await;
    assert!(h.resolve().await.unwrap().active);
}

#[tokio::test]
async fn an_outage_keeps_the_last_state_marked_stale_then_recovers() {
    let h = Harness::start(Some(&pairs(&npm_at(NPM)))).await;
    h.status_until("synced", |s| {
        s.source.as_ref().unwrap().state() == SourceState::Synced
    })
    .await;

    h.api.fail_with(500);
    let status = h.status_until("stale", |s| s.stale).await;
    assert!(
        status.source_error.contains("cannot"),
        "{}",
        status.source_error
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let status = h.status().await;
    assert!(status.stale && status.stale_seconds >= 1, "{status:?}");
    let served = h.resolve().await.unwrap();
    assert!(
        served.active,
        "never switched off because the API is unreachable"
    );
    assert_eq!(url_of(&served, "npm"), Some(NPM));

    // Recovery without any change to the ConfigMap clears staleness.
    h.api.recover();
    h.status_until("recovered", |s| !s.stale && s.source_error.is_empty())
        .await;

    // And an update made right after recovery arrives.
    let update = format!("{NPM}after-outage/");
    h.api.apply(&pairs(&npm_at(&update)));
    let mut watch = h.watch().await;
    loop {
        if url_of(&next(&mut watch).await, "npm") == Some(update.as_str()) {
            break;
        }
    }
}

#[tokio::test]
async fn a_hung_api_server_is_detected_and_outlived() {
    let h = Harness::start(Some(&pairs(&npm_at(NPM)))).await;
    h.status_until("synced", |s| {
        s.source.as_ref().unwrap().state() == SourceState::Synced
    })
    .await;
    h.api.hang();
    let status = h.status_until("stale", |s| s.stale).await;
    assert!(
        status.source_error.contains("did not answer"),
        "{}",
        status.source_error
    );
    assert!(h.resolve().await.unwrap().active);
    h.api.recover();
    h.status_until("recovered", |s| !s.stale).await;
}
