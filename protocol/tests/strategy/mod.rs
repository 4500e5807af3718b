//! Proptest strategies for every wire type, reaching every enum variant.
//!
//! Integers are drawn mostly from the varint boundaries (250, 251, 65535,
//! 65536, ...) so every width of the encoding is exercised, and sometimes from
//! the whole range.

use bytes::Bytes;
use hush_protocol::error::{ErrorCode, ErrorDetail, WireError};
use hush_protocol::frame::{
    Authenticate, Challenge, ClaimedKeyPackage, ClientFrame, CloseReason, Closing, DeviceInfo, Direction, GroupInfo,
    GroupStatus, Hello, InboxEntry, InboxKind, LogEntry, MessageKind, Notice, Policy, Posters, PresenceUpdate, Ready,
    Registration, RelayFrame, Reply, Request, Resume, RosterChange, Send, Signature,
};
use hush_protocol::ids::{DeviceId, GroupId, UserId};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// Values around each varint width change.
const U64_EDGES: &[u64] = &[
    0,
    1,
    250,
    251,
    252,
    255,
    256,
    65_535,
    65_536,
    u32::MAX as u64,
    u32::MAX as u64 + 1,
    u64::MAX - 1,
    u64::MAX,
];

pub fn u64_any() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => proptest::sample::select(U64_EDGES),
        1 => 0u64..300,
        1 => any::<u64>(),
    ]
}

pub fn u32_any() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => proptest::sample::select(&[0u32, 1, 250, 251, 252, 65_535, 65_536, u32::MAX][..]),
        1 => any::<u32>(),
    ]
}

pub fn u16_any() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => proptest::sample::select(&[0u16, 1, 250, 251, 252, 255, 256, u16::MAX][..]),
        1 => any::<u16>(),
    ]
}

/// Byte strings, sometimes long enough to need a 3-byte length.
pub fn bytes() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..40),
        1 => vec(any::<u8>(), 245..300),
    ]
    .prop_map(Bytes::from)
}

pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "\\PC{0,24}",
        1 => "[a-z]{250,260}",
    ]
}

pub fn device_id() -> impl Strategy<Value = DeviceId> {
    any::<[u8; 16]>().prop_map(DeviceId)
}

pub fn group_id() -> impl Strategy<Value = GroupId> {
    vec(any::<u8>(), 0..40).prop_map(GroupId)
}

pub fn user_id() -> impl Strategy<Value = UserId> {
    text().prop_map(UserId)
}

pub fn signature() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&a);
        s[32..].copy_from_slice(&b);
        Signature(s)
    })
}

pub fn devices() -> impl Strategy<Value = Vec<DeviceId>> {
    vec(device_id(), 0..4)
}

pub fn hello() -> impl Strategy<Value = Hello> {
    (u16_any(), u16_any(), text()).prop_map(|(min_version, max_version, client)| Hello {
        min_version,
        max_version,
        client,
    })
}

pub fn registration() -> impl Strategy<Value = Registration> {
    prop_oneof![
        Just(Registration::None),
        text().prop_map(Registration::Token),
        (device_id(), signature()).prop_map(|(by, signature)| Registration::Linked { by, signature }),
        (device_id(), u64_any(), signature()).prop_map(|(by, expires_ms, signature)| Registration::LinkedUntil {
            by,
            expires_ms,
            signature
        }),
    ]
}

pub fn resume() -> impl Strategy<Value = Resume> {
    (group_id(), u64_any()).prop_map(|(group, after_seq)| Resume { group, after_seq })
}

pub fn authenticate() -> impl Strategy<Value = Authenticate> {
    (
        user_id(),
        any::<[u8; 32]>(),
        signature(),
        registration(),
        vec(resume(), 0..4),
    )
        .prop_map(|(user, device_key, signature, registration, resume)| Authenticate {
            user,
            device_key,
            signature,
            registration,
            resume,
        })
}

pub fn posters() -> impl Strategy<Value = Posters> {
    prop_oneof![Just(Posters::Everyone), devices().prop_map(Posters::Only)]
}

pub fn policy() -> impl Strategy<Value = Policy> {
    (posters(), devices(), any::<bool>()).prop_map(|(posters, admins, admins_change_roster)| Policy {
        posters,
        admins,
        admins_change_roster,
    })
}

pub fn message_kind() -> impl Strategy<Value = MessageKind> {
    prop_oneof![
        Just(MessageKind::Application),
        Just(MessageKind::Commit),
        Just(MessageKind::Proposal),
    ]
}

pub fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![Just(Direction::Forward), Just(Direction::Backward)]
}

pub fn roster_change() -> impl Strategy<Value = RosterChange> {
    (devices(), devices(), option::of(bytes())).prop_map(|(add, remove, welcome)| RosterChange { add, remove, welcome })
}

