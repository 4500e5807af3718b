//! Write requests as data: what the writer queues, logs and replays.
//!
//! Every write the store accepts is a [`WriteOp`]. The writer thread applies it
//! (through the check-then-apply functions of `writes`), and the write-ahead log
//! records the ops of each batch that wrote something, so that after a crash
//! the same ops are applied again in the same order to the same state. Every
//! input an op depends on (timestamps, the relay's clock for retention) is in
//! the op itself, so re-applying it writes exactly what it wrote the first time.

use bytes::Bytes;
use hush_protocol::frame::{ClaimedKeyPackage, MessageKind, Policy, RosterChange};
use hush_protocol::{ClientMsgId, DeviceId, GroupId, UserId};
use serde::{Deserialize, Serialize};

use super::writer::{Fatal, Tables};
use super::writes::{self, NewGroup, NewInboxEntry, PruneRequest, Tokened};
use crate::store::{
    AppendOutcome, AppendRequest, DeviceRecord, GroupRecord, PruneStep, RegisterOutcome, RetentionRule, Revocation,
    StoreError, StoreResult,
};

/// One write request. The variants mirror the `Store` write methods.
///
/// Variants are encoded by position in the write-ahead log: new ones go at the
/// end, and the ones of layout 2 (marked) stay so that its logs replay.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) enum WriteOp {
    RegisterDevice(StoredDevice),
    SetLastSeen {
        device: DeviceId,
        ms: u64,
    },
    CreateGroup(NewGroup),
    SetPolicy {
        group: GroupId,
        by: DeviceId,
        policy: Policy,
    },
    Append(StoredAppend),
    Redact {
        group: GroupId,
        seq: u64,
        by: DeviceId,
    },
    AdvanceCursors(Vec<(DeviceId, GroupId, u64)>),
    /// Layout 2 (no token); replay only.
    UploadKeyPackages {
        device: DeviceId,
        one_time: Vec<Bytes>,
        last_resort: Option<Bytes>,
    },
    /// Layout 2 (no token); replay only.
    ClaimKeyPackages(Vec<DeviceId>),
    /// Layout 2 (no token); replay only.
    InboxPush(NewInboxEntry),
    InboxAck {
        device: DeviceId,
        seq: u64,
    },
    /// Layout 2 (every group at once); replay only.
    Prune(PruneRequest),
    UploadKeyPackagesOnce {
        token: Tokened,
        device: DeviceId,
        one_time: Vec<Bytes>,
        last_resort: Option<Bytes>,
    },
    /// Every device may get a one-time package; replay only.
    ClaimKeyPackagesOnce {
        token: Tokened,
        devices: Vec<DeviceId>,
    },
    InboxPushOnce {
        token: Tokened,
        entry: NewInboxEntry,
    },
    PruneGroup {
        group: GroupId,
        rule: RetentionRule,
        max_entries: u64,
    },
    RevokeDevice(StoredRevocation),
    VoidCommit {
        group: GroupId,
        seq: u64,
        by: DeviceId,
    },
    /// Each device with whether it may get a one-time package.
    ClaimKeyPackagesFrom {
        token: Tokened,
        claims: Vec<(DeviceId, bool)>,
    },
}

/// A [`Revocation`] as logged.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct StoredRevocation {
    device: DeviceId,
    by: DeviceId,
    revoked_ms: u64,
    signature: Vec<u8>,
}

impl From<Revocation> for StoredRevocation {
    fn from(r: Revocation) -> Self {
        StoredRevocation {
            device: r.device,
            by: r.by,
            revoked_ms: r.revoked_ms,
            signature: r.signature,
        }
    }
}

impl From<StoredRevocation> for Revocation {
    fn from(r: StoredRevocation) -> Self {
        Revocation {
            device: r.device,
            by: r.by,
            revoked_ms: r.revoked_ms,
            signature: r.signature,
        }
    }
}

/// What an op answers. Each `Store` method expects one variant.
#[derive(Debug)]
pub(super) enum Outcome {
    Registered(RegisterOutcome),
    Done,
    Group(GroupRecord),
    Appended(AppendOutcome),
    Seq(u64),
    KeyPackages(u32, bool),
    Claimed(Vec<ClaimedKeyPackage>),
    Pruned(PruneStep),
}

/// The claims of the ops from before one-time packages were limited.
fn any_package(devices: Vec<DeviceId>) -> Vec<(DeviceId, bool)> {
    devices.into_iter().map(|d| (d, true)).collect()
}

