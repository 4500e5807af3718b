//! Property tests of the frame codec: every frame type survives encode/decode,
//! stream framing survives any chunking, and no input makes a decoder panic or
//! return a frame it was not sent.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod strategy;

use std::collections::BTreeSet;

use hush_protocol::codec::{self, CodecError, LENGTH_PREFIX_LEN};
use hush_protocol::error::ErrorCode;
use hush_protocol::frame::{
    ClientFrame, CloseReason, Direction, InboxKind, MessageKind, Notice, Posters, Registration, RelayFrame, Reply,
    Request,
};
use hush_protocol::limits::MAX_FRAME_LEN;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde::Serialize;
use serde::de::DeserializeOwned;
use strategy::*;

// The variant numbers the wire uses. These matches are exhaustive on purpose: a
// new variant fails to compile here until it gets a strategy and a number.

fn client_frame_index(f: &ClientFrame) -> u8 {
    match f {
        ClientFrame::Hello(_) => 0,
        ClientFrame::Authenticate(_) => 1,
        ClientFrame::Request { .. } => 2,
        ClientFrame::Ack { .. } => 3,
        ClientFrame::AckInbox { .. } => 4,
        ClientFrame::Ephemeral { .. } => 5,
        ClientFrame::Ping { .. } => 6,
        ClientFrame::Rendezvous { .. } => 7,
    }
}

fn request_index(r: &Request) -> u8 {
    match r {
        Request::CreateGroup { .. } => 0,
        Request::Send(_) => 1,
        Request::GetGroup { .. } => 2,
        Request::SetPolicy { .. } => 3,
        Request::History { .. } => 4,
        Request::UploadKeyPackages { .. } => 5,
        Request::ClaimKeyPackages { .. } => 6,
        Request::ListDevices { .. } => 7,
        Request::SendToDevice { .. } => 8,
        Request::GetPresence { .. } => 9,
        Request::ListGroups => 10,
        Request::Redact { .. } => 11,
        Request::RevokeDevice { .. } => 12,
        Request::VoidCommit { .. } => 13,
    }
}

fn relay_frame_index(f: &RelayFrame) -> u8 {
    match f {
        RelayFrame::Challenge(_) => 0,
        RelayFrame::Ready(_) => 1,
        RelayFrame::Response { .. } => 2,
        RelayFrame::Deliver(_) => 3,
        RelayFrame::Inbox(_) => 4,
        RelayFrame::Ephemeral { .. } => 5,
        RelayFrame::Presence(_) => 6,
        RelayFrame::Notice(_) => 7,
        RelayFrame::Pong { .. } => 8,
        RelayFrame::Error(_) => 9,
        RelayFrame::Closing(_) => 10,
        RelayFrame::Rendezvous { .. } => 11,
    }
}

fn reply_index(r: &Reply) -> u8 {
    match r {
        Reply::Done => 0,
        Reply::GroupCreated { .. } => 1,
        Reply::Sent { .. } => 2,
        Reply::Group(_) => 3,
        Reply::History { .. } => 4,
        Reply::KeyPackageCount { .. } => 5,
        Reply::KeyPackages(_) => 6,
        Reply::Devices(_) => 7,
        Reply::Presence(_) => 8,
        Reply::Groups(_) => 9,
    }
}

fn notice_index(n: &Notice) -> u8 {
    match n {
        Notice::Truncated { .. } => 0,
        Notice::Removed { .. } => 1,
        Notice::Added { .. } => 2,
    }
}

fn registration_index(r: &Registration) -> u8 {
    match r {
        Registration::None => 0,
        Registration::Token(_) => 1,
        Registration::Linked { .. } => 2,
        Registration::LinkedUntil { .. } => 3,
    }
}

fn small_enum_index<T: Serialize>(value: &T) -> u8 {
    codec::encode(value).expect("encodes")[0]
}

fn roundtrip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) -> Vec<u8> {
    let bytes = codec::encode(value).expect("encodes");
    let back: T = codec::decode(&bytes).expect("decodes");
    assert_eq!(&back, value);
    bytes
}

