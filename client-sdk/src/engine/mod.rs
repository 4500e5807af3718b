//! The client's engine: every change to this device's state, as one state
//! machine with no sockets and no clock.
//!
//! ```text
//!            handle_frame(now, RelayFrame)      ┌────────────────────┐  poll_transmit() → ClientFrame
//!   relay ─▶ handle_connected / _disconnected ─▶│ Engine             │─▶ (requests, acks, sends)
//!            handle_timeout(now)                │  Device (MLS)      │  poll_event()    → Event
//!   app ───▶ handle_command(now, Command) ─────▶│  staged Batch      │─▶ (to the app)
//!                                               │  flows, outbox,    │  poll_timeout()  → Instant
//!                                               │  requests, ops     │  poll_close()    → reason
//!                                               └─────────┬──────────┘
//!                                                   flush(now): ONE transaction
//! ```
//!
//! One task owns the engine ([`crate::session`]); app calls are
//! [`Command`]s with oneshot answers. The order of calls: feed every input
//! that is ready (`handle_*`, as many as are waiting: that is the batch),
//! then [`Engine::flush`], then drain `poll_transmit`, `poll_event` and
//! `poll_close`, then sleep until the next input or `poll_timeout`.
//!
//! # One transaction per batch
//!
//! Inputs only *stage*: MLS operations run with commits held
//! ([`hush_crypto::Device::hold_commits`]) and the SDK's records go into one
//! [`Batch`]. [`Engine::flush`] makes all of it durable in one redb
//! transaction (one fsync, however many entries were delivered), and only
//! then releases what the batch produced: events for the app, answers to
//! commands, and frames for the relay (acks, the ciphertext of outbox items
//! sealed in the batch, commits). So nothing leaves the device, and no event
//! is seen, before the state it depends on is on disk; a crash loses the
//! whole batch or nothing, and a lost batch is delivered and processed again.
//! If the transaction fails, the batch is discarded and the connection is
//! replaced ([`Engine::poll_close`]).
//!
//! # Round trips
//!
//! Every request the engine sends carries a deadline
//! ([`EngineConfig::request_timeout`]). A request not answered by then fails
//! its caller with [`Error::Timeout`] and the connection is replaced: what was
//! in flight on it (outbox items, history fetches) is sent again on the next
//! one, where the relay's idempotency keys make that safe. Up to
//! [`EngineConfig::outbox_window`] outbox items are in flight at once, sent
//! in outbox order on the one connection (the relay stores one connection's
//! sends in the order they arrive); answers are matched by request id and may
//! come in any order. Group changes (MLS commits) are one at a time per
//! group, with the stale-epoch retry: catch up, make the commit, send it,
//! and on `StaleEpoch` discard it, catch up and make it again.

mod change;
mod identity;
mod records;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hush_crypto::Device;
use hush_crypto::content::{Content, Payload};
use hush_protocol::frame::{
    ClientFrame, Direction, InboxEntry, InboxKind, LogEntry, MessageKind, Notice, RelayFrame, Reply, Request, Send,
};
use hush_protocol::{DeviceId, ErrorCode, ErrorDetail, GroupId, UserId, WireError};
use tokio::sync::oneshot;

use crate::client::GroupSummary;
use crate::error::Error;
use crate::event::{Event, Member};
use crate::outbox::OutboxItem;
use crate::store::{Batch, LocalStore, key};

pub(crate) use change::Change;
pub(crate) use records::{GroupMeta, clean_name};

/// Key packages kept at the relay.
const KEY_PACKAGES_LOW: u32 = 10;
const KEY_PACKAGES_BATCH: usize = 30;
/// Entries asked for per history page.
const HISTORY_PAGE: u16 = 500;
/// Entries of one group kept waiting for a gap to be filled; beyond that the
/// newest are dropped (the relay's log is durable: they are fetched again).
const MAX_QUEUED_PER_GROUP: usize = 10_000;
/// Request ids of the engine start here, away from the ids
/// [`crate::wire::WireClient::request`] allocates from 1.
const FIRST_REQUEST_ID: u32 = 0x8000_0000;

/// Where an answer to an app call goes.
pub(crate) type Answer<T> = oneshot::Sender<Result<T, Error>>;

/// A typing signal older (or newer) than this by its own clock is dropped:
/// replayed signals say nothing about now.
const TYPING_MAX_AGE_MS: u64 = 30_000;

/// Settings of the engine.
#[derive(Clone, Debug)]
pub(crate) struct EngineConfig {
    /// How long a request may wait for its response. Default 10 s.
    pub request_timeout: Duration,
    /// Ping interval (the relay's, if shorter, is given at connect).
    /// Default 10 s.
    pub heartbeat: Duration,
    /// Outbox items in flight at once. Default 32.
    pub outbox_window: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            request_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(10),
            outbox_window: 32,
        }
    }
}

/// An app call that needs the engine.
pub(crate) enum Command {
    /// Puts a payload in the outbox (durable when answered).
    Enqueue {
        group: GroupId,
        payload: Payload,
        answer: Answer<()>,
    },
    /// Sends a request that changes nothing here and returns the reply.
    Request { request: Request, answer: Answer<Reply> },
    /// The groups this device has not left.
    Groups { answer: Answer<Vec<GroupSummary>> },
    /// The members of a group.
    Members {
        group: GroupId,
        answer: Answer<Vec<Member>>,
    },
    /// The safety number with `user`, over both users' checked devices.
    SafetyNumber { user: UserId, answer: Answer<String> },
    /// Marks `user`'s current devices verified (the safety number compared
    /// out of band was `number`).
    MarkVerified {
        user: UserId,
        number: String,
        answer: Answer<()>,
    },
    /// Encrypts and sends a typing signal (live only).
    Typing {
        group: GroupId,
        active: bool,
        answer: Answer<()>,
    },
    /// Creates a group here, once the relay created it.
    CreateGroup {
        group: GroupId,
        meta: GroupMeta,
        answer: Answer<()>,
    },
    /// A group change: answered with the commit's seq (`None`: nothing to do).
    Change {
        group: GroupId,
        change: Change,
        answer: Answer<Option<u64>>,
    },
    /// Leaves a group.
    Leave { group: GroupId, answer: Answer<()> },
    /// Raises a group's read mark.
    MarkRead {
        group: GroupId,
        seq: u64,
        answer: Answer<()>,
    },
    /// Saves a setting.
    PutSetting {
        key: Vec<u8>,
        value: serde_json::Value,
        answer: Answer<()>,
    },
    /// Whether every group the relay lists (with its head) is known here and
    /// processed up to that head.
    Synced {
        heads: Vec<(GroupId, u64)>,
        answer: Answer<bool>,
    },
}

