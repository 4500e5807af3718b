//! The engine driven with no sockets: frames and replies are built here,
//! time is passed in, and what the engine sends is read from `poll_transmit`.
//! Bob's device lives in a real redb file (so commits are counted for real);
//! Alice, who only encrypts, keeps hers in memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hush_crypto::content::{Content, Payload};
use hush_crypto::{Device, DeviceConfig, MlsStore};
use hush_protocol::frame::{
    ClientFrame, DeviceInfo, InboxEntry, InboxKind, LogEntry, MessageKind, RelayFrame, Reply, Request,
};
use hush_protocol::{DeviceId, ErrorCode, ErrorDetail, GroupId, UserId, WireError};
use tokio::sync::oneshot;

use super::{Command, Engine, EngineConfig};
use crate::error::Error;
use crate::event::Event;
use crate::store::LocalStore;

struct Pair {
    _dir: tempfile::TempDir,
    alice: Device,
    bob: Engine,
    group: GroupId,
    now: Instant,
    /// The next seq of the group's log.
    seq: u64,
}

fn text(t: &str) -> Payload {
    Payload::new(
        Content::Text {
            text: t.to_owned(),
            reply_to: None,
        },
        1,
    )
}

impl Pair {
    /// Alice and Bob in a group of two; Bob's engine connected and joined
    /// (the Welcome processed, the key package check answered).
    fn new(config: EngineConfig) -> Self {
        let mut pair = Self::unchecked(config, "alice");
        // Bob's engine checks that Alice's leaf is one of alice's devices.
        let alice_device = (pair.alice.device_id(), pair.alice.identity().public_key());
        pair.answer_devices("alice", &[alice_device]);
        pair.bob.flush();
        pair.drain_events();
        assert!(pair.bob.poll_settled());
        pair.drain_transmits();
        pair
    }

    /// Bob joined a group of two made by a device whose credential claims
    /// `creator`; the engine has asked for `creator`'s devices, unanswered.
    fn unchecked(config: EngineConfig, creator: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open_database(dir.path()).unwrap();
        let local = Arc::new(LocalStore::open_in(db.clone()).unwrap());
        let bob_device = Device::create(
            MlsStore::open_in(db).unwrap(),
            UserId("bob".into()),
            DeviceConfig::default(),
        )
        .unwrap();
        let mut bob_device = bob_device;
        let kp = bob_device.generate_key_packages(1, 0).unwrap();
        let mut alice = Device::create(MlsStore::in_memory(), UserId(creator.into()), DeviceConfig::default()).unwrap();
        let group = GroupId(vec![7; 16]);
        alice.create_group(&group).unwrap();
        let commit = alice.add_members(&group, &[kp[0].as_slice()]).unwrap();
        alice.merge_pending_commit(&group).unwrap();
        let mut bob = Engine::new(bob_device, local, UserId("bob".into()), config).unwrap();
        let now = Instant::now();
        bob.handle_connected(now, Duration::from_secs(10));
        bob.flush();
        let mut pair = Pair {
            _dir: dir,
            alice,
            bob,
            group: group.clone(),
            now,
            seq: 2,
        };
        // The key package check: the relay has plenty.
        let id = pair.expect_request(|r| matches!(r, Request::UploadKeyPackages { .. }));
        pair.reply(
            id,
            Ok(Reply::KeyPackageCount {
                one_time: 50,
                last_resort: true,
            }),
        );
        pair.bob.handle_frame(
            now,
            RelayFrame::Inbox(InboxEntry {
                seq: 1,
                sender: pair.alice.device_id(),
                kind: InboxKind::Welcome { group, commit_seq: 1 },
                timestamp_ms: 1,
                payload: commit.welcome.unwrap().into(),
            }),
        );
        pair.bob.flush();
        pair
    }

    /// The next log entry: `payload` from Alice's device.
    fn payload_entry(&mut self, payload: &Payload) -> LogEntry {
        let sealed = self.alice.send(&self.group, payload).unwrap();
        let epoch = self.alice.epoch(&self.group).unwrap();
        self.next(MessageKind::Application, epoch, sealed)
    }

