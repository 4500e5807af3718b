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
        assert_eq!(body(&got[3].payload), b"b3");
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
    // The relay writes acknowledgements in batches; a session's end flushes
    // them, so wait for it to end before reconnecting.
    until(&relay, "bob's first session ended", |s| s.sessions() == 2).await;
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

    let typing = envelope(epoch_of(&ca, &g).await, b"typing...");
    ca.send(&ClientFrame::Ephemeral {
        group: g.clone(),
        payload: typing.clone(),
    })
    .await
    .unwrap();
    let got = wait_for(&mut cb, |f| matches!(f, RelayFrame::Ephemeral { .. })).await;
    let RelayFrame::Ephemeral { sender, payload, .. } = got else {
        unreachable!()
    };
    assert_eq!(sender, ca.ready().device);
    assert_eq!(payload, typing);
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

#[tokio::test]
async fn oversized_stream_frame_and_garbage_datagrams_get_clean_errors() {
    use hush_protocol::ErrorCode;
    let relay = TestRelay::start_with(|c| c.limits.max_frame_len = 64 * 1024).await;
    let (a, b) = (Identity::generate("alice"), Identity::generate("bob"));
    let mut ca = relay.connect_wt(&a).await;
    let mut cb = relay.connect_wt(&b).await;
    let g = group_with(&ca, "g", &[&cb]).await;

    // Garbage datagrams: an error each, and the session goes on.
    ca.send_raw_datagram(Bytes::from_static(&[0xff, 0xfe, 0xfd]))
        .await
        .unwrap();
    let f = wait_for(&mut ca, |f| matches!(f, RelayFrame::Error(_))).await;
    assert!(
        matches!(&f, RelayFrame::Error(e) if e.code == ErrorCode::Malformed),
        "{f:?}"
    );
    // A truncated Ephemeral frame.
    ca.send_raw_datagram(Bytes::from_static(&[5, 40, 1])).await.unwrap();
    let f = wait_for(&mut ca, |f| matches!(f, RelayFrame::Error(_))).await;
    assert!(
        matches!(&f, RelayFrame::Error(e) if e.code == ErrorCode::Malformed),
        "{f:?}"
    );
    // A well-formed frame that does not belong in a datagram.
    let ping = hush_protocol::codec::encode(&ClientFrame::Ping { nonce: 5 }).unwrap();
    ca.send_raw_datagram(Bytes::from(ping)).await.unwrap();
    let f = wait_for(&mut ca, |f| matches!(f, RelayFrame::Error(_) | RelayFrame::Pong { .. })).await;
    assert!(
        matches!(&f, RelayFrame::Error(e) if e.code == ErrorCode::Malformed),
        "{f:?}"
    );
    let (s1, _) = send_app(&ca, &g, 1, 1, b"after garbage").await.unwrap();
    assert_eq!(deliveries(&mut cb, &g, 1).await[0].seq, s1);

    // An oversized frame on the stream: FrameTooLarge, then Closing, then the end.
    let mut huge = (1u32 << 20).to_be_bytes().to_vec();
    huge.extend_from_slice(&[0u8; 16]);
    ca.send_raw(Bytes::from(huge)).await.unwrap();
    let f = wait_for(&mut ca, |f| matches!(f, RelayFrame::Error(_))).await;
    assert!(
        matches!(&f, RelayFrame::Error(e) if e.code == ErrorCode::FrameTooLarge),
        "{f:?}"
    );
    let f = wait_for(&mut ca, |f| matches!(f, RelayFrame::Closing(_))).await;
    assert!(
        matches!(&f, RelayFrame::Closing(c) if c.reason == hush_protocol::frame::CloseReason::ProtocolError),
        "{f:?}"
    );
    assert!(ca.next_event_timeout(WAIT).await.unwrap().is_none(), "the session ends");

    // Bob and new sessions are unaffected.
    let ca2 = relay.connect_wt(&a).await;
    let (s2, _) = send_app(&ca2, &g, 2, 1, b"new session").await.unwrap();
    assert_eq!(deliveries(&mut cb, &g, 1).await[0].seq, s2);
    relay.stop().await;
}

