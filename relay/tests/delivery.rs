//! Ordered, durable, exactly-once delivery over real WebSocket connections.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use hush_protocol::frame::{ClientFrame, Direction, InboxKind, Notice, RelayFrame, Reply, Request, Resume};
use hush_protocol::{ErrorCode, ErrorDetail};
use hush_sdk::wire::Identity;

#[tokio::test]
async fn three_devices_exchange_in_order() {
    let relay = TestRelay::start().await;
    let (a, b, c) = (
        Identity::generate("alice"),
        Identity::generate("bob"),
        Identity::generate("carol"),
    );
    let mut ca = relay.connect(&a).await;
    let mut cb = relay.connect(&b).await;
    let mut cc = relay.connect(&c).await;
    let g = group_with(&ca, "trio", &[&cb, &cc]).await;
    // Everyone sends 20 messages concurrently; seqs are gapless and every device
    // sees the same order.
    let senders = [&ca, &cb, &cc];
    let mut futs = Vec::new();
    for (i, s) in senders.iter().enumerate() {
        let g = g.clone();
        futs.push(async move {
            for n in 0..20u64 {
                send_app(s, &g, (i as u64) << 32 | n, 1, format!("{i}:{n}").as_bytes())
                    .await
                    .unwrap();
            }
        });
    }
    futures_util::future::join_all(futs).await;
    let ea = deliveries(&mut ca, &g, 61).await;
    let eb = deliveries(&mut cb, &g, 60).await;
    let ec = deliveries(&mut cc, &g, 60).await;
    // The commit was seq 1 (alice saw it; bob and carol joined at it and start after).
    let seqs: Vec<u64> = eb.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (2..=61).collect::<Vec<_>>());
    // The creator also sees the commit that added the others.
    assert_eq!(
        ea.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=61).collect::<Vec<_>>()
    );
    assert_eq!(ea[1..], eb[..]);
    assert_eq!(eb, ec);
    // Per sender, messages keep their send order.
    for i in 0..3u64 {
        let mine: Vec<u64> = eb
            .iter()
            .filter(|e| e.client_msg_id >> 32 == i)
            .map(|e| e.client_msg_id & 0xffff_ffff)
            .collect();
        assert_eq!(mine, (0..20).collect::<Vec<_>>());
    }
    relay.stop().await;
}

