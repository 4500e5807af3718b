//! Reads, written once over any readable table so that the read methods (in a
//! read transaction) and the checks of writes (inside the writer's transaction,
//! seeing the batch's earlier writes) share them.

use hush_protocol::frame::{Direction, InboxEntry, LogEntry};
use hush_protocol::{DeviceId, GroupId, UserId};
use redb::ReadableTable;

use super::layout::{
    self, DeviceValue, EntryValue, GroupKey, GroupMeta, InboxMeta, InboxValue, MemberValue, device_seq, get,
    trailing_u64,
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
        .ok_or_else(|| StoreError::Backend("corrupt record: key without a trailing device".into()))
}

/// A registered device.
pub(super) fn device(devices: &impl RawTable, device: DeviceId) -> StoreResult<Option<DeviceRecord>> {
    Ok(get::<DeviceValue>(devices, &device.0)?.map(|v| DeviceRecord {
        device,
        user: v.user,
        key: v.key,
        registered_ms: v.registered_ms,
    }))
}

/// A user's devices, sorted by id (the key order of `user_devices`).
pub(super) fn user_devices(
    user_devices: &impl RawTable,
    devices: &impl RawTable,
    user: &UserId,
) -> StoreResult<Vec<DeviceRecord>> {
    let prefix = layout::user_prefix(user)?;
    let mut ids = Vec::new();
    scan_prefix(user_devices, &prefix, |key, _| {
        ids.push(trailing_device(key)?);
        Ok(true)
    })?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        // Both rows are written in one transaction, so a missing device is corruption.
        out.push(device(devices, id)?.ok_or_else(|| StoreError::Backend("user lists an unknown device".into()))?);
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

/// Every membership of a device, tombstones included, in group-key order.
pub(super) fn memberships(members: &impl RawTable, device: DeviceId) -> StoreResult<Vec<Membership>> {
    let mut out = Vec::new();
    scan_prefix(members, &device.0, |key, value| {
        let group = GroupKey::decode(key.get(16..).unwrap_or_default())?;
        out.push(to_membership(group, layout::decode(value)?));
        Ok(true)
    })?;
    Ok(out)
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

/// Up to `limit` retained entries from `from_seq` in `direction`.
pub(super) fn read_log(
    groups: &impl RawTable,
    log: &impl RawTable,
    group: &GroupId,
    from_seq: u64,
    direction: Direction,
    limit: usize,
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
    scan_range(log, &key.log(lo), &key.log(hi), direction, |k, v| {
        out.push(log_entry(group, trailing_u64(k)?, layout::decode(v)?));
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// A device's inbox counters (zeros when it never had an inbox entry).
pub(super) fn inbox_meta(inbox_meta: &impl RawTable, device: DeviceId) -> StoreResult<InboxMeta> {
    Ok(get(inbox_meta, &device.0)?.unwrap_or_default())
}

/// Up to `limit` inbox entries after `after_seq`, oldest first.
pub(super) fn inbox_read(
    inbox: &impl RawTable,
    device: DeviceId,
    after_seq: u64,
    limit: usize,
) -> StoreResult<Vec<InboxEntry>> {
    let mut out = Vec::new();
    let Some(from) = after_seq.checked_add(1) else {
        return Ok(out);
    };
    if limit == 0 {
        return Ok(out);
    }
    let (lo, hi) = (device_seq(device, from), device_seq(device, u64::MAX));
    scan_range(inbox, &lo, &hi, Direction::Forward, |k, v| {
        let value: InboxValue = layout::decode(v)?;
        out.push(InboxEntry {
            seq: trailing_u64(k)?,
            sender: value.sender,
            kind: value.kind,
            timestamp_ms: value.timestamp_ms,
            payload: value.payload,
        });
        Ok(out.len() < limit)
    })?;
    Ok(out)
}
