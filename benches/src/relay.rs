//! A relay in its own process for a benchmark: the release `hush-relay`
//! binary next to the running tool (or `HUSH_RELAY_BIN`), on a loopback port
//! chosen by the system, its data in a temporary directory that is removed
//! when the relay is dropped (or in a directory the caller keeps).

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
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
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
        let temp = tempfile::tempdir()?;
        let mut relay = Self::start_in(temp.path(), extra_config)?;
        relay._temp = Some(temp);
        Ok(relay)
    }

    /// Like [`RelayProcess::start`], with its configuration and data in
    /// `dir`, which outlives it (a later relay can reuse the data). Lines of
    /// `extra_config` before any table header belong to `[limits]`.
    pub fn start_in(dir: &std::path::Path, extra_config: &str) -> anyhow::Result<Self> {
        let bin = match std::env::var("HUSH_RELAY_BIN") {
            Ok(p) => PathBuf::from(p),
            Err(_) => std::env::current_exe()?
                .parent()
                .context("binary directory")?
                .join("hush-relay"),
        };
        let config = dir.join("relay.toml");
        std::fs::write(
            &config,
            // Every benchmark client comes from loopback: no per-address
            // cap, and ramps of thousands of connections at once.
            format!(
                "[limits]\nrate_per_second = 1e9\nrate_burst = 1e9\nmax_per_address = 1000000\nmax_setups = 100000\n{extra_config}"
            ),
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
            .arg(dir.join("data"))
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
            dir: dir.to_owned(),
            _temp: None,
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
        &self.dir
    }

    /// The relay's resident memory, KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("VmRSS")?;
        line.split_whitespace()
            .nth(1)
            .context("VmRSS value")?
            .parse()
            .context("VmRSS number")
    }

    /// The relay's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}
