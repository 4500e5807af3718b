//! What the full-screen client shows, and how SDK events change it. No I/O:
//! the loop in `mod.rs` feeds events and keys in and draws what is here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hush_sdk::{ConnectionState, DeviceId, Event, GroupId, GroupSummary, Member, Message, UserId};

use super::command::looks_like_id;

/// A typing indicator not refreshed for this long is dropped (the "stopped"
/// signal is ephemeral and may be lost).
pub const TYPING_EXPIRES: Duration = Duration::from_secs(6);

/// A conversation in the list.
#[derive(Clone, Debug)]
pub struct Conversation {
    pub group: GroupId,
    /// The partner of a direct conversation, or the group's label.
    pub label: String,
    pub direct_with: Option<String>,
    pub members: Vec<Member>,
    /// Messages from others received since it was last shown.
    pub unread: usize,
}

/// A device's presence as last reported.
#[derive(Clone, Debug)]
pub struct Seen {
    pub user: UserId,
    pub online: bool,
    pub last_seen_ms: u64,
}

/// What the loop must do after an event changed the state.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Follow {
    /// Send read receipts for the current conversation.
    pub mark_read: bool,
    /// Re-read the conversation list.
    pub groups: bool,
    /// Re-read the current conversation from history.
    pub reload: bool,
    /// Ask the relay who is online.
    pub presence: bool,
}

/// The whole screen's state.
pub struct App {
    pub me: UserId,
    pub conversations: Vec<Conversation>,
    /// Index into `conversations`.
    pub current: Option<usize>,
    /// The current conversation's messages, oldest first.
    pub messages: Vec<Message>,
    /// Whether `messages` reaches back to the conversation's first message.
    pub complete: bool,
    /// Messages this session sent that the relay has not stored yet:
    /// (group, id, text).
    pub pending: Vec<(GroupId, String, String)>,
    /// Rows scrolled up from the newest.
    pub scroll: usize,
    /// Who is typing where, since when.
    pub typing: HashMap<(GroupId, UserId), Instant>,
    pub presence: HashMap<DeviceId, Seen>,
    pub connection: String,
    /// A line for the user: command results and errors.
    pub notice: Option<String>,
    /// The input line and the cursor in it (a char index).
    pub input: Vec<char>,
    pub cursor: usize,
    pub quit: bool,
}

impl App {
    pub fn new(me: UserId) -> Self {
        App {
            me,
            conversations: Vec::new(),
            current: None,
            messages: Vec::new(),
            complete: false,
            pending: Vec::new(),
            scroll: 0,
            typing: HashMap::new(),
            presence: HashMap::new(),
            connection: "connecting…".into(),
            notice: None,
            input: Vec::new(),
            cursor: 0,
            quit: false,
        }
    }

    pub fn group(&self) -> Option<&GroupId> {
        self.conversation().map(|c| &c.group)
    }

    pub fn conversation(&self) -> Option<&Conversation> {
        self.current.and_then(|i| self.conversations.get(i))
    }

    /// Replaces the conversation list (keeping unread counts and the
    /// current conversation). The private group of this user's devices is
    /// not a conversation.
    pub fn set_groups(&mut self, groups: Vec<GroupSummary>) {
        let current = self.group().cloned();
        let unread: HashMap<GroupId, usize> = self.conversations.iter().map(|c| (c.group.clone(), c.unread)).collect();
        let mut list: Vec<Conversation> = groups
            .into_iter()
            .filter(|g| !g.own_devices)
            .map(|g| Conversation {
                unread: unread.get(&g.group).copied().unwrap_or(0),
                label: g.direct_with.clone().unwrap_or_else(|| g.name.clone()),
                direct_with: g.direct_with,
                members: g.members,
                group: g.group,
            })
            .collect();
        // Two conversations with the same label (a group of two joined from
        // elsewhere is labelled by its other member) get their id's start.
        let labels: Vec<String> = list.iter().map(|c| c.label.clone()).collect();
        for c in &mut list {
            if labels.iter().filter(|l| **l == c.label).count() > 1 {
                c.label = format!("{} #{}", c.label, c.group.to_hex().get(..4).unwrap_or_default());
            }
        }
        list.sort_by(|a, b| a.label.cmp(&b.label).then(a.group.cmp(&b.group)));
        self.conversations = list;
        self.current = current.and_then(|g| self.conversations.iter().position(|c| c.group == g));
    }

    /// Shows conversation `index` with `page` (newest first, as history
    /// gives it) as its latest messages.
    pub fn show(&mut self, index: usize, mut page: Vec<Message>, page_size: usize) {
        self.current = Some(index);
        if let Some(c) = self.conversations.get_mut(index) {
            c.unread = 0;
        }
        self.complete = page.len() < page_size;
        page.reverse();
        self.messages = page;
        self.scroll = 0;
    }

