//! The delivery service's requests: one function per operation, each checking
//! the caller's rights and turning store outcomes into replies.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hush_protocol::frame::{
    Direction, GroupInfo, GroupStatus, InboxKind, MessageKind, Policy, Posters, PresenceUpdate, RelayFrame, Reply,
    Request, Send,
};
use hush_protocol::limits::{
    MAX_HISTORY_PAGE, MAX_KEY_PACKAGE_LEN, MAX_KEY_PACKAGES_PER_UPLOAD, MAX_PAYLOAD_LEN, MAX_ROSTER_CHANGE,
};
use hush_protocol::{DeviceId, ErrorCode, ErrorDetail, GroupId, UserId, WireError};
use tokio::sync::OwnedSemaphorePermit;

use super::{Closer, Exit, Queued, encode, mls_check, rate_check};
use crate::bus::BusEvent;
use crate::grouplog::ConnHandle;
use crate::queue::{self, SendTimeoutError};
use crate::state::{Shared, now_ms};
use crate::store::{AppendOutcome, AppendRequest, GroupRecord, KeyPackageClaim, Membership, OpToken, retrying};
use hush_protocol::frame::CloseReason;

/// A connection's request context.
#[derive(Clone)]
pub struct Ctx {
    /// Relay state.
    pub shared: Arc<Shared>,
    /// The connection.
    pub conn: Arc<ConnHandle>,
    /// Response queue (drained by the outbound task).
    pub out: queue::Sender<Bytes>,
    /// Ends the connection.
    pub closer: Closer,
}

type Completion = Pin<Box<dyn Future<Output = Result<(), ()>> + std::marker::Send>>;

/// Handles requests until the queue closes.
///
/// `Send`s are pipelined: each is checked and queued for its append in
/// arrival order (so one connection's sends get seqs in the order they were
/// sent, and consecutive sends share durable commits), and up to
/// `limits.request_queue` of them wait for durability at once, each answered
/// as soon as it is durable. Every other request waits for the sends before
/// it and is handled alone, as before pipelining, so a client that pipelines
/// a `CreateGroup` and the first `Send` into it still sees them in order.
///
/// Each request is handled in its own boxed future: an idle session then keeps
/// only this loop's wait on the queue.
pub async fn request_loop(ctx: Ctx, mut rx: queue::Receiver<Queued>) {
    let depth = ctx.shared.config.limits.request_queue.max(1);
    let mut inflight: FuturesUnordered<Completion> = FuturesUnordered::new();
    loop {
        let next = tokio::select! {
            biased;
            Some(r) = inflight.next(), if !inflight.is_empty() => {
                if r.is_err() {
                    break;
                }
                continue;
            }
            q = rx.recv(), if inflight.len() < depth => q,
        };
        let Some((id, op, permit)) = next else { break };
        match *op {
            Request::Send(send) => {
                // Over its rate, a device's send waits for budget instead of
                // being refused: a refusal in the middle of a pipeline would
                // let the sends behind it overtake it when it is retried
                // (PROTOCOL.md 7.7). Meanwhile nothing more is read from the
                // connection, and the sends in flight are still answered.
                while let Err(ms) = ctx.shared.rate.check(ctx.conn.device, std::time::Instant::now()) {
                    let pause = tokio::time::sleep(std::time::Duration::from_millis(u64::from(ms.max(1))));
                    tokio::pin!(pause);
                    loop {
                        tokio::select! {
                            biased;
                            Some(r) = inflight.next(), if !inflight.is_empty() => {
                                if r.is_err() {
                                    return;
                                }
                            }
                            _ = &mut pause => break,
                        }
                    }
                }
                let done = Box::pin(start_send(&ctx, id, send, permit)).await;
                inflight.push(done);
            }
            op => {
                while let Some(r) = inflight.next().await {
                    if r.is_err() {
                        return;
                    }
                }
                if Box::pin(respond(&ctx, id, op)).await.is_err() {
                    return;
                }
                drop(permit);
            }
        }
    }
    while inflight.next().await.is_some() {}
}

