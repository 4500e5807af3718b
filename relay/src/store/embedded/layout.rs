//! The embedded store's tables, key encodings and stored records.
//!
//! Every table maps bytes to bytes; the key encodings below are chosen so that
//! redb's lexicographic byte order is the order the relay reads in (a group's
//! log by seq, a device's inbox by seq, a device's key packages oldest first).
//! See the table in the parent module's documentation.

use bytes::Bytes;
use hush_protocol::codec;
use hush_protocol::frame::{InboxKind, MessageKind, Policy};
use hush_protocol::{ClientMsgId, DeviceId, GroupId, UserId};
use redb::{ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::{StoreError, StoreResult};

/// A table of the embedded store: byte keys, byte values.
pub(super) type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// Format marker: `b"format"` → [`FORMAT_VERSION`] as 8 big-endian bytes.
pub(super) const META: Def = TableDefinition::new("meta");
pub(super) const DEVICES: Def = TableDefinition::new("devices");
pub(super) const USER_DEVICES: Def = TableDefinition::new("user_devices");
pub(super) const LAST_SEEN: Def = TableDefinition::new("last_seen");
pub(super) const GROUPS: Def = TableDefinition::new("groups");
pub(super) const ROSTER: Def = TableDefinition::new("roster");
pub(super) const LOG: Def = TableDefinition::new("log");
pub(super) const IDEMPOTENCY: Def = TableDefinition::new("idempotency");
pub(super) const MEMBERS: Def = TableDefinition::new("members");
pub(super) const KP_ONE_TIME: Def = TableDefinition::new("kp_one_time");
pub(super) const KP_LAST_RESORT: Def = TableDefinition::new("kp_last_resort");
pub(super) const KP_META: Def = TableDefinition::new("kp_meta");
pub(super) const INBOX: Def = TableDefinition::new("inbox");
pub(super) const INBOX_META: Def = TableDefinition::new("inbox_meta");
pub(super) const WELCOMES: Def = TableDefinition::new("welcomes");
pub(super) const OP_TOKENS: Def = TableDefinition::new("op_tokens");
pub(super) const OP_TOKEN_ORDER: Def = TableDefinition::new("op_token_order");
/// Revoked devices: device id → [`RevokedValue`].
pub(super) const REVOKED: Def = TableDefinition::new("revoked");

/// Key of the format marker in [`META`].
pub(super) const FORMAT_KEY: &[u8] = b"format";
/// Version of this layout; a file written by a newer layout is refused at open.
///
/// 2: the database may be behind its write-ahead log (`hush.wal`), so a relay
/// that does not replay the log must not open it. A version 1 file is upgraded
/// in place (it has no log yet).
///
/// 3: Welcomes live once in `welcomes` and inbox entries refer to them (an
/// older relay would deliver them empty), and operation tokens are kept. A
/// version 1 or 2 file is upgraded in place: its inbox entries carry their
/// Welcome inline, which version 3 still reads, and its log records replay.
///
/// 4: revoked devices live in `revoked` (an older relay would let them in).
/// Older files are upgraded in place (they revoked nobody).
pub(super) const FORMAT_VERSION: u64 = 4;
/// Key in [`META`] of the operation-token counters ([`TokenMeta`]).
pub(super) const TOKEN_META_KEY: &[u8] = b"op_tokens";
/// Key in [`META`] of the sequence number (`u64`) of the last write-ahead log
/// record whose writes the database contains, written in the same transaction
/// as those writes.
pub(super) const APPLIED_LSN_KEY: &[u8] = b"applied_lsn";

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// A group id as a key prefix: its length (one byte) then its bytes.
///
/// The length byte makes the encoding prefix-free, so `(group, seq)` keys of a
/// group never interleave with those of a group whose id extends it. Group ids
/// are 1..=255 bytes by protocol, so the length fits; longer or empty ids are
/// refused here rather than truncated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct GroupKey(Vec<u8>);

impl GroupKey {
    /// The prefix of `group`, or `Invalid` when the id is out of bounds.
    pub(super) fn new(group: &GroupId) -> StoreResult<Self> {
        let len = u8::try_from(group.0.len())
            .ok()
            .filter(|_| group.is_valid())
            .ok_or_else(|| StoreError::Invalid("group id must be 1..=255 bytes".into()))?;
        let mut key = Vec::with_capacity(1 + group.0.len());
        key.push(len);
        key.extend_from_slice(&group.0);
        Ok(GroupKey(key))
    }

    /// Decodes a prefix back into the group id (the key of [`GROUPS`]).
    pub(super) fn decode(bytes: &[u8]) -> StoreResult<GroupId> {
        match bytes.split_first() {
            Some((&len, rest)) if rest.len() == usize::from(len) && len > 0 => Ok(GroupId(rest.to_vec())),
            _ => Err(corrupt("group key")),
        }
    }

    /// The key of [`GROUPS`].
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key of [`LOG`]: `group ‖ seq (8 bytes, big-endian)`.
    pub(super) fn log(&self, seq: u64) -> Vec<u8> {
        self.then(&seq.to_be_bytes())
    }

    /// The key of [`WELCOMES`]: `group ‖ commit seq (8 bytes, big-endian)`.
    pub(super) fn welcome(&self, commit_seq: u64) -> Vec<u8> {
        self.then(&commit_seq.to_be_bytes())
    }

    /// The key of [`ROSTER`]: `group ‖ device`.
    pub(super) fn roster(&self, device: DeviceId) -> Vec<u8> {
        self.then(&device.0)
    }

    /// The key of [`IDEMPOTENCY`]: `group ‖ sender ‖ client message id (8 bytes, big-endian)`.
    pub(super) fn idempotency(&self, sender: DeviceId, id: ClientMsgId) -> Vec<u8> {
        let mut key = self.then(&sender.0);
        key.extend_from_slice(&id.to_be_bytes());
        key
    }

    /// The key of [`MEMBERS`]: `device ‖ group`.
    pub(super) fn member(&self, device: DeviceId) -> Vec<u8> {
        let mut key = Vec::with_capacity(16 + self.0.len());
        key.extend_from_slice(&device.0);
        key.extend_from_slice(&self.0);
        key
    }

    fn then(&self, suffix: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.0.len() + suffix.len());
        key.extend_from_slice(&self.0);
        key.extend_from_slice(suffix);
        key
    }
}

