//! Processing what the relay delivers: log entries (in order, each exactly
//! once, gaps filled from history), inbox entries (Welcomes), signals and
//! notices; and the commit round trip with its stale-epoch retry.
//!
//! Everything here runs with the client's state lock held, so MLS state, the
//! local database and the cursors change in one order.

use std::collections::HashMap;

use hush_crypto::content::{Content, MessageId, Payload};
use hush_crypto::{Commit, Device, Processed};
use hush_protocol::frame::{
    Direction, InboxEntry, InboxKind, LogEntry, MessageKind, Reply, Request, RosterChange, Send,
};
use hush_protocol::{DeviceId, ErrorCode, GroupId, UserId};
use serde::{Deserialize, Serialize};

use crate::client::Inner;
use crate::error::Error;
use crate::event::{Event, Member, Message};
use crate::store::{Batch, key};
use crate::wire::WireClient;

/// What the SDK keeps about a group beside MLS.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct GroupMeta {
    /// A local label.
    pub name: String,
    /// For a direct conversation: the partner.
    pub direct_with: Option<String>,
    /// The private group of this user's own devices.
    #[serde(default)]
    pub own_devices: bool,
    /// This device left or was removed.
    #[serde(default)]
    pub left: bool,
    /// Highest seq this user has read (synced between the user's devices).
    #[serde(default)]
    pub read_up_to: u64,
}

/// The client's mutable state, behind one async lock.
pub(crate) struct State {
    pub device: Device,
    /// Entries of groups whose Welcome has not been processed yet.
    pub waiting: HashMap<GroupId, Vec<LogEntry>>,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn member(user: &UserId, device: DeviceId) -> Member {
    Member {
        user: user.clone(),
        device,
    }
}

impl Inner {
    pub(crate) fn emit(&self, event: Event) {
        // No subscriber is fine: history is in the database.
        let _ = self.events.send(event);
    }

    pub(crate) fn group_meta(&self, group: &GroupId) -> Result<Option<GroupMeta>, Error> {
        self.local.get(&key::group(group))
    }

    /// Handles one log entry delivered (or fetched) for a group.
    pub(crate) async fn on_entry(&self, st: &mut State, wire: &WireClient, entry: LogEntry) -> Result<(), Error> {
        let group = entry.group.clone();
        let cursor = self.local.cursor(&group)?;
        if entry.seq <= cursor {
            return Ok(());
        }
        if !st.device.groups()?.contains(&group) {
            // Not joined yet: the Welcome is on its way in the inbox.
            st.waiting.entry(group).or_default().push(entry);
            return Ok(());
        }
        if entry.seq > cursor + 1 {
            self.fill(st, wire, &group, cursor, entry.seq - 1).await?;
        }
        let seq = entry.seq;
        self.apply(st, entry)?;
        let _ = wire.ack(&group, seq).await;
        Ok(())
    }

