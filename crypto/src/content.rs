//! The plaintext inside an MLS application message.
//!
//! A payload is a JSON object, so a client in any language can read it:
//!
//! ```json
//! {"v":1,"id":"00112233445566778899aabbccddeeff","at":1700000000000,"kind":"text","body":{"text":"hi"}}
//! ```
//!
//! * `v`: the payload format version ([`PAYLOAD_VERSION`]).
//! * `id`: 16 random bytes in hex, chosen by the sender; edits, deletions,
//!   reactions and receipts name their target by it.
//! * `at`: the sender's clock, milliseconds since the Unix epoch (a parameter:
//!   this crate reads no clock).
//! * `kind` and `body`: what the message is; see [`Content`].
//!
//! A kind this version does not know (sent by a newer client) decodes to
//! [`Content::Unknown`], which keeps the kind and body so the app can show
//! "unsupported message" and re-encode it unchanged; it is never an error. A
//! known kind with a malformed body, or bytes that are not a payload at all,
//! are reported as [`ContentError`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The payload format this crate writes.
pub const PAYLOAD_VERSION: u16 = 1;

/// Sender-chosen id of a payload, unique per sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// A random id.
    pub fn random() -> Self {
        let mut id = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
        MessageId(id)
    }
}

impl Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex(&self.0))
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        unhex::<16>(&s)
            .map(MessageId)
            .ok_or_else(|| serde::de::Error::custom("expected 32 hex characters"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        super::unhex::<32>(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex characters"))
    }
}

/// A file stored elsewhere (encrypted with `key`), referenced from a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    /// Where the encrypted file can be fetched.
    pub url: String,
    /// Its media type, e.g. `image/png`.
    pub mime: String,
    /// Size of the plaintext file in bytes.
    pub size: u64,
    /// The file's AES-256-GCM key (hex on the wire).
    #[serde(with = "hex32")]
    pub key: [u8; 32],
    /// SHA-256 of the encrypted file (hex on the wire).
    #[serde(with = "hex32")]
    pub sha256: [u8; 32],
    /// The original file name, if shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What a payload says.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Content {
    /// `text`: a chat message.
    Text {
        /// The text.
        text: String,
        /// The message it answers, if any.
        reply_to: Option<MessageId>,
    },
    /// `edit`: replaces the text of an earlier message of the same sender.
    Edit {
        /// The edited message.
        target: MessageId,
        /// Its new text.
        text: String,
    },
    /// `delete`: withdraws an earlier message of the same sender.
    Delete {
        /// The deleted message.
        target: MessageId,
    },
    /// `reaction`: adds or removes a reaction to a message.
    Reaction {
        /// The message reacted to.
        target: MessageId,
        /// The reaction, usually one emoji.
        emoji: String,
        /// Whether this removes an earlier reaction.
        remove: bool,
    },
    /// `read`: the sender has read these messages.
    ReadReceipt {
        /// The messages read.
        messages: Vec<MessageId>,
    },
    /// `typing`: the sender started or stopped typing (sent as an ephemeral signal).
    Typing {
        /// Whether they are typing now.
        active: bool,
    },
    /// `attachment`: a file, with an optional caption.
    Attachment {
        /// The file.
        attachment: AttachmentRef,
        /// Text shown with it.
        caption: Option<String>,
    },
    /// `sync_read`: between one user's own devices, "I have read `group` up to `seq`".
    SyncRead {
        /// The group, as hex of its MLS group id.
        group: String,
        /// The relay sequence number read up to.
        seq: u64,
    },
    /// `sync_setting`: between one user's own devices, a setting changed.
    SyncSetting {
        /// The setting's name.
        name: String,
        /// Its new value (any JSON).
        value: Value,
    },
    /// `sync_history`: between one user's own devices, a part of one group's
    /// decrypted history, sent by an existing device to a newly linked one
    /// (which cannot decrypt what was sent before it joined).
    SyncHistory {
        /// The group, as hex of its MLS group id.
        group: String,
        /// The relay sequence number this user has read the group up to.
        read_up_to: u64,
        /// History records as the sending SDK keeps them (a JSON list).
        messages: Value,
    },
    /// `group_name`: the group's name, the same for every member (the
    /// newest in log order wins).
    GroupName {
        /// The name.
        name: String,
    },
    /// A kind this version does not know, kept as received.
    Unknown {
        /// The kind.
        kind: String,
        /// The body, unchanged.
        body: Value,
    },
}

/// A decoded application payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Payload {
    /// Sender-chosen id.
    pub id: MessageId,
    /// The sender's clock, milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
    /// What it says.
    pub content: Content,
    /// The format version it was written in.
    pub version: u16,
}

/// Why bytes are not a payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContentError {
    /// Not a JSON payload object with `v`, `id`, `at`, `kind` and `body`.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// A known kind whose body does not match it.
    #[error("malformed body for kind {kind}: {reason}")]
    BadBody {
        /// The kind.
        kind: String,
        /// What was wrong.
        reason: String,
    },
    /// Version 0 does not exist.
    #[error("unsupported payload version {0}")]
    UnsupportedVersion(u16),
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u16,
    id: MessageId,
    at: u64,
    kind: String,
    body: Value,
}