/// A user id as a key prefix of [`USER_DEVICES`]: length (one byte) then UTF-8.
pub(super) fn user_prefix(user: &UserId) -> StoreResult<Vec<u8>> {
    let len = u8::try_from(user.0.len())
        .ok()
        .filter(|_| user.is_valid())
        .ok_or_else(|| StoreError::Invalid("user id must be 1..=128 bytes without control characters".into()))?;
    let mut key = Vec::with_capacity(1 + user.0.len() + 16);
    key.push(len);
    key.extend_from_slice(user.0.as_bytes());
    Ok(key)
}

/// `device ‖ n (8 bytes, big-endian)`: keys of [`INBOX`] and [`KP_ONE_TIME`].
pub(super) fn device_seq(device: DeviceId, n: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&device.0);
    key[16..].copy_from_slice(&n.to_be_bytes());
    key
}

/// The big-endian `u64` at the end of a key.
pub(super) fn trailing_u64(key: &[u8]) -> StoreResult<u64> {
    key.len()
        .checked_sub(8)
        .and_then(|at| key.get(at..))
        .and_then(|tail| <[u8; 8]>::try_from(tail).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| corrupt("key without a trailing seq"))
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

/// Value of [`REVOKED`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct RevokedValue {
    pub by: DeviceId,
    pub revoked_ms: u64,
    pub signature: Vec<u8>,
}

/// Value of [`DEVICES`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct DeviceValue {
    pub user: UserId,
    pub key: [u8; 32],
    pub registered_ms: u64,
}

/// Value of [`GROUPS`]: everything about a group except its roster, which lives
/// in [`ROSTER`] so that an append (which rewrites this record to move the head)
/// costs the same in a group of two and a group of ten thousand.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct GroupMeta {
    pub epoch: u64,
    pub policy: Policy,
    pub head_seq: u64,
    pub first_seq: u64,
    /// Timestamp of the newest entry ever appended; kept past pruning so the next
    /// entry's timestamp never goes back.
    pub last_timestamp_ms: u64,
    pub home_region: String,
    pub created_ms: u64,
}

/// Value of [`LOG`] (group and seq are in the key).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct EntryValue {
    pub sender: DeviceId,
    pub client_msg_id: ClientMsgId,
    pub kind: MessageKind,
    pub epoch: u64,
    pub timestamp_ms: u64,
    pub payload: Bytes,
}

/// Value of [`MEMBERS`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct MemberValue {
    pub joined_seq: u64,
    pub cursor: u64,
    pub removed_seq: Option<u64>,
}

/// Value of [`INBOX`] (device and seq are in the key).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct InboxValue {
    pub sender: DeviceId,
    pub kind: InboxKind,
    pub timestamp_ms: u64,
    pub payload: Bytes,
}

/// Value of [`WELCOMES`]: a commit's Welcome, stored once for every device it
/// added, and how many inbox entries still refer to it. An inbox entry of
/// kind `Welcome` with an empty payload refers to the Welcome of its
/// `(group, commit_seq)`; one with a payload (written by layout 2) carries it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct WelcomeValue {
    pub refs: u64,
    pub payload: Bytes,
}

