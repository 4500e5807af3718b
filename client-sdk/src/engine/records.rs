//! What processing an entry records: the history it produces, the MLS
//! roster changes it reports, safety number changes; all staged in the
//! engine's batch.

use hush_crypto::Processed;
use hush_crypto::content::{Content, MessageId, Payload};
use hush_protocol::GroupId;
use hush_protocol::frame::{LogEntry, MessageKind};
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
    /// Joined from a Welcome: named from its members once their identities
    /// are checked.
    #[serde(default)]
    pub label_pending: bool,
    /// Leaves whose claimed user does not list their device at the relay:
    /// (user, device id in hex).
    #[serde(default)]
    pub impostors: Vec<(String, String)>,
    /// `name` is the group's shared name (a `group_name` message), the same
    /// for every member, rather than a local label.
    #[serde(default)]
    pub name_shared: bool,
    /// This device started it as a direct conversation (a joined group of
    /// two is taken as direct only until a shared name says otherwise).
    #[serde(default)]
    pub created_direct: bool,
}

/// Longest shared group name kept, in characters.
pub(crate) const MAX_GROUP_NAME_CHARS: usize = 128;

/// A shared name as shown: control characters dropped, trimmed, at most
/// [`MAX_GROUP_NAME_CHARS`].
pub(crate) fn clean_name(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(MAX_GROUP_NAME_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

impl GroupMeta {
    /// The private group of this user's devices, every member checked.
    pub fn trusted_own_devices(&self) -> bool {
        self.own_devices && self.impostors.is_empty() && !self.label_pending
    }
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
                Err(
                    e @ (hush_crypto::Error::RosterBinding(_)
                    | hush_crypto::Error::Credential(_)
                    | hush_crypto::Error::Mls(_)
                    | hush_crypto::Error::Inspect(_)),
                ) if entry.kind == MessageKind::Commit => {
                    // A commit that would make the relay's roster and the
                    // group's differ, brings in a forged leaf, or does not
                    // process: not merged. Every member fails it alike (same
                    // epoch secrets), and the relay's epoch moved past the
                    // group's: the relay is asked to void it.
                    tracing::warn!(group = %group, seq = entry.seq, error = %e, "rejecting a commit");
                    events.push(Event::CommitRejected {
                        group: group.clone(),
                        seq: entry.seq,
                        reason: e.to_string(),
                    });
                    self.to_void.push((group.clone(), entry.seq));
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
        // Sync records (read state, history, settings) count only from this
        // user's devices in their own-devices group, every member checked.
        let sync =
            own && matches!(
                payload.content,
                Content::SyncRead { .. } | Content::SyncHistory { .. } | Content::SyncSetting { .. }
            ) && self
                .local
                .get_staged::<GroupMeta>(batch, &key::group(group))?
                .is_some_and(|m| m.trusted_own_devices());
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
            Content::GroupName { name } => {
                let name = clean_name(&name);
                let mut meta: GroupMeta = self.local.get_staged(batch, &key::group(group))?.unwrap_or_default();
                // A direct conversation is named after the partner, the
                // private group of one's devices is "own devices". A joined
                // group of two looked direct until its creator named it.
                if name.is_empty() || meta.created_direct || meta.own_devices {
                    return Ok(());
                }
                meta.direct_with = None;
                let shown = if meta.impostors.is_empty() {
                    name.clone()
                } else {
                    format!("unverified: {name}")
                };
                if meta.name != shown || !meta.name_shared {
                    meta.name = shown;
                    meta.name_shared = true;
                    batch.put(key::group(group), &meta)?;
                    events.push(Event::GroupRenamed {
                        group: group.clone(),
                        name,
                        by: sender,
                    });
                }
            }
            Content::SyncRead { group: g, seq } if sync => {
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
            } if sync => {
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
            Content::SyncSetting { name, value } if sync => {
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
        // Named from its members once their identities are checked
        // (`Engine::check_identities`).
        meta.label_pending = true;
        meta.name = "(checking members)".into();
        self.staged.batch.put(key::group(group), &meta)
    }
}
