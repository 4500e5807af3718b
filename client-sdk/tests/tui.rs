//! The `hush` full-screen client driven as a person would: each user's
//! client runs in its own tmux session (a private tmux server on a socket in
//! a temporary directory, fixed window size), keys are typed with
//! `send-keys`, and what the other side shows is read with `capture-pane`.
//! The relay is a real one on a loopback port.
//!
//! Needs tmux (`scripts/test.sh` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::TestRelay;

const HUSH: &str = env!("CARGO_BIN_EXE_hush");
/// How long a screen may take to show what it should.
const DEADLINE: Duration = Duration::from_secs(30);

/// A private tmux server, killed (with every client in it) on drop, also
/// when the test fails.
struct Tmux {
    socket: PathBuf,
    config: PathBuf,
}

impl Tmux {
    fn new(dir: &Path) -> Self {
        match Command::new("tmux").arg("-V").output() {
            Ok(o) if o.status.success() => {}
            _ => panic!(
                "tmux is not installed: this test drives the hush terminal client in tmux \
                 (apt-get install tmux; scripts/test.sh installs it)"
            ),
        }
        let config = dir.join("tmux.conf");
        // Keep a pane after its program exits, so the test can see how it
        // ended (and the error, if it failed to start).
        std::fs::write(&config, "set -g remain-on-exit on\nset -g status off\n").unwrap();
        Tmux {
            socket: dir.join("tmux.sock"),
            config,
        }
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-u")
            .arg("-S")
            .arg(&self.socket)
            .arg("-f")
            .arg(&self.config)
            .args(args)
            .env("LANG", "C.UTF-8")
            .env_remove("TMUX")
            .output()
            .expect("running tmux")
    }

