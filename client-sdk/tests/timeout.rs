//! A relay that never answers: a real TLS + WebSocket listener on port 0
//! that completes the handshake (so the client is connected) and then reads
//! everything and answers nothing. Every round trip must end with a typed
//! timeout instead of hanging, and the client must replace the connection.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hush_protocol::codec;
use hush_protocol::frame::{ClientFrame, Ready, Request};
use hush_protocol::session::{RelayHandshake, RelayStep};
use hush_sdk::wire::{ClientError, ConnectOptions, Identity, Trust, WireClient};
use hush_sdk::{Client, ConnectionState, Error, Event, Timing, TransportConfig};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Starts the silent relay; returns its `wss://` URL and certificate trust.
async fn silent_relay() -> (String, Trust) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = cert.cert.der().clone();
    let trust = Trust::CertSha256(Sha256::digest(der.as_ref()).into());
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                // The SDK binds its signature to the TLS connection.
                let binding = tls
                    .get_ref()
                    .1
                    .export_keying_material([0u8; 32], hush_protocol::auth::BINDING_EXPORTER_LABEL, None)
                    .ok();
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                let mut hs = RelayHandshake::new(rand::random(), "silent", 1 << 20, 60_000).with_binding(binding, true);
                while let Some(Ok(msg)) = ws.next().await {
                    let Message::Binary(b) = msg else { continue };
                    let Ok(frame) = codec::decode::<ClientFrame>(&b) else {
                        return;
                    };
                    let reply = match hs.on_frame(frame) {
                        RelayStep::Reply(f) => f,
                        RelayStep::Authenticated(d) => hush_protocol::frame::RelayFrame::Ready(Ready {
                            device: d.device,
                            registered: false,
                            groups: Vec::new(),
                            inbox_acked: 0,
                        }),
                        _ => return,
                    };
                    let done = matches!(reply, hush_protocol::frame::RelayFrame::Ready(_));
                    ws.send(Message::Binary(codec::encode(&reply).unwrap().into()))
                        .await
                        .unwrap();
                    if done {
                        break;
                    }
                }
                // Authenticated: from now on read everything, answer nothing.
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (format!("wss://localhost:{port}/ws"), trust)
}

#[tokio::test]
async fn a_wire_request_the_relay_never_answers_times_out() {
    let (url, trust) = silent_relay().await;
    let mut opts = ConnectOptions::new(url, trust);
    opts.request_timeout = Duration::from_millis(500);
    let wire = WireClient::connect(&Identity::generate("alice"), opts).await.unwrap();
    let started = tokio::time::Instant::now();
    let r = wire.request(Request::ListGroups).await;
    assert!(matches!(r, Err(ClientError::Timeout)), "{r:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn an_sdk_call_the_relay_never_answers_fails_with_timeout_and_the_client_reconnects() {
    let (url, trust) = silent_relay().await;
    let dir = tempfile::tempdir().unwrap();
    let (client, mut events) = Client::builder()
        .relay(url)
        .trust(trust)
        .data_dir(dir.path())
        .user("alice")
        .timing(Timing {
            request_timeout: Duration::from_millis(800),
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
            ..Timing::default()
        })
        .transport(TransportConfig {
            webtransport_url: Some(String::new()),
            ..TransportConfig::default()
        })
        .open_with_events()
        .await
        .unwrap();
    client.wait_connected(Duration::from_secs(10)).await.unwrap();
    let started = tokio::time::Instant::now();
    let r = client.devices("bob").await;
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // The connection that carried it is replaced.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match events.next_timeout(left).await.expect("no disconnect") {
            Event::Connection(ConnectionState::Disconnected { reason, .. }) => {
                assert!(reason.contains("timed out"), "{reason}");
                break;
            }
            _ => continue,
        }
    }
    client.close().await;
}
