//! Pipelined requests, per-connection byte budgets, and the live membership
//! view under removals and re-adds that follow each other closely.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use futures_util::future::join_all;
use hush_protocol::frame::{MessageKind, Notice, RelayFrame, Reply, Request, RosterChange, Send};
use hush_protocol::{DeviceId, GroupId};
use hush_sdk::wire::{Identity, WireClient};

fn app(group: &GroupId, cmid: u64, epoch: u64, body: &[u8]) -> Request {
    Request::Send(Send {
        group: group.clone(),
        client_msg_id: cmid,
        kind: MessageKind::Application,
        epoch,
        payload: mls(group, epoch, MessageKind::Application, body),
        roster: None,
    })
}

fn roster_commit(group: &GroupId, epoch: u64, add: Vec<DeviceId>, remove: Vec<DeviceId>) -> Request {
    let welcome = (!add.is_empty()).then(|| bytes::Bytes::from(hush_crypto::inspect::framing::welcome(b"w")));
    Request::Send(Send {
        group: group.clone(),
        client_msg_id: rand::random(),
        kind: MessageKind::Commit,
        epoch,
        payload: bytes::Bytes::from(hush_crypto::inspect::framing::commit(
            group, epoch, &add, &remove, b"commit",
        )),
        roster: Some(RosterChange { add, remove, welcome }),
    })
}

