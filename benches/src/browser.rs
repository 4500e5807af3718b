//! A real browser as a hush client: runs `tests/browser/drive.mjs` (Node +
//! `playwright-core` + Debian's headless Chromium) and talks to it over its
//! stdin/stdout line protocol. The browser side is the plain-JavaScript client
//! of `web/hush/`, written from `PROTOCOL.md` alone.
//!
//! Used by the browser integration test (`benches/tests/browser.rs`) and the
//! round-trip benchmark (`browser_rtt`). Both fail loudly, never skip, when
//! Chromium or the Node packages are missing: `./scripts/test.sh` installs them.
//!
//! Synchronisation is on events only: every command gets a reply line, and
//! everything the page sees is printed as an event line as it happens.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

/// Where Debian installs Chromium (`HUSH_CHROMIUM` overrides it).
pub const CHROMIUM: &str = "/usr/bin/chromium";

type Replies = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// `tests/browser/` in this repository.
pub fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

/// Checks that Chromium, Node and the Node packages are installed, with an
/// error saying how to install what is missing.
pub fn check_installed() -> anyhow::Result<()> {
    let chromium = std::env::var("HUSH_CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
    if !std::path::Path::new(&chromium).exists() {
        bail!("{chromium} is missing: run ./scripts/test.sh or `apt-get install chromium`");
    }
    let pkg = browser_dir().join("node_modules/playwright-core/package.json");
    if !pkg.exists() {
        bail!(
            "{} is missing: run `npm ci` in tests/browser (./scripts/test.sh does)",
            pkg.display()
        );
    }
    Ok(())
}

/// One running browser (Chromium driven by `drive.mjs`).
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    replies: Replies,
    events: mpsc::Receiver<Value>,
    next_id: u64,
    /// How long an awaited reply or event may take before the call fails.
    pub timeout: Duration,
    /// The driver's `started` event (page URL, whether it is cross-origin
    /// isolated, which gives `performance.now()` a 5 µs resolution).
    pub started: Value,
}

impl Browser {
    /// Starts Chromium on a page that can reach the relay whose WebSocket
    /// listener is `wss` and whose development certificate has SHA-256 `cert`.
    /// `page_url`: the relay's development HTTP listener, if any (otherwise
    /// `drive.mjs` serves `web/` itself). Returns once the page is ready.
    pub async fn start(wss: SocketAddr, cert: [u8; 32], page_url: Option<&str>) -> anyhow::Result<Self> {
        check_installed()?;
        let script = browser_dir().join("drive.mjs");
        let mut cmd = Command::new("node");
        cmd.arg(&script)
            .arg("--wss")
            .arg(wss.to_string())
            .arg("--cert-sha256")
            .arg(hex::encode(cert));
        if let Some(url) = page_url {
            cmd.arg("--page-url").arg(url);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting node (Node 20 or newer is needed)")?;
        let stdin = child.stdin.take().context("node stdin")?;
        let stdout = child.stdout.take().context("node stdout")?;
        let replies: Replies = Arc::default();
        let (tx, events) = mpsc::channel(4096);
        let r = replies.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("drive.mjs printed a line that is not JSON: {line}");
                    continue;
                };
                if let Some(id) = v.get("reply").and_then(Value::as_u64) {
                    let waiter = r.lock().ok().and_then(|mut m| m.remove(&id));
                    if let Some(w) = waiter {
                        let res = match v.get("error") {
                            Some(e) => Err(e.as_str().unwrap_or("error").to_owned()),
                            None => Ok(v.get("ok").cloned().unwrap_or(Value::Null)),
                        };
                        let _ = w.send(res);
                    }
                } else if tx.send(v).await.is_err() {
                    break;
                }
            }
        });
        let mut browser = Browser {
            child,
            stdin,
            replies,
            events,
            next_id: 1,
            // Chromium's first start in a fresh profile is the slow part.
            timeout: Duration::from_secs(60),
            started: Value::Null,
        };
        browser.started = browser.wait_event(|e| e["event"] == "started").await?;
        browser.timeout = Duration::from_secs(30);
        Ok(browser)
    }

    /// Runs a command of `page-driver.js` (`connect`, `send`, `bench`, ...) with
    /// the fields of `args` and returns its result.
    pub async fn call(&mut self, cmd: &str, args: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = args;
        msg["id"] = json!(id);
        msg["cmd"] = json!(cmd);
        let (tx, rx) = oneshot::channel();
        self.replies
            .lock()
            .map_err(|_| anyhow::anyhow!("reply table poisoned"))?
            .insert(id, tx);
        let mut line = serde_json::to_vec(&msg)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await.context("writing to drive.mjs")?;
        self.stdin.flush().await?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => bail!("browser {cmd}: {e}"),
            Ok(Err(_)) => bail!("drive.mjs exited during {cmd}"),
            Err(_) => bail!("browser {cmd}: no reply within {:?}", self.timeout),
        }
    }

    /// The next event the page reported (frames, closes).
    pub async fn next_event(&mut self) -> anyhow::Result<Value> {
        match tokio::time::timeout(self.timeout, self.events.recv()).await {
            Ok(Some(v)) => Ok(v),
            Ok(None) => bail!("drive.mjs exited"),
            Err(_) => bail!("no browser event within {:?}", self.timeout),
        }
    }

    /// Skips events until one matches `pred`, and returns it.
    pub async fn wait_event(&mut self, mut pred: impl FnMut(&Value) -> bool) -> anyhow::Result<Value> {
        loop {
            let e = self.next_event().await?;
            if pred(&e) {
                return Ok(e);
            }
        }
    }

    /// Waits for a relay frame of type `ty` on connection `name` matching `pred`.
    pub async fn wait_frame(
        &mut self,
        name: &str,
        ty: &str,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        self.wait_event(|e| e["event"] == "frame" && e["name"] == name && e["frame"]["type"] == ty && pred(e))
            .await
    }

    /// Closes the browser and waits for the driver to exit.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.stdin.shutdown().await.ok();
        drop(self.stdin);
        let status = tokio::time::timeout(self.timeout, self.child.wait())
            .await
            .context("drive.mjs did not exit")??;
        if !status.success() {
            bail!("drive.mjs exited with {status}");
        }
        Ok(())
    }
}
