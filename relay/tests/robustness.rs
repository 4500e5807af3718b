//! Bad input, limits and overload: each gets a clear error or a clean close, and
//! everyone else keeps being served.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use hush_protocol::frame::{ClientFrame, CloseReason, Closing, Hello, Registration, RelayFrame, Request};
use hush_protocol::{ErrorCode, codec};
use hush_sdk::wire::{Identity, open_websocket};
use tokio_tungstenite::tungstenite::Message;

/// Reads relay frames from a raw socket until it closes; returns them.
async fn drain(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Vec<RelayFrame> {
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(WAIT, ws.next()).await {
        match m {
            Message::Binary(b) => out.push(codec::decode::<RelayFrame>(&b).unwrap()),
            Message::Close(_) => break,
            _ => {}
        }
    }
    out
}

fn error_code(frames: &[RelayFrame]) -> Option<ErrorCode> {
    frames.iter().find_map(|f| match f {
        RelayFrame::Error(e) => Some(e.code),
        _ => None,
    })
}

#[tokio::test]
async fn bad_handshakes_get_an_error_and_a_close_while_others_keep_working() {
    let relay = TestRelay::start().await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let ca = relay.connect(&a).await;
    let mut cb = relay.connect(&b).await;
    let g = group_with(&ca, "steady", &[&cb]).await;
    let trust = hush_sdk::wire::Trust::CertSha256(relay.cert);

    // Garbage as the first frame.
    let mut ws = open_websocket(&relay.url(), &trust).await.unwrap();
    ws.send(Message::Binary(Bytes::from_static(&[0xff, 0xff, 0xff])))
        .await
        .unwrap();
    assert_eq!(error_code(&drain(&mut ws).await), Some(ErrorCode::Malformed));

    // A version nobody speaks.
    let mut ws = open_websocket(&relay.url(), &trust).await.unwrap();
    let hello = ClientFrame::Hello(Hello {
        min_version: 900,
        max_version: 901,
        client: "future".into(),
    });
    ws.send(Message::Binary(codec::encode(&hello).unwrap().into()))
        .await
        .unwrap();
    assert_eq!(error_code(&drain(&mut ws).await), Some(ErrorCode::UnsupportedVersion));

    // A request before authenticating.
    let mut ws = open_websocket(&relay.url(), &trust).await.unwrap();
    let req = ClientFrame::Request {
        id: 1,
        op: Request::ListGroups,
    };
    ws.send(Message::Binary(codec::encode(&req).unwrap().into()))
        .await
        .unwrap();
    let frames = drain(&mut ws).await;
    assert_eq!(error_code(&frames), Some(ErrorCode::Unauthenticated));
    assert!(!frames.iter().any(|f| matches!(f, RelayFrame::Response { .. })));

    // A text message instead of binary.
    let mut ws = open_websocket(&relay.url(), &trust).await.unwrap();
    ws.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(error_code(&drain(&mut ws).await), Some(ErrorCode::Malformed));

    // A forged signature.
    let mut ws = open_websocket(&relay.url(), &trust).await.unwrap();
    let hs = hush_protocol::session::ClientHandshake::new(a.user.clone(), a.public_key());
    ws.send(Message::Binary(codec::encode(&hs.hello("t")).unwrap().into()))
        .await
        .unwrap();
    let Some(Ok(Message::Binary(ch))) = ws.next().await else {
        panic!()
    };
    let other = Identity::generate("mallory");
    let (_, auth) = hs
        .on_challenge(
            codec::decode(&ch).unwrap(),
            |m| other.sign(m),
            Registration::None,
            vec![],
        )
        .unwrap();
    ws.send(Message::Binary(codec::encode(&auth).unwrap().into()))
        .await
        .unwrap();
    let frames = drain(&mut ws).await;
    assert_eq!(error_code(&frames), Some(ErrorCode::AuthFailed));

    // Everyone else is still served.
    let (s, _) = send_app(&ca, &g, 1, 1, b"still fine").await.unwrap();
    assert_eq!(deliveries(&mut cb, &g, 1).await[0].seq, s);
    relay.stop().await;
}

#[tokio::test]
async fn malformed_frames_after_auth_get_errors_and_oversized_ones_close() {
    let relay = TestRelay::start_with(|c| c.limits.max_frame_len = 64 * 1024).await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let mut ca = relay.connect(&a).await;
    let mut cb = relay.connect(&b).await;
    let g = group_with(&ca, "g", &[&cb]).await;
    // Malformed: an error, and the connection keeps working.
    ca.send_raw(Bytes::from_static(&[2, 0, 99, 1, 2])).await.unwrap();
    let f = wait_for(&mut ca, |f| matches!(f, RelayFrame::Error(_))).await;
    assert!(matches!(f, RelayFrame::Error(e) if e.code == ErrorCode::Malformed));
    send_app(&ca, &g, 1, 1, b"after garbage").await.unwrap();
    // A wrong-typed but decodable frame: Hello after authentication.
    ca.send(&ClientFrame::Hello(Hello {
        min_version: 1,
        max_version: 1,
        client: String::new(),
    }))
    .await
    .unwrap();
    let f = wait_for(&mut ca, |f| matches!(f, RelayFrame::Error(_))).await;
    assert!(matches!(f, RelayFrame::Error(e) if e.code == ErrorCode::UnexpectedFrame));
    // Oversized: refused before it is buffered; the connection is closed.
    ca.send_raw(Bytes::from(vec![0u8; 200 * 1024])).await.unwrap();
    let f = wait_for(&mut ca, |f| matches!(f, RelayFrame::Closing(_) | RelayFrame::Error(_))).await;
    if let RelayFrame::Error(e) = &f {
        assert_eq!(e.code, ErrorCode::FrameTooLarge);
    }
    // Bob is unaffected.
    let (s, _) = {
        let ca2 = relay.connect(&a).await;
        send_app(&ca2, &g, 2, 1, b"new connection").await.unwrap()
    };
    let got = deliveries(&mut cb, &g, 2).await;
    assert_eq!(got[1].seq, s);
    relay.stop().await;
}

#[tokio::test]
async fn handshake_that_never_completes_is_dropped() {
    let relay = TestRelay::start_with(|c| c.limits.handshake_timeout_ms = 300).await;
    let trust = hush_sdk::wire::Trust::CertSha256(relay.cert);
    let mut ws = open_websocket(&relay.url(), &trust).await.unwrap();
    let frames = drain(&mut ws).await;
    assert!(
        frames.iter().any(|f| matches!(
            f,
            RelayFrame::Closing(Closing {
                reason: CloseReason::HandshakeTimeout,
                ..
            })
        )),
        "{frames:?}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn rate_limit_gives_retry_after() {
    let relay = TestRelay::start_with(|c| {
        c.limits.rate_per_second = 1.0;
        c.limits.rate_burst = 3.0;
    })
    .await;
    let a = Identity::generate("alice");
    let ca = relay.connect(&a).await;
    let mut refused = None;
    for _ in 0..5 {
        if let Err(e) = ca.request(Request::ListGroups).await {
            refused = Some(e);
            break;
        }
    }
    match refused {
        Some(hush_sdk::wire::ClientError::Relay(e)) => {
            assert_eq!(e.code, ErrorCode::RateLimited);
            assert!(matches!(e.detail, hush_protocol::ErrorDetail::RetryAfterMs(ms) if ms > 0 && ms <= 1000));
        }
        other => panic!("expected a rate limit, got {other:?}"),
    }
    relay.stop().await;
}

#[tokio::test]
async fn connection_limit_says_server_busy() {
    let relay = TestRelay::start_with(|c| c.limits.max_connections = 2).await;
    let (a, b, c) = (
        Identity::generate("a"),
        Identity::generate("b"),
        Identity::generate("c"),
    );
    let _ca = relay.connect(&a).await;
    let _cb = relay.connect(&b).await;
    let err = relay.try_connect(&c, relay.options()).await.unwrap_err();
    assert!(
        format!("{err}").contains("Closing") || format!("{err}").contains("closed"),
        "{err}"
    );
    drop(_ca);
    // Capacity comes back when a connection leaves.
    let mut ok = None;
    for _ in 0..50 {
        if let Ok(cc) = relay.try_connect(&c, relay.options()).await {
            ok = Some(cc);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok.is_some());
    relay.stop().await;
}

#[tokio::test]
async fn slow_consumer_is_disconnected_and_resumes_without_loss() {
    let relay = TestRelay::start_with(|c| {
        c.limits.send_queue = 8;
        c.limits.slow_consumer_timeout_ms = 300;
    })
    .await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let ca = relay.connect(&a).await;
    let mut opts = relay.options();
    opts.event_buffer = 1;
    let mut cb = relay.try_connect(&b, opts).await.unwrap();
    let g = group_with(&ca, "firehose", &[&cb]).await;
    // Bob does not read while 40 MB are sent to him: far more than socket buffers hold.
    let payload = vec![7u8; 100 * 1024];
    for n in 0..400u64 {
        send_app(&ca, &g, n, 1, &payload).await.unwrap();
    }
    // Now he reads: what the socket buffers held, then the end of the connection.
    // The relay's Closing{SlowConsumer} is best effort: it queues behind data the
    // client was not reading, so it arrives only if there was room for it.
    let mut seen = 0;
    loop {
        match cb.next_event_timeout(WAIT).await.unwrap() {
            Some(RelayFrame::Deliver(_)) => seen += 1,
            Some(RelayFrame::Closing(c)) => {
                assert_eq!(c.reason, CloseReason::SlowConsumer);
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    assert!(seen < 400, "the relay kept a consumer that did not read 40 MB");
    // Reconnecting resumes from his cursor (he acknowledged nothing): all 400, in order.
    drop(cb);
    let mut cb = relay.connect(&b).await;
    let all = deliveries(&mut cb, &g, 400).await;
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (2..=401).collect::<Vec<_>>()
    );
    relay.stop().await;
}

#[tokio::test]
async fn shutdown_tells_clients_to_reconnect() {
    let relay = TestRelay::start().await;
    let a = Identity::generate("alice");
    let mut ca = relay.connect(&a).await;
    relay.handle.shutdown();
    let f = wait_for(&mut ca, |f| matches!(f, RelayFrame::Closing(_))).await;
    assert!(matches!(
        f,
        RelayFrame::Closing(Closing {
            reason: CloseReason::GoingAway,
            ..
        })
    ));
    tokio::time::timeout(WAIT, relay.task).await.unwrap().unwrap().unwrap();
}
