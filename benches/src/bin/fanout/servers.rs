//! The servers under test, each in processes of its own: the hush relay,
//! Socket.IO (two Node workers and a redis-server) and the bare floor.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use hush_bench::relay::RelayProcess;
use sha2::Digest;

use crate::clients::Target;

/// Where the Socket.IO worker and its npm lock file live.
pub fn socketio_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("socketio")
}

/// A child process killed (and reaped) on drop.
pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `cmd` with stdout piped and waits for a stdout line for which
/// `ready` returns `Some`; keeps draining stdout afterwards.
fn spawn_until<T>(mut cmd: Command, what: &str, ready: impl Fn(&str) -> Option<T>) -> anyhow::Result<(Proc, T)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let out = child.stdout.take().context("stdout")?;
    let proc = Proc(child);
    let mut lines = BufReader::new(out).lines();
    loop {
        let line = lines
            .next()
            .with_context(|| format!("{what} exited before it was ready"))??;
        if let Some(v) = ready(&line) {
            std::thread::spawn(move || for _ in lines {});
            return Ok((proc, v));
        }
    }
}

/// A self-signed certificate for the baselines' TLS (the relay makes its own).
pub struct Cert {
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    pub sha256: [u8; 32],
}

impl Cert {
    pub fn generate(dir: &Path) -> anyhow::Result<Cert> {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
        let (cert_pem, key_pem) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_pem, ck.cert.pem())?;
        std::fs::write(&key_pem, ck.key_pair.serialize_pem())?;
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&sha2::Sha256::digest(ck.cert.der()));
        Ok(Cert {
            cert_pem,
            key_pem,
            sha256,
        })
    }
}

/// A started server: its processes (for CPU and RSS) and how to reach it.
pub struct Running {
    pub target: Target,
    pub pids: Vec<u32>,
    _procs: Vec<Proc>,
    _relay: Option<RelayProcess>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Last started, first stopped: the Socket.IO workers before the
        // redis-server they use.
        while let Some(p) = self._procs.pop() {
            drop(p);
        }
    }
}

/// The rows a run can have.
pub const ALL: [&str; 5] = ["hush", "socketio-tls", "socketio-ws", "floor-tls", "floor-ws"];

fn listening(line: &str) -> Option<u16> {
    line.trim().strip_prefix("listening ")?.trim().parse().ok()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn sibling_bin(env: &str, name: &str) -> anyhow::Result<PathBuf> {
    match std::env::var(env) {
        Ok(p) => Ok(PathBuf::from(p)),
        Err(_) => Ok(std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .join(name)),
    }
}

/// Starts server `name` (one of [`ALL`]).
pub fn start(name: &str, cert: &Cert) -> anyhow::Result<Running> {
    match name {
        "hush" => {
            let relay = RelayProcess::start("")?;
            Ok(Running {
                target: Target::Hush {
                    url: relay.websocket_url(),
                    cert: relay.cert,
                },
                pids: vec![relay.pid()],
                _procs: vec![],
                _relay: Some(relay),
            })
        }
        "socketio-tls" | "socketio-ws" => {
            let tls = name == "socketio-tls";
            let port = free_port()?;
            let mut redis = Command::new("redis-server");
            redis.args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]);
            let (redis, ()) = spawn_until(redis, "redis-server", |l| l.contains("Ready to accept").then_some(()))?;
            let mut procs = vec![redis];
            let mut urls = Vec::new();
            for _ in 0..2 {
                let mut node = Command::new("node");
                node.arg(socketio_dir().join("server.js"))
                    .env("PORT", "0")
                    .env("REDIS_URL", format!("redis://127.0.0.1:{port}"));
                if tls {
                    node.env("TLS_CERT", &cert.cert_pem).env("TLS_KEY", &cert.key_pem);
                }
                let (p, port) = spawn_until(node, "Socket.IO worker", listening)?;
                procs.push(p);
                urls.push(format!("{}://127.0.0.1:{port}", if tls { "wss" } else { "ws" }));
            }
            Ok(Running {
                target: Target::SocketIo {
                    urls,
                    cert: tls.then_some(cert.sha256),
                },
                pids: procs.iter().map(|p| p.0.id()).collect(),
                _procs: procs,
                _relay: None,
            })
        }
        "floor-tls" | "floor-ws" => {
            let tls = name == "floor-tls";
            let mut cmd = Command::new(sibling_bin("HUSH_FLOOR_BIN", "fanout-floor")?);
            if tls {
                cmd.arg("--cert").arg(&cert.cert_pem).arg("--key").arg(&cert.key_pem);
            }
            let (p, port) = spawn_until(cmd, "fanout-floor", listening)?;
            Ok(Running {
                target: Target::Floor {
                    url: format!("{}://127.0.0.1:{port}", if tls { "wss" } else { "ws" }),
                    cert: tls.then_some(cert.sha256),
                },
                pids: vec![p.0.id()],
                _procs: vec![p],
                _relay: None,
            })
        }
        other => bail!("unknown server {other:?} (one of {ALL:?})"),
    }
}

fn ok(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs what the Socket.IO rows need if it is missing: Debian's
/// `redis-server` with apt-get, and the npm packages pinned by
/// `benches/socketio/package-lock.json` with `npm ci`.
pub fn ensure_socketio() -> anyhow::Result<()> {
    anyhow::ensure!(
        ok(Command::new("node").arg("--version")),
        "Node.js (20 or newer) is needed for the Socket.IO rows"
    );
    if !ok(Command::new("redis-server").arg("--version")) {
        println!("installing redis-server (apt-get)");
        let root = ok(Command::new("sh").args(["-c", "[ \"$(id -u)\" = 0 ]"]));
        let prefix: &[&str] = if root { &[] } else { &["sudo"] };
        let sh = |args: &[&str]| {
            let all: Vec<&str> = prefix.iter().chain(args).copied().collect();
            Command::new(all[0])
                .args(&all[1..])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        anyhow::ensure!(
            sh(&["apt-get", "update", "-qq"]) && sh(&["apt-get", "install", "-y", "-qq", "redis-server"]),
            "apt-get install redis-server failed"
        );
    }
    let dir = socketio_dir();
    if !dir.join("node_modules/socket.io").exists() || !dir.join("node_modules/@socket.io/redis-adapter").exists() {
        println!(
            "installing socket.io and @socket.io/redis-adapter (npm ci in {})",
            dir.display()
        );
        anyhow::ensure!(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .is_ok_and(|s| s.success()),
            "npm ci failed"
        );
    }
    Ok(())
}

/// utime + stime of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may contain spaces), from field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Resident memory of `pid`, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux if that fails).
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Raises this process's soft limit on open files to its hard limit, at most
/// 20,000 (children inherit it). `prlimit` from util-linux does the system
/// call, since this crate has no unsafe code to call setrlimit itself.
/// Returns the soft limit in force afterwards.
pub fn raise_nofile() -> Option<u64> {
    let pid = std::process::id().to_string();
    let read = || -> Option<(u64, u64)> {
        let out = Command::new("prlimit")
            .args(["--pid", &pid, "--nofile", "--raw", "--noheadings", "-o", "SOFT,HARD"])
            .output()
            .ok()?;
        let s = String::from_utf8(out.stdout).ok()?;
        let mut it = s.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(u64::MAX));
        Some((it.next()?, it.next()?))
    };
    let (soft, hard) = read()?;
    let want = hard.min(20_000);
    if soft < want {
        let _ = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={want}:{hard}")])
            .status();
    }
    read().map(|(s, _)| s)
}