pub fn send() -> impl Strategy<Value = Send> {
    (
        group_id(),
        u64_any(),
        message_kind(),
        u64_any(),
        bytes(),
        option::of(roster_change()),
    )
        .prop_map(|(group, client_msg_id, kind, epoch, payload, roster)| Send {
            group,
            client_msg_id,
            kind,
            epoch,
            payload,
            roster,
        })
}

pub fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (group_id(), policy()).prop_map(|(group, policy)| Request::CreateGroup { group, policy }),
        send().prop_map(Request::Send),
        group_id().prop_map(|group| Request::GetGroup { group }),
        (group_id(), policy()).prop_map(|(group, policy)| Request::SetPolicy { group, policy }),
        (group_id(), u64_any(), direction(), u16_any()).prop_map(|(group, from_seq, direction, limit)| {
            Request::History {
                group,
                from_seq,
                direction,
                limit,
            }
        }),
        (vec(bytes(), 0..4), option::of(bytes()))
            .prop_map(|(one_time, last_resort)| Request::UploadKeyPackages { one_time, last_resort }),
        (user_id(), option::of(device_id())).prop_map(|(user, device)| Request::ClaimKeyPackages { user, device }),
        user_id().prop_map(|user| Request::ListDevices { user }),
        (device_id(), bytes()).prop_map(|(device, payload)| Request::SendToDevice { device, payload }),
        devices().prop_map(|devices| Request::GetPresence { devices }),
        Just(Request::ListGroups),
        (group_id(), u64_any()).prop_map(|(group, seq)| Request::Redact { group, seq }),
        (device_id(), signature()).prop_map(|(device, signature)| Request::RevokeDevice { device, signature }),
        (group_id(), u64_any()).prop_map(|(group, seq)| Request::VoidCommit { group, seq }),
    ]
}

pub fn client_frame() -> impl Strategy<Value = ClientFrame> {
    prop_oneof![
        hello().prop_map(ClientFrame::Hello),
        authenticate().prop_map(ClientFrame::Authenticate),
        (u32_any(), request()).prop_map(|(id, op)| ClientFrame::Request { id, op }),
        (group_id(), u64_any()).prop_map(|(group, seq)| ClientFrame::Ack { group, seq }),
        u64_any().prop_map(|seq| ClientFrame::AckInbox { seq }),
        (group_id(), bytes()).prop_map(|(group, payload)| ClientFrame::Ephemeral { group, payload }),
        u64_any().prop_map(|nonce| ClientFrame::Ping { nonce }),
        (any::<[u8; 16]>(), bytes()).prop_map(|(slot, payload)| ClientFrame::Rendezvous { slot, payload }),
    ]
}

/// Any error code; `Unknown` only with numbers that no named code uses, since
/// `Unknown(1)` is sent as 1 and read back as `Malformed`.
pub fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        3 => (1u16..=20).prop_map(ErrorCode::from_u16),
        1 => u16_any().prop_map(ErrorCode::from_u16),
    ]
}

pub fn error_detail() -> impl Strategy<Value = ErrorDetail> {
    prop_oneof![
        Just(ErrorDetail::None),
        u64_any().prop_map(ErrorDetail::CurrentEpoch),
        u32_any().prop_map(ErrorDetail::RetryAfterMs),
        (u16_any(), u16_any()).prop_map(|(min, max)| ErrorDetail::Versions { min, max }),
        u64_any().prop_map(ErrorDetail::FirstAvailable),
        u64_any().prop_map(ErrorDetail::OriginalSeq),
    ]
}

pub fn wire_error() -> impl Strategy<Value = WireError> {
    (error_code(), text(), error_detail())
        .prop_map(|(code, message, detail)| WireError::with_detail(code, message, detail))
}

pub fn challenge() -> impl Strategy<Value = Challenge> {
    (u16_any(), any::<[u8; 32]>(), text(), u32_any(), u32_any()).prop_map(
        |(version, nonce, relay_id, max_frame_len, heartbeat_ms)| Challenge {
            version,
            nonce,
            relay_id,
            max_frame_len,
            heartbeat_ms,
        },
    )
}

pub fn group_status() -> impl Strategy<Value = GroupStatus> {
    (group_id(), u64_any(), u64_any(), u64_any()).prop_map(|(group, head_seq, resume_after, epoch)| GroupStatus {
        group,
        head_seq,
        resume_after,
        epoch,
    })
}

pub fn ready() -> impl Strategy<Value = Ready> {
    (device_id(), any::<bool>(), vec(group_status(), 0..4), u64_any()).prop_map(
        |(device, registered, groups, inbox_acked)| Ready {
            device,
            registered,
            groups,
            inbox_acked,
        },
    )
}

pub fn log_entry() -> impl Strategy<Value = LogEntry> {
    (
        group_id(),
        u64_any(),
        device_id(),
        u64_any(),
        message_kind(),
        u64_any(),
        u64_any(),
        bytes(),
    )
        .prop_map(
            |(group, seq, sender, client_msg_id, kind, epoch, timestamp_ms, payload)| LogEntry {
                group,
                seq,
                sender,
                client_msg_id,
                kind,
                epoch,
                timestamp_ms,
                payload,
            },
        )
}

