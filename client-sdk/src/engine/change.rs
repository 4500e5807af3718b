//! Group changes: one at a time per group, each a small state machine.
//!
//! ```text
//!  Start ──▶ CatchingUp (history pages to the relay's head)
//!              │ caught up
//!              ▼
//!            make the commit (MLS pending commit, durable with the batch)
//!              │ Send (after the batch is durable); the group's entries wait
//!              ▼
//!            Sent ── Sent{seq} ──▶ merge, events, answer
//!              └──── StaleEpoch ──▶ discard, back to Start (at most 20 times)
//! ```
//!
//! A commit whose answer is lost (timeout, connection gone) stays pending in
//! MLS; the next connection resolves it ([`Op::resolve`]): after catching up
//! it has either been merged (the log had it) or is discarded.

use std::time::Instant;

use hush_crypto::Commit;
use hush_protocol::frame::{MessageKind, Reply, Request, RosterChange, Send};
use hush_protocol::{DeviceId, ErrorCode, GroupId, UserId, WireError};

use super::{Answer, Engine, Purpose, member};
use crate::error::Error;
use crate::event::Event;

/// Stale-epoch retries before a change is given up.
const MAX_ATTEMPTS: u32 = 20;

/// A change to a group's membership.
pub(crate) enum Change {
    /// Adds the devices of these key packages (unless `unless_member` is
    /// already in the group).
    Add {
        packages: Vec<Vec<u8>>,
        unless_member: Option<DeviceId>,
    },
    /// Removes every device of a user.
    RemoveUser(UserId),
    /// Removes one device, if it is in the group.
    RemoveDevice(DeviceId),
    /// A commit with no roster change (commits a member's leave proposal).
    SelfUpdate,
}

enum Kind {
    Change(Change, Answer<Option<u64>>),
    Leave(Answer<()>),
    Resolve,
}

enum Stage {
    Start,
    CatchingUp,
    Sent(Box<Commit>),
    LeaveSent,
}

/// One group change in progress (or waiting for the one before it).
pub(crate) struct Op {
    kind: Kind,
    stage: Stage,
    attempts: u32,
}

impl Op {
    pub fn change(change: Change, answer: Answer<Option<u64>>) -> Self {
        Op {
            kind: Kind::Change(change, answer),
            stage: Stage::Start,
            attempts: 0,
        }
    }

    pub fn leave(answer: Answer<()>) -> Self {
        Op {
            kind: Kind::Leave(answer),
            stage: Stage::Start,
            attempts: 0,
        }
    }

    /// Commits a member's leave proposal; nobody waits for the answer.
    pub fn self_update() -> Self {
        let (answer, _) = tokio::sync::oneshot::channel();
        Self::change(Change::SelfUpdate, answer)
    }

    pub fn resolve() -> Self {
        Op {
            kind: Kind::Resolve,
            stage: Stage::Start,
            attempts: 0,
        }
    }

    pub fn is_resolve(&self) -> bool {
        matches!(self.kind, Kind::Resolve)
    }

    /// Tells the caller it failed (the op is dropped).
    pub fn fail(self, e: Error) {
        match self.kind {
            Kind::Change(_, a) => drop(a.send(Err(e))),
            Kind::Leave(a) => drop(a.send(Err(e))),
            Kind::Resolve => {}
        }
    }
}

impl Engine {
    /// Moves the group's current op as far as it can go now.
    pub(super) fn progress(&mut self, now: Instant, group: &GroupId) -> Result<(), Error> {
        loop {
            let Some(op) = self.ops.get_mut(group).and_then(|q| q.front_mut()) else {
                return Ok(());
            };
            match op.stage {
                Stage::Start => {
                    op.stage = Stage::CatchingUp;
                    let cursor = {
                        let flow = self.flow(group)?;
                        flow.caught_up = false;
                        if flow.fetching {
                            // A fetch in flight pages to the head: wait for it.
                            return Ok(());
                        }
                        flow.fetching = true;
                        flow.cursor
                    };
                    self.fetch(now, group, cursor + 1);
                    return Ok(());
                }
                Stage::CatchingUp => {
                    if !self.flow(group)?.caught_up {
                        return Ok(());
                    }
                    let Some(op) = self.ops.get_mut(group).and_then(|q| q.pop_front()) else {
                        return Ok(());
                    };
                    if let Some(next) = self.after_catch_up(now, group, op)? {
                        // Waiting for the relay: back at the front.
                        self.ops.entry(group.clone()).or_default().push_front(next);
                        return Ok(());
                    }
                }
                Stage::Sent(_) | Stage::LeaveSent => return Ok(()),
            }
        }
    }

