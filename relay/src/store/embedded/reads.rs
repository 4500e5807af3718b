//! Reads, written once over any readable table so that the read methods (in a
//! read transaction) and the checks of writes (inside the writer's transaction,
//! seeing the batch's earlier writes) share them.

use hush_protocol::frame::{Direction, InboxEntry, InboxKind, LogEntry};
use hush_protocol::{DeviceId, GroupId, UserId};
use redb::ReadableTable;

use super::layout::{
    self, DeviceValue, EntryValue, GroupKey, GroupMeta, InboxMeta, InboxValue, MemberValue, WelcomeValue, device_seq,
    get, trailing_u64,
};
use crate::store::{DeviceRecord, GroupRecord, Membership, StoreError, StoreResult};

/// Any table of the embedded store, in a read or a write transaction.
pub(super) trait RawTable: ReadableTable<&'static [u8], &'static [u8]> {}
impl<T: ReadableTable<&'static [u8], &'static [u8]>> RawTable for T {}

/// Calls `f` on each entry whose key starts with `prefix`, in key order, until
/// it returns `false`.
pub(super) fn scan_prefix(
    table: &impl RawTable,
    prefix: &[u8],
    mut f: impl FnMut(&[u8], &[u8]) -> StoreResult<bool>,
) -> StoreResult<()> {
    for item in table.range(prefix..)? {
        let (key, value) = item?;
        let key = key.value();
        if !key.starts_with(prefix) || !f(key, value.value())? {
            break;
        }
    }
    Ok(())
}

/// Calls `f` on each entry whose key starts with `prefix` and sorts after
/// `prefix ‖ after` (after every key of the prefix when `after` is `None`, i.e.
/// from the first), in key order, until it returns `false`.
pub(super) fn scan_prefix_after(
    table: &impl RawTable,
    prefix: &[u8],
    after: Option<&[u8]>,
    mut f: impl FnMut(&[u8], &[u8]) -> StoreResult<bool>,
) -> StoreResult<()> {
    use std::ops::Bound;
    let start = after.map(|a| [prefix, a].concat());
    let lower = match &start {
        Some(k) => Bound::Excluded(k.as_slice()),
        None => Bound::Included(prefix),
    };
    for item in table.range::<&[u8]>((lower, Bound::Unbounded))? {
        let (key, value) = item?;
        let key = key.value();
        if !key.starts_with(prefix) || !f(key, value.value())? {
            break;
        }
    }
    Ok(())
}

