//! Frame types: everything a client and a relay say to each other.
//!
//! A connection carries [`ClientFrame`]s one way and [`RelayFrame`]s the other.
//! Enum variants are encoded by index, so variants are only ever appended; the
//! numbers in each variant's doc are fixed forever. `PROTOCOL.md` lists the byte
//! layout of each.

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::WireError;
use crate::ids::{ClientMsgId, DeviceId, GroupId, UserId};

/// An Ed25519 signature (64 bytes, encoded raw with no length prefix).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(64)?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Signature;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("64 bytes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Signature, A::Error> {
                let mut out = [0u8; 64];
                for (i, slot) in out.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Signature(out))
            }
        }
        d.deserialize_tuple(64, V)
    }
}

// ---------------------------------------------------------------------------
// Client -> relay
// ---------------------------------------------------------------------------

/// A frame sent by a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// 0: first frame of every connection. Its layout never changes across versions.
    Hello(Hello),
    /// 1: answer to the relay's [`Challenge`].
    Authenticate(Authenticate),
    /// 2: a request; the relay answers with a [`RelayFrame::Response`] carrying the same id.
    Request {
        /// Chosen by the client, echoed in the response. Need not be unique forever,
        /// only among the client's outstanding requests.
        id: u32,
        /// What to do.
        op: Request,
    },
    /// 3: the device has durably processed every entry of `group` up to `seq`.
    /// No response. Moves the device's cursor forward (never back).
    Ack {
        /// The group.
        group: GroupId,
        /// Highest processed seq.
        seq: u64,
    },
    /// 4: the device has processed every inbox entry up to `seq`; they are deleted.
    AckInbox {
        /// Highest processed inbox seq.
        seq: u64,
    },
    /// 5: an ephemeral signal (typing) for the group's online members; never stored,
    /// no response (a refusal comes back as [`RelayFrame::Error`]).
    Ephemeral {
        /// The group.
        group: GroupId,
        /// Opaque, client-encrypted; at most `MAX_EPHEMERAL_LEN` bytes.
        payload: Bytes,
    },
    /// 6: heartbeat; the relay answers [`RelayFrame::Pong`] with the same nonce.
    Ping {
        /// Echoed back.
        nonce: u64,
    },
    /// 7: device-linking rendezvous, sent instead of [`ClientFrame::Authenticate`]
    /// (the new device has no registered key yet). The first such frame puts the
    /// connection in rendezvous mode on `slot`: the relay pairs it with the one
    /// other connection that names the same slot and forwards each `payload` to it
    /// as [`RelayFrame::Rendezvous`]. Nothing is stored; the connection only ever
    /// carries rendezvous frames (and `Ping`) afterwards. At most
    /// `MAX_RENDEZVOUS_PAYLOAD` bytes, `MAX_RENDEZVOUS_MESSAGES` per side.
    Rendezvous {
        /// Chosen by the clients (derived from the public part of a link code).
        slot: [u8; 16],
        /// Opaque to the relay (a PAKE message, then encrypted link messages).
        payload: Bytes,
    },
}

/// Version negotiation: the client's supported range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Oldest version the client speaks.
    pub min_version: u16,
    /// Newest version the client speaks.
    pub max_version: u16,
    /// Free-form client name and version, for logs (at most 64 bytes).
    pub client: String,
}

/// Proof of possession of the device key, plus registration proof for new devices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Authenticate {
    /// The user this device belongs to.
    pub user: UserId,
    /// The device's Ed25519 public key; the device id is derived from it.
    pub device_key: [u8; 32],
    /// Signature over [`crate::auth::auth_transcript`].
    pub signature: Signature,
    /// How a device the relay has not seen before is allowed in.
    pub registration: Registration,
    /// Where to resume delivery per group, overriding the relay's stored cursor
    /// (entries after `after_seq` are delivered). Groups not listed resume from the
    /// relay's cursor.
    #[serde(deserialize_with = "bounded::resume_hints")]
    pub resume: Vec<Resume>,
}