    /// Adds an older page (newest first) above the loaded messages.
    pub fn prepend(&mut self, page: Vec<Message>, page_size: usize) {
        self.complete = page.len() < page_size;
        let mut older: Vec<Message> = page.into_iter().rev().filter(|m| !self.has(&m.id)).collect();
        older.append(&mut self.messages);
        self.messages = older;
    }

    /// The seq of the oldest loaded message.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.messages.first().map(|m| m.seq)
    }

    fn has(&self, id: &str) -> bool {
        self.messages.iter().any(|m| m.id == id)
    }

    fn message_mut(&mut self, group: &GroupId, id: &str) -> Option<&mut Message> {
        if self.group() != Some(group) {
            return None;
        }
        self.messages.iter_mut().find(|m| m.id == id)
    }

    /// Applies one SDK event.
    pub fn apply(&mut self, event: Event, now: Instant) -> Follow {
        let mut follow = Follow::default();
        match event {
            Event::Connection(state) => {
                self.connection = match state {
                    ConnectionState::Connected { transport } => {
                        follow.presence = true;
                        format!("connected ({transport})")
                    }
                    ConnectionState::Connecting { attempt } if attempt <= 1 => "connecting…".into(),
                    ConnectionState::Connecting { attempt } => format!("connecting… (attempt {attempt})"),
                    ConnectionState::Disconnected { retry_in_ms, .. } => {
                        format!("offline, retrying in {}s", retry_in_ms.div_ceil(1000))
                    }
                    ConnectionState::Revoked => "this device was revoked".into(),
                    _ => "?".into(),
                };
            }
            Event::Message(m) => {
                self.pending.retain(|(_, id, _)| *id != m.id);
                self.typing.remove(&(m.group.clone(), m.sender.user.clone()));
                if self.group() == Some(&m.group) {
                    if !m.own {
                        follow.mark_read = true;
                    }
                    if !self.has(&m.id) {
                        let at = self.messages.partition_point(|x| x.seq < m.seq);
                        self.messages.insert(at, m);
                    }
                } else if let Some(c) = self.conversations.iter_mut().find(|c| c.group == m.group) {
                    if !m.own {
                        c.unread += 1;
                    }
                } else {
                    follow.groups = true;
                }
            }
            Event::Edited { group, id, text, .. } => {
                if let Some(m) = self.message_mut(&group, &id) {
                    m.text = text;
                    m.edited = true;
                }
            }
            Event::Deleted { group, id, .. } => {
                if let Some(m) = self.message_mut(&group, &id) {
                    m.text.clear();
                    m.deleted = true;
                }
            }
            Event::Reaction {
                group,
                id,
                emoji,
                removed,
                by,
            } => {
                if let Some(m) = self.message_mut(&group, &id) {
                    let users = m.reactions.entry(emoji.clone()).or_default();
                    users.retain(|u| *u != by.user);
                    if !removed {
                        users.push(by.user);
                    }
                    if users.is_empty() {
                        m.reactions.remove(&emoji);
                    }
                }
            }
            Event::Receipt { group, ids, by } => {
                for id in ids {
                    if let Some(m) = self.message_mut(&group, &id)
                        && m.sender.user != by.user
                        && !m.read_by.contains(&by.user)
                    {
                        m.read_by.push(by.user.clone());
                    }
                }
            }
            Event::Typing { group, by, active } if by.user != self.me => {
                if active {
                    self.typing.insert((group, by.user), now);
                } else {
                    self.typing.remove(&(group, by.user));
                }
            }
            Event::Presence {
                member,
                online,
                last_seen_ms,
            } => {
                self.presence.insert(
                    member.device,
                    Seen {
                        user: member.user,
                        online,
                        last_seen_ms,
                    },
                );
            }
            Event::Joined { .. } | Event::MemberAdded { .. } | Event::MemberRemoved { .. } => {
                follow.groups = true;
                follow.presence = true;
            }
            Event::Removed { group } => {
                follow.groups = true;
                if self.group() == Some(&group) {
                    self.notice = Some("you are no longer in this conversation".into());
                }
            }
            Event::RosterMismatch { group, .. } if self.group() == Some(&group) => {
                self.notice = Some(
                    "! the relay removed you from this conversation, but no member's commit did: it no longer delivers it"
                        .into(),
                );
            }
            Event::CommitRejected { group, reason, .. } if self.group() == Some(&group) => {
                self.notice = Some(format!(
                    "! a member's change to this conversation was rejected ({reason}): the relay and the group disagree"
                ));
            }
            Event::DevicesChanged {
                user,
                first_seen,
                added,
                ..
            } => {
                self.notice = Some(if first_seen {
                    format!(
                        "{user} uses {} device(s): compare safety numbers (/safety {user})",
                        added.len()
                    )
                } else {
                    format!("! {user}'s devices changed: compare safety numbers again (/safety {user})")
                });
            }
            Event::GroupRenamed { group, name, by } => {
                follow.groups = true;
                if self.group() == Some(&group) {
                    self.notice = Some(format!("{} named the conversation {name:?}", by.user));
                }
            }
            Event::IdentityRejected { group, user, device } if self.group() == Some(&group) => {
                self.notice = Some(format!(
                    "! a member claims to be {user}, but {device} is not one of {user}'s devices"
                ));
            }
            Event::DeviceLinked { device } => {
                self.notice = Some(format!("a new device of yours was linked: {device}"));
            }
            Event::SendFailed { id, reason, .. } => {
                self.pending.retain(|(_, p, _)| *p != id);
                self.notice = Some(format!("not sent: {reason}"));
            }
            Event::Sent { id, .. } => {
                // The Message event follows; until then the line stays "sending".
                let _ = id;
            }
            Event::Truncated { group, .. } if self.group() == Some(&group) => {
                self.notice = Some("some older messages expired at the relay before this device got them".into());
            }
            Event::Lagged { .. } => {
                follow.reload = true;
                follow.groups = true;
            }
            _ => {}
        }
        follow
    }

    /// Drops typing indicators that were not refreshed.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.typing.len();
        self.typing
            .retain(|_, since| now.saturating_duration_since(*since) < TYPING_EXPIRES);
        before != self.typing.len()
    }

    /// Who is typing in the current conversation, sorted.
    pub fn typing_here(&self) -> Vec<&str> {
        let Some(group) = self.group() else {
            return Vec::new();
        };
        let mut users: Vec<&str> = self
            .typing
            .keys()
            .filter(|(g, _)| g == group)
            .map(|(_, u)| u.0.as_str())
            .collect();
        users.sort_unstable();
        users
    }

    /// The other users of the current conversation with their presence:
    /// online if any of their devices is; last seen is the latest of them.
    pub fn partners(&self) -> Vec<(String, Option<Seen>)> {
        let Some(c) = self.conversation() else {
            return Vec::new();
        };
        let mut users: Vec<&UserId> = c.members.iter().map(|m| &m.user).filter(|u| **u != self.me).collect();
        users.sort();
        users.dedup();
        users
            .into_iter()
            .map(|u| {
                let seen = c
                    .members
                    .iter()
                    .filter(|m| m.user == *u)
                    .filter_map(|m| self.presence.get(&m.device))
                    .fold(None::<Seen>, |acc, s| match acc {
                        None => Some(s.clone()),
                        Some(a) => Some(Seen {
                            user: a.user,
                            online: a.online || s.online,
                            last_seen_ms: a.last_seen_ms.max(s.last_seen_ms),
                        }),
                    });
                (u.0.clone(), seen)
            })
            .collect()
    }

    /// The message an `/edit` or `/delete` means: `args` may start with an
    /// id prefix of a shown message of this user's; otherwise it is the
    /// newest one. Returns the message id and the rest of `args`.
    pub fn own_target<'a>(&self, args: &'a str) -> Result<(String, &'a str), String> {
        let (id, rest) = self.split_target(args)?;
        let msg = match id {
            Some(id) => self.messages.iter().find(|m| m.id == id),
            None => self
                .messages
                .iter()
                .rev()
                .find(|m| m.sender.user == self.me && !m.deleted),
        };
        match msg {
            Some(m) if m.sender.user == self.me => Ok((m.id.clone(), rest)),
            Some(_) => Err("that message is not yours".into()),
            None => Err("you have no message here yet".into()),
        }
    }

    /// The message a `/react` means: an id prefix, or the newest message
    /// from someone else (the newest message if there is none).
    pub fn react_target<'a>(&self, args: &'a str) -> Result<(String, &'a str), String> {
        let (id, rest) = self.split_target(args)?;
        let msg = match id {
            Some(id) => self.messages.iter().find(|m| m.id == id),
            None => self
                .messages
                .iter()
                .rev()
                .find(|m| m.sender.user != self.me && !m.deleted)
                .or_else(|| self.messages.iter().rev().find(|m| !m.deleted)),
        };
        msg.map(|m| (m.id.clone(), rest))
            .ok_or_else(|| "no message to react to".into())
    }

    /// Splits a leading message id prefix off `args` when it names exactly
    /// one loaded message (and something follows, if `args` has more words).
    fn split_target<'a>(&self, args: &'a str) -> Result<(Option<String>, &'a str), String> {
        let args = args.trim();
        let (first, rest) = match args.split_once(char::is_whitespace) {
            Some((f, r)) => (f, r.trim()),
            None => (args, ""),
        };
        if !looks_like_id(first) {
            return Ok((None, args));
        }
        let found: Vec<&Message> = self.messages.iter().filter(|m| m.id.starts_with(first)).collect();
        match found.as_slice() {
            [one] => Ok((Some(one.id.clone()), rest)),
            [] => Ok((None, args)),
            _ => Err(format!("{first} names several messages: type more of its id")),
        }
    }

    /// Takes the input line, leaving it empty.
    pub fn take_input(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.input).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::BTreeMap;

    fn member(user: &str, d: u8) -> Member {
        Member {
            user: UserId(user.into()),
            device: DeviceId([d; 16]),
        }
    }

    fn msg(group: &GroupId, seq: u64, id: &str, from: &str, me: &str) -> Message {
        Message {
            group: group.clone(),
            seq,
            id: id.into(),
            sender: member(from, if from == "alice" { 1 } else { 2 }),
            own: from == me,
            sent_at_ms: 0,
            relay_at_ms: 0,
            text: format!("text {seq}"),
            reply_to: None,
            edited: false,
            deleted: false,
            reactions: BTreeMap::new(),
            read_by: Vec::new(),
        }
    }

    fn app() -> (App, GroupId) {
        let g = GroupId(vec![7]);
        let mut app = App::new(UserId("alice".into()));
        app.set_groups(vec![
            GroupSummary {
                group: g.clone(),
                name: "bob".into(),
                direct_with: Some("bob".into()),
                own_devices: false,
                members: vec![member("alice", 1), member("bob", 2)],
                seq: 0,
                verified: false,
                unverified_members: 0,
                shared_name: false,
            },
            GroupSummary {
                group: GroupId(vec![9]),
                name: "own devices".into(),
                direct_with: None,
                own_devices: true,
                members: vec![member("alice", 1)],
                seq: 0,
                verified: false,
                unverified_members: 0,
                shared_name: false,
            },
        ]);
        let page = vec![
            msg(&g, 3, "cc000000", "bob", "alice"),
            msg(&g, 2, "bb000000", "alice", "alice"),
        ];
        app.show(0, page, 50);
        (app, g)
    }

    #[test]
    fn events_update_the_shown_messages() {
        let (mut app, g) = app();
        assert_eq!(app.conversations.len(), 1, "the own-devices group is not listed");
        let now = Instant::now();
        let bob = member("bob", 2);
        let f = app.apply(Event::Message(msg(&g, 4, "dd000000", "bob", "alice")), now);
        assert!(f.mark_read);
        app.apply(
            Event::Edited {
                group: g.clone(),
                id: "bb000000".into(),
                text: "new".into(),
                by: member("alice", 1),
            },
            now,
        );
        app.apply(
            Event::Reaction {
                group: g.clone(),
                id: "bb000000".into(),
                emoji: "👍".into(),
                removed: false,
                by: bob.clone(),
            },
            now,
        );
        app.apply(
            Event::Receipt {
                group: g.clone(),
                ids: vec!["bb000000".into()],
                by: bob.clone(),
            },
            now,
        );
        let m = &app.messages[0];
        assert_eq!((m.text.as_str(), m.edited), ("new", true));
        assert_eq!(m.reactions["👍"], vec![UserId("bob".into())]);
        assert_eq!(m.read_by, vec![UserId("bob".into())]);
        assert_eq!(app.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2, 3, 4]);

        app.apply(
            Event::Typing {
                group: g.clone(),
                by: bob,
                active: true,
            },
            now,
        );
        assert_eq!(app.typing_here(), vec!["bob"]);
        assert!(app.expire(now + TYPING_EXPIRES));
        assert!(app.typing_here().is_empty());
    }

    #[test]
    fn targets_default_to_the_newest_fitting_message() {
        let (app, _) = app();
        assert_eq!(app.own_target("fixed text").unwrap(), ("bb000000".into(), "fixed text"));
        assert_eq!(app.own_target("bb00 fixed").unwrap(), ("bb000000".into(), "fixed"));
        assert!(app.own_target("cc00 not mine").is_err());
        // A hex-looking first word that names no message is text.
        assert_eq!(
            app.own_target("cafe is open").unwrap(),
            ("bb000000".into(), "cafe is open")
        );
        assert_eq!(app.react_target("👍").unwrap(), ("cc000000".into(), "👍"));
        assert_eq!(app.react_target("bb000000 🎉").unwrap(), ("bb000000".into(), "🎉"));
    }
}