/// Calls `f` on each entry with `lo <= key <= hi`, ascending or descending,
/// until it returns `false`.
pub(super) fn scan_range(
    table: &impl RawTable,
    lo: &[u8],
    hi: &[u8],
    direction: Direction,
    mut f: impl FnMut(&[u8], &[u8]) -> StoreResult<bool>,
) -> StoreResult<()> {
    if lo > hi {
        return Ok(());
    }
    let range = table.range(lo..=hi)?;
    let mut visit = |item: Result<_, redb::StorageError>| -> StoreResult<bool> {
        let (key, value): (redb::AccessGuard<&[u8]>, redb::AccessGuard<&[u8]>) = item?;
        f(key.value(), value.value())
    };
    match direction {
        Direction::Forward => {
            for item in range {
                if !visit(item)? {
                    break;
                }
            }
        }
        Direction::Backward => {
            for item in range.rev() {
                if !visit(item)? {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The `DeviceId` in the last 16 bytes of a key.
pub(super) fn trailing_device(key: &[u8]) -> StoreResult<DeviceId> {
    key.len()
        .checked_sub(16)
        .and_then(|at| key.get(at..))
        .and_then(|tail| <[u8; 16]>::try_from(tail).ok())
        .map(DeviceId)
        .ok_or_else(|| StoreError::Unavailable("corrupt record: key without a trailing device".into()))
}

/// A registered device.
pub(super) fn revocation(revoked: &impl RawTable, device: DeviceId) -> StoreResult<Option<crate::store::Revocation>> {
    let value: Option<layout::RevokedValue> = layout::get(revoked, &device.0)?;
    Ok(value.map(|v| crate::store::Revocation {
        device,
        by: v.by,
        revoked_ms: v.revoked_ms,
        signature: v.signature,
    }))
}

pub(super) fn device(devices: &impl RawTable, device: DeviceId) -> StoreResult<Option<DeviceRecord>> {
    Ok(get::<DeviceValue>(devices, &device.0)?.map(|v| DeviceRecord {
        device,
        user: v.user,
        key: v.key,
        registered_ms: v.registered_ms,
    }))
}

/// Up to `limit` of a user's devices after `after`, sorted by id (the key
/// order of `user_devices`).
pub(super) fn user_devices_page(
    user_devices: &impl RawTable,
    devices: &impl RawTable,
    user: &UserId,
    after: Option<DeviceId>,
    limit: usize,
) -> StoreResult<Vec<DeviceRecord>> {
    let prefix = layout::user_prefix(user)?;
    let mut ids = Vec::new();
    if limit == 0 {
        return Ok(Vec::new());
    }
    scan_prefix_after(
        user_devices,
        &prefix,
        after.as_ref().map(|d| d.0.as_slice()),
        |key, _| {
            ids.push(trailing_device(key)?);
            Ok(ids.len() < limit)
        },
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        // Both rows are written in one transaction, so a missing device is corruption.
        out.push(device(devices, id)?.ok_or_else(|| StoreError::Unavailable("user lists an unknown device".into()))?);
    }
    Ok(out)
}

/// The devices on a group's roster, sorted.
pub(super) fn roster(roster: &impl RawTable, group: &GroupKey) -> StoreResult<Vec<DeviceId>> {
    let mut out = Vec::new();
    scan_prefix(roster, group.as_bytes(), |key, _| {
        out.push(trailing_device(key)?);
        Ok(true)
    })?;
    Ok(out)
}

/// Builds the public record of a group.
pub(super) fn group_record(group: GroupId, meta: GroupMeta, roster: Vec<DeviceId>) -> GroupRecord {
    GroupRecord {
        group,
        epoch: meta.epoch,
        roster,
        policy: meta.policy,
        head_seq: meta.head_seq,
        first_seq: meta.first_seq,
        home_region: meta.home_region,
        created_ms: meta.created_ms,
    }
}

/// A group's stored metadata, or `NotFound`.
pub(super) fn group_meta(groups: &impl RawTable, group: &GroupKey) -> StoreResult<GroupMeta> {
    get(groups, group.as_bytes())?.ok_or_else(|| StoreError::NotFound("group".into()))
}

/// A device's membership record of one group.
pub(super) fn membership(
    members: &impl RawTable,
    device: DeviceId,
    group: &GroupId,
) -> StoreResult<Option<Membership>> {
    let key = GroupKey::new(group)?.member(device);
    Ok(get::<MemberValue>(members, &key)?.map(|m| to_membership(group.clone(), m)))
}

/// Up to `limit` memberships of a device (tombstones included) of groups
/// after `after`, in group-key order.
pub(super) fn memberships_page(
    members: &impl RawTable,
    device: DeviceId,
    after: Option<&GroupId>,
    limit: usize,
) -> StoreResult<Vec<Membership>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let after = after.map(GroupKey::new).transpose()?;
    scan_prefix_after(
        members,
        &device.0,
        after.as_ref().map(GroupKey::as_bytes),
        |key, value| {
            let group = GroupKey::decode(key.get(16..).unwrap_or_default())?;
            out.push(to_membership(group, layout::decode(value)?));
            Ok(out.len() < limit)
        },
    )?;
    Ok(out)
}

/// Up to `limit` group ids after `after`, in key order.
pub(super) fn list_groups(groups: &impl RawTable, after: Option<&GroupId>, limit: usize) -> StoreResult<Vec<GroupId>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let after = after.map(GroupKey::new).transpose()?;
    scan_prefix_after(groups, &[], after.as_ref().map(GroupKey::as_bytes), |key, _| {
        out.push(GroupKey::decode(key)?);
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// Keeps the payload budget of a read: whether an entry of `len` payload
/// bytes is taken (the first always is), and whether reading goes on after it.
struct Budget {
    max: usize,
    used: usize,
    taken: usize,
}

impl Budget {
    fn new(max: usize) -> Self {
        Budget { max, used: 0, taken: 0 }
    }

    /// Whether the entry fits; counts it if so.
    fn take(&mut self, len: usize) -> bool {
        if self.taken > 0 && self.used.saturating_add(len) > self.max {
            return false;
        }
        self.used = self.used.saturating_add(len);
        self.taken += 1;
        true
    }

    /// Whether another entry may be read (under `limit` and the budget not reached).
    fn more(&self, limit: usize) -> bool {
        self.taken < limit && self.used < self.max
    }
}

fn to_membership(group: GroupId, m: MemberValue) -> Membership {
    Membership {
        group,
        joined_seq: m.joined_seq,
        cursor: m.cursor,
        removed_seq: m.removed_seq,
    }
}

/// Builds a log entry from its key parts and stored value.
pub(super) fn log_entry(group: &GroupId, seq: u64, v: EntryValue) -> LogEntry {
    LogEntry {
        group: group.clone(),
        seq,
        sender: v.sender,
        client_msg_id: v.client_msg_id,
        kind: v.kind,
        epoch: v.epoch,
        timestamp_ms: v.timestamp_ms,
        payload: v.payload,
    }
}

/// Up to `limit` retained entries from `from_seq` in `direction`, within a
/// budget of `max_bytes` payload bytes (at least one entry).
pub(super) fn read_log(
    groups: &impl RawTable,
    log: &impl RawTable,
    group: &GroupId,
    from_seq: u64,
    direction: Direction,
    limit: usize,
    max_bytes: usize,
) -> StoreResult<Vec<LogEntry>> {
    let key = GroupKey::new(group)?;
    let meta = group_meta(groups, &key)?;
    if limit == 0 || meta.head_seq == 0 {
        return Ok(Vec::new());
    }
    // Clamp to what is retained; the range is empty when `from_seq` is past the
    // end in its direction.
    let (lo, hi) = match direction {
        Direction::Forward => (from_seq.max(meta.first_seq), meta.head_seq),
        Direction::Backward => (meta.first_seq, from_seq.min(meta.head_seq)),
    };
    let mut out = Vec::new();
    let mut budget = Budget::new(max_bytes);
    scan_range(log, &key.log(lo), &key.log(hi), direction, |k, v| {
        let entry = log_entry(group, trailing_u64(k)?, layout::decode(v)?);
        if !budget.take(entry.payload.len()) {
            return Ok(false);
        }
        out.push(entry);
        Ok(budget.more(limit))
    })?;
    Ok(out)
}

/// A device's inbox counters (zeros when it never had an inbox entry).
/// How many one-time key packages a device holds.
pub(super) fn key_package_count(kp_meta: &impl RawTable, device: DeviceId) -> StoreResult<u32> {
    let meta: super::layout::KeyPackageMeta = get(kp_meta, &device.0)?.unwrap_or_default();
    Ok(meta.count)
}

pub(super) fn inbox_meta(inbox_meta: &impl RawTable, device: DeviceId) -> StoreResult<InboxMeta> {
    Ok(get(inbox_meta, &device.0)?.unwrap_or_default())
}

/// The Welcome an inbox entry refers to: `Some(key in welcomes)` for an entry
/// of kind `Welcome` whose payload is not inline.
pub(super) fn welcome_ref(value: &InboxValue) -> StoreResult<Option<Vec<u8>>> {
    match &value.kind {
        InboxKind::Welcome { group, commit_seq } if value.payload.is_empty() => {
            Ok(Some(GroupKey::new(group)?.welcome(*commit_seq)))
        }
        _ => Ok(None),
    }
}

/// Up to `limit` inbox entries after `after_seq`, oldest first, Welcomes
/// resolved, within a budget of `max_bytes` payload bytes (at least one entry).
pub(super) fn inbox_read(
    inbox: &impl RawTable,
    welcomes: &impl RawTable,
    device: DeviceId,
    after_seq: u64,
    limit: usize,
    max_bytes: usize,
) -> StoreResult<Vec<InboxEntry>> {
    let mut out = Vec::new();
    let Some(from) = after_seq.checked_add(1) else {
        return Ok(out);
    };
    if limit == 0 {
        return Ok(out);
    }
    let (lo, hi) = (device_seq(device, from), device_seq(device, u64::MAX));
    let mut budget = Budget::new(max_bytes);
    scan_range(inbox, &lo, &hi, Direction::Forward, |k, v| {
        let mut value: InboxValue = layout::decode(v)?;
        if let Some(key) = welcome_ref(&value)? {
            // Missing only if the commit carried an empty Welcome (none stored).
            if let Some(w) = get::<WelcomeValue>(welcomes, &key)? {
                value.payload = w.payload;
            }
        }
        if !budget.take(value.payload.len()) {
            return Ok(false);
        }
        out.push(InboxEntry {
            seq: trailing_u64(k)?,
            sender: value.sender,
            kind: value.kind,
            timestamp_ms: value.timestamp_ms,
            payload: value.payload,
        });
        Ok(budget.more(limit))
    })?;
    Ok(out)
}
