//! The write operations, each run by the writer thread inside a batch's
//! transaction.
//!
//! Every operation is split in two: a *check* that only reads (it gets `&Tables`,
//! and redb needs `&mut` to write, so it cannot write) and enforces every rule,
//! then an *apply* that only writes what the check planned and can fail only if
//! redb does. A request that breaks a rule therefore writes nothing, and the
//! other requests of its batch are unaffected; [`checked`] glues the two halves.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use hush_protocol::frame::{ClaimedKeyPackage, InboxKind, MessageKind, Policy, Posters, RosterChange};
use hush_protocol::{DeviceId, GroupId};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::layout::{
    self, DeviceValue, EntryValue, GroupKey, GroupMeta, InboxValue, KeyPackageMeta, MemberValue, TokenMeta,
    TokenOutcome, TokenValue, WelcomeValue, contains, device_seq, encode, get, trailing_u64,
};
use super::reads::{self, scan_prefix, scan_range};
use super::writer::{Fatal, Tables};
use crate::store::{
    AppendOutcome, AppendRequest, DeviceRecord, GroupRecord, OpToken, PruneStep, RegisterOutcome, RetentionRule,
    StoreError, StoreResult,
};

/// What a check decided.
pub(super) enum Checked<P, T> {
    /// Write this plan.
    Write(P),
    /// Nothing to write; answer this.
    Answer(T),
}

/// Runs `check` (read-only), then `apply` with its plan. A rule error from the
/// check is the caller's answer; an error from `apply` aborts the batch.
fn checked<'t, P, T>(
    t: &mut Tables<'t>,
    check: impl FnOnce(&Tables<'t>) -> StoreResult<Checked<P, T>>,
    apply: impl FnOnce(&mut Tables<'t>, P) -> Result<T, Fatal>,
) -> Result<StoreResult<T>, Fatal> {
    match check(t) {
        Ok(Checked::Write(plan)) => {
            // The write-ahead log records only requests that wrote.
            t.wrote = true;
            apply(t, plan).map(Ok)
        }
        Ok(Checked::Answer(answer)) => Ok(Ok(answer)),
        Err(e) => Ok(Err(e)),
    }
}

fn put(table: &mut redb::Table<'_, &'static [u8], &'static [u8]>, key: &[u8], value: &[u8]) -> Result<(), Fatal> {
    table.insert(key, value)?;
    Ok(())
}

fn delete(table: &mut redb::Table<'_, &'static [u8], &'static [u8]>, key: &[u8]) -> Result<(), Fatal> {
    table.remove(key)?;
    Ok(())
}

fn is_admin(policy: &Policy, device: DeviceId) -> bool {
    policy.admins.is_empty() || policy.admins.contains(&device)
}

/// The group's metadata, if `by` is a member and an admin of it.
fn admin_meta(t: &Tables<'_>, key: &GroupKey, by: DeviceId, to: &str) -> StoreResult<GroupMeta> {
    let meta = reads::group_meta(&t.groups, key)?;
    if !contains(&t.roster, &key.roster(by))? {
        return Err(StoreError::NotMember);
    }
    if !is_admin(&meta.policy, by) {
        return Err(StoreError::Forbidden(format!("only an admin may {to}")));
    }
    Ok(meta)
}

fn require_device(t: &Tables<'_>, device: DeviceId) -> StoreResult<()> {
    if contains(&t.devices, &device.0)? {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("device {device}")))
    }
}

// -- devices -------------------------------------------------------------

pub(super) fn register_device(t: &mut Tables<'_>, record: DeviceRecord) -> Result<StoreResult<RegisterOutcome>, Fatal> {
    checked(
        t,
        |t| {
            let user_key = layout::user_prefix(&record.user)?;
            if let Some(existing) = reads::device(&t.devices, record.device)? {
                return Ok(Checked::Answer(RegisterOutcome::Existing(existing)));
            }
            let value = encode(&DeviceValue {
                user: record.user.clone(),
                key: record.key,
                registered_ms: record.registered_ms,
            })?;
            Ok(Checked::Write((user_key, value)))
        },
        |t, (mut user_key, value)| {
            put(&mut t.devices, &record.device.0, &value)?;
            user_key.extend_from_slice(&record.device.0);
            put(&mut t.user_devices, &user_key, &[])?;
            Ok(RegisterOutcome::Registered)
        },
    )
}

pub(super) fn revoke_device(t: &mut Tables<'_>, r: crate::store::Revocation) -> Result<StoreResult<()>, Fatal> {
    checked(
        t,
        |t| {
            if !contains(&t.devices, &r.device.0)? {
                return Err(StoreError::NotFound(format!("device {}", r.device)));
            }
            if contains(&t.revoked, &r.device.0)? {
                return Ok(Checked::Answer(()));
            }
            let (lo, hi) = (device_seq(r.device, 0), device_seq(r.device, u64::MAX));
            let packages: Vec<Vec<u8>> = t
                .kp_one_time
                .range(lo.as_slice()..=hi.as_slice())?
                .map(|kv| kv.map(|(k, _)| k.value().to_vec()))
                .collect::<Result<_, _>>()?;
            let value = encode(&layout::RevokedValue {
                by: r.by,
                revoked_ms: r.revoked_ms,
                signature: r.signature.clone(),
            })?;
            Ok(Checked::Write((packages, value)))
        },
        |t, (packages, value)| {
            put(&mut t.revoked, &r.device.0, &value)?;
            // Nobody can add it to a group again.
            for k in packages {
                delete(&mut t.kp_one_time, &k)?;
            }
            delete(&mut t.kp_last_resort, &r.device.0)?;
            delete(&mut t.kp_meta, &r.device.0)?;
            Ok(())
        },
    )
}

