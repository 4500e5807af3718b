//! `fanout`: group fan-out, side by side in one run, for the hush relay,
//! Socket.IO 4 with the Redis adapter (two Node workers and a redis-server)
//! and a bare Rust TLS fan-out floor, all driven by this one load generator.
//!
//! ```text
//! cargo build --release -p hush-bench -p hush-relay
//! ./target/release/fanout all                 # the full comparison (about 10 minutes)
//! ./target/release/fanout smoke               # 2 groups x 5 members, a few seconds per server
//! ./target/release/fanout all --servers hush,floor-tls --rates 100,1000 --secs 5
//! ```
//!
//! Rows (`--servers`, comma-separated; default all): `hush` (the release
//! `hush-relay` binary next to this one, or `HUSH_RELAY_BIN`; WSS; rate limit
//! off; devices registered in open mode), `socketio-tls` and `socketio-ws`
//! (`benches/socketio/server.js`, two workers each on its own port and one
//! `redis-server`; the suite installs redis-server with apt-get and the npm
//! packages with `npm ci` if they are missing), `floor-tls` and `floor-ws`
//! (`fanout-floor`, next to this binary or `HUSH_FLOOR_BIN`).
//!
//! Scenario: `--groups G` x `--members M` (default 10 x 100), each member on
//! its own connection (Socket.IO members alternate between the two workers),
//! the first member of each group is its sender, every member including the
//! sender receives every message. Payloads are 100 bytes carrying the send
//! time, the group, the step and a per-group sequence number; every receiver
//! checks the sequence (loss, duplicates, gaps, reordering). Steps: a short
//! unreported warm-up, then each open-loop rate of `--rates` (messages/s in
//! total across groups, for `--secs` seconds each), then the closed loop:
//! each sender keeps at most `--window W` messages it has not yet received
//! back itself. hush receivers acknowledge the latest entry every 64 entries
//! or 20 ms, as a batching client would.
//!
//! Reported per server and step: deliveries/s (distinct deliveries divided by
//! the time from the first send to the last delivery), latency p50/p90/p99/
//! p99.9/max (send to receive, every delivery), server CPU (% of one core,
//! utime + stime from /proc over the same interval, summed over the server's
//! processes), RSS at the step's end, loss, duplicates, gaps, reordering.
//! Output: a line per step while it runs, then `fanout.md` (table),
//! `fanout.json` and `fanout.svg` (p50 and p99 against delivered throughput)
//! in `--out` (default `benches/results` for `all`, `target/fanout-smoke`
//! for `smoke`). The process exits non-zero if any step lost, duplicated or
//! reordered a delivery, or a send failed.
//!
//! The load generator and the servers share the machine's cores.

mod clients;
mod servers;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::clients::GroupConns;
use crate::stats::{Global, Row, Stamp, now_ns, pct_ms};

/// A step ends once everything sent is delivered, or when nothing new has
/// arrived for this long (what is missing then is reported as loss).
const DRAIN_QUIET: Duration = Duration::from_secs(5);
/// ...and at most this long after the last send.
const DRAIN_MAX: Duration = Duration::from_secs(120);

#[derive(Clone, Debug)]
struct Opts {
    servers: Vec<String>,
    groups: usize,
    members: usize,
    rates: Vec<f64>,
    secs: f64,
    window: u64,
    warmup_secs: f64,
    out: PathBuf,
    closed_loop: bool,
}