/// Registration proof for a device the relay has not seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Registration {
    /// 0: none; accepted for known devices, and for new ones only in open mode.
    None,
    /// 1: a JWT from the app's backend whose `sub` is the user id.
    Token(String),
    /// 2: an existing device of the same user approves the new key, with no
    /// expiry. Refused by current relays: use `LinkedUntil`.
    Linked {
        /// The approving device (already registered to the same user).
        by: DeviceId,
        /// Its signature over [`crate::auth::link_transcript`].
        signature: Signature,
    },
    /// 3: an existing device of the same user approves the new key until
    /// `expires_ms` (at most [`crate::limits::MAX_LINK_APPROVAL_MS`] ahead).
    LinkedUntil {
        /// The approving device (already registered to the same user).
        by: DeviceId,
        /// When the approval stops being accepted, ms since the Unix epoch.
        expires_ms: u64,
        /// Its signature over [`crate::auth::link_transcript_until`].
        signature: Signature,
    },
}

/// A resume point for one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The group.
    pub group: GroupId,
    /// Deliver entries with seq greater than this.
    pub after_seq: u64,
}

/// An operation, carried in [`ClientFrame::Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// 0: create a group with the caller as its only member, at epoch 0.
    /// Reply: [`Reply::GroupCreated`].
    CreateGroup {
        /// Chosen by the client (the MLS group id).
        group: GroupId,
        /// Who may post and administer.
        policy: Policy,
    },
    /// 1: append a message to a group's log. Reply: [`Reply::Sent`].
    Send(Send),
    /// 2: the group's roster, epoch, policy and retained range. Reply: [`Reply::Group`].
    GetGroup {
        /// The group.
        group: GroupId,
    },
    /// 3: replace the group's policy (admins only). Reply: [`Reply::Done`].
    SetPolicy {
        /// The group.
        group: GroupId,
        /// The new policy.
        policy: Policy,
    },
    /// 4: read a page of the log. Reply: [`Reply::History`].
    History {
        /// The group.
        group: GroupId,
        /// First seq to return (inclusive), in `direction`. `u64::MAX` with
        /// `Backward` means "from the newest".
        from_seq: u64,
        /// Towards newer or older entries.
        direction: Direction,
        /// At most this many entries (capped by the relay).
        limit: u16,
    },
    /// 5: upload this device's key packages. One-time packages are added to the
    /// pool; a last-resort package, if given, replaces the previous one.
    /// Reply: [`Reply::KeyPackageCount`].
    UploadKeyPackages {
        /// Consumed on claim.
        #[serde(deserialize_with = "bounded::key_packages")]
        one_time: Vec<Bytes>,
        /// Handed out when no one-time package is left; never consumed.
        last_resort: Option<Bytes>,
    },
    /// 6: claim one key package for each device of `user` (or only `device`).
    /// One-time packages first. Reply: [`Reply::KeyPackages`].
    ClaimKeyPackages {
        /// Whose devices.
        user: UserId,
        /// Only this device, if set.
        device: Option<DeviceId>,
    },
    /// 7: list a user's registered devices. Reply: [`Reply::Devices`].
    ListDevices {
        /// Whose devices.
        user: UserId,
    },
    /// 8: put an opaque message in another device's inbox. Reply: [`Reply::Done`].
    SendToDevice {
        /// Recipient.
        device: DeviceId,
        /// Opaque, client-encrypted.
        payload: Bytes,
    },
    /// 9: presence of devices that share a group with the caller.
    /// Reply: [`Reply::Presence`] (devices sharing no group are left out).
    GetPresence {
        /// Devices asked about.
        devices: Vec<DeviceId>,
    },
    /// 10: the caller's groups with their heads and the caller's cursors.
    /// Reply: [`Reply::Groups`].
    ListGroups,
    /// 11: drops the stored ciphertext of one application entry of this user
    /// (after the user deleted the message for everyone). The entry keeps its
    /// seq, sender, client message id, kind, epoch and timestamp; its payload
    /// is empty in every later read and delivery. Only a device of the entry's
    /// sender's user may redact it, and only application entries.
    /// Reply: [`Reply::Done`] (also when it was already redacted).
    Redact {
        /// The group.
        group: GroupId,
        /// The entry.
        seq: u64,
    },
    /// 12: revokes a device of the caller's user (another one, or the caller
    /// itself), signed by the caller over [`crate::auth::revoke_transcript`].
    /// From then on the relay refuses the device (its open connections are
    /// closed), lists it as revoked, hands out none of its key packages, lets
    /// no commit add it, and voids link approvals it signed.
    /// Reply: [`Reply::Done`] (also when it was revoked already).
    RevokeDevice {
        /// The device to revoke.
        device: DeviceId,
        /// The caller's signature.
        signature: Signature,
    },
    /// 13: voids the group's newest commit, which its members rejected (its
    /// roster binding is not what it does in MLS, or it does not process):
    /// the relay's epoch goes back by one, the devices the commit added
    /// leave the roster, the ones it removed are members again, and the
    /// entry's payload is emptied. Admins only (any member when the policy
    /// names no admin). Reply: [`Reply::Done`].
    VoidCommit {
        /// The group.
        group: GroupId,
        /// The commit: must be the group's newest.
        seq: u64,
    },
}

