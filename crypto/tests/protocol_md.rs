//! The MLS payload examples of `PROTOCOL.md` (section 8.6) are what
//! [`hush_crypto::inspect::framing`] builds and what the relay's reader accepts.
#![allow(clippy::unwrap_used)]

use hush_crypto::inspect::{self, ContentType, Inspected, framing};
use hush_protocol::{GroupId, frame::MessageKind};

/// The whole-frame hex line of the example `name`.
fn example(name: &str) -> Vec<u8> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../PROTOCOL.md")).unwrap();
    let open = format!("<!-- example: {name} -->");
    let start = doc.find(&open).unwrap() + open.len();
    let section = &doc[start..start + doc[start..].find("<!-- /example -->").unwrap()];
    let block = section.split("```text\n").nth(1).unwrap();
    let line = block.lines().next().unwrap();
    line.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

#[test]
fn private_message_example() {
    let group = GroupId(vec![0xaa, 0xbb, 0xcc, 0xdd]);
    let bytes = example("mls-private-message");
    assert_eq!(
        framing::private_message(&group, 3, MessageKind::Application, &[0xde, 0xad, 0xbe, 0xef]),
        bytes
    );
    let header = inspect::inspect(&bytes).unwrap();
    assert_eq!(
        (header.group_id, header.epoch, header.content_type),
        (group, 3, ContentType::Application)
    );
}

#[test]
fn welcome_example() {
    let bytes = example("mls-welcome");
    assert_eq!(framing::welcome(&[0x77]), bytes);
    assert!(matches!(inspect::inspect_any(&bytes), Ok(Inspected::Welcome(_))));
}
