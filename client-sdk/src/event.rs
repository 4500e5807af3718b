//! What the SDK tells the app: the typed event stream and the records it
//! keeps in history.

use std::collections::BTreeMap;

use hush_protocol::{DeviceId, GroupId, UserId};
use serde::{Deserialize, Serialize};

/// A user's device, as seen in a group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    /// The user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
}

/// One message of a group's decrypted history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The group.
    pub group: GroupId,
    /// Its position in the group's log (the relay's seq).
    pub seq: u64,
    /// The sender's id for it (32 hex digits); edits, deletions, reactions
    /// and receipts name it.
    pub id: String,
    /// Who sent it.
    pub sender: Member,
    /// Whether this device sent it.
    pub own: bool,
    /// The sender's clock, milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
    /// When the relay accepted it, milliseconds since the Unix epoch.
    pub relay_at_ms: u64,
    /// The text (the latest edit), empty once deleted.
    pub text: String,
    /// The message it answers.
    pub reply_to: Option<String>,
    /// Whether it was edited.
    pub edited: bool,
    /// Whether its sender deleted it.
    pub deleted: bool,
    /// Reactions: emoji → users.
    pub reactions: BTreeMap<String, Vec<UserId>>,
    /// Users (other than the sender) who sent a read receipt for it.
    pub read_by: Vec<UserId>,
}

/// The connection to the relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Trying to connect (attempt number, from 1).
    Connecting {
        /// Attempt number since the last working connection.
        attempt: u32,
    },
    /// Connected and authenticated; the outbox is being flushed and missed
    /// messages replayed.
    Connected {
        /// `"webtransport"` or `"websocket"`.
        transport: String,
    },
    /// Not connected; the next attempt is in `retry_in_ms`.
    Disconnected {
        /// Why.
        reason: String,
        /// Milliseconds until the next attempt.
        retry_in_ms: u64,
    },
    /// The relay refuses this device: another device of its user revoked
    /// it. The client stops connecting; sends fail with
    /// [`crate::Error::Revoked`], and what was in the outbox is reported as
    /// failed ([`Event::SendFailed`]).
    Revoked,
}