/// Checks a send (its rate was checked by the caller) and queues its
/// append; returns what finishes it: waiting for durability and queueing the
/// response.
async fn start_send(ctx: &Ctx, id: u32, send: Send, permit: OwnedSemaphorePermit) -> Completion {
    let queued = async {
        let req = check_send(ctx, send)?;
        Ok::<_, WireError>(ctx.shared.log.append(req).await?)
    }
    .await;
    let ctx = ctx.clone();
    Box::pin(async move {
        let result = match queued {
            Ok(ticket) => ticket.await.map(sent).map_err(WireError::from),
            Err(e) => Err(e),
        };
        let r = queue_response(&ctx, id, result).await;
        drop(permit);
        r
    })
}

fn sent(outcome: AppendOutcome) -> Reply {
    match outcome {
        AppendOutcome::Duplicate { seq, epoch } => Reply::Sent {
            seq,
            epoch,
            duplicate: true,
        },
        AppendOutcome::Appended { entry, epoch, .. } => Reply::Sent {
            seq: entry.seq,
            epoch,
            duplicate: false,
        },
    }
}

/// Handles one request and queues its response; an error means the
/// connection is ending.
async fn respond(ctx: &Ctx, id: u32, op: Request) -> Result<(), ()> {
    let result = handle(ctx, op).await;
    queue_response(ctx, id, result).await
}

async fn queue_response(ctx: &Ctx, id: u32, result: Result<Reply, WireError>) -> Result<(), ()> {
    let stall = ctx.shared.config.limits.slow_consumer_timeout();
    if let Err(e) = &result
        && matches!(e.code, ErrorCode::Internal | ErrorCode::Unavailable)
    {
        tracing::warn!(device = %ctx.conn.device, error = %e, "request failed");
    }
    // A response that cannot be encoded (a bug) still gets an answer.
    let frame = match encode(&RelayFrame::Response { id, result }) {
        Some(f) => f,
        None => {
            let e = WireError::new(ErrorCode::Internal, "response could not be encoded");
            let Some(f) = encode(&RelayFrame::Response { id, result: Err(e) }) else {
                return Ok(());
            };
            f
        }
    };
    match ctx.out.send_timeout(frame, stall).await {
        Ok(()) => Ok(()),
        Err(SendTimeoutError::Timeout(_)) => {
            ctx.closer.close(Exit::Close(
                CloseReason::SlowConsumer,
                "client is not reading its responses".into(),
            ));
            Err(())
        }
        Err(SendTimeoutError::Closed(_)) => Err(()),
    }
}

/// Payload bytes per history page, leaving room for framing within `MAX_FRAME_LEN`.
const HISTORY_PAGE_BYTES: usize = hush_protocol::limits::MAX_FRAME_LEN - 64 * 1024;

fn invalid(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::InvalidRequest, msg)
}