pub(super) fn set_last_seen(t: &mut Tables<'_>, device: DeviceId, ms: u64) -> Result<StoreResult<()>, Fatal> {
    checked(
        t,
        |t| {
            require_device(t, device)?;
            // Never moves back: two relays may report the same device out of order.
            let previous: u64 = get(&t.last_seen, &device.0)?.unwrap_or(0);
            Ok(if ms > previous {
                Checked::Write(encode(&ms)?)
            } else {
                Checked::Answer(())
            })
        },
        |t, value| put(&mut t.last_seen, &device.0, &value),
    )
}

// -- groups --------------------------------------------------------------

/// Arguments of [`create_group`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct NewGroup {
    pub group: GroupId,
    pub creator: DeviceId,
    pub policy: Policy,
    pub home_region: String,
    pub now_ms: u64,
}

pub(super) fn create_group(t: &mut Tables<'_>, new: NewGroup) -> Result<StoreResult<GroupRecord>, Fatal> {
    checked(
        t,
        |t| {
            let key = GroupKey::new(&new.group)?;
            require_device(t, new.creator)?;
            if contains(&t.groups, key.as_bytes())? {
                return Err(StoreError::AlreadyExists);
            }
            let meta = GroupMeta {
                epoch: 0,
                policy: new.policy.clone(),
                head_seq: 0,
                first_seq: 1,
                last_timestamp_ms: 0,
                home_region: new.home_region.clone(),
                created_ms: new.now_ms,
            };
            let value = encode(&meta)?;
            Ok(Checked::Write((key, meta, value)))
        },
        |t, (key, meta, value)| {
            put(&mut t.groups, key.as_bytes(), &value)?;
            put(&mut t.roster, &key.roster(new.creator), &[])?;
            let member = MemberValue {
                joined_seq: 0,
                cursor: 0,
                removed_seq: None,
            };
            put(&mut t.members, &key.member(new.creator), &encode(&member)?)?;
            Ok(reads::group_record(new.group.clone(), meta, vec![new.creator]))
        },
    )
}

pub(super) fn set_policy(
    t: &mut Tables<'_>,
    group: GroupId,
    by: DeviceId,
    policy: Policy,
) -> Result<StoreResult<()>, Fatal> {
    checked(
        t,
        |t| {
            let key = GroupKey::new(&group)?;
            let mut meta = admin_meta(t, &key, by, "change the policy")?;
            meta.policy = policy;
            Ok(Checked::Write((key, encode(&meta)?)))
        },
        |t, (key, value)| put(&mut t.groups, key.as_bytes(), &value),
    )
}

// -- the log -------------------------------------------------------------

struct AppendPlan {
    key: GroupKey,
    meta: GroupMeta,
    entry: EntryValue,
    entry_value: Vec<u8>,
    idempotency_key: Vec<u8>,
    add: Vec<DeviceId>,
    remove: Vec<DeviceId>,
    /// The Welcome, if the commit has one: stored once (`welcomes`), and the
    /// encoded inbox entry that refers to it, for every added device.
    welcome: Option<(Vec<u8>, Vec<u8>)>,
}

pub(super) fn void_commit(
    t: &mut Tables<'_>,
    group: GroupId,
    seq: u64,
    by: DeviceId,
) -> Result<StoreResult<()>, Fatal> {
    checked(
        t,
        |t| {
            let key = GroupKey::new(&group)?;
            let mut meta = admin_meta(t, &key, by, "void a commit")?;
            let Some(mut entry) = get::<EntryValue>(&t.log, &key.log(seq))? else {
                return Err(StoreError::NotFound(format!("entry {seq}")));
            };
            // One commit per epoch: the one at the epoch before the group's
            // is its newest.
            if entry.kind != MessageKind::Commit
                || entry.payload.is_empty()
                || entry.epoch.checked_add(1) != Some(meta.epoch)
            {
                return Err(StoreError::Invalid(format!(
                    "entry {seq} is not the group's newest commit"
                )));
            }
            let binding = hush_crypto::inspect::inspect(&entry.payload)
                .ok()
                .and_then(|h| hush_protocol::roster::parse_binding(&h.authenticated_data));
            let Some((add, remove)) = binding else {
                return Err(StoreError::Invalid(format!("commit {seq} carries no roster binding")));
            };
            let mut added = Vec::with_capacity(add.len());
            for device in add {
                let member: Option<MemberValue> = get(&t.members, &key.member(device))?;
                match member {
                    Some(m) if m.joined_seq == seq && m.removed_seq.is_none() => added.push((device, m)),
                    _ => {
                        return Err(StoreError::Invalid(format!(
                            "device {device} did not join at commit {seq}"
                        )));
                    }
                }
            }
            let mut removed = Vec::with_capacity(remove.len());
            for device in remove {
                let member: Option<MemberValue> = get(&t.members, &key.member(device))?;
                match member {
                    Some(m) if m.removed_seq == Some(seq) && !contains(&t.revoked, &device.0)? => {
                        removed.push((device, m));
                    }
                    Some(_) if contains(&t.revoked, &device.0)? => {
                        return Err(StoreError::Forbidden(format!("device {device} is revoked")));
                    }
                    _ => {
                        return Err(StoreError::Invalid(format!(
                            "device {device} was not removed by commit {seq}"
                        )));
                    }
                }
            }
            meta.epoch = entry.epoch;
            entry.payload = Bytes::new();
            Ok(Checked::Write((key, meta, entry, added, removed)))
        },
        |t, (key, meta, entry, added, removed)| {
            put(&mut t.log, &key.log(seq), &encode(&entry)?)?;
            for (device, mut m) in added {
                delete(&mut t.roster, &key.roster(device))?;
                m.removed_seq = Some(seq);
                put(&mut t.members, &key.member(device), &encode(&m)?)?;
            }
            for (device, mut m) in removed {
                put(&mut t.roster, &key.roster(device), &[])?;
                m.removed_seq = None;
                put(&mut t.members, &key.member(device), &encode(&m)?)?;
            }
            put(&mut t.groups, key.as_bytes(), &encode(&meta)?)
        },
    )
}

