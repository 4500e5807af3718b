//! `hush-relay`: run a hush relay.
//!
//! With no arguments: a single-node development relay on 127.0.0.1:7443 with a
//! generated certificate, open registration and its data in `./hush-data`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use hush_relay::{Config, Relay};

/// A hush relay: end-to-end-encrypted group messaging, ordered and durable.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// TOML configuration file (flags override it).
    #[arg(long, short, env = "HUSH_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (TCP, WebSocket over TLS).
    #[arg(long, env = "HUSH_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory (store, development certificate).
    #[arg(long, env = "HUSH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// This relay's id (logs, auth transcripts).
    #[arg(long, env = "HUSH_RELAY_ID")]
    relay_id: Option<String>,
    /// Require registration tokens (closes open registration).
    #[arg(long)]
    closed: bool,
    /// HS256 secret for registration tokens.
    #[arg(long, env = "HUSH_JWT_HS256_SECRET", hide_env_values = true)]
    jwt_hs256_secret: Option<String>,
    /// Log filter, e.g. `info` or `hush_relay=debug`.
    #[arg(long, env = "HUSH_LOG", default_value = "info")]
    log: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).context("--log")?)
        .with_writer(std::io::stderr)
        .init();
    let mut config = match &args.config {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(r) = args.relay_id {
        config.relay_id = r;
    }
    if let Some(s) = args.jwt_hs256_secret {
        config.auth.jwt_hs256_secret = Some(s);
    }
    if args.closed {
        config.auth.open = false;
    }
    let relay = Relay::load(config).await?;
    let addr = relay.local_addr();
    let tls = relay.tls();
    println!("hush-relay {} listening", env!("CARGO_PKG_VERSION"));
    println!("  websocket:    wss://{addr}/ws");
    println!("  data dir:     {}", relay.config().data_dir.display());
    if tls.dev {
        println!(
            "  certificate:  development, self-signed ({})",
            tls.cert_path
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string())
        );
        println!("  cert sha256:  {}", tls.leaf_sha256_hex());
        println!(
            "  (clients pin this hash; it is also in {})",
            relay.config().data_dir.join("dev-cert.sha256").display()
        );
    } else {
        println!(
            "  certificate:  {}",
            tls.cert_path
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string())
        );
    }
    if relay.config().auth.open {
        println!("  registration: OPEN (development): any device may register without a token");
    } else {
        println!("  registration: token or device link required");
    }
    println!("  protocol:     see PROTOCOL.md; stop with Ctrl-C (clients are told to reconnect)");
    let handle = relay.shutdown_handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: closing connections with GoingAway");
        handle.shutdown();
    });
    relay.run().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
