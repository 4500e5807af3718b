//! What an embedder gets when the relay cannot start: a typed error that says
//! which thing to fix.
#![allow(clippy::unwrap_used)]

use hush_relay::{Config, Relay, RelayError};

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    c.quic.enabled = false;
    c.dev_http.enabled = Some(false);
    c
}

#[tokio::test]
async fn each_start_failure_has_its_own_kind() {
    let dir = tempfile::tempdir().unwrap();

    let mut c = config(dir.path());
    c.limits.max_connections = 0;
    match Relay::load(c).await {
        Err(RelayError::Config(m)) => assert!(m.contains("limits.max_connections"), "{m}"),
        other => panic!("expected a configuration error, got {:?}", other.err()),
    }

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = config(dir.path());
    c.listen = taken.local_addr().unwrap();
    match Relay::load(c).await {
        Err(RelayError::Listen(m)) => assert!(m.contains(&taken.local_addr().unwrap().to_string()), "{m}"),
        other => panic!("expected a listen error, got {:?}", other.err()),
    }

    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    match Relay::load(config(&file)).await {
        Err(RelayError::DataDir { dir, .. }) => assert_eq!(dir, file),
        other => panic!("expected a data directory error, got {:?}", other.err()),
    }

    let missing = dir.path().join("missing.toml");
    match Config::from_file(&missing) {
        Err(RelayError::ConfigFile { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected a config file error, got {:?}", other.err()),
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "no_such_key = 1\n").unwrap();
    assert!(matches!(Config::from_file(&bad), Err(RelayError::ConfigFile { .. })));

    // And a good configuration starts.
    let relay = Relay::load(config(dir.path())).await.unwrap();
    assert_ne!(relay.local_addr().port(), 0);
}

/// Runs the `hush-relay` binary until it prints its banner or exits.
fn run_binary(args: &[&str], envs: &[(&str, &str)], dir: &std::path::Path) -> (bool, String) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_hush-relay"))
        .args(args)
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "--dev-http",
            "off",
            "--no-webtransport",
        ])
        .env_remove("HUSH_JWT_HS256_SECRET")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The banner ends with the protocol line; a refusal ends the process.
    let mut out = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        out.push_str(&line);
        out.push('\n');
        if line.contains("protocol:") {
            child.kill().unwrap();
            child.wait().unwrap();
            return (true, out);
        }
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    (false, out + &err)
}

#[test]
fn open_registration_is_refused_outside_the_development_setup_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // The development setup: open, and it says so.
    let (started, out) = run_binary(&["--listen", "127.0.0.1:0"], &[], data);
    assert!(started && out.contains("registration: OPEN (development)"), "{out}");

    // Every address with no token key: refused, with what to do.
    let (started, out) = run_binary(&["--listen", "0.0.0.0:0"], &[], data);
    assert!(!started && out.contains("no token key"), "{out}");
    // Asking for open registration there: refused unless forced.
    let (started, out) = run_binary(&["--listen", "0.0.0.0:0", "--open"], &[], data);
    assert!(!started && out.contains("force_open"), "{out}");
    let (started, out) = run_binary(
        &["--listen", "0.0.0.0:0", "--open", "--force-open-registration"],
        &[],
        data,
    );
    assert!(started && out.contains("FORCED"), "{out}");

    // A secret from a file or the environment; a placeholder is refused.
    let secret = data.join("secret");
    std::fs::write(&secret, "change-me\n").unwrap();
    let file = [
        "--listen",
        "0.0.0.0:0",
        "--jwt-hs256-secret-file",
        secret.to_str().unwrap(),
    ];
    let (started, out) = run_binary(&file, &[], data);
    assert!(!started && out.contains("placeholder"), "{out}");
    std::fs::write(&secret, "3b9d0f6c1e8a2d7f5c4b9e0a1d3f6c8b\n").unwrap();
    let (started, out) = run_binary(&file, &[], data);
    assert!(started && out.contains("token or device link required"), "{out}");
    let env = [("HUSH_JWT_HS256_SECRET", "3b9d0f6c1e8a2d7f5c4b9e0a1d3f6c8b")];
    let (started, out) = run_binary(&["--listen", "0.0.0.0:0"], &env, data);
    assert!(started && out.contains("token or device link required"), "{out}");
    // Never from the command line.
    let (started, out) = run_binary(
        &[
            "--listen",
            "0.0.0.0:0",
            "--jwt-hs256-secret",
            "3b9d0f6c1e8a2d7f5c4b9e0a1d3f6c8b",
        ],
        &[],
        data,
    );
    assert!(!started && out.contains("--jwt-hs256-secret"), "{out}");
}

/// The relay stops on SIGINT even when whatever read its output is gone
/// (`hush-relay 2>&1 | tee log`, then Ctrl-C: the pipe closes first, and a
/// log line written to it used to panic the task that was to stop it).
#[test]
fn the_relay_stops_on_a_signal_after_its_output_closed() {
    use std::io::{BufRead as _, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hush-relay"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--dev-http",
            "off",
            "--no-webtransport",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.by_ref().map_while(Result::ok).any(|l| l.contains("websocket:")),
        "the relay did not start"
    );
    // Both pipes close: nothing reads the relay's output any more.
    drop(lines);
    drop(child.stderr.take());
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            // Exited (its last lines could not be written: any status).
            let _ = exit;
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the relay kept running after SIGINT");
        }
        // Polling the child: the event awaited is its exit.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Without a configured id, each data directory gets its own relay id, kept
/// across restarts: a device's signature names the relay it was made for,
/// so one captured at one relay does not verify at another.
#[tokio::test]
async fn relays_get_distinct_ids_by_default() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = Relay::load(config(a.path())).await.unwrap();
    let id = first.relay_id().to_owned();
    assert!(id.starts_with("relay-") && id.len() == "relay-".len() + 16, "{id}");
    // Kept in the data directory, where the next start reads it.
    assert_eq!(std::fs::read_to_string(a.path().join("relay-id")).unwrap(), id);
    let other = Relay::load(config(b.path())).await.unwrap();
    assert_ne!(other.relay_id(), id);
    let c = tempfile::tempdir().unwrap();
    std::fs::write(c.path().join("relay-id"), "relay-0123456789abcdef\n").unwrap();
    assert_eq!(
        Relay::load(config(c.path())).await.unwrap().relay_id(),
        "relay-0123456789abcdef"
    );
    let d = tempfile::tempdir().unwrap();
    let mut named = config(d.path());
    named.relay_id = "eu-1".into();
    assert_eq!(Relay::load(named).await.unwrap().relay_id(), "eu-1");
}
