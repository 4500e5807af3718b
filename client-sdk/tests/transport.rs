//! Transport choice: WebTransport when QUIC works, WebSocket when QUIC is
//! blocked, and the choice remembered.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use hush_sdk::{Client, TransportConfig, Trust};

async fn connected_transport(c: &Client) -> String {
    c.wait_connected(WAIT).await.unwrap();
    c.transport().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webtransport_is_preferred_when_quic_works() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&tmp.path().join("relay")).await;
    let c = Client::builder()
        .relay(relay.url())
        .trust(Trust::CertSha256(relay.cert))
        .data_dir(tmp.path().join("a"))
        .user("alice")
        .open()
        .await
        .unwrap();
    assert_eq!(connected_transport(&c).await, "webtransport");
    c.sync(WAIT).await.unwrap();
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_blocked_falls_back_to_websocket_within_the_race_window_and_remembers() {
    // Long enough that a reopen which skips the race is clearly shorter, even on
    // a loaded machine.
    const WINDOW: Duration = Duration::from_secs(2);
    let tmp = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&tmp.path().join("relay")).await;
    // A UDP port that swallows every packet: QUIC never gets an answer.
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let transport = TransportConfig {
        race_window: WINDOW,
        webtransport_url: Some(format!("https://{}/wt", black_hole.local_addr().unwrap())),
        ..TransportConfig::default()
    };
    let dir = tmp.path().join("a");
    let open = || {
        Client::builder()
            .relay(relay.url())
            .trust(Trust::CertSha256(relay.cert))
            .data_dir(&dir)
            .user("alice")
            .transport(transport.clone())
            .open()
    };
    let started = Instant::now();
    let c = open().await.unwrap();
    assert_eq!(connected_transport(&c).await, "websocket");
    let first = started.elapsed();
    assert!(first >= WINDOW, "WebSocket started before the race window: {first:?}");
    assert!(first < WINDOW + Duration::from_secs(5), "fallback took {first:?}");
    c.sync(WAIT).await.unwrap();
    c.close().await;
    drop(c);

    // Next time WebSocket is tried first: no race window to wait out.
    let started = Instant::now();
    let c = open().await.unwrap();
    assert_eq!(connected_transport(&c).await, "websocket");
    let second = started.elapsed();
    assert!(second < WINDOW, "remembered choice was not used: {second:?}");
    c.close().await;
}
