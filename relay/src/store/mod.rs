//! Storage: one trait shaped by what the relay needs, and its implementations.
//!
//! Every method is one atomic transaction. [`Store::append`] does all of a send's
//! rules at once (membership, policy, idempotency, the epoch check for commits,
//! roster changes, Welcomes into inboxes), so no interleaving of requests can
//! observe or create a half-applied state. A successful return means the change
//! is durable on disk.
//!
//! Implementations: [`embedded::EmbeddedStore`] (the default, a file in the data
//! directory) and, behind the `fdb` feature, FoundationDB. Both must pass the
//! conformance suite (the `hush-store-conformance` crate in
//! `relay/conformance/`, used only by tests).

use async_trait::async_trait;
use bytes::Bytes;
use hush_protocol::frame::{
    ClaimedKeyPackage, Direction, InboxEntry, InboxKind, LogEntry, MessageKind, Policy, RosterChange,
};
use hush_protocol::{ClientMsgId, DeviceId, ErrorCode, ErrorDetail, GroupId, UserId, WireError};

pub mod embedded;

/// A registered device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Its id (derived from `key`).
    pub device: DeviceId,
    /// Its user.
    pub user: UserId,
    /// Its Ed25519 public key.
    pub key: [u8; 32],
    /// When it registered (ms since the Unix epoch).
    pub registered_ms: u64,
}

/// Result of [`Store::register_device`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// The device is new and now registered.
    Registered,
    /// The device was already registered (to the returned record; the caller must
    /// check that the user matches).
    Existing(DeviceRecord),
}

/// A group as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRecord {
    /// Its id.
    pub group: GroupId,
    /// Current MLS epoch.
    pub epoch: u64,
    /// Members, sorted.
    pub roster: Vec<DeviceId>,
    /// Posting and admin policy.
    pub policy: Policy,
    /// Newest seq (0 when nothing was ever appended).
    pub head_seq: u64,
    /// Oldest retained seq (`head_seq + 1` when nothing is retained).
    pub first_seq: u64,
    /// The region whose store is this group's log of record.
    pub home_region: String,
    /// When it was created (ms since the Unix epoch).
    pub created_ms: u64,
}

/// A device's membership of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// The group.
    pub group: GroupId,
    /// Seq of the commit that added the device (0 for the creator): it may read
    /// entries after this seq only.
    pub joined_seq: u64,
    /// Highest seq the device acknowledged (starts at `joined_seq`).
    pub cursor: u64,
    /// Seq of the commit that removed the device, if it was removed. The record is
    /// kept as a tombstone so a reconnecting device can be told; a removed device
    /// may read nothing and send nothing. Re-adding replaces the record.
    pub removed_seq: Option<u64>,
}

/// A send to append.
#[derive(Clone, Debug, PartialEq)]
pub struct AppendRequest {
    /// Target group.
    pub group: GroupId,
    /// Sending device (already authenticated).
    pub sender: DeviceId,
    /// Idempotency key with `group` and `sender`.
    pub client_msg_id: ClientMsgId,
    /// What it is.
    pub kind: MessageKind,
    /// The epoch it was produced in.
    pub epoch: u64,
    /// Opaque ciphertext.
    pub payload: Bytes,
    /// Roster change (commits only).
    pub roster: Option<RosterChange>,
    /// Relay clock (ms since the Unix epoch); the stored timestamp is
    /// `max(now_ms, previous entry's timestamp)` so it never goes back within a group.
    pub now_ms: u64,
}

/// Result of a successful [`Store::append`].
#[derive(Clone, Debug, PartialEq)]
pub enum AppendOutcome {
    /// Stored as a new entry.
    Appended {
        /// The stored entry.
        entry: LogEntry,
        /// Group epoch after the append.
        epoch: u64,
        /// Devices added, each with the seq of the Welcome put in its inbox (0 if
        /// the commit carried no Welcome).
        added: Vec<(DeviceId, u64)>,
        /// Devices removed.
        removed: Vec<DeviceId>,
    },
    /// A retry: `(group, sender, client_msg_id)` was already stored at `seq`.
    Duplicate {
        /// The original seq.
        seq: u64,
        /// The group's current epoch.
        epoch: u64,
    },
}

