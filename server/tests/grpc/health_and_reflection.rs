//! grpc.health.v1 follows the source's first state; reflection answers in v1 and v1alpha.

use proxyconf_proto::SERVICE_NAME;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::util::{ConfigMapFixture, TestServer, eventually, within};

#[tokio::test]
async fn not_serving_until_the_first_state() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    let liveness = health
        .check(HealthCheckRequest {
            service: "liveness".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        liveness.status(),
        ServingStatus::Serving,
        "alive before synced"
    );
    for service in ["", SERVICE_NAME] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.status(), ServingStatus::NotServing, "{service:?}");
    }
    server.observe(ConfigMapFixture::new()).await;
    for service in ["", SERVICE_NAME] {
        eventually(|| {
            let mut health = health.clone();
            async move {
                let r = health
                    .check(HealthCheckRequest {
                        service: service.into(),
                    })
                    .await
                    .unwrap();
                r.into_inner().status() == ServingStatus::Serving
            }
        })
        .await;
    }
}

/// Lists services through reflection, as `grpcurl list` does.
macro_rules! list_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new($channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let response = within(responses.message()).await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection answer {response:?}");
        };
        let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        names
    }};
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_every_service() {
    let server = TestServer::with(ConfigMapFixture::new()).await;
    // Both reflection versions list every service, both reflection services included: what
    // `grpcurl list` shows whichever version it speaks.
    let every = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        SERVICE_NAME,
    ];
    let v1 = list_services!(v1, server.channel().await);
    assert_eq!(v1, every);
    let v1alpha = list_services!(v1alpha, server.channel().await);
    assert_eq!(v1alpha, every);
}