/// A stream reader as a transport would write it: append whatever arrived, then
/// take every whole frame off the front.
fn read_stream<T: DeserializeOwned>(stream: &[u8], chunks: &[usize]) -> Result<(Vec<T>, usize), CodecError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    let mut pos = 0;
    for &chunk in chunks.iter().cycle() {
        if pos == stream.len() {
            break;
        }
        let n = chunk.clamp(1, stream.len() - pos);
        buf.extend_from_slice(&stream[pos..pos + n]);
        pos += n;
        while let Some(total) = codec::split_frame(&buf, MAX_FRAME_LEN)? {
            frames.push(codec::decode(&buf[LENGTH_PREFIX_LEN..total])?);
            buf.drain(..total);
        }
    }
    Ok((frames, buf.len()))
}

/// Frames written back to back on a stream come out of the reader unchanged,
/// however the stream was cut into chunks.
fn assert_stream_roundtrip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    frames: &[T],
    chunks: &[usize],
) {
    let mut stream = Vec::new();
    for f in frames {
        stream.extend_from_slice(&codec::encode_prefixed(f).unwrap());
    }
    let (back, left) = read_stream::<T>(&stream, chunks).unwrap();
    assert_eq!(back, frames);
    assert_eq!(left, 0);
}

/// Every strict prefix of a valid encoding is refused, as a malformed frame.
fn assert_truncations_refused<T: DeserializeOwned + std::fmt::Debug>(bytes: &[u8]) {
    for cut in 0..bytes.len() {
        match codec::decode::<T>(&bytes[..cut]) {
            Err(CodecError::Malformed(_)) => {}
            other => panic!("prefix of {cut}/{} bytes gave {other:?}", bytes.len()),
        }
    }
}

