//! Two users, three devices: alice links a laptop to her phone by a short
//! code, the laptop gets her groups, their history and her settings, and then
//! all three chat with every feature. A removed device reads nothing new.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use hush_sdk::{Client, Error, Event, Trust};

async fn link(relay: &TestRelay, existing: &Client, dir: &std::path::Path) -> (Client, hush_sdk::EventStream) {
    let pending = existing.link_device().await.unwrap();
    let code = pending.code().to_owned();
    assert_eq!(code.len(), 14, "NNNN-XXXX-XXXX: {code}");
    let new = Client::builder()
        .relay(relay.url())
        .trust(Trust::CertSha256(relay.cert))
        .data_dir(dir)
        .timing(fast_timing())
        .open_linked(&code, WAIT);
    let (approved, opened) = tokio::join!(pending.complete(WAIT), new);
    let (client, events) = opened.unwrap();
    assert_eq!(approved.unwrap(), client.device_id());
    (client, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_three_devices_with_linking_history_and_every_feature() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&tmp.path().join("relay")).await;
    let phone = relay.ready_client(&tmp.path().join("alice-phone"), "alice").await;
    let bob = relay.ready_client(&tmp.path().join("bob"), "bob").await;
    let mut p_ev = phone.events();
    let mut b_ev = bob.events();

    // Before the laptop exists: a conversation, an edit, a reaction, a
    // receipt, and a setting.
    let dm = phone.direct("bob").await.unwrap();
    let first = phone.send_text(&dm, "before the laptop").await.unwrap();
    let answer = bob.send_text(&dm, "bob answers").await.unwrap();
    wait_for(&mut p_ev, |e| {
        matches!(e, Event::Message(m) if m.id == answer).then_some(())
    })
    .await;
    phone.edit(&dm, &first, "before the laptop (edited)").await.unwrap();
    bob.react(&dm, &first, "🎉", false).await.unwrap();
    phone.mark_read(&dm).await.unwrap();
    phone.set_setting("theme", serde_json::json!("dark")).await.unwrap();
    phone.flush(WAIT).await.unwrap();
    bob.flush(WAIT).await.unwrap();
    phone.sync(WAIT).await.unwrap();
    let safety_before = bob.safety_number("alice").await.unwrap();

    // Link the laptop.
    let (laptop, mut l_ev) = link(&relay, &phone, &tmp.path().join("alice-laptop")).await;
    assert_eq!(laptop.user().0, "alice");
    assert_ne!(laptop.device_id(), phone.device_id());
    wait_for(&mut p_ev, |e| {
        matches!(e, Event::DeviceLinked { device } if *device == laptop.device_id()).then_some(())
    })
    .await;
    laptop.sync(WAIT).await.unwrap();

    // The laptop is in the conversation and the own-devices group, with the
    // history from before it existed, the read state and the setting.
    let groups = laptop.groups().await.unwrap();
    assert!(groups.iter().any(|g| g.own_devices), "{groups:?}");
    let ldm = groups.iter().find(|g| g.direct_with.as_deref() == Some("bob")).unwrap();
    assert_eq!(ldm.group, dm);
    let history = laptop.history(&dm, None, 50).await.unwrap();
    let old = history.iter().find(|m| m.id == first).expect("history transferred");
    assert_eq!(old.text, "before the laptop (edited)");
    assert!(old.edited && old.own);
    assert_eq!(old.reactions.get("🎉").map(Vec::len), Some(1));
    assert!(history.iter().any(|m| m.id == answer && m.text == "bob answers"));
    assert_eq!(laptop.read_up_to(&dm).unwrap(), phone.read_up_to(&dm).unwrap());
    assert_eq!(laptop.setting("theme").unwrap(), Some(serde_json::json!("dark")));

    // Bob sees alice's new device and a new safety number.
    let changed = wait_for(&mut b_ev, |e| match e {
        Event::DevicesChanged {
            user,
            safety_number,
            first_seen: false,
            added,
            ..
        } if user.0 == "alice" && added.contains(&laptop.device_id()) => Some(safety_number.clone()),
        _ => None,
    })
    .await;
    assert_ne!(changed, safety_before);
    assert_eq!(changed, bob.safety_number("alice").await.unwrap());

    // All three chat: both of alice's devices get bob's message; the
    // laptop's message reaches bob and the phone.
    let from_bob = bob.send_text(&dm, "hello both of you").await.unwrap();
    for ev in [&mut p_ev, &mut l_ev] {
        wait_for(ev, |e| matches!(e, Event::Message(m) if m.id == from_bob).then_some(())).await;
    }
    let from_laptop = laptop.send_text(&dm, "typed on the laptop").await.unwrap();
    let seen = wait_for(&mut b_ev, |e| match e {
        Event::Message(m) if m.id == from_laptop => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(seen.sender.device, laptop.device_id());
    let on_phone = wait_for(&mut p_ev, |e| match e {
        Event::Message(m) if m.id == from_laptop => Some(m.clone()),
        _ => None,
    })
    .await;
    assert!(on_phone.own, "a message from the user's other device is the user's own");

    // Edit and react across devices; typing from the laptop.
    laptop
        .edit(&dm, &from_laptop, "typed on the laptop (fixed)")
        .await
        .unwrap();
    wait_for(&mut b_ev, |e| {
        matches!(e, Event::Edited { id, .. } if *id == from_laptop).then_some(())
    })
    .await;
    bob.react(&dm, &from_laptop, "👍", false).await.unwrap();
    wait_for(&mut p_ev, |e| {
        matches!(e, Event::Reaction { id, .. } if *id == from_laptop).then_some(())
    })
    .await;
    laptop.typing(&dm, true).await.unwrap();
    wait_for(&mut b_ev, |e| {
        matches!(e, Event::Typing { by, active: true, .. } if by.device == laptop.device_id()).then_some(())
    })
    .await;

    // Read state syncs from the laptop to the phone; the receipt reaches bob.
    laptop.sync(WAIT).await.unwrap();
    laptop.mark_read(&dm).await.unwrap();
    wait_for(&mut b_ev, |e| {
        matches!(e, Event::Receipt { ids, by, .. } if ids.contains(&from_bob) && by.user.0 == "alice").then_some(())
    })
    .await;
    laptop.flush(WAIT).await.unwrap();
    phone.sync(WAIT).await.unwrap();
    assert_eq!(phone.read_up_to(&dm).unwrap(), laptop.read_up_to(&dm).unwrap());
    // A setting changed on the laptop arrives on the phone as an event.
    laptop.set_setting("theme", serde_json::json!("light")).await.unwrap();
    wait_for(&mut p_ev, |e| {
        matches!(e, Event::SettingChanged { name, value } if name == "theme" && *value == serde_json::json!("light"))
            .then_some(())
    })
    .await;

    // The laptop deletes a message the phone sent (same user): gone everywhere.
    laptop.delete(&dm, &first).await.unwrap();
    wait_for(&mut b_ev, |e| {
        matches!(e, Event::Deleted { id, .. } if *id == first).then_some(())
    })
    .await;
    wait_for(&mut p_ev, |e| {
        matches!(e, Event::Deleted { id, .. } if *id == first).then_some(())
    })
    .await;

    // The phone removes the laptop (a lost device): revoked at the relay, so
    // it is disconnected at once and cannot come back, it is out of every
    // group, reads nothing new, and nothing it sends reaches anyone.
    let laptop_id = laptop.device_id();
    let report = phone.remove_device(laptop_id).await.unwrap();
    assert!(report.revoked);
    assert!(report.removed_from.contains(&dm), "{report:?}");
    wait_for(&mut l_ev, |e| {
        matches!(e, Event::Connection(hush_sdk::ConnectionState::Disconnected { .. })).then_some(())
    })
    .await;
    // Its next attempt is refused as revoked: it stops trying, and its
    // sends are refused instead of queued.
    wait_for(&mut l_ev, |e| {
        matches!(e, Event::Connection(hush_sdk::ConnectionState::Revoked)).then_some(())
    })
    .await;
    assert!(matches!(
        laptop.wait_connected(std::time::Duration::from_secs(5)).await,
        Err(hush_sdk::Error::Revoked)
    ));
    assert!(matches!(
        laptop.send_text(&dm, "from the lost laptop").await,
        Err(hush_sdk::Error::Revoked)
    ));
    // It is no longer listed, and a new group does not include it.
    assert!(
        phone
            .devices("alice")
            .await
            .unwrap()
            .iter()
            .all(|d| d.device != laptop_id)
    );
    let later = phone.create_group("after the loss", &["bob"]).await.unwrap();
    assert!(
        phone
            .members(&later)
            .await
            .unwrap()
            .iter()
            .all(|m| m.device != laptop_id)
    );
    assert!(matches!(
        phone.remove_device(laptop_id).await,
        Err(Error::UnknownDevice(_))
    ));
    wait_for(&mut b_ev, |e| {
        matches!(e, Event::MemberRemoved { member, .. } if member.device == laptop_id).then_some(())
    })
    .await;
    let secret = "after the laptop was removed";
    bob.send_text(&dm, secret).await.unwrap();
    wait_for(&mut p_ev, |e| {
        matches!(e, Event::Message(m) if m.text == secret).then_some(())
    })
    .await;
    assert!(phone.members(&dm).await.unwrap().iter().all(|m| m.device != laptop_id));
    let own = phone.own_devices_group().await.unwrap().unwrap();
    assert!(phone.members(&own).await.unwrap().iter().all(|m| m.device != laptop_id));
    let l_hist = laptop.history(&dm, None, 100).await.unwrap();
    assert!(l_hist.iter().all(|m| m.text != secret));

    phone.close().await;
    laptop.close().await;
    bob.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_link_code_links_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&tmp.path().join("relay")).await;
    let phone = relay.ready_client(&tmp.path().join("phone"), "alice").await;
    let pending = phone.link_device().await.unwrap();
    // Same nameplate (so the relay pairs them), wrong secret.
    let code = pending.code().to_owned();
    let last = code.chars().last().unwrap();
    let wrong = format!("{}{}", &code[..code.len() - 1], if last == '2' { '3' } else { '2' });
    let new = Client::builder()
        .relay(relay.url())
        .trust(Trust::CertSha256(relay.cert))
        .data_dir(tmp.path().join("intruder"))
        .timing(fast_timing())
        .open_linked(&wrong, WAIT);
    let (approved, opened) = tokio::join!(pending.complete(WAIT), new);
    assert!(matches!(approved, Err(Error::Link(_))), "{approved:?}");
    assert!(matches!(opened, Err(Error::Link(_))), "{:?}", opened.map(|_| ()));
    // Nothing was registered: alice still has one device.
    assert_eq!(phone.devices("alice").await.unwrap().len(), 1);
    phone.close().await;
    relay.stop().await;
}