    /// Fetches and applies entries after `cursor` up to `until` (inclusive)
    /// from the relay's history.
    pub(crate) async fn fill(
        &self,
        st: &mut State,
        wire: &WireClient,
        group: &GroupId,
        cursor: u64,
        until: u64,
    ) -> Result<(), Error> {
        let mut from = cursor + 1;
        while from <= until {
            let reply = wire
                .request(Request::History {
                    group: group.clone(),
                    from_seq: from,
                    direction: Direction::Forward,
                    limit: 500,
                })
                .await;
            let (entries, next) = match reply {
                Ok(Reply::History { entries, next_from }) => (entries, next_from),
                Ok(other) => return Err(Error::Connection(format!("unexpected reply {other:?}"))),
                Err(e) if e.code() == Some(ErrorCode::Truncated) => {
                    let first = match &e {
                        crate::wire::ClientError::Relay(w) => match w.detail {
                            hush_protocol::ErrorDetail::FirstAvailable(f) => f,
                            _ => until + 1,
                        },
                        _ => until + 1,
                    };
                    self.truncated(group, first)?;
                    from = first;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let got = entries.len();
            for e in entries {
                if e.seq > until {
                    return Ok(());
                }
                let seq = e.seq;
                if seq > self.local.cursor(group)? {
                    self.apply(st, e)?;
                }
                from = seq + 1;
            }
            match next {
                Some(n) if got > 0 => from = from.max(n),
                _ => break,
            }
        }
        Ok(())
    }

    /// Catches a group up with the relay's log (before a commit, after a
    /// stale-epoch refusal, after reconnecting with a pending commit).
    pub(crate) async fn catch_up(&self, st: &mut State, wire: &WireClient, group: &GroupId) -> Result<(), Error> {
        let cursor = self.local.cursor(group)?;
        self.fill(st, wire, group, cursor, u64::MAX - 1).await
    }

    pub(crate) fn truncated(&self, group: &GroupId, first_available: u64) -> Result<(), Error> {
        let cursor = self.local.cursor(group)?;
        if first_available > cursor + 1 {
            self.local.put(key::cursor(group), &(first_available - 1))?;
            self.emit(Event::Truncated {
                group: group.clone(),
                first_available,
            });
        }
        Ok(())
    }

    /// Applies one entry at `cursor + 1` and moves the cursor. The MLS state
    /// change (the message key used up, or the new epoch), the history it
    /// produced and the cursor past it become durable in one transaction: a
    /// crash leaves either all of them or none, and then the entry is
    /// delivered and processed again.
    fn apply(&self, st: &mut State, entry: LogEntry) -> Result<(), Error> {
        let mut batch = Batch::default();
        let mut events = Vec::new();
        st.device.hold_commits();
        match self.stage(st, &entry, &mut batch, &mut events) {
            Ok(()) => st.device.commit_held(&batch.into_side_writes())?,
            Err(e) => {
                st.device.discard_held();
                return Err(e);
            }
        }
        for e in events {
            self.emit(e);
        }
        Ok(())
    }

    fn stage(&self, st: &mut State, entry: &LogEntry, batch: &mut Batch, events: &mut Vec<Event>) -> Result<(), Error> {
        let group = entry.group.clone();
        let mine = entry.sender == self.device_id;
        let skip_own = mine && (entry.kind != MessageKind::Commit || !st.device.has_pending_commit(&group)?);
        if entry.payload.is_empty() {
            // Redacted by its sender's user (a message deleted for everyone):
            // nothing left to decrypt.
            tracing::debug!(group = %group, seq = entry.seq, "redacted entry");
        } else if !skip_own {
            match st.device.process(&entry.payload) {
                Ok(processed) => self.processed(st, batch, events, entry, processed)?,
                Err(e) => {
                    // Undecryptable (too old an epoch, corrupted, not for
                    // us): it can never be read, so move past it.
                    tracing::warn!(group = %group, seq = entry.seq, error = %e, "skipping an entry that does not process");
                }
            }
        }
        batch.put(key::cursor(&group), &entry.seq)
    }

    fn processed(
        &self,
        st: &mut State,
        batch: &mut Batch,
        events: &mut Vec<Event>,
        entry: &LogEntry,
        processed: Processed,
    ) -> Result<(), Error> {
        match processed {
            Processed::Application { sender, plaintext, .. } => {
                let payload = match Payload::decode(&plaintext) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable payload");
                        return Ok(());
                    }
                };
                let who = member(&sender.user, sender.device);
                self.apply_content(batch, events, &entry.group, entry.seq, entry.timestamp_ms, who, payload)?;
            }
            Processed::Commit {
                group_id,
                added,
                removed,
                ..
            } => {
                for c in &added {
                    events.push(Event::MemberAdded {
                        group: group_id.clone(),
                        member: member(&c.user, c.device),
                    });
                }
                for c in &removed {
                    events.push(Event::MemberRemoved {
                        group: group_id.clone(),
                        member: member(&c.user, c.device),
                    });
                }
                let users: Vec<UserId> = added.iter().chain(&removed).map(|c| c.user.clone()).collect();
                self.check_safety(st, batch, events, &group_id, &users)?;
            }
            Processed::Proposal { group_id, removes, .. } if !removes.is_empty() => {
                // A member asked to leave: the remaining member with the
                // smallest device id commits it.
                let members = st.device.members(&group_id)?;
                let committer = members
                    .iter()
                    .map(|m| m.credential.device)
                    .filter(|d| !removes.iter().any(|r| r.device == *d))
                    .min();
                if committer == Some(self.device_id) {
                    let _ = self.commit_proposals.send(group_id);
                }
            }
            Processed::Removed { group_id, .. } => {
                self.mark_left(batch, &group_id)?;
                events.push(Event::Removed { group: group_id });
            }
            Processed::OwnCommitMerged { .. } => {}
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn mark_left(&self, batch: &mut Batch, group: &GroupId) -> Result<(), Error> {
        let mut meta: GroupMeta = self.local.get_staged(batch, &key::group(group))?.unwrap_or_default();
        meta.left = true;
        batch.put(key::group(group), &meta)
    }

    /// Records what a payload says in history. Used for received messages and
    /// for this device's own once the relay stored them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply_content(
        &self,
        batch: &mut Batch,
        events: &mut Vec<Event>,
        group: &GroupId,
        seq: u64,
        relay_at_ms: u64,
        sender: Member,
        payload: Payload,
    ) -> Result<(), Error> {
        let own = sender.user == self.user;
        let id = hex::encode(payload.id.0);
        let target = |batch: &Batch, t: &MessageId| -> Result<Option<(Vec<u8>, Message)>, Error> {
            let Some((g, s)): Option<(GroupId, u64)> = self.local.get_staged(batch, &key::message_id(&t.0))? else {
                return Ok(None);
            };
            if g != *group {
                return Ok(None);
            }
            let k = key::history(&g, s);
            Ok(self.local.get_staged::<Message>(batch, &k)?.map(|m| (k, m)))
        };
        match payload.content {
            Content::Text { text, reply_to } => {
                let m = Message {
                    group: group.clone(),
                    seq,
                    id: id.clone(),
                    sender,
                    own,
                    sent_at_ms: payload.sent_at_ms,
                    relay_at_ms,
                    text,
                    reply_to: reply_to.map(|r| hex::encode(r.0)),
                    edited: false,
                    deleted: false,
                    reactions: Default::default(),
                    read_by: Vec::new(),
                };
                batch.put(key::history(group, seq), &m)?;
                batch.put(key::message_id(&payload.id.0), &(group.clone(), seq))?;
                events.push(Event::Message(m));
            }
            Content::Attachment { attachment, caption } => {
                let text = format!(
                    "[attachment {} {} bytes{}]",
                    attachment.name.unwrap_or_default(),
                    attachment.size,
                    caption.map(|c| format!(": {c}")).unwrap_or_default()
                );
                let p = Payload {
                    content: Content::Text { text, reply_to: None },
                    ..payload
                };
                return self.apply_content(batch, events, group, seq, relay_at_ms, sender, p);
            }
            Content::Edit { target: t, text } => {
                if let Some((k, mut m)) = target(batch, &t)?
                    && m.sender.user == sender.user
                    && !m.deleted
                {
                    m.text = text.clone();
                    m.edited = true;
                    batch.put(k, &m)?;
                    events.push(Event::Edited {
                        group: group.clone(),
                        id: m.id,
                        text,
                        by: sender,
                    });
                }
            }
            Content::Delete { target: t } => {
                if let Some((k, mut m)) = target(batch, &t)?
                    && m.sender.user == sender.user
                {
                    m.text.clear();
                    m.deleted = true;
                    m.reactions.clear();
                    batch.put(k, &m)?;
                    events.push(Event::Deleted {
                        group: group.clone(),
                        id: m.id,
                        by: sender,
                    });
                }
            }
            Content::Reaction {
                target: t,
                emoji,
                remove,
            } => {
                if let Some((k, mut m)) = target(batch, &t)? {
                    let users = m.reactions.entry(emoji.clone()).or_default();
                    users.retain(|u| *u != sender.user);
                    if !remove {
                        users.push(sender.user.clone());
                    }
                    if users.is_empty() {
                        m.reactions.remove(&emoji);
                    }
                    batch.put(k, &m)?;
                    events.push(Event::Reaction {
                        group: group.clone(),
                        id: m.id,
                        emoji,
                        removed: remove,
                        by: sender,
                    });
                }
            }
            Content::ReadReceipt { messages } => {
                let mut ids = Vec::new();
                for t in &messages {
                    if let Some((k, mut m)) = target(batch, t)? {
                        if m.sender.user != sender.user && !m.read_by.contains(&sender.user) {
                            m.read_by.push(sender.user.clone());
                            batch.put(k, &m)?;
                        }
                        ids.push(m.id);
                    }
                }
                if !ids.is_empty() {
                    events.push(Event::Receipt {
                        group: group.clone(),
                        ids,
                        by: sender,
                    });
                }
            }
            Content::Typing { active } => events.push(Event::Typing {
                group: group.clone(),
                by: sender,
                active,
            }),
            Content::SyncRead { group: g, seq } if own => {
                if let Ok(bytes) = hex::decode(&g) {
                    let g = GroupId(bytes);
                    if let Some(mut meta) = self.local.get_staged::<GroupMeta>(batch, &key::group(&g))?
                        && seq > meta.read_up_to
                    {
                        meta.read_up_to = seq;
                        batch.put(key::group(&g), &meta)?;
                    }
                }
            }
            Content::SyncHistory {
                group: g,
                read_up_to,
                messages,
            } if own => {
                let Ok(bytes) = hex::decode(&g) else { return Ok(()) };
                let g = GroupId(bytes);
                let records: Vec<Message> = serde_json::from_value(messages).unwrap_or_default();
                let mut added = 0;
                for mut m in records {
                    let k = key::history(&g, m.seq);
                    if self.local.get_staged::<Message>(batch, &k)?.is_some() {
                        continue;
                    }
                    m.group = g.clone();
                    m.own = m.sender.user == self.user;
                    if let Some(id) = hex::decode(&m.id).ok().and_then(|b| <[u8; 16]>::try_from(b).ok()) {
                        batch.put(key::message_id(&id), &(g.clone(), m.seq))?;
                    }
                    batch.put(k, &m)?;
                    added += 1;
                }
                let mut meta: GroupMeta = self.local.get_staged(batch, &key::group(&g))?.unwrap_or_default();
                if read_up_to > meta.read_up_to {
                    meta.read_up_to = read_up_to;
                    batch.put(key::group(&g), &meta)?;
                }
                if added > 0 {
                    events.push(Event::HistoryImported {
                        group: g,
                        messages: added,
                    });
                }
            }
            Content::SyncSetting { name, value } if own => {
                let k = key::setting(&format!("user/{name}"));
                if self.local.get_staged::<serde_json::Value>(batch, &k)?.as_ref() != Some(&value) {
                    batch.put(k, &value)?;
                    events.push(Event::SettingChanged { name, value });
                }
            }
            other => tracing::debug!(kind = other.kind(), "payload kind not shown"),
        }
        Ok(())
    }

    /// Compares each user's devices in `group` with those last seen and
    /// warns when they changed.
    fn check_safety(
        &self,
        st: &mut State,
        batch: &mut Batch,
        events: &mut Vec<Event>,
        group: &GroupId,
        users: &[UserId],
    ) -> Result<(), Error> {
        let members = st.device.members(group)?;
        for user in users {
            if *user == self.user {
                continue;
            }
            let mut keys: Vec<String> = members
                .iter()
                .filter(|m| m.credential.user == *user)
                .map(|m| hex::encode(m.public_key))
                .collect();
            keys.sort();
            if keys.is_empty() {
                continue;
            }
            let k = key::known_devices(&user.0);
            let before: Option<Vec<String>> = self.local.get_staged(batch, &k)?;
            if before.as_ref() != Some(&keys) {
                batch.put(k, &keys)?;
                if before.is_some() {
                    let number = crate::client::safety_number_of(&mut st.device, group, &self.user, user)?;
                    events.push(Event::SafetyNumberChanged {
                        user: user.clone(),
                        safety_number: number,
                    });
                }
            }
        }
        Ok(())
    }

    /// Remembers every partner's current devices (no warning: first sight).
    pub(crate) fn note_devices(&self, st: &mut State, group: &GroupId) -> Result<(), Error> {
        let members = st.device.members(group)?;
        let mut by_user: HashMap<UserId, Vec<String>> = HashMap::new();
        for m in members {
            by_user
                .entry(m.credential.user.clone())
                .or_default()
                .push(hex::encode(m.public_key));
        }
        let mut batch = Batch::default();
        for (user, mut keys) in by_user {
            if user == self.user {
                continue;
            }
            keys.sort();
            let k = key::known_devices(&user.0);
            let mut known: Vec<String> = self.local.get(&k)?.unwrap_or_default();
            for key in keys {
                if !known.contains(&key) {
                    known.push(key);
                }
            }
            known.sort();
            batch.put(k, &known)?;
        }
        self.local.commit(batch)
    }

    /// The SDK's records of a group just joined from a Welcome.
    fn stage_join(&self, st: &mut State, group: &GroupId, commit_seq: u64) -> Result<Batch, Error> {
        let mut batch = Batch::default();
        batch.put(key::cursor(group), &commit_seq)?;
        let mut meta: GroupMeta = self.local.get(&key::group(group))?.unwrap_or_default();
        meta.left = false;
        // Label a joined group by who is in it: a group of one other user is
        // a direct conversation with them.
        let mut others: Vec<String> = st
            .device
            .members(group)?
            .into_iter()
            .map(|m| m.credential.user.0)
            .filter(|u| *u != self.user.0)
            .collect();
        others.sort();
        others.dedup();
        match others.as_slice() {
            [] => {
                meta.own_devices = true;
                meta.name = "own devices".into();
            }
            [one] => {
                meta.direct_with = Some(one.clone());
                meta.name = one.clone();
            }
            many => meta.name = many.join(","),
        }
        batch.put(key::group(group), &meta)?;
        Ok(batch)
    }

    /// Handles an inbox entry: joins groups from Welcomes.
    pub(crate) async fn on_inbox(&self, st: &mut State, wire: &WireClient, entry: InboxEntry) -> Result<(), Error> {
        match entry.kind {
            InboxKind::Welcome { group, commit_seq } => {
                if st.device.groups()?.contains(&group) {
                    // Already joined (inbox replayed after a crash).
                } else {
                    // The group's MLS state, its label and the cursor where
                    // its log starts are made durable in one transaction.
                    st.device.hold_commits();
                    let staged = match st.device.join(&entry.payload, None) {
                        Ok(joined) if joined == group => self.stage_join(st, &group, commit_seq).map(Some),
                        Ok(other) => {
                            tracing::warn!(%other, "Welcome names another group than the relay said");
                            Ok(None)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Welcome does not process");
                            Ok(None)
                        }
                    };
                    match staged {
                        Ok(Some(batch)) => {
                            st.device.commit_held(&batch.into_side_writes())?;
                            self.note_devices(st, &group)?;
                            self.emit(Event::Joined { group: group.clone() });
                            let _ = self.replenish.send(());
                        }
                        Ok(None) => st.device.discard_held(),
                        Err(e) => {
                            st.device.discard_held();
                            return Err(e);
                        }
                    }
                }
                if let Some(waiting) = st.waiting.remove(&group) {
                    for e in waiting {
                        Box::pin(self.on_entry(st, wire, e)).await?;
                    }
                }
            }
            InboxKind::Direct => {
                tracing::debug!(sender = %entry.sender, "direct message ignored");
            }
        }
        let _ = wire
            .send(&hush_protocol::frame::ClientFrame::AckInbox { seq: entry.seq })
            .await;
        Ok(())
    }

    /// Makes a group change (`make` builds the commit) and gets it accepted by
    /// the relay: on a stale-epoch refusal, discards it, processes the
    /// commits missed and tries again. Returns the commit's seq.
    pub(crate) async fn commit_change(
        &self,
        st: &mut State,
        wire: &WireClient,
        group: &GroupId,
        mut make: impl FnMut(&mut Device) -> Result<Option<Commit>, Error>,
    ) -> Result<Option<u64>, Error> {
        for _attempt in 0..20 {
            self.catch_up(st, wire, group).await?;
            let Some(commit) = make(&mut st.device)? else {
                return Ok(None);
            };
            let roster = RosterChange {
                add: commit.added.iter().map(|c| c.device).collect(),
                remove: commit.removed.iter().map(|c| c.device).collect(),
                welcome: commit.welcome.clone().map(Into::into),
            };
            let send = Send {
                group: group.clone(),
                client_msg_id: rand::random(),
                kind: MessageKind::Commit,
                epoch: commit.epoch,
                payload: commit.message.clone().into(),
                roster: Some(roster),
            };
            match wire.request(Request::Send(send)).await {
                Ok(Reply::Sent { seq, .. }) => {
                    st.device.merge_pending_commit(group)?;
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
                    self.note_devices(st, group)?;
                    return Ok(Some(seq));
                }
                Ok(other) => {
                    st.device.discard_pending_commit(group)?;
                    return Err(Error::Connection(format!("unexpected reply {other:?}")));
                }
                Err(e) if e.code() == Some(ErrorCode::StaleEpoch) => {
                    tracing::debug!(%group, "commit lost the epoch race; catching up and retrying");
                    st.device.discard_pending_commit(group)?;
                }
                Err(e @ crate::wire::ClientError::Relay(_)) => {
                    st.device.discard_pending_commit(group)?;
                    return Err(e.into());
                }
                Err(e) => {
                    // The answer was lost: the commit stays pending and is
                    // resolved on the next connection (merged if the log has
                    // it, discarded otherwise).
                    return Err(e.into());
                }
            }
        }
        Err(Error::Connection("too many concurrent group changes".into()))
    }

    /// After reconnecting: a commit whose answer was lost is merged if the
    /// relay stored it, discarded otherwise.
    pub(crate) async fn resolve_pending(&self, st: &mut State, wire: &WireClient) -> Result<(), Error> {
        for group in st.device.groups()? {
            if st.device.has_pending_commit(&group)? {
                self.catch_up(st, wire, &group).await?;
                if st.device.has_pending_commit(&group)? {
                    st.device.discard_pending_commit(&group)?;
                }
            }
        }
        Ok(())
    }
}
