//! Storage: one trait shaped by what the relay needs, and its implementations.
//!
//! Every method is one atomic transaction. [`Store::append`] does all of a send's
//! rules at once (membership, policy, idempotency, the epoch check for commits,
//! roster changes, Welcomes into inboxes), so no interleaving of requests can
//! observe or create a half-applied state. A successful return means the change
//! is durable on disk.
//!
//! Implementations: [`embedded::EmbeddedStore`] (a file in the data
//! directory). The trait is shaped so that a distributed backend
//! (FoundationDB) can serve each method in one bounded transaction; see
//! [`Store`]. Every backend must pass the conformance suite (the
//! `hush-store-conformance` crate in `relay/conformance/`, used only by
//! tests, so the relay's build holds none of it).

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

/// A device's revocation: signed by another device of the same user (or the
/// device itself) over [`hush_protocol::auth::revoke_transcript`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The revoked device.
    pub device: DeviceId,
    /// The device that signed it.
    pub by: DeviceId,
    /// When it was revoked (ms since the Unix epoch).
    pub revoked_ms: u64,
    /// `by`'s Ed25519 signature.
    pub signature: Vec<u8>,
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

/// What one retention step may delete: the entries every roster device
/// acknowledged (if `delete_acknowledged`) and the entries older than
/// `now_ms - max_age_ms`, always as a prefix of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetentionRule {
    /// Relay clock (ms since the Unix epoch).
    pub now_ms: u64,
    /// Entries older than this are deleted whatever the cursors.
    pub max_age_ms: u64,
    /// Whether entries every roster device acknowledged are deleted.
    pub delete_acknowledged: bool,
}

/// Result of [`Store::prune_group`]: one bounded step of one group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneStep {
    /// Entries deleted because every roster device acknowledged them.
    pub acknowledged: u64,
    /// Entries deleted because they were older than the retention period.
    pub expired: u64,
    /// The group's new first retained seq, if the step moved it.
    pub first_seq: Option<u64>,
    /// Whether the rule would delete more of this group's prefix (the step
    /// stopped at its `max_entries`): call again.
    pub more: bool,
}

/// Totals of a whole retention pass ([`prune_all`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Entries deleted because every roster device acknowledged them.
    pub acknowledged: u64,
    /// Entries deleted because they were older than the retention period.
    pub expired: u64,
    /// Groups whose first retained seq moved.
    pub groups_moved: u64,
    /// Store transactions the pass took (group pages and prune steps).
    pub steps: u64,
}

/// Names one logical write so that calling it again (after a timeout, a
/// `Transient` error, or a result lost with the connection) applies it once.
///
/// The relay draws one per client request ([`OpToken::random`]) and passes
/// the same token to every try of the store call that serves it. A backend
/// remembers a token with the outcome it produced for at least
/// [`OP_TOKEN_TTL_MS`], and at most the newest [`OP_TOKEN_MAX`] of them; a
/// call with a remembered token returns that outcome and writes nothing. A
/// token names one operation: using it for another kind of call may be
/// refused with `Invalid`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct OpToken(pub [u8; 16]);

impl OpToken {
    /// A fresh random token (128 bits: collisions are not a concern).
    pub fn random() -> Self {
        OpToken(rand::random())
    }
}

impl std::fmt::Debug for OpToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpToken({})", hex::encode(self.0))
    }
}

