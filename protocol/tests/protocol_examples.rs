//! Checks `PROTOCOL.md` against the encoder: every encoding rule it states, and
//! every worked example it shows, byte for byte.
//!
//! A worked example in the document sits between `<!-- example: NAME -->` and
//! `<!-- /example -->`. Inside, the first cell of each table row holds the bytes
//! that row explains (in backticks), and a code block holds the whole frame as
//! spaced hex. Both must equal what the encoder produces here.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod strategy;

use std::collections::BTreeSet;

use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use hush_protocol::auth::{auth_transcript, link_transcript_until};
use hush_protocol::codec::{self, CodecError};
use hush_protocol::error::{ErrorCode, ErrorDetail, WireError};
use hush_protocol::frame::{
    Authenticate, Challenge, ClientFrame, CloseReason, Closing, GroupStatus, Hello, LogEntry, MessageKind, Notice,
    Ready, Registration, RelayFrame, Reply, Request, Resume, Send, Signature,
};
use hush_protocol::ids::{DeviceId, GroupId, UserId};
use hush_protocol::session::{RelayHandshake, RelayStep};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde::{Deserialize, Serialize};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

fn enc<T: Serialize>(value: &T) -> String {
    hex(&codec::encode(value).unwrap())
}

fn unhex(s: &str) -> Vec<u8> {
    let digits: String = s.split_whitespace().collect();
    hex::decode(digits).unwrap()
}

// ---------------------------------------------------------------------------
// The encoding rules of section "Encoding rules", each checked on real values.
// ---------------------------------------------------------------------------

#[test]
fn unsigned_integers_are_varints() {
    assert_eq!(enc(&0u64), "00");
    assert_eq!(enc(&250u64), "fa");
    assert_eq!(enc(&251u64), "fb fb 00");
    assert_eq!(enc(&1000u16), "fb e8 03");
    assert_eq!(enc(&65_535u32), "fb ff ff");
    assert_eq!(enc(&65_536u32), "fc 00 00 01 00");
    assert_eq!(enc(&u32::MAX), "fc ff ff ff ff");
    assert_eq!(enc(&(1u64 << 32)), "fd 00 00 00 00 01 00 00 00");
    assert_eq!(enc(&u64::MAX), "fd ff ff ff ff ff ff ff ff");
    assert_eq!(
        enc(&(1u128 << 64)),
        "fe 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00"
    );
    // u8 is one raw byte, never a varint.
    assert_eq!(enc(&255u8), "ff");
}

#[test]
fn varint_decoding_is_lenient_about_width_but_not_about_range() {
    // A wider form than needed is accepted (encoders must still write the shortest).
    assert_eq!(codec::decode::<u64>(&unhex("fb 05 00")), Ok(5));
    assert_eq!(codec::decode::<u16>(&unhex("fb 05 00")), Ok(5));
    // A marker wider than the field's type is refused, and so is 255.
    assert!(codec::decode::<u16>(&unhex("fc 05 00 00 00")).is_err());
    assert!(codec::decode::<u32>(&unhex("fd 05 00 00 00 00 00 00 00")).is_err());
    assert!(codec::decode::<u64>(&unhex("ff")).is_err());
}

#[test]
fn bool_option_and_result() {
    assert_eq!(enc(&false), "00");
    assert_eq!(enc(&true), "01");
    assert!(codec::decode::<bool>(&[2]).is_err());
    assert_eq!(enc(&None::<u64>), "00");
    assert_eq!(enc(&Some(300u64)), "01 fb 2c 01");
    assert!(codec::decode::<Option<u64>>(&[2, 0]).is_err());
    assert_eq!(enc(&Ok::<u64, u64>(5)), "00 05");
    assert_eq!(enc(&Err::<u64, u64>(5)), "01 05");
}

#[test]
fn strings_bytes_sequences_and_arrays() {
    assert_eq!(enc(&"hé".to_string()), "03 68 c3 a9");
    assert!(
        codec::decode::<String>(&unhex("01 ff")).is_err(),
        "strings must be UTF-8"
    );
    assert_eq!(enc(&Bytes::from_static(&[0xde, 0xad])), "02 de ad");
    assert_eq!(enc(&GroupId(vec![0xaa; 3])), "03 aa aa aa");
    assert_eq!(enc(&vec![1u64, 300]), "02 01 fb 2c 01");
    assert_eq!(enc(&[0xabu8; 4]), "ab ab ab ab");
    assert_eq!(enc(&DeviceId([0x11; 16])), "11 ".repeat(16).trim_end());
    assert_eq!(enc(&Signature([0x22; 64])), "22 ".repeat(64).trim_end());
    assert_eq!(enc(&UserId::from("bob")), "03 62 6f 62");
    let long = Bytes::from(vec![0u8; 300]);
    assert!(enc(&long).starts_with("fb 2c 01 00"));
}