    /// The group is caught up: do the op's step. Returns the op if it now
    /// waits for the relay.
    fn after_catch_up(&mut self, now: Instant, group: &GroupId, mut op: Op) -> Result<Option<Op>, Error> {
        match op.kind {
            Kind::Resolve => {
                if self.joined(group)? && self.device.has_pending_commit(group)? {
                    self.device.discard_pending_commit(group)?;
                }
                // Messages held back by the pending commit may go now.
                self.pump_outbox(now)?;
                Ok(None)
            }
            Kind::Change(change, answer) => {
                let made = if self.joined(group)? {
                    self.make_commit(group, &change)
                } else {
                    Err(Error::UnknownGroup(group.to_hex()))
                };
                match made {
                    Ok(None) => {
                        self.answer(answer, Ok(None));
                        Ok(None)
                    }
                    Err(e) => {
                        self.answer(answer, Err(e));
                        Ok(None)
                    }
                    Ok(Some(commit)) => {
                        let send = Send {
                            group: group.clone(),
                            client_msg_id: rand::random(),
                            kind: MessageKind::Commit,
                            epoch: commit.epoch,
                            payload: commit.message.clone().into(),
                            roster: Some(RosterChange {
                                add: commit.added.iter().map(|c| c.device).collect(),
                                remove: commit.removed.iter().map(|c| c.device).collect(),
                                welcome: commit.welcome.clone().map(Into::into),
                            }),
                        };
                        // Goes out after the batch made the pending commit
                        // durable; until the answer the group's entries wait.
                        self.request(now, Request::Send(send), Purpose::Commit(group.clone()));
                        self.flow(group)?.held = true;
                        op.kind = Kind::Change(change, answer);
                        op.stage = Stage::Sent(Box::new(commit));
                        Ok(Some(op))
                    }
                }
            }
            Kind::Leave(answer) => {
                let made = (|| -> Result<(u64, Vec<u8>), Error> {
                    let epoch = self.device.epoch(group)?;
                    Ok((epoch, self.device.leave(group)?))
                })();
                match made {
                    Ok((epoch, proposal)) => {
                        self.request(
                            now,
                            Request::Send(Send {
                                group: group.clone(),
                                client_msg_id: rand::random(),
                                kind: MessageKind::Proposal,
                                epoch,
                                payload: proposal.into(),
                                roster: None,
                            }),
                            Purpose::Leave(group.clone()),
                        );
                        op.kind = Kind::Leave(answer);
                        op.stage = Stage::LeaveSent;
                        Ok(Some(op))
                    }
                    Err(e) => {
                        self.answer(answer, Err(e));
                        Ok(None)
                    }
                }
            }
        }
    }

