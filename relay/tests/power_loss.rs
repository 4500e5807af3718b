//! Durability across a power cut: the store sits on a FUSE file system
//! (`powercut_fs.py`, built on Debian's python3-fusepy) that keeps everything
//! not yet synced in memory and drops it on command. Unlike a SIGKILL, which
//! leaves the page cache alone, this loses every write the store did not
//! fsync (or whose directory entry it did not fsync), so a missing sync fails
//! these tests.
//!
//! Needs /dev/fuse, root (or fusermount) and `/usr/bin/python3` with fusepy;
//! `scripts/test.sh` installs the packages. Without them the tests fail, they
//! do not skip.
#![allow(clippy::unwrap_used)]

mod common;
mod durability;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use durability::*;
use hush_protocol::frame::RelayFrame;
use hush_sdk::wire::Identity;
use tokio::sync::watch;

/// What the file system reported on its standard output.
#[derive(Clone, Debug, Default)]
struct FsEvents {
    ready: bool,
    cut: bool,
    exited: bool,
    /// `fsync NAME OFFSET` lines: NAME (from the root of the mount, `/`) and
    /// the lowest byte written since its last sync.
    fsyncs: Vec<(String, u64)>,
}

/// The power-cut file system, mounted at `mountpoint` over `backing`.
struct PowerCutFs {
    child: Child,
    stdin: Option<ChildStdin>,
    events: watch::Receiver<FsEvents>,
    mountpoint: PathBuf,
    stderr: PathBuf,
}

impl PowerCutFs {
    /// Mounts it and waits until it answers.
    async fn mount(backing: &Path, mountpoint: &Path, stderr: &Path) -> PowerCutFs {
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: the power-loss tests need FUSE (they do not skip)"
        );
        std::fs::create_dir_all(backing).unwrap();
        std::fs::create_dir_all(mountpoint).unwrap();
        let mut child = Command::new("/usr/bin/python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/powercut_fs.py"))
            .arg(backing)
            .arg(mountpoint)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr).unwrap())
            .spawn()
            .expect("cannot run /usr/bin/python3 (scripts/test.sh installs what these tests need)");
        let (tx, events) = watch::channel(FsEvents::default());
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                tx.send_modify(|e| match line.split_once(' ') {
                    Some(("fsync", rest)) => {
                        let (name, at) = rest.rsplit_once(' ').unwrap();
                        e.fsyncs.push((name.to_owned(), at.parse().unwrap()));
                    }
                    _ if line == "ready" => e.ready = true,
                    _ if line == "cut" => e.cut = true,
                    _ => {}
                });
            }
            tx.send_modify(|e| e.exited = true);
        });
        let mut fs = PowerCutFs {
            child,
            stdin: None,
            events,
            mountpoint: mountpoint.to_owned(),
            stderr: stderr.to_owned(),
        };
        fs.stdin = fs.child.stdin.take();
        fs.wait_for("mounted", WAIT, |e| e.ready).await;
        fs
    }

    async fn wait_for(&mut self, what: &str, within: Duration, f: impl Fn(&FsEvents) -> bool) {
        let got = tokio::time::timeout(within, self.events.wait_for(|e| f(e) || e.exited)).await;
        if !got.is_ok_and(|e| f(&e.unwrap())) {
            panic!(
                "the power-cut file system never {what}; its errors:\n{}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
        }
    }

    fn command(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Cuts the power: from now on nothing reaches the disk, and what was not
    /// synced is gone.
    async fn cut(&mut self) {
        self.command("cut");
        self.wait_for("cut the power", WAIT, |e| e.cut).await;
    }

    /// Unmounts (every process using it must be gone) and waits for the exit.
    fn unmount(mut self) {
        self.command("unmount");
        self.stdin = None;
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the power-cut file system failed: {status}");
        assert!(!is_mounted(&self.mountpoint), "still mounted");
    }
}

impl Drop for PowerCutFs {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if is_mounted(&self.mountpoint) {
            let _ = Command::new("umount").arg("-l").arg(&self.mountpoint).status();
        }
    }
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let path = path.to_str().unwrap();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(path))
}

