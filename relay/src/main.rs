//! `hush-relay`: run a hush relay.
//!
//! With no arguments: a single-node development relay on 127.0.0.1:7443
//! (WebTransport on UDP, WebSocket on TCP) with a generated certificate, a
//! plain-HTTP dev listener on 127.0.0.1:7480 (`/cert-hash`, the demo page in
//! `web/`), open registration and its data in `./hush-data`. Anywhere else
//! (another listen address, certificate files) registration is closed unless
//! forced open: it needs a token key.
//!
//! Signals: SIGTERM / Ctrl-C drain and stop; SIGHUP reloads the certificate
//! files (open connections keep going).

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
    /// Address to listen on: TCP for WebSocket over TLS, UDP for WebTransport
    /// (same port).
    #[arg(long, env = "HUSH_LISTEN")]
    listen: Option<SocketAddr>,
    /// TLS certificate chain (PEM); without it a development certificate is made.
    #[arg(long, env = "HUSH_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "HUSH_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Plain-HTTP dev listener (certificate hash, demo page): an address to
    /// listen on, or `off`. On by default with a development certificate,
    /// at 127.0.0.1:7480.
    #[arg(long, env = "HUSH_DEV_HTTP")]
    dev_http: Option<String>,
    /// Directory of the demo page served by the dev listener (default `web`).
    #[arg(long, env = "HUSH_WEB_DIR")]
    web_dir: Option<PathBuf>,
    /// Serve WebSocket only (no QUIC/WebTransport).
    #[arg(long)]
    no_webtransport: bool,
    /// Data directory (store, development certificate).
    #[arg(long, env = "HUSH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// This relay's id (logs, auth transcripts).
    #[arg(long, env = "HUSH_RELAY_ID")]
    relay_id: Option<String>,
    /// Require registration tokens or device links (the default outside the
    /// development setup).
    #[arg(long, conflicts_with = "open")]
    closed: bool,
    /// Let any new device register with no token. The default only for the
    /// development setup (loopback address, generated certificate); anywhere
    /// else it also needs --force-open-registration.
    #[arg(long)]
    open: bool,
    /// Allow open registration outside the development setup: anyone who can
    /// reach the relay may register a device as any user.
    #[arg(long)]
    force_open_registration: bool,
    /// File holding the HS256 secret for registration tokens (at least 32
    /// bytes). The secret itself is never taken from the command line, where
    /// other users of the machine can read it; the environment variable
    /// HUSH_JWT_HS256_SECRET also works.
    #[arg(long, env = "HUSH_JWT_HS256_SECRET_FILE")]
    jwt_hs256_secret_file: Option<PathBuf>,
    /// Ed25519 public key (hex or base64) verifying EdDSA registration tokens.
    #[arg(long, env = "HUSH_JWT_ED25519_PUBLIC_KEY")]
    jwt_ed25519_public_key: Option<String>,
    /// Log filter, e.g. `info` or `hush_relay=debug`.
    #[arg(long, env = "HUSH_LOG", default_value = "info")]
    log: String,
}

/// Threads for blocking work (store reads) besides one worker per core. The
/// live delivery path uses none; backlog and history reads do, and more
/// threads than this would only add context switches on a small machine.
const BLOCKING_THREADS: usize = 8;

/// glibc's allocator took about a third of a request worker's time under
/// load (BENCHMARKS.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name("hush-relay")
        .build()
        .context("starting the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).context("--log")?)
        .with_writer(std::io::stderr)
        // A closed stderr (the relay piped into a pager or `tee` that went
        // away) must not turn a log line into a panic of the task logging it.
        .log_internal_errors(false)
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
    if let Ok(s) = std::env::var("HUSH_JWT_HS256_SECRET") {
        config.auth.jwt_hs256_secret = Some(s);
    }
    if let Some(f) = args.jwt_hs256_secret_file {
        config.auth.jwt_hs256_secret_file = Some(f);
    }
    if let Some(k) = args.jwt_ed25519_public_key {
        config.auth.jwt_ed25519_public_key = Some(k);
    }
    if args.closed {
        config.auth.open = Some(false);
    }
    if args.open {
        config.auth.open = Some(true);
    }
    if args.force_open_registration {
        config.auth.force_open = true;
    }
    if let (Some(c), Some(k)) = (args.tls_cert, args.tls_key) {
        config.tls.cert = Some(c);
        config.tls.key = Some(k);
    }
    match args.dev_http.as_deref() {
        None => {}
        Some("off") => config.dev_http.enabled = Some(false),
        Some(addr) => {
            config.dev_http.enabled = Some(true);
            config.dev_http.listen = addr
                .parse()
                .context("--dev-http: an address like 127.0.0.1:7480, or off")?;
        }
    }
    if let Some(d) = args.web_dir {
        config.dev_http.static_dir = Some(d);
    }
    if args.no_webtransport {
        config.quic.enabled = false;
    }
    let relay = Relay::load(config).await?;
    let addr = relay.local_addr();
    let tls = relay.tls();
    println!("hush-relay {} listening", env!("CARGO_PKG_VERSION"));
    if relay.quic_addr().is_some() {
        println!("  webtransport: https://{addr}/wt   (QUIC, UDP port {})", addr.port());
    }
    println!("  websocket:    wss://{addr}/ws");
    if let Some(http) = relay.dev_http_addr() {
        println!("  dev http:     http://{http}/   (demo page; certificate hashes at http://{http}/cert-hash)");
    }
    println!("  data dir:     {}", relay.config().data_dir.display());
    println!("  relay id:     {}", relay.relay_id());
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
    if relay.config().registration_open() {
        if relay.config().is_dev_setup() {
            println!("  registration: OPEN (development): any device may register without a token");
        } else {
            println!(
                "  registration: OPEN, FORCED outside the development setup: anyone who reaches this relay may register a device as any user"
            );
        }
    } else {
        println!("  registration: token or device link required");
    }
    println!("  protocol:     see PROTOCOL.md; stop with Ctrl-C (clients are told to reconnect)");
    let certs = relay.certs();
    tokio::spawn(reload_on_sighup(certs));
    let handle = relay.shutdown_handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        // Shut down first: nothing that follows (a log line to a closed
        // stderr, say) may keep the relay running.
        handle.shutdown();
        tracing::info!("shutting down: closing connections with GoingAway");
    });
    Ok(relay.run().await?)
}

/// SIGHUP: read the certificate files again; new connections get the new
/// certificate, open ones are untouched.
async fn reload_on_sighup(certs: hush_relay::CertHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match certs.reload().await {
                Ok(()) => {
                    use std::io::Write as _;
                    // Not println!: it panics once stdout is closed.
                    let _ = writeln!(
                        std::io::stdout(),
                        "certificate reloaded: sha256 {}",
                        certs.store().current().leaf_sha256_hex()
                    );
                }
                Err(e) => tracing::error!(error = %format!("{e:#}"), "certificate reload failed; keeping the old one"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = certs;
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
