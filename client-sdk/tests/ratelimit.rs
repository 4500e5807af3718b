//! Directory lookups over the relay's budget (PROTOCOL.md 11.1): what the
//! SDK does when a `ListDevices` or `ClaimKeyPackages` of another user is
//! refused with `RateLimited`.
//!
//! The relay here holds one or two lookups per device, refilled slowly.
//! Where a test waits for budget to come back, it waits out the
//! `retry_after` the SDK reported: that hint is what is under test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use hush_protocol::ErrorCode;
use hush_sdk::{Client, ConnectionState, Error, Event, GroupId};

/// A relay whose devices each hold `burst` lookups, refilled at
/// `per_minute`.
async fn limited_relay(dir: &std::path::Path, burst: f64, per_minute: f64) -> TestRelay {
    TestRelay::start_with(dir, "127.0.0.1:0".parse().unwrap(), |c| {
        c.limits.lookups_burst = burst;
        c.limits.lookups_per_minute = per_minute;
    })
    .await
}

/// The wait of a rate-limited call; panics on any other outcome.
fn retry_after<T: std::fmt::Debug>(r: Result<T, Error>, max: Duration) -> Duration {
    match r {
        Err(e @ Error::RateLimited { .. }) => {
            assert_eq!(e.code(), Some(ErrorCode::RateLimited));
            let Error::RateLimited { retry_after } = e else {
                unreachable!()
            };
            assert!(
                !retry_after.is_zero() && retry_after <= max,
                "hint {retry_after:?} not within (0, {max:?}]"
            );
            retry_after
        }
        other => panic!("expected Error::RateLimited, got {other:?}"),
    }
}

fn group_ids(groups: &[hush_sdk::GroupSummary]) -> Vec<GroupId> {
    let mut ids: Vec<GroupId> = groups.iter().map(|g| g.group.clone()).collect();
    ids.sort_by(|a, b| a.0.cmp(&b.0));
    ids
}