/// The store's directory (`data/store`, where the relay keeps the database and
/// its log) on the power-cut file system, over `disk`.
async fn mount_store(dir: &Path) -> PowerCutFs {
    PowerCutFs::mount(&dir.join("disk"), &dir.join("data/store"), &dir.join("fs.err")).await
}

/// After the power cut: the store's directory is what reached the disk.
fn boot_from_disk(dir: &Path) {
    std::fs::remove_dir(dir.join("data/store")).unwrap();
    std::fs::rename(dir.join("disk"), dir.join("data/store")).unwrap();
}

/// Every write acknowledged before the power cut is there after it: the sends
/// (exactly once, in order, at the seq they were acknowledged with) and the
/// cursors acknowledged well before the cut (they are written within 50 ms,
/// in batches). The sends not acknowledged are then resent and stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_mid_stream_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut fs = mount_store(dir.path()).await;
    let mut relay = spawn_relay(dir.path());
    let alice = Identity::generate("alice");
    let bob = Identity::generate("bob");
    let ca = connect(&relay, &alice).await;
    let mut cb = connect(&relay, &bob).await;
    let g = group_with(&ca, "powercut", &[&cb]).await;
    let epoch = 1;

    // Alice streams sends; bob acknowledges each entry as it arrives, and
    // tells when he last did.
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let senders = stream(ca, &g, epoch, count_tx);
    let (acked_tx, mut acked_rx) = watch::channel(None::<Instant>);
    let reader = tokio::spawn({
        let g = g.clone();
        async move {
            let mut acks: Vec<(u64, Instant)> = Vec::new();
            while let Ok(Some(frame)) = cb.next_event_timeout(WAIT).await {
                if let RelayFrame::Deliver(e) = frame
                    && e.group == g
                {
                    if cb.ack(&g, e.seq).await.is_err() {
                        break;
                    }
                    let now = Instant::now();
                    acks.push((e.seq, now));
                    acked_tx.send_replace(Some(now));
                }
            }
            acks
        }
    });

    // Wait for the store to checkpoint (a durable database commit, every 5 s)
    // during the stream. A durable commit rewrites the database's header, at
    // its start (the commits between checkpoints do not sync it, and the
    // syncs when the file grows start further on); after it, the log's next
    // record is written at its start again. Either is taken, so that a store
    // that leaves out one of the two syncs fails the checks below, not this wait.
    let from_start = |e: &FsEvents, name: &str| e.fsyncs.iter().filter(|(n, at)| n == name && *at == 0).count();
    let (commits, records) = {
        let e = fs.events.borrow();
        (from_start(&e, "/hush.redb"), from_start(&e, "/hush.wal"))
    };
    fs.wait_for("saw a checkpoint", WAIT * 3, |e| {
        from_start(e, "/hush.redb") > commits || from_start(e, "/hush.wal") > records
    })
    .await;
    let checkpoint = Instant::now();
    let sent_by_then = *count_rx.borrow();
    // Then cut once bob has gone on acknowledging for longer than a cursor
    // may take to be written (50 ms plus one batch write; one second leaves
    // room for a loaded machine), and many more sends were acknowledged: what
    // must survive is then in the log records after the checkpoint, not in
    // the database.
    let slack = Duration::from_secs(1);
    let late = checkpoint + slack + Duration::from_millis(300);
    tokio::time::timeout(WAIT, acked_rx.wait_for(|at| at.is_some_and(|at| at >= late)))
        .await
        .expect("bob stopped receiving")
        .unwrap();
    tokio::time::timeout(WAIT, count_rx.wait_for(|c| *c >= sent_by_then + 300))
        .await
        .unwrap()
        .unwrap();
    // The power goes between the command and its answer: no later than this.
    let cut = Instant::now();
    fs.cut().await;
    relay.kill();
    fs.unmount();
    let sent = collect(senders).await;
    let acks = reader.await.unwrap();

    boot_from_disk(dir.path());
    let relay = spawn_relay(dir.path());
    let cb = connect(&relay, &bob).await;
    let mut ca = connect(&relay, &alice).await;
    drain_events(&mut ca);
    let (must, must_at) = acks
        .iter()
        .filter(|(_, at)| cut.duration_since(*at) > slack)
        .max()
        .copied()
        .unwrap();
    assert!(must_at > checkpoint, "the cursor to check is older than the checkpoint");
    let highest = acks.iter().map(|(s, _)| *s).max().unwrap();
    let status = cb
        .ready()
        .groups
        .iter()
        .find(|s| s.group == g)
        .expect("bob is in no group after the power cut: the store lost the group");
    assert!(
        (must..=highest).contains(&status.resume_after),
        "bob's cursor is {} after the power cut; he acknowledged {must} {slack:?} before it and {highest} in all",
        status.resume_after
    );
    let r = check_and_retry(&ca, &g, epoch, &sent).await;
    assert!(r.acked >= 300);
    assert!(r.resent > 0);
    eprintln!(
        "{r:?}; bob's cursor {} (required {must}, highest acknowledged {highest})",
        status.resume_after
    );
}

