//! The protobuf codec of `proxyconf.v1`: prost, with small encode buffers.
//!
//! tonic's default codec gives every call an 8 KiB encode buffer that a streaming call keeps for
//! its whole life; answers are about 1.5 KiB, so with 10,000 Watch subscribers that buffer alone
//! was 80 MiB of the server's memory (measured: 7.8 KiB per subscriber). Starting empty, a buffer
//! is allocated at the size of the first answer it carries; starting at 1 KiB, it doubled to
//! 2 KiB for a 1.5 KiB answer (measured: 4.16 → 3.73 KiB per subscriber).
//!
//! proxyconf-server's own Watch streams have since left the codec (they send each answer's shared
//! gRPC frame: 2.06 KiB per subscriber); the codec still serves every other call, the clients, and
//! the benchmarks' bare tonic floor, whose Watch goes through it as tonic's does.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::ProstCodec;

/// Where each call's encode and decode buffers start: empty (they grow as messages need).
const BUFFER_SIZE: usize = 0;
/// How much is encoded before yielding to the transport (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// prost encoding with [`BUFFER_SIZE`] buffers.
#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = <ProstCodec<T, U> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }
}