/// A message to append to a group's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Send {
    /// Target group.
    pub group: GroupId,
    /// Sender-chosen id; a retry with the same id returns the original seq.
    pub client_msg_id: ClientMsgId,
    /// What the payload is (checked against the MLS header by MLS-aware relays).
    pub kind: MessageKind,
    /// The MLS epoch the payload was produced in.
    pub epoch: u64,
    /// Opaque ciphertext (MLS wire bytes).
    pub payload: Bytes,
    /// Roster change riding with a commit (only with [`MessageKind::Commit`]).
    pub roster: Option<RosterChange>,
}

/// What a log entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageKind {
    /// 0: an application message (MLS PrivateMessage with application content).
    Application,
    /// 1: a commit; accepted only at the group's current epoch, moves it forward by one.
    Commit,
    /// 2: a standalone proposal.
    Proposal,
}

/// Devices added and removed by a commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RosterChange {
    /// Devices joining; each gets `welcome` in its inbox.
    #[serde(deserialize_with = "bounded::roster")]
    pub add: Vec<DeviceId>,
    /// Devices leaving; they lose access as soon as the commit is accepted.
    #[serde(deserialize_with = "bounded::roster")]
    pub remove: Vec<DeviceId>,
    /// The MLS Welcome for the added devices.
    pub welcome: Option<Bytes>,
}

/// Who may post application messages and change the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Who may send application messages.
    pub posters: Posters,
    /// Devices that may change the policy. Empty means any member.
    pub admins: Vec<DeviceId>,
    /// Whether roster changes (commits that add or remove devices) need an admin.
    pub admins_change_roster: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            posters: Posters::Everyone,
            admins: Vec::new(),
            admins_change_roster: false,
        }
    }
}

/// Who may post.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Posters {
    /// 0: every roster member.
    Everyone,
    /// 1: announce-only: only these devices may post application messages.
    Only(Vec<DeviceId>),
}

/// Paging direction for history reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// 0: increasing seq.
    Forward,
    /// 1: decreasing seq.
    Backward,
}

// ---------------------------------------------------------------------------
// Relay -> client
// ---------------------------------------------------------------------------

/// A frame sent by a relay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RelayFrame {
    /// 0: answer to [`Hello`]: the chosen version and a nonce to sign.
    Challenge(Challenge),
    /// 1: authentication succeeded; delivery starts after this frame.
    Ready(Ready),
    /// 2: the answer to a [`ClientFrame::Request`].
    Response {
        /// The request's id.
        id: u32,
        /// Success or refusal.
        result: Result<Reply, WireError>,
    },
    /// 3: a log entry, live or replayed. Per group, seqs arrive in increasing order
    /// with no gap, except after a [`Notice::Truncated`].
    Deliver(LogEntry),
    /// 4: an entry of this device's inbox (Welcomes and device-addressed messages).
    Inbox(InboxEntry),
    /// 5: an ephemeral signal from a group member.
    Ephemeral {
        /// The group.
        group: GroupId,
        /// The sending device.
        sender: DeviceId,
        /// Opaque payload.
        payload: Bytes,
    },
    /// 6: a device sharing a group with this one came online or went offline.
    Presence(PresenceUpdate),
    /// 7: something the client must know about its groups.
    Notice(Notice),
    /// 8: answer to [`ClientFrame::Ping`].
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// 9: an error not tied to a request (malformed frame, refused ephemeral,...).
    Error(WireError),
    /// 10: the relay is closing this connection; reconnect after the given delay.
    Closing(Closing),
    /// 11: a rendezvous payload from the paired connection (see
    /// [`ClientFrame::Rendezvous`]).
    Rendezvous {
        /// The peer's payload, as it sent it.
        payload: Bytes,
    },
}