/// What a request in flight is for.
enum Purpose {
    /// An app request: its reply goes back as it is.
    App(Answer<Reply>),
    /// A page of a group's history (gap fill or catch-up).
    Fill(GroupId),
    /// An outbox item's `Send`.
    Outbox(u64),
    /// The redaction before a delete is sent; only logged.
    Redact,
    /// The commit of the group's current change.
    Commit(GroupId),
    /// The leave proposal of the group's current op.
    Leave(GroupId),
    /// How many key packages the relay has.
    KeyCount,
    /// New key packages.
    KeyUpload,
    /// A user's devices, to check the leaves claiming that user.
    Devices(UserId),
    /// A rejected commit to void; only logged.
    Void,
}

struct InFlight {
    deadline: Instant,
    purpose: Purpose,
    /// The request again, for a background purpose that is asked again
    /// after a rate limit's wait ([`Purpose::retries`]).
    op: Option<Request>,
}

impl Purpose {
    /// Work the engine does on its own initiative and asks again when the
    /// relay refuses it for a rate limit: the identity check of a user's
    /// devices, a history page, the key package count. The flags that keep
    /// them single (`listing`, `Flow::fetching`, `key_request`) stay set
    /// while they wait, so nothing else asks the same meanwhile.
    fn retries(&self) -> bool {
        matches!(self, Purpose::Devices(_) | Purpose::Fill(_) | Purpose::KeyCount)
    }
}

/// A background request refused for a rate limit, to send again at `due`.
struct Deferred {
    due: Instant,
    op: Request,
    purpose: Purpose,
}

/// The shortest wait before a refused background request goes again (a
/// hint of 0 would otherwise ask in a loop).
const MIN_RETRY_AFTER: Duration = Duration::from_millis(20);

/// One group's delivery state.
#[derive(Default)]
struct Flow {
    /// Highest seq processed (staged in the batch, durable after flush).
    cursor: u64,
    /// Entries received past the cursor, waiting for their turn.
    queue: BTreeMap<u64, LogEntry>,
    /// A history page is being fetched.
    fetching: bool,
    /// The last history fetch reached the relay's head.
    caught_up: bool,
    /// This device's commit awaits the relay's answer: entries wait.
    held: bool,
    /// Some member's identity is being checked: entries wait.
    verifying: bool,
    /// The cursor was acknowledged up to here.
    acked: u64,
}

/// One outbox item, as the engine tracks it.
struct Queued {
    n: u64,
    item: OutboxItem,
    /// The request carrying it, while in flight.
    sent: Option<u32>,
}

/// The connection, while there is one.
struct Conn {
    ping_every: Duration,
    last_rx: Instant,
    next_ping: Instant,
    nonce: u64,
    /// The initial key package check is done.
    keys_checked: bool,
    /// Reported settled already.
    settled: bool,
}

/// An answer to a command, sent once its batch is durable (`None`) or
/// failed (the error).
type Release = Box<dyn FnOnce(Option<&str>) + std::marker::Send>;

/// What a batch releases once it is durable.
#[derive(Default)]
struct Staged {
    batch: Batch,
    events: Vec<Event>,
    transmits: Vec<ClientFrame>,
    answers: Vec<Release>,
}

/// The client's state machine. See the module docs for the order of calls.
pub(crate) struct Engine {
    device: Device,
    local: Arc<LocalStore>,
    user: UserId,
    device_id: DeviceId,
    config: EngineConfig,
    conn: Option<Conn>,
    next_id: u32,
    requests: HashMap<u32, InFlight>,
    flows: HashMap<GroupId, Flow>,
    /// Entries of groups whose Welcome has not been processed yet.
    waiting: HashMap<GroupId, Vec<LogEntry>>,
    outbox: VecDeque<Queued>,
    next_outbox: u64,
    /// No outbox item goes out before this (the relay asked to wait).
    outbox_paused_until: Option<Instant>,
    /// Per group, the epoch the relay said it is at when it refused an
    /// outbox item as stale: items are sealed again only once this device
    /// has caught up to it.
    outbox_epoch: HashMap<GroupId, u64>,
    /// Groups the relay says this device was removed from, by the seq of the
    /// removing commit, until that commit is applied.
    removal_notices: HashMap<GroupId, u64>,
    ops: HashMap<GroupId, VecDeque<change::Op>>,
    /// Users whose device list was asked for on this connection.
    listing: HashSet<UserId>,
    /// Background requests the relay refused for a rate limit, waiting for
    /// the wait it asked for (dropped with the connection: the next one
    /// asks everything again).
    deferred: Vec<Deferred>,
    /// The relay refuses this device for good.
    revoked: bool,
    /// Commits this device rejected, to ask the relay to void (an admin's
    /// request succeeds; the others are refused, harmlessly).
    to_void: Vec<(GroupId, u64)>,
    key_request: bool,
    staged: Staged,
    /// Released by flush: frames, events.
    transmits: VecDeque<ClientFrame>,
    events: VecDeque<Event>,
    close: Option<String>,
}