async fn handle(ctx: &Ctx, op: Request) -> Result<Reply, WireError> {
    rate_check(&ctx.shared, ctx.conn.device)?;
    match op {
        Request::CreateGroup { group, policy } => create_group(ctx, group, policy).await,
        Request::Send(send) => {
            let ticket = ctx.shared.log.append(check_send(ctx, send)?).await?;
            Ok(sent(ticket.await?))
        }
        Request::GetGroup { group } => get_group(ctx, group).await,
        Request::SetPolicy { group, policy } => {
            check_policy(&policy)?;
            ctx.shared.log.set_policy(&group, ctx.conn.device, policy).await?;
            Ok(Reply::Done)
        }
        Request::History {
            group,
            from_seq,
            direction,
            limit,
        } => history(ctx, group, from_seq, direction, limit).await,
        Request::UploadKeyPackages { one_time, last_resort } => {
            if one_time.len() > MAX_KEY_PACKAGES_PER_UPLOAD {
                return Err(invalid(format!(
                    "at most {MAX_KEY_PACKAGES_PER_UPLOAD} key packages per upload"
                )));
            }
            if one_time
                .iter()
                .chain(last_resort.iter())
                .any(|k| k.is_empty() || k.len() > MAX_KEY_PACKAGE_LEN)
            {
                return Err(invalid(format!("key packages must be 1..={MAX_KEY_PACKAGE_LEN} bytes")));
            }
            let now_secs = now_ms() / 1000;
            for (k, last) in one_time
                .iter()
                .map(|k| (k, false))
                .chain(last_resort.iter().map(|k| (k, true)))
            {
                mls_check::own_key_package(k, ctx.conn.device, &ctx.conn.user, last, now_secs)?;
            }
            let store = &ctx.shared.store;
            let cap = ctx.shared.config.limits.max_key_packages_per_device;
            let held = store.key_package_count(ctx.conn.device).await? as usize;
            if held + one_time.len() > cap {
                return Err(WireError::new(
                    ErrorCode::QuotaExceeded,
                    format!("this device holds {held} one-time key packages; the relay keeps at most {cap}"),
                ));
            }
            // One token per request: a retry of the store call cannot add twice.
            let token = OpToken::random();
            let (one_time, last_resort) =
                retrying(|| store.upload_key_packages(token, ctx.conn.device, one_time.clone(), last_resort.clone()))
                    .await?;
            Ok(Reply::KeyPackageCount { one_time, last_resort })
        }
        Request::ClaimKeyPackages { user, device } => claim_key_packages(ctx, &user, device).await,
        Request::ListDevices { user } => list_devices(ctx, &user).await,
        Request::RevokeDevice { device, signature } => revoke(ctx, device, signature).await,
        Request::Redact { group, seq } => {
            ctx.shared.log.redact(&group, seq, ctx.conn.device).await?;
            Ok(Reply::Done)
        }
        Request::VoidCommit { group, seq } => {
            ctx.shared.log.void_commit(&group, seq, ctx.conn.device).await?;
            Ok(Reply::Done)
        }
        Request::SendToDevice { device, payload } => {
            if payload.len() > MAX_PAYLOAD_LEN {
                return Err(invalid(format!("payload over {MAX_PAYLOAD_LEN} bytes")));
            }
            mls_check::direct_payload(&payload)?;
            let record = ctx.shared.store.device(device).await?;
            may_send_to_device(ctx, device, record.as_ref()).await?;
            if record.is_none() || ctx.shared.store.revocation(device).await?.is_some() {
                return Err(WireError::new(ErrorCode::NotFound, "no such device"));
            }
            let (acked, head) = ctx.shared.store.inbox_state(device).await?;
            let cap = ctx.shared.config.limits.inbox_max_pending;
            if head.saturating_sub(acked) >= cap as u64 {
                return Err(WireError::new(
                    ErrorCode::QuotaExceeded,
                    format!("the recipient's inbox holds {cap} unacknowledged entries; retry once it has read them"),
                ));
            }
            let (token, now) = (OpToken::random(), now_ms());
            let store = &ctx.shared.store;
            let seq =
                retrying(|| store.inbox_push(token, device, ctx.conn.device, InboxKind::Direct, payload.clone(), now))
                    .await?;
            ctx.shared.bus.publish(BusEvent::Inbox { device, seq }).await;
            Ok(Reply::Done)
        }
        Request::GetPresence { devices } => presence(ctx, devices).await,
        Request::ListGroups => {
            let mut out = Vec::new();
            for m in active(ctx.shared.store.memberships(ctx.conn.device).await?) {
                if let Some(g) = ctx.shared.store.group(&m.group).await? {
                    out.push(GroupStatus {
                        group: m.group,
                        head_seq: g.head_seq,
                        resume_after: m.cursor,
                        epoch: g.epoch,
                    });
                }
            }
            Ok(Reply::Groups(out))
        }
    }
}

