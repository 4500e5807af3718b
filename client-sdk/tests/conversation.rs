//! Two users chat through a real relay: every chat feature, end to end.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use hush_sdk::Event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_with_every_feature() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&tmp.path().join("relay")).await;
    let alice = relay.ready_client(&tmp.path().join("alice"), "alice").await;
    let bob = relay.ready_client(&tmp.path().join("bob"), "bob").await;
    let mut a_ev = alice.events();
    let mut b_ev = bob.events();

    let group = alice.direct("bob").await.unwrap();
    wait_for(&mut b_ev, |e| {
        matches!(e, Event::Joined { group: g } if *g == group).then_some(())
    })
    .await;
    assert_eq!(
        alice.safety_number("bob").await.unwrap(),
        bob.safety_number("alice").await.unwrap()
    );

    // Text, both ways.
    let marker = "PLAINTEXT-MARKER-7f3a9c";
    let id = alice.send_text(&group, &format!("hello bob {marker}")).await.unwrap();
    let m = wait_for(&mut b_ev, |e| match e {
        Event::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(m.id, id);
    assert_eq!(m.sender.user.0, "alice");
    assert!(m.text.starts_with("hello bob"));
    let reply = bob.send_text(&group, "hi alice").await.unwrap();
    let m = wait_for(&mut a_ev, |e| match e {
        Event::Message(m) if !m.own => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(m.id, reply);

    // Someone else's message cannot be edited or deleted: refused here, not
    // sent to be ignored by every member.
    assert!(matches!(
        alice.edit(&group, &reply, "put words in bob's mouth").await,
        Err(hush_sdk::Error::NotYourMessage(_))
    ));
    assert!(matches!(
        bob.delete(&group, &id).await,
        Err(hush_sdk::Error::NotYourMessage(_))
    ));
    assert!(matches!(
        alice.edit(&group, "00112233445566778899aabbccddeeff", "no such").await,
        Err(hush_sdk::Error::UnknownMessage(_))
    ));

    // Edit, react, receipt, delete.
    alice.edit(&group, &id, "hello bob (edited)").await.unwrap();
    wait_for(&mut b_ev, |e| {
        matches!(e, Event::Edited { id: i, text, .. } if *i == id && text == "hello bob (edited)").then_some(())
    })
    .await;
    bob.react(&group, &id, "👍", false).await.unwrap();
    wait_for(&mut a_ev, |e| {
        matches!(e, Event::Reaction { id: i, emoji, .. } if *i == id && emoji == "👍").then_some(())
    })
    .await;
    assert_eq!(bob.mark_read(&group).await.unwrap(), 1);
    wait_for(&mut a_ev, |e| {
        matches!(e, Event::Receipt { ids, .. } if ids.contains(&id)).then_some(())
    })
    .await;
    let hist = alice.history(&group, None, 10).await.unwrap();
    let mine = hist.iter().find(|m| m.id == id).unwrap();
    assert_eq!(mine.text, "hello bob (edited)");
    assert!(mine.edited);
    assert_eq!(
        mine.read_by.iter().map(|u| u.0.as_str()).collect::<Vec<_>>(),
        vec!["bob"]
    );
    assert_eq!(mine.reactions.get("👍").map(Vec::len), Some(1));

    // Typing is live only.
    bob.typing(&group, true).await.unwrap();
    wait_for(&mut a_ev, |e| {
        matches!(e, Event::Typing { by, active: true, .. } if by.user.0 == "bob").then_some(())
    })
    .await;

    alice.delete(&group, &id).await.unwrap();
    wait_for(&mut b_ev, |e| {
        matches!(e, Event::Deleted { id: i, .. } if *i == id).then_some(())
    })
    .await;
    let hist = bob.history(&group, None, 10).await.unwrap();
    let gone = hist.iter().find(|m| m.id == id).unwrap();
    assert!(gone.deleted && gone.text.is_empty());

    // A third party is added, then removed, and reads nothing afterwards.
    let carol = relay.ready_client(&tmp.path().join("carol"), "carol").await;
    let mut c_ev = carol.events();
    alice.add_user(&group, "carol").await.unwrap();
    wait_for(&mut c_ev, |e| matches!(e, Event::Joined { .. }).then_some(())).await;
    wait_for(&mut b_ev, |e| {
        matches!(e, Event::MemberAdded { member, .. } if member.user.0 == "carol").then_some(())
    })
    .await;
    bob.send_text(&group, "welcome carol").await.unwrap();
    wait_for(&mut c_ev, |e| {
        matches!(e, Event::Message(m) if m.text == "welcome carol").then_some(())
    })
    .await;
    // Alice made the group, so she is its admin: bob may not remove carol.
    let refused = bob.remove_user(&group, "carol").await.unwrap_err();
    assert!(
        matches!(&refused, hush_sdk::Error::Relay(e) if e.code == hush_protocol::ErrorCode::Forbidden),
        "{refused:?}"
    );
    alice.remove_user(&group, "carol").await.unwrap();
    wait_for(&mut c_ev, |e| matches!(e, Event::Removed { .. }).then_some(())).await;
    alice.send_text(&group, "carol cannot read this").await.unwrap();
    alice.flush(WAIT).await.unwrap();
    wait_for(&mut b_ev, |e| {
        matches!(e, Event::Message(m) if m.text == "carol cannot read this").then_some(())
    })
    .await;
    let carol_hist = carol.history(&group, None, 50).await.unwrap();
    assert!(carol_hist.iter().all(|m| m.text != "carol cannot read this"));

    // The relay's files never hold the plaintext.
    let kept = "KEPT-MARKER-51d2e8";
    alice.send_text(&group, kept).await.unwrap();
    wait_for(&mut b_ev, |e| {
        matches!(e, Event::Message(m) if m.text == kept).then_some(())
    })
    .await;
    alice.close().await;
    bob.close().await;
    carol.close().await;
    let dir = relay.dir.clone();
    relay.stop().await;
    let bytes = all_bytes(&dir);
    assert!(!bytes.is_empty());
    assert!(
        !contains(&bytes, marker.as_bytes()),
        "plaintext marker found in the relay's files"
    );
    assert!(
        !contains(&bytes, kept.as_bytes()),
        "plaintext marker found in the relay's files"
    );
    // ...while the clients' own history does (it is decrypted locally).
    assert!(contains(&all_bytes(&tmp.path().join("bob")), kept.as_bytes()));
}

/// Two people start a direct conversation with each other at the same
/// moment: once each has joined both, both use the same one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_conversations_started_at_once_converge_on_one() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&tmp.path().join("relay")).await;
    let alice = relay.ready_client(&tmp.path().join("alice"), "alice").await;
    let bob = relay.ready_client(&tmp.path().join("bob"), "bob").await;
    let (mut a_ev, mut b_ev) = (alice.events(), bob.events());
    let (ga, gb) = tokio::join!(alice.direct("bob"), bob.direct("alice"));
    let (ga, gb) = (ga.unwrap(), gb.unwrap());
    // Each joins the other's (a no-op when they were the same group).
    for (events, other) in [(&mut a_ev, &gb), (&mut b_ev, &ga)] {
        if ga != gb {
            wait_for(events, |e| {
                matches!(e, Event::Joined { group } if group == other).then_some(())
            })
            .await;
        }
    }
    let (da, db) = (alice.direct("bob").await.unwrap(), bob.direct("alice").await.unwrap());
    assert_eq!(da, db);
    assert_eq!(da.0, std::cmp::min(ga.0, gb.0));
    assert_eq!(alice.find_group("bob").await.unwrap(), da);
    let id = alice.send_text(&da, "one conversation").await.unwrap();
    let m = wait_for(&mut b_ev, |e| match e {
        Event::Message(m) if m.id == id => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(m.group, db);
    relay.stop().await;
}

/// A group's name is shared with its members, end-to-end encrypted: every
/// member shows the same one, renames reach everyone, and a member added
/// later gets it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_names_are_the_same_for_every_member() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&tmp.path().join("relay")).await;
    let alice = relay.ready_client(&tmp.path().join("alice"), "alice").await;
    let bob = relay.ready_client(&tmp.path().join("bob"), "bob").await;
    let carol = relay.ready_client(&tmp.path().join("carol"), "carol").await;
    let (mut a_ev, mut b_ev, mut c_ev) = (alice.events(), bob.events(), carol.events());
    let group = alice.create_group("project", &["bob"]).await.unwrap();
    named(&mut b_ev, &group, "project").await;
    let name_of = |groups: Vec<hush_sdk::GroupSummary>| {
        groups
            .into_iter()
            .find(|g| g.group == group)
            .map(|g| (g.name, g.shared_name))
            .unwrap()
    };
    assert_eq!(name_of(bob.groups().await.unwrap()), ("project".to_owned(), true));

    // Bob renames it; alice shows the new name.
    bob.rename(&group, "launch\u{7}").await.unwrap();
    named(&mut a_ev, &group, "launch").await;
    assert_eq!(name_of(alice.groups().await.unwrap()), ("launch".to_owned(), true));

    // Carol, added afterwards, sees the current name, not a label of her own.
    alice.add_user(&group, "carol").await.unwrap();
    named(&mut c_ev, &group, "launch").await;
    assert_eq!(name_of(carol.groups().await.unwrap()), ("launch".to_owned(), true));
}

async fn named(events: &mut hush_sdk::EventStream, group: &hush_sdk::GroupId, want: &str) {
    wait_for(events, |e| match e {
        Event::GroupRenamed { group: g, name, .. } if g == group && name == want => Some(()),
        _ => None,
    })
    .await
}