fn member(user: &UserId, device: DeviceId) -> Member {
    Member {
        user: user.clone(),
        device,
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Engine {
    /// An engine over a device and the SDK's records (in the same database).
    pub fn new(mut device: Device, local: Arc<LocalStore>, user: UserId, config: EngineConfig) -> Result<Self, Error> {
        let items: Vec<(Vec<u8>, OutboxItem)> = local.scan(key::OUTBOX, None, false, usize::MAX)?;
        let mut outbox = VecDeque::with_capacity(items.len());
        for (k, item) in items {
            outbox.push_back(Queued {
                n: key::outbox_number(&k),
                item,
                sent: None,
            });
        }
        let next_outbox = outbox.back().map(|q| q.n + 1).unwrap_or(1);
        device.hold_commits();
        Ok(Engine {
            device_id: device.device_id(),
            device,
            local,
            user,
            config,
            conn: None,
            next_id: FIRST_REQUEST_ID,
            requests: HashMap::new(),
            flows: HashMap::new(),
            waiting: HashMap::new(),
            outbox,
            next_outbox,
            outbox_paused_until: None,
            outbox_epoch: HashMap::new(),
            removal_notices: HashMap::new(),
            ops: HashMap::new(),
            listing: HashSet::new(),
            deferred: Vec::new(),
            revoked: false,
            to_void: Vec::new(),
            key_request: false,
            staged: Staged::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            close: None,
        })
    }

    /// Durable transactions made so far (for tests: what a batch costs).
    #[cfg(test)]
    pub fn durable_commits(&self) -> u64 {
        self.device.durable_commits()
    }

    // ---------------------------------------------------------------- inputs

    /// A connection is up (authenticated); `relay_heartbeat` is the relay's
    /// interval.
    pub fn handle_connected(&mut self, now: Instant, relay_heartbeat: Duration) {
        let ping_every = self.config.heartbeat.min(relay_heartbeat);
        self.conn = Some(Conn {
            ping_every,
            last_rx: now,
            next_ping: now + ping_every,
            nonce: 0,
            keys_checked: false,
            settled: false,
        });
        self.close = None;
        let r = (|| {
            // A commit whose answer was lost is resolved first: merged if the
            // relay's log has it, discarded otherwise.
            for group in self.device.groups()? {
                if self.device.has_pending_commit(&group)? {
                    self.ops
                        .entry(group.clone())
                        .or_default()
                        .push_front(change::Op::resolve());
                    self.progress(now, &group)?;
                }
            }
            // Groups with members whose identity is not checked yet (a
            // Welcome processed before a restart) ask for them now.
            for group in self.device.groups()? {
                self.check_identities(now, &group, false)?;
            }
            self.check_key_packages(now);
            self.pump_outbox(now)
        })();
        self.guard(r);
    }

    /// The connection is gone. Requests in flight fail; everything else is
    /// kept and sent again on the next connection.
    pub fn handle_disconnected(&mut self) {
        self.conn = None;
        self.key_request = false;
        self.listing.clear();
        self.deferred.clear();
        for (_, r) in self.requests.drain() {
            if let Purpose::App(a) = r.purpose {
                let _ = a.send(Err(Error::Connection("connection lost before the response".into())));
            }
        }
        for q in &mut self.outbox {
            q.sent = None;
        }
        for flow in self.flows.values_mut() {
            flow.fetching = false;
            flow.held = false;
            flow.queue.clear();
        }
        for (_, ops) in self.ops.drain() {
            for op in ops {
                op.fail(Error::Connection("connection lost during the group change".into()));
            }
        }
        self.waiting.clear();
        self.transmits.clear();
    }

    /// The relay refused this device as revoked: nothing will be sent again.
    /// What waits in the outbox fails (durably, with its reason), and later
    /// sends are refused.
    pub fn handle_revoked(&mut self) {
        self.revoked = true;
        let items: Vec<Queued> = self.outbox.drain(..).collect();
        for q in &items {
            self.give_up(q, "this device was revoked: it can no longer send");
        }
    }

    /// A frame from the relay.
    pub fn handle_frame(&mut self, now: Instant, frame: RelayFrame) {
        if let Some(c) = &mut self.conn {
            c.last_rx = now;
        }
        let r = self.on_frame(now, frame);
        self.guard(r);
    }

    /// An app call.
    pub fn handle_command(&mut self, now: Instant, command: Command) {
        let r = self.on_command(now, command);
        self.guard(r);
    }

    /// Time passed: pings, request deadlines, outbox pauses.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(conn) = &mut self.conn else { return };
        if now >= conn.next_ping {
            if now.duration_since(conn.last_rx) > conn.ping_every * 3 {
                self.close_with("no answer to heartbeats");
                return;
            }
            conn.nonce += 1;
            conn.next_ping = now + conn.ping_every;
            let nonce = conn.nonce;
            self.staged.transmits.push(ClientFrame::Ping { nonce });
        }
        let expired: Vec<u32> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        if !expired.is_empty() {
            // The connection is replaced below: every app request on it
            // fails with the reason, the ones not due yet too.
            for (_, r) in self.requests.drain() {
                if let Purpose::App(a) = r.purpose {
                    let _ = a.send(Err(Error::Timeout));
                }
            }
            // An unanswered request means a connection that no longer
            // carries anything: replace it (what was in flight goes again).
            for (_, ops) in self.ops.drain() {
                for op in ops {
                    op.fail(Error::Timeout);
                }
            }
            self.close_with("a request timed out");
            return;
        }
        if self.outbox_paused_until.is_some_and(|t| t <= now) {
            self.outbox_paused_until = None;
            let r = self.pump_outbox(now);
            self.guard(r);
        }
        let (due, later): (Vec<Deferred>, Vec<Deferred>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|d| d.due <= now);
        self.deferred = later;
        for d in due {
            self.request(now, d.op, d.purpose);
        }
    }

    // --------------------------------------------------------------- outputs

    /// Makes everything staged durable in one transaction, then releases the
    /// batch's frames, events and answers. On failure the batch is dropped
    /// (and its callers told) and the connection is to be replaced.
    pub fn flush(&mut self) {
        let staged = std::mem::take(&mut self.staged);
        let Staged {
            batch,
            events,
            transmits,
            answers,
        } = staged;
        match self.device.commit_held(&batch.into_side_writes()) {
            Ok(()) => {
                self.transmits.extend(transmits);
                self.events.extend(events);
                for a in answers {
                    a(None);
                }
            }
            Err(e) => {
                let msg = format!("local state: {e}");
                tracing::warn!(error = %msg, "a batch could not be made durable");
                for a in answers {
                    a(Some(&msg));
                }
                // In-memory views were ahead of the disk: reload them.
                self.flows.clear();
                self.reload_outbox();
                self.close_with(&msg);
            }
        }
        self.device.hold_commits();
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<ClientFrame> {
        self.transmits.pop_front()
    }

    /// The next event for the app.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conn = self.conn.as_ref()?;
        let mut t = conn.next_ping;
        for r in self.requests.values() {
            t = t.min(r.deadline);
        }
        if let Some(p) = self.outbox_paused_until {
            t = t.min(p);
        }
        for d in &self.deferred {
            t = t.min(d.due);
        }
        Some(t)
    }

    /// The connection must be replaced, and why.
    pub fn poll_close(&mut self) -> Option<String> {
        self.close.take()
    }

    /// True once per connection, when pending commits are resolved and key
    /// packages stocked.
    pub fn poll_settled(&mut self) -> bool {
        let resolving = self.ops.values().flatten().any(change::Op::is_resolve);
        match &mut self.conn {
            Some(c) if !c.settled && c.keys_checked && !resolving && self.close.is_none() => {
                c.settled = true;
                true
            }
            _ => false,
        }
    }

    // --------------------------------------------------------------- helpers

    /// Turns an internal error into a dropped batch and a replaced connection.
    fn guard(&mut self, r: Result<(), Error>) {
        if let Err(e) = r {
            tracing::warn!(error = %e, "processing failed; the batch is dropped");
            let staged = std::mem::take(&mut self.staged);
            let msg = e.to_string();
            for a in staged.answers {
                a(Some(&msg));
            }
            self.device.discard_held();
            self.device.hold_commits();
            self.flows.clear();
            self.reload_outbox();
            self.close_with(&msg);
        }
    }

    fn close_with(&mut self, reason: &str) {
        if self.conn.is_some() && self.close.is_none() {
            self.close = Some(reason.to_owned());
        }
    }

    fn reload_outbox(&mut self) {
        if let Ok(items) = self.local.scan::<OutboxItem>(key::OUTBOX, None, false, usize::MAX) {
            self.outbox = items
                .into_iter()
                .map(|(k, item)| Queued {
                    n: key::outbox_number(&k),
                    item,
                    sent: None,
                })
                .collect();
        }
    }

    fn answer<T: std::marker::Send + 'static>(&mut self, to: Answer<T>, result: Result<T, Error>) {
        self.staged.answers.push(Box::new(move |failed: Option<&str>| {
            let r = match failed {
                Some(m) => Err(Error::Local(m.to_owned())),
                None => result,
            };
            let _ = to.send(r);
        }));
    }

    fn emit(&mut self, event: Event) {
        self.staged.events.push(event);
    }

    /// Sends a request (after the batch is durable), tracked with a deadline.
    fn request(&mut self, now: Instant, op: Request, purpose: Purpose) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(FIRST_REQUEST_ID);
        let again = purpose.retries().then(|| op.clone());
        self.requests.insert(
            id,
            InFlight {
                deadline: now + self.config.request_timeout,
                purpose,
                op: again,
            },
        );
        self.staged.transmits.push(ClientFrame::Request { id, op });
        id
    }

    fn flow(&mut self, group: &GroupId) -> Result<&mut Flow, Error> {
        if !self.flows.contains_key(group) {
            let cursor = self
                .local
                .get_staged(&self.staged.batch, &key::cursor(group))?
                .unwrap_or(0);
            self.flows.insert(
                group.clone(),
                Flow {
                    cursor,
                    acked: cursor,
                    ..Flow::default()
                },
            );
        }
        self.flows
            .get_mut(group)
            .ok_or_else(|| Error::Local("flow vanished".into()))
    }

    fn joined(&self, group: &GroupId) -> Result<bool, Error> {
        Ok(self.device.groups()?.contains(group))
    }

    // ---------------------------------------------------------------- frames

    fn on_frame(&mut self, now: Instant, frame: RelayFrame) -> Result<(), Error> {
        match frame {
            RelayFrame::Deliver(entry) => self.on_entry(now, entry)?,
            RelayFrame::Inbox(entry) => self.on_inbox(now, entry)?,
            RelayFrame::Response { id, result } => self.on_response(now, id, result)?,
            RelayFrame::Ephemeral { group, sender, payload } => {
                // Never MLS processing: only an envelope sealed with this
                // epoch's ephemeral key and signed by `sender` opens, and
                // opening it changes no state. Stale signals (over 30 s,
                // replayed) are dropped.
                if let Ok((sender, plaintext)) = self.device.open_ephemeral(&group, sender, &payload)
                    && let Ok(p) = Payload::decode(&plaintext)
                    && let Content::Typing { active } = p.content
                    && now_ms().abs_diff(p.sent_at_ms) <= TYPING_MAX_AGE_MS
                {
                    self.emit(Event::Typing {
                        group,
                        by: member(&sender.user, sender.device),
                        active,
                    });
                }
            }
            RelayFrame::Presence(p) => self.emit(Event::Presence {
                member: member(&p.user, p.device),
                online: p.online,
                last_seen_ms: p.last_seen_ms,
            }),
            RelayFrame::Notice(Notice::Truncated { group, first_available }) => {
                self.truncated(&group, first_available)?;
                self.advance(now, &group)?;
            }
            // The relay's word alone deletes nothing: only the removing
            // commit, processed by MLS, does (then the group is gone here
            // already). The notice is checked once the commit at `seq` has
            // been applied.
            RelayFrame::Notice(Notice::Removed { group, seq }) => {
                let meta: Option<GroupMeta> = self.local.get_staged(&self.staged.batch, &key::group(&group))?;
                if meta.as_ref().is_some_and(|m| !m.left) && self.joined(&group)? {
                    self.removal_notices.insert(group.clone(), seq);
                    self.check_removal_notice(&group)?;
                }
            }
            RelayFrame::Notice(_) | RelayFrame::Pong { .. } => {}
            RelayFrame::Closing(c) => {
                self.close_with(&format!("relay closed: {:?} {}", c.reason, c.message));
            }
            RelayFrame::Error(e) => tracing::warn!(error = %e, "relay error"),
            other => tracing::debug!(frame = ?other, "unexpected frame"),
        }
        Ok(())
    }

    /// A log entry delivered (or fetched) for a group: queued in seq order,
    /// then everything contiguous with the cursor is applied.
    fn on_entry(&mut self, now: Instant, entry: LogEntry) -> Result<(), Error> {
        let group = entry.group.clone();
        if !self.joined(&group)? {
            // Not joined yet: the Welcome is on its way in the inbox.
            let w = self.waiting.entry(group).or_default();
            if w.len() < MAX_QUEUED_PER_GROUP {
                w.push(entry);
            }
            return Ok(());
        }
        let flow = self.flow(&group)?;
        if entry.seq > flow.cursor {
            if flow.queue.len() >= MAX_QUEUED_PER_GROUP {
                if let Some((&last, _)) = flow.queue.last_key_value()
                    && last > entry.seq
                {
                    flow.queue.remove(&last);
                    flow.queue.insert(entry.seq, entry);
                }
            } else {
                flow.queue.insert(entry.seq, entry);
            }
        }
        self.advance(now, &group)
    }

    /// Applies the queued entries that follow the cursor; asks for a missing
    /// range; acknowledges what was applied (sent once the batch is durable).
    /// A `Notice::Removed` whose commit this device has applied while MLS
    /// still counts it a member: the relay's roster and the group's disagree
    /// (a commit whose roster change did not match what it did). The group's
    /// state is kept; the user is told.
    fn check_removal_notice(&mut self, group: &GroupId) -> Result<(), Error> {
        let Some(&seq) = self.removal_notices.get(group) else {
            return Ok(());
        };
        if !self.joined(group)? {
            self.removal_notices.remove(group);
            return Ok(());
        }
        if self.flow(group)?.cursor >= seq {
            self.removal_notices.remove(group);
            tracing::warn!(group = %group.to_hex(), seq, "the relay removed this device, the group's commit did not");
            self.emit(Event::RosterMismatch {
                group: group.clone(),
                seq,
            });
        }
        Ok(())
    }

    fn advance(&mut self, now: Instant, group: &GroupId) -> Result<(), Error> {
        let connected = self.conn.is_some();
        loop {
            let flow = self.flow(group)?;
            if flow.held || flow.verifying {
                break;
            }
            let cursor = flow.cursor;
            while flow.queue.first_key_value().is_some_and(|(&s, _)| s <= cursor) {
                flow.queue.pop_first();
            }
            let Some((&seq, _)) = flow.queue.first_key_value() else {
                break;
            };
            if seq != cursor + 1 {
                if !flow.fetching && connected {
                    flow.fetching = true;
                    self.fetch(now, group, cursor + 1);
                }
                break;
            }
            let Some((_, entry)) = flow.queue.pop_first() else {
                break;
            };
            let commit = entry.kind == MessageKind::Commit;
            self.apply(entry)?;
            if !self.joined(group)? {
                // Removed by this entry: nothing after it is for us.
                self.flows.remove(group);
                return Ok(());
            }
            // A commit may bring in leaves whose identity is unchecked.
            if commit && !self.check_identities(now, group, true)? {
                break;
            }
        }
        if connected {
            for (g, seq) in std::mem::take(&mut self.to_void) {
                self.request(now, Request::VoidCommit { group: g, seq }, Purpose::Void);
            }
        }
        if self.ops.get(group).is_some_and(|q| !q.is_empty()) && connected {
            // An entry may have asked for a change (a leave proposal).
            self.progress(now, group)?;
        }
        self.check_removal_notice(group)?;
        // Items refused as stale wait for this device to reach the relay's
        // epoch; a commit just applied may have brought it there.
        if let Some(&want) = self.outbox_epoch.get(group)
            && self.device.epoch(group)? >= want
        {
            self.outbox_epoch.remove(group);
            if connected {
                self.pump_outbox(now)?;
            }
        }
        let flow = self.flow(group)?;
        if flow.cursor > flow.acked && connected {
            flow.acked = flow.cursor;
            let seq = flow.cursor;
            // One Ack per group per batch: replace an earlier one.
            self.staged
                .transmits
                .retain(|f| !matches!(f, ClientFrame::Ack { group: g, .. } if g == group));
            self.staged.transmits.push(ClientFrame::Ack {
                group: group.clone(),
                seq,
            });
        }
        Ok(())
    }

    fn fetch(&mut self, now: Instant, group: &GroupId, from_seq: u64) {
        self.request(
            now,
            Request::History {
                group: group.clone(),
                from_seq,
                direction: Direction::Forward,
                limit: HISTORY_PAGE,
            },
            Purpose::Fill(group.clone()),
        );
    }

    /// Applies one entry at `cursor + 1` and moves the cursor, staged: the
    /// MLS state change, the history it produced and the cursor past it
    /// become durable together at the next flush.
    fn apply(&mut self, entry: LogEntry) -> Result<(), Error> {
        let group = entry.group.clone();
        let seq = entry.seq;
        let mut batch = std::mem::take(&mut self.staged.batch);
        let mut events = Vec::new();
        let r = self.stage(&entry, &mut batch, &mut events);
        self.staged.batch = batch;
        r?;
        self.staged.events.extend(events);
        if let Some(flow) = self.flows.get_mut(&group) {
            flow.cursor = seq;
        }
        Ok(())
    }

    fn truncated(&mut self, group: &GroupId, first_available: u64) -> Result<(), Error> {
        let flow = self.flow(group)?;
        if first_available > flow.cursor + 1 {
            flow.cursor = first_available - 1;
            self.staged.batch.put(key::cursor(group), &(first_available - 1))?;
            self.emit(Event::Truncated {
                group: group.clone(),
                first_available,
            });
        }
        Ok(())
    }

    fn on_inbox(&mut self, now: Instant, entry: InboxEntry) -> Result<(), Error> {
        match entry.kind {
            InboxKind::Welcome { group, commit_seq } => {
                // Already joined: the inbox was replayed after a crash.
                if !self.joined(&group)? {
                    match self.device.join(&entry.payload, None) {
                        Ok(joined) if joined == group => {
                            self.stage_join(&group, commit_seq)?;
                            self.flows.remove(&group);
                            // `Event::Joined` once its members are checked.
                            self.check_identities(now, &group, true)?;
                            self.check_key_packages(now);
                        }
                        Ok(other) => tracing::warn!(%other, "Welcome names another group than the relay said"),
                        Err(e) => {
                            tracing::warn!(error = %e, "Welcome does not process");
                            self.emit(Event::InvitationRefused {
                                group: group.clone(),
                                reason: e.to_string(),
                            });
                        }
                    }
                }
                if let Some(waiting) = self.waiting.remove(&group) {
                    for e in waiting {
                        self.on_entry(now, e)?;
                    }
                }
            }
            InboxKind::Direct => tracing::debug!(sender = %entry.sender, "direct message ignored"),
        }
        self.staged.transmits.push(ClientFrame::AckInbox { seq: entry.seq });
        Ok(())
    }

    fn on_response(&mut self, now: Instant, id: u32, result: Result<Reply, WireError>) -> Result<(), Error> {
        let Some(req) = self.requests.remove(&id) else {
            tracing::debug!(id, "response to no request in flight");
            return Ok(());
        };
        if let (Err(e), Some(op)) = (&result, &req.op)
            && e.code == ErrorCode::RateLimited
        {
            // Background work: asked again after the relay's wait; what
            // waits for it (a group's entries, a catch-up) waits on.
            let wait = crate::error::retry_after(e);
            tracing::debug!(?wait, "rate limited: asking again after the wait");
            self.deferred.push(Deferred {
                due: now + wait.max(MIN_RETRY_AFTER),
                op: op.clone(),
                purpose: req.purpose,
            });
            return Ok(());
        }
        match req.purpose {
            Purpose::App(a) => {
                let _ = a.send(result.map_err(Error::from_wire));
            }
            Purpose::Fill(group) => self.on_history(now, &group, result)?,
            Purpose::Outbox(n) => self.on_sent(now, n, result)?,
            Purpose::Redact => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "relay did not redact a deleted message");
                }
            }
            Purpose::Commit(group) => self.on_commit_answer(now, &group, result)?,
            Purpose::Leave(group) => self.on_leave_answer(now, &group, result)?,
            Purpose::KeyCount => self.on_key_count(now, result)?,
            Purpose::Devices(user) => self.on_devices(now, user, result)?,
            Purpose::Void => match result {
                Ok(_) => tracing::info!("the relay voided a commit the group rejected"),
                Err(e) => tracing::debug!(error = %e, "the relay did not void a rejected commit"),
            },
            Purpose::KeyUpload => {
                self.key_request = false;
                if let Err(e) = result {
                    tracing::debug!(error = %e, "key package upload refused");
                }
                if let Some(c) = &mut self.conn {
                    c.keys_checked = true;
                }
            }
        }
        Ok(())
    }

    fn on_history(&mut self, now: Instant, group: &GroupId, result: Result<Reply, WireError>) -> Result<(), Error> {
        if !self.joined(group)? {
            return Ok(());
        }
        match result {
            Ok(Reply::History { entries, next_from }) => {
                let more = !entries.is_empty() && next_from.is_some();
                for e in entries {
                    let flow = self.flow(group)?;
                    if e.seq > flow.cursor && e.group == *group {
                        flow.queue.insert(e.seq, e);
                    }
                }
                let flow = self.flow(group)?;
                flow.fetching = more;
                if more {
                    self.fetch(now, group, next_from.unwrap_or(u64::MAX));
                } else {
                    flow.caught_up = true;
                }
            }
            Err(e) if e.code == ErrorCode::Truncated => {
                let first = match e.detail {
                    ErrorDetail::FirstAvailable(f) => f,
                    _ => self.flow(group)?.cursor + 1,
                };
                self.truncated(group, first)?;
                self.fetch(now, group, first);
            }
            other => {
                self.flow(group)?.fetching = false;
                return Err(Error::Connection(format!("history: unexpected answer {other:?}")));
            }
        }
        self.advance(now, group)?;
        self.progress(now, group)
    }

    // --------------------------------------------------------------- outbox

    /// Seals and sends outbox items, in order, until the window is full.
    fn pump_outbox(&mut self, now: Instant) -> Result<(), Error> {
        if self.conn.is_none() || self.outbox_paused_until.is_some() {
            return Ok(());
        }
        let mut in_flight = self.outbox.iter().filter(|q| q.sent.is_some()).count();
        let mut i = 0;
        while i < self.outbox.len() && in_flight < self.config.outbox_window {
            if self.outbox[i].sent.is_some() {
                i += 1;
                continue;
            }
            let group = self.outbox[i].item.group.clone();
            // A group whose commit awaits an answer takes no message, and
            // nothing after it may overtake it.
            if self.flows.get(&group).is_some_and(|f| f.held)
                || (self.joined(&group)? && self.device.has_pending_commit(&group)?)
            {
                break;
            }
            // Sealed now, it would be at an epoch the relay has left: wait
            // for the commits that move this device there.
            if self.outbox[i].item.sealed.is_none()
                && self
                    .outbox_epoch
                    .get(&group)
                    .is_some_and(|&want| self.device.epoch(&group).is_ok_and(|e| e < want))
            {
                break;
            }
            // An item in flight sealed at an older epoch than this device's
            // may be refused as stale and sealed again: nothing of its group
            // goes after it until it is answered, so the group's order holds.
            let current = self.device.epoch(&group).ok();
            let this = self.outbox[i].item.sealed.as_ref().map(|s| s.0).or(current);
            if let Some(this) = this
                && self.outbox.iter().any(|q| {
                    q.item.group == group && q.sent.is_some() && q.item.sealed.as_ref().is_some_and(|s| s.0 < this)
                })
            {
                break;
            }
            if self.outbox[i].item.sealed.is_none() {
                match self.seal(i) {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "dropping an outbox item that cannot be encrypted");
                        let q = self.outbox.remove(i).ok_or_else(|| Error::Local("outbox".into()))?;
                        self.give_up(&q, &e.to_string());
                        continue;
                    }
                }
            }
            let q = &self.outbox[i];
            let (epoch, ciphertext) = q.item.sealed.clone().unwrap_or_default();
            let item = q.item.clone();
            let n = q.n;
            self.redact_target(now, &item)?;
            let id = self.request(
                now,
                Request::Send(Send {
                    group: item.group.clone(),
                    client_msg_id: item.client_msg_id,
                    kind: MessageKind::Application,
                    epoch,
                    payload: ciphertext.into(),
                    roster: None,
                }),
                Purpose::Outbox(n),
            );
            self.outbox[i].sent = Some(id);
            in_flight += 1;
            i += 1;
        }
        Ok(())
    }

    /// Encrypts item `i` and stages the ciphertext in the item: it is durable
    /// before the batch releases the `Send`, so every retry sends the same
    /// bytes under the same client message id.
    fn seal(&mut self, i: usize) -> Result<(), Error> {
        let group = self.outbox[i].item.group.clone();
        if !self.joined(&group)? {
            return Err(Error::UnknownGroup(group.to_hex()));
        }
        let epoch = self.device.epoch(&group)?;
        let ciphertext = self.device.encrypt(&group, &self.outbox[i].item.payload)?;
        let q = &mut self.outbox[i];
        q.item.sealed = Some((epoch, ciphertext));
        self.staged.batch.put(key::outbox(q.n), &q.item)
    }

    /// For a delete of this user's message: asks the relay to drop the
    /// stored ciphertext of the deleted entry, just before the delete goes.
    fn redact_target(&mut self, now: Instant, item: &OutboxItem) -> Result<(), Error> {
        let Ok(Payload {
            content: Content::Delete { target },
            ..
        }) = Payload::decode(&item.payload)
        else {
            return Ok(());
        };
        let found: Option<(GroupId, u64)> = self.local.get_staged(&self.staged.batch, &key::message_id(&target.0))?;
        if let Some((group, seq)) = found
            && group == item.group
        {
            self.request(now, Request::Redact { group, seq }, Purpose::Redact);
        }
        Ok(())
    }

    fn on_sent(&mut self, now: Instant, n: u64, result: Result<Reply, WireError>) -> Result<(), Error> {
        let Some(i) = self.outbox.iter().position(|q| q.n == n) else {
            return Ok(());
        };
        match result {
            Ok(Reply::Sent { seq, .. }) => {
                let q = self.outbox.remove(i).ok_or_else(|| Error::Local("outbox".into()))?;
                self.staged.batch.delete(key::outbox(n));
                if let Ok(payload) = Payload::decode(&q.item.payload) {
                    let id = hex::encode(payload.id.0);
                    let me = member(&self.user, self.device_id);
                    let mut batch = std::mem::take(&mut self.staged.batch);
                    let mut events = vec![Event::Sent {
                        group: q.item.group.clone(),
                        id,
                        seq,
                    }];
                    let r = self.apply_content(&mut batch, &mut events, &q.item.group, seq, now_ms(), me, payload);
                    self.staged.batch = batch;
                    r?;
                    self.staged.events.extend(events);
                }
            }
            Ok(other) => return Err(Error::Connection(format!("unexpected reply {other:?}"))),
            Err(e) => match e.code {
                // Sealed at an epoch the group has left and not stored (the
                // relay answers a stored retry as a duplicate first): seal it
                // again at the current epoch, same id, once caught up to it.
                ErrorCode::StaleEpoch => {
                    let current = match e.detail {
                        ErrorDetail::CurrentEpoch(c) => c,
                        _ => self.outbox[i].item.sealed.as_ref().map_or(0, |s| s.0 + 1),
                    };
                    let q = &mut self.outbox[i];
                    q.sent = None;
                    q.item.sealed = None;
                    self.staged.batch.put(key::outbox(n), &q.item)?;
                    let want = self.outbox_epoch.entry(q.item.group.clone()).or_insert(0);
                    *want = (*want).max(current);
                }
                ErrorCode::RateLimited | ErrorCode::Internal | ErrorCode::Unavailable => {
                    // Sent again (same bytes, same id) after the pause.
                    self.outbox[i].sent = None;
                    self.outbox_paused_until = Some(now + crate::error::retry_after(&e));
                }
                _ => {
                    tracing::warn!(error = %e, "relay refused an outbox item");
                    let q = self.outbox.remove(i).ok_or_else(|| Error::Local("outbox".into()))?;
                    self.give_up(&q, &e.to_string());
                }
            },
        }
        self.pump_outbox(now)
    }

    fn give_up(&mut self, q: &Queued, reason: &str) {
        self.staged.batch.delete(key::outbox(q.n));
        let decoded = Payload::decode(&q.item.payload).ok();
        // Durable, in the same batch as the outbox item's removal: whoever
        // asks about this message later learns it failed, and why.
        if let Some(p) = &decoded
            && let Err(e) = self.staged.batch.put(key::send_failed(&p.id.0), &reason.to_owned())
        {
            tracing::warn!(error = %e, "could not record a failed send");
        }
        let id = decoded.map(|p| hex::encode(p.id.0)).unwrap_or_default();
        self.emit(Event::SendFailed {
            group: q.item.group.clone(),
            id,
            reason: reason.to_owned(),
        });
    }

    // ---------------------------------------------------------- key packages

    fn check_key_packages(&mut self, now: Instant) {
        if self.conn.is_none() || self.key_request {
            return;
        }
        self.key_request = true;
        self.request(
            now,
            Request::UploadKeyPackages {
                one_time: Vec::new(),
                last_resort: None,
            },
            Purpose::KeyCount,
        );
    }

    fn on_key_count(&mut self, now: Instant, result: Result<Reply, WireError>) -> Result<(), Error> {
        let Ok(Reply::KeyPackageCount { one_time, last_resort }) = result else {
            tracing::debug!(answer = ?result, "key package count refused");
            self.key_request = false;
            if let Some(c) = &mut self.conn {
                c.keys_checked = true;
            }
            return Ok(());
        };
        if one_time >= KEY_PACKAGES_LOW && last_resort {
            self.key_request = false;
            if let Some(c) = &mut self.conn {
                c.keys_checked = true;
            }
            return Ok(());
        }
        // The private keys are staged with the batch: durable before the
        // packages leave.
        let mut packages = self
            .device
            .generate_key_packages(KEY_PACKAGES_BATCH, usize::from(!last_resort))?;
        let last = if last_resort { None } else { packages.pop() };
        self.request(
            now,
            Request::UploadKeyPackages {
                one_time: packages.into_iter().map(Into::into).collect(),
                last_resort: last.map(Into::into),
            },
            Purpose::KeyUpload,
        );
        Ok(())
    }

    // -------------------------------------------------------------- commands

    fn on_command(&mut self, now: Instant, command: Command) -> Result<(), Error> {
        match command {
            Command::Enqueue { group, payload, answer } => {
                if self.revoked {
                    self.answer(answer, Err(Error::Revoked));
                    return Ok(());
                }
                if !self.joined(&group)? {
                    self.answer(answer, Err(Error::UnknownGroup(group.to_hex())));
                    return Ok(());
                }
                let item = OutboxItem {
                    group,
                    client_msg_id: rand::random(),
                    payload: payload.encode(),
                    sealed: None,
                };
                let n = self.next_outbox;
                self.next_outbox += 1;
                self.staged.batch.put(key::outbox(n), &item)?;
                self.outbox.push_back(Queued { n, item, sent: None });
                // Sealed now if it can go now: the enqueue and the sealed
                // ciphertext are then one transaction.
                self.pump_outbox(now)?;
                self.answer(answer, Ok(()));
            }
            Command::Request { request, answer } => {
                if self.conn.is_none() {
                    let _ = answer.send(Err(Error::Offline));
                } else {
                    self.request(now, request, Purpose::App(answer));
                }
            }
            Command::Groups { answer } => {
                let r = self.group_summaries();
                self.answer(answer, r);
            }
            Command::Members { group, answer } => {
                let r = self.members(&group);
                self.answer(answer, r);
            }
            Command::SafetyNumber { user, answer } => {
                let r = self.safety_number(&user);
                self.answer(answer, r);
            }
            Command::MarkVerified { user, number, answer } => {
                let r = self.mark_verified(&user, &number);
                self.answer(answer, r);
            }
            Command::Typing { group, active, answer } => {
                if self.conn.is_none() {
                    self.answer(answer, Err(Error::Offline));
                    return Ok(());
                }
                let payload = Payload::new(Content::Typing { active }, now_ms());
                // Sealed outside the message ratchet: a signal that overtakes
                // a backlog costs its messages nothing.
                match self.device.seal_ephemeral(&group, &payload.encode()) {
                    Ok(ciphertext) => {
                        self.staged.transmits.push(ClientFrame::Ephemeral {
                            group,
                            payload: ciphertext.into(),
                        });
                        self.answer(answer, Ok(()));
                    }
                    Err(e) => self.answer(answer, Err(e.into())),
                }
            }
            Command::CreateGroup { group, meta, answer } => match self.device.create_group(&group) {
                Ok(()) => {
                    self.staged.batch.put(key::group(&group), &meta)?;
                    self.emit(Event::Joined { group });
                    self.answer(answer, Ok(()));
                }
                Err(e) => self.answer(answer, Err(e.into())),
            },
            Command::Change { group, change, answer } => {
                if self.conn.is_none() {
                    let _ = answer.send(Err(Error::Offline));
                    return Ok(());
                }
                self.ops
                    .entry(group.clone())
                    .or_default()
                    .push_back(change::Op::change(change, answer));
                self.progress(now, &group)?;
            }
            Command::Leave { group, answer } => {
                if self.conn.is_none() {
                    let _ = answer.send(Err(Error::Offline));
                    return Ok(());
                }
                self.ops
                    .entry(group.clone())
                    .or_default()
                    .push_back(change::Op::leave(answer));
                self.progress(now, &group)?;
            }
            Command::MarkRead { group, seq, answer } => {
                let mut meta: GroupMeta = self
                    .local
                    .get_staged(&self.staged.batch, &key::group(&group))?
                    .unwrap_or_default();
                if seq > meta.read_up_to {
                    meta.read_up_to = seq;
                    self.staged.batch.put(key::group(&group), &meta)?;
                }
                self.answer(answer, Ok(()));
            }
            Command::PutSetting { key, value, answer } => {
                self.staged.batch.put(key, &value)?;
                self.answer(answer, Ok(()));
            }
            Command::Synced { heads, answer } => {
                let r = self.synced(&heads);
                self.answer(answer, r);
            }
        }
        Ok(())
    }

    fn synced(&mut self, heads: &[(GroupId, u64)]) -> Result<bool, Error> {
        if !self.outbox.is_empty() {
            return Ok(false);
        }
        let known = self.device.groups()?;
        for (g, head) in heads {
            if !known.contains(g) || self.flow(g)?.cursor < *head {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn members(&mut self, group: &GroupId) -> Result<Vec<Member>, Error> {
        Ok(self
            .device
            .members(group)?
            .into_iter()
            .map(|m| member(&m.credential.user, m.credential.device))
            .collect())
    }

    fn group_summaries(&mut self) -> Result<Vec<GroupSummary>, Error> {
        let mut out = Vec::new();
        let checked = self.all_checked()?;
        for group in self.device.groups()? {
            let meta: GroupMeta = self
                .local
                .get_staged(&self.staged.batch, &key::group(&group))?
                .unwrap_or_default();
            if meta.left {
                continue;
            }
            let members = self.members(&group)?;
            let seq = self.flow(&group)?.cursor;
            let verified = self.verified(&group, &checked)?;
            out.push(GroupSummary {
                verified,
                unverified_members: meta.impostors.len(),
                shared_name: meta.name_shared,
                seq,
                group,
                name: meta.name,
                direct_with: meta.direct_with,
                own_devices: meta.own_devices,
                members,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