/// Everything the SDK reports, in the order it happened on this device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// The connection changed.
    Connection(ConnectionState),
    /// A new message (also this device's own, once the relay stored it).
    Message(Message),
    /// A message's text was replaced by its sender.
    Edited {
        /// The group.
        group: GroupId,
        /// The edited message's id.
        id: String,
        /// The new text.
        text: String,
        /// Who edited.
        by: Member,
    },
    /// A message was deleted by its sender.
    Deleted {
        /// The group.
        group: GroupId,
        /// The deleted message's id.
        id: String,
        /// Who deleted.
        by: Member,
    },
    /// A reaction was added or removed.
    Reaction {
        /// The group.
        group: GroupId,
        /// The message reacted to.
        id: String,
        /// The emoji.
        emoji: String,
        /// Whether it was removed.
        removed: bool,
        /// Who reacted.
        by: Member,
    },
    /// Someone read messages.
    Receipt {
        /// The group.
        group: GroupId,
        /// The messages read.
        ids: Vec<String>,
        /// Who read them.
        by: Member,
    },
    /// Someone started or stopped typing (ephemeral: only while online).
    Typing {
        /// The group.
        group: GroupId,
        /// Who.
        by: Member,
        /// Typing now or not.
        active: bool,
    },
    /// A device sharing a group with this one came online or went offline.
    Presence {
        /// The device.
        member: Member,
        /// Online now.
        online: bool,
        /// When it was last connected (ms since the Unix epoch, 0 if never).
        last_seen_ms: u64,
    },
    /// This device joined a group (created it, or was added).
    Joined {
        /// The group.
        group: GroupId,
    },
    /// A device joined a group.
    MemberAdded {
        /// The group.
        group: GroupId,
        /// The device.
        member: Member,
    },
    /// A device left or was removed from a group.
    MemberRemoved {
        /// The group.
        group: GroupId,
        /// The device.
        member: Member,
    },
    /// This device was removed from a group (or left it): nothing more of it
    /// is received.
    Removed {
        /// The group.
        group: GroupId,
    },
    /// The relay says this device was removed from the group by the commit
    /// at `seq`, but that commit, processed by MLS, did not remove it: the
    /// relay's roster and the group's disagree. The group's keys are kept
    /// (nothing is deleted on the relay's word); the relay delivers nothing
    /// more of the group to this device and refuses its sends.
    RosterMismatch {
        /// The group.
        group: GroupId,
        /// The commit the relay named.
        seq: u64,
    },
    /// The commit at `seq` was rejected and not merged: its roster binding
    /// names other devices than the ones it adds and removes in MLS, or the
    /// devices it brings in do not carry valid hush credentials. The relay
    /// applied the roster change the commit claims, so until the group moves
    /// on from a commit every member accepts, it and the relay disagree.
    CommitRejected {
        /// The group.
        group: GroupId,
        /// The rejected commit.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// A new device of this user was linked (and added to its groups).
    DeviceLinked {
        /// The new device.
        device: DeviceId,
    },
    /// A setting of this user changed on another of its devices
    /// ([`crate::Client::set_setting`]).
    SettingChanged {
        /// The setting.
        name: String,
        /// Its new value.
        value: serde_json::Value,
    },
    /// History of a group from before this device joined arrived from
    /// another device of this user (after linking) and was added to
    /// [`crate::Client::history`]. Messages already present are kept as they are.
    HistoryImported {
        /// The group.
        group: GroupId,
        /// Messages added by this part of the transfer.
        messages: usize,
    },
    /// The devices of a partner, as this device's groups hold them, changed:
    /// keys first seen (`first_seen`: the first time this user is met) or a
    /// device added or removed since. Only leaves whose identity was checked
    /// count. Compare safety numbers again (the conversation is unverified
    /// again until [`crate::Client::mark_verified`]).
    DevicesChanged {
        /// The partner.
        user: UserId,
        /// Devices that appeared.
        added: Vec<DeviceId>,
        /// Devices that are gone.
        removed: Vec<DeviceId>,
        /// No device of this user was known before.
        first_seen: bool,
        /// The safety number with the user now.
        safety_number: String,
    },
    /// An invitation (an MLS Welcome) to `group` was not taken: it does not
    /// process, or a member's leaf has no valid identity certificate while
    /// an identity authority is configured. The group is not joined.
    InvitationRefused {
        /// The group.
        group: GroupId,
        /// Why.
        reason: String,
    },
    /// The group's shared name changed (or was first set): every member
    /// shows the same one.
    GroupRenamed {
        /// The group.
        group: GroupId,
        /// Its name.
        name: String,
        /// Who named it.
        by: Member,
    },
    /// A member of `group` claims to be `user`, but the relay does not list
    /// `device` among that user's devices: a forged identity (or a device
    /// revoked since). The group is not labelled after that user, is never
    /// taken as this user's own devices, and none of its sync records are
    /// accepted.
    IdentityRejected {
        /// The group.
        group: GroupId,
        /// The user the leaf claims.
        user: UserId,
        /// The device of the leaf.
        device: DeviceId,
    },
    /// A message left the outbox: the relay stored it at `seq`.
    Sent {
        /// The group.
        group: GroupId,
        /// The message id.
        id: String,
        /// Its seq.
        seq: u64,
    },
    /// The relay refused a message from the outbox for good (for example
    /// this device is no longer in the group); it was not sent.
    SendFailed {
        /// The group.
        group: GroupId,
        /// The message id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The relay no longer had some of a group's messages for this device
    /// (retention): they are lost, delivery continues at `first_available`.
    Truncated {
        /// The group.
        group: GroupId,
        /// The first seq still available.
        first_available: u64,
    },
    /// This stream fell behind and `missed` events were dropped; the history
    /// in the local database is complete, re-read it.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
}