fn parse(args: &[String]) -> anyhow::Result<Opts> {
    let smoke = args.first().map(String::as_str) == Some("smoke");
    let mut o = if smoke {
        Opts {
            servers: servers::ALL.iter().map(|s| s.to_string()).collect(),
            groups: 2,
            members: 5,
            rates: vec![100.0],
            secs: 2.0,
            window: 8,
            warmup_secs: 0.5,
            out: PathBuf::from("target/fanout-smoke"),
            closed_loop: true,
        }
    } else {
        Opts {
            servers: servers::ALL.iter().map(|s| s.to_string()).collect(),
            groups: 10,
            members: 100,
            rates: vec![50.0, 100.0, 200.0, 500.0, 1000.0],
            secs: 10.0,
            window: 16,
            warmup_secs: 3.0,
            out: PathBuf::from("benches/results"),
            closed_loop: true,
        }
    };
    let mut it = args.iter().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--servers" => o.servers = val()?.split(',').map(str::to_owned).collect(),
            "--groups" => o.groups = val()?.parse()?,
            "--members" => o.members = val()?.parse()?,
            "--rates" => {
                o.rates = val()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--secs" => o.secs = val()?.parse()?,
            "--window" => o.window = val()?.parse()?,
            "--warmup" => o.warmup_secs = val()?.parse()?,
            "--out" => o.out = PathBuf::from(val()?),
            "--no-closed-loop" => o.closed_loop = false,
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    anyhow::ensure!(o.groups > 0 && o.members > 0, "groups and members must be positive");
    for s in &o.servers {
        anyhow::ensure!(
            servers::ALL.contains(&s.as_str()),
            "unknown server {s:?} (one of {:?})",
            servers::ALL
        );
    }
    Ok(o)
}

#[derive(Clone, Copy)]
enum Mode {
    Open(f64),
    Closed(u64),
}

struct Bench {
    origin: Instant,
    global: Arc<Global>,
    groups: Vec<GroupConns>,
    pids: Vec<u32>,
    clk_tck: f64,
    step: u32,
}

impl Bench {
    /// Runs one step and returns its summary.
    async fn step(&mut self, server: &str, mode: Mode, secs: f64) -> anyhow::Result<Row> {
        self.step += 1;
        let step = self.step;
        self.global.unique.store(0, Ordering::Relaxed);
        self.global.last_ns.store(0, Ordering::Relaxed);
        for g in &self.groups {
            g.own.received.store(0, Ordering::Relaxed);
        }
        let errors0: u64 = self.groups.iter().map(|g| g.publisher.errors()).sum();
        let cpu0: u64 = self.pids.iter().map(|&p| servers::cpu_ticks(p)).sum();
        let t0 = Instant::now();
        let t0_ns = now_ns(self.origin);
        let stop = t0 + Duration::from_secs_f64(secs);
        let ngroups = self.groups.len();
        let origin = self.origin;
        let sent: Vec<u64> = futures_util::future::join_all(
            self.groups
                .iter()
                .enumerate()
                .map(|(g, conns)| send_loop(conns, g as u32, ngroups, step, mode, t0, stop, origin)),
        )
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
        let members = self.groups.first().map_or(0, |g| g.receivers.len()) as u64;
        let expected: u64 = sent.iter().sum::<u64>() * members;
        // Drain: every sent message delivered, or no progress for a while.
        let drain_start = Instant::now();
        let (mut seen, mut since) = (0, Instant::now());
        loop {
            let now = self.global.unique.load(Ordering::Relaxed);
            if now >= expected || since.elapsed() > DRAIN_QUIET || drain_start.elapsed() > DRAIN_MAX {
                break;
            }
            if now != seen {
                (seen, since) = (now, Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let last_ns = self.global.last_ns.load(Ordering::Relaxed);
        let elapsed_cpu = t0.elapsed().as_secs_f64();
        let cpu1: u64 = self.pids.iter().map(|&p| servers::cpu_ticks(p)).sum();
        let rss: u64 = self.pids.iter().map(|&p| servers::rss_kib(p)).sum();
        let mut lat = Vec::new();
        let mut row = Row {
            server: server.to_owned(),
            mode: match mode {
                Mode::Open(r) => format!("open {r}/s"),
                Mode::Closed(w) => format!("closed W={w}"),
            },
            offered: match mode {
                Mode::Open(r) => r,
                Mode::Closed(_) => 0.0,
            },
            sent: sent.iter().sum(),
            send_errors: self.groups.iter().map(|g| g.publisher.errors()).sum::<u64>() - errors0,
            expected,
            delivered: 0,
            deliveries_per_s: 0.0,
            p50_ms: 0.0,
            p90_ms: 0.0,
            p99_ms: 0.0,
            p999_ms: 0.0,
            max_ms: 0.0,
            cpu_pct: (cpu1 - cpu0) as f64 / self.clk_tck / elapsed_cpu * 100.0,
            rss_mib: rss as f64 / 1024.0,
            loss: 0,
            duplicates: 0,
            gaps: 0,
            reordered: 0,
            stale: 0,
            foreign: 0,
        };
        for g in &self.groups {
            for r in &g.receivers {
                let mut r = r.lock().unwrap_or_else(|p| p.into_inner());
                row.stale += std::mem::take(&mut r.stale);
                row.foreign += std::mem::take(&mut r.foreign);
                if r.step != step {
                    continue;
                }
                row.delivered += r.unique;
                row.duplicates += r.duplicates;
                row.gaps += r.gaps;
                row.reordered += r.reordered;
                lat.append(&mut r.lat_us);
            }
        }
        row.loss = expected.saturating_sub(row.delivered);
        lat.sort_unstable();
        row.p50_ms = pct_ms(&lat, 50.0);
        row.p90_ms = pct_ms(&lat, 90.0);
        row.p99_ms = pct_ms(&lat, 99.0);
        row.p999_ms = pct_ms(&lat, 99.9);
        row.max_ms = lat.last().map_or(f64::NAN, |&m| m as f64 / 1000.0);
        let span = last_ns.saturating_sub(t0_ns) as f64 / 1e9;
        row.deliveries_per_s = if span > 0.0 { row.delivered as f64 / span } else { 0.0 };
        Ok(row)
    }
}

/// One group's sender for one step; returns how many it sent.
#[allow(clippy::too_many_arguments)]
async fn send_loop(
    conns: &GroupConns,
    group: u32,
    ngroups: usize,
    step: u32,
    mode: Mode,
    t0: Instant,
    stop: Instant,
    origin: Instant,
) -> anyhow::Result<u64> {
    let mut seq = 0u64;
    let stamp = |seq| Stamp {
        sent_ns: now_ns(origin),
        group,
        step,
        seq,
    };
    match mode {
        Mode::Open(rate) => {
            // Each group sends rate / groups per second, the groups' ticks
            // spread evenly so they do not all send at the same instant.
            let interval = Duration::from_secs_f64(ngroups as f64 / rate);
            let first = t0 + interval.mul_f64(group as f64 / ngroups as f64);
            let mut tick = tokio::time::interval_at(first.into(), interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            loop {
                let at = tick.tick().await;
                if at.into_std() >= stop {
                    break;
                }
                conns.publisher.publish(stamp(seq)).await?;
                seq += 1;
            }
        }
        Mode::Closed(window) => {
            while Instant::now() < stop {
                while seq.saturating_sub(conns.own.received.load(Ordering::Relaxed)) >= window {
                    let wait = conns.own.notify.notified();
                    if seq.saturating_sub(conns.own.received.load(Ordering::Relaxed)) < window {
                        break;
                    }
                    // A lost message would stall the window for good: give up
                    // on it after a while (the loss is reported).
                    if tokio::time::timeout(Duration::from_secs(5), wait).await.is_err() {
                        return Ok(seq);
                    }
                }
                if Instant::now() >= stop {
                    break;
                }
                conns.publisher.publish(stamp(seq)).await?;
                seq += 1;
            }
        }
    }
    Ok(seq)
}

fn progress(r: &Row) {
    println!(
        "  [{}] {:<14} sent {:>7}  delivered {:>9}/{:<9} {:>9.0} deliveries/s  p50 {:>8.2} ms  p99 {:>8.2} ms  p99.9 {:>8.2} ms  cpu {:>4.0}%  rss {:>6.1} MiB  loss {} dup {} gaps {} reordered {}{}",
        r.server,
        r.mode,
        r.sent,
        r.delivered,
        r.expected,
        r.deliveries_per_s,
        r.p50_ms,
        r.p99_ms,
        r.p999_ms,
        r.cpu_pct,
        r.rss_mib,
        r.loss,
        r.duplicates,
        r.gaps,
        r.reordered,
        if r.send_errors > 0 {
            format!(" SEND ERRORS {}", r.send_errors)
        } else {
            String::new()
        }
    );
}

async fn run_server(name: &str, o: &Opts, cert: &servers::Cert, clk_tck: f64) -> anyhow::Result<Vec<Row>> {
    let t = Instant::now();
    let running = servers::start(name, cert)?;
    println!("[{name}] started (pids {:?})", running.pids);
    let origin = Instant::now();
    let global = Arc::new(Global::default());
    let mut groups = Vec::new();
    for g in 0..o.groups {
        groups.push(clients::setup_group(&running.target, g as u32, o.members, global.clone(), origin).await?);
    }
    println!(
        "[{name}] {} groups x {} members connected and joined in {:.1}s",
        o.groups,
        o.members,
        t.elapsed().as_secs_f64()
    );
    let mut bench = Bench {
        origin,
        global,
        groups,
        pids: running.pids.clone(),
        clk_tck,
        step: 0,
    };
    let mut rows = Vec::new();
    if o.warmup_secs > 0.0 {
        let r = bench
            .step(
                name,
                Mode::Open(o.rates.first().copied().unwrap_or(100.0)),
                o.warmup_secs,
            )
            .await?;
        println!(
            "  [{name}] warm-up        delivered {}/{} (not reported)",
            r.delivered, r.expected
        );
    }
    for &rate in &o.rates {
        let r = bench.step(name, Mode::Open(rate), o.secs).await?;
        progress(&r);
        rows.push(r);
    }
    if o.closed_loop {
        let r = bench.step(name, Mode::Closed(o.window), o.secs).await?;
        progress(&r);
        rows.push(r);
    }
    drop(bench);
    drop(running);
    Ok(rows)
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn markdown(rows: &[Row], meta: &serde_json::Value) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Command: `{}`\n\nMachine: nproc {}, {}; load average {} at the start, {} at the end. {} groups x {} members, 100-byte payloads, {} s per step, closed-loop window {}.\n\n",
        meta["command"].as_str().unwrap_or(""),
        meta["nproc"].as_str().unwrap_or(""),
        meta["cpu"].as_str().unwrap_or(""),
        meta["loadavg_start"].as_str().unwrap_or(""),
        meta["loadavg_end"].as_str().unwrap_or(""),
        meta["groups"],
        meta["members"],
        meta["secs"],
        meta["window"],
    ));
    s.push_str("| server | step | sent msgs | deliveries/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | server CPU % | RSS MiB | loss | dup | gaps | reordered |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} |\n",
            r.server,
            r.mode,
            r.sent,
            r.deliveries_per_s,
            fmt_ms(r.p50_ms),
            fmt_ms(r.p90_ms),
            fmt_ms(r.p99_ms),
            fmt_ms(r.p999_ms),
            fmt_ms(r.max_ms),
            r.cpu_pct,
            r.rss_mib,
            r.loss,
            r.duplicates,
            r.gaps,
            r.reordered + r.stale + r.foreign,
        ));
    }
    s
}

/// Latency (p50 solid, p99 dashed, log scale) against delivered throughput,
/// one colour per server.
fn svg(rows: &[Row], servers: &[String]) -> String {
    const W: f64 = 900.0;
    const H: f64 = 560.0;
    const L: f64 = 80.0;
    const R: f64 = 200.0;
    const T: f64 = 40.0;
    const B: f64 = 60.0;
    let colours = ["#d62728", "#1f77b4", "#17becf", "#2ca02c", "#98df8a", "#9467bd"];
    let xmax = rows.iter().map(|r| r.deliveries_per_s).fold(1.0, f64::max);
    // A round upper bound for the x axis.
    let step = 10f64.powf(xmax.log10().floor());
    let xmax = (xmax / step).ceil() * step;
    let lats = rows
        .iter()
        .flat_map(|r| [r.p50_ms, r.p99_ms])
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = lats.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (ylo, yhi) = if lo > hi {
        (-1.0, 3.0)
    } else {
        (lo.log10().floor(), hi.log10().ceil().max(lo.log10().floor() + 1.0))
    };
    let x = |v: f64| L + v / xmax * (W - L - R);
    let y = |ms: f64| {
        let v = ms.max(10f64.powf(ylo)).log10();
        H - B - (v - ylo) / (yhi - ylo) * (H - T - B)
    };
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">Fan-out latency against delivered throughput (p50 solid, p99 dashed)</text>
"#,
        (W - R + L) / 2.0
    );
    for i in 0..=5 {
        let v = xmax * i as f64 / 5.0;
        s.push_str(&format!(
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#ddd"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4}</text>
"##,
            x(v),
            T,
            H - B,
            H - B + 18.0,
            format_thousands(v)
        ));
    }
    for e in (ylo as i32)..=(yhi as i32) {
        let ms = 10f64.powi(e);
        s.push_str(&format!(
            r##"<line x1="{L}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#ddd"/><text x="{2}" y="{3:.1}" text-anchor="end">{4}</text>
"##,
            y(ms),
            W - R,
            L - 6.0,
            y(ms) + 4.0,
            if ms < 1.0 { format!("{ms}") } else { format!("{ms:.0}") }
        ));
    }
    s.push_str(&format!(
        r#"<text x="{}" y="{}" text-anchor="middle">delivered deliveries/s</text>
<text x="20" y="{}" text-anchor="middle" transform="rotate(-90 20 {})">latency, ms (log)</text>
<rect x="{L}" y="{T}" width="{}" height="{}" fill="none" stroke="black"/>
"#,
        (L + W - R) / 2.0,
        H - 15.0,
        (T + H - B) / 2.0,
        (T + H - B) / 2.0,
        W - L - R,
        H - T - B
    ));
    for (i, name) in servers.iter().enumerate() {
        let c = colours[i % colours.len()];
        let mut pts: Vec<&Row> = rows.iter().filter(|r| &r.server == name && r.delivered > 0).collect();
        pts.sort_by(|a, b| a.deliveries_per_s.total_cmp(&b.deliveries_per_s));
        for (sel, dash) in [(0, ""), (1, r#" stroke-dasharray="6 4""#)] {
            let path: Vec<String> = pts
                .iter()
                .map(|r| {
                    let ms = if sel == 0 { r.p50_ms } else { r.p99_ms };
                    format!("{:.1},{:.1}", x(r.deliveries_per_s), y(ms))
                })
                .collect();
            s.push_str(&format!(
                r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"{dash}/>
"#,
                path.join(" ")
            ));
            for r in &pts {
                let ms = if sel == 0 { r.p50_ms } else { r.p99_ms };
                s.push_str(&format!(
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"><title>{} {}: {:.0}/s, {} {} ms</title></circle>
"#,
                    x(r.deliveries_per_s),
                    y(ms),
                    r.server,
                    r.mode,
                    r.deliveries_per_s,
                    if sel == 0 { "p50" } else { "p99" },
                    fmt_ms(ms)
                ));
            }
        }
        let ly = T + 20.0 + i as f64 * 22.0;
        s.push_str(&format!(
            r#"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="{c}" stroke-width="2"/><text x="{3}" y="{4}">{name}</text>
"#,
            W - R + 15.0,
            ly,
            W - R + 45.0,
            W - R + 52.0,
            ly + 4.0
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn format_thousands(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.0}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

async fn run(o: Opts) -> anyhow::Result<bool> {
    let fds = servers::raise_nofile();
    let need = (o.groups * o.members) as u64 + 200;
    println!(
        "open-file limit: {} (this process holds about {need} sockets)",
        fds.map_or("unknown".into(), |f| f.to_string())
    );
    if let Some(f) = fds
        && f < need
    {
        anyhow::bail!("the open-file limit {f} is below {need}: raise it (ulimit -n) and run again");
    }
    if o.servers.iter().any(|s| s.starts_with("socketio")) {
        servers::ensure_socketio()?;
    }
    let dir = tempfile::tempdir()?;
    let cert = servers::Cert::generate(dir.path())?;
    let clk_tck = servers::clk_tck();
    let mut meta = json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "nproc": sh("nproc"),
        "cpu": sh("lscpu | sed -n 's/^Model name: *//p' | head -1"),
        "loadavg_start": loadavg(),
        "groups": o.groups, "members": o.members, "secs": o.secs, "window": o.window,
        "rates": o.rates, "started_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    });
    println!(
        "fanout: {} x {} members, rates {:?} msgs/s, {} s per step, window {}; servers {:?}; load average {}",
        o.groups,
        o.members,
        o.rates,
        o.secs,
        o.window,
        o.servers,
        loadavg()
    );
    let mut rows = Vec::new();
    let mut loads = Vec::new();
    for name in &o.servers {
        rows.extend(
            run_server(name, &o, &cert, clk_tck)
                .await
                .with_context(|| name.clone())?,
        );
        loads.push(json!({"after": name, "loadavg": loadavg()}));
    }
    meta["loadavg_end"] = json!(loadavg());
    meta["loadavg_after_each_server"] = json!(loads);
    std::fs::create_dir_all(&o.out)?;
    let md = markdown(&rows, &meta);
    std::fs::write(o.out.join("fanout.md"), &md)?;
    std::fs::write(
        o.out.join("fanout.json"),
        serde_json::to_string_pretty(&json!({"meta": meta, "rows": rows.iter().map(Row::json).collect::<Vec<_>>()}))?,
    )?;
    std::fs::write(o.out.join("fanout.svg"), svg(&rows, &o.servers))?;
    println!("\n{md}");
    println!("wrote {}/fanout.{{md,json,svg}}", o.out.display());
    let faulty: Vec<String> = rows
        .iter()
        .filter(|r| r.faults() > 0)
        .map(|r| format!("{} {}", r.server, r.mode))
        .collect();
    if !faulty.is_empty() {
        println!(
            "FAULTS (loss, duplicates, gaps, reordering or failed sends) in: {}",
            faulty.join(", ")
        );
    }
    Ok(faulty.is_empty())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("all") | Some("smoke") => {
            let o = parse(&args)?;
            if !run(o).await? {
                std::process::exit(1);
            }
            Ok(())
        }
        _ => {
            eprintln!(
                "usage: fanout all|smoke [--servers {}] [--groups G] [--members M] [--rates R1,R2,..] [--secs S] [--window W] [--warmup S] [--no-closed-loop] [--out DIR]",
                servers::ALL.join(",")
            );
            std::process::exit(2)
        }
    }
}
