//! `Request::Redact` (a deleted message's stored ciphertext is dropped) and
//! the device-linking rendezvous, over real connections.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use hush_protocol::frame::{ClientFrame, CloseReason, Direction, Hello, RelayFrame, Reply, Request, Resume};
use hush_protocol::limits::{MAX_RENDEZVOUS_MESSAGES, MAX_RENDEZVOUS_PAYLOAD};
use hush_protocol::{ErrorCode, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, codec};
use hush_sdk::wire::{Identity, Trust, open_websocket};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn only_the_senders_user_redacts_and_the_entry_keeps_its_place() {
    let relay = TestRelay::start().await;
    let (phone, laptop, bob) = (
        Identity::generate("alice"),
        Identity::generate("alice"),
        Identity::generate("bob"),
    );
    let cp = relay.connect(&phone).await;
    let cl = relay.connect(&laptop).await;
    let cb = relay.connect(&bob).await;
    let g = group_with(&cp, "redact", &[&cl, &cb]).await;
    let (secret_seq, _) = send_app(&cp, &g, 7, 1, b"to be deleted").await.unwrap();
    let (kept_seq, _) = send_app(&cb, &g, 8, 1, b"kept").await.unwrap();
    let redact = |seq| Request::Redact { group: g.clone(), seq };

    // Bob is not alice: refused, and nothing changes.
    let e = cb.request(redact(secret_seq)).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden));
    // Alice's other device may; twice is fine.
    assert_eq!(cl.request(redact(secret_seq)).await.unwrap(), Reply::Done);
    assert_eq!(cp.request(redact(secret_seq)).await.unwrap(), Reply::Done);
    // A commit cannot be redacted; a seq never written is not found.
    assert_eq!(
        cp.request(redact(1)).await.unwrap_err().code(),
        Some(ErrorCode::InvalidRequest)
    );
    assert_eq!(
        cp.request(redact(99)).await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    // A non-member learns nothing (not the log's length, not which entries
    // are commits): NotMember whatever it asks.
    let outsider = relay.connect(&Identity::generate("eve")).await;
    for seq in [kept_seq, 1, 99] {
        assert_eq!(
            outsider.request(redact(seq)).await.unwrap_err().code(),
            Some(ErrorCode::NotMember),
            "seq {seq}"
        );
    }

    // History: the entry is there with every field but its payload.
    let Reply::History { entries, .. } = cb
        .request(Request::History {
            group: g.clone(),
            from_seq: 1,
            direction: Direction::Forward,
            limit: 10,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    let gone = entries.iter().find(|e| e.seq == secret_seq).unwrap();
    assert!(gone.payload.is_empty());
    assert_eq!((gone.sender, gone.client_msg_id), (phone.device(), 7));
    let kept = entries.iter().find(|e| e.seq == kept_seq).unwrap();
    assert_eq!(body(&kept.payload), b"kept");

    // A device resuming from before it gets the empty entry, in its place.
    drop(cb);
    let mut opts = relay.options();
    opts.resume = vec![Resume {
        group: g.clone(),
        after_seq: 0,
    }];
    let mut again = relay.try_connect(&bob, opts).await.unwrap();
    // (Delivery to a member starts after the commit that added it.)
    let got = deliveries(&mut again, &g, 2).await;
    assert_eq!(
        got.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![secret_seq, kept_seq]
    );
    assert!(got[0].payload.is_empty());
    assert_eq!(body(&got[1].payload), b"kept");
    relay.stop().await;
}

/// A connection that got `Challenge` and will rendezvous.
struct Raw(hush_sdk::wire::Ws);

impl Raw {
    async fn open(relay: &TestRelay) -> Raw {
        let mut ws = Raw(open_websocket(&relay.url(), &Trust::CertSha256(relay.cert))
            .await
            .unwrap());
        ws.send(&ClientFrame::Hello(Hello {
            min_version: MIN_PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            client: "test".into(),
        }))
        .await;
        assert!(matches!(ws.recv().await, Some(RelayFrame::Challenge(_))));
        ws
    }

    async fn send(&mut self, f: &ClientFrame) {
        self.0
            .send(Message::Binary(codec::encode(f).unwrap().into()))
            .await
            .unwrap();
    }

    async fn post(&mut self, slot: [u8; 16], payload: &[u8]) {
        self.send(&ClientFrame::Rendezvous {
            slot,
            payload: Bytes::copy_from_slice(payload),
        })
        .await;
    }

    /// The next frame, `None` once closed.
    async fn recv(&mut self) -> Option<RelayFrame> {
        loop {
            match tokio::time::timeout(WAIT, self.0.next()).await.expect("relay silent") {
                Some(Ok(Message::Binary(b))) => return Some(codec::decode(&b).unwrap()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    async fn payload(&mut self) -> Vec<u8> {
        match self.recv().await {
            Some(RelayFrame::Rendezvous { payload }) => payload.to_vec(),
            other => panic!("expected a rendezvous payload, got {other:?}"),
        }
    }

    /// Reads until `Closing`; returns the error sent before it, if any.
    async fn closing(&mut self) -> (Option<ErrorCode>, CloseReason) {
        let mut error = None;
        loop {
            match self.recv().await {
                Some(RelayFrame::Error(e)) => error = Some(e.code),
                Some(RelayFrame::Closing(c)) => return (error, c.reason),
                Some(_) => {}
                None => panic!("closed without Closing"),
            }
        }
    }
}

#[tokio::test]
async fn two_connections_on_a_slot_are_paired_and_nothing_else_gets_through() {
    let relay = TestRelay::start().await;
    let slot = [7u8; 16];
    let mut a = Raw::open(&relay).await;
    a.post(slot, b"a1").await;
    a.post(slot, b"a2").await;
    // Held until the second side arrives, then delivered in order.
    let mut b = Raw::open(&relay).await;
    b.post(slot, b"b1").await;
    assert_eq!(b.payload().await, b"a1");
    assert_eq!(b.payload().await, b"a2");
    assert_eq!(a.payload().await, b"b1");
    a.send(&ClientFrame::Ping { nonce: 5 }).await;
    assert!(matches!(a.recv().await, Some(RelayFrame::Pong { nonce: 5 })));
    // A third connection on the same slot does not join the pair: it waits
    // alone, and the pair keeps talking.
    let mut c = Raw::open(&relay).await;
    c.post(slot, b"c1").await;
    b.post(slot, b"b2").await;
    assert_eq!(a.payload().await, b"b2");
    // A rendezvous connection cannot make requests; its peer is closed too.
    a.send(&ClientFrame::Request {
        id: 1,
        op: Request::ListGroups,
    })
    .await;
    assert_eq!(
        a.closing().await,
        (Some(ErrorCode::UnexpectedFrame), CloseReason::ProtocolError)
    );
    assert_eq!(b.closing().await, (None, CloseReason::GoingAway));
    // The waiting third one pairs with a fourth.
    let mut d = Raw::open(&relay).await;
    d.post(slot, b"d1").await;
    assert_eq!(d.payload().await, b"c1");
    assert_eq!(c.payload().await, b"d1");

    // Limits: another slot on the same connection, an oversized payload, too
    // many payloads.
    c.post([8u8; 16], b"x").await;
    assert_eq!(c.closing().await.0, Some(ErrorCode::InvalidRequest));
    let mut big = Raw::open(&relay).await;
    big.post([9u8; 16], &vec![0u8; MAX_RENDEZVOUS_PAYLOAD + 1]).await;
    assert_eq!(big.closing().await.0, Some(ErrorCode::InvalidRequest));
    let mut chatty = Raw::open(&relay).await;
    for i in 0..=MAX_RENDEZVOUS_MESSAGES {
        chatty.post([10u8; 16], &[i as u8]).await;
    }
    assert_eq!(chatty.closing().await.0, Some(ErrorCode::RateLimited));

    // The relay still serves authenticated devices.
    let alice = relay.connect(&Identity::generate("alice")).await;
    assert!(matches!(
        alice.request(Request::ListGroups).await.unwrap(),
        Reply::Groups(_)
    ));
    relay.stop().await;
}

#[tokio::test]
async fn one_address_holds_few_waiting_rendezvous_and_waits_end() {
    let relay = TestRelay::start_with(|c| {
        c.limits.rendezvous_per_address = 2;
        c.limits.rendezvous_wait_ms = 600;
        c.limits.rendezvous_idle_ms = 400;
    })
    .await;
    // Two waiting slots from 127.0.0.1 are its share; a third is refused.
    let mut waiting = Vec::new();
    for i in 0..2u8 {
        let mut r = Raw::open(&relay).await;
        r.post([i; 16], b"hi").await;
        waiting.push(r);
    }
    let mut third = Raw::open(&relay).await;
    third.post([9; 16], b"hi").await;
    assert_eq!(
        third.closing().await,
        (Some(ErrorCode::Unavailable), CloseReason::ServerBusy)
    );
    // Pairing with a waiting slot is not limited: it frees the slot.
    let mut partner = Raw::open(&relay).await;
    partner.post([0; 16], b"yo").await;
    assert_eq!(partner.payload().await, b"hi");
    assert_eq!(waiting[0].payload().await, b"yo");
    // Nobody comes for the other one: it ends at the wait limit.
    assert_eq!(waiting[1].closing().await, (None, CloseReason::IdleTimeout));
    // The pair goes quiet: closed at the idle limit (the side whose timer
    // fires first says so, the other is told its peer left).
    let ends = [waiting[0].closing().await.1, partner.closing().await.1];
    assert!(ends.contains(&CloseReason::IdleTimeout), "{ends:?}");
    assert!(
        ends.iter()
            .all(|e| matches!(e, CloseReason::IdleTimeout | CloseReason::GoingAway))
    );
    relay.stop().await;
}