/// Whatever arbitrary bytes decode to must itself be a stable frame.
fn assert_decode_is_sound<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    if let Ok(value) = codec::decode::<T>(bytes) {
        roundtrip(&value);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn client_frames_roundtrip(frame in client_frame()) {
        let bytes = roundtrip(&frame);
        prop_assert_eq!(bytes[0], client_frame_index(&frame));
        if let ClientFrame::Request { op, .. } = &frame {
            prop_assert_eq!(small_enum_index(op), request_index(op));
        }
        if let ClientFrame::Authenticate(a) = &frame {
            prop_assert_eq!(small_enum_index(&a.registration), registration_index(&a.registration));
        }
    }

    #[test]
    fn relay_frames_roundtrip(frame in relay_frame()) {
        let bytes = roundtrip(&frame);
        prop_assert_eq!(bytes[0], relay_frame_index(&frame));
        match &frame {
            RelayFrame::Response { result: Ok(reply), .. } => {
                prop_assert_eq!(small_enum_index(reply), reply_index(reply));
            }
            RelayFrame::Notice(n) => prop_assert_eq!(bytes[1], notice_index(n)),
            _ => {}
        }
    }

    #[test]
    fn error_codes_roundtrip_through_their_number(n in any::<u16>()) {
        let code = ErrorCode::from_u16(n);
        prop_assert_eq!(code.as_u16(), n);
        let back: ErrorCode = codec::decode(&codec::encode(&code).unwrap()).unwrap();
        prop_assert_eq!(back, code);
        // Unknown(n) with a known n is not canonical: it comes back named.
        let unknown: ErrorCode = codec::decode(&codec::encode(&ErrorCode::Unknown(n)).unwrap()).unwrap();
        prop_assert_eq!(unknown, code);
    }

    #[test]
    fn client_stream_splits_under_any_chunking(
        frames in vec(client_frame(), 1..6),
        chunks in vec(1usize..64, 1..16),
    ) {
        assert_stream_roundtrip(&frames, &chunks);
    }

    #[test]
    fn relay_stream_splits_under_any_chunking(
        frames in vec(relay_frame(), 1..6),
        chunks in vec(1usize..64, 1..16),
    ) {
        assert_stream_roundtrip(&frames, &chunks);
    }

    #[test]
    fn a_cut_stream_yields_only_the_whole_frames(
        frames in vec(client_frame(), 1..4),
        cut_back in 1usize..40,
        chunks in vec(1usize..64, 1..8),
    ) {
        let mut stream = Vec::new();
        for f in &frames {
            stream.extend_from_slice(&codec::encode_prefixed(f).unwrap());
        }
        let cut = stream.len() - cut_back.min(stream.len());
        let (back, left) = read_stream::<ClientFrame>(&stream[..cut], &chunks).unwrap();
        prop_assert!(back.len() < frames.len());
        prop_assert_eq!(&back[..], &frames[..back.len()]);
        // What is left buffered is exactly the start of the next frame.
        let whole: usize = frames[..back.len()].iter().map(|f| codec::encode_prefixed(f).unwrap().len()).sum();
        prop_assert_eq!(left, cut - whole);
    }

    #[test]
    fn truncated_client_frames_are_refused(frame in client_frame()) {
        let bytes = codec::encode(&frame).unwrap();
        assert_truncations_refused::<ClientFrame>(&bytes);
        let prefixed = codec::encode_prefixed(&frame).unwrap();
        for cut in 0..prefixed.len() {
            prop_assert_eq!(codec::split_frame(&prefixed[..cut], MAX_FRAME_LEN), Ok(None));
        }
    }

    #[test]
    fn truncated_relay_frames_are_refused(frame in relay_frame()) {
        let bytes = codec::encode(&frame).unwrap();
        assert_truncations_refused::<RelayFrame>(&bytes);
    }

    #[test]
    fn extra_bytes_after_a_frame_are_refused(frame in client_frame(), extra in vec(any::<u8>(), 1..8)) {
        let mut bytes = codec::encode(&frame).unwrap();
        bytes.extend_from_slice(&extra);
        prop_assert_eq!(codec::decode::<ClientFrame>(&bytes), Err(CodecError::TrailingBytes(extra.len())));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        assert_decode_is_sound::<ClientFrame>(&bytes);
        assert_decode_is_sound::<RelayFrame>(&bytes);
        if let Ok(Some(total)) = codec::split_frame(&bytes, MAX_FRAME_LEN) {
            prop_assert!(total <= bytes.len());
        }
    }

    #[test]
    fn mutated_frames_never_panic(
        client in client_frame(),
        relay in relay_frame(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        for mut bytes in [codec::encode(&client).unwrap(), codec::encode(&relay).unwrap()] {
            for (at, byte, how) in &edits {
                let i = at.index(bytes.len() + 1);
                match how {
                    0 if i < bytes.len() => bytes[i] = *byte,
                    1 => bytes.insert(i, *byte),
                    _ if i < bytes.len() => { bytes.remove(i); }
                    _ => {}
                }
            }
            assert_decode_is_sound::<ClientFrame>(&bytes);
            assert_decode_is_sound::<RelayFrame>(&bytes);
        }
    }
}

/// The strategies reach every variant of every enum on the wire.
#[test]
fn strategies_reach_every_variant() {
    fn indices<T: std::fmt::Debug>(s: impl Strategy<Value = T>, index: impl Fn(&T) -> u8) -> BTreeSet<u8> {
        let mut runner = TestRunner::deterministic();
        (0..2000)
            .map(|_| index(&s.new_tree(&mut runner).expect("value").current()))
            .collect()
    }
    let all = |n: u8| (0..n).collect::<BTreeSet<u8>>();
    assert_eq!(indices(client_frame(), client_frame_index), all(8));
    assert_eq!(indices(request(), request_index), all(14));
    assert_eq!(indices(relay_frame(), relay_frame_index), all(12));
    assert_eq!(indices(reply(), reply_index), all(10));
    assert_eq!(indices(notice(), notice_index), all(3));
    assert_eq!(indices(registration(), registration_index), all(4));
    assert_eq!(indices(error_detail(), small_enum_index), all(6));
    assert_eq!(
        indices(inbox_kind(), |k| match k {
            InboxKind::Welcome { .. } => 0,
            InboxKind::Direct => 1,
        }),
        all(2)
    );
    assert_eq!(
        indices(posters(), |p| match p {
            Posters::Everyone => 0,
            Posters::Only(_) => 1,
        }),
        all(2)
    );
    assert_eq!(
        indices(message_kind(), |k| match k {
            MessageKind::Application => 0,
            MessageKind::Commit => 1,
            MessageKind::Proposal => 2,
        }),
        all(3)
    );
    assert_eq!(
        indices(direction(), |d| match d {
            Direction::Forward => 0,
            Direction::Backward => 1,
        }),
        all(2)
    );
    assert_eq!(
        indices(close_reason(), |r| match r {
            CloseReason::GoingAway => 0,
            CloseReason::SlowConsumer => 1,
            CloseReason::IdleTimeout => 2,
            CloseReason::HandshakeTimeout => 3,
            CloseReason::ProtocolError => 4,
            CloseReason::ServerBusy => 5,
            CloseReason::AuthFailed => 6,
        }),
        all(7)
    );
    // Response carries both arms of its Result.
    let arms = indices(relay_frame(), |f| match f {
        RelayFrame::Response { result: Ok(_), .. } => 1,
        RelayFrame::Response { result: Err(_), .. } => 2,
        _ => 0,
    });
    assert_eq!(arms, all(3));
}

/// The decoders fed by the network refuse a declared length past the input
/// without allocating it, at every nesting level.
#[test]
fn huge_declared_lengths_are_refused() {
    for prefix in [&[2u8, 0, 9][..], &[2, 0, 1, 0], &[5, 0], &[1, 0]] {
        for marker in [
            &[253u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f][..],
            &[252, 0, 0, 16, 0],
        ] {
            let mut bytes = prefix.to_vec();
            bytes.extend_from_slice(marker);
            assert!(codec::decode::<ClientFrame>(&bytes).is_err(), "{bytes:?}");
            assert!(codec::decode::<RelayFrame>(&bytes).is_err(), "{bytes:?}");
        }
    }
}

/// Counts the protocol limits are refused while decoding, from the declared
/// length, not after a frame of empty items has become many times its size
/// in memory.
#[test]
fn sequences_over_their_limit_do_not_decode() {
    use bytes::Bytes;
    use hush_protocol::limits::MAX_KEY_PACKAGES_PER_UPLOAD;
    let upload = |n: usize| ClientFrame::Request {
        id: 1,
        op: Request::UploadKeyPackages {
            one_time: vec![Bytes::new(); n],
            last_resort: None,
        },
    };
    let ok = codec::encode(&upload(MAX_KEY_PACKAGES_PER_UPLOAD)).unwrap();
    assert_eq!(
        codec::decode::<ClientFrame>(&ok).unwrap(),
        upload(MAX_KEY_PACKAGES_PER_UPLOAD)
    );
    for n in [MAX_KEY_PACKAGES_PER_UPLOAD + 1, 500_000] {
        let bytes = codec::encode(&upload(n)).unwrap();
        assert!(bytes.len() < MAX_FRAME_LEN);
        let err = codec::decode::<ClientFrame>(&bytes).unwrap_err();
        assert!(matches!(err, CodecError::Malformed(_)), "{n}: {err:?}");
    }
    // Resume hints: 10,000 decode, 10,001 do not.
    let auth = |n: usize| {
        ClientFrame::Authenticate(hush_protocol::frame::Authenticate {
            user: "alice".into(),
            device_key: [1; 32],
            signature: hush_protocol::frame::Signature([2; 64]),
            registration: Registration::None,
            resume: (0..n)
                .map(|i| hush_protocol::frame::Resume {
                    group: hush_protocol::GroupId(vec![(i % 251) as u8]),
                    after_seq: 0,
                })
                .collect(),
        })
    };
    let ok = codec::encode(&auth(10_000)).unwrap();
    assert!(codec::decode::<ClientFrame>(&ok).is_ok());
    let over = codec::encode(&auth(10_001)).unwrap();
    assert!(matches!(
        codec::decode::<ClientFrame>(&over),
        Err(CodecError::Malformed(_))
    ));
}
