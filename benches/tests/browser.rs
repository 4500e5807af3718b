//! A real browser and a Rust device talk through a real relay.
//!
//! The browser device is the plain-JavaScript client of `web/hush/` (written
//! from `PROTOCOL.md` alone) in Debian's headless Chromium, driven by
//! `tests/browser/drive.mjs` through `playwright-core`; its Ed25519 key is a
//! WebCrypto key. The Rust device is `hush_sdk::wire::WireClient`. They join one
//! group and exchange messages both ways, then typing signals, first over
//! WebTransport (where the typing signals must travel as datagrams both ways),
//! then over WebSocket. The page is served by the relay's development HTTP
//! listener.
//!
//! This test fails (it does not skip) when Chromium or `tests/browser/node_modules`
//! is missing: `./scripts/test.sh` installs both. Every wait is for an event
//! (a reply or event line from the driver, a frame from the relay); the time
//! limits only bound failures.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use hush_bench::browser::Browser;
use hush_protocol::frame::{ClientFrame, MessageKind, Policy, RelayFrame, Reply, Request, RosterChange, Send};
use hush_protocol::{DeviceId, GroupId};
use hush_sdk::wire::{ConnectOptions, Identity, Trust, WireClient};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

struct TestRelay {
    addr: std::net::SocketAddr,
    quic: std::net::SocketAddr,
    dev_http: std::net::SocketAddr,
    cert: [u8; 32],
    handle: hush_relay::ShutdownHandle,
    task: tokio::task::JoinHandle<hush_relay::RelayResult<()>>,
    _dir: tempfile::TempDir,
}

/// A development relay: WebSocket and WebTransport on one port number, and its
/// development HTTP listener serving `web/` (the page the browser opens).
async fn start_relay() -> TestRelay {
    let dir = tempfile::tempdir().unwrap();
    let mut config = hush_relay::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        ..hush_relay::Config::default()
    };
    config.dev_http.enabled = Some(true);
    config.dev_http.listen = "127.0.0.1:0".parse().unwrap();
    config.dev_http.static_dir = Some(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web"));
    let relay = hush_relay::Relay::load(config).await.unwrap();
    let addr = relay.local_addr();
    let quic = relay.quic_addr().expect("the relay serves WebTransport");
    let dev_http = relay.dev_http_addr().expect("the relay serves its dev HTTP listener");
    let cert = relay.tls().leaf_sha256;
    let handle = relay.shutdown_handle();
    let task = tokio::spawn(relay.run());
    TestRelay {
        addr,
        quic,
        dev_http,
        cert,
        handle,
        task,
        _dir: dir,
    }
}

/// Waits for the Rust device's next frame matching `pred`, skipping others.
async fn rust_wait(c: &mut WireClient, mut pred: impl FnMut(&RelayFrame) -> bool) -> RelayFrame {
    loop {
        match c.next_event_timeout(WAIT).await {
            Ok(Some(f)) if pred(&f) => return f,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the Rust device's connection closed"),
            Err(e) => panic!("the Rust device waited in vain: {e}"),
        }
    }
}

/// `ciphertext` framed as an MLS PrivateMessage (PROTOCOL.md 8.6).
fn private_message(group: &GroupId, epoch: u64, kind: MessageKind, ciphertext: &[u8]) -> Bytes {
    Bytes::from(hush_crypto::inspect::framing::private_message(
        group, epoch, kind, ciphertext,
    ))
}

/// The smallest MLS Welcome the relay accepts (PROTOCOL.md 8.6): version 1,
/// wire format 3, cipher suite 1, one entry of three empty vectors, and a
/// one-byte encrypted group info.
const WELCOME: &[u8] = &[0x00, 0x01, 0x00, 0x03, 0x00, 0x01, 0x03, 0x00, 0x00, 0x00, 0x01, 0x77];

/// An ephemeral signal's envelope (PROTOCOL.md 8.7) for `epoch`: the relay
/// reads only its header, so the sealed part is filler.
fn envelope(epoch: u64, text: &[u8]) -> Bytes {
    use hush_protocol::ephemeral::{SIGNATURE_LEN, TAG_LEN, encode_header};
    let mut out = encode_header(epoch, &[3; 12]).to_vec();
    out.extend_from_slice(&[0; SIGNATURE_LEN]);
    out.extend_from_slice(text);
    out.extend_from_slice(&[0; TAG_LEN]);
    Bytes::from(out)
}

