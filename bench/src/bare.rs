//! The floor the real server is compared with: a bare tonic server whose `Resolve` returns a
//! constant, precomputed answer of the same size, with no state, no scope, no version.

use std::{net::SocketAddr, path::Path};

use anyhow::Context;
use futures::StreamExt;
use prost::Message;
use proxyconf_proto::v1::{
    GetStatusRequest, Resolution, ResolveRequest, Status, WatchRequest,
    proxy_config_server::{ProxyConfig, ProxyConfigServer},
};
use tonic::{Request, Response};

/// Answers every `Resolve` with the same message.
pub struct BareServer {
    answer: Resolution,
}

#[tonic::async_trait]
impl ProxyConfig for BareServer {
    async fn resolve(
        &self,
        _: Request<ResolveRequest>,
    ) -> Result<Response<Resolution>, tonic::Status> {
        Ok(Response::new(self.answer.clone()))
    }

    type WatchStream = futures::stream::Empty<Result<Resolution, tonic::Status>>;

    async fn watch(
        &self,
        _: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "the bare server only answers Resolve",
        ))
    }

    async fn get_status(
        &self,
        _: Request<GetStatusRequest>,
    ) -> Result<Response<Status>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "the bare server only answers Resolve",
        ))
    }
}

/// Serves the encoded `Resolution` in `answer` on `listen` until killed; prints
/// `listening on ADDR` once bound.
pub async fn serve(listen: SocketAddr, answer: &Path) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(answer).with_context(|| format!("cannot read {}", answer.display()))?;
    let answer = Resolution::decode(bytes.as_slice()).context("not an encoded Resolution")?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    // As tonic's own `serve` does: no Nagle delay on small answers.
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(stream)
    });
    tonic::transport::Server::builder()
        .add_service(ProxyConfigServer::new(BareServer { answer }))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