pub(super) fn redact(t: &mut Tables<'_>, group: GroupId, seq: u64, by: DeviceId) -> Result<StoreResult<()>, Fatal> {
    checked(
        t,
        |t| {
            let key = GroupKey::new(&group)?;
            // A non-member learns nothing of the log (not its length, not
            // which entries are commits): the same answer whatever it asks.
            if !contains(&t.roster, &key.roster(by))? {
                return Err(StoreError::NotMember);
            }
            let meta = reads::group_meta(&t.groups, &key)?;
            if seq < meta.first_seq {
                return Err(StoreError::Truncated {
                    first_available: meta.first_seq,
                });
            }
            let Some(mut entry) = get::<EntryValue>(&t.log, &key.log(seq))? else {
                return Err(StoreError::NotFound(format!("entry {seq}")));
            };
            if entry.kind != MessageKind::Application {
                return Err(StoreError::Invalid("only application entries can be redacted".into()));
            }
            let owner = reads::device(&t.devices, entry.sender)?.map(|d| d.user);
            let asker = reads::device(&t.devices, by)?.map(|d| d.user);
            if owner.is_none() || owner != asker {
                return Err(StoreError::Forbidden(
                    "only the sender's user may redact an entry".into(),
                ));
            }
            if entry.payload.is_empty() {
                return Ok(Checked::Answer(()));
            }
            entry.payload = Bytes::new();
            Ok(Checked::Write((key.log(seq), encode(&entry)?)))
        },
        |t, (k, v)| put(&mut t.log, &k, &v),
    )
}

pub(super) fn append(t: &mut Tables<'_>, req: AppendRequest) -> Result<StoreResult<AppendOutcome>, Fatal> {
    checked(
        t,
        |t| check_append(t, &req),
        |t, plan| apply_append(t, &req.group, plan),
    )
}