fn hexs(b: &[u8]) -> String {
    hex::encode(b)
}

/// The browser device joins a group of the Rust device over `transport`, and
/// they exchange a message each way and a typing signal each way. Returns how
/// the Rust device's typing signal reached the browser (`datagram`/`stream`),
/// how the browser sent its own, and how many datagrams the Rust device received
/// while the browser's arrived.
async fn exchange(
    browser: &mut Browser,
    rust: &mut WireClient,
    transport: &str,
    url: &str,
    cert: [u8; 32],
    group: &GroupId,
) -> (String, String, u64) {
    let name = transport;
    let ready = browser
        .call(
            "connect",
            json!({"name": name, "user": "browser-user", "transport": transport, "url": url, "certHash": hexs(&cert)}),
        )
        .await
        .unwrap();
    assert_eq!(ready["kind"], transport);
    let device_hex = ready["device"].as_str().unwrap().to_owned();
    assert_eq!(
        ready["ready"]["device"],
        device_hex.as_str(),
        "the relay derives the same device id"
    );
    let browser_device = DeviceId(hex::decode(&device_hex).unwrap().try_into().unwrap());
    let rust_device = rust.ready().device;

    // The Rust device creates the group and adds the browser device (commit at epoch 0).
    let created = rust
        .request(Request::CreateGroup {
            group: group.clone(),
            policy: Policy::default(),
        })
        .await
        .unwrap();
    assert_eq!(created, Reply::GroupCreated { epoch: 0 });
    let reply = rust
        .request(Request::Send(Send {
            group: group.clone(),
            client_msg_id: 1,
            kind: MessageKind::Commit,
            epoch: 0,
            payload: hush_crypto::inspect::framing::commit(
                group,
                0,
                &[browser_device],
                &[],
                b"commit adding the browser",
            )
            .into(),
            roster: Some(RosterChange {
                add: vec![browser_device],
                remove: vec![],
                welcome: Some(Bytes::from_static(WELCOME)),
            }),
        }))
        .await
        .unwrap();
    let Reply::Sent { seq: 1, epoch: 1, .. } = reply else {
        panic!("commit: {reply:?}")
    };
    let g = hexs(&group.0);
    browser
        .wait_frame(name, "Notice", |e| {
            e["frame"]["notice"] == "Added" && e["frame"]["group"] == g.as_str()
        })
        .await
        .unwrap();

    // Browser -> Rust.
    let text = format!("hello from the browser over {transport}");
    let sent = browser
        .call(
            "send",
            json!({"name": name, "group": g, "epoch": "1", "ciphertext": hexs(text.as_bytes())}),
        )
        .await
        .unwrap();
    assert_eq!(sent["reply"]["type"], "Sent");
    assert_eq!(sent["reply"]["seq"], "2");
    // The browser framed it as MLS exactly as this independent framing does.
    let expected = private_message(group, 1, MessageKind::Application, text.as_bytes());
    assert_eq!(sent["payload"], hexs(&expected).as_str());
    // (The Rust device first gets its own commit, seq 1: senders get their own entries.)
    let f = rust_wait(
        rust,
        |f| matches!(f, RelayFrame::Deliver(e) if &e.group == group && e.seq == 2),
    )
    .await;
    let RelayFrame::Deliver(entry) = f else { unreachable!() };
    assert_eq!(entry.seq, 2);
    assert_eq!(entry.sender, browser_device);
    assert_eq!(entry.epoch, 1);
    assert_eq!(entry.payload, expected);
    rust.ack(group, 2).await.unwrap();

    // Rust -> browser.
    let text = format!("hello from Rust over {transport}");
    let payload = private_message(group, 1, MessageKind::Application, text.as_bytes());
    let reply = rust
        .request(Request::Send(Send {
            group: group.clone(),
            client_msg_id: 2,
            kind: MessageKind::Application,
            epoch: 1,
            payload: payload.clone(),
            roster: None,
        }))
        .await
        .unwrap();
    assert!(matches!(reply, Reply::Sent { seq: 3, .. }), "{reply:?}");
    let e = browser
        .wait_frame(name, "Deliver", |e| e["frame"]["entry"]["seq"] == "3")
        .await
        .unwrap();
    let entry = &e["frame"]["entry"];
    assert_eq!(entry["group"], g.as_str());
    assert_eq!(entry["sender"], rust_device.to_hex().as_str());
    assert_eq!(entry["kind"], "Application");
    assert_eq!(entry["payload"], hexs(&payload).as_str());
    browser
        .call("ack", json!({"name": name, "group": g, "seq": "3"}))
        .await
        .unwrap();

    // Typing, Rust -> browser.
    rust.send(&ClientFrame::Ephemeral {
        group: group.clone(),
        payload: envelope(1, b"typing:rust"),
    })
    .await
    .unwrap();
    let e = browser
        .wait_frame(name, "Ephemeral", |e| {
            e["frame"]["payload"] == hexs(&envelope(1, b"typing:rust")).as_str()
        })
        .await
        .unwrap();
    assert_eq!(e["frame"]["sender"], rust_device.to_hex().as_str());
    assert_eq!(e["frame"]["group"], g.as_str());
    let received_via = e["via"].as_str().unwrap().to_owned();

    // Typing, browser -> Rust. (Nothing else reaches the Rust device meanwhile:
    // presence datagrams only follow connects and disconnects.)
    let datagrams_before = rust.datagrams().received();
    let sent_via = browser
        .call(
            "ephemeral",
            json!({"name": name, "group": g, "payload": hexs(&envelope(1, b"typing:browser"))}),
        )
        .await
        .unwrap();
    let f = rust_wait(rust, |f| matches!(f, RelayFrame::Ephemeral { .. })).await;
    let RelayFrame::Ephemeral {
        group: fg,
        sender,
        payload,
    } = f
    else {
        unreachable!()
    };
    assert_eq!(&fg, group);
    assert_eq!(sender, browser_device);
    assert_eq!(payload, envelope(1, b"typing:browser"));
    let datagrams = rust.datagrams().received() - datagrams_before;

    browser.call("close", json!({"name": name})).await.unwrap();
    browser
        .wait_event(|e: &Value| e["event"] == "closed" && e["name"] == name)
        .await
        .unwrap();
    (received_via, sent_via.as_str().unwrap().to_owned(), datagrams)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_and_rust_device_exchange_messages_and_typing() {
    let relay = start_relay().await;
    // The page comes from the relay's development HTTP listener, as a developer
    // would open it.
    let page = format!("http://{}/", relay.dev_http);
    let mut browser = Browser::start(relay.addr, relay.cert, Some(&page)).await.unwrap();

    // The demo page itself, clicked through: it pins the hashes from /cert-hash,
    // connects over WebTransport, creates a group, sends and shows the delivery.
    let device = browser
        .call(
            "demo",
            json!({"user": "demo-user", "group": "demo-room", "text": "hello from the demo page"}),
        )
        .await
        .unwrap();
    assert_eq!(device.as_str().map(str::len), Some(32), "{device}");

    // WebTransport: one bidirectional stream, typing signals as datagrams.
    let wt_url = format!("https://{}/wt", relay.quic);
    let rust_id = Identity::generate("rust-user");
    let mut rust = WireClient::connect(&rust_id, ConnectOptions::new(&wt_url, Trust::CertSha256(relay.cert)))
        .await
        .unwrap();
    let group = GroupId(b"browser-wt".to_vec());
    let (received, sent, datagrams) =
        exchange(&mut browser, &mut rust, "webtransport", &wt_url, relay.cert, &group).await;
    assert_eq!(
        received, "datagram",
        "the Rust device's typing signal reached the browser as a datagram"
    );
    assert_eq!(sent, "datagram", "the browser sent its typing signal as a datagram");
    assert_eq!(
        datagrams, 1,
        "the browser's typing signal reached the Rust device as a datagram"
    );
    rust.close().await;

    // WebSocket: one frame per binary message; typing signals ride the same socket.
    let ws_url = format!("wss://{}/ws", relay.addr);
    let mut rust = WireClient::connect(&rust_id, ConnectOptions::new(&ws_url, Trust::CertSha256(relay.cert)))
        .await
        .unwrap();
    let group = GroupId(b"browser-ws".to_vec());
    let (received, sent, datagrams) = exchange(&mut browser, &mut rust, "websocket", &ws_url, relay.cert, &group).await;
    assert_eq!((received.as_str(), sent.as_str(), datagrams), ("stream", "stream", 0));
    rust.close().await;

    browser.close().await.unwrap();
    relay.handle.shutdown();
    tokio::time::timeout(WAIT, relay.task).await.unwrap().unwrap().unwrap();
}
