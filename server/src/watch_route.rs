//! `Watch` served beneath tonic's codec, so that every subscriber is sent the snapshot's shared
//! gRPC frame itself. Through the codec, each stream copied the answer into a buffer of its own
//! and allocated for it at each change: a quarter of the server's CPU time in a fan-out to 10,000
//! subscribers (profile), and the buffer stayed with each idle stream.
//!
//! Only the transport is here: the request's frame is decoded, [`ProxyConfigService`]'s `watch`
//! opens the subscription as before (admission, scope, resume, end of stream), and each answer
//! becomes an HTTP/2 DATA frame, the final status the trailers. Every other method goes to the
//! generated server.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures::{Stream, StreamExt, future::BoxFuture};
use http::{HeaderMap, HeaderValue, Request, Response, header::CONTENT_TYPE};
use http_body::Frame;
use http_body_util::{BodyExt, LengthLimitError, Limited, StreamBody};
use prost::Message;
use proxyconf_proto::{
    encoded::{GRPC_PREFIX_LEN, grpc_prefix},
    v1::{
        WatchRequest,
        proxy_config_server::{ProxyConfig, ProxyConfigServer, SERVICE_NAME},
    },
};
use tonic::{Status, body::Body, server::NamedService};
use tower::Service;

use crate::{MAX_REQUEST_BYTES, service::ProxyConfigService};

/// The path of `Watch`: `/{SERVICE_NAME}/Watch` (a test checks it).
const WATCH_PATH: &str = "/proxyconf.v1.ProxyConfig/Watch";

/// `proxyconf.v1.ProxyConfig`: `Watch` served here, the other methods by the generated server.
#[derive(Clone)]
pub(crate) struct WatchRoute {
    service: ProxyConfigService,
    generated: ProxyConfigServer<ProxyConfigService>,
}

impl WatchRoute {
    pub(crate) fn new(service: ProxyConfigService) -> Self {
        let generated =
            ProxyConfigServer::new(service.clone()).max_decoding_message_size(MAX_REQUEST_BYTES);
        Self { service, generated }
    }
}

impl NamedService for WatchRoute {
    const NAME: &'static str = SERVICE_NAME;
}

impl Service<Request<Body>> for WatchRoute {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    /// Always ready, as the generated server is.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if request.uri().path() != WATCH_PATH {
            return self.generated.call(request);
        }
        let service = self.service.clone();
        Box::pin(async move {
            Ok(watch(service, request)
                .await
                .unwrap_or_else(Status::into_http))
        })
    }
}

/// Opens the Watch stream that `request` asks for.
async fn watch(
    service: ProxyConfigService,
    request: Request<Body>,
) -> Result<Response<Body>, Status> {
    let (parts, body) = request.into_parts();
    let message = read_request(body).await?;
    let request = tonic::Request::from_http(Request::from_parts(parts, message));
    let answers = ProxyConfig::watch(&service, request).await?.into_inner();
    let mut response = Response::new(Body::new(StreamBody::new(frames(answers))));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    Ok(response)
}

/// The HTTP/2 frames of a stream of answers: each answer's shared gRPC frame, then the status
/// that ends the stream as trailers (OK if it ends without one).
fn frames<S>(answers: S) -> impl Stream<Item = Result<Frame<Bytes>, Infallible>> + Send
where
    S: Stream<Item = Result<proxyconf_proto::Encoded<proxyconf_proto::v1::Resolution>, Status>>
        + Send
        + Unpin,
{
    futures::stream::unfold(Some(answers), |answers| async move {
        let mut answers = answers?;
        let frame = match answers.next().await {
            Some(Ok(answer)) => return Some((Ok(Frame::data(answer.grpc_frame())), Some(answers))),
            Some(Err(status)) => trailers(&status),
            None => trailers(&Status::ok("")),
        };
        Some((Ok(frame), None))
    })
}

/// `status` as the trailers that end a gRPC stream.
fn trailers(status: &Status) -> Frame<Bytes> {
    let mut headers = HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        // Only a status whose details cannot be encoded fails: its code still goes out.
        headers.insert("grpc-status", HeaderValue::from(status.code() as i32));
    }
    Frame::trailers(headers)
}

/// Reads the one message of a unary request body, at most [`MAX_REQUEST_BYTES`] of it.
async fn read_request(body: Body) -> Result<WatchRequest, Status> {
    let collected = Limited::new(body, GRPC_PREFIX_LEN + MAX_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<LengthLimitError>() {
                too_large()
            } else {
                Status::cancelled(format!("reading the WatchRequest failed: {error}"))
            }
        })?;
    decode_request(&collected.to_bytes())
}

/// Decodes the gRPC frame of a `WatchRequest`.
fn decode_request(frame: &[u8]) -> Result<WatchRequest, Status> {
    let Some((compressed, length)) = grpc_prefix(frame) else {
        return Err(Status::internal("missing request message"));
    };
    if compressed {
        return Err(Status::unimplemented(
            "compressed requests are not supported: send the WatchRequest uncompressed",
        ));
    }
    let message = &frame[GRPC_PREFIX_LEN..];
    if length > MAX_REQUEST_BYTES {
        return Err(too_large());
    }
    if message.len() != length {
        return Err(Status::internal(
            "the request body is not exactly one gRPC message",
        ));
    }
    WatchRequest::decode(message)
        .map_err(|error| Status::internal(format!("cannot decode the WatchRequest: {error}")))
}

fn too_large() -> Status {
    Status::out_of_range(format!(
        "Error, decoded message length too large: the limit is {MAX_REQUEST_BYTES} bytes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(compressed: u8, message: &[u8]) -> Vec<u8> {
        let mut frame = vec![compressed];
        frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        frame.extend_from_slice(message);
        frame
    }

    #[test]
    fn the_path_is_the_generated_services() {
        assert_eq!(WATCH_PATH, format!("/{SERVICE_NAME}/Watch"));
    }

    #[test]
    fn a_request_frame_decodes() {
        let request = WatchRequest {
            resume_from_version: "0123".to_owned(),
            ..WatchRequest::default()
        };
        let decoded = decode_request(&frame(0, &request.encode_to_vec())).unwrap();
        assert_eq!(decoded, request);
        assert_eq!(
            decode_request(&frame(0, &[])).unwrap(),
            WatchRequest::default()
        );
    }

    #[test]
    fn bad_frames_are_refused_with_the_codes_tonic_uses() {
        let code = |frame: &[u8]| decode_request(frame).unwrap_err().code();
        assert_eq!(code(&[]), tonic::Code::Internal);
        assert_eq!(code(&frame(1, b"")), tonic::Code::Unimplemented);
        let mut cut = frame(0, b"\x0a\x04abcd");
        cut.pop();
        assert_eq!(code(&cut), tonic::Code::Internal);
        let mut huge = frame(0, b"");
        huge[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(code(&huge), tonic::Code::OutOfRange);
        assert_eq!(code(&frame(0, b"\xff\xff")), tonic::Code::Internal);
    }

    #[test]
    fn trailers_carry_the_status() {
        let frame = trailers(&Status::unavailable("shutting down"));
        let headers = frame.into_trailers().unwrap();
        assert_eq!(headers["grpc-status"], "14");
        assert_eq!(headers["grpc-message"], "shutting%20down");
    }
}