/// `SendToDevice` reaches the caller's own user's devices and devices it
/// shares a group with; anything else (including a device that does not
/// exist) is `Forbidden`, so the request cannot probe for devices.
async fn may_send_to_device(
    ctx: &Ctx,
    device: DeviceId,
    record: Option<&crate::store::DeviceRecord>,
) -> Result<(), WireError> {
    let store = &ctx.shared.store;
    if record.is_some_and(|d| d.user == ctx.conn.user) {
        return Ok(());
    }
    let mine: std::collections::HashSet<GroupId> = active(store.memberships(ctx.conn.device).await?)
        .map(|m| m.group)
        .collect();
    if active(store.memberships(device).await?).any(|m| mine.contains(&m.group)) {
        return Ok(());
    }
    Err(WireError::new(
        ErrorCode::Forbidden,
        "SendToDevice reaches your own user's devices and devices you share a group with",
    ))
}

fn active(ms: Vec<Membership>) -> impl Iterator<Item = Membership> {
    ms.into_iter().filter(|m| m.removed_seq.is_none())
}

fn check_policy(p: &Policy) -> Result<(), WireError> {
    let posters = match &p.posters {
        Posters::Everyone => 0,
        Posters::Only(v) => v.len(),
    };
    if posters > MAX_ROSTER_CHANGE || p.admins.len() > MAX_ROSTER_CHANGE {
        return Err(invalid(format!("policy lists at most {MAX_ROSTER_CHANGE} devices")));
    }
    Ok(())
}

async fn create_group(ctx: &Ctx, group: GroupId, policy: Policy) -> Result<Reply, WireError> {
    if !group.is_valid() {
        return Err(invalid("group id must be 1..=255 bytes"));
    }
    check_policy(&policy)?;
    let cap = ctx.shared.config.limits.max_groups_per_device;
    if active(ctx.shared.store.memberships(ctx.conn.device).await?).count() >= cap {
        return Err(WireError::new(
            ErrorCode::QuotaExceeded,
            format!("this device is in {cap} groups, the relay's limit; leave one first"),
        ));
    }
    let rec = ctx.shared.log.create(group, ctx.conn.device, policy, now_ms()).await?;
    Ok(Reply::GroupCreated { epoch: rec.epoch })
}

/// The checks of a send that need no store: sizes, roster change bounds, the
/// MLS header against the envelope. Returns the append to queue.
fn check_send(ctx: &Ctx, send: Send) -> Result<AppendRequest, WireError> {
    if !send.group.is_valid() {
        return Err(invalid("group id must be 1..=255 bytes"));
    }
    if send.payload.len() > MAX_PAYLOAD_LEN {
        return Err(invalid(format!("payload over {MAX_PAYLOAD_LEN} bytes")));
    }
    if let Some(r) = &send.roster {
        if send.kind != MessageKind::Commit {
            return Err(invalid("roster changes ride only with a commit"));
        }
        if r.add.len() + r.remove.len() > MAX_ROSTER_CHANGE {
            return Err(invalid(format!(
                "at most {MAX_ROSTER_CHANGE} roster changes per commit"
            )));
        }
        // An added device joins only through a Welcome (it would otherwise be
        // on the roster with no way to read the group).
        if !r.add.is_empty() && r.welcome.is_none() {
            return Err(invalid("a commit that adds devices carries their Welcome"));
        }
        // RFC 9420 12.2: a committer cannot remove itself (it leaves by a
        // Remove proposal that another member commits).
        if r.remove.contains(&ctx.conn.device) {
            return Err(invalid(
                "a commit cannot remove its own sender; propose the removal instead",
            ));
        }
        if r.welcome.as_ref().is_some_and(|w| w.len() > MAX_PAYLOAD_LEN) {
            return Err(invalid(format!("welcome over {MAX_PAYLOAD_LEN} bytes")));
        }
    }
    // Commits are sequenced by the epoch in the MLS bytes, which this check
    // guarantees is the envelope's.
    let epoch = mls_check::group_message(&send)?;
    Ok(AppendRequest {
        group: send.group,
        sender: ctx.conn.device,
        client_msg_id: send.client_msg_id,
        kind: send.kind,
        epoch,
        payload: send.payload,
        roster: send.roster,
        now_ms: now_ms(),
    })
}