/// `from` sends `text` in `group`; `to` receives it (through `events`).
async fn exchange(from: &Client, to_events: &mut hush_sdk::EventStream, group: &GroupId, text: &str) {
    let id = from.send_text(group, text).await.unwrap();
    let m = wait_for(to_events, |e| match e {
        Event::Message(m) if m.id == id => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(m.text, text);
    assert_eq!(m.group, *group);
}

async fn joined(events: &mut hush_sdk::EventStream, group: &GroupId) {
    wait_for(events, |e| {
        matches!(e, Event::Joined { group: g } if g == group).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_group_creation_fails_with_the_hint_and_leaves_no_group() {
    let tmp = tempfile::tempdir().unwrap();
    // One lookup, one more a second.
    let relay = limited_relay(&tmp.path().join("relay"), 1.0, 60.0).await;
    let alice = relay.ready_client(&tmp.path().join("alice"), "alice").await;
    let bob = relay.ready_client(&tmp.path().join("bob"), "bob").await;
    let carol = relay.ready_client(&tmp.path().join("carol"), "carol").await;
    let mut a_ev = alice.events();
    let mut b_ev = bob.events();
    let mut c_ev = carol.events();

    // Claiming bob's one device takes alice's one lookup.
    let team = alice.create_group("team", &["bob"]).await.unwrap();
    joined(&mut b_ev, &team).await;
    let before = alice.groups().await.unwrap();
    let members = alice.members(&team).await.unwrap();

    // Every call that looks carol up is refused, with the relay's wait.
    let max = Duration::from_millis(1100);
    let wait = retry_after(alice.create_group("second", &["carol"]).await, max);
    retry_after(alice.direct("carol").await, max);
    retry_after(alice.add_user(&team, "carol").await, max);
    retry_after(alice.devices("carol").await, max);

    // Nothing half-done: no new group here (nor at the relay: carol is
    // invited nowhere, below), the roster as it was, nothing queued.
    let after = alice.groups().await.unwrap();
    assert_eq!(group_ids(&after), group_ids(&before));
    assert_eq!(alice.members(&team).await.unwrap(), members);
    assert_eq!(alice.outbox_len().unwrap(), 0);

    // The existing group works meanwhile, both ways.
    exchange(&alice, &mut b_ev, &team, "lookups are refused, messages are not").await;
    exchange(&bob, &mut a_ev, &team, "heard you").await;

    // Once the wait is over, the same call succeeds: carol is invited once,
    // to that group.
    tokio::time::sleep(wait).await;
    let second = alice.create_group("second", &["carol"]).await.unwrap();
    let first_invite = wait_for(&mut c_ev, |e| match e {
        Event::Joined { group } => Some(group.clone()),
        _ => None,
    })
    .await;
    assert_eq!(first_invite, second, "carol was invited to a group before this one");
    let now = alice.groups().await.unwrap();
    assert_eq!(now.len(), before.len() + 1);
    exchange(&alice, &mut c_ev, &second, "welcome carol").await;
    let carols: Vec<GroupId> = carol
        .groups()
        .await
        .unwrap()
        .into_iter()
        .filter(|g| !g.own_devices)
        .map(|g| g.group)
        .collect();
    assert_eq!(carols, vec![second]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_add_user_changes_no_roster_and_succeeds_after_the_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = limited_relay(&tmp.path().join("relay"), 1.0, 60.0).await;
    let alice = relay.ready_client(&tmp.path().join("alice"), "alice").await;
    let bob = relay.ready_client(&tmp.path().join("bob"), "bob").await;
    let carol = relay.ready_client(&tmp.path().join("carol"), "carol").await;
    let mut b_ev = bob.events();
    let mut c_ev = carol.events();

    let team = alice.create_group("team", &["bob"]).await.unwrap();
    joined(&mut b_ev, &team).await;
    let members = alice.members(&team).await.unwrap();

    let wait = retry_after(alice.add_user(&team, "carol").await, Duration::from_millis(1100));
    // No commit was made or is pending: the roster is unchanged, and a
    // message goes at once (a pending commit would hold it back).
    assert_eq!(alice.members(&team).await.unwrap(), members);
    exchange(&alice, &mut b_ev, &team, "still just us").await;
    alice.flush(WAIT).await.unwrap();

    // The hint covers the whole call: after it, the same call goes through.
    tokio::time::sleep(wait).await;
    alice.add_user(&team, "carol").await.unwrap();
    joined(&mut c_ev, &team).await;
    assert_eq!(alice.members(&team).await.unwrap().len(), members.len() + 1);
    exchange(&alice, &mut c_ev, &team, "hi carol").await;
    let m = wait_for(&mut b_ev, |e| match e {
        Event::Message(m) if m.text == "hi carol" => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(m.group, team);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_identity_check_waits_without_dropping_the_connection() {
    let tmp = tempfile::tempdir().unwrap();
    // Two lookups, one more every two seconds.
    let relay = limited_relay(&tmp.path().join("relay"), 2.0, 30.0).await;
    let alice = relay.ready_client(&tmp.path().join("alice"), "alice").await;
    let (bob, mut b_ev) = relay.client_with_events(&tmp.path().join("bob"), "bob").await;
    bob.sync(WAIT).await.unwrap();
    let carol = relay.ready_client(&tmp.path().join("carol"), "carol").await;
    let mut a_ev = alice.events();

    // Bob's first lookup: checking alice's device when he joins.
    let team = alice.create_group("team", &["bob"]).await.unwrap();
    joined(&mut b_ev, &team).await;
    // His second, by hand; then his budget is empty.
    bob.devices("carol").await.unwrap();
    retry_after(bob.devices("carol").await, Duration::from_millis(2100));

    // Carol invites bob and writes at once. Bob's device must check carol's
    // leaf against the relay's list of her devices before taking in the
    // group: that lookup is refused, and asked again after the wait.
    let chat = carol.create_group("chat", &["bob"]).await.unwrap();
    let hello = carol.send_text(&chat, "hello bob").await.unwrap();

    // Meanwhile the existing group works, both ways.
    exchange(&alice, &mut b_ev, &team, "are you there").await;
    exchange(&bob, &mut a_ev, &team, "yes").await;

    // Then the new group arrives, and its message, once; bob's connection
    // was never dropped for it.
    let mut saw_join = false;
    let got = {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = b_ev
                .next_timeout(left)
                .await
                .expect("timed out waiting for carol's message");
            match ev {
                Event::Connection(ConnectionState::Disconnected { reason, .. }) => {
                    panic!("bob's connection was dropped: {reason}")
                }
                Event::Joined { group } if group == chat => saw_join = true,
                Event::Message(m) if m.id == hello => break m,
                _ => {}
            }
        }
    };
    assert!(saw_join, "the message came before the group was joined");
    assert_eq!(got.group, chat);
    assert_eq!(got.sender.user.0, "carol");
    let copies = bob
        .history(&chat, None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.id == hello)
        .count();
    assert_eq!(copies, 1);
    // Carol's leaf was checked, not taken as an impostor.
    let summary = bob
        .groups()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.group == chat)
        .unwrap();
    assert_eq!(summary.unverified_members, 0);
    assert!(bob.is_connected());
}