/// The relay's answer to [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// The version the rest of the connection speaks.
    pub version: u16,
    /// Fresh random bytes the device signs.
    pub nonce: [u8; 32],
    /// Identifies the relay (region and node), for logs and the auth transcript.
    pub relay_id: String,
    /// Largest frame the relay accepts.
    pub max_frame_len: u32,
    /// Send a ping at least this often; the relay closes connections silent for
    /// three intervals.
    pub heartbeat_ms: u32,
}

/// Authentication succeeded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// This device's id.
    pub device: DeviceId,
    /// Whether this connection registered the device.
    pub registered: bool,
    /// The device's groups, with where delivery resumes.
    pub groups: Vec<GroupStatus>,
    /// Highest inbox seq this device has acknowledged.
    pub inbox_acked: u64,
}

/// Where a device stands in one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// The group.
    pub group: GroupId,
    /// Newest seq in the log (0 if empty).
    pub head_seq: u64,
    /// Delivery resumes after this seq.
    pub resume_after: u64,
    /// The group's MLS epoch.
    pub epoch: u64,
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// 0: the request succeeded and returns nothing.
    Done,
    /// 1: the group exists, at `epoch`.
    GroupCreated {
        /// Its epoch (0).
        epoch: u64,
    },
    /// 2: the message is durable at `seq`.
    Sent {
        /// Its seq.
        seq: u64,
        /// The group's epoch after this message.
        epoch: u64,
        /// True if this was a retry of an already stored message (nothing new stored).
        duplicate: bool,
    },
    /// 3: group details.
    Group(GroupInfo),
    /// 4: a page of history.
    History {
        /// Entries in the requested direction.
        #[serde(deserialize_with = "bounded::history")]
        entries: Vec<LogEntry>,
        /// Where the next page starts, if there is one.
        next_from: Option<u64>,
    },
    /// 5: how many key packages the device now has.
    KeyPackageCount {
        /// One-time packages left.
        one_time: u32,
        /// Whether a last-resort package is set.
        last_resort: bool,
    },
    /// 6: claimed key packages, one per device that had one.
    KeyPackages(Vec<ClaimedKeyPackage>),
    /// 7: a user's devices.
    Devices(Vec<DeviceInfo>),
    /// 8: presence of the asked devices that share a group with the caller.
    Presence(Vec<PresenceUpdate>),
    /// 9: the caller's groups.
    Groups(Vec<GroupStatus>),
}

/// A group's state as the relay knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The group.
    pub group: GroupId,
    /// Current MLS epoch.
    pub epoch: u64,
    /// Devices allowed to send and read.
    pub roster: Vec<DeviceId>,
    /// The policy.
    pub policy: Policy,
    /// Newest seq (0 if empty).
    pub head_seq: u64,
    /// Oldest retained seq (head + 1 if nothing is retained).
    pub first_seq: u64,
}

/// One entry of a group's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The group.
    pub group: GroupId,
    /// Position in the group's log (from 1, gapless).
    pub seq: u64,
    /// Who sent it.
    pub sender: DeviceId,
    /// The sender's id for it.
    pub client_msg_id: ClientMsgId,
    /// What it is.
    pub kind: MessageKind,
    /// The epoch it was sent in.
    pub epoch: u64,
    /// When the relay accepted it (milliseconds since the Unix epoch).
    pub timestamp_ms: u64,
    /// Opaque ciphertext.
    pub payload: Bytes,
}

/// One entry of a device's inbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// Position in the device's inbox (from 1, gapless).
    pub seq: u64,
    /// Who put it there.
    pub sender: DeviceId,
    /// What it is.
    pub kind: InboxKind,
    /// When it was stored (milliseconds since the Unix epoch).
    pub timestamp_ms: u64,
    /// Opaque payload.
    pub payload: Bytes,
}