/// How long a backend remembers an operation token at least (10 minutes):
/// far longer than any retry of one request.
pub const OP_TOKEN_TTL_MS: u64 = 10 * 60 * 1000;
/// How many operation tokens a backend remembers at most; past it the oldest
/// are forgotten first, even within [`OP_TOKEN_TTL_MS`].
pub const OP_TOKEN_MAX: u64 = 100_000;
/// Rows per transaction of the whole-list helpers ([`Store::memberships`],
/// [`Store::user_devices`]).
pub const PAGE_ROWS: usize = 512;
/// Payload budget of [`Store::inbox_read`] (1 MiB, the frame limit).
pub const DEFAULT_READ_BYTES: usize = 1 << 20;
/// Groups per page in a retention pass ([`prune_all`]).
pub const PRUNE_PAGE_GROUPS: usize = 256;
/// Entries one retention step deletes at most ([`prune_all`]): a few hundred
/// KiB of keys per transaction, far inside FoundationDB's 10 MB / 5 s.
pub const PRUNE_STEP_ENTRIES: usize = 1024;
/// Retry hint sent with a `Transient` store error.
pub const TRANSIENT_RETRY_MS: u32 = 100;
/// Retry hint sent with an `Unavailable` store error.
pub const UNAVAILABLE_RETRY_MS: u32 = 1000;

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
    /// The call failed in a way that may pass if it is made again, as it is
    /// (a transaction conflict, a timeout, a result lost in transit): the write
    /// may or may not have been applied, so a write is retried only with the
    /// same idempotency key (`client_msg_id`, [`OpToken`]) or when it is
    /// naturally idempotent (cursors, acknowledgements, policy).
    #[error("storage busy, retry: {0}")]
    Transient(String),
    /// The backend is down or refuses service (disk failure, corrupt data,
    /// cluster unreachable, writer stopped): retrying at once will not help.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether making the same call again (with the same token) may succeed soon.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient(_))
    }
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
            // Both are worth a retry by the client (sends are idempotent by
            // client message id); the hint tells it how soon. The backend's
            // own words stay in the relay's log.
            StoreError::Transient(_) => WireError::with_detail(
                ErrorCode::Unavailable,
                "storage busy; retry",
                ErrorDetail::RetryAfterMs(TRANSIENT_RETRY_MS),
            ),
            StoreError::Unavailable(_) => WireError::with_detail(
                ErrorCode::Unavailable,
                "storage unavailable; retry later",
                ErrorDetail::RetryAfterMs(UNAVAILABLE_RETRY_MS),
            ),
        }
    }
}

/// Shorthand.
pub type StoreResult<T> = Result<T, StoreError>;

/// An append that is queued: resolves once it is durable (or refused).
pub type PendingAppend = std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<AppendOutcome>> + Send>>;

/// One device whose key package [`Store::claim_key_packages`] claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPackageClaim {
    /// The device.
    pub device: DeviceId,
    /// Whether a one-time package may be handed out (else only the
    /// last-resort one).
    pub one_time: bool,
}

impl From<DeviceId> for KeyPackageClaim {
    /// A claim that may take a one-time package.
    fn from(device: DeviceId) -> Self {
        KeyPackageClaim { device, one_time: true }
    }
}

