//! Delivery guarantees through a real relay: offline catch-up in order and
//! exactly once, the outbox across reconnects and restarts, concurrent group
//! changes, removed devices.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use hush_sdk::Event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_device_catches_up_on_100_messages_once_and_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&tmp.path().join("relay")).await;
    let alice = relay.ready_client(&tmp.path().join("alice"), "alice").await;
    let bob_dir = tmp.path().join("bob");
    let bob = relay.ready_client(&bob_dir, "bob").await;
    let mut b_ev = bob.events();
    let group = alice.direct("bob").await.unwrap();
    wait_for(&mut b_ev, |e| matches!(e, Event::Joined { .. }).then_some(())).await;
    bob.close().await;
    drop(bob);

    for i in 0..100 {
        alice.send_text(&group, &format!("m{i}")).await.unwrap();
    }
    alice.flush(WAIT).await.unwrap();

    let (bob, mut b_ev) = relay.client_with_events(&bob_dir, "bob").await;
    let mut got = Vec::new();
    while got.len() < 100 {
        let m = wait_for(&mut b_ev, |e| match e {
            Event::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .await;
        got.push(m);
    }
    let want: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
    bob.sync(WAIT).await.unwrap();
    // Reopening replays nothing.
    bob.close().await;
    drop(bob);
    let (bob, mut b_ev) = relay.client_with_events(&bob_dir, "bob").await;
    bob.sync(WAIT).await.unwrap();
    while let Some(e) = b_ev.next_timeout(std::time::Duration::from_millis(1)).await {
        assert!(!matches!(e, Event::Message(_)), "replayed after restart: {e:?}");
    }
    let hist = bob.history(&group, None, 500).await.unwrap();
    assert_eq!(hist.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_written_offline_is_delivered_once_after_reconnect_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay = TestRelay::start(&relay_dir).await;
    let addr = relay.addr;
    let alice_dir = tmp.path().join("alice");
    let alice = relay.ready_client(&alice_dir, "alice").await;
    let bob = relay.ready_client(&tmp.path().join("bob"), "bob").await;
    let mut b_ev = bob.events();
    let group = alice.direct("bob").await.unwrap();
    wait_for(&mut b_ev, |e| matches!(e, Event::Joined { .. }).then_some(())).await;

    // The relay goes away; alice writes while offline.
    let mut a_ev = alice.events();
    relay.stop().await;
    wait_for(&mut a_ev, |e| {
        matches!(e, Event::Connection(hush_sdk::ConnectionState::Disconnected { .. })).then_some(())
    })
    .await;
    alice.send_text(&group, "written offline").await.unwrap();
    assert_eq!(alice.outbox_len().unwrap(), 1);
    // ...and even restarts before the relay is back.
    alice.close().await;
    drop(alice);
    let alice = relay_client_at(&relay_dir, addr, &alice_dir).await;
    assert_eq!(alice.outbox_len().unwrap(), 1);
    alice.send_text(&group, "written after restart").await.unwrap();

    let relay = TestRelay::start_at(&relay_dir, addr).await;
    alice.flush(WAIT).await.unwrap();
    let mut texts = Vec::new();
    while texts.len() < 2 {
        texts.push(
            wait_for(&mut b_ev, |e| match e {
                Event::Message(m) => Some(m.text.clone()),
                _ => None,
            })
            .await,
        );
    }
    assert_eq!(texts, vec!["written offline", "written after restart"]);
    bob.sync(WAIT).await.unwrap();
    let hist = bob.history(&group, None, 10).await.unwrap();
    assert_eq!(hist.iter().filter(|m| m.text == "written offline").count(), 1);
    alice.close().await;
    bob.close().await;
    relay.stop().await;
}

async fn relay_client_at(
    _relay_dir: &std::path::Path,
    addr: std::net::SocketAddr,
    dir: &std::path::Path,
) -> hush_sdk::Client {
    // The relay is down: reuse the certificate hash it published.
    let cert = std::fs::read_to_string(_relay_dir.join("dev-cert.sha256")).unwrap();
    let cert: [u8; 32] = hex::decode(cert.trim()).unwrap().try_into().unwrap();
    hush_sdk::Client::builder()
        .relay(format!("wss://{addr}/ws"))
        .trust(hush_sdk::Trust::CertSha256(cert))
        .data_dir(dir)
        .timing(fast_timing())
        .open()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_group_changes_from_two_devices_converge() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&tmp.path().join("relay")).await;
    let alice = relay.ready_client(&tmp.path().join("alice"), "alice").await;
    let bob = relay.ready_client(&tmp.path().join("bob"), "bob").await;
    let carol = relay.ready_client(&tmp.path().join("carol"), "carol").await;
    let dave = relay.ready_client(&tmp.path().join("dave"), "dave").await;
    let mut b_ev = bob.events();
    let group = alice.create_group("team", &["bob"]).await.unwrap();
    // Every member may change this group's roster (the default: only its
    // creator, the admin).
    let mut policy = alice.policy(&group).await.unwrap();
    assert_eq!(policy.admins, vec![alice.device_id()]);
    policy.admins_change_roster = false;
    alice.set_policy(&group, policy).await.unwrap();
    wait_for(&mut b_ev, |e| matches!(e, Event::Joined { .. }).then_some(())).await;
    bob.sync(WAIT).await.unwrap();
    // Both change the group at the same epoch: one wins, the other retries.
    let (a, b) = tokio::join!(alice.add_user(&group, "carol"), bob.add_user(&group, "dave"));
    a.unwrap();
    b.unwrap();
    for c in [&alice, &bob, &carol, &dave] {
        c.sync(WAIT).await.unwrap();
    }
    let mut users: Vec<String> = alice
        .members(&group)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.user.0)
        .collect();
    users.sort();
    users.dedup();
    assert_eq!(users, vec!["alice", "bob", "carol", "dave"]);
    for c in [&bob, &carol, &dave] {
        assert_eq!(
            c.members(&group).await.unwrap().len(),
            alice.members(&group).await.unwrap().len()
        );
    }
    let mut d_ev = dave.events();
    carol.send_text(&group, "all here").await.unwrap();
    wait_for(&mut d_ev, |e| {
        matches!(e, Event::Message(m) if m.text == "all here").then_some(())
    })
    .await;
}