fn check_append(t: &Tables<'_>, req: &AppendRequest) -> StoreResult<Checked<AppendPlan, AppendOutcome>> {
    // 1. the group exists and the sender is on its roster.
    let key = GroupKey::new(&req.group)?;
    let mut meta = reads::group_meta(&t.groups, &key)?;
    if !contains(&t.roster, &key.roster(req.sender))? {
        return Err(StoreError::NotMember);
    }
    // 2. a retry answers with the original seq and stores nothing.
    let idempotency_key = key.idempotency(req.sender, req.client_msg_id);
    if let Some(seq) = get::<u64>(&t.idempotency, &idempotency_key)? {
        let original: Option<EntryValue> = get(&t.log, &key.log(seq))?;
        return match original {
            Some(entry) if entry.payload != req.payload => Err(StoreError::IdempotencyConflict { seq }),
            _ => Ok(Checked::Answer(AppendOutcome::Duplicate { seq, epoch: meta.epoch })),
        };
    }
    // 3. policy.
    let change = req
        .roster
        .as_ref()
        .filter(|r| !r.add.is_empty() || !r.remove.is_empty());
    if req.kind == MessageKind::Application
        && let Posters::Only(posters) = &meta.policy.posters
        && !posters.contains(&req.sender)
    {
        return Err(StoreError::Forbidden("this group is announce-only".into()));
    }
    if let Some(c) = change
        && meta.policy.admins_change_roster
        && !is_admin(&meta.policy, req.sender)
        && !own_devices_only(t, req.sender, c)?
        && !(c.add.is_empty() && asked_to_leave(t, &key, &meta, &c.remove)?)
    {
        return Err(StoreError::Forbidden(
            "only an admin may change the roster (others may add or remove only their own devices, and commit a member's leaving)"
                .into(),
        ));
    }
    // Admins that leave stop being admins; a device an admin adds of its
    // own user (a linked device) becomes one.
    if let Some(c) = change
        && !meta.policy.admins.is_empty()
    {
        let was_admin = meta.policy.admins.contains(&req.sender);
        meta.policy.admins.retain(|d| !c.remove.contains(d));
        if was_admin && own_devices_only(t, req.sender, c)? {
            for d in &c.add {
                if !meta.policy.admins.contains(d) {
                    meta.policy.admins.push(*d);
                }
            }
        }
    }
    // 4. epochs.
    if req.epoch > meta.epoch {
        return Err(StoreError::Invalid(format!(
            "epoch {} is ahead of the group's epoch {}",
            req.epoch, meta.epoch
        )));
    }
    // A message or proposal from more than MAX_PAST_EPOCHS back is stale:
    // members may already have deleted that epoch's keys, so it could never
    // be read. (A retry of one stored earlier was answered above.)
    if req.epoch < meta.epoch.saturating_sub(hush_protocol::limits::MAX_PAST_EPOCHS) {
        return Err(StoreError::StaleEpoch { current: meta.epoch });
    }
    if req.kind == MessageKind::Commit {
        // A commit only at the group's epoch: exactly one per epoch wins.
        if req.epoch != meta.epoch {
            return Err(StoreError::StaleEpoch { current: meta.epoch });
        }
        meta.epoch = meta
            .epoch
            .checked_add(1)
            .ok_or_else(|| StoreError::Invalid("epoch overflow".into()))?;
    }
    // 5. roster change.
    if req.roster.is_some() && req.kind != MessageKind::Commit {
        return Err(StoreError::Invalid("a roster change rides only with a commit".into()));
    }
    let (add, remove) = match change {
        Some(change) => check_roster_change(t, &key, &change.add, &change.remove)?,
        None => (Vec::new(), Vec::new()),
    };
    // 6. the entry.
    let seq = meta
        .head_seq
        .checked_add(1)
        .ok_or_else(|| StoreError::Invalid("log is full".into()))?;
    let entry = EntryValue {
        sender: req.sender,
        client_msg_id: req.client_msg_id,
        kind: req.kind,
        epoch: req.epoch,
        timestamp_ms: req.now_ms.max(meta.last_timestamp_ms),
        payload: req.payload.clone(),
    };
    let welcome = match change.and_then(|c| c.welcome.clone()) {
        Some(payload) if !add.is_empty() => {
            // The inbox entries carry no payload: it is the Welcome of
            // `(group, commit_seq)`, stored once with a count of the entries
            // that refer to it (an empty Welcome needs nothing stored).
            let blob = if payload.is_empty() {
                Vec::new()
            } else {
                encode(&WelcomeValue {
                    refs: add.len() as u64,
                    payload,
                })?
            };
            let entry = encode(&InboxValue {
                sender: req.sender,
                kind: InboxKind::Welcome {
                    group: req.group.clone(),
                    commit_seq: seq,
                },
                timestamp_ms: req.now_ms,
                payload: Bytes::new(),
            })?;
            Some((blob, entry))
        }
        _ => None,
    };
    meta.head_seq = seq;
    meta.last_timestamp_ms = entry.timestamp_ms;
    Ok(Checked::Write(AppendPlan {
        entry_value: encode(&entry)?,
        key,
        meta,
        entry,
        idempotency_key,
        add,
        remove,
        welcome,
    }))
}