#[tokio::test]
async fn offline_device_catches_up_exactly_once_then_goes_live() {
    let relay = TestRelay::start().await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let ca = relay.connect(&a).await;
    let mut cb = relay.connect(&b).await;
    let g = group_with(&ca, "pair", &[&cb]).await;
    send_app(&ca, &g, 1, 1, b"before").await.unwrap();
    let got = deliveries(&mut cb, &g, 1).await;
    cb.ack(&g, got[0].seq).await.unwrap();
    cb.close().await;
    for n in 0..100u64 {
        send_app(&ca, &g, 100 + n, 1, format!("offline {n}").as_bytes())
            .await
            .unwrap();
    }
    // Bob comes back: exactly the 100 he missed, in order, then live.
    let mut cb = relay.connect(&b).await;
    let backlog = deliveries(&mut cb, &g, 100).await;
    assert_eq!(backlog.first().unwrap().seq, got[0].seq + 1);
    assert!(backlog.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert_eq!(body(&backlog.last().unwrap().payload), b"offline 99");
    let (live_seq, _) = send_app(&ca, &g, 999, 1, b"live").await.unwrap();
    let live = deliveries(&mut cb, &g, 1).await;
    assert_eq!(live[0].seq, live_seq);
    assert_eq!(live_seq, backlog.last().unwrap().seq + 1);
    assert_quiet(&mut cb, |f| matches!(f, RelayFrame::Deliver(_))).await;
    relay.stop().await;
}

#[tokio::test]
async fn resume_hint_overrides_the_relay_cursor() {
    let relay = TestRelay::start().await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let ca = relay.connect(&a).await;
    let cb = relay.connect(&b).await;
    let g = group_with(&ca, "hint", &[&cb]).await;
    for n in 0..10u64 {
        send_app(&ca, &g, n, 1, b"x").await.unwrap();
    }
    drop(cb);
    let mut opts = relay.options();
    opts.resume = vec![Resume {
        group: g.clone(),
        after_seq: 8,
    }];
    let mut cb = relay.try_connect(&b, opts).await.unwrap();
    assert_eq!(cb.ready().groups[0].resume_after, 8);
    let e = deliveries(&mut cb, &g, 3).await;
    assert_eq!(e.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![9, 10, 11]);
    relay.stop().await;
}

/// A hint above the head is taken as the head: `Ready` says so, and what is
/// appended next is delivered (a hint of 2^64-1 once overflowed `after + 1`).
#[tokio::test]
async fn a_resume_hint_above_the_head_is_clamped_to_it() {
    let relay = TestRelay::start().await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let ca = relay.connect(&a).await;
    let cb = relay.connect(&b).await;
    let g = group_with(&ca, "high hint", &[&cb]).await;
    send_app(&ca, &g, 1, 1, b"x").await.unwrap(); // head 2
    drop(cb);
    for (n, hint) in [(10u64, 50u64), (20, u64::MAX)] {
        let mut opts = relay.options();
        opts.resume = vec![Resume {
            group: g.clone(),
            after_seq: hint,
        }];
        let mut cb = relay.try_connect(&b, opts).await.unwrap();
        let head = cb.ready().groups[0].head_seq;
        assert_eq!(cb.ready().groups[0].resume_after, head, "hint {hint}");
        let (seq, _) = send_app(&ca, &g, n, 1, b"after the hint").await.unwrap();
        let e = deliveries(&mut cb, &g, 1).await;
        assert_eq!(e[0].seq, seq);
        drop(cb);
    }
    relay.stop().await;
}

/// A removed device that acknowledges the commit removing it is done with
/// the group: reconnecting replays nothing and tells it nothing (7.6).
#[tokio::test]
async fn a_removed_device_that_acked_its_removal_hears_nothing_more() {
    let relay = TestRelay::start().await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let ca = relay.connect(&a).await;
    let mut cb = relay.connect(&b).await;
    let g = group_with(&ca, "gone", &[&cb]).await;
    send_app(&ca, &g, 1, 1, b"x").await.unwrap();
    let (removal, _) = commit(&ca, &g, 1, vec![], vec![b.device()]).await.unwrap();
    let e = deliveries(&mut cb, &g, 2).await; // after its join: the message, its removal
    assert_eq!(e.last().unwrap().seq, removal);
    wait_for(&mut cb, |f| matches!(f, RelayFrame::Notice(_))).await;
    cb.send(&hush_protocol::frame::ClientFrame::Ack {
        group: g.clone(),
        seq: removal,
    })
    .await
    .unwrap();
    // The ack is applied before the Pong that answers a later ping.
    assert_quiet(&mut cb, |_| false).await;
    drop(cb);
    let mut cb = relay.connect(&b).await;
    assert_quiet(&mut cb, |f| {
        matches!(f, RelayFrame::Notice(_)) || matches!(f, RelayFrame::Deliver(e) if e.group == g)
    })
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn retried_send_is_deduplicated() {
    let relay = TestRelay::start().await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let ca = relay.connect(&a).await;
    let mut cb = relay.connect(&b).await;
    let g = group_with(&ca, "dedupe", &[&cb]).await;
    let (s1, d1) = send_app(&ca, &g, 42, 1, b"once").await.unwrap();
    let (s2, d2) = send_app(&ca, &g, 42, 1, b"once").await.unwrap();
    assert_eq!((s1, d1, d2), (s2, false, true));
    // A different payload under the same id is refused, not silently dropped.
    let err = send_app(&ca, &g, 42, 1, b"other").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::IdempotencyConflict));
    let (s3, _) = send_app(&ca, &g, 43, 1, b"next").await.unwrap();
    assert_eq!(s3, s1 + 1);
    let e = deliveries(&mut cb, &g, 2).await;
    assert_eq!((e[0].seq, e[1].seq), (s1, s3));
    relay.stop().await;
}

#[tokio::test]
async fn concurrent_commits_for_one_epoch_exactly_one_wins() {
    let relay = TestRelay::start().await;
    let ids: Vec<Identity> = (0..4).map(|i| Identity::generate(&format!("u{i}"))).collect();
    let mut clients = Vec::new();
    for id in &ids {
        clients.push(relay.connect(id).await);
    }
    let refs: Vec<&_> = clients[1..].iter().collect();
    let g = group_with(&clients[0], "race", &refs).await; // now at epoch 1
    let results = futures_util::future::join_all(clients.iter().map(|c| commit(c, &g, 1, vec![], vec![]))).await;
    let wins: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(wins.len(), 1, "{results:?}");
    assert_eq!(wins[0].1, 2);
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        match r {
            hush_sdk::wire::ClientError::Relay(e) => {
                assert_eq!(e.code, ErrorCode::StaleEpoch);
                assert_eq!(e.detail, ErrorDetail::CurrentEpoch(2));
            }
            other => panic!("{other:?}"),
        }
    }
    relay.stop().await;
}