async fn member(ctx: &Ctx, group: &GroupId) -> Result<Membership, WireError> {
    match ctx.shared.store.membership(ctx.conn.device, group).await? {
        Some(m) if m.removed_seq.is_none() => Ok(m),
        _ => {
            if ctx.shared.store.group(group).await?.is_none() {
                Err(WireError::new(ErrorCode::NotFound, "no such group"))
            } else {
                Err(WireError::new(ErrorCode::NotMember, "not a member of the group"))
            }
        }
    }
}

/// The caller's membership and the group record; refuses non-members.
async fn member_of(ctx: &Ctx, group: &GroupId) -> Result<(Membership, GroupRecord), WireError> {
    let m = member(ctx, group).await?;
    let g = ctx
        .shared
        .log
        .record(group)
        .await?
        .ok_or_else(|| WireError::new(ErrorCode::NotFound, "no such group"))?;
    Ok((m, g))
}

async fn get_group(ctx: &Ctx, group: GroupId) -> Result<Reply, WireError> {
    let (_, g) = member_of(ctx, &group).await?;
    Ok(Reply::Group(GroupInfo {
        group: g.group,
        epoch: g.epoch,
        roster: g.roster,
        policy: g.policy,
        head_seq: g.head_seq,
        first_seq: g.first_seq,
    }))
}

async fn history(
    ctx: &Ctx,
    group: GroupId,
    from_seq: u64,
    direction: Direction,
    limit: u16,
) -> Result<Reply, WireError> {
    let (m, g) = member_of(ctx, &group).await?;
    // A member reads only what was sent after it joined.
    let lowest = (m.joined_seq + 1).max(g.first_seq);
    let limit = usize::from(limit.clamp(1, MAX_HISTORY_PAGE));
    let from = match direction {
        Direction::Forward => from_seq.max(m.joined_seq + 1),
        Direction::Backward => from_seq.min(g.head_seq),
    };
    // Entries this member was entitled to are gone: say so rather than skip them.
    if direction == Direction::Forward && from < g.first_seq && g.first_seq > m.joined_seq + 1 {
        return Err(WireError::with_detail(
            ErrorCode::Truncated,
            format!("entries before {} are no longer retained", g.first_seq),
            ErrorDetail::FirstAvailable(g.first_seq),
        ));
    }
    if from < lowest || from > g.head_seq {
        return Ok(Reply::History {
            entries: Vec::new(),
            next_from: None,
        });
    }
    let mut entries = ctx
        .shared
        .log
        .read(&group, from, direction, limit, HISTORY_PAGE_BYTES)
        .await?;
    entries.retain(|e| e.seq >= lowest);
    // Keep the page within one frame: stop before the entry that would overflow it
    // (a page always holds at least one entry; one entry always fits).
    let mut bytes = 0usize;
    let fits = entries
        .iter()
        .position(|e| {
            bytes += e.payload.len() + 96;
            bytes > HISTORY_PAGE_BYTES
        })
        .unwrap_or(entries.len())
        .max(1);
    entries.truncate(fits);
    let next_from = match (direction, entries.last()) {
        (Direction::Forward, Some(e)) if e.seq < g.head_seq => Some(e.seq + 1),
        (Direction::Backward, Some(e)) if e.seq > lowest => Some(e.seq - 1),
        _ => None,
    };
    Ok(Reply::History { entries, next_from })
}

/// A user's devices that are not revoked.
async fn active_devices(ctx: &Ctx, user: &UserId) -> Result<Vec<crate::store::DeviceRecord>, WireError> {
    let mut out = Vec::new();
    for d in ctx.shared.store.user_devices(user).await? {
        if ctx.shared.store.revocation(d.device).await?.is_none() {
            out.push(d);
        }
    }
    Ok(out)
}