/// Result of [`Store::prune`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Entries deleted because every roster device acknowledged them.
    pub acknowledged: u64,
    /// Entries deleted because they were older than the retention period.
    pub expired: u64,
    /// Groups whose first retained seq moved: `(group, new first_seq)`.
    pub moved: Vec<(GroupId, u64)>,
}

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The group, device or user does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The group already exists.
    #[error("group already exists")]
    AlreadyExists,
    /// The device is not on the roster.
    #[error("device is not a member of the group")]
    NotMember,
    /// The policy forbids it.
    #[error("forbidden by group policy: {0}")]
    Forbidden(String),
    /// A commit for an epoch the group is no longer at.
    #[error("stale epoch: the group is at epoch {current}")]
    StaleEpoch {
        /// The group's current epoch.
        current: u64,
    },
    /// The client message id was already used for a different payload.
    #[error("client message id already used for different content (seq {seq})")]
    IdempotencyConflict {
        /// Where the original went.
        seq: u64,
    },
    /// The entries asked for are no longer retained.
    #[error("entries before {first_available} are no longer retained")]
    Truncated {
        /// First retained seq.
        first_available: u64,
    },
    /// The request is inconsistent (e.g. adding a device that is already a member).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The backend failed; nothing was changed.
    #[error("storage backend error: {0}")]
    Backend(String),
}

impl From<StoreError> for WireError {
    fn from(e: StoreError) -> Self {
        let msg = e.to_string();
        match e {
            StoreError::NotFound(_) => WireError::new(ErrorCode::NotFound, msg),
            StoreError::AlreadyExists => WireError::new(ErrorCode::AlreadyExists, msg),
            StoreError::NotMember => WireError::new(ErrorCode::NotMember, msg),
            StoreError::Forbidden(_) => WireError::new(ErrorCode::Forbidden, msg),
            StoreError::StaleEpoch { current } => {
                WireError::with_detail(ErrorCode::StaleEpoch, msg, ErrorDetail::CurrentEpoch(current))
            }
            StoreError::IdempotencyConflict { seq } => {
                WireError::with_detail(ErrorCode::IdempotencyConflict, msg, ErrorDetail::OriginalSeq(seq))
            }
            StoreError::Truncated { first_available } => {
                WireError::with_detail(ErrorCode::Truncated, msg, ErrorDetail::FirstAvailable(first_available))
            }
            StoreError::Invalid(_) => WireError::new(ErrorCode::InvalidRequest, msg),
            StoreError::Backend(_) => WireError::new(ErrorCode::Internal, "storage error; retry"),
        }
    }
}

/// Shorthand.
pub type StoreResult<T> = Result<T, StoreError>;

/// An append that is queued: resolves once it is durable (or refused).
pub type PendingAppend = std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<AppendOutcome>> + Send>>;

