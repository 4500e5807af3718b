//! A byte stream from a peer, cut into chunks, read as a stream transport reads
//! it: append each chunk, take every whole length-prefixed frame off the front,
//! decode it.
//!
//! The first byte picks the chunk size and the second the reader's frame limit,
//! so small limits and every chunking are explored. Checks: nothing panics; a
//! frame boundary is never past the buffered bytes; a declared length over the
//! limit is refused as soon as its prefix is buffered; the frames found do not
//! depend on the chunking (the same stream read whole gives the same frames).
#![no_main]

use hush_protocol::codec::{self, CodecError, LENGTH_PREFIX_LEN};
use hush_protocol::frame::ClientFrame;
use libfuzzer_sys::fuzz_target;

/// Frames found (decoded or not), or the error that stopped the reader.
fn read(stream: &[u8], chunk: usize, max: usize) -> (Vec<Result<ClientFrame, CodecError>>, Option<CodecError>) {
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec::split_frame(&buf, max) {
                Ok(Some(total)) => {
                    assert!(total >= LENGTH_PREFIX_LEN && total <= buf.len());
                    frames.push(codec::decode_with_limit(&buf[LENGTH_PREFIX_LEN..total], max));
                    buf.drain(..total);
                }
                Ok(None) => {
                    if buf.len() >= LENGTH_PREFIX_LEN {
                        let declared = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                        assert!(declared <= max, "an oversized prefix must be refused, not waited on");
                    }
                    break;
                }
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

fuzz_target!(|data: &[u8]| {
    let [chunk, limit, stream @ ..] = data else {
        return;
    };
    let chunk = usize::from(*chunk).max(1);
    // Limits from 0 to a little over 64 KiB, and sometimes the protocol's own.
    let max = if *limit == 255 {
        hush_protocol::limits::MAX_FRAME_LEN
    } else {
        usize::from(*limit) * 257
    };
    let chunked = read(stream, chunk, max);
    let whole = read(stream, stream.len().max(1), max);
    assert_eq!(chunked, whole);
});