    /// Runs `command` in a new 100×30 session `name`.
    fn start(&self, name: &str, command: &str) {
        let out = self.tmux(&["new-session", "-d", "-s", name, "-x", "100", "-y", "30", command]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Types `text` literally (no key names).
    fn type_text(&self, name: &str, text: &str) {
        assert!(self.tmux(&["send-keys", "-t", name, "-l", text]).status.success());
    }

    /// Presses a key (`Enter`, `PageUp`, ...).
    fn key(&self, name: &str, key: &str) {
        assert!(self.tmux(&["send-keys", "-t", name, key]).status.success());
    }

    /// Types a line and presses Enter.
    fn line(&self, name: &str, text: &str) {
        self.type_text(name, text);
        self.key(name, "Enter");
    }

    fn screen(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", name]).stdout).into_owned()
    }

    fn format(&self, name: &str, format: &str) -> String {
        let out = self.tmux(&["display-message", "-p", "-t", name, format]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits until `name`'s screen satisfies `ok`; fails with the screen if
    /// it does not within the deadline.
    fn wait_for(&self, name: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen(name);
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{name}'s screen never showed {what}; it shows:\n{screen}"
            );
            // Polling the screen: the event awaited is the screen changing.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_text(&self, name: &str, text: &str) -> String {
        self.wait_for(name, &format!("{text:?}"), |s| s.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

fn hush(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(HUSH).arg("--dir").arg(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "hush {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn quoted(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn two_people_chat_in_the_full_screen_client() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let relay = rt.block_on(TestRelay::start(&tmp.path().join("relay")));
    let cert = hex::encode(relay.cert);
    let url = relay.url();
    let (alice_dir, bob_dir) = (tmp.path().join("alice"), tmp.path().join("bob"));
    for (dir, name) in [(&alice_dir, "alice"), (&bob_dir, "bob")] {
        hush(dir, &["init", "--name", name, "--relay", &url, "--cert", &cert]);
    }

    let tmux = Tmux::new(tmp.path());
    // Alice opens a conversation with bob, which starts it; then bob opens
    // his with alice, which finds the one alice started.
    tmux.start("alice", &format!("{HUSH} --dir {} chat bob", quoted(&alice_dir)));
    tmux.wait_text("alice", "start of the conversation with bob");
    tmux.start("bob", &format!("{HUSH} --dir {} chat alice", quoted(&bob_dir)));
    tmux.wait_text("bob", "start of the conversation with alice");
    tmux.wait_text("bob", "alice ● online");
    tmux.wait_text("alice", "bob ● online");

    // Typing shows on the other side while alice writes, and goes away
    // when the message arrives.
    tmux.type_text("alice", "hello bob");
    tmux.wait_text("bob", "alice is typing…");
    tmux.key("alice", "Enter");
    tmux.wait_for("bob", "alice's message, no longer typing", |s| {
        s.contains("alice: hello bob") && !s.contains("is typing")
    });

    // Bob has it on screen, so it is read: alice sees the receipt.
    tmux.wait_text("alice", "alice: hello bob ✓ read");

    // An answer, an edit, a reaction, a deletion.
    tmux.line("bob", "hi alice");
    tmux.wait_text("alice", "bob: hi alice");
    tmux.line("alice", "/edit hello again bob");
    tmux.wait_text("bob", "alice: hello again bob (edited)");
    tmux.line("bob", "/react 👍");
    tmux.wait_text("alice", "alice: hello again bob (edited) [👍 bob] ✓ read");
    tmux.line("alice", "sent to be deleted");
    tmux.wait_text("bob", "alice: sent to be deleted");
    tmux.line("alice", "/delete");
    tmux.wait_for("bob", "the deletion", |s| {
        s.contains("alice: (deleted)") && !s.contains("sent to be deleted")
    });

    // A mistake gets an explanation, not a crash.
    tmux.line("bob", "/frobnicate");
    tmux.wait_text("bob", "/edit [ID] TEXT");

    // Bob leaves: his terminal is put back, and alice sees him go offline.
    tmux.line("bob", "/quit");
    let deadline = Instant::now() + DEADLINE;
    while tmux.format("bob", "#{pane_dead}") != "1" {
        assert!(
            Instant::now() < deadline,
            "bob's client did not exit:\n{}",
            tmux.screen("bob")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        tmux.format("bob", "#{alternate_on}"),
        "0",
        "the terminal was left on the alternate screen"
    );
    tmux.wait_text("alice", "bob ○");

    // What the screens showed is what the data directories hold.
    drop(tmux);
    let json = hush(&bob_dir, &["read", "alice", "--json"]);
    let texts: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        texts
            .iter()
            .any(|m| m["text"] == "hello again bob" && m["edited"] == true)
    );
    assert!(
        texts
            .iter()
            .any(|m| m["text"] == "hi alice" && m["read_by"][0] == "alice")
    );
    rt.block_on(relay.stop());
}

/// The README's one-shot commands, as a script would use them: `hush send
/// USER TEXT` starts the direct conversation, and the partner reads it.
#[test]
fn one_shot_send_to_a_user_starts_the_conversation() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let relay = rt.block_on(TestRelay::start(&tmp.path().join("relay")));
    let cert = hex::encode(relay.cert);
    let url = relay.url();
    let (alice_dir, bob_dir) = (tmp.path().join("alice"), tmp.path().join("bob"));
    for (dir, name) in [(&alice_dir, "alice"), (&bob_dir, "bob")] {
        hush(dir, &["init", "--name", name, "--relay", &url, "--cert", &cert]);
    }
    hush(&alice_dir, &["send", "bob", "hello from a script"]);
    let read = hush(&bob_dir, &["read", "--json"]);
    assert!(
        read.lines()
            .any(|l| l.contains("hello from a script") && l.contains("alice")),
        "bob read:\n{read}"
    );
    // And back, by name: the same conversation, not a second one.
    hush(&bob_dir, &["send", "alice", "hello back"]);
    let read = hush(&alice_dir, &["read", "--json"]);
    assert!(read.contains("hello back"), "alice read:\n{read}");
    let groups = hush(&alice_dir, &["groups"]);
    assert_eq!(groups.lines().filter(|l| l.contains("bob")).count(), 1, "{groups}");
}