/// What the relay needs from durable storage. Every method is atomic; every
/// successful write is durable when it returns.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // -- devices ---------------------------------------------------------

    /// Registers a device unless it already exists (then returns the existing record
    /// unchanged).
    async fn register_device(&self, record: DeviceRecord) -> StoreResult<RegisterOutcome>;
    /// A device by id.
    async fn device(&self, device: DeviceId) -> StoreResult<Option<DeviceRecord>>;
    /// A user's devices, sorted by device id.
    async fn user_devices(&self, user: &UserId) -> StoreResult<Vec<DeviceRecord>>;
    /// Records when a device was last connected.
    async fn set_last_seen(&self, device: DeviceId, ms: u64) -> StoreResult<()>;
    /// When a device was last connected (0 if never recorded).
    async fn last_seen(&self, device: DeviceId) -> StoreResult<u64>;

    // -- groups ----------------------------------------------------------

    /// Creates a group at epoch 0 with `creator` as its only member (joined at seq 0).
    /// Fails with `AlreadyExists` if the id is taken.
    async fn create_group(
        &self,
        group: GroupId,
        creator: DeviceId,
        policy: Policy,
        home_region: String,
        now_ms: u64,
    ) -> StoreResult<GroupRecord>;
    /// A group by id.
    async fn group(&self, group: &GroupId) -> StoreResult<Option<GroupRecord>>;
    /// Replaces the policy. `by` must be a member, and an admin when the current
    /// policy names admins.
    async fn set_policy(&self, group: &GroupId, by: DeviceId, policy: Policy) -> StoreResult<()>;
    /// Every group the device is or was a member of (tombstones included), with its cursor.
    async fn memberships(&self, device: DeviceId) -> StoreResult<Vec<Membership>>;
    /// The device's membership of one group.
    async fn membership(&self, device: DeviceId, group: &GroupId) -> StoreResult<Option<Membership>>;

    // -- the log ---------------------------------------------------------

    /// Appends one message, applying in one transaction:
    /// 1. group exists (`NotFound`), sender is on the roster (`NotMember`);
    /// 2. `(group, sender, client_msg_id)` already stored → `Duplicate` with the
    ///    original seq (or `IdempotencyConflict` if the stored payload differs);
    /// 3. policy: application messages need the sender to be a poster; roster
    ///    changes need an admin when `admins_change_roster` (`Forbidden`);
    /// 4. `epoch > current` → `Invalid`; a `Commit` needs `epoch == current`
    ///    (`StaleEpoch { current }`) and moves the group to `current + 1`;
    /// 5. roster: only with a `Commit`; added devices must be registered and not
    ///    yet members, removed ones must be members (`Invalid`); added devices join
    ///    at this entry's seq and get the Welcome in their inbox;
    /// 6. the entry gets seq `head_seq + 1`.
    async fn append(&self, req: AppendRequest) -> StoreResult<AppendOutcome>;
    /// Queues [`Store::append`] and returns once it is queued, with a future
    /// of its outcome. Appends queued one after another by one caller are
    /// applied in that order (so one sender's pipelined sends keep their
    /// order), and may share a durable commit.
    async fn submit_append(&self, req: AppendRequest) -> StoreResult<PendingAppend>;
    /// Up to `limit` entries starting at `from_seq` (inclusive) in `direction`.
    /// Entries below `first_seq` are not returned; asking to start below it going
    /// forward starts at `first_seq` (callers check truncation with
    /// [`GroupRecord::first_seq`]).
    async fn read_log(
        &self,
        group: &GroupId,
        from_seq: u64,
        direction: Direction,
        limit: usize,
    ) -> StoreResult<Vec<LogEntry>>;
    /// Empties the payload of application entry `seq` of `group`, keeping the
    /// rest of the entry. Only a device of the entry's sender's user may do it
    /// (`Forbidden` otherwise); a commit or proposal cannot be redacted
    /// (`Invalid`). Redacting an already empty entry succeeds.
    async fn redact(&self, group: &GroupId, seq: u64, by: DeviceId) -> StoreResult<()>;
    /// Moves the device's cursors forward (never back; non-members are ignored).
    /// Takes a batch so acknowledgements can share one transaction.
    async fn advance_cursors(&self, cursors: Vec<(DeviceId, GroupId, u64)>) -> StoreResult<()>;

    // -- key packages ----------------------------------------------------

    /// Adds one-time key packages and, if given, replaces the last-resort one.
    /// Returns `(one-time count, has last resort)`.
    async fn upload_key_packages(
        &self,
        device: DeviceId,
        one_time: Vec<Bytes>,
        last_resort: Option<Bytes>,
    ) -> StoreResult<(u32, bool)>;
    /// Claims one key package per listed device: the oldest one-time package,
    /// consumed, else the last-resort one, not consumed. Devices with neither are
    /// left out.
    async fn claim_key_packages(&self, devices: Vec<DeviceId>) -> StoreResult<Vec<ClaimedKeyPackage>>;

    // -- inboxes ---------------------------------------------------------

    /// Appends to a device's inbox; returns the entry's seq.
    async fn inbox_push(
        &self,
        device: DeviceId,
        sender: DeviceId,
        kind: InboxKind,
        payload: Bytes,
        now_ms: u64,
    ) -> StoreResult<u64>;
    /// Up to `limit` inbox entries after `after_seq`, oldest first.
    async fn inbox_read(&self, device: DeviceId, after_seq: u64, limit: usize) -> StoreResult<Vec<InboxEntry>>;
    /// Deletes inbox entries up to `seq`; returns the acknowledged seq after the call.
    async fn inbox_ack(&self, device: DeviceId, seq: u64) -> StoreResult<u64>;
    /// `(highest acknowledged seq, highest seq)` of the device's inbox.
    async fn inbox_state(&self, device: DeviceId) -> StoreResult<(u64, u64)>;

    // -- retention -------------------------------------------------------

    /// Deletes, per group, the entries every roster device acknowledged (if
    /// `delete_acknowledged`) and the entries older than `now_ms - max_age_ms`,
    /// always as a prefix of the log, moving `first_seq`.
    async fn prune(&self, now_ms: u64, max_age_ms: u64, delete_acknowledged: bool) -> StoreResult<PruneReport>;
}