#[tokio::test]
async fn the_relay_closes_a_session_with_a_close_webtransport_session_capsule() {
    use hush_protocol::frame::CloseReason;
    let relay = TestRelay::start_with(|c| c.limits.handshake_timeout_ms = 400).await;
    let endpoint = hush_sdk::wire::WebTransportEndpoint::new(&hush_sdk::wire::Trust::CertSha256(relay.cert)).unwrap();
    // A session that never says Hello is closed with HandshakeTimeout.
    let mut silent = endpoint.open(&relay.wt_url()).await.unwrap();
    let f = silent.read_relay_frame().await.unwrap();
    assert!(
        matches!(&f, RelayFrame::Closing(c) if c.reason == CloseReason::HandshakeTimeout),
        "{f:?}"
    );
    // The client's HTTP/3 layer reports the session's close from the capsule:
    // the code the WebSocket close would carry (1000) and the reason.
    let err = tokio::time::timeout(WAIT, silent.session.receive_datagram())
        .await
        .expect("the session ends")
        .expect_err("no datagram");
    match err {
        wtransport::error::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.code(), wtransport::VarInt::from_u32(1000));
            assert!(!close.reason().is_empty());
        }
        other => panic!("expected the session's close capsule, got {other:?}"),
    }
    relay.stop().await;
}

#[tokio::test]
async fn repeated_garbage_datagrams_close_the_session() {
    let relay = TestRelay::start().await;
    let a = Identity::generate("alice");
    let mut ca = relay.connect_wt(&a).await;
    let mut errors = 0;
    for i in 0..16u8 {
        ca.send_raw_datagram(Bytes::from(vec![0xff, i])).await.unwrap();
        // One at a time, so none is dropped by a full buffer.
        match wait_for(&mut ca, |f| matches!(f, RelayFrame::Error(_) | RelayFrame::Closing(_))).await {
            RelayFrame::Error(_) => errors += 1,
            f => panic!("closed early: {f:?}"),
        }
    }
    assert_eq!(errors, 16);
    let f = wait_for(&mut ca, |f| matches!(f, RelayFrame::Closing(_))).await;
    assert!(matches!(&f, RelayFrame::Closing(c) if c.reason == hush_protocol::frame::CloseReason::ProtocolError));
    relay.stop().await;
}

/// Forwards only the first datagram a client sends to the relay, and nothing
/// back: the relay sees a QUIC handshake start and never finish.
async fn one_way_proxy(relay: std::net::SocketAddr) -> std::net::SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        let mut forwarded = false;
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if from != relay && !forwarded {
                let _ = sock.send_to(&buf[..n], relay).await;
                forwarded = true;
            }
        }
    });
    addr
}

#[tokio::test]
async fn a_quic_handshake_that_never_completes_is_dropped_and_freed() {
    let relay = TestRelay::start_with(|c| c.limits.handshake_timeout_ms = 400).await;
    let proxy = one_way_proxy(relay.addr).await;
    let endpoint = hush_sdk::wire::WebTransportEndpoint::new(&hush_sdk::wire::Trust::CertSha256(relay.cert)).unwrap();
    let stuck = tokio::spawn(async move { endpoint.open(&format!("https://{proxy}/wt")).await.map(|_| ()) });
    until(&relay, "handshake in progress", |s| {
        s.setups() == 1 && s.quic_connections() == 1
    })
    .await;
    until(&relay, "handshake dropped", |s| {
        s.setup_timeouts() == 1 && s.setups() == 0 && s.quic_connections() == 0
    })
    .await;
    assert_eq!(relay.stats.sessions(), 0);
    stuck.abort();
    // The relay still serves everyone else.
    let a = Identity::generate("alice");
    let ca = relay.connect_wt(&a).await;
    ca.request(hush_protocol::frame::Request::ListGroups).await.unwrap();
    relay.stop().await;
}

/// A QUIC client with the relay's certificate pinned and HTTP/3's ALPN, that
/// speaks no HTTP/3 at all.
fn bare_quic_client(cert: [u8; 32]) -> (wtransport::quinn::Endpoint, wtransport::quinn::ClientConfig) {
    let config = wtransport::ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(cert)])
        .build();
    let endpoint = wtransport::quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    (endpoint, config.quic_config().clone())
}