#[test]
fn structs_and_enums() {
    #[derive(Serialize, Deserialize)]
    struct Pair {
        a: u16,
        b: bool,
    }
    assert_eq!(enc(&Pair { a: 1000, b: true }), "fb e8 03 01");
    // Unit variant: index only. Newtype and struct variants: index, then fields.
    assert_eq!(enc(&MessageKind::Commit), "01");
    assert_eq!(enc(&Request::ListGroups), "0a");
    assert_eq!(enc(&ClientFrame::AckInbox { seq: 9 }), "04 09");
    assert_eq!(enc(&Registration::Token("t".into())), "01 01 74");
    // An index past the last variant is refused.
    assert!(codec::decode::<ClientFrame>(&[7]).is_err());
    assert!(codec::decode::<RelayFrame>(&[11]).is_err());
    // Variant indexes are u32 varints: a 3-byte form of 6 is still Ping.
    assert_eq!(
        codec::decode::<ClientFrame>(&unhex("fb 06 00 01")),
        Ok(ClientFrame::Ping { nonce: 1 })
    );
}

#[test]
fn error_codes_are_u16_varints() {
    assert_eq!(enc(&ErrorCode::Malformed), "01");
    assert_eq!(enc(&ErrorCode::StaleEpoch), "0e");
    assert_eq!(enc(&ErrorCode::IdempotencyConflict), "14");
    assert_eq!(enc(&ErrorCode::Unknown(300)), "fb 2c 01");
    assert_eq!(codec::decode::<ErrorCode>(&[99]), Ok(ErrorCode::Unknown(99)));
    let numbered: Vec<(u16, ErrorCode)> = (1..=22).map(|n| (n, ErrorCode::from_u16(n))).collect();
    assert!(numbered.iter().all(|(_, c)| !matches!(c, ErrorCode::Unknown(_))));
}

#[test]
fn limits_are_enforced_by_the_decoder() {
    let too_big = vec![0u8; hush_protocol::limits::MAX_FRAME_LEN + 1];
    assert!(matches!(
        codec::decode::<ClientFrame>(&too_big),
        Err(CodecError::FrameTooLarge { .. })
    ));
    assert!(matches!(
        codec::split_frame(&unhex("00 10 00 01"), hush_protocol::limits::MAX_FRAME_LEN),
        Err(CodecError::FrameTooLarge { .. })
    ));
    assert_eq!(
        codec::split_frame(&unhex("00 10 00 00"), hush_protocol::limits::MAX_FRAME_LEN),
        Ok(None)
    );
}

// ---------------------------------------------------------------------------
// Worked examples.
// ---------------------------------------------------------------------------

/// The example device's signing key (its 32-byte seed is 01 01 .. 01).
fn example_key() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

fn example_nonce() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

const EXAMPLE_RELAY: &str = "eu-1/a";

fn example_group() -> GroupId {
    GroupId(vec![0xaa, 0xbb, 0xcc, 0xdd])
}

fn example_device() -> DeviceId {
    DeviceId::from_public_key(&example_key().verifying_key().to_bytes())
}

fn example_auth_transcript() -> Vec<u8> {
    let key = example_key().verifying_key().to_bytes();
    auth_transcript(&example_nonce(), EXAMPLE_RELAY, &UserId::from("alice"), &key)
}

fn example_challenge() -> Challenge {
    Challenge {
        version: 1,
        nonce: example_nonce(),
        relay_id: EXAMPLE_RELAY.into(),
        max_frame_len: 1 << 20,
        heartbeat_ms: 15_000,
    }
}

fn example_authenticate() -> ClientFrame {
    let key = example_key();
    ClientFrame::Authenticate(Authenticate {
        user: UserId::from("alice"),
        device_key: key.verifying_key().to_bytes(),
        signature: Signature(key.sign(&example_auth_transcript()).to_bytes()),
        registration: Registration::None,
        resume: vec![Resume {
            group: example_group(),
            after_seq: 300,
        }],
    })
}

