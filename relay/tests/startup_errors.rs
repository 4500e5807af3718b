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