/// Applies one op inside the batch's transaction. A rule error (`Ok(Err(..))`)
/// means it wrote nothing.
pub(super) fn apply(t: &mut Tables<'_>, op: WriteOp) -> Result<StoreResult<Outcome>, Fatal> {
    fn map<T>(r: Result<StoreResult<T>, Fatal>, f: impl FnOnce(T) -> Outcome) -> Result<StoreResult<Outcome>, Fatal> {
        r.map(|r| r.map(f))
    }
    match op {
        WriteOp::RegisterDevice(d) => map(writes::register_device(t, d.into()), Outcome::Registered),
        WriteOp::RevokeDevice(r) => map(writes::revoke_device(t, r.into()), |()| Outcome::Done),
        WriteOp::SetLastSeen { device, ms } => map(writes::set_last_seen(t, device, ms), |()| Outcome::Done),
        WriteOp::CreateGroup(new) => map(writes::create_group(t, new), Outcome::Group),
        WriteOp::SetPolicy { group, by, policy } => map(writes::set_policy(t, group, by, policy), |()| Outcome::Done),
        WriteOp::Append(req) => map(writes::append(t, req.into()), Outcome::Appended),
        WriteOp::Redact { group, seq, by } => map(writes::redact(t, group, seq, by), |()| Outcome::Done),
        WriteOp::VoidCommit { group, seq, by } => map(writes::void_commit(t, group, seq, by), |()| Outcome::Done),
        WriteOp::AdvanceCursors(cursors) => map(writes::advance_cursors(t, cursors), |()| Outcome::Done),
        WriteOp::UploadKeyPackages {
            device,
            one_time,
            last_resort,
        } => map(
            writes::upload_key_packages(t, None, device, one_time, last_resort),
            |(count, last_resort)| Outcome::KeyPackages(count, last_resort),
        ),
        WriteOp::UploadKeyPackagesOnce {
            token,
            device,
            one_time,
            last_resort,
        } => map(
            writes::upload_key_packages(t, Some(token), device, one_time, last_resort),
            |(count, last_resort)| Outcome::KeyPackages(count, last_resort),
        ),
        WriteOp::ClaimKeyPackages(devices) => map(
            writes::claim_key_packages(t, None, any_package(devices)),
            Outcome::Claimed,
        ),
        WriteOp::ClaimKeyPackagesOnce { token, devices } => map(
            writes::claim_key_packages(t, Some(token), any_package(devices)),
            Outcome::Claimed,
        ),
        WriteOp::ClaimKeyPackagesFrom { token, claims } => {
            map(writes::claim_key_packages(t, Some(token), claims), Outcome::Claimed)
        }
        WriteOp::InboxPush(new) => map(writes::inbox_push(t, None, new), Outcome::Seq),
        WriteOp::InboxPushOnce { token, entry } => map(writes::inbox_push(t, Some(token), entry), Outcome::Seq),
        WriteOp::InboxAck { device, seq } => map(writes::inbox_ack(t, device, seq), Outcome::Seq),
        WriteOp::Prune(req) => map(writes::prune_every_group(t, req), Outcome::Pruned),
        WriteOp::PruneGroup {
            group,
            rule,
            max_entries,
        } => map(
            writes::prune_group(t, group, rule, usize::try_from(max_entries).unwrap_or(usize::MAX)),
            Outcome::Pruned,
        ),
    }
}

/// An answer of the wrong kind: a bug in the store, never the caller's fault.
pub(super) fn mismatch() -> StoreError {
    StoreError::Unavailable("store writer answered a request with another request's kind of outcome".into())
}

/// [`DeviceRecord`] as logged.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct StoredDevice {
    device: DeviceId,
    user: UserId,
    key: [u8; 32],
    registered_ms: u64,
}

impl From<DeviceRecord> for StoredDevice {
    fn from(r: DeviceRecord) -> Self {
        StoredDevice {
            device: r.device,
            user: r.user,
            key: r.key,
            registered_ms: r.registered_ms,
        }
    }
}

impl From<StoredDevice> for DeviceRecord {
    fn from(r: StoredDevice) -> Self {
        DeviceRecord {
            device: r.device,
            user: r.user,
            key: r.key,
            registered_ms: r.registered_ms,
        }
    }
}

/// [`AppendRequest`] as logged.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct StoredAppend {
    group: GroupId,
    sender: DeviceId,
    client_msg_id: ClientMsgId,
    kind: MessageKind,
    epoch: u64,
    payload: Bytes,
    roster: Option<RosterChange>,
    now_ms: u64,
}

impl From<AppendRequest> for StoredAppend {
    fn from(r: AppendRequest) -> Self {
        StoredAppend {
            group: r.group,
            sender: r.sender,
            client_msg_id: r.client_msg_id,
            kind: r.kind,
            epoch: r.epoch,
            payload: r.payload,
            roster: r.roster,
            now_ms: r.now_ms,
        }
    }
}

impl From<StoredAppend> for AppendRequest {
    fn from(r: StoredAppend) -> Self {
        AppendRequest {
            group: r.group,
            sender: r.sender,
            client_msg_id: r.client_msg_id,
            kind: r.kind,
            epoch: r.epoch,
            payload: r.payload,
            roster: r.roster,
            now_ms: r.now_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::layout;

    /// Logs written by layout 2 replay only if its write requests keep their
    /// positions (the codec writes the variant's position first).
    #[test]
    fn layout_2_write_requests_keep_their_positions() {
        let device = DeviceId([1; 16]);
        let entry = NewInboxEntry {
            device,
            sender: device,
            kind: hush_protocol::frame::InboxKind::Direct,
            payload: Bytes::new(),
            now_ms: 0,
        };
        let prune = PruneRequest {
            now_ms: 0,
            max_age_ms: 0,
            delete_acknowledged: true,
        };
        let cases = [
            (WriteOp::SetLastSeen { device, ms: 0 }, 1u8),
            (WriteOp::AdvanceCursors(vec![]), 6),
            (
                WriteOp::UploadKeyPackages {
                    device,
                    one_time: vec![],
                    last_resort: None,
                },
                7,
            ),
            (WriteOp::ClaimKeyPackages(vec![]), 8),
            (WriteOp::InboxPush(entry), 9),
            (WriteOp::InboxAck { device, seq: 0 }, 10),
            (WriteOp::Prune(prune), 11),
        ];
        for (op, position) in cases {
            let bytes = layout::encode(&op).expect("encode");
            assert_eq!(bytes.first(), Some(&position), "{op:?}");
            let back: WriteOp = layout::decode(&bytes).expect("decode");
            assert_eq!(format!("{back:?}"), format!("{op:?}"));
        }
    }
}
