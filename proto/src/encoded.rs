//! A message encoded once and sent as is: the server encodes each answer once per snapshot and
//! scope, and every `Resolve` caller and `Watch` subscriber of that scope gets the same bytes
//! (a reference count, not a copy of the message and a new encoding per call).
//!
//! The generated server sends `Encoded<Resolution>` where the proto says `Resolution`; the wire
//! is the same, since a message's encoding is the concatenation of its fields' encodings.

use std::{fmt, marker::PhantomData};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::{
    DecodeError, Message,
    encoding::{DecodeContext, WireType},
};

/// The encoding of one `M`, shared.
pub struct Encoded<M> {
    bytes: Bytes,
    message: PhantomData<fn() -> M>,
}

impl<M: Message> Encoded<M> {
    /// Encodes `message`.
    pub fn new(message: &M) -> Self {
        Self::from_bytes(Bytes::from(message.encode_to_vec()))
    }
}

impl<M> Encoded<M> {
    fn from_bytes(bytes: Bytes) -> Self {
        Self {
            bytes,
            message: PhantomData,
        }
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl<M: Message + Default> Encoded<M> {
    /// The message back.
    pub fn to_message(&self) -> Result<M, DecodeError> {
        M::decode(self.bytes.clone())
    }
}

impl<M> Clone for Encoded<M> {
    fn clone(&self) -> Self {
        Self::from_bytes(self.bytes.clone())
    }
}

impl<M> Default for Encoded<M> {
    fn default() -> Self {
        Self::from_bytes(Bytes::new())
    }
}

impl<M> PartialEq for Encoded<M> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl<M> fmt::Debug for Encoded<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Encoded<{}>({} bytes)",
            std::any::type_name::<M>(),
            self.bytes.len()
        )
    }
}

impl<M: Message + Default> Message for Encoded<M> {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.bytes);
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
        let mut bytes = BytesMut::from(&self.bytes[..]);
        field.encode_raw(&mut bytes);
        self.bytes = bytes.freeze();
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    fn clear(&mut self) {
        self.bytes = Bytes::new();
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
    fn clones_share_the_bytes() {
        let encoded = Encoded::new(&answer());
        let clone = encoded.clone();
        assert_eq!(encoded.as_bytes().as_ptr(), clone.as_bytes().as_ptr());
        assert_eq!(encoded, clone);
    }
}