    fn groups(&mut self) -> Vec<crate::client::GroupSummary> {
        let (tx, mut rx) = oneshot::channel();
        self.bob.handle_command(self.now, Command::Groups { answer: tx });
        self.bob.flush();
        rx.try_recv().unwrap().unwrap()
    }

    /// Answers the engine's `ListDevices` for `user` with `devices`.
    fn answer_devices(&mut self, user: &str, devices: &[(DeviceId, [u8; 32])]) {
        let id = self.expect_request(|r| matches!(r, Request::ListDevices { user: u } if u.0 == user));
        self.reply(
            id,
            Ok(Reply::Devices(
                devices
                    .iter()
                    .map(|(device, key)| DeviceInfo {
                        device: *device,
                        key: *key,
                        registered_ms: 1,
                    })
                    .collect(),
            )),
        );
    }

    /// The next log entry: a text from Alice.
    fn entry(&mut self, t: &str) -> LogEntry {
        let payload = self.alice.send(&self.group, &text(t)).unwrap();
        let epoch = self.alice.epoch(&self.group).unwrap();
        self.next(MessageKind::Application, epoch, payload)
    }

    /// Alice's self-update, merged on her side, as the next log entry.
    fn commit_entry(&mut self) -> LogEntry {
        let commit = self.alice.self_update(&self.group).unwrap();
        self.alice.merge_pending_commit(&self.group).unwrap();
        self.next(MessageKind::Commit, commit.epoch, commit.message)
    }

    fn next(&mut self, kind: MessageKind, epoch: u64, payload: Vec<u8>) -> LogEntry {
        let seq = self.seq;
        self.seq += 1;
        LogEntry {
            group: self.group.clone(),
            seq,
            sender: self.alice.device_id(),
            client_msg_id: seq,
            kind,
            epoch,
            timestamp_ms: 1,
            payload: payload.into(),
        }
    }

    fn reply(&mut self, id: u32, result: Result<Reply, WireError>) {
        self.bob.handle_frame(self.now, RelayFrame::Response { id, result });
    }

    fn drain_transmits(&mut self) -> Vec<ClientFrame> {
        std::iter::from_fn(|| self.bob.poll_transmit()).collect()
    }