#[tokio::test]
async fn a_quic_connection_that_never_sends_its_connect_request_is_dropped_and_freed() {
    let relay = TestRelay::start_with(|c| c.limits.handshake_timeout_ms = 400).await;
    let (endpoint, config) = bare_quic_client(relay.cert);
    // The QUIC handshake completes; no SETTINGS, no CONNECT follow.
    let conn = endpoint
        .connect_with(config, relay.addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    until(&relay, "waiting for the CONNECT", |s| {
        s.setups() == 1 && s.quic_connections() == 1 && s.sessions() == 0
    })
    .await;
    // The relay gives up at the deadline and closes the connection.
    let closed = tokio::time::timeout(WAIT, conn.closed())
        .await
        .expect("relay closes it");
    assert!(
        matches!(closed, wtransport::quinn::ConnectionError::ApplicationClosed(_)),
        "{closed:?}"
    );
    until(&relay, "connection freed", |s| {
        s.setup_timeouts() == 1 && s.setups() == 0 && s.quic_connections() == 0
    })
    .await;
    assert_eq!(relay.stats.sessions(), 0);
    // The relay still serves everyone else.
    let a = Identity::generate("alice");
    let ca = relay.connect_wt(&a).await;
    ca.request(hush_protocol::frame::Request::ListGroups).await.unwrap();
    relay.stop().await;
}

#[tokio::test]
async fn sessions_that_never_say_hello_are_dropped_after_the_handshake_timeout() {
    use hush_protocol::frame::CloseReason;
    let relay = TestRelay::start_with(|c| c.limits.handshake_timeout_ms = 400).await;
    let endpoint = hush_sdk::wire::WebTransportEndpoint::new(&hush_sdk::wire::Trust::CertSha256(relay.cert)).unwrap();

    // QUIC and the WebTransport session complete and the stream is opened
    // (wtransport writes the stream's WebTransport header), but no frame follows.
    let mut silent = endpoint.open(&relay.wt_url()).await.unwrap();
    // Another sends half a length prefix and nothing more.
    let mut partial = endpoint.open(&relay.wt_url()).await.unwrap();
    partial.write_raw(&[0, 0]).await.unwrap();
    for s in [&mut silent, &mut partial] {
        let f = s.read_relay_frame().await.unwrap();
        assert!(
            matches!(&f, RelayFrame::Closing(c) if c.reason == CloseReason::HandshakeTimeout),
            "{f:?}"
        );
        assert!(s.read_frame().await.map(|f| f.is_none()).unwrap_or(true));
    }
    until(&relay, "everything released", |s| {
        s.sessions() == 0 && s.setups() == 0 && s.quic_connections() == 0
    })
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn a_thousand_sessions_over_one_udp_socket_are_all_served() {
    const N: usize = 1000;
    let relay = TestRelay::start().await;
    let endpoint = hush_sdk::wire::WebTransportEndpoint::new(&hush_sdk::wire::Trust::CertSha256(relay.cert)).unwrap();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for i in 0..N {
        let (endpoint, mut opts, sem) = (endpoint.clone(), relay.wt_options(), sem.clone());
        // A loaded machine may take a while to finish a thousand handshakes.
        opts.timeout = std::time::Duration::from_secs(60);
        tasks.push(tokio::spawn(async move {
            let id = Identity::generate(&format!("user{i}"));
            let mut c = {
                let _permit = sem.acquire().await.unwrap();
                hush_sdk::wire::WireClient::connect_with(&id, opts, &endpoint)
                    .await
                    .unwrap()
            };
            let g = gid(&format!("solo-{i}"));
            create_group(&c, &g, Default::default()).await;
            let (seq, _) = send_app(&c, &g, 1, 0, format!("hello {i}").as_bytes()).await.unwrap();
            let got = deliveries(&mut c, &g, 1).await;
            assert_eq!(got[0].seq, seq);
            assert_eq!(body(&got[0].payload), format!("hello {i}").as_bytes());
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    assert_eq!(clients.len(), N);
    assert_eq!(relay.stats.sessions(), N);
    assert_eq!(endpoint.open_connections(), N, "all on one client endpoint");
    // Still all live: every one answers a ping.
    for c in clients.iter_mut() {
        assert_quiet(c, |_| false).await;
    }
    drop(clients);
    relay.stop().await;
}