/// The file system itself: what was synced survives a cut, what was not is
/// lost, including a file whose directory entry was never synced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_system_keeps_only_what_was_synced() {
    use std::fs::{File, OpenOptions};
    use std::os::unix::fs::FileExt;

    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    std::fs::write(disk.join("old"), b"old").unwrap();
    let mnt = dir.path().join("mnt");
    let mut fs = PowerCutFs::mount(&disk, &mnt, &dir.path().join("fs.err")).await;
    let open = |name: &str| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(mnt.join(name))
            .unwrap()
    };
    let sync_dir = || File::open(&mnt).unwrap().sync_all().unwrap();
    // A new file, synced, renamed over `old` (as a log replaces its file).
    let replace_old = || {
        let file = open("renamed.new");
        file.write_all_at(b"new", 0).unwrap();
        file.sync_data().unwrap();
        std::fs::rename(mnt.join("renamed.new"), mnt.join("old")).unwrap();
        file
    };

    let synced = open("synced");
    synced.write_all_at(&[1; 10_000], 0).unwrap();
    synced.sync_data().unwrap();
    sync_dir();
    synced.write_all_at(b"lost", 8_000).unwrap(); // not synced
    synced.set_len(20_000).unwrap(); // nor this
    let unnamed = open("unnamed");
    unnamed.write_all_at(b"data", 0).unwrap();
    unnamed.sync_all().unwrap(); // its data, but its name never
    let renamed = replace_old();
    std::fs::write(mnt.join("later"), b"later").unwrap(); // neither synced
    assert_eq!(std::fs::read(mnt.join("old")).unwrap(), b"new");
    assert_eq!(std::fs::read(mnt.join("synced")).unwrap().len(), 20_000);
    fs.cut().await;
    assert!(
        std::fs::read(mnt.join("old")).is_err(),
        "a cut file system still answers"
    );
    drop((synced, unnamed, renamed));
    fs.unmount();

    assert_eq!(names(&disk), ["old", "synced"]);
    assert_eq!(std::fs::read(disk.join("synced")).unwrap(), vec![1; 10_000]);
    assert_eq!(
        std::fs::read(disk.join("old")).unwrap(),
        b"old",
        "the rename was never synced"
    );

    // A synced directory makes the rename, the new name and the unlink durable.
    let mut fs = PowerCutFs::mount(&disk, &mnt, &dir.path().join("fs.err")).await;
    let renamed = replace_old();
    std::fs::remove_file(mnt.join("synced")).unwrap();
    std::fs::write(mnt.join("empty"), b"never synced").unwrap();
    sync_dir();
    fs.cut().await;
    drop(renamed);
    fs.unmount();
    assert_eq!(names(&disk), ["empty", "old"]);
    assert_eq!(std::fs::read(disk.join("old")).unwrap(), b"new");
    assert_eq!(
        std::fs::read(disk.join("empty")).unwrap(),
        b"",
        "its data was never synced"
    );
}