fn seq_of(r: Result<Reply, hush_sdk::wire::ClientError>) -> u64 {
    match r.unwrap() {
        Reply::Sent { seq, .. } => seq,
        other => panic!("unexpected reply {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_sends_get_seqs_in_the_order_they_were_sent() {
    let relay = TestRelay::start().await;
    let alice = Identity::generate("alice");
    let mut ca = relay.connect(&alice).await;
    let g = gid("pipelined");
    create_group(&ca, &g, Default::default()).await;
    // Sends written back to back, 25 at a time, none waiting for a response
    // (join_all of up to 30 futures polls them in order, and each writes its
    // frame on its first poll).
    let n = 300u64;
    let mut seqs = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(25) {
        let replies = join_all(
            chunk
                .iter()
                .map(|i| ca.request(app(&g, i + 1, 0, format!("m{i}").as_bytes()))),
        )
        .await;
        seqs.extend(replies.into_iter().map(seq_of));
    }
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
    // Delivered in the same order, each with the client message id it was sent with.
    let got = deliveries(&mut ca, &g, n as usize).await;
    assert_eq!(
        got.iter().map(|e| (e.seq, e.client_msg_id)).collect::<Vec<_>>(),
        (1..=n).map(|s| (s, s)).collect::<Vec<_>>()
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_request_budget_slows_a_sender_without_losing_or_reordering() {
    // Four requests and 64 KiB per connection: the sender's 28 pipelined sends
    // of 48 KiB (and one larger than the whole budget) can only be read a
    // few at a time.
    let relay = TestRelay::start_with(|c| {
        c.limits.request_queue = 4;
        c.limits.request_bytes = 64 << 10;
    })
    .await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let ca = relay.connect(&a).await;
    let mut cb = relay.connect(&b).await;
    let g = group_with(&ca, "budget", &[&cb]).await;
    let body = vec![5u8; 48 << 10];
    let big = vec![6u8; 100 << 10];
    let mut reqs: Vec<Request> = (0..28u64).map(|i| app(&g, i + 1, 1, &body)).collect();
    reqs.push(app(&g, 1000, 1, &big));
    let (replies, ()) = tokio::join!(join_all(reqs.into_iter().map(|r| ca.request(r))), async {
        // Meanwhile another device is served.
        let other = relay.connect(&Identity::generate("carol")).await;
        create_group(&other, &gid("elsewhere"), Default::default()).await;
    });
    let seqs: Vec<u64> = replies.into_iter().map(seq_of).collect();
    assert_eq!(seqs, (2..=30).collect::<Vec<_>>());
    let got = deliveries(&mut cb, &g, 29).await;
    assert_eq!(
        got.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (2..=30).collect::<Vec<_>>()
    );
    assert_eq!(got.last().unwrap().client_msg_id, 1000);
    relay.stop().await;
}

/// What bob's connection saw of a group, in order.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Entry(u64),
    Removed(u64),
    Added(u64),
}

async fn seen_until(cb: &mut WireClient, g: &GroupId, last: &Seen) -> Vec<Seen> {
    let mut out = Vec::new();
    loop {
        let s = match cb.next_event_timeout(WAIT).await.unwrap() {
            Some(RelayFrame::Deliver(e)) if &e.group == g => Seen::Entry(e.seq),
            Some(RelayFrame::Notice(Notice::Removed { group, seq })) if &group == g => Seen::Removed(seq),
            Some(RelayFrame::Notice(Notice::Added { group, seq })) if &group == g => Seen::Added(seq),
            Some(_) => continue,
            None => panic!("closed after {out:?}"),
        };
        let done = &s == last;
        out.push(s);
        if done {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_and_readded_back_to_back_gets_exactly_its_entries() {
    let relay = TestRelay::start().await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let ca = relay.connect(&a).await;
    let mut cb = relay.connect(&b).await;
    let bob = cb.ready().device;
    let g = group_with(&ca, "revolving", &[&cb]).await;
    // seq 1: the commit adding bob (epoch 0 -> 1).
    let mut epoch = 1;
    let mut expected = vec![Seen::Added(1)];
    let mut head = 1;
    for round in 0..5u64 {
        // Pipelined, so bob's connection gets the removal, the entries he must
        // not see and the re-add in as few wake-ups as the relay manages: a
        // message, the removal, three messages, the re-add, a message.
        let reqs = vec![
            app(&g, round * 10 + 1, epoch, b"before"),
            roster_commit(&g, epoch, vec![], vec![bob]),
            app(&g, round * 10 + 2, epoch + 1, b"hidden 1"),
            app(&g, round * 10 + 3, epoch + 1, b"hidden 2"),
            app(&g, round * 10 + 4, epoch + 1, b"hidden 3"),
            roster_commit(&g, epoch + 1, vec![bob], vec![]),
            app(&g, round * 10 + 5, epoch + 2, b"after"),
        ];
        let seqs: Vec<u64> = join_all(reqs.into_iter().map(|r| ca.request(r)))
            .await
            .into_iter()
            .map(seq_of)
            .collect();
        assert_eq!(seqs, (head + 1..=head + 7).collect::<Vec<_>>());
        let s = |i: usize| seqs[i];
        expected.extend([
            Seen::Entry(s(0)),
            Seen::Entry(s(1)),
            Seen::Removed(s(1)),
            Seen::Added(s(5)),
            Seen::Entry(s(6)),
        ]);
        head += 7;
        epoch += 2;
    }
    let got = seen_until(&mut cb, &g, expected.last().unwrap()).await;
    assert_eq!(got, expected);
    // And the relay lets him send again: he is a member.
    let r = cb.request(app(&g, 9999, epoch, b"bob is back")).await;
    assert_eq!(seq_of(r), head + 1);
    relay.stop().await;
}

/// Over its rate, a device's pipelined sends are held, not refused: a refusal
/// in the middle of a pipeline would let the sends behind it overtake it on
/// retry. Every send is accepted, in the order sent, at the configured rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_over_the_rate_are_slowed_in_order_not_refused() {
    let (rate, burst, n) = (40.0, 5.0, 25u64);
    let relay = TestRelay::start_with(|c| {
        c.limits.rate_per_second = rate;
        c.limits.rate_burst = burst;
    })
    .await;
    let alice = Identity::generate("alice");
    let mut ca = relay.connect(&alice).await;
    let g = gid("rated");
    // The group itself takes one request; wait for the bucket to refill.
    create_group(&ca, &g, Default::default()).await;
    tokio::time::sleep(std::time::Duration::from_secs_f64(burst / rate)).await;
    let started = std::time::Instant::now();
    let replies = join_all((0..n).map(|i| ca.request(app(&g, i + 1, 0, format!("m{i}").as_bytes())))).await;
    let elapsed = started.elapsed();
    assert_eq!(
        replies.into_iter().map(seq_of).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    // The bucket held `burst` sends; the rest came at `rate` per second (a
    // lower bound only: a loaded machine makes it slower, never faster).
    let least = std::time::Duration::from_secs_f64((n as f64 - burst) / rate * 0.9);
    assert!(
        elapsed >= least,
        "{n} sends took {elapsed:?}, under {least:?}: not rate limited"
    );
    let got = deliveries(&mut ca, &g, n as usize).await;
    assert_eq!(
        got.iter().map(|e| e.client_msg_id).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    relay.stop().await;
}
