//! Two new users chat through a relay, in one process: each gets its own
//! client and data directory (in a temporary directory), alice opens a
//! direct conversation with bob and sends a message, and bob's event stream
//! delivers it.
//!
//! With a development relay running (`cargo run -p hush-relay --bin hush-relay`,
//! from the repository's root):
//!
//! ```sh
//! cargo run -p hush-sdk --example quickstart
//! # or: cargo run -p hush-sdk --example quickstart -- RELAY_URL CERT_SHA256_OR_FILE
//! ```
//!
//! The relay URL defaults to `https://127.0.0.1:7443/wt` (WebTransport; a
//! `wss://…/ws` URL uses WebSocket) and the certificate hash to the file the
//! development relay writes, `hush-data/dev-cert.sha256`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hush_sdk::{Client, Event, Message, Trust};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let relay = args.next().unwrap_or_else(|| "https://127.0.0.1:7443/wt".into());
    let cert = args.next().unwrap_or_else(|| "hush-data/dev-cert.sha256".into());
    let cert = read_cert(&cert)?;
    let dir = tempfile::tempdir()?;
    let m = run(&relay, cert, dir.path()).await?;
    println!("bob received from {}: {:?}", m.sender.user, m.text);
    Ok(())
}

/// The certificate hash: 64 hex digits, or a file holding them.
fn read_cert(cert: &str) -> Result<[u8; 32]> {
    let text = match std::fs::read_to_string(cert) {
        Ok(t) => t,
        Err(_) if cert.len() == 64 => cert.to_owned(),
        Err(e) => return Err(e).with_context(|| format!("reading {cert} (is the development relay running here?)")),
    };
    let bytes = hex::decode(text.trim()).context("certificate hash: 64 hex digits")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("certificate hash: 32 bytes"))
}

/// Runs the conversation against `relay`, keeping both clients' data under
/// `dir`, and returns the message as bob received it.
pub async fn run(relay: &str, cert: [u8; 32], dir: &Path) -> Result<Message> {
    // Fresh names each run: a relay remembers every device a user registered.
    let tag = hex::encode(rand::random::<[u8; 3]>());
    let (alice_name, bob_name) = (format!("alice-{tag}"), format!("bob-{tag}"));
    let open = |name: &str| {
        Client::builder()
            .relay(relay)
            .trust(Trust::CertSha256(cert))
            .data_dir(dir.join(name))
            .user(name)
            .open()
    };
    let alice = open(&alice_name).await?;
    let bob = open(&bob_name).await?;
    // Connected, registered, key packages uploaded: bob can be invited.
    alice.sync(WAIT).await.context("alice cannot reach the relay")?;
    bob.sync(WAIT).await.context("bob cannot reach the relay")?;
    println!("alice and bob are connected over {}", alice.transport().unwrap_or("?"));

    let mut bob_events = bob.events();
    let chat = alice.direct(&bob_name).await?;
    let id = alice.send_text(&chat, "hello bob, from the quickstart").await?;
    println!("alice sent message {id} in conversation {}", chat.to_hex());

    let received = loop {
        match bob_events.next_timeout(WAIT).await {
            Some(Event::Message(m)) => break m,
            Some(other) => println!("bob: {other:?}"),
            None => bail!("bob received nothing within {WAIT:?}"),
        }
    };
    alice.close().await;
    bob.close().await;
    Ok(received)
}
