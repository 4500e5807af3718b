//! Before authentication: bounded transport setups, a cap per address, QUIC
//! address validation under load, and a small frame limit until `Ready`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use futures_util::StreamExt;
use hush_protocol::frame::{ClientFrame, Hello, RelayFrame};
use hush_protocol::{ErrorCode, codec};
use hush_sdk::wire::{Identity, Trust, open_websocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// The code of the first `Error` the relay sends on a raw WebSocket.
async fn first_error(ws: &mut hush_sdk::wire::Ws) -> Option<ErrorCode> {
    while let Ok(Some(Ok(m))) = tokio::time::timeout(WAIT, ws.next()).await {
        if let Message::Binary(b) = m
            && let Ok(RelayFrame::Error(e)) = codec::decode::<RelayFrame>(&b)
        {
            return Some(e.code);
        }
    }
    None
}

/// A TCP connection the relay closes at once reads end-of-stream (or a reset).
async fn closed_by_relay(mut tcp: TcpStream) {
    let mut b = [0u8; 1];
    let read = tokio::time::timeout(WAIT, tcp.read(&mut b))
        .await
        .expect("the relay closes it");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn setups_beyond_the_limit_are_refused_at_accept_and_slots_come_back() {
    let relay = TestRelay::start_with(|c| {
        c.limits.max_setups = 4;
        c.limits.handshake_timeout_ms = 60_000;
    })
    .await;
    // Four connections that never start TLS hold every setup slot.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(relay.addr).await.unwrap());
    }
    until(&relay, "four setups", |s| s.setups() == 4).await;
    // A fifth is closed before any TLS work.
    closed_by_relay(TcpStream::connect(relay.addr).await.unwrap()).await;
    assert_eq!(relay.stats.refused_setups(), 1);
    assert_eq!(relay.stats.setups(), 4);
    // Once they go, their slots are free again, and clients are served.
    drop(idle);
    until(&relay, "slots given back", |s| s.setups() == 0).await;
    let a = Identity::generate("alice");
    relay.connect(&a).await;
    relay.connect_wt(&a).await;
    relay.stop().await;
}

#[tokio::test]
async fn one_address_cannot_take_every_slot() {
    let relay = TestRelay::start_with(|c| {
        c.limits.max_per_address = 3;
        c.limits.handshake_timeout_ms = 60_000;
    })
    .await;
    let a = Identity::generate("alice");
    // One session and two idle setups from 127.0.0.1 fill its share.
    let session = relay.connect(&a).await;
    let idle = [
        TcpStream::connect(relay.addr).await.unwrap(),
        TcpStream::connect(relay.addr).await.unwrap(),
    ];
    until(&relay, "two setups", |s| s.setups() == 2).await;
    closed_by_relay(TcpStream::connect(relay.addr).await.unwrap()).await;
    // QUIC from the same address is refused too.
    let opts = relay.wt_options();
    assert!(relay.try_connect(&a, opts).await.is_err());
    assert!(relay.stats.refused_setups() >= 2);
    // The session already admitted is still served.
    session
        .request(hush_protocol::frame::Request::ListGroups)
        .await
        .unwrap();
    drop(idle);
    drop(session);
    until(&relay, "the address's slots given back", |s| {
        s.setups() == 0 && s.sessions() == 0
    })
    .await;
    relay.connect_wt(&a).await;
    relay.stop().await;
}

#[tokio::test]
async fn quic_clients_prove_their_address_under_load() {
    // 0: every unvalidated QUIC handshake gets a Retry first.
    let relay = TestRelay::start_with(|c| c.limits.quic_retry_above = 0).await;
    let a = Identity::generate("alice");
    let c = relay.connect_wt(&a).await;
    c.request(hush_protocol::frame::Request::ListGroups).await.unwrap();
    assert_eq!(relay.stats.quic_retries(), 1);
    relay.stop().await;
    // The default (64 setups in progress) sends none to a quiet relay.
    let relay = TestRelay::start().await;
    relay.connect_wt(&a).await;
    assert_eq!(relay.stats.quic_retries(), 0);
    relay.stop().await;
}

#[tokio::test]
async fn a_large_frame_header_before_ready_is_refused_at_once() {
    let relay = TestRelay::start_with(|c| c.limits.handshake_timeout_ms = 60_000).await;
    let mut ws = open_websocket(&relay.url(), &Trust::CertSha256(relay.cert))
        .await
        .unwrap();
    // A binary frame header declaring 1 MiB (masked, 64-bit length), and
    // nothing after it: the relay must not wait for, or make room for, it.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    ws.get_mut().write_all(&header).await.unwrap();
    ws.get_mut().flush().await.unwrap();
    assert_eq!(first_error(&mut ws).await, Some(ErrorCode::FrameTooLarge));
    relay.stop().await;
}

#[tokio::test]
async fn frames_up_to_the_handshake_limit_pass_and_after_ready_the_full_limit_applies() {
    let relay = TestRelay::start_with(|c| c.limits.handshake_frame_len = 8 << 10).await;
    // A Hello padded with a long client name is within the protocol's rules
    // only up to 64 bytes; a frame over 8 KiB before Ready is refused...
    let mut ws = open_websocket(&relay.url(), &Trust::CertSha256(relay.cert))
        .await
        .unwrap();
    let hello = codec::encode(&ClientFrame::Hello(Hello {
        min_version: 1,
        max_version: 1,
        client: "x".repeat(9000),
    }))
    .unwrap();
    futures_util::SinkExt::send(&mut ws, Message::Binary(hello.into()))
        .await
        .unwrap();
    assert_eq!(first_error(&mut ws).await, Some(ErrorCode::FrameTooLarge));
    // ...while after Ready a 100 KiB message goes through on both transports.
    let a = Identity::generate("alice");
    for (i, c) in [relay.connect(&a).await, relay.connect_wt(&a).await].iter().enumerate() {
        let g = gid(&format!("big-{i}"));
        create_group(c, &g, Default::default()).await;
        send_app(c, &g, 1, 0, &vec![7u8; 100 << 10]).await.unwrap();
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_shutdown_does_not_wait_for_handshakes_in_progress() {
    use futures_util::SinkExt;
    let relay = TestRelay::start_with(|c| c.limits.handshake_timeout_ms = 60_000).await;
    let mut ws = open_websocket(&relay.url(), &Trust::CertSha256(relay.cert))
        .await
        .unwrap();
    let hello = ClientFrame::Hello(Hello {
        min_version: 1,
        max_version: 1,
        client: "slow".into(),
    });
    ws.send(Message::Binary(codec::encode(&hello).unwrap().into()))
        .await
        .unwrap();
    // Challenge received, Authenticate never sent: the relay stops anyway,
    // telling this client to reconnect, long before the handshake deadline.
    let mut closing = None;
    let mut shut = false;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(WAIT, ws.next()).await {
        if let Message::Binary(b) = m {
            match codec::decode::<RelayFrame>(&b).unwrap() {
                RelayFrame::Challenge(_) if !shut => {
                    relay.handle.shutdown();
                    shut = true;
                }
                RelayFrame::Closing(c) => {
                    closing = Some(c.reason);
                    break;
                }
                _ => {}
            }
        }
    }
    assert_eq!(closing, Some(hush_protocol::frame::CloseReason::GoingAway));
    tokio::time::timeout(WAIT, relay.task).await.unwrap().unwrap().unwrap();
}