#[tokio::test]
async fn non_members_and_removed_devices_are_refused() {
    let relay = TestRelay::start().await;
    let (a, b, c, e) = (
        Identity::generate("a"),
        Identity::generate("b"),
        Identity::generate("c"),
        Identity::generate("eve"),
    );
    let ca = relay.connect(&a).await;
    let mut cb = relay.connect(&b).await;
    let mut cc = relay.connect(&c).await;
    let ce = relay.connect(&e).await;
    let g = group_with(&ca, "private", &[&cb, &cc]).await;
    // Eve is not a member.
    assert_eq!(
        send_app(&ce, &g, 1, 1, b"hi").await.unwrap_err().code(),
        Some(ErrorCode::NotMember)
    );
    let hist = ce
        .request(Request::History {
            group: g.clone(),
            from_seq: 1,
            direction: Direction::Forward,
            limit: 10,
        })
        .await;
    assert_eq!(hist.unwrap_err().code(), Some(ErrorCode::NotMember));
    assert_eq!(
        ce.request(Request::GetGroup { group: g.clone() })
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::NotMember)
    );
    // Bob is removed by a commit: he is told, and refused at once.
    let (rm_seq, _) = commit(&ca, &g, 1, vec![], vec![b.device()]).await.unwrap();
    let f = wait_for(&mut cb, |f| matches!(f, RelayFrame::Notice(Notice::Removed { .. }))).await;
    assert_eq!(
        f,
        RelayFrame::Notice(Notice::Removed {
            group: g.clone(),
            seq: rm_seq
        })
    );
    assert_eq!(
        send_app(&cb, &g, 7, 2, b"still here?").await.unwrap_err().code(),
        Some(ErrorCode::NotMember)
    );
    let (after, _) = send_app(&ca, &g, 8, 2, b"after removal").await.unwrap();
    let got = deliveries(&mut cc, &g, 2).await;
    assert_eq!(got[1].seq, after);
    assert_quiet(&mut cb, |f| matches!(f, RelayFrame::Deliver(d) if d.seq > rm_seq)).await;
    // Reconnecting does not bring him back.
    drop(cb);
    let mut cb = relay.connect(&b).await;
    assert!(cb.ready().groups.is_empty());
    assert_quiet(&mut cb, |f| matches!(f, RelayFrame::Deliver(d) if d.seq > rm_seq)).await;
    relay.stop().await;
}