/// Every worked example: its name in the document and its bytes.
fn examples() -> Vec<(&'static str, Vec<u8>)> {
    let key = example_key();
    let public = key.verifying_key().to_bytes();
    let new_key = SigningKey::from_bytes(&[2; 32]).verifying_key().to_bytes();
    let frames: Vec<(&'static str, Vec<u8>)> = vec![
        (
            "hello",
            codec::encode(&ClientFrame::Hello(Hello {
                min_version: 1,
                max_version: 1,
                client: "hush-js/0.1".into(),
            }))
            .unwrap(),
        ),
        (
            "challenge",
            codec::encode(&RelayFrame::Challenge(example_challenge())).unwrap(),
        ),
        ("authenticate", codec::encode(&example_authenticate()).unwrap()),
        (
            "ready",
            codec::encode(&RelayFrame::Ready(Ready {
                device: example_device(),
                registered: true,
                groups: vec![GroupStatus {
                    group: example_group(),
                    head_seq: 320,
                    resume_after: 300,
                    epoch: 3,
                }],
                inbox_acked: 0,
            }))
            .unwrap(),
        ),
        ("ping", codec::encode(&ClientFrame::Ping { nonce: 1000 }).unwrap()),
        (
            "ping-prefixed",
            codec::encode_prefixed(&ClientFrame::Ping { nonce: 1000 })
                .unwrap()
                .to_vec(),
        ),
        (
            "send",
            codec::encode(&ClientFrame::Request {
                id: 7,
                op: Request::Send(Send {
                    group: example_group(),
                    client_msg_id: 42,
                    kind: MessageKind::Application,
                    epoch: 3,
                    payload: Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]),
                    roster: None,
                }),
            })
            .unwrap(),
        ),
        (
            "sent",
            codec::encode(&RelayFrame::Response {
                id: 7,
                result: Ok(Reply::Sent {
                    seq: 321,
                    epoch: 3,
                    duplicate: false,
                }),
            })
            .unwrap(),
        ),
        (
            "stale-epoch",
            codec::encode(&RelayFrame::Response {
                id: 8,
                result: Err(WireError::with_detail(
                    ErrorCode::StaleEpoch,
                    "at epoch 4",
                    ErrorDetail::CurrentEpoch(4),
                )),
            })
            .unwrap(),
        ),
        (
            "deliver",
            codec::encode(&RelayFrame::Deliver(LogEntry {
                group: example_group(),
                seq: 321,
                sender: example_device(),
                client_msg_id: 42,
                kind: MessageKind::Application,
                epoch: 3,
                timestamp_ms: 1_700_000_000_000,
                payload: Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]),
            }))
            .unwrap(),
        ),
        (
            "ack",
            codec::encode(&ClientFrame::Ack {
                group: example_group(),
                seq: 321,
            })
            .unwrap(),
        ),
        (
            "truncated",
            codec::encode(&RelayFrame::Notice(Notice::Truncated {
                group: example_group(),
                first_available: 120,
            }))
            .unwrap(),
        ),
        (
            "closing",
            codec::encode(&RelayFrame::Closing(Closing {
                reason: CloseReason::GoingAway,
                reconnect_after_ms: 2000,
                message: "drain".into(),
            }))
            .unwrap(),
        ),
    ];
    let mut all = frames;
    all.push(("auth-transcript", example_auth_transcript()));
    all.push(("device-key", public.to_vec()));
    all.push(("device-id", example_device().0.to_vec()));
    all.push((
        "link-transcript",
        link_transcript_until(&UserId::from("alice"), &new_key, 1_700_000_000_000),
    ));
    all
}

fn protocol_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../PROTOCOL.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The text between an example's markers.
fn section<'a>(doc: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<!-- example: {name} -->");
    let start = doc.find(&open)? + open.len();
    let len = doc[start..].find("<!-- /example -->")?;
    Some(&doc[start..start + len])
}

