//! Durability across a power cut: the store sits on a FUSE file system
//! (`powercut_fs.py`, built on Debian's python3-fusepy) that keeps everything
//! not yet synced in memory and drops it on command. Unlike a SIGKILL, which
//! leaves the page cache alone, this loses every write the store did not
//! fsync (or whose directory entry it did not fsync), so a missing sync fails
//! these tests. One cut drops every unsynced write; the other comes in the
//! middle of a checkpoint's sync and lets a random part of the unsynced
//! writes reach the disk, torn, as a kernel writing pages back would.
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
    /// Once the power is cut: the unsynced pages that reached the disk, and
    /// those that did not (both 0 unless a part was to reach it).
    cut: Option<(usize, usize)>,
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
                    Some(("cut", pages)) => {
                        let (kept, lost) = pages.split_once(' ').unwrap();
                        e.cut = Some((kept.parse().unwrap(), lost.parse().unwrap()));
                    }
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
    /// synced is gone, or with a `seed`, a part of it (chosen by the seed)
    /// reached the disk first, torn. Returns how many unsynced pages reached
    /// the disk and how many did not.
    async fn cut(&mut self, seed: Option<u64>) -> (usize, usize) {
        self.command(&format!("cut {}", seed.map(|s| s.to_string()).unwrap_or_default()));
        self.cut_done(WAIT).await
    }

    /// [`PowerCutFs::cut`] with a seed, at the next sync of `name` whose
    /// lowest byte written since its last sync is `offset`; waits up to
    /// `within` for it.
    async fn cut_on_fsync(&mut self, name: &str, offset: u64, seed: u64, within: Duration) -> (usize, usize) {
        self.command(&format!("cut-on-fsync {name} {offset} {seed}"));
        self.cut_done(within).await
    }

    async fn cut_done(&mut self, within: Duration) -> (usize, usize) {
        self.wait_for("cut the power", within, |e| e.cut.is_some()).await;
        self.events.borrow().cut.unwrap()
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
    power_cut(Cut::MidStream).await;
}

/// The same with the power cut during a checkpoint's durable database
/// commit, and a random part of the writes not yet synced (the commit's
/// pages among them) on the disk, torn: the store falls back to the last
/// durable commit and the log records after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_during_a_checkpoint_loses_nothing_acknowledged() {
    let seed = rand::random::<u32>().into();
    eprintln!("seed {seed}");
    power_cut(Cut::InCheckpoint { seed }).await;
}

/// When the power goes.
enum Cut {
    /// At once; nothing unsynced reaches the disk.
    MidStream,
    /// At the next checkpoint's sync; a part of the unsynced writes, chosen
    /// by `seed`, reaches the disk.
    InCheckpoint { seed: u64 },
}

async fn power_cut(how: Cut) {
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
    // The power goes after this (between the command and its answer).
    let cut = Instant::now();
    match how {
        Cut::MidStream => {
            fs.cut(None).await;
        }
        // The sync of the next durable commit, which rewrites the header.
        Cut::InCheckpoint { seed } => {
            let (kept, lost) = fs.cut_on_fsync("/hush.redb", 0, seed, WAIT * 3).await;
            eprintln!("cut in a checkpoint: {kept} unsynced pages reached the disk, {lost} did not");
            assert!(kept > 0 && lost > 0, "the cut found too few unsynced pages");
        }
    }
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
/// lost, including a file whose directory entry was never synced; a cut with
/// a seed leaves pages torn at sector boundaries.
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
    fs.cut(None).await;
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
    fs.cut(None).await;
    drop(renamed);
    fs.unmount();
    assert_eq!(names(&disk), ["empty", "old"]);
    assert_eq!(std::fs::read(disk.join("old")).unwrap(), b"new");
    assert_eq!(
        std::fs::read(disk.join("empty")).unwrap(),
        b"",
        "its data was never synced"
    );

    // A cut that lets a part through: each page is the synced one, or the
    // new one up to a sector boundary and the synced one after it.
    let mut fs = PowerCutFs::mount(&disk, &mnt, &dir.path().join("fs.err")).await;
    let torn = open("torn");
    torn.write_all_at(&[1; 16 * 4096], 0).unwrap();
    torn.sync_data().unwrap();
    sync_dir();
    torn.write_all_at(&[2; 16 * 4096], 0).unwrap();
    let (kept, lost) = fs.cut(Some(7)).await;
    drop(torn);
    fs.unmount();
    assert_eq!((kept + lost, kept > 0, lost > 0), (16, true, true));
    let data = std::fs::read(disk.join("torn")).unwrap();
    assert_eq!(data.len(), 16 * 4096);
    let mut new_pages = 0;
    for page in data.chunks(4096) {
        let new = page.iter().take_while(|b| **b == 2).count();
        assert!(new % 512 == 0 && page[new..].iter().all(|b| *b == 1), "{page:?}");
        new_pages += usize::from(new > 0);
    }
    assert_eq!(new_pages, kept);
}
