//! Certificates: PEM files reloaded on SIGHUP without dropping connections, and
//! development certificates rotated with their hashes published ahead.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use common::*;
use hush_protocol::frame::Request;
use hush_sdk::wire::{ConnectOptions, Identity, Trust, WireClient};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A self-signed certificate for 127.0.0.1: (cert PEM, key PEM, SHA-256 of DER).
fn certificate() -> (String, String, [u8; 32]) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let hash = Sha256::digest(cert.der().as_ref()).into();
    (cert.pem(), key.serialize_pem(), hash)
}

async fn both_transports(addr: &str, hash: [u8; 32], id: &Identity) -> Vec<Result<WireClient, String>> {
    let mut out = Vec::new();
    for url in [format!("https://{addr}/wt"), format!("wss://{addr}/ws")] {
        let mut opts = ConnectOptions::new(url, Trust::CertSha256(hash));
        opts.timeout = Duration::from_secs(5);
        out.push(WireClient::connect(id, opts).await.map_err(|e| e.to_string()));
    }
    out
}

#[tokio::test]
async fn sighup_reloads_pem_files_and_keeps_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, key_a, hash_a) = certificate();
    let (cert_b, key_b, hash_b) = certificate();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, &cert_a).unwrap();
    std::fs::write(&key_path, &key_a).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hush-relay"))
        // Certificate files are not the development setup: open
        // registration (what this test's clients use) must be forced.
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log",
            "warn",
            "--open",
            "--force-open-registration",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert_path)
        .arg("--tls-key")
        .arg(&key_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines_rx) = std_mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let next_line = |want: &str| loop {
        let line = lines_rx.recv_timeout(WAIT).expect("relay output");
        if line.contains(want) {
            return line;
        }
    };
    let ws = next_line("websocket:");
    let addr = ws
        .trim()
        .trim_start_matches("websocket:")
        .trim()
        .trim_start_matches("wss://");
    let addr = addr.trim_end_matches("/ws").to_owned();

    let id = Identity::generate("alice");
    let old: Vec<WireClient> = both_transports(&addr, hash_a, &id)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    std::fs::write(&cert_path, &cert_b).unwrap();
    std::fs::write(&key_path, &key_b).unwrap();
    let pid = child.id().to_string();
    // The shell's own `kill`: no procps needed on a minimal machine.
    let signal = |sig: &str| Command::new("sh").args(["-c", &format!("kill -{sig} {pid}")]).status();
    assert!(signal("HUP").unwrap().success());
    let reloaded = next_line("certificate reloaded");
    assert!(reloaded.contains(&hex::encode(hash_b)), "{reloaded}");

    // New connections see the new certificate, on both transports.
    for r in both_transports(&addr, hash_b, &id).await {
        r.unwrap().request(Request::ListGroups).await.unwrap();
    }
    for r in both_transports(&addr, hash_a, &id).await {
        assert!(r.is_err(), "the old certificate is no longer served");
    }
    // Connections opened before the reload still work.
    for c in &old {
        c.request(Request::ListGroups).await.unwrap();
    }
    let _ = signal("TERM");
    let _ = child.wait();
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

async fn cert_hash(relay: &TestRelay) -> serde_json::Value {
    let (head, body) = http_get(relay.dev_http.unwrap(), "/cert-hash").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn dev_certificate_rotates_with_the_successor_published_first() {
    let relay = TestRelay::start().await;
    let old = relay.cert;
    let doc = cert_hash(&relay).await;
    assert_eq!(doc["hex"], hex::encode(old));
    assert_eq!(doc["hashes"].as_array().unwrap().len(), 1);
    assert_eq!(doc["webtransport"], relay.wt_url());
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(old);
    assert_eq!(doc["base64"], b64);

    let id = Identity::generate("alice");
    let open: Vec<WireClient> = both_transports(&relay.addr.to_string(), old, &id)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    // Nothing to do while the certificate is young.
    let now = time::OffsetDateTime::now_utc();
    assert!(!relay.certs.rotate_dev(now + time::Duration::days(5)).await.unwrap());
    // Under two days left: the successor is published beside it, not served yet.
    assert!(
        relay
            .certs
            .rotate_dev(now + time::Duration::hours(11 * 24 + 12))
            .await
            .unwrap()
    );
    let doc = cert_hash(&relay).await;
    assert_eq!(doc["hex"], hex::encode(old));
    let hashes = doc["hashes"].as_array().unwrap();
    assert_eq!(hashes.len(), 2);
    assert_eq!(hashes[0]["serving"], true);
    assert_eq!(hashes[1]["serving"], false);
    let next: [u8; 32] = hex::decode(hashes[1]["hex"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let file = std::fs::read_to_string(relay.dir.path().join("dev-cert-hashes.txt")).unwrap();
    assert_eq!(file, format!("{}\n{}\n", hex::encode(old), hex::encode(next)));

    // Under one day left: the successor is served.
    assert!(
        relay
            .certs
            .rotate_dev(now + time::Duration::hours(12 * 24 + 12))
            .await
            .unwrap()
    );
    let doc = cert_hash(&relay).await;
    assert_eq!(doc["hex"], hex::encode(next));
    let file = std::fs::read_to_string(relay.dir.path().join("dev-cert.sha256")).unwrap();
    assert_eq!(file.trim(), hex::encode(next));
    for r in both_transports(&relay.addr.to_string(), next, &id).await {
        r.unwrap().request(Request::ListGroups).await.unwrap();
    }
    for r in both_transports(&relay.addr.to_string(), old, &id).await {
        assert!(r.is_err(), "the old certificate is no longer served");
    }
    for c in &open {
        c.request(Request::ListGroups).await.unwrap();
    }
    relay.stop().await;
}

#[tokio::test]
async fn dev_listener_serves_static_files_and_nothing_outside() {
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), "<h1>hush</h1>").unwrap();
    std::fs::write(web.path().join("app.js"), "console.log(1)").unwrap();
    let dir = web.path().to_owned();
    let relay = TestRelay::start_with(move |c| c.dev_http.static_dir = Some(dir)).await;
    let at = relay.dev_http.unwrap();
    let (head, body) = http_get(at, "/").await;
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("text/html"), "{head}");
    assert_eq!(body, "<h1>hush</h1>");
    let (head, _) = http_get(at, "/app.js").await;
    assert!(head.contains("text/javascript"), "{head}");
    let (head, _) = http_get(at, "/../Cargo.toml").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = http_get(at, "/missing.css").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    relay.stop().await;
}
