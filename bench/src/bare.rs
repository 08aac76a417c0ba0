//! The floor the real server is compared with: a bare tonic server whose `Resolve` returns a
//! constant, precomputed answer of the same size, with no state, no scope, no version; and whose
//! `Watch` sends that answer to every subscriber at once each time it is told to (by any
//! `GetStatus` call), as cheaply as tonic can: the same encoded bytes for all.

use std::{net::SocketAddr, path::Path, pin::Pin};

use anyhow::Context;
use futures::{Stream, StreamExt};
use prost::Message;
use proxyconf_proto::{
    Encoded,
    v1::{
        GetStatusRequest, Resolution, ResolveRequest, Status, WatchRequest,
        proxy_config_server::{ProxyConfig, ProxyConfigServer},
    },
};
use tokio::sync::watch;
use tonic::{Request, Response};

/// Answers every `Resolve` with the same message, and sends it to every `Watch` subscriber when
/// published again.
pub struct BareServer {
    answer: Encoded<Resolution>,
    /// Bumped by `GetStatus`: every subscriber is sent the answer again.
    published: watch::Sender<u64>,
}

type AnswerStream = Pin<Box<dyn Stream<Item = Result<Encoded<Resolution>, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl ProxyConfig for BareServer {
    async fn resolve(
        &self,
        _: Request<ResolveRequest>,
    ) -> Result<Response<Encoded<Resolution>>, tonic::Status> {
        Ok(Response::new(self.answer.clone()))
    }

    type WatchStream = AnswerStream;

    async fn watch(
        &self,
        _: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, tonic::Status> {
        let answer = self.answer.clone();
        let publications = tokio_stream::wrappers::WatchStream::new(self.published.subscribe());
        Ok(Response::new(Box::pin(
            publications.map(move |_| Ok(answer.clone())),
        )))
    }

    /// Publishes the answer again to every subscriber.
    async fn get_status(
        &self,
        _: Request<GetStatusRequest>,
    ) -> Result<Response<Status>, tonic::Status> {
        self.published.send_modify(|n| *n += 1);
        Ok(Response::new(Status::default()))
    }
}

/// Serves the encoded `Resolution` in `answer` on `listen` until killed; prints
/// `listening on ADDR` once bound.
pub async fn serve(listen: SocketAddr, answer: &Path) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(answer).with_context(|| format!("cannot read {}", answer.display()))?;
    let answer = Resolution::decode(bytes.as_slice()).context("not an encoded Resolution")?;
    let server = BareServer {
        answer: Encoded::new(&answer),
        published: watch::Sender::new(0),
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    // As tonic's own `serve` does: no Nagle delay on small answers.
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(stream)
    });
    tonic::transport::Server::builder()
        .add_service(ProxyConfigServer::new(server))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
