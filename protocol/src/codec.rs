//! The one place frames become bytes and bytes become frames.
//!
//! Encoding is bincode 2 through its serde API with the *standard* configuration
//! (little-endian, variable-length integers) and a decode limit equal to
//! [`MAX_FRAME_LEN`]. Keeping the codec here means it can be replaced by a
//! byte-compatible encoder without touching callers.
//!
//! Message transports (WebSocket) carry one encoded frame per message. Stream
//! transports (WebTransport streams) prefix each frame with its length as a
//! 4-byte big-endian integer; [`split_frame`] finds frame boundaries and refuses
//! a declared length over the limit before any byte of the body is buffered.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ErrorCode, WireError};
use crate::limits::MAX_FRAME_LEN;

/// Length of the stream-framing prefix.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// Why bytes could not become a frame (or a frame bytes).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The frame is longer than allowed.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Its (declared) length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a valid frame.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The frame decoded but bytes were left over.
    #[error("{0} trailing bytes after frame")]
    TrailingBytes(usize),
    /// The value could not be encoded.
    #[error("encode failed: {0}")]
    Encode(String),
}

impl From<CodecError> for WireError {
    fn from(e: CodecError) -> Self {
        let code = match e {
            CodecError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            _ => ErrorCode::Malformed,
        };
        WireError::new(code, e.to_string())
    }
}

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_FRAME_LEN>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_FRAME_LEN>()
}

/// Encodes a frame.
pub fn encode<T: Serialize>(frame: &T) -> Result<Vec<u8>, CodecError> {
    let out = bincode::serde::encode_to_vec(frame, config()).map_err(|e| CodecError::Encode(e.to_string()))?;
    if out.len() > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge {
            len: out.len(),
            max: MAX_FRAME_LEN,
        });
    }
    Ok(out)
}

/// Encodes a frame at the end of `out` (no buffer of its own); returns the
/// encoded length. On error `out` may hold part of the frame: truncate it.
pub fn encode_into<T: Serialize>(frame: &T, out: &mut Vec<u8>) -> Result<usize, CodecError> {
    let len =
        bincode::serde::encode_into_std_write(frame, out, config()).map_err(|e| CodecError::Encode(e.to_string()))?;
    if len > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

/// Encodes a frame into shared bytes (encode once, send to many).
pub fn encode_bytes<T: Serialize>(frame: &T) -> Result<Bytes, CodecError> {
    encode(frame).map(Bytes::from)
}

/// Decodes exactly one frame from `bytes`; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_with_limit(bytes, MAX_FRAME_LEN)
}

/// Decodes exactly one frame, refusing input longer than `max` (at most
/// [`MAX_FRAME_LEN`]) before looking at it.
pub fn decode_with_limit<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, CodecError> {
    let max = max.min(MAX_FRAME_LEN);
    if bytes.len() > max {
        return Err(CodecError::FrameTooLarge { len: bytes.len(), max });
    }
    let (value, used) =
        bincode::serde::decode_from_slice::<T, _>(bytes, config()).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

/// Encodes a frame with its 4-byte big-endian length prefix (stream transports).
pub fn encode_prefixed<T: Serialize>(frame: &T) -> Result<Bytes, CodecError> {
    let body = encode(frame)?;
    Ok(prefix(&body))
}

/// Prefixes an already encoded frame with its length.
pub fn prefix(body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(LENGTH_PREFIX_LEN + body.len());
    out.put_u32(body.len() as u32);
    out.put_slice(body);
    out.freeze()
}

/// Finds the first length-prefixed frame in `buf`.
///
/// Returns `Ok(None)` when more bytes are needed ("incomplete"), and
/// `Ok(Some(total))` when `buf[LENGTH_PREFIX_LEN..total]` is a whole frame body.
/// A declared length over `max` is an error as soon as the prefix is read, so a
/// peer cannot make the reader buffer an oversized body.
pub fn split_frame(buf: &[u8], max: usize) -> Result<Option<usize>, CodecError> {
    if buf.len() < LENGTH_PREFIX_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let max = max.min(MAX_FRAME_LEN);
    if len > max {
        return Err(CodecError::FrameTooLarge { len, max });
    }
    let total = LENGTH_PREFIX_LEN + len;
    if buf.len() < total { Ok(None) } else { Ok(Some(total)) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::frame::{ClientFrame, Hello};

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&ClientFrame::Ping { nonce: 7 }).unwrap();
        bytes.push(0);
        assert_eq!(decode::<ClientFrame>(&bytes), Err(CodecError::TrailingBytes(1)));
    }

    #[test]
    fn oversized_input_refused_before_decoding() {
        let bytes = vec![0u8; MAX_FRAME_LEN + 1];
        assert!(matches!(
            decode::<ClientFrame>(&bytes),
            Err(CodecError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn huge_declared_vec_length_is_refused_without_allocating() {
        // Hello with a client-name length of u64::MAX.
        let mut bytes = vec![0u8, 1, 1, 253];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(decode::<ClientFrame>(&bytes), Err(CodecError::Malformed(_))));
    }

    #[test]
    fn split_frame_reports_incomplete_and_refuses_big_prefix() {
        let framed = encode_prefixed(&ClientFrame::Hello(Hello {
            min_version: 1,
            max_version: 1,
            client: "x".into(),
        }))
        .unwrap();
        for cut in 0..framed.len() {
            assert_eq!(split_frame(&framed[..cut], MAX_FRAME_LEN), Ok(None));
        }
        assert_eq!(split_frame(&framed, MAX_FRAME_LEN), Ok(Some(framed.len())));
        let big = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
        assert!(matches!(
            split_frame(&big, MAX_FRAME_LEN),
            Err(CodecError::FrameTooLarge { .. })
        ));
    }
}