#[derive(Serialize, Deserialize)]
struct TextBody {
    text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_to: Option<MessageId>,
}

#[derive(Serialize, Deserialize)]
struct EditBody {
    target: MessageId,
    text: String,
}

#[derive(Serialize, Deserialize)]
struct TargetBody {
    target: MessageId,
}

#[derive(Serialize, Deserialize)]
struct ReactionBody {
    target: MessageId,
    emoji: String,
    #[serde(default)]
    remove: bool,
}

#[derive(Serialize, Deserialize)]
struct ReadBody {
    messages: Vec<MessageId>,
}

#[derive(Serialize, Deserialize)]
struct TypingBody {
    active: bool,
}

#[derive(Serialize, Deserialize)]
struct AttachmentBody {
    attachment: AttachmentRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    caption: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct GroupNameBody {
    name: String,
}

#[derive(Serialize, Deserialize)]
struct SyncReadBody {
    group: String,
    seq: u64,
}

#[derive(Serialize, Deserialize)]
struct SyncHistoryBody {
    group: String,
    read_up_to: u64,
    messages: Value,
}

#[derive(Serialize, Deserialize)]
struct SyncSettingBody {
    name: String,
    value: Value,
}

fn body<T: Serialize>(kind: &str, b: T) -> (String, Value) {
    // These bodies are plain structs of strings, numbers and lists: encoding
    // them to a JSON value cannot fail.
    (kind.to_owned(), serde_json::to_value(b).unwrap_or(Value::Null))
}

impl Content {
    /// The wire name of this kind.
    pub fn kind(&self) -> &str {
        match self {
            Content::Text { .. } => "text",
            Content::Edit { .. } => "edit",
            Content::Delete { .. } => "delete",
            Content::Reaction { .. } => "reaction",
            Content::ReadReceipt { .. } => "read",
            Content::Typing { .. } => "typing",
            Content::Attachment { .. } => "attachment",
            Content::SyncRead { .. } => "sync_read",
            Content::SyncSetting { .. } => "sync_setting",
            Content::SyncHistory { .. } => "sync_history",
            Content::GroupName { .. } => "group_name",
            Content::Unknown { kind, .. } => kind,
        }
    }

    fn to_wire(&self) -> (String, Value) {
        let kind = self.kind();
        match self.clone() {
            Content::Text { text, reply_to } => body(kind, TextBody { text, reply_to }),
            Content::Edit { target, text } => body(kind, EditBody { target, text }),
            Content::Delete { target } => body(kind, TargetBody { target }),
            Content::Reaction { target, emoji, remove } => body(kind, ReactionBody { target, emoji, remove }),
            Content::ReadReceipt { messages } => body(kind, ReadBody { messages }),
            Content::Typing { active } => body(kind, TypingBody { active }),
            Content::Attachment { attachment, caption } => body(kind, AttachmentBody { attachment, caption }),
            Content::SyncRead { group, seq } => body(kind, SyncReadBody { group, seq }),
            Content::SyncSetting { name, value } => body(kind, SyncSettingBody { name, value }),
            Content::SyncHistory {
                group,
                read_up_to,
                messages,
            } => body(
                kind,
                SyncHistoryBody {
                    group,
                    read_up_to,
                    messages,
                },
            ),
            Content::GroupName { name } => body(kind, GroupNameBody { name }),
            Content::Unknown { kind, body } => (kind, body),
        }
    }

    fn from_wire(kind: String, body: Value) -> Result<Self, ContentError> {
        fn parse<T: serde::de::DeserializeOwned>(kind: &str, body: Value) -> Result<T, ContentError> {
            serde_json::from_value(body).map_err(|e| ContentError::BadBody {
                kind: kind.to_owned(),
                reason: e.to_string(),
            })
        }
        Ok(match kind.as_str() {
            "text" => {
                let b: TextBody = parse(&kind, body)?;
                Content::Text {
                    text: b.text,
                    reply_to: b.reply_to,
                }
            }
            "edit" => {
                let b: EditBody = parse(&kind, body)?;
                Content::Edit {
                    target: b.target,
                    text: b.text,
                }
            }
            "delete" => Content::Delete {
                target: parse::<TargetBody>(&kind, body)?.target,
            },
            "reaction" => {
                let b: ReactionBody = parse(&kind, body)?;
                Content::Reaction {
                    target: b.target,
                    emoji: b.emoji,
                    remove: b.remove,
                }
            }
            "read" => Content::ReadReceipt {
                messages: parse::<ReadBody>(&kind, body)?.messages,
            },
            "typing" => Content::Typing {
                active: parse::<TypingBody>(&kind, body)?.active,
            },
            "attachment" => {
                let b: AttachmentBody = parse(&kind, body)?;
                Content::Attachment {
                    attachment: b.attachment,
                    caption: b.caption,
                }
            }
            "sync_read" => {
                let b: SyncReadBody = parse(&kind, body)?;
                Content::SyncRead {
                    group: b.group,
                    seq: b.seq,
                }
            }
            "sync_setting" => {
                let b: SyncSettingBody = parse(&kind, body)?;
                Content::SyncSetting {
                    name: b.name,
                    value: b.value,
                }
            }
            "sync_history" => {
                let b: SyncHistoryBody = parse(&kind, body)?;
                Content::SyncHistory {
                    group: b.group,
                    read_up_to: b.read_up_to,
                    messages: b.messages,
                }
            }
            "group_name" => Content::GroupName {
                name: parse::<GroupNameBody>(&kind, body)?.name,
            },
            _ => Content::Unknown { kind, body },
        })
    }
}

impl Payload {
    /// A new payload of the current version with a random id.
    pub fn new(content: Content, sent_at_ms: u64) -> Self {
        Payload {
            id: MessageId::random(),
            sent_at_ms,
            content,
            version: PAYLOAD_VERSION,
        }
    }