pub fn inbox_kind() -> impl Strategy<Value = InboxKind> {
    prop_oneof![
        (group_id(), u64_any()).prop_map(|(group, commit_seq)| InboxKind::Welcome { group, commit_seq }),
        Just(InboxKind::Direct),
    ]
}

pub fn inbox_entry() -> impl Strategy<Value = InboxEntry> {
    (u64_any(), device_id(), inbox_kind(), u64_any(), bytes()).prop_map(|(seq, sender, kind, timestamp_ms, payload)| {
        InboxEntry {
            seq,
            sender,
            kind,
            timestamp_ms,
            payload,
        }
    })
}

pub fn presence_update() -> impl Strategy<Value = PresenceUpdate> {
    (device_id(), user_id(), any::<bool>(), u64_any()).prop_map(|(device, user, online, last_seen_ms)| PresenceUpdate {
        device,
        user,
        online,
        last_seen_ms,
    })
}

pub fn group_info() -> impl Strategy<Value = GroupInfo> {
    (group_id(), u64_any(), devices(), policy(), u64_any(), u64_any()).prop_map(
        |(group, epoch, roster, policy, head_seq, first_seq)| GroupInfo {
            group,
            epoch,
            roster,
            policy,
            head_seq,
            first_seq,
        },
    )
}

pub fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        Just(Reply::Done),
        u64_any().prop_map(|epoch| Reply::GroupCreated { epoch }),
        (u64_any(), u64_any(), any::<bool>()).prop_map(|(seq, epoch, duplicate)| Reply::Sent { seq, epoch, duplicate }),
        group_info().prop_map(Reply::Group),
        (vec(log_entry(), 0..3), option::of(u64_any()))
            .prop_map(|(entries, next_from)| Reply::History { entries, next_from }),
        (u32_any(), any::<bool>()).prop_map(|(one_time, last_resort)| Reply::KeyPackageCount { one_time, last_resort }),
        vec(
            (device_id(), bytes(), any::<bool>()).prop_map(|(device, key_package, last_resort)| ClaimedKeyPackage {
                device,
                key_package,
                last_resort
            }),
            0..3
        )
        .prop_map(Reply::KeyPackages),
        vec(
            (device_id(), any::<[u8; 32]>(), u64_any()).prop_map(|(device, key, registered_ms)| DeviceInfo {
                device,
                key,
                registered_ms
            }),
            0..3
        )
        .prop_map(Reply::Devices),
        vec(presence_update(), 0..3).prop_map(Reply::Presence),
        vec(group_status(), 0..3).prop_map(Reply::Groups),
    ]
}

pub fn notice() -> impl Strategy<Value = Notice> {
    prop_oneof![
        (group_id(), u64_any()).prop_map(|(group, first_available)| Notice::Truncated { group, first_available }),
        (group_id(), u64_any()).prop_map(|(group, seq)| Notice::Removed { group, seq }),
        (group_id(), u64_any()).prop_map(|(group, seq)| Notice::Added { group, seq }),
    ]
}

pub fn close_reason() -> impl Strategy<Value = CloseReason> {
    prop_oneof![
        Just(CloseReason::GoingAway),
        Just(CloseReason::SlowConsumer),
        Just(CloseReason::IdleTimeout),
        Just(CloseReason::HandshakeTimeout),
        Just(CloseReason::ProtocolError),
        Just(CloseReason::ServerBusy),
        Just(CloseReason::AuthFailed),
    ]
}

pub fn relay_frame() -> impl Strategy<Value = RelayFrame> {
    prop_oneof![
        challenge().prop_map(RelayFrame::Challenge),
        ready().prop_map(RelayFrame::Ready),
        (u32_any(), prop_oneof![reply().prop_map(Ok), wire_error().prop_map(Err)])
            .prop_map(|(id, result)| RelayFrame::Response { id, result }),
        log_entry().prop_map(RelayFrame::Deliver),
        inbox_entry().prop_map(RelayFrame::Inbox),
        (group_id(), device_id(), bytes()).prop_map(|(group, sender, payload)| RelayFrame::Ephemeral {
            group,
            sender,
            payload
        }),
        presence_update().prop_map(RelayFrame::Presence),
        notice().prop_map(RelayFrame::Notice),
        u64_any().prop_map(|nonce| RelayFrame::Pong { nonce }),
        wire_error().prop_map(RelayFrame::Error),
        (close_reason(), u32_any(), text()).prop_map(|(reason, reconnect_after_ms, message)| {
            RelayFrame::Closing(Closing {
                reason,
                reconnect_after_ms,
                message,
            })
        }),
        bytes().prop_map(|payload| RelayFrame::Rendezvous { payload }),
    ]
}