/// Revokes a device of the caller's user, signed by the caller.
async fn revoke(ctx: &Ctx, device: DeviceId, signature: hush_protocol::frame::Signature) -> Result<Reply, WireError> {
    let store = &ctx.shared.store;
    let target = store
        .device(device)
        .await?
        .filter(|d| d.user == ctx.conn.user)
        .ok_or_else(|| WireError::new(ErrorCode::NotFound, "no such device of this user"))?;
    let signer = store
        .device(ctx.conn.device)
        .await?
        .ok_or_else(|| WireError::new(ErrorCode::Internal, "the calling device is not registered"))?;
    let transcript = hush_protocol::auth::revoke_transcript(&ctx.conn.user, &target.key);
    if !hush_protocol::auth::verify(&signer.key, &transcript, &signature) {
        return Err(WireError::new(
            ErrorCode::AuthFailed,
            "revocation signature does not verify",
        ));
    }
    store
        .revoke_device(crate::store::Revocation {
            device,
            by: ctx.conn.device,
            revoked_ms: now_ms(),
            signature: signature.0.to_vec(),
        })
        .await?;
    // Its open connections here end now; new ones are refused at the handshake.
    ctx.shared.log.live().revoked(device);
    tracing::info!(%device, by = %ctx.conn.device, "device revoked");
    Ok(Reply::Done)
}

/// Takes `cost` directory lookups from the caller's bucket, unless `user` is
/// the caller's own (asking about yourself enumerates nobody).
fn lookup_check(ctx: &Ctx, user: &UserId, cost: usize) -> Result<(), WireError> {
    if *user == ctx.conn.user {
        return Ok(());
    }
    ctx.shared
        .lookups
        .take(ctx.conn.device, cost.max(1) as f64, std::time::Instant::now())
        .map_err(|ms| {
            WireError::with_detail(
                ErrorCode::RateLimited,
                "too many directory lookups (ListDevices, ClaimKeyPackages of other users)",
                ErrorDetail::RetryAfterMs(ms),
            )
        })
}

/// Claims a key package per device of `user` (or only `device`): one-time
/// packages while the device's one-time budget lasts, its last-resort
/// package after.
async fn claim_key_packages(ctx: &Ctx, user: &UserId, device: Option<DeviceId>) -> Result<Reply, WireError> {
    let mut devices: Vec<DeviceId> = active_devices(ctx, user).await?.into_iter().map(|d| d.device).collect();
    if let Some(d) = device {
        devices.retain(|x| *x == d);
    }
    // Charged before the answer, so that over the limit not even whether the
    // user exists is told.
    lookup_check(ctx, user, devices.len())?;
    if devices.is_empty() {
        return Err(WireError::new(ErrorCode::NotFound, "no such user or device"));
    }
    let now = std::time::Instant::now();
    let claims: Vec<KeyPackageClaim> = devices
        .into_iter()
        .map(|device| KeyPackageClaim {
            device,
            one_time: ctx.shared.one_time_claims.check(device, now).is_ok(),
        })
        .collect();
    let token = OpToken::random();
    let store = &ctx.shared.store;
    Ok(Reply::KeyPackages(
        retrying(|| store.claim_key_packages(token, claims.clone())).await?,
    ))
}

async fn list_devices(ctx: &Ctx, user: &UserId) -> Result<Reply, WireError> {
    let devices = active_devices(ctx, user).await?;
    lookup_check(ctx, user, 1)?;
    Ok(Reply::Devices(
        devices
            .into_iter()
            .map(|d| hush_protocol::frame::DeviceInfo {
                device: d.device,
                key: d.key,
                registered_ms: d.registered_ms,
            })
            .collect(),
    ))
}

async fn presence(ctx: &Ctx, devices: Vec<DeviceId>) -> Result<Reply, WireError> {
    if devices.len() > 1000 {
        return Err(invalid("ask about at most 1000 devices"));
    }
    let store = &ctx.shared.store;
    let mine: std::collections::HashSet<GroupId> = active(store.memberships(ctx.conn.device).await?)
        .map(|m| m.group)
        .collect();
    let mut out = Vec::new();
    for d in devices {
        let shares = d == ctx.conn.device || active(store.memberships(d).await?).any(|m| mine.contains(&m.group));
        if !shares {
            continue;
        }
        let Some(rec) = store.device(d).await? else { continue };
        out.push(PresenceUpdate {
            device: d,
            user: rec.user,
            online: ctx.shared.presence.is_online(d),
            last_seen_ms: store.last_seen(d).await?,
        });
    }
    Ok(Reply::Presence(out))
}
