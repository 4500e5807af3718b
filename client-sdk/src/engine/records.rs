//! What processing an entry records: the history it produces, the MLS
//! roster changes it reports, safety number changes; all staged in the
//! engine's batch.

use std::collections::HashMap;

use hush_crypto::Processed;
use hush_crypto::content::{Content, MessageId, Payload};
use hush_protocol::frame::{LogEntry, MessageKind};
use hush_protocol::{GroupId, UserId};
use serde::{Deserialize, Serialize};

use super::{Engine, member};
use crate::error::Error;
use crate::event::{Event, Member, Message};
use crate::store::{Batch, key};

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

impl Engine {
    /// Stages what one entry does (MLS state held, records in `batch`) and
    /// the cursor past it.
    pub(super) fn stage(&mut self, entry: &LogEntry, batch: &mut Batch, events: &mut Vec<Event>) -> Result<(), Error> {
        let group = entry.group.clone();
        let mine = entry.sender == self.device_id;
        let skip_own = mine && (entry.kind != MessageKind::Commit || !self.device.has_pending_commit(&group)?);
        if entry.payload.is_empty() {
            // Redacted by its sender's user (a message deleted for everyone):
            // nothing left to decrypt.
            tracing::debug!(group = %group, seq = entry.seq, "redacted entry");
        } else if !skip_own {
            match self.device.process(&entry.payload) {
                Ok(processed) => self.processed(batch, events, entry, processed)?,
                Err(e @ (hush_crypto::Error::RosterBinding(_) | hush_crypto::Error::Credential(_)))
                    if entry.kind == MessageKind::Commit =>
                {
                    // A commit that would make the relay's roster and the
                    // group's differ, or bring in a forged leaf: not merged.
                    tracing::warn!(group = %group, seq = entry.seq, error = %e, "rejecting a commit");
                    events.push(Event::CommitRejected {
                        group: group.clone(),
                        seq: entry.seq,
                        reason: e.to_string(),
                    });
                }
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
        &mut self,
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
                self.check_safety(batch, events, &group_id, &users)?;
            }
            Processed::Proposal { group_id, removes, .. } if !removes.is_empty() => {
                // A member asked to leave: the remaining member with the
                // smallest device id commits it.
                let members = self.device.members(&group_id)?;
                let committer = members
                    .iter()
                    .map(|m| m.credential.device)
                    .filter(|d| !removes.iter().any(|r| r.device == *d))
                    .min();
                if committer == Some(self.device_id) {
                    self.ops
                        .entry(group_id)
                        .or_default()
                        .push_back(super::change::Op::self_update());
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

    pub(super) fn mark_left(&self, batch: &mut Batch, group: &GroupId) -> Result<(), Error> {
        let mut meta: GroupMeta = self.local.get_staged(batch, &key::group(group))?.unwrap_or_default();
        meta.left = true;
        batch.put(key::group(group), &meta)
    }

    /// Records what a payload says in history. Used for received messages and
    /// for this device's own once the relay stored them.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_content(
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
        &mut self,
        batch: &mut Batch,
        events: &mut Vec<Event>,
        group: &GroupId,
        users: &[UserId],
    ) -> Result<(), Error> {
        let members = self.device.members(group)?;
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
                    let number = crate::client::safety_number_of(&mut self.device, group, &self.user, user)?;
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
    pub(super) fn note_devices(&mut self, group: &GroupId) -> Result<(), Error> {
        let members = self.device.members(group)?;
        let mut by_user: HashMap<UserId, Vec<String>> = HashMap::new();
        for m in members {
            by_user
                .entry(m.credential.user.clone())
                .or_default()
                .push(hex::encode(m.public_key));
        }
        for (user, keys) in by_user {
            if user == self.user {
                continue;
            }
            let k = key::known_devices(&user.0);
            let mut known: Vec<String> = self.local.get_staged(&self.staged.batch, &k)?.unwrap_or_default();
            for key in keys {
                if !known.contains(&key) {
                    known.push(key);
                }
            }
            known.sort();
            self.staged.batch.put(k, &known)?;
        }
        Ok(())
    }

    /// The SDK's records of a group just joined from a Welcome.
    /// Staged with the MLS state of the join: the group's label and the
    /// cursor where its log starts for this device.
    pub(super) fn stage_join(&mut self, group: &GroupId, commit_seq: u64) -> Result<(), Error> {
        self.staged.batch.put(key::cursor(group), &commit_seq)?;
        let mut meta: GroupMeta = self
            .local
            .get_staged(&self.staged.batch, &key::group(group))?
            .unwrap_or_default();
        meta.left = false;
        // Label a joined group by who is in it: a group of one other user is
        // a direct conversation with them.
        let mut others: Vec<String> = self
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
        self.staged.batch.put(key::group(group), &meta)?;
        self.note_devices(group)
    }
}