    fn make_commit(&mut self, group: &GroupId, change: &Change) -> Result<Option<Commit>, Error> {
        let d = &mut self.device;
        Ok(match change {
            Change::Add {
                packages,
                unless_member,
            } => {
                if let Some(dev) = unless_member
                    && d.members(group)?.iter().any(|m| m.credential.device == *dev)
                {
                    return Ok(None);
                }
                // A bad package (forged signature, not certified) leaves
                // its device out; the others are added. None good: the error.
                let mut refs: Vec<&[u8]> = Vec::with_capacity(packages.len());
                let mut last_error = None;
                for p in packages {
                    match d.check_key_package(p) {
                        Ok(_) => refs.push(p),
                        Err(e) => {
                            tracing::warn!(error = %e, "leaving out a key package that does not check");
                            last_error = Some(e);
                        }
                    }
                }
                if let (true, Some(e)) = (refs.is_empty(), last_error) {
                    return Err(e.into());
                }
                Some(d.add_members(group, &refs)?)
            }
            Change::RemoveUser(user) => {
                let devices: Vec<DeviceId> = d
                    .members(group)?
                    .into_iter()
                    .filter(|m| m.credential.user == *user)
                    .map(|m| m.credential.device)
                    .collect();
                if devices.is_empty() {
                    return Ok(None);
                }
                Some(d.remove_members(group, &devices)?)
            }
            Change::RemoveDevice(device) => {
                if !d.members(group)?.iter().any(|m| m.credential.device == *device) {
                    return Ok(None);
                }
                Some(d.remove_members(group, &[*device])?)
            }
            Change::SelfUpdate => Some(d.self_update(group)?),
        })
    }

    pub(super) fn on_commit_answer(
        &mut self,
        now: Instant,
        group: &GroupId,
        result: Result<Reply, WireError>,
    ) -> Result<(), Error> {
        let Some(op) = self.ops.get_mut(group).and_then(|q| q.pop_front()) else {
            return Ok(());
        };
        let Op {
            kind: Kind::Change(change, answer),
            stage: Stage::Sent(commit),
            attempts,
        } = op
        else {
            // Not the op that sent it (cannot happen: one op per group).
            self.ops.entry(group.clone()).or_default().push_front(op);
            return Ok(());
        };
        self.flow(group)?.held = false;
        match result {
            Ok(Reply::Sent { seq, .. }) => {
                self.device.merge_pending_commit(group)?;
                for c in &commit.added {
                    self.emit(Event::MemberAdded {
                        group: group.clone(),
                        member: member(&c.user, c.device),
                    });
                }
                for c in &commit.removed {
                    self.emit(Event::MemberRemoved {
                        group: group.clone(),
                        member: member(&c.user, c.device),
                    });
                }
                self.note_listed(&commit.added)?;
                self.check_identities(now, group, true)?;
                self.answer(answer, Ok(Some(seq)));
            }
            Ok(other) => {
                self.device.discard_pending_commit(group)?;
                self.answer(answer, Err(Error::Connection(format!("unexpected reply {other:?}"))));
            }
            Err(e) if e.code == ErrorCode::StaleEpoch && attempts + 1 < MAX_ATTEMPTS => {
                tracing::debug!(%group, "commit lost the epoch race; catching up and retrying");
                self.device.discard_pending_commit(group)?;
                self.ops.entry(group.clone()).or_default().push_front(Op {
                    kind: Kind::Change(change, answer),
                    stage: Stage::Start,
                    attempts: attempts + 1,
                });
            }
            Err(e) => {
                self.device.discard_pending_commit(group)?;
                let err = if e.code == ErrorCode::StaleEpoch {
                    Error::Connection("too many concurrent group changes".into())
                } else {
                    Error::from_wire(e)
                };
                self.answer(answer, Err(err));
            }
        }
        self.advance(now, group)?;
        self.progress(now, group)?;
        self.pump_outbox(now)
    }

    pub(super) fn on_leave_answer(
        &mut self,
        now: Instant,
        group: &GroupId,
        result: Result<Reply, WireError>,
    ) -> Result<(), Error> {
        let Some(op) = self.ops.get_mut(group).and_then(|q| q.pop_front()) else {
            return Ok(());
        };
        let Op {
            kind: Kind::Leave(answer),
            ..
        } = op
        else {
            self.ops.entry(group.clone()).or_default().push_front(op);
            return Ok(());
        };
        match result {
            Ok(_) => {
                let mut batch = std::mem::take(&mut self.staged.batch);
                let r = self.mark_left(&mut batch, group);
                self.staged.batch = batch;
                r?;
                self.emit(Event::Removed { group: group.clone() });
                self.answer(answer, Ok(()));
            }
            Err(e) => self.answer(answer, Err(Error::from_wire(e))),
        }
        self.progress(now, group)
    }
}