/// Sends made at the same moment, from many tasks, each get their own
/// outbox place: every one reaches the log once, none is lost though
/// reported saved (the outbox is numbered by the client's one task, inside
/// the transaction that stores the item).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_are_each_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&tmp.path().join("relay")).await;
    let alice = relay.ready_client(&tmp.path().join("alice"), "alice").await;
    let bob = relay.ready_client(&tmp.path().join("bob"), "bob").await;
    let mut b_ev = bob.events();
    let group = alice.direct("bob").await.unwrap();
    wait_for(&mut b_ev, |e| matches!(e, Event::Joined { .. }).then_some(())).await;
    let sends: Vec<_> = (0..40)
        .map(|i| {
            let (alice, group) = (alice.clone(), group.clone());
            tokio::spawn(async move { alice.send_text(&group, &format!("at once {i}")).await })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for s in sends {
        ids.insert(s.await.unwrap().unwrap());
    }
    assert_eq!(ids.len(), 40);
    alice.flush(WAIT).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 40 {
        let id = wait_for(&mut b_ev, |e| match e {
            Event::Message(m) if m.text.starts_with("at once") => Some(m.id.clone()),
            _ => None,
        })
        .await;
        assert!(seen.insert(id), "delivered twice");
    }
    assert_eq!(seen, ids);
    bob.sync(WAIT).await.unwrap();
    let history = bob.history(&group, None, 100).await.unwrap();
    assert_eq!(history.iter().filter(|m| m.text.starts_with("at once")).count(), 40);
}
