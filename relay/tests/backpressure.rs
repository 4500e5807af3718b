//! Backpressure (PROTOCOL.md 7.7): a client that writes requests and does not
//! read the answers is not read either once its bounded queues are full, so
//! the relay holds a bounded amount for it; everyone else is served
//! meanwhile; once the client reads again every request is answered, once.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use hush_protocol::frame::{ClientFrame, Direction, MessageKind, Registration, RelayFrame, Request, Send};
use hush_protocol::session::ClientHandshake;
use hush_protocol::{ErrorCode, codec};
use hush_sdk::wire::{Identity, Trust, open_websocket};
use tokio_tungstenite::tungstenite::Message;

/// History requests whose large answers fill the socket towards the client.
const HISTORY_REQUESTS: u32 = 24;
/// Payload of each entry the history requests return (16 per page).
const ENTRY_BYTES: usize = 60 * 1024;
/// Payload of each junk send written after them.
const JUNK_BYTES: usize = 32 * 1024;
/// More than kernel socket buffers on both sides can hold: a relay that kept
/// reading would let the client write all of it.
const WRITE_CEILING: usize = 96 * 1024 * 1024;
/// How long one write may wait before the client counts itself as stalled.
const STALL: Duration = Duration::from_secs(3);

#[tokio::test]
async fn a_client_that_does_not_read_is_not_read_and_others_are_served() {
    let relay = TestRelay::start_with(|c| {
        c.limits.request_queue = 4;
        c.limits.send_queue = 4;
        c.limits.slow_consumer_timeout_ms = 120_000;
        c.limits.heartbeat_ms = 60_000;
        c.limits.rate_per_second = 1e6;
        c.limits.rate_burst = 1e6;
    })
    .await;
    let (a, b, c) = (
        Identity::generate("alice"),
        Identity::generate("bob"),
        Identity::generate("carol"),
    );
    let ca = relay.connect(&a).await;
    let mut cb = relay.connect(&b).await;
    let cc = relay.connect(&c).await;
    let g = group_with(&ca, "big", &[&cb, &cc]).await;
    let body = vec![5u8; ENTRY_BYTES];
    for n in 0..16u64 {
        send_app(&ca, &g, n, 1, &body).await.unwrap();
    }
    deliveries(&mut cb, &g, 16).await;
    cc.close().await;

    // Carol again, on a raw socket she never reads from.
    let mut ws = open_websocket(&relay.url(), &Trust::CertSha256(relay.cert))
        .await
        .unwrap();
    let hs = ClientHandshake::new(c.user.clone(), c.public_key());
    ws.send(Message::Binary(codec::encode(&hs.hello("t")).unwrap().into()))
        .await
        .unwrap();
    let Some(Ok(Message::Binary(ch))) = ws.next().await else {
        panic!("no challenge")
    };
    let (_, auth) = hs
        .on_challenge(codec::decode(&ch).unwrap(), |m| c.sign(m), Registration::None, vec![])
        .unwrap();
    ws.send(Message::Binary(codec::encode(&auth).unwrap().into()))
        .await
        .unwrap();
    let Some(Ok(Message::Binary(ready))) = ws.next().await else {
        panic!("no ready")
    };
    assert!(matches!(
        codec::decode::<RelayFrame>(&ready).unwrap(),
        RelayFrame::Ready(_)
    ));
    let (mut sink, mut stream) = ws.split();

    let nowhere = gid("nowhere");
    let frame = |id: u32| -> Bytes {
        let op = if id <= HISTORY_REQUESTS {
            Request::History {
                group: g.clone(),
                from_seq: 1,
                direction: Direction::Forward,
                limit: 16,
            }
        } else {
            Request::Send(Send {
                group: nowhere.clone(),
                client_msg_id: u64::from(id),
                kind: MessageKind::Application,
                epoch: 0,
                payload: mls(&nowhere, 0, MessageKind::Application, &[9u8; JUNK_BYTES]),
                roster: None,
            })
        };
        codec::encode(&ClientFrame::Request { id, op }).unwrap().into()
    };

    // Write until a write stalls.
    let (mut id, mut written) = (0u32, 0usize);
    let stalled = loop {
        id += 1;
        let f = frame(id);
        let len = f.len();
        let mut write = Box::pin(sink.send(Message::Binary(f)));
        match tokio::time::timeout(STALL, &mut write).await {
            Ok(r) => {
                r.unwrap();
                written += len;
                assert!(
                    written < WRITE_CEILING,
                    "the relay read {written} bytes of requests from a client that reads nothing"
                );
            }
            Err(_) => break write,
        }
    };
    assert!(id > HISTORY_REQUESTS, "stalled before the junk: {id}");

    // Everyone else is served meanwhile.
    let (seq, _) = send_app(&ca, &g, 100, 1, b"still served").await.unwrap();
    assert_eq!(deliveries(&mut cb, &g, 1).await[0].seq, seq);

    // Carol reads again: the stalled write completes, and every request is
    // answered exactly once (pipelined sends may be answered in any order:
    // responses carry their request's id).
    let reader = tokio::spawn(async move {
        let mut ids = Vec::new();
        while ids.len() < id as usize {
            let m = tokio::time::timeout(WAIT, stream.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let Message::Binary(b) = m else { continue };
            match codec::decode::<RelayFrame>(&b).unwrap() {
                RelayFrame::Response { id: rid, result } => {
                    if rid <= HISTORY_REQUESTS {
                        assert!(result.is_ok(), "history {rid}: {result:?}");
                    } else {
                        let e = result.unwrap_err();
                        assert!(
                            matches!(e.code, ErrorCode::NotFound | ErrorCode::NotMember),
                            "junk {rid}: {e:?}"
                        );
                    }
                    ids.push(rid);
                }
                f @ (RelayFrame::Closing(_) | RelayFrame::Error(_)) => panic!("unexpected {f:?}"),
                _ => {}
            }
        }
        ids
    });
    tokio::time::timeout(WAIT, stalled).await.unwrap().unwrap();
    let mut ids = reader.await.unwrap();
    drop(sink);
    ids.sort_unstable();
    assert_eq!(ids, (1..=id).collect::<Vec<_>>());
    relay.stop().await;
}