    fn drain_events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.bob.poll_event()).collect()
    }

    /// Flushes and returns the id of the one request sent matching `pick`.
    fn expect_request(&mut self, pick: impl Fn(&Request) -> bool) -> u32 {
        self.bob.flush();
        let frames = self.drain_transmits();
        let ids: Vec<u32> = frames
            .iter()
            .filter_map(|f| match f {
                ClientFrame::Request { id, op } if pick(op) => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(ids.len(), 1, "one matching request in {frames:?}");
        ids[0]
    }
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

fn acks(frames: &[ClientFrame]) -> Vec<u64> {
    frames
        .iter()
        .filter_map(|f| match f {
            ClientFrame::Ack { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

#[test]
fn a_batch_of_delivered_entries_is_one_transaction_one_ack_and_then_its_events() {
    let mut p = Pair::new(EngineConfig::default());
    let entries: Vec<LogEntry> = (0..50).map(|i| p.entry(&format!("m{i}"))).collect();
    let before = p.bob.durable_commits();
    for e in entries {
        p.bob.handle_frame(p.now, RelayFrame::Deliver(e));
    }
    // Nothing leaves before the batch is durable.
    assert!(p.bob.poll_event().is_none());
    assert!(p.bob.poll_transmit().is_none());
    p.bob.flush();
    assert_eq!(p.bob.durable_commits() - before, 1, "50 entries, one transaction");
    let events = p.drain_events();
    let want: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    assert_eq!(texts(&events), want);
    assert_eq!(acks(&p.drain_transmits()), vec![51], "one Ack, for the latest seq");
    // Delivered again (a reconnect): nothing new.
    assert_eq!(p.bob.flows[&p.group].cursor, 51);
}

#[test]
fn a_batch_survives_reopening_and_redelivery_is_ignored() {
    let mut p = Pair::new(EngineConfig::default());
    let e1 = p.entry("one");
    let e2 = p.entry("two");
    p.bob.handle_frame(p.now, RelayFrame::Deliver(e1.clone()));
    p.bob.handle_frame(p.now, RelayFrame::Deliver(e2.clone()));
    p.bob.flush();
    assert_eq!(texts(&p.drain_events()), vec!["one", "two"]);
    let before = p.bob.durable_commits();
    p.bob.handle_frame(p.now, RelayFrame::Deliver(e1));
    p.bob.handle_frame(p.now, RelayFrame::Deliver(e2));
    p.bob.flush();
    assert!(texts(&p.drain_events()).is_empty());
    assert_eq!(p.bob.durable_commits(), before, "nothing to write");
    let stored: u64 = p.bob.local.cursor(&p.group).unwrap();
    assert_eq!(stored, 3);
}

#[test]
fn an_undecryptable_entry_in_a_batch_keeps_the_others_and_moves_past() {
    let mut p = Pair::new(EngineConfig::default());
    let a = p.entry("a");
    let mut bad = p.entry("bad");
    bad.payload = vec![1, 2, 3].into();
    let c = p.entry("c");
    for e in [a, bad, c] {
        p.bob.handle_frame(p.now, RelayFrame::Deliver(e));
    }
    p.bob.flush();
    assert_eq!(texts(&p.drain_events()), vec!["a", "c"]);
    assert_eq!(p.bob.local.cursor(&p.group).unwrap(), 4);
    // The MLS state of "a" and "c" is durable too: the next one decrypts
    // after a reload of the group from disk.
    p.bob.device.discard_held();
    p.bob.device.hold_commits();
    let d = p.entry("d");
    p.bob.handle_frame(p.now, RelayFrame::Deliver(d));
    p.bob.flush();
    assert_eq!(texts(&p.drain_events()), vec!["d"]);
}

#[test]
fn a_gap_is_filled_from_history_before_later_entries() {
    let mut p = Pair::new(EngineConfig::default());
    let e2 = p.entry("2");
    let e3 = p.entry("3");
    let e4 = p.entry("4");
    let e5 = p.entry("5");
    p.bob.handle_frame(p.now, RelayFrame::Deliver(e2));
    p.bob.handle_frame(p.now, RelayFrame::Deliver(e5));
    let id = p.expect_request(|r| matches!(r, Request::History { from_seq: 3, .. }));
    assert_eq!(texts(&p.drain_events()), vec!["2"]);
    p.reply(
        id,
        Ok(Reply::History {
            entries: vec![e3, e4],
            next_from: None,
        }),
    );
    p.bob.flush();
    assert_eq!(texts(&p.drain_events()), vec!["3", "4", "5"]);
    assert_eq!(acks(&p.drain_transmits()), vec![5]);
}

#[test]
fn an_unanswered_request_fails_with_timeout_and_replaces_the_connection() {
    let mut p = Pair::new(EngineConfig {
        request_timeout: Duration::from_secs(2),
        ..EngineConfig::default()
    });
    let (tx, mut rx) = oneshot::channel();
    p.bob.handle_command(
        p.now,
        Command::Request {
            request: Request::ListGroups,
            answer: tx,
        },
    );
    p.bob.flush();
    assert!(matches!(p.drain_transmits().as_slice(), [ClientFrame::Request { .. }]));
    let due = p.bob.poll_timeout().unwrap();
    assert!(due <= p.now + Duration::from_secs(2));
    p.bob.handle_timeout(p.now + Duration::from_secs(1));
    assert!(rx.try_recv().is_err(), "not yet");
    assert!(p.bob.poll_close().is_none());
    p.bob.handle_timeout(p.now + Duration::from_secs(2));
    assert!(matches!(rx.try_recv(), Ok(Err(Error::Timeout))));
    assert!(p.bob.poll_close().is_some());
}

#[test]
fn outbox_items_go_out_together_in_order_and_answers_may_come_in_any_order() {
    let mut p = Pair::new(EngineConfig::default());
    let before = p.bob.durable_commits();
    let mut answers = Vec::new();
    for i in 0..5 {
        let (tx, rx) = oneshot::channel();
        p.bob.handle_command(
            p.now,
            Command::Enqueue {
                group: p.group.clone(),
                payload: text(&format!("o{i}")),
                answer: tx,
            },
        );
        answers.push(rx);
    }
    p.bob.flush();
    assert_eq!(
        p.bob.durable_commits() - before,
        1,
        "five enqueued and sealed in one transaction"
    );
    for mut a in answers {
        assert!(matches!(a.try_recv(), Ok(Ok(()))));
    }
    let sends: Vec<(u32, u64)> = p
        .drain_transmits()
        .into_iter()
        .filter_map(|f| match f {
            ClientFrame::Request {
                id,
                op: Request::Send(s),
            } => Some((id, s.client_msg_id)),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 5, "all five in flight before any answer");
    let ids: Vec<u64> = p.bob.outbox.iter().map(|q| q.item.client_msg_id).collect();
    assert_eq!(sends.iter().map(|s| s.1).collect::<Vec<_>>(), ids, "in outbox order");
    // Answers in reverse order, one batch.
    for (k, (id, _)) in sends.iter().enumerate().rev() {
        p.reply(
            *id,
            Ok(Reply::Sent {
                seq: 10 + k as u64,
                epoch: 1,
                duplicate: false,
            }),
        );
    }
    p.bob.flush();
    assert!(p.bob.outbox.is_empty());
    let sent = p
        .drain_events()
        .iter()
        .filter(|e| matches!(e, Event::Sent { .. }))
        .count();
    assert_eq!(sent, 5);
    let stored: Vec<(Vec<u8>, crate::outbox::OutboxItem)> =
        p.bob.local.scan(crate::store::key::OUTBOX, None, false, 100).unwrap();
    assert!(stored.is_empty());
}

#[test]
fn a_rate_limited_item_is_sent_again_with_the_same_bytes_after_the_pause() {
    let mut p = Pair::new(EngineConfig::default());
    let (tx, _rx) = oneshot::channel();
    p.bob.handle_command(
        p.now,
        Command::Enqueue {
            group: p.group.clone(),
            payload: text("x"),
            answer: tx,
        },
    );
    p.bob.flush();
    let first = p.drain_transmits();
    let [
        ClientFrame::Request {
            id,
            op: Request::Send(s1),
        },
    ] = first.as_slice()
    else {
        panic!("one Send: {first:?}")
    };
    p.reply(
        *id,
        Err(WireError {
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            detail: ErrorDetail::RetryAfterMs(300),
        }),
    );
    p.bob.flush();
    assert!(p.drain_transmits().is_empty(), "waits");
    p.bob.handle_timeout(p.now + Duration::from_millis(300));
    p.bob.flush();
    let again = p.drain_transmits();
    let [
        ClientFrame::Request {
            op: Request::Send(s2), ..
        },
    ] = again.as_slice()
    else {
        panic!("sent again: {again:?}")
    };
    assert_eq!((s1.client_msg_id, &s1.payload), (s2.client_msg_id, &s2.payload));
}

#[test]
fn a_message_typed_offline_waits_unsealed_and_goes_once_connected() {
    let mut p = Pair::new(EngineConfig::default());
    p.bob.handle_disconnected();
    let (tx, mut rx) = oneshot::channel();
    p.bob.handle_command(
        p.now,
        Command::Enqueue {
            group: p.group.clone(),
            payload: text("offline"),
            answer: tx,
        },
    );
    p.bob.flush();
    assert!(matches!(rx.try_recv(), Ok(Ok(()))));
    assert!(p.drain_transmits().is_empty());
    assert!(p.bob.outbox[0].item.sealed.is_none());
    p.bob.handle_connected(p.now, Duration::from_secs(10));
    p.bob.flush();
    let sends = p
        .drain_transmits()
        .into_iter()
        .filter(|f| {
            matches!(
                f,
                ClientFrame::Request {
                    op: Request::Send(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(sends, 1);
    assert!(p.bob.outbox[0].item.sealed.is_some());
}

/// The sends of one outbox item, in the order they went out.
fn sends(frames: &[ClientFrame]) -> Vec<(u32, hush_protocol::frame::Send)> {
    frames
        .iter()
        .filter_map(|f| match f {
            ClientFrame::Request {
                id,
                op: Request::Send(s),
            } => Some((*id, s.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn items_refused_as_stale_are_sealed_again_at_the_new_epoch_in_order_with_the_same_ids() {
    let mut p = Pair::new(EngineConfig::default());
    for t in ["x", "y"] {
        let (tx, _rx) = oneshot::channel();
        p.bob.handle_command(
            p.now,
            Command::Enqueue {
                group: p.group.clone(),
                payload: text(t),
                answer: tx,
            },
        );
    }
    p.bob.flush();
    let first = sends(&p.drain_transmits());
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|(_, s)| s.epoch == 1));
    // Alice's commit reached the relay first: both are refused as stale.
    let stale = || {
        Err(WireError {
            code: ErrorCode::StaleEpoch,
            message: "stale".into(),
            detail: ErrorDetail::CurrentEpoch(2),
        })
    };
    for (id, _) in &first {
        p.reply(*id, stale());
    }
    p.bob.flush();
    assert!(
        sends(&p.drain_transmits()).is_empty(),
        "nothing is sealed again before this device reaches epoch 2"
    );
    // The commit arrives; Bob moves to epoch 2 and seals both again.
    let commit = p.commit_entry();
    p.bob.handle_frame(p.now, RelayFrame::Deliver(commit));
    p.bob.flush();
    p.bob.flush();
    let again = sends(&p.drain_transmits());
    let ids = |v: &[(u32, hush_protocol::frame::Send)]| v.iter().map(|(_, s)| s.client_msg_id).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&first), "the same ids, in the same order");
    for (_, s) in &again {
        assert_eq!(s.epoch, 2);
        // Alice, at epoch 2, reads them.
        assert!(matches!(
            p.alice.process(&s.payload).unwrap(),
            hush_crypto::Processed::Application { epoch: 2, .. }
        ));
    }
}

#[test]
fn typing_that_overtakes_a_backlog_costs_the_backlog_nothing_and_a_commit_as_typing_is_ignored() {
    let mut p = Pair::new(EngineConfig::default());
    // A backlog of 10 texts, not delivered yet...
    let backlog: Vec<LogEntry> = (0..10).map(|n| p.entry(&format!("m{n}"))).collect();
    // ...overtaken by 30 typing signals (through the message ratchet, these
    // would have used up generations the backlog needs).
    for _ in 0..30 {
        let typing = Payload::new(Content::Typing { active: true }, super::now_ms());
        let sealed = p.alice.seal_ephemeral(&p.group, &typing.encode()).unwrap();
        p.bob.handle_frame(
            p.now,
            RelayFrame::Ephemeral {
                group: p.group.clone(),
                sender: p.alice.device_id(),
                payload: sealed.into(),
            },
        );
    }
    p.bob.flush();
    let events = p.drain_events();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Typing { active: true, .. }))
            .count(),
        30
    );
    // A commit passed off as a typing signal (a relay that forwarded it):
    // nothing happens, and no state is written.
    let commit = p.alice.self_update(&p.group).unwrap();
    p.bob.handle_frame(
        p.now,
        RelayFrame::Ephemeral {
            group: p.group.clone(),
            sender: p.alice.device_id(),
            payload: commit.message.clone().into(),
        },
    );
    p.bob.flush();
    assert!(p.drain_events().is_empty());
    assert_eq!(p.bob.device.epoch(&p.group).unwrap(), 1, "the commit was not applied");
    assert_eq!(p.bob.device.members(&p.group).unwrap().len(), 2);
    p.alice.discard_pending_commit(&p.group).unwrap();
    // Every message of the backlog still reads.
    for e in backlog {
        p.bob.handle_frame(p.now, RelayFrame::Deliver(e));
    }
    p.bob.flush();
    assert_eq!(
        texts(&p.drain_events()),
        (0..10).map(|n| format!("m{n}")).collect::<Vec<_>>()
    );
}

#[test]
fn a_refused_item_leaves_the_outbox_with_a_durable_reason() {
    let mut p = Pair::new(EngineConfig::default());
    let payload = text("not allowed");
    let id = payload.id.0;
    let (tx, _rx) = oneshot::channel();
    p.bob.handle_command(
        p.now,
        Command::Enqueue {
            group: p.group.clone(),
            payload,
            answer: tx,
        },
    );
    p.bob.flush();
    let sent = sends(&p.drain_transmits());
    p.reply(
        sent[0].0,
        Err(WireError::new(ErrorCode::Forbidden, "this group is announce-only")),
    );
    p.bob.flush();
    let events = p.drain_events();
    assert!(
        events.iter().any(|e| matches!(e, Event::SendFailed { .. })),
        "{events:?}"
    );
    assert!(p.bob.outbox.is_empty());
    // On disk, for `Client::send_outcome` (and `hush send`'s exit status).
    let reason: Option<String> = p.bob.local.get(&crate::store::key::send_failed(&id)).unwrap();
    assert!(reason.unwrap().contains("announce-only"));
}

#[test]
fn the_relays_removal_notice_alone_deletes_nothing() {
    let mut p = Pair::new(EngineConfig::default());
    // A commit that does not remove Bob, which the relay (or a member's
    // lying roster change) says removed him.
    let commit = p.commit_entry();
    let seq = commit.seq;
    p.bob.handle_frame(
        p.now,
        RelayFrame::Notice(hush_protocol::frame::Notice::Removed {
            group: p.group.clone(),
            seq,
        }),
    );
    p.bob.flush();
    assert!(p.drain_events().is_empty(), "nothing yet: the commit is not applied");
    assert_eq!(p.bob.device.epoch(&p.group).unwrap(), 1, "the group is still here");
    p.bob.handle_frame(p.now, RelayFrame::Deliver(commit));
    p.bob.flush();
    let events = p.drain_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::RosterMismatch { seq: s, .. } if *s == seq)),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| matches!(e, Event::Removed { .. })), "{events:?}");
    // Still a member with its keys: Alice's next message reads.
    assert_eq!(p.bob.device.epoch(&p.group).unwrap(), 2);
    let ct = p.alice.send(&p.group, &text("still here")).unwrap();
    assert!(matches!(
        p.bob.device.process(&ct).unwrap(),
        hush_crypto::Processed::Application { .. }
    ));
}

/// Entries of a group joined from a Welcome wait until the relay has said
/// whose devices its leaves are; then they are processed, in order.
#[test]
fn entries_wait_until_every_leaf_is_checked() {
    let mut p = Pair::unchecked(EngineConfig::default(), "alice");
    let entry = p.entry("before the check");
    p.bob.handle_frame(p.now, RelayFrame::Deliver(entry));
    p.bob.flush();
    let events = p.drain_events();
    assert!(
        texts(&events).is_empty(),
        "nothing processed before the check: {events:?}"
    );
    assert!(!events.iter().any(|e| matches!(e, Event::Joined { .. })));
    let alice_device = (p.alice.device_id(), p.alice.identity().public_key());
    p.answer_devices("alice", &[alice_device]);
    p.bob.flush();
    let events = p.drain_events();
    assert!(events.iter().any(|e| matches!(e, Event::Joined { .. })));
    assert_eq!(texts(&events), ["before the check"]);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::DevicesChanged { user, first_seen: true, .. } if user.0 == "alice")),
        "keys first seen are an event: {events:?}"
    );
    let g = &p.groups()[0];
    assert_eq!(g.direct_with.as_deref(), Some("alice"));
    assert!(!g.verified, "unverified until the safety number is compared");
    let number = safety(&mut p, "alice").unwrap();
    let (tx, mut rx) = oneshot::channel();
    p.bob.handle_command(
        p.now,
        Command::MarkVerified {
            user: UserId("alice".into()),
            number: "1".repeat(60),
            answer: tx,
        },
    );
    p.bob.flush();
    assert!(matches!(rx.try_recv(), Ok(Err(Error::SafetyNumberMismatch(_)))));
    let (tx, mut rx) = oneshot::channel();
    p.bob.handle_command(
        p.now,
        Command::MarkVerified {
            user: UserId("alice".into()),
            number,
            answer: tx,
        },
    );
    p.bob.flush();
    assert!(matches!(rx.try_recv(), Ok(Ok(()))));
    assert!(p.groups()[0].verified);
}

/// A registrant makes a leaf claiming "alice" and adds bob: the relay does
/// not list that device as alice's, so the group is not bob's direct
/// conversation with alice.
#[test]
fn a_leaf_claiming_someone_else_is_rejected_and_names_nothing() {
    let mut p = Pair::unchecked(EngineConfig::default(), "alice");
    let real_alice = Device::create(MlsStore::in_memory(), UserId("alice".into()), DeviceConfig::default()).unwrap();
    p.answer_devices("alice", &[(real_alice.device_id(), real_alice.identity().public_key())]);
    p.bob.flush();
    let events = p.drain_events();
    let forged = p.alice.device_id();
    assert!(
        events.iter().any(
            |e| matches!(e, Event::IdentityRejected { user, device, .. } if user.0 == "alice" && *device == forged)
        ),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| matches!(e, Event::DevicesChanged { .. })));
    let g = &p.groups()[0];
    assert_eq!(g.direct_with, None);
    assert!(!g.own_devices);
    assert!(g.name.starts_with("unverified"), "{}", g.name);
    assert_eq!(g.unverified_members, 1);
    assert!(matches!(safety(&mut p, "alice"), Err(Error::NoDevices(_))));
}

/// A leaf claiming bob's own user makes a group of "bob" alone: without the
/// check it would be bob's own-devices group, and its sync records would
/// rewrite his settings and history. It is neither.
#[test]
fn a_forged_own_devices_group_cannot_sync_anything() {
    let mut p = Pair::unchecked(EngineConfig::default(), "bob");
    // The relay lists bob's one real device (the engine's own).
    let bob_id = p.bob.device_id;
    p.answer_devices("bob", &[(bob_id, [0; 32])]);
    p.bob.flush();
    let events = p.drain_events();
    assert!(
        events.iter().any(|e| matches!(e, Event::IdentityRejected { .. })),
        "{events:?}"
    );
    let entry = p.payload_entry(&Payload::new(
        Content::SyncSetting {
            name: "theme".into(),
            value: serde_json::json!("forged"),
        },
        1,
    ));
    p.bob.handle_frame(p.now, RelayFrame::Deliver(entry));
    p.bob.flush();
    let events = p.drain_events();
    assert!(
        !events.iter().any(|e| matches!(e, Event::SettingChanged { .. })),
        "{events:?}"
    );
    assert!(!p.groups()[0].own_devices);
}

fn safety(p: &mut Pair, user: &str) -> Result<String, Error> {
    let (tx, mut rx) = oneshot::channel();
    p.bob.handle_command(
        p.now,
        Command::SafetyNumber {
            user: UserId(user.into()),
            answer: tx,
        },
    );
    p.bob.flush();
    rx.try_recv().unwrap()
}