#[tokio::test]
async fn welcome_lands_in_the_inbox_and_key_packages_are_claimed_once() {
    let relay = TestRelay::start().await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let ca = relay.connect(&a).await;
    let mut cb = relay.connect(&b).await;
    let (one_time, last) = key_packages(&b, 2);
    let up = cb
        .request(Request::UploadKeyPackages {
            one_time: one_time.clone(),
            last_resort: Some(last.clone()),
        })
        .await
        .unwrap();
    assert_eq!(
        up,
        Reply::KeyPackageCount {
            one_time: 2,
            last_resort: true
        }
    );
    let mut claimed = Vec::new();
    for _ in 0..4 {
        match ca
            .request(Request::ClaimKeyPackages {
                user: b.user.clone(),
                device: None,
            })
            .await
            .unwrap()
        {
            Reply::KeyPackages(v) => {
                assert_eq!(v.len(), 1);
                claimed.push((v[0].key_package.clone(), v[0].last_resort));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(claimed[0], (one_time[0].clone(), false));
    assert_eq!(claimed[1], (one_time[1].clone(), false));
    assert_eq!(claimed[2], (last.clone(), true));
    assert_eq!(claimed[3], (last, true));

    let g = gid("welcomed");
    create_group(&ca, &g, Default::default()).await;
    let (seq, _) = commit(&ca, &g, 0, vec![b.device()], vec![]).await.unwrap();
    let f = wait_for(&mut cb, |f| matches!(f, RelayFrame::Inbox(_))).await;
    let RelayFrame::Inbox(entry) = f else { unreachable!() };
    assert_eq!(
        entry.kind,
        InboxKind::Welcome {
            group: g.clone(),
            commit_seq: seq
        }
    );
    assert_eq!(
        entry.payload.as_ref(),
        hush_crypto::inspect::framing::welcome(b"welcome")
    );
    cb.send(&ClientFrame::AckInbox { seq: entry.seq }).await.unwrap();
    // Bob now receives the group's traffic.
    let (s, _) = send_app(&ca, &g, 5, 1, b"hello bob").await.unwrap();
    assert_eq!(deliveries(&mut cb, &g, 1).await[0].seq, s);
    // The acknowledged Welcome is not delivered again.
    cb.close().await;
    let mut cb = relay.connect(&b).await;
    assert_eq!(cb.ready().inbox_acked, entry.seq);
    assert_quiet(&mut cb, |f| matches!(f, RelayFrame::Inbox(_))).await;
    relay.stop().await;
}

#[tokio::test]
async fn history_pages_both_directions() {
    let relay = TestRelay::start().await;
    let a = Identity::generate("alice");
    let ca = relay.connect(&a).await;
    let g = gid("hist");
    create_group(&ca, &g, Default::default()).await;
    for n in 1..=25u64 {
        send_app(&ca, &g, n, 0, format!("m{n}").as_bytes()).await.unwrap();
    }
    let page = |from, direction| {
        let g = g.clone();
        let ca = &ca;
        async move {
            match ca
                .request(Request::History {
                    group: g,
                    from_seq: from,
                    direction,
                    limit: 10,
                })
                .await
                .unwrap()
            {
                Reply::History { entries, next_from } => (entries.iter().map(|e| e.seq).collect::<Vec<_>>(), next_from),
                other => panic!("{other:?}"),
            }
        }
    };
    assert_eq!(page(1, Direction::Forward).await, ((1..=10).collect(), Some(11)));
    assert_eq!(page(21, Direction::Forward).await, ((21..=25).collect(), None));
    assert_eq!(
        page(u64::MAX, Direction::Backward).await,
        ((16..=25).rev().collect(), Some(15))
    );
    assert_eq!(page(5, Direction::Backward).await, ((1..=5).rev().collect(), None));
    relay.stop().await;
}

#[tokio::test]
async fn history_pages_of_large_entries_stay_within_one_frame() {
    let relay = TestRelay::start().await;
    let a = Identity::generate("alice");
    let ca = relay.connect(&a).await;
    let g = gid("big");
    create_group(&ca, &g, Default::default()).await;
    // The largest body whose MLS framing still fits in a payload.
    let big = vec![1u8; hush_protocol::limits::MAX_PAYLOAD_LEN - 64];
    for n in 1..=5u64 {
        send_app(&ca, &g, n, 0, &big).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut from = 1;
    loop {
        let r = ca.request(Request::History {
            group: g.clone(),
            from_seq: from,
            direction: Direction::Forward,
            limit: 500,
        });
        let Reply::History { entries, next_from } = r.await.unwrap() else {
            panic!()
        };
        assert!(
            !entries.is_empty() && entries.len() < 5,
            "a page of {} large entries",
            entries.len()
        );
        seen.extend(entries.iter().map(|e| e.seq));
        match next_from {
            Some(n) => from = n,
            None => break,
        }
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    relay.stop().await;
}

#[tokio::test]
async fn key_package_uploads_must_be_the_uploaders_own_leaf() {
    let relay = TestRelay::start().await;
    let mallory = Identity::generate("mallory");
    let cm = relay.connect(&mallory).await;
    let upload = |one_time: Vec<bytes::Bytes>, last_resort: Option<bytes::Bytes>| {
        cm.request(Request::UploadKeyPackages { one_time, last_resort })
    };
    let code = |r: Result<Reply, hush_sdk::wire::ClientError>| match r {
        Err(hush_sdk::wire::ClientError::Relay(e)) => e.code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    // Mallory's own key, a credential claiming to be bob: refused.
    let as_bob = Identity::from_seed("bob", mallory.seed());
    let (forged, _) = key_packages(&as_bob, 1);
    assert_eq!(code(upload(forged, None).await), ErrorCode::Forbidden);
    // Alice's genuine key package, uploaded by Mallory: refused.
    let alice = Identity::generate("alice");
    let (hers, _) = key_packages(&alice, 1);
    assert_eq!(code(upload(hers, None).await), ErrorCode::Forbidden);
    // Not a key package at all, or a one-time one passed off as last-resort.
    assert_eq!(
        code(upload(vec![bytes::Bytes::from_static(b"kp1")], None).await),
        ErrorCode::InvalidMls
    );
    let (own, own_last) = key_packages(&mallory, 1);
    assert_eq!(code(upload(vec![], Some(own[0].clone())).await), ErrorCode::InvalidMls);
    // Nothing refused was stored; Mallory's own leaf is accepted.
    assert_eq!(
        upload(own, Some(own_last)).await.unwrap(),
        Reply::KeyPackageCount {
            one_time: 1,
            last_resort: true
        }
    );
    relay.stop().await;
}
