//! The JSON that `hush read --json` and `hush groups --json` print, one
//! object per line. Ids are lowercase hex strings (group ids as in
//! `hush groups`, device ids as in `hush devices`), so scripts can pass them
//! back to other commands.

use std::collections::BTreeMap;

use hush_sdk::{GroupSummary, Member, Message};
use serde::Serialize;

/// Documented in `hush read --help`.
pub const MESSAGE_SHAPE: &str = r#"With --json, one JSON object per message, oldest first:
  {"group":"<hex>","seq":7,"id":"<32 hex>","sender":{"user":"bob","device":"<32 hex>"},
   "own":false,"sent_at_ms":1700000000000,"relay_at_ms":1700000000012,"text":"hi",
   "reply_to":null,"edited":false,"deleted":false,"reactions":{"👍":["alice"]},"read_by":["alice"]}
Ids are lowercase hex; times are milliseconds since the Unix epoch; a deleted
message has "deleted":true and an empty "text"."#;

/// Documented in `hush groups --help`.
pub const GROUP_SHAPE: &str = r#"With --json, one JSON object per group:
  {"group":"<hex>","name":"bob","direct_with":"bob","own_devices":false,
   "members":[{"user":"alice","device":"<32 hex>"},...],"seq":12,
   "verified":false,"unverified_members":0}
"direct_with" is the partner of a direct conversation (null for a group);
"own_devices" marks the private group of your own devices; "seq" is the
newest log position processed on this device; "verified" says you compared
the safety number with every other member (`hush verify`) and their devices
have not changed since; "unverified_members" counts members claiming a user
whose devices the relay does not list (forged identities)."#;

#[derive(Serialize)]
pub struct JsonMember<'a> {
    user: &'a str,
    device: String,
}

impl<'a> From<&'a Member> for JsonMember<'a> {
    fn from(m: &'a Member) -> Self {
        JsonMember {
            user: &m.user.0,
            device: m.device.to_string(),
        }
    }
}

#[derive(Serialize)]
pub struct JsonMessage<'a> {
    group: String,
    seq: u64,
    id: &'a str,
    sender: JsonMember<'a>,
    own: bool,
    sent_at_ms: u64,
    relay_at_ms: u64,
    text: &'a str,
    reply_to: Option<&'a str>,
    edited: bool,
    deleted: bool,
    reactions: BTreeMap<&'a str, Vec<&'a str>>,
    read_by: Vec<&'a str>,
}

impl<'a> From<&'a Message> for JsonMessage<'a> {
    fn from(m: &'a Message) -> Self {
        JsonMessage {
            group: m.group.to_hex(),
            seq: m.seq,
            id: &m.id,
            sender: (&m.sender).into(),
            own: m.own,
            sent_at_ms: m.sent_at_ms,
            relay_at_ms: m.relay_at_ms,
            text: &m.text,
            reply_to: m.reply_to.as_deref(),
            edited: m.edited,
            deleted: m.deleted,
            reactions: m
                .reactions
                .iter()
                .map(|(emoji, users)| (emoji.as_str(), users.iter().map(|u| u.0.as_str()).collect()))
                .collect(),
            read_by: m.read_by.iter().map(|u| u.0.as_str()).collect(),
        }
    }
}

#[derive(Serialize)]
pub struct JsonGroup<'a> {
    group: String,
    name: &'a str,
    direct_with: Option<&'a str>,
    own_devices: bool,
    members: Vec<JsonMember<'a>>,
    seq: u64,
    verified: bool,
    unverified_members: usize,
}

impl<'a> From<&'a GroupSummary> for JsonGroup<'a> {
    fn from(g: &'a GroupSummary) -> Self {
        JsonGroup {
            group: g.group.to_hex(),
            name: &g.name,
            direct_with: g.direct_with.as_deref(),
            own_devices: g.own_devices,
            members: g.members.iter().map(JsonMember::from).collect(),
            seq: g.seq,
            verified: g.verified,
            unverified_members: g.unverified_members,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hush_sdk::{DeviceId, GroupId, UserId};

    #[test]
    fn ids_are_lowercase_hex_strings() {
        let bob = Member {
            user: UserId("bob".into()),
            device: DeviceId([0xab; 16]),
        };
        let mut reactions = BTreeMap::new();
        reactions.insert("👍".to_owned(), vec![UserId("alice".into())]);
        let m = Message {
            group: GroupId(vec![0x01, 0xfe]),
            seq: 7,
            id: "00".repeat(16),
            sender: bob.clone(),
            own: false,
            sent_at_ms: 1,
            relay_at_ms: 2,
            text: "hi".into(),
            reply_to: None,
            edited: false,
            deleted: false,
            reactions,
            read_by: vec![UserId("alice".into())],
        };
        let v: serde_json::Value = serde_json::to_value(JsonMessage::from(&m)).unwrap();
        assert_eq!(v["group"], "01fe");
        assert_eq!(v["sender"]["device"], "ab".repeat(16));
        assert_eq!(v["sender"]["user"], "bob");
        assert_eq!(v["reactions"]["👍"][0], "alice");
        assert_eq!(v["read_by"][0], "alice");

        let g = GroupSummary {
            group: GroupId(vec![0x0a]),
            name: "bob".into(),
            direct_with: Some("bob".into()),
            own_devices: false,
            members: vec![bob],
            seq: 3,
            verified: false,
            unverified_members: 0,
            shared_name: false,
        };
        let v: serde_json::Value = serde_json::to_value(JsonGroup::from(&g)).unwrap();
        assert_eq!(v["group"], "0a");
        assert_eq!(v["members"][0]["device"], "ab".repeat(16));
    }
}