/// Whether every device a roster change names is a device of the sender's
/// own user (linking a new device, removing a revoked one).
fn own_devices_only(t: &Tables<'_>, sender: DeviceId, change: &RosterChange) -> StoreResult<bool> {
    let Some(me) = reads::device(&t.devices, sender)? else {
        return Ok(false);
    };
    for &d in change.add.iter().chain(&change.remove) {
        if reads::device(&t.devices, d)?.map(|r| r.user) != Some(me.user.clone()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Entries looked at, newest first, for the leave proposals of a removal.
const LEAVE_SCAN: usize = 10_000;

/// Whether every device in `remove` asked to leave: sent a proposal since
/// the group's newest commit (so at its current epoch). A member leaves by
/// proposing its removal; whichever member commits it need not be an admin.
fn asked_to_leave(t: &Tables<'_>, key: &GroupKey, meta: &GroupMeta, remove: &[DeviceId]) -> StoreResult<bool> {
    let mut pending: BTreeSet<DeviceId> = remove.iter().copied().collect();
    if pending.is_empty() || meta.head_seq < meta.first_seq {
        return Ok(false);
    }
    let (lo, hi) = (key.log(meta.first_seq), key.log(meta.head_seq));
    for item in t.log.range(lo.as_slice()..=hi.as_slice())?.rev().take(LEAVE_SCAN) {
        let (_, v) = item?;
        let e: EntryValue = layout::decode(v.value())?;
        if e.kind == MessageKind::Commit {
            break;
        }
        if e.kind == MessageKind::Proposal && e.epoch == meta.epoch {
            pending.remove(&e.sender);
            if pending.is_empty() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Added devices must be registered and not members, removed ones members;
/// neither list may repeat a device.
fn check_roster_change(
    t: &Tables<'_>,
    key: &GroupKey,
    add: &[DeviceId],
    remove: &[DeviceId],
) -> StoreResult<(Vec<DeviceId>, Vec<DeviceId>)> {
    let mut seen = BTreeSet::new();
    for &device in add {
        if !seen.insert(device) {
            return Err(StoreError::Invalid(format!("device {device} listed twice")));
        }
        if !contains(&t.devices, &device.0)? {
            return Err(StoreError::Invalid(format!("added device {device} is not registered")));
        }
        if contains(&t.revoked, &device.0)? {
            return Err(StoreError::Forbidden(format!("added device {device} is revoked")));
        }
        if contains(&t.roster, &key.roster(device))? {
            return Err(StoreError::Invalid(format!(
                "added device {device} is already a member"
            )));
        }
    }
    for &device in remove {
        if !seen.insert(device) {
            return Err(StoreError::Invalid(format!("device {device} listed twice")));
        }
        if !contains(&t.roster, &key.roster(device))? {
            return Err(StoreError::Invalid(format!("removed device {device} is not a member")));
        }
    }
    Ok((add.to_vec(), remove.to_vec()))
}

fn apply_append(t: &mut Tables<'_>, group: &GroupId, plan: AppendPlan) -> Result<AppendOutcome, Fatal> {
    let AppendPlan {
        key,
        meta,
        entry,
        entry_value,
        idempotency_key,
        add,
        remove,
        welcome,
    } = plan;
    let seq = meta.head_seq;
    put(&mut t.log, &key.log(seq), &entry_value)?;
    put(&mut t.idempotency, &idempotency_key, &encode(&seq)?)?;
    if let Some((blob, _)) = &welcome
        && !blob.is_empty()
    {
        put(&mut t.welcomes, &key.welcome(seq), blob)?;
    }
    let mut added = Vec::with_capacity(add.len());
    for device in add {
        put(&mut t.roster, &key.roster(device), &[])?;
        // Re-adding a device replaces its tombstone.
        let member = MemberValue {
            joined_seq: seq,
            cursor: seq,
            removed_seq: None,
        };
        put(&mut t.members, &key.member(device), &encode(&member)?)?;
        let inbox_seq = match &welcome {
            Some((_, entry)) => push_inbox(t, device, entry)?,
            None => 0,
        };
        added.push((device, inbox_seq));
    }
    for &device in &remove {
        delete(&mut t.roster, &key.roster(device))?;
        let member_key = key.member(device);
        let mut member: MemberValue = get(&t.members, &member_key)?.unwrap_or(MemberValue {
            joined_seq: 0,
            cursor: 0,
            removed_seq: None,
        });
        member.removed_seq = Some(seq);
        put(&mut t.members, &member_key, &encode(&member)?)?;
    }
    put(&mut t.groups, key.as_bytes(), &encode(&meta)?)?;
    Ok(AppendOutcome::Appended {
        entry: reads::log_entry(group, seq, entry),
        epoch: meta.epoch,
        added,
        removed: remove,
    })
}

pub(super) fn advance_cursors(
    t: &mut Tables<'_>,
    cursors: Vec<(DeviceId, GroupId, u64)>,
) -> Result<StoreResult<()>, Fatal> {
    checked(
        t,
        |t| {
            // One update per membership, to the highest valid cursor asked for.
            let mut updates: BTreeMap<Vec<u8>, MemberValue> = BTreeMap::new();
            for (device, group, seq) in cursors {
                let Ok(key) = GroupKey::new(&group) else { continue };
                let member_key = key.member(device);
                let current = match updates.get(&member_key) {
                    Some(m) => Some(m.clone()),
                    None => get::<MemberValue>(&t.members, &member_key)?,
                };
                let Some(mut member) = current else {
                    continue;
                };
                // A cursor past the head would let retention delete entries the
                // device has not been sent yet. A removed device's moves up to
                // the removing commit (acknowledging it ends its replays).
                let limit = match member.removed_seq {
                    Some(removed) => removed,
                    None => reads::group_meta(&t.groups, &key)?.head_seq,
                };
                let cursor = seq.min(limit);
                if cursor > member.cursor {
                    member.cursor = cursor;
                    updates.insert(member_key, member);
                }
            }
            let mut plan = Vec::with_capacity(updates.len());
            for (key, member) in updates {
                plan.push((key, encode(&member)?));
            }
            Ok(Checked::Write(plan))
        },
        |t, plan| {
            for (key, value) in plan {
                put(&mut t.members, &key, &value)?;
            }
            Ok(())
        },
    )
}

// -- key packages --------------------------------------------------------

pub(super) fn upload_key_packages(
    t: &mut Tables<'_>,
    token: Option<Tokened>,
    device: DeviceId,
    one_time: Vec<Bytes>,
    last_resort: Option<Bytes>,
) -> Result<StoreResult<(u32, bool)>, Fatal> {
    checked(
        t,
        |t| {
            if let Some(TokenOutcome::Upload(count, last)) = remembered(t, token.as_ref(), "upload")? {
                return Ok(Checked::Answer((count, last)));
            }
            require_device(t, device)?;
            let meta: KeyPackageMeta = get(&t.kp_meta, &device.0)?.unwrap_or_default();
            let has_last_resort = last_resort.is_some() || contains(&t.kp_last_resort, &device.0)?;
            Ok(Checked::Write((meta, has_last_resort)))
        },
        |t, (mut meta, has_last_resort)| {
            for package in &one_time {
                put(&mut t.kp_one_time, &device_seq(device, meta.next), package)?;
                meta.next = meta.next.saturating_add(1);
                meta.count = meta.count.saturating_add(1);
            }
            if let Some(package) = &last_resort {
                put(&mut t.kp_last_resort, &device.0, package)?;
            }
            put(&mut t.kp_meta, &device.0, &encode(&meta)?)?;
            remember(t, token.as_ref(), &TokenOutcome::Upload(meta.count, has_last_resort))?;
            Ok((meta.count, has_last_resort))
        },
    )
}

struct Claim {
    device: DeviceId,
    /// The one-time package's key, which the claim consumes; `None` for the
    /// last-resort one, which stays.
    consumed: Option<[u8; 24]>,
    package: Bytes,
}

pub(super) fn claim_key_packages(
    t: &mut Tables<'_>,
    token: Option<Tokened>,
    devices: Vec<(DeviceId, bool)>,
) -> Result<StoreResult<Vec<ClaimedKeyPackage>>, Fatal> {
    checked(
        t,
        |t| {
            if let Some(TokenOutcome::Claim(claimed)) = remembered(t, token.as_ref(), "claim")? {
                return Ok(Checked::Answer(claimed));
            }
            let mut seen = BTreeSet::new();
            let mut claims = Vec::new();
            // A device listed twice gets one package: a second would be wasted.
            for (device, one_time) in devices.into_iter().filter(|(d, _)| seen.insert(*d)) {
                let (lo, hi) = (device_seq(device, 0), device_seq(device, u64::MAX));
                let oldest = match one_time {
                    true => t.kp_one_time.range(lo.as_slice()..=hi.as_slice())?.next().transpose()?,
                    false => None,
                };
                if let Some((key, value)) = oldest {
                    let consumed = <[u8; 24]>::try_from(key.value())
                        .map_err(|_| StoreError::Unavailable("corrupt record: key package key".into()))?;
                    claims.push(Claim {
                        device,
                        consumed: Some(consumed),
                        package: Bytes::copy_from_slice(value.value()),
                    });
                } else if let Some(value) = t.kp_last_resort.get(device.0.as_slice())? {
                    claims.push(Claim {
                        device,
                        consumed: None,
                        package: Bytes::copy_from_slice(value.value()),
                    });
                }
            }
            Ok(Checked::Write(claims))
        },
        |t, claims| {
            let mut out = Vec::with_capacity(claims.len());
            for claim in claims {
                if let Some(key) = &claim.consumed {
                    delete(&mut t.kp_one_time, key)?;
                    let mut meta: KeyPackageMeta = get(&t.kp_meta, &claim.device.0)?.unwrap_or_default();
                    meta.count = meta.count.saturating_sub(1);
                    put(&mut t.kp_meta, &claim.device.0, &encode(&meta)?)?;
                }
                out.push(ClaimedKeyPackage {
                    device: claim.device,
                    key_package: claim.package,
                    last_resort: claim.consumed.is_none(),
                });
            }
            remember(t, token.as_ref(), &TokenOutcome::Claim(out.clone()))?;
            Ok(out)
        },
    )
}

// -- inboxes -------------------------------------------------------------

/// Appends an encoded entry to a device's inbox; returns its seq.
fn push_inbox(t: &mut Tables<'_>, device: DeviceId, value: &[u8]) -> Result<u64, Fatal> {
    let mut meta = reads::inbox_meta(&t.inbox_meta, device)?;
    meta.head = meta.head.saturating_add(1);
    put(&mut t.inbox, &device_seq(device, meta.head), value)?;
    put(&mut t.inbox_meta, &device.0, &encode(&meta)?)?;
    Ok(meta.head)
}

/// Arguments of [`inbox_push`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct NewInboxEntry {
    pub device: DeviceId,
    pub sender: DeviceId,
    pub kind: InboxKind,
    pub payload: Bytes,
    pub now_ms: u64,
}

pub(super) fn inbox_push(
    t: &mut Tables<'_>,
    token: Option<Tokened>,
    new: NewInboxEntry,
) -> Result<StoreResult<u64>, Fatal> {
    checked(
        t,
        |t| {
            if let Some(TokenOutcome::InboxPush(seq)) = remembered(t, token.as_ref(), "inbox push")? {
                return Ok(Checked::Answer(seq));
            }
            require_device(t, new.device)?;
            let value = encode(&InboxValue {
                sender: new.sender,
                kind: new.kind,
                timestamp_ms: new.now_ms,
                payload: new.payload,
            })?;
            Ok(Checked::Write(value))
        },
        |t, value| {
            let seq = push_inbox(t, new.device, &value)?;
            remember(t, token.as_ref(), &TokenOutcome::InboxPush(seq))?;
            Ok(seq)
        },
    )
}

pub(super) fn inbox_ack(t: &mut Tables<'_>, device: DeviceId, seq: u64) -> Result<StoreResult<u64>, Fatal> {
    checked(
        t,
        |t| {
            let meta = reads::inbox_meta(&t.inbox_meta, device)?;
            // Acknowledging past the head would swallow entries not yet pushed.
            let acked = seq.min(meta.head);
            if acked <= meta.acked {
                return Ok(Checked::Answer(meta.acked));
            }
            // The Welcomes the deleted entries refer to, and how many times.
            let mut released: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
            let (lo, hi) = (device_seq(device, meta.acked), device_seq(device, acked));
            scan_range(&t.inbox, &lo, &hi, hush_protocol::frame::Direction::Forward, |_, v| {
                if let Some(key) = reads::welcome_ref(&layout::decode::<InboxValue>(v)?)? {
                    *released.entry(key).or_default() += 1;
                }
                Ok(true)
            })?;
            let mut welcomes = Vec::with_capacity(released.len());
            for (key, n) in released {
                if let Some(mut w) = get::<WelcomeValue>(&t.welcomes, &key)? {
                    w.refs = w.refs.saturating_sub(n);
                    let value = if w.refs == 0 { None } else { Some(encode(&w)?) };
                    welcomes.push((key, value));
                }
            }
            Ok(Checked::Write((meta, acked, welcomes)))
        },
        |t, (mut meta, acked, welcomes)| {
            let (lo, hi) = (device_seq(device, meta.acked), device_seq(device, acked));
            t.inbox.retain_in(lo.as_slice()..=hi.as_slice(), |_, _| false)?;
            for (key, value) in welcomes {
                match value {
                    Some(v) => put(&mut t.welcomes, &key, &v)?,
                    // The last inbox entry that referred to it is gone.
                    None => delete(&mut t.welcomes, &key)?,
                }
            }
            meta.acked = acked;
            put(&mut t.inbox_meta, &device.0, &encode(&meta)?)?;
            Ok(acked)
        },
    )
}

// -- retention -----------------------------------------------------------

/// What one retention step deletes from one group.
struct GroupPrune {
    key: GroupKey,
    meta: GroupMeta,
    /// Deleted entries' seqs run from the old `first_seq` to `meta.first_seq - 1`.
    old_first: u64,
    idempotency_keys: Vec<Vec<u8>>,
}

/// Arguments of the retention pass of layout 2, which pruned every group in
/// one request. Kept only so that a log written by it replays.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct PruneRequest {
    pub now_ms: u64,
    pub max_age_ms: u64,
    pub delete_acknowledged: bool,
}

/// Replays a layout-2 retention pass: every group, unbounded.
pub(super) fn prune_every_group(t: &mut Tables<'_>, req: PruneRequest) -> Result<StoreResult<PruneStep>, Fatal> {
    let rule = RetentionRule {
        now_ms: req.now_ms,
        max_age_ms: req.max_age_ms,
        delete_acknowledged: req.delete_acknowledged,
    };
    let mut groups = Vec::new();
    if let Err(e) = scan_prefix(&t.groups, &[], |key, _| {
        groups.push(GroupKey::decode(key)?);
        Ok(true)
    }) {
        return Ok(Err(e));
    }
    let mut total = PruneStep::default();
    for group in groups {
        if let Ok(step) = prune_group(t, group, rule, usize::MAX)? {
            total.acknowledged += step.acknowledged;
            total.expired += step.expired;
        }
    }
    Ok(Ok(total))
}

/// One retention step of one group: deletes at most `max_entries` of the
/// prefix `rule` allows.
pub(super) fn prune_group(
    t: &mut Tables<'_>,
    group: GroupId,
    rule: RetentionRule,
    max_entries: usize,
) -> Result<StoreResult<PruneStep>, Fatal> {
    checked(
        t,
        |t| {
            let key = GroupKey::new(&group)?;
            let meta = reads::group_meta(&t.groups, &key)?;
            Ok(match check_prune_group(t, key, meta, &rule, max_entries.max(1))? {
                (Some(plan), step) => Checked::Write((plan, step)),
                (None, step) => Checked::Answer(step),
            })
        },
        |t, (p, step)| {
            let (lo, hi) = (p.key.log(p.old_first), p.key.log(p.meta.first_seq.saturating_sub(1)));
            t.log.retain_in(lo.as_slice()..=hi.as_slice(), |_, _| false)?;
            for key in &p.idempotency_keys {
                delete(&mut t.idempotency, key)?;
            }
            put(&mut t.groups, p.key.as_bytes(), &encode(&p.meta)?)?;
            Ok(step)
        },
    )
}

/// Plans the deletion of the first `max_entries` of one group's prefix:
/// everything up to the lowest cursor of the roster (if acknowledged entries
/// go) and everything older than the retention period, whichever reaches
/// further.
fn check_prune_group(
    t: &Tables<'_>,
    key: GroupKey,
    mut meta: GroupMeta,
    rule: &RetentionRule,
    max_entries: usize,
) -> StoreResult<(Option<GroupPrune>, PruneStep)> {
    let mut step = PruneStep::default();
    let old_first = meta.first_seq;
    if old_first > meta.head_seq {
        return Ok((None, step));
    }
    let acked_upto = if rule.delete_acknowledged {
        lowest_cursor(t, &key, meta.head_seq)?
    } else {
        0
    };
    // Timestamps never go back within a group, so expired entries are a prefix.
    let cutoff = rule.now_ms.saturating_sub(rule.max_age_ms);
    let deletable = |seq: u64, entry: &EntryValue| seq <= acked_upto || entry.timestamp_ms < cutoff;
    let last = old_first
        .saturating_add(u64::try_from(max_entries).unwrap_or(u64::MAX) - 1)
        .min(meta.head_seq);
    let mut upto = old_first - 1;
    let mut idempotency_keys = Vec::new();
    scan_range(
        &t.log,
        &key.log(old_first),
        &key.log(last),
        hush_protocol::frame::Direction::Forward,
        |k, v| {
            let seq = trailing_u64(k)?;
            let entry: EntryValue = layout::decode(v)?;
            if !deletable(seq, &entry) {
                return Ok(false);
            }
            upto = seq;
            if seq <= acked_upto {
                step.acknowledged += 1;
            } else {
                step.expired += 1;
            }
            idempotency_keys.push(key.idempotency(entry.sender, entry.client_msg_id));
            Ok(true)
        },
    )?;
    if upto < old_first {
        return Ok((None, step));
    }
    // Stopped at the bound: is the next entry deletable too?
    if upto == last && last < meta.head_seq {
        let next = last + 1;
        if let Some(entry) = get::<EntryValue>(&t.log, &key.log(next))? {
            step.more = deletable(next, &entry);
        }
    }
    meta.first_seq = upto.saturating_add(1);
    step.first_seq = Some(meta.first_seq);
    Ok((
        Some(GroupPrune {
            key,
            meta,
            old_first,
            idempotency_keys,
        }),
        step,
    ))
}

/// The lowest cursor of the roster's devices (`head` for an empty roster: no one
/// is left to deliver to). Reads the whole roster: bounded by the group's size.
fn lowest_cursor(t: &Tables<'_>, key: &GroupKey, head: u64) -> StoreResult<u64> {
    let mut lowest = head;
    for device in reads::roster(&t.roster, key)? {
        let cursor = get::<MemberValue>(&t.members, &key.member(device))?.map_or(0, |m| m.cursor);
        lowest = lowest.min(cursor);
    }
    Ok(lowest)
}

// -- operation tokens ----------------------------------------------------

/// An operation token with the time the store took the call (the writer's
/// clock, logged with the op so that a replay forgets exactly what the first
/// run forgot).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(super) struct Tokened {
    pub token: OpToken,
    pub now_ms: u64,
}

/// The outcome remembered for `token`, if any. A token remembered for
/// another kind of operation is refused (`Invalid`): the caller reused it.
fn remembered(t: &Tables<'_>, token: Option<&Tokened>, what: &str) -> StoreResult<Option<TokenOutcome>> {
    let Some(tokened) = token else { return Ok(None) };
    let Some(value) = get::<TokenValue>(&t.op_tokens, &tokened.token.0)? else {
        return Ok(None);
    };
    let same_kind = matches!(
        (&value.outcome, what),
        (TokenOutcome::InboxPush(_), "inbox push")
            | (TokenOutcome::Upload(..), "upload")
            | (TokenOutcome::Claim(_), "claim")
    );
    if !same_kind {
        return Err(StoreError::Invalid(format!(
            "operation token {:?} was used for another operation than this {what}",
            tokened.token
        )));
    }
    Ok(Some(value.outcome))
}

/// Oldest tokens looked at per remembered one: forgetting keeps pace with
/// remembering (one in, up to this many out) without a large step.
const FORGET_PER_WRITE: usize = 4;

/// Remembers `outcome` for `token`, and forgets the oldest tokens that are
/// past the time bound or over the count bound.
fn remember(t: &mut Tables<'_>, token: Option<&Tokened>, outcome: &TokenOutcome) -> Result<(), Fatal> {
    let Some(tokened) = token else { return Ok(()) };
    let mut meta: TokenMeta = get(&t.meta, layout::TOKEN_META_KEY)?.unwrap_or_default();
    let value = TokenValue {
        n: meta.next,
        outcome: outcome.clone(),
    };
    put(&mut t.op_tokens, &tokened.token.0, &encode(&value)?)?;
    put(
        &mut t.op_token_order,
        &layout::token_order(meta.next, &tokened.token),
        &encode(&tokened.now_ms)?,
    )?;
    meta.next = meta.next.saturating_add(1);
    meta.count = meta.count.saturating_add(1);
    let bounds = t.token_bounds;
    let mut forget = Vec::new();
    for item in t.op_token_order.iter()?.take(FORGET_PER_WRITE) {
        let (k, v) = item?;
        let at_ms: u64 = layout::decode(v.value())?;
        let over = meta.count.saturating_sub(forget.len() as u64) > bounds.max;
        let expired = at_ms.saturating_add(bounds.ttl_ms) < tokened.now_ms;
        if !over && !expired {
            break;
        }
        forget.push(k.value().to_vec());
    }
    for key in forget {
        delete(&mut t.op_token_order, &key)?;
        if let Some(token) = key.get(8..) {
            delete(&mut t.op_tokens, token)?;
        }
        meta.count = meta.count.saturating_sub(1);
    }
    put(&mut t.meta, layout::TOKEN_META_KEY, &encode(&meta)?)?;
    Ok(())
}
