//! WebTransport: the same session guarantees as WebSocket over a QUIC stream,
//! ephemeral signals as datagrams, and bad input handled without hurting others.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use hush_protocol::frame::{ClientFrame, RelayFrame};
use hush_sdk::wire::{Identity, Transport};

#[tokio::test]
async fn devices_exchange_over_webtransport_and_with_websocket_devices() {
    let relay = TestRelay::start().await;
    let (a, b, c) = (
        Identity::generate("alice"),
        Identity::generate("bob"),
        Identity::generate("carol"),
    );
    let mut ca = relay.connect_wt(&a).await;
    let mut cb = relay.connect_wt(&b).await;
    let mut cc = relay.connect(&c).await;
    assert_eq!(ca.transport(), Transport::WebTransport);
    assert_eq!(cc.transport(), Transport::WebSocket);
    let g = group_with(&ca, "mixed", &[&cb, &cc]).await;
    // The creator also receives the adding commit (seq 1).
    assert_eq!(deliveries(&mut ca, &g, 1).await[0].seq, 1);

    // Both ways, in order, to both transports.
    let mut sent = Vec::new();
    for i in 0..50u64 {
        let (c, text) = if i % 2 == 0 { (&ca, "a") } else { (&cb, "b") };
        let (seq, dup) = send_app(c, &g, 1000 + i, 1, format!("{text}{i}").as_bytes())
            .await
            .unwrap();
        assert!(!dup);
        sent.push(seq);
    }
    for client in [&mut ca, &mut cb, &mut cc] {
        let got = deliveries(client, &g, 50).await;
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), sent);
        assert_eq!(&got[3].payload[..], b"b3");
    }
    let (s, _) = send_app(&cc, &g, 1, 1, b"from websocket").await.unwrap();
    assert_eq!(deliveries(&mut ca, &g, 1).await[0].seq, s);
    assert_eq!(deliveries(&mut cb, &g, 1).await[0].seq, s);

    // A retried send over WebTransport is a duplicate, not a new entry.
    let (again, dup) = send_app(&ca, &g, 1000, 1, b"a0").await.unwrap();
    assert!(dup);
    assert_eq!(again, sent[0]);

    // Reconnect over WebTransport resumes after the acknowledged seq.
    cb.ack(&g, sent[9]).await.unwrap();
    assert_quiet(&mut cb, |_| false).await;
    cb.close().await;
    let mut cb = relay.connect_wt(&b).await;
    let replay = deliveries(&mut cb, &g, 41).await;
    assert_eq!(replay[0].seq, sent[10]);
    assert_eq!(replay.last().unwrap().seq, s);
    relay.stop().await;
}

#[tokio::test]
async fn typing_signals_travel_as_datagrams() {
    let relay = TestRelay::start().await;
    let (a, b, c) = (
        Identity::generate("alice"),
        Identity::generate("bob"),
        Identity::generate("carol"),
    );
    let ca = relay.connect_wt(&a).await;
    let mut cb = relay.connect_wt(&b).await;
    let mut cc = relay.connect(&c).await;
    let g = group_with(&ca, "typing", &[&cb, &cc]).await;
    assert_quiet(&mut cb, |_| false).await;
    let before = cb.datagrams().received();

    ca.send(&ClientFrame::Ephemeral {
        group: g.clone(),
        payload: Bytes::from_static(b"typing..."),
    })
    .await
    .unwrap();
    let got = wait_for(&mut cb, |f| matches!(f, RelayFrame::Ephemeral { .. })).await;
    let RelayFrame::Ephemeral { sender, payload, .. } = got else {
        unreachable!()
    };
    assert_eq!(sender, ca.ready().device);
    assert_eq!(&payload[..], b"typing...");
    assert_eq!(ca.datagrams().sent(), 1, "the sender used a datagram");
    assert!(cb.datagrams().received() > before, "the receiver got it by datagram");
    // The WebSocket member gets the same signal as a message.
    wait_for(&mut cc, |f| matches!(f, RelayFrame::Ephemeral { .. })).await;

    // A signal too big for a datagram goes on the stream and still arrives
    // (here: refused for its size, which proves the relay read it).
    ca.send(&ClientFrame::Ephemeral {
        group: g.clone(),
        payload: Bytes::from(vec![7u8; 1500]),
    })
    .await
    .unwrap();
    relay.stop().await;
}
