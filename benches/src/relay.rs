//! A relay in its own process for a benchmark: the release `hush-relay`
//! binary next to the running tool (or `HUSH_RELAY_BIN`), on a loopback port
//! chosen by the system, its data in a temporary directory that is removed
//! when the relay is dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// A running relay process; killed on drop.
pub struct RelayProcess {
    child: Child,
    /// `host:port`, the same for WebSocket (TCP) and WebTransport (UDP).
    pub addr: String,
    /// SHA-256 of the relay's self-signed certificate.
    pub cert: [u8; 32],
    dir: tempfile::TempDir,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RelayProcess {
    /// Starts the relay with no rate limit and `extra_config` appended to
    /// its TOML configuration; returns once it printed its address.
    pub fn start(extra_config: &str) -> anyhow::Result<Self> {
        let bin = match std::env::var("HUSH_RELAY_BIN") {
            Ok(p) => PathBuf::from(p),
            Err(_) => std::env::current_exe()?
                .parent()
                .context("binary directory")?
                .join("hush-relay"),
        };
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("relay.toml");
        std::fs::write(
            &config,
            format!("[limits]\nrate_per_second = 1e9\nrate_burst = 1e9\n{extra_config}"),
        )?;
        let mut child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log",
                "error",
                "--dev-http",
                "off",
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let (mut addr, mut cert) = (None, None);
        while addr.is_none() || cert.is_none() {
            let line = lines.next().context("relay exited")??;
            if let Some(u) = line.trim().strip_prefix("websocket:") {
                addr = Some(u.trim().trim_start_matches("wss://").trim_end_matches("/ws").to_owned());
            }
            if let Some(h) = line.trim().strip_prefix("cert sha256:") {
                let bytes = hex::decode(h.trim()).context("cert sha256")?;
                cert = Some(<[u8; 32]>::try_from(bytes).map_err(|_| anyhow::anyhow!("cert sha256 length"))?);
            }
        }
        // Keep reading so the relay never blocks on a full stdout pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(RelayProcess {
            child,
            addr: addr.context("address")?,
            cert: cert.context("certificate hash")?,
            dir,
        })
    }

    /// The WebSocket URL (`wss://host:port/ws`).
    pub fn websocket_url(&self) -> String {
        format!("wss://{}/ws", self.addr)
    }

    /// The WebTransport URL (`https://host:port/wt`).
    pub fn webtransport_url(&self) -> String {
        format!("https://{}/wt", self.addr)
    }

    /// The relay's temporary directory (its data is under `data/`).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The relay's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}
