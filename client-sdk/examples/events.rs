//! Prints every event of a device's event stream, as it happens, until
//! Ctrl-C: a way to watch what the SDK reports.
//!
//! ```sh
//! cargo run -p hush-sdk --bin hush -- --dir alice init --name alice   # once
//! cargo run -p hush-sdk --example events -- alice
//! ```
//!
//! The data directory must have been set up by `hush init`, whose
//! `client.json` says which relay to use and which certificate to trust. A
//! data directory is used by one process at a time: stop `hush chat` on it
//! first.

use anyhow::{Context, Result};
use hush_sdk::{Client, Trust};
use serde::Deserialize;

/// What `hush init` writes to `<dir>/client.json`.
#[derive(Deserialize)]
struct Settings {
    relay: String,
    cert_sha256: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "hush-client".into());
    let path = std::path::Path::new(&dir).join("client.json");
    let settings: Settings = serde_json::from_slice(
        &std::fs::read(&path)
            .with_context(|| format!("reading {} (run `hush --dir {dir} init` first)", path.display()))?,
    )?;
    let cert: [u8; 32] = hex::decode(settings.cert_sha256.trim())?
        .try_into()
        .map_err(|_| anyhow::anyhow!("certificate hash: 32 bytes"))?;

    // Subscribed from the start, so the first connection's events are seen too.
    let (client, mut events) = Client::builder()
        .relay(settings.relay)
        .trust(Trust::CertSha256(cert))
        .data_dir(&dir)
        .open_with_events()
        .await?;
    println!(
        "{} device {}: printing events, Ctrl-C stops",
        client.user(),
        client.device_id()
    );
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(ev) => println!("{ev:?}"),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.close().await;
    Ok(())
}
