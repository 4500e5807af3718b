//! The auth signature bound to the TLS connection (`hush-auth-v2`): a party
//! in the middle, holding one TLS connection to the device and another to
//! the relay, cannot pass the device's signature on.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use hush_protocol::auth::{BINDING_EXPORTER_LABEL, auth_transcript, bound_auth_transcript};
use hush_protocol::frame::{Authenticate, Challenge, ClientFrame, Hello, Registration, RelayFrame};
use hush_protocol::{ErrorCode, codec};
use hush_sdk::wire::{Identity, Trust, Ws, open_websocket};
use tokio_tungstenite::tungstenite::Message;

/// A raw connection after `Challenge`, with its TLS exporter value.
struct Raw {
    ws: Ws,
    challenge: Challenge,
    binding: [u8; 32],
}

async fn raw(relay: &TestRelay) -> Raw {
    let mut ws = open_websocket(&relay.url(), &Trust::CertSha256(relay.cert))
        .await
        .unwrap();
    let binding = ws
        .get_ref()
        .get_ref()
        .1
        .export_keying_material([0u8; 32], BINDING_EXPORTER_LABEL, None)
        .unwrap();
    let hello = ClientFrame::Hello(Hello {
        min_version: 1,
        max_version: 1,
        client: "binding-test".into(),
    });
    ws.send(Message::Binary(codec::encode(&hello).unwrap().into()))
        .await
        .unwrap();
    let challenge = match next(&mut ws).await {
        RelayFrame::Challenge(c) => c,
        other => panic!("{other:?}"),
    };
    Raw { ws, challenge, binding }
}

async fn next(ws: &mut Ws) -> RelayFrame {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Binary(b))) => return codec::decode(&b).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("closed: {other:?}"),
        }
    }
}

/// Sends `Authenticate` signed over `transcript`; returns the relay's answer.
async fn authenticate(r: &mut Raw, id: &Identity, transcript: &[u8]) -> RelayFrame {
    let auth = ClientFrame::Authenticate(Authenticate {
        user: id.user.clone(),
        device_key: id.public_key(),
        signature: id.sign(transcript),
        registration: Registration::None,
        resume: Vec::new(),
    });
    r.ws.send(Message::Binary(codec::encode(&auth).unwrap().into()))
        .await
        .unwrap();
    next(&mut r.ws).await
}

fn bound(r: &Raw, id: &Identity, binding: &[u8; 32]) -> Vec<u8> {
    let c = &r.challenge;
    bound_auth_transcript(&c.nonce, &c.relay_id, &id.user, &id.public_key(), binding)
}

fn refused(f: &RelayFrame) -> bool {
    matches!(f, RelayFrame::Error(e) if e.code == ErrorCode::AuthFailed)
}

#[tokio::test]
async fn a_signature_bound_to_another_connection_is_refused() {
    let relay = TestRelay::start().await;
    let alice = Identity::generate("alice");
    // The device's connection (to the party in the middle) and the party's
    // own connection to the relay: different TLS connections, different
    // exporter values. The device signs the relay's challenge, bound to its
    // own connection; passed on, it does not verify.
    let device_side = raw(&relay).await;
    let mut relay_side = raw(&relay).await;
    assert_ne!(device_side.binding, relay_side.binding);
    let forwarded = bound(&relay_side, &alice, &device_side.binding);
    assert!(refused(&authenticate(&mut relay_side, &alice, &forwarded).await));
    // Bound to the connection it is sent on, it does.
    let mut own = raw(&relay).await;
    let transcript = bound(&own, &alice, &own.binding);
    assert!(matches!(
        authenticate(&mut own, &alice, &transcript).await,
        RelayFrame::Ready(_)
    ));
    relay.stop().await;
}

#[tokio::test]
async fn a_relay_can_require_bound_signatures_and_sdk_clients_bind() {
    let relay = TestRelay::start_with(|c| c.auth.require_channel_binding = true).await;
    let alice = Identity::generate("alice");
    // The unbound transcript (what a browser signs) is refused...
    let mut r = raw(&relay).await;
    let c = r.challenge.clone();
    let unbound = auth_transcript(&c.nonce, &c.relay_id, &alice.user, &alice.public_key());
    assert!(refused(&authenticate(&mut r, &alice, &unbound).await));
    // ...while the SDK's clients bind on both transports.
    relay.connect(&alice).await;
    relay.connect_wt(&alice).await;
    relay.stop().await;
    // By default the unbound one is accepted (browsers cannot bind).
    let relay = TestRelay::start().await;
    let mut r = raw(&relay).await;
    let c = r.challenge.clone();
    let unbound = auth_transcript(&c.nonce, &c.relay_id, &alice.user, &alice.public_key());
    assert!(matches!(
        authenticate(&mut r, &alice, &unbound).await,
        RelayFrame::Ready(_)
    ));
    relay.stop().await;
}
