//! The fan-out benchmark's smoke mode, end to end: the real `fanout` load
//! generator against a real `hush-relay` process and the `fanout-floor`
//! binary (TLS and plain), 2 groups x 5 members. It checks that every step
//! delivered everything exactly once and in order to every member, sender
//! included, and that the table, JSON and SVG were written.
//!
//! Socket.IO rows need redis-server and npm packages installed from the
//! network, so they join only with `HUSH_BENCH_SOCKETIO=1`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The relay binary of the same build profile as this test, built if absent
/// (a workspace test run has already built it for the relay's own tests).
fn relay_bin() -> PathBuf {
    if let Ok(p) = std::env::var("HUSH_RELAY_BIN") {
        return PathBuf::from(p);
    }
    let dir = Path::new(env!("CARGO_BIN_EXE_fanout")).parent().unwrap().to_owned();
    let bin = dir.join("hush-relay");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "hush-relay", "--bin", "hush-relay"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().unwrap().success(), "building hush-relay");
    }
    bin
}

#[test]
fn smoke_delivers_everything_exactly_once_in_order() {
    let out = tempfile::tempdir().unwrap();
    let mut servers = vec!["hush", "floor-tls", "floor-ws"];
    if std::env::var("HUSH_BENCH_SOCKETIO").is_ok_and(|v| v == "1") {
        servers.extend(["socketio-tls", "socketio-ws"]);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["smoke", "--servers", &servers.join(","), "--out"])
        .arg(out.path())
        .env("HUSH_RELAY_BIN", relay_bin())
        .env("HUSH_FLOOR_BIN", env!("CARGO_BIN_EXE_fanout-floor"))
        .spawn()
        .unwrap();
    // Bounded: a hung run fails the test instead of holding CI.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("fanout smoke did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "fanout smoke failed: {status}");

    let json: Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("fanout.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    for server in &servers {
        let mine: Vec<&Value> = rows.iter().filter(|r| r["server"] == *server).collect();
        // One open-loop rate and the closed loop.
        assert_eq!(mine.len(), 2, "{server}: {mine:?}");
        for r in mine {
            let expected = r["expected"].as_u64().unwrap();
            // 2 groups x 5 members: every message reaches all 5, sender included.
            assert!(expected > 0 && expected % 5 == 0, "{server}: {r}");
            assert_eq!(
                r["expected"].as_u64().unwrap(),
                r["sent"].as_u64().unwrap() * 5,
                "{server}: {r}"
            );
            assert_eq!(r["delivered"], r["expected"], "{server}: {r}");
            for fault in [
                "loss",
                "duplicates",
                "gaps",
                "reordered",
                "stale",
                "foreign",
                "send_errors",
            ] {
                assert_eq!(r[fault], 0, "{server} {fault}: {r}");
            }
            assert!(r["deliveries_per_s"].as_f64().unwrap() > 0.0, "{server}: {r}");
            let (p50, p99) = (r["p50_ms"].as_f64().unwrap(), r["p99_ms"].as_f64().unwrap());
            assert!(p50 > 0.0 && p50 <= p99, "{server}: {r}");
            assert!(r["rss_mib"].as_f64().unwrap() > 0.0, "{server}: {r}");
        }
    }
    let md = std::fs::read_to_string(out.path().join("fanout.md")).unwrap();
    let svg = std::fs::read_to_string(out.path().join("fanout.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for server in &servers {
        assert!(md.contains(&format!("| {server} |")), "{server} missing from the table");
        assert!(
            svg.contains(&format!(">{server}</text>")),
            "{server} missing from the plot"
        );
    }
}