/// Value of [`OP_TOKENS`]: what the operation answered, and its place in
/// [`OP_TOKEN_ORDER`] (key `n (8 bytes, big-endian) ‖ token`, value the
/// time it was recorded, `u64`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct TokenValue {
    pub n: u64,
    pub outcome: TokenOutcome,
}

/// The outcome an operation token remembers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) enum TokenOutcome {
    InboxPush(u64),
    Upload(u32, bool),
    Claim(Vec<hush_protocol::frame::ClaimedKeyPackage>),
}

/// Value of [`META`]`[`[`TOKEN_META_KEY`]`]`: the next order number and how
/// many tokens are remembered.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(super) struct TokenMeta {
    pub next: u64,
    pub count: u64,
}

/// The key of [`OP_TOKEN_ORDER`].
pub(super) fn token_order(n: u64, token: &crate::store::OpToken) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&n.to_be_bytes());
    key[8..].copy_from_slice(&token.0);
    key
}

/// Value of [`INBOX_META`].
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(super) struct InboxMeta {
    pub acked: u64,
    pub head: u64,
}

/// Value of [`KP_META`]: the next one-time counter and how many are stored.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(super) struct KeyPackageMeta {
    pub next: u64,
    pub count: u32,
}

/// Encodes a stored record. Records use the protocol's codec: whatever the
/// relay stores arrived in a frame, so it fits the codec's size limit.
pub(super) fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    codec::encode(value).map_err(|e| StoreError::Invalid(format!("record cannot be stored: {e}")))
}

/// Encodes a record at the end of `out`.
pub(super) fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> StoreResult<()> {
    codec::encode_into(value, out)
        .map(|_| ())
        .map_err(|e| StoreError::Invalid(format!("record cannot be stored: {e}")))
}

/// Decodes a stored record; a record that does not decode is corruption.
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    codec::decode(bytes).map_err(|e| corrupt(&e.to_string()))
}

/// Reads and decodes one record.
pub(super) fn get<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> StoreResult<Option<T>> {
    match table.get(key)? {
        Some(guard) => decode(guard.value()).map(Some),
        None => Ok(None),
    }
}

/// Whether a key is present.
pub(super) fn contains(table: &impl ReadableTable<&'static [u8], &'static [u8]>, key: &[u8]) -> StoreResult<bool> {
    Ok(table.get(key)?.is_some())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("corrupt record: {what}"))
}

// redb's errors become `Unavailable`: they mean the file or the disk failed
// (or the file is open elsewhere), never that the request broke a rule, and
// redb has no conflicts or timeouts to retry (one writer, snapshot reads).
macro_rules! backend_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Unavailable(e.to_string())
            }
        }
    )*};
}
backend_from!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError,
    redb::SetDurabilityError
);

#[cfg(test)]
mod tests {
    use super::*;

    fn group(bytes: &[u8]) -> GroupKey {
        GroupKey::new(&GroupId(bytes.to_vec())).expect("valid group id")
    }

    #[test]
    fn group_ids_out_of_bounds_are_refused() {
        for len in [0, 256] {
            let id = GroupId(vec![1; len]);
            assert!(matches!(GroupKey::new(&id), Err(StoreError::Invalid(_))), "{len} bytes");
        }
        let longest = GroupId(vec![0xff; 255]);
        let key = GroupKey::new(&longest).expect("255 bytes is valid");
        assert_eq!(GroupKey::decode(key.as_bytes()), Ok(longest));
    }

    #[test]
    fn a_groups_log_keys_never_interleave_with_another_groups() {
        // "a" is a prefix of "a\0": without the length byte, ("a", seq) keys
        // would sort among ("a\0", seq) ones.
        let (short, long) = (group(b"a"), group(b"a\0"));
        let short_keys = [short.log(0), short.log(1), short.log(u64::MAX)];
        let long_keys = [long.log(0), long.log(u64::MAX)];
        let (short_max, long_min) = (short_keys.iter().max(), long_keys.iter().min());
        assert!(short_max < long_min);
        assert!(short.log(255) < short.log(256), "seqs sort numerically");
    }

    #[test]
    fn trailing_numbers_decode_and_short_keys_are_corrupt() {
        let device = DeviceId([3; 16]);
        assert_eq!(trailing_u64(&device_seq(device, 77)), Ok(77));
        assert!(matches!(trailing_u64(&[1, 2, 3]), Err(StoreError::Unavailable(_))));
        assert!(matches!(GroupKey::decode(&[5, 1]), Err(StoreError::Unavailable(_))));
        assert!(matches!(GroupKey::decode(&[]), Err(StoreError::Unavailable(_))));
    }
}