/// What an inbox entry is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InboxKind {
    /// 0: an MLS Welcome into `group`; the device's log delivery for the group starts
    /// after `commit_seq`.
    Welcome {
        /// The group joined.
        group: GroupId,
        /// Seq of the commit that added the device.
        commit_seq: u64,
    },
    /// 1: a message sent with [`Request::SendToDevice`].
    Direct,
}

/// A claimed key package.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimedKeyPackage {
    /// Whose it is.
    pub device: DeviceId,
    /// The MLS KeyPackage bytes.
    pub key_package: Bytes,
    /// Whether it was the (reused) last-resort package.
    pub last_resort: bool,
}

/// A registered device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Its id.
    pub device: DeviceId,
    /// Its Ed25519 public key.
    pub key: [u8; 32],
    /// When it registered (milliseconds since the Unix epoch).
    pub registered_ms: u64,
}

/// A device's presence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceUpdate {
    /// The device.
    pub device: DeviceId,
    /// Its user.
    pub user: UserId,
    /// Whether it has a live connection.
    pub online: bool,
    /// When it was last connected (milliseconds since the Unix epoch; 0 if never).
    pub last_seen_ms: u64,
}

/// Something the client must know about one of its groups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    /// 0: entries up to `first_available - 1` are no longer retained; delivery for
    /// the group continues at `first_available`.
    Truncated {
        /// The group.
        group: GroupId,
        /// First seq still retained.
        first_available: u64,
    },
    /// 1: this device was removed from the group by the commit at `seq`; nothing
    /// after it is delivered and sends are refused.
    Removed {
        /// The group.
        group: GroupId,
        /// Seq of the removing commit.
        seq: u64,
    },
    /// 2: this device was added to the group by the commit at `seq`; delivery
    /// starts after it.
    Added {
        /// The group.
        group: GroupId,
        /// Seq of the adding commit.
        seq: u64,
    },
}

/// The relay is closing the connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closing {
    /// Why.
    pub reason: CloseReason,
    /// Wait at least this long before reconnecting.
    pub reconnect_after_ms: u32,
    /// For humans.
    pub message: String,
}

/// Why the relay closes a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloseReason {
    /// 0: the relay is shutting down or draining; reconnect (possibly elsewhere).
    GoingAway,
    /// 1: the client did not read fast enough; reconnect and resume from cursors.
    SlowConsumer,
    /// 2: no frame arrived for three heartbeat intervals.
    IdleTimeout,
    /// 3: the handshake did not complete in time.
    HandshakeTimeout,
    /// 4: the client broke the protocol (see the preceding `Error`).
    ProtocolError,
    /// 5: the relay has too many connections.
    ServerBusy,
    /// 6: authentication failed.
    AuthFailed,
}

/// Sequences whose count the protocol limits are refused as soon as their
/// declared length is read, before any element is decoded: an element can
/// take one byte on the wire and 32 in memory, so without this a 1 MiB frame
/// of empty items would become 32 MiB.
mod bounded {
    use std::marker::PhantomData;

    use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};

    use crate::limits;

    struct AtMost<T>(usize, PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for AtMost<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a sequence of at most {} elements", self.0)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let max = self.0;
            if let Some(n) = seq.size_hint()
                && n > max
            {
                return Err(A::Error::invalid_length(n, &self));
            }
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(max));
            while let Some(x) = seq.next_element()? {
                if out.len() == max {
                    return Err(A::Error::invalid_length(max + 1, &self));
                }
                out.push(x);
            }
            Ok(out)
        }
    }

    fn at_most<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D, max: usize) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(AtMost(max, PhantomData))
    }

    pub fn resume_hints<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        at_most(d, limits::MAX_RESUME_HINTS)
    }

    pub fn key_packages<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        at_most(d, limits::MAX_KEY_PACKAGES_PER_UPLOAD)
    }

    pub fn roster<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        at_most(d, limits::MAX_ROSTER_CHANGE)
    }

    pub fn history<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        at_most(d, usize::from(limits::MAX_HISTORY_PAGE))
    }
}
