//! A message encoded once and sent as is: the server encodes each answer once per snapshot and
//! scope, and every `Resolve` caller and `Watch` subscriber of that scope gets the same bytes
//! (a reference count, not a copy of the message and a new encoding per call). Each is kept as
//! the gRPC frame that carries it, so that a Watch stream sends the shared frame itself.
//!
//! The generated server sends `Encoded<Resolution>` where the proto says `Resolution`; the wire
//! is the same, since a message's encoding is the concatenation of its fields' encodings.

use std::{fmt, marker::PhantomData};

use bytes::{Buf, BufMut, Bytes};
use prost::{
    DecodeError, Message,
    encoding::{DecodeContext, WireType},
};

/// The encoding of one `M`, shared, behind the 5-byte prefix that carries it in a gRPC stream.
pub struct Encoded<M> {
    /// The gRPC frame: uncompressed (0), the length (4 bytes, big-endian), the encoding.
    framed: Bytes,
    message: PhantomData<fn() -> M>,
}

/// The length of a gRPC frame's prefix: the compression flag and the message length.
pub const GRPC_PREFIX_LEN: usize = 5;

/// What the prefix at the start of `frame` says: whether the message is compressed, and its
/// length; `None` until the whole prefix is there.
pub fn grpc_prefix(frame: &[u8]) -> Option<(bool, usize)> {
    let prefix = frame.get(..GRPC_PREFIX_LEN)?;
    let mut length = [0; 4];
    length.copy_from_slice(&prefix[1..]);
    let length = usize::try_from(u32::from_be_bytes(length)).unwrap_or(usize::MAX);
    Some((prefix[0] != 0, length))
}

impl<M: Message> Encoded<M> {
    /// Encodes `message`.
    pub fn new(message: &M) -> Self {
        let mut framed = Vec::with_capacity(GRPC_PREFIX_LEN + message.encoded_len());
        framed.resize(GRPC_PREFIX_LEN, 0);
        message.encode_raw(&mut framed);
        Self::from_framed(framed)
    }
}

impl<M> Encoded<M> {
    /// `framed` holds the prefix's room, then the encoding; the prefix is written here.
    fn from_framed(mut framed: Vec<u8>) -> Self {
        let length = framed.len() - GRPC_PREFIX_LEN;
        // A message over 4 GiB cannot be framed; nothing here comes near (answers are bounded
        // by the ConfigMap's 1 MiB).
        let length = u32::try_from(length).unwrap_or(u32::MAX);
        framed[0] = 0;
        framed[1..GRPC_PREFIX_LEN].copy_from_slice(&length.to_be_bytes());
        Self {
            framed: Bytes::from(framed),
            message: PhantomData,
        }
    }

    /// The encoded message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.framed[GRPC_PREFIX_LEN..]
    }

    /// The message as one gRPC frame of a stream (uncompressed), shared: what a Watch stream
    /// sends to each subscriber without copying it.
    pub fn grpc_frame(&self) -> Bytes {
        self.framed.clone()
    }
}

impl<M: Message + Default> Encoded<M> {
    /// The message back.
    pub fn to_message(&self) -> Result<M, DecodeError> {
        M::decode(self.as_bytes())
    }
}

impl<M> Clone for Encoded<M> {
    fn clone(&self) -> Self {
        Self {
            framed: self.framed.clone(),
            message: PhantomData,
        }
    }
}

impl<M> Default for Encoded<M> {
    fn default() -> Self {
        Self::from_framed(vec![0; GRPC_PREFIX_LEN])
    }
}

impl<M> PartialEq for Encoded<M> {
    fn eq(&self, other: &Self) -> bool {
        self.framed == other.framed
    }
}

impl<M> fmt::Debug for Encoded<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Encoded<{}>({} bytes)",
            std::any::type_name::<M>(),
            self.as_bytes().len()
        )
    }
}

impl<M: Message + Default> Message for Encoded<M> {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(self.as_bytes());
    }

    /// Decoding is never on a hot path (the server only sends these): each field is decoded into
    /// an `M` of its own and re-encoded behind the fields before it, which protobuf defines as
    /// the same message as decoding them all into one.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let mut field = M::default();
        field.merge_field(tag, wire_type, buf, ctx)?;
        let mut framed = self.framed.to_vec();
        field.encode_raw(&mut framed);
        *self = Self::from_framed(framed);
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.as_bytes().len()
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{EnvVar, PackageManager, Resolution};

    fn answer() -> Resolution {
        Resolution {
            version: "0123456789abcdef".to_owned(),
            active: true,
            package_managers: vec![PackageManager {
                name: "npm".to_owned(),
                url: "https://nexus.example/npm/".to_owned(),
                env: vec![EnvVar {
                    name: "HERMETO_NPM__PROXY_URL".to_owned(),
                    value: "https://nexus.example/npm/".to_owned(),
                }],
            }],
            ..Resolution::default()
        }
    }

    #[test]
    fn sends_exactly_the_encoding_of_the_message() {
        let encoded = Encoded::new(&answer());
        assert_eq!(encoded.encode_to_vec(), answer().encode_to_vec());
        assert_eq!(encoded.encoded_len(), answer().encoded_len());
        // Length-delimited, as a stream frame or a nested field carries it.
        assert_eq!(
            encoded.encode_length_delimited_to_vec(),
            answer().encode_length_delimited_to_vec()
        );
    }

    #[test]
    fn decodes_back_to_the_same_message() {
        let wire = answer().encode_to_vec();
        let decoded = Encoded::<Resolution>::decode(wire.as_slice()).expect("decodes");
        assert_eq!(decoded.to_message().expect("decodes"), answer());
        assert_eq!(decoded.as_bytes(), wire.as_slice());
    }

    #[test]
    fn the_grpc_frame_is_the_prefix_then_the_encoding() {
        let encoded = Encoded::new(&answer());
        let frame = encoded.grpc_frame();
        let wire = answer().encode_to_vec();
        assert_eq!(grpc_prefix(&frame), Some((false, wire.len())));
        assert_eq!(grpc_prefix(&frame[..4]), None);
        assert_eq!(&frame[5..], wire.as_slice());
        assert_eq!(
            Encoded::<Resolution>::default().grpc_frame().as_ref(),
            &[0; 5]
        );
    }

    #[test]
    fn clones_share_the_bytes() {
        let encoded = Encoded::new(&answer());
        let clone = encoded.clone();
        assert_eq!(encoded.as_bytes().as_ptr(), clone.as_bytes().as_ptr());
        assert_eq!(encoded, clone);
    }
}