/// The bytes named in the first cell of each table row, in order.
fn table_bytes(section: &str) -> String {
    section
        .lines()
        .filter_map(|line| {
            let first = line.trim().strip_prefix('|')?.split('|').next()?.trim();
            let inner = first.strip_prefix('`')?.strip_suffix('`')?;
            Some(inner.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        })
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn protocol_md_examples_match_the_encoder() {
    let doc = protocol_md();
    let mut wrong = Vec::new();
    for (name, bytes) in examples() {
        let want = hex(&bytes);
        let Some(text) = section(&doc, name) else {
            wrong.push(format!("{name}: no section in PROTOCOL.md; bytes are\n{want}"));
            continue;
        };
        let code_block_has_it = text.lines().any(|l| l.trim() == want);
        let table = table_bytes(text);
        if !code_block_has_it || table != want {
            wrong.push(format!(
                "{name}: encoder gives\n{want}\ntable says\n{table}\nwhole-frame line present: {code_block_has_it}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "PROTOCOL.md disagrees with the encoder:\n\n{}",
        wrong.join("\n\n")
    );
}

/// The examples are a real handshake: the relay's state machine accepts them.
#[test]
fn example_handshake_is_accepted_by_the_relay() {
    let mut relay = RelayHandshake::new(example_nonce(), EXAMPLE_RELAY, 1 << 20, 15_000);
    let hello: ClientFrame = codec::decode(&examples()[0].1).unwrap();
    assert_eq!(
        relay.on_frame(hello),
        RelayStep::Reply(RelayFrame::Challenge(example_challenge()))
    );
    match relay.on_frame(example_authenticate()) {
        RelayStep::Authenticated(p) => assert_eq!(p.device, example_device()),
        other => panic!("{other:?}"),
    }
}

/// Every frame example decodes to what it encodes.
#[test]
fn examples_decode() {
    for (name, bytes) in examples() {
        let ok = match name {
            "hello" | "authenticate" | "ping" | "send" | "ack" => codec::decode::<ClientFrame>(&bytes).is_ok(),
            "ping-prefixed" => codec::decode::<ClientFrame>(&bytes[4..]).is_ok(),
            "challenge" | "ready" | "sent" | "stale-epoch" | "deliver" | "truncated" | "closing" => {
                codec::decode::<RelayFrame>(&bytes).is_ok()
            }
            _ => true,
        };
        assert!(ok, "{name}");
    }
}

// ---------------------------------------------------------------------------
// Tables of PROTOCOL.md: variant numbers, error codes, limits.
// ---------------------------------------------------------------------------

/// The variant name of an enum value, from its `Debug` form.
fn variant_name<T: std::fmt::Debug>(value: &T) -> String {
    format!("{value:?}")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

/// Every variant the strategies produce, as (index on the wire, name).
fn variants<T: Serialize + std::fmt::Debug>(s: impl Strategy<Value = T>) -> BTreeSet<(u8, String)> {
    let mut runner = TestRunner::deterministic();
    (0..2000)
        .map(|_| {
            let value = s.new_tree(&mut runner).unwrap().current();
            (codec::encode(&value).unwrap()[0], variant_name(&value))
        })
        .collect()
}

#[test]
fn protocol_md_variant_tables_match_the_types() {
    let doc = protocol_md();
    let mut missing = Vec::new();
    let mut check_rows = |set: BTreeSet<(u8, String)>| {
        for (index, name) in set {
            let row = format!("| {index} | `{name}` |");
            if !doc.contains(&row) {
                missing.push(row);
            }
        }
    };
    check_rows(variants(strategy::client_frame()));
    check_rows(variants(strategy::request()));
    check_rows(variants(strategy::registration()));
    check_rows(variants(strategy::relay_frame()));
    check_rows(variants(strategy::reply()));
    check_rows(variants(strategy::notice()));
    check_rows(variants(strategy::error_detail()));
    check_rows(variants(strategy::close_reason()));
    check_rows(variants(strategy::message_kind()));
    check_rows(variants(strategy::posters()));
    check_rows(variants(strategy::direction()));
    check_rows(variants(strategy::inbox_kind()));
    assert!(missing.is_empty(), "PROTOCOL.md lacks: {missing:#?}");
}

#[test]
fn protocol_md_error_code_table_matches_the_codes() {
    let doc = protocol_md();
    let mut n = 1u16;
    while !matches!(ErrorCode::from_u16(n), ErrorCode::Unknown(_)) {
        let row = format!("| {n} | `{:?}` |", ErrorCode::from_u16(n));
        assert!(doc.contains(&row), "PROTOCOL.md lacks the row {row}");
        n += 1;
    }
    assert_eq!(n, 25, "error codes are numbered 1..=24 without gaps");
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn protocol_md_limits_match_the_code() {
    use hush_protocol::limits::*;
    let doc = protocol_md();
    let rows = [
        format!("| encoded frame, either direction | {} bytes", thousands(MAX_FRAME_LEN)),
        format!("| `Send.payload` | {} bytes |", thousands(MAX_PAYLOAD_LEN)),
        format!("| `Ephemeral.payload` | {} bytes |", thousands(MAX_EPHEMERAL_LEN)),
        format!("| `GroupId` | 1..={MAX_GROUP_ID_LEN} bytes |"),
        format!("| `UserId` | 1..={MAX_USER_ID_LEN} bytes"),
        format!("| `Registration::Token` | {} bytes |", thousands(MAX_TOKEN_LEN)),
        format!("| key packages per upload | {MAX_KEY_PACKAGES_PER_UPLOAD} |"),
        format!("| one key package | {} bytes |", thousands(MAX_KEY_PACKAGE_LEN)),
        format!(
            "| devices added or removed by one commit | {} |",
            thousands(MAX_ROSTER_CHANGE)
        ),
        format!("| entries in one history page | {MAX_HISTORY_PAGE} |"),
        format!(
            "| resume hints in one `Authenticate` | {} |",
            thousands(MAX_RESUME_HINTS)
        ),
    ];
    for row in rows {
        assert!(doc.contains(&row), "PROTOCOL.md lacks the row {row}");
    }
}
