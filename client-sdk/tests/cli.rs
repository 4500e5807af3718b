//! The `hush` command line as a person would script it, against a real
//! relay: a user links a second device, then revokes it. From then on the
//! revoked device cannot connect, what it sends is refused (exit status 1,
//! nothing reaches the log), and it is in no group made afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::TestRelay;

const HUSH: &str = env!("CARGO_BIN_EXE_hush");

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(HUSH)
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// Runs `hush`, which must succeed; its standard output.
fn hush(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "hush {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_removed_device_cannot_connect_send_or_be_added_again() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let relay = rt.block_on(TestRelay::start(&tmp.path().join("relay")));
    let (cert, url) = (hex::encode(relay.cert), relay.url());
    let (phone, laptop, bob) = (
        tmp.path().join("phone"),
        tmp.path().join("laptop"),
        tmp.path().join("bob"),
    );
    hush(&phone, &["init", "--name", "alice", "--relay", &url, "--cert", &cert]);
    hush(&bob, &["init", "--name", "bob", "--relay", &url, "--cert", &cert]);

    // The phone shows a link code; the laptop uses it.
    let mut link = Command::new(HUSH)
        .arg("--dir")
        .arg(&phone)
        .args(["link", "--timeout", "60"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(link.stdout.take().unwrap()).lines();
    let code = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split("init --link ").nth(1).map(str::trim).map(str::to_owned))
        .expect("hush link printed no code");
    hush(&laptop, &["init", "--link", &code, "--relay", &url, "--cert", &cert]);
    assert!(link.wait().unwrap().success());
    let whoami = hush(&laptop, &["whoami"]);
    let laptop_id = whoami.split_whitespace().last().unwrap().to_owned();
    assert_eq!(laptop_id.len(), 32, "{whoami}");

    // A conversation with bob has both of alice's devices.
    hush(&phone, &["send", "bob", "hello from the phone"]);
    let dm = hush(&phone, &["dm", "bob"]).trim().to_owned();
    assert!(hush(&phone, &["members", &dm]).contains(&laptop_id));

    // The laptop is lost: the phone revokes it.
    let removed = hush(&phone, &["remove-device", &laptop_id]);
    assert!(removed.contains(&format!("revoked {laptop_id}")), "{removed}");
    assert!(removed.contains("removed it from 2 conversation(s)"), "{removed}");
    assert!(!hush(&phone, &["members", &dm]).contains(&laptop_id));
    assert!(!hush(&phone, &["devices"]).contains(&laptop_id));

    // It cannot connect, and its send is refused, not queued.
    let out = run(&laptop, &["send", "bob", "from the revoked laptop"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a revoked device's send succeeded");
    assert!(err.contains("revoked"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("queued"));
    let out = run(&laptop, &["devices"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"));

    // A group made afterwards does not include it.
    let group = hush(&phone, &["create", "--name", "after", "bob"]).trim().to_owned();
    let members = hush(&phone, &["members", &group]);
    assert!(members.contains("bob") && !members.contains(&laptop_id), "{members}");

    // The group's name is shared: bob sees "after" too, and a rename.
    assert!(hush(&bob, &["groups"]).contains(&format!("{group}  after")));
    hush(&bob, &["rename", &group, "renamed by bob"]);
    assert!(hush(&phone, &["groups"]).contains(&format!("{group}  renamed by bob")));

    // Bob got the phone's message and nothing from the laptop.
    let read = hush(&bob, &["read"]);
    assert!(read.contains("hello from the phone"), "{read}");
    assert!(!read.contains("from the revoked laptop"), "{read}");
    rt.block_on(relay.stop());
}

/// An identity authority in the command line: devices certified by it talk
/// and count as verified; a device without a certificate cannot be added.
#[test]
fn an_authority_certifies_devices() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let relay = rt.block_on(TestRelay::start(&tmp.path().join("relay")));
    let (cert, url) = (hex::encode(relay.cert), relay.url());
    let secret = tmp.path().join("authority.key");
    let made = hush(tmp.path(), &["authority", "new", secret.to_str().unwrap()]);
    let authority = made.trim().strip_prefix("authority key: ").unwrap().to_owned();
    for name in ["alice", "bob"] {
        let dir = tmp.path().join(name);
        let key = hush(&dir, &["device-key"]);
        let key = key
            .lines()
            .next()
            .unwrap()
            .strip_prefix("device key: ")
            .unwrap()
            .to_owned();
        let certificate = hush(
            tmp.path(),
            &["authority", "certify", secret.to_str().unwrap(), name, &key],
        );
        hush(
            &dir,
            &[
                "init",
                "--name",
                name,
                "--relay",
                &url,
                "--cert",
                &cert,
                "--authority-key",
                &authority,
                "--certificate",
                certificate.trim(),
            ],
        );
    }
    let carol = tmp.path().join("carol");
    hush(&carol, &["init", "--name", "carol", "--relay", &url, "--cert", &cert]);

    let (alice, bob) = (tmp.path().join("alice"), tmp.path().join("bob"));
    let group = hush(&alice, &["create", "--name", "certified", "bob"])
        .trim()
        .to_owned();
    let listed = hush(&bob, &["groups"]);
    let line = listed
        .lines()
        .find(|l| l.starts_with(&group))
        .expect("bob is in the group");
    assert!(!line.contains("unverified"), "{line}");
    let out = run(&alice, &["create", "--name", "with carol", "carol"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate"));
    rt.block_on(relay.stop());
}