/// What the relay needs from durable storage. Every method is atomic; every
/// successful write is durable when it returns.
///
/// The shapes are chosen so that a distributed backend (FoundationDB: one
/// transaction at most 5 s and 10 MB) can serve every call in one bounded
/// transaction:
/// * **No method touches every group.** Retention is a paged listing
///   ([`Store::list_groups`]) and a step over one group that deletes at most
///   `max_entries` ([`Store::prune_group`]); [`prune_all`] drives them.
/// * **Every read of a variable amount is bounded** by a row limit and, where
///   rows carry payloads, by a payload byte budget applied inside the read
///   ([`Store::read_log`], [`Store::inbox_page`]); lists of memberships and
///   devices come in pages ([`Store::memberships_page`],
///   [`Store::user_devices_page`]).
/// * **A Welcome is stored once** however many devices a commit adds; each
///   added device's inbox entry refers to it, reads resolve it, and it is
///   deleted with the last inbox entry referring to it.
/// * **Writes that are not naturally idempotent take an [`OpToken`]**, so a
///   call retried after an unknown outcome (FoundationDB's
///   `commit_unknown_result`) applies once; appends are idempotent by
///   `(group, sender, client_msg_id)`.
/// * **Failures say whether a retry helps**: [`StoreError::Transient`] versus
///   [`StoreError::Unavailable`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // -- devices ---------------------------------------------------------

    /// Registers a device unless it already exists (then returns the existing record
    /// unchanged).
    async fn register_device(&self, record: DeviceRecord) -> StoreResult<RegisterOutcome>;
    /// A device by id.
    async fn device(&self, device: DeviceId) -> StoreResult<Option<DeviceRecord>>;

    /// Revokes a registered device: records the revocation (the first one
    /// stays; revoking again changes nothing) and deletes its key packages,
    /// so nobody can add it to a group again. `NotFound` for an unknown
    /// device.
    async fn revoke_device(&self, revocation: Revocation) -> StoreResult<()>;

    /// The device's revocation, if it was revoked.
    async fn revocation(&self, device: DeviceId) -> StoreResult<Option<Revocation>>;
    /// Up to `limit` of a user's devices with ids greater than `after` (all
    /// ids when `None`), sorted by device id.
    async fn user_devices_page(
        &self,
        user: &UserId,
        after: Option<DeviceId>,
        limit: usize,
    ) -> StoreResult<Vec<DeviceRecord>>;
    /// All of a user's devices, sorted by device id: pages of [`PAGE_ROWS`]
    /// from [`Store::user_devices_page`], each its own transaction. The total
    /// is what the user registered, revoked devices included (the relay caps
    /// the others at `max_devices_per_user` when registering).
    async fn user_devices(&self, user: &UserId) -> StoreResult<Vec<DeviceRecord>> {
        let mut out: Vec<DeviceRecord> = Vec::new();
        loop {
            let after = out.last().map(|d| d.device);
            let page = self.user_devices_page(user, after, PAGE_ROWS).await?;
            let full = page.len() >= PAGE_ROWS;
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }
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
    ///
    /// The record carries the whole roster: bounded by the group's size, which
    /// the relay reads in one piece to build its live view.
    async fn group(&self, group: &GroupId) -> StoreResult<Option<GroupRecord>>;
    /// Up to `limit` group ids after `after` (from the first when `None`), in
    /// the backend's stable order (the embedded store: by id length, then
    /// bytes). Retention pages through every group with it.
    async fn list_groups(&self, after: Option<GroupId>, limit: usize) -> StoreResult<Vec<GroupId>>;
    /// Replaces the policy. `by` must be a member, and an admin when the current
    /// policy names admins.
    async fn set_policy(&self, group: &GroupId, by: DeviceId, policy: Policy) -> StoreResult<()>;
    /// Up to `limit` of the device's memberships (tombstones included) of
    /// groups after `after` in [`Store::list_groups`] order.
    async fn memberships_page(
        &self,
        device: DeviceId,
        after: Option<GroupId>,
        limit: usize,
    ) -> StoreResult<Vec<Membership>>;
    /// Every group the device is or was a member of (tombstones included), with
    /// its cursor: pages of [`PAGE_ROWS`] from [`Store::memberships_page`],
    /// each its own transaction. The total is what the device joined (the
    /// relay sets no cap).
    async fn memberships(&self, device: DeviceId) -> StoreResult<Vec<Membership>> {
        let mut out: Vec<Membership> = Vec::new();
        loop {
            let after = out.last().map(|m| m.group.clone());
            let page = self.memberships_page(device, after, PAGE_ROWS).await?;
            let full = page.len() >= PAGE_ROWS;
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }
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
    ///    at this entry's seq and each gets an inbox entry for the Welcome, which
    ///    is stored once for all of them;
    /// 6. the entry gets seq `head_seq + 1`.
    ///
    /// Idempotent by `(group, sender, client_msg_id)` while the entry is
    /// retained: a retry after `Transient` is safe.
    async fn append(&self, req: AppendRequest) -> StoreResult<AppendOutcome>;
    /// Queues [`Store::append`] and returns once it is queued, with a future
    /// of its outcome. Appends queued one after another by one caller are
    /// applied in that order (so one sender's pipelined sends keep their
    /// order), and may share a durable commit.
    async fn submit_append(&self, req: AppendRequest) -> StoreResult<PendingAppend>;
    /// Up to `limit` entries starting at `from_seq` (inclusive) in `direction`,
    /// and no more payload bytes than `max_bytes`: reading stops once the
    /// entries read reach the budget or the next would exceed it, except that
    /// the first entry is returned whatever its size (so a caller always makes
    /// progress). Entries below `first_seq` are not returned; asking to start
    /// below it going forward starts at `first_seq` (callers check truncation
    /// with [`GroupRecord::first_seq`]).
    async fn read_log(
        &self,
        group: &GroupId,
        from_seq: u64,
        direction: Direction,
        limit: usize,
        max_bytes: usize,
    ) -> StoreResult<Vec<LogEntry>>;
    /// Empties the payload of application entry `seq` of `group`, keeping the
    /// rest of the entry. Only a device of the entry's sender's user may do it
    /// (`Forbidden` otherwise); a commit or proposal cannot be redacted
    /// (`Invalid`). Redacting an already empty entry succeeds.
    async fn redact(&self, group: &GroupId, seq: u64, by: DeviceId) -> StoreResult<()>;
    /// Voids commit `seq` of `group`, the group's newest (the one that moved
    /// it to its current epoch), after its members rejected it: the epoch
    /// goes back by one, the devices it added leave the roster (their
    /// membership ends at `seq`), the devices it removed are members again,
    /// and the entry's payload is emptied (it keeps its seq, like a
    /// redaction). The roster change is read from the commit's roster
    /// binding (`hush_protocol::roster`). Only an admin (any member when the
    /// policy names none) may do it (`Forbidden`); a non-member gets
    /// `NotMember`; an entry that is not the newest commit, or whose binding
    /// disagrees with the roster, is `Invalid`. Voiding an already voided
    /// commit is `Invalid` too (it is no longer the newest commit).
    async fn void_commit(&self, group: &GroupId, seq: u64, by: DeviceId) -> StoreResult<()>;
    /// Moves the device's cursors forward (never back, never past the head;
    /// a removed device's never past the commit that removed it; devices
    /// that never were members are ignored).
    /// Takes a batch so acknowledgements can share one transaction.
    async fn advance_cursors(&self, cursors: Vec<(DeviceId, GroupId, u64)>) -> StoreResult<()>;

    // -- key packages ----------------------------------------------------

    /// Adds one-time key packages and, if given, replaces the last-resort one.
    /// Returns `(one-time count, has last resort)`. A call with a remembered
    /// `token` returns its first outcome and adds nothing.
    async fn upload_key_packages(
        &self,
        token: OpToken,
        device: DeviceId,
        one_time: Vec<Bytes>,
        last_resort: Option<Bytes>,
    ) -> StoreResult<(u32, bool)>;
    /// How many one-time key packages `device` holds.
    async fn key_package_count(&self, device: DeviceId) -> StoreResult<u32>;
    /// Claims one key package per listed device: the oldest one-time package,
    /// consumed (only if the claim's `one_time` allows it), else the
    /// last-resort one, not consumed. Devices with neither are left out; a
    /// device listed twice gets one package, by its first claim. A call with
    /// a remembered `token` returns the packages the first call claimed and
    /// consumes nothing more.
    async fn claim_key_packages(
        &self,
        token: OpToken,
        claims: Vec<KeyPackageClaim>,
    ) -> StoreResult<Vec<ClaimedKeyPackage>>;

    // -- inboxes ---------------------------------------------------------

    /// Appends to a device's inbox; returns the entry's seq. A call with a
    /// remembered `token` returns the first call's seq and adds nothing.
    async fn inbox_push(
        &self,
        token: OpToken,
        device: DeviceId,
        sender: DeviceId,
        kind: InboxKind,
        payload: Bytes,
        now_ms: u64,
    ) -> StoreResult<u64>;
    /// Up to `limit` inbox entries after `after_seq`, oldest first, with no
    /// more payload bytes than `max_bytes` (Welcomes counted at their full
    /// size; at least one entry when one exists, as [`Store::read_log`]).
    async fn inbox_page(
        &self,
        device: DeviceId,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> StoreResult<Vec<InboxEntry>>;
    /// [`Store::inbox_page`] with a budget of [`DEFAULT_READ_BYTES`].
    async fn inbox_read(&self, device: DeviceId, after_seq: u64, limit: usize) -> StoreResult<Vec<InboxEntry>> {
        self.inbox_page(device, after_seq, limit, DEFAULT_READ_BYTES).await
    }
    /// Deletes inbox entries up to `seq`; returns the acknowledged seq after the call.
    /// A Welcome is deleted with the last inbox entry that refers to it.
    async fn inbox_ack(&self, device: DeviceId, seq: u64) -> StoreResult<u64>;
    /// `(highest acknowledged seq, highest seq)` of the device's inbox.
    async fn inbox_state(&self, device: DeviceId) -> StoreResult<(u64, u64)>;

    // -- retention -------------------------------------------------------

    /// One retention step of one group: deletes the longest prefix of its log
    /// that `rule` allows, but at most `max_entries` entries (at least 1),
    /// moving `first_seq`; the deleted entries' idempotency keys go with them.
    /// `more` says whether the rule allows deleting more. `NotFound` if the
    /// group does not exist.
    async fn prune_group(&self, group: &GroupId, rule: RetentionRule, max_entries: usize) -> StoreResult<PruneStep>;
}

/// Makes `op` again, up to three tries in all, while it fails with
/// [`StoreError::Transient`]; the caller passes the same [`OpToken`] (or
/// idempotency key) to every try, so the retry cannot apply the write twice.
pub async fn retrying<T, F, Fut>(mut op: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let mut pause = std::time::Duration::from_millis(5);
    for _ in 1..3 {
        match op().await {
            Err(e) if e.is_transient() => {
                tracing::debug!(error = %e, "store call failed transiently; retrying");
                tokio::time::sleep(pause).await;
                pause *= 4;
            }
            other => return other,
        }
    }
    op().await
}

/// One retention pass over every group: pages of [`PRUNE_PAGE_GROUPS`] group
/// ids, then per group [`Store::prune_group`] steps of at most
/// [`PRUNE_STEP_ENTRIES`] until it says no more, yielding to the scheduler
/// between transactions. `moved(group, first_seq)` is called after every step
/// that moved a group's first retained seq.
///
/// Each step is atomic, so a pass may be stopped between any two (the next
/// one starts over). A step that fails transiently is tried again
/// ([`retrying`]); a group whose step fails otherwise is logged and skipped;
/// `Unavailable`, or a failure to list groups, ends the pass with that error.
pub async fn prune_all<S: Store + ?Sized>(
    store: &S,
    rule: RetentionRule,
    mut moved: impl FnMut(&GroupId, u64),
) -> StoreResult<PruneReport> {
    let mut report = PruneReport::default();
    let mut after: Option<GroupId> = None;
    loop {
        let page = store.list_groups(after.clone(), PRUNE_PAGE_GROUPS).await?;
        report.steps += 1;
        for group in &page {
            let mut group_moved = false;
            loop {
                tokio::task::yield_now().await;
                // A step is naturally idempotent (it deletes what the rule
                // allows now), so a transient failure is simply tried again.
                let step = match retrying(|| store.prune_group(group, rule, PRUNE_STEP_ENTRIES)).await {
                    Ok(step) => step,
                    // The backend is down: every other group would fail too.
                    Err(e @ StoreError::Unavailable(_)) => return Err(e),
                    Err(e) => {
                        tracing::warn!(group = %hex::encode(&group.0), error = %e, "retention step failed");
                        break;
                    }
                };
                report.steps += 1;
                report.acknowledged += step.acknowledged;
                report.expired += step.expired;
                if let Some(first) = step.first_seq {
                    moved(group, first);
                    group_moved = true;
                }
                if !step.more {
                    break;
                }
            }
            report.groups_moved += u64::from(group_moved);
        }
        if page.len() < PRUNE_PAGE_GROUPS {
            return Ok(report);
        }
        after = page.last().cloned();
        tokio::task::yield_now().await;
    }
}