    /// The plaintext bytes to encrypt.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, body) = self.content.to_wire();
        let wire = Wire {
            v: self.version,
            id: self.id,
            at: self.sent_at_ms,
            kind,
            body,
        };
        // A struct of strings, numbers and JSON values always encodes.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Decodes decrypted bytes. Unknown kinds (and every kind of a newer
    /// version) come back as [`Content::Unknown`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ContentError> {
        let wire: Wire = serde_json::from_slice(bytes).map_err(|e| ContentError::Malformed(e.to_string()))?;
        let content = match wire.v {
            0 => return Err(ContentError::UnsupportedVersion(0)),
            PAYLOAD_VERSION => Content::from_wire(wire.kind, wire.body)?,
            _ => Content::Unknown {
                kind: wire.kind,
                body: wire.body,
            },
        };
        Ok(Payload {
            id: wire.id,
            sent_at_ms: wire.at,
            content,
            version: wire.v,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Content> {
        let t = MessageId([7; 16]);
        vec![
            Content::Text {
                text: "hi".into(),
                reply_to: Some(t),
            },
            Content::Edit {
                target: t,
                text: "hello".into(),
            },
            Content::Delete { target: t },
            Content::Reaction {
                target: t,
                emoji: "+1".into(),
                remove: false,
            },
            Content::ReadReceipt { messages: vec![t, t] },
            Content::Typing { active: true },
            Content::Attachment {
                attachment: AttachmentRef {
                    url: "https://files.example/1".into(),
                    mime: "image/png".into(),
                    size: 1234,
                    key: [1; 32],
                    sha256: [2; 32],
                    name: Some("cat.png".into()),
                },
                caption: None,
            },
            Content::SyncRead {
                group: "abcd".into(),
                seq: 42,
            },
            Content::SyncSetting {
                name: "theme".into(),
                value: serde_json::json!({"dark": true}),
            },
            Content::SyncHistory {
                group: "abcd".into(),
                read_up_to: 7,
                messages: serde_json::json!([{"seq": 3, "text": "hi"}]),
            },
            Content::GroupName { name: "launch".into() },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for content in all_kinds() {
            let p = Payload::new(content, 1_700_000_000_000);
            assert_eq!(Payload::decode(&p.encode()), Ok(p));
        }
    }

    #[test]
    fn unknown_kinds_and_versions_are_preserved() {
        let bytes =
            br#"{"v":1,"id":"00112233445566778899aabbccddeeff","at":5,"kind":"poll","body":{"q":"?","options":[1,2]}}"#;
        let p = Payload::decode(bytes).unwrap();
        assert_eq!(p.content.kind(), "poll");
        assert!(matches!(p.content, Content::Unknown { .. }));
        assert_eq!(Payload::decode(&p.encode()), Ok(p));

        let newer = br#"{"v":2,"id":"00112233445566778899aabbccddeeff","at":5,"kind":"text","body":{"rich":[]}}"#;
        let p = Payload::decode(newer).unwrap();
        assert_eq!(p.version, 2);
        assert!(matches!(p.content, Content::Unknown { ref kind, .. } if kind == "text"));
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(matches!(Payload::decode(b"\xff\x00"), Err(ContentError::Malformed(_))));
        assert!(matches!(Payload::decode(b"{}"), Err(ContentError::Malformed(_))));
        let bad = br#"{"v":1,"id":"00112233445566778899aabbccddeeff","at":5,"kind":"text","body":{"txt":1}}"#;
        assert!(matches!(Payload::decode(bad), Err(ContentError::BadBody { .. })));
        let bad_id = br#"{"v":1,"id":"zz","at":5,"kind":"text","body":{"text":"x"}}"#;
        assert!(matches!(Payload::decode(bad_id), Err(ContentError::Malformed(_))));
    }
}
