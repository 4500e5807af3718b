//! The write-ahead log: one framed, checksummed record per batch, made durable
//! with one `fdatasync` before the batch is answered.
//!
//! ```text
//!  offset 0                                                     allocated end
//!  ┌──────────────┬──────────────┬─────────┬───────────────────────────────┐
//!  │ record lsn=n │ record n+1   │ n+2     │ zeros or older records ...    │
//!  └──────────────┴──────────────┴─────────┴───────────────────────────────┘
//!  record: len u32 LE ‖ lsn u64 LE ‖ xxh3-64(len ‖ lsn ‖ body) u64 LE ‖ body
//!  body:   (op len u32 LE ‖ op)*     op = one encoded `WriteOp`
//! ```
//!
//! The file is preallocated by writing zeros (in [`GROW_BYTES`] steps), so that
//! appending a record changes no file metadata and `fdatasync` writes only the
//! record's pages. After a checkpoint (a durable commit of the database that
//! covers every record) the next record is written at offset 0 again; the
//! records of earlier generations are left in place and told apart by their
//! log sequence numbers, which only grow. At open, once the old log is
//! replayed and checkpointed, a new file replaces it ([`Wal::create`]).
//!
//! Reading starts at offset 0 and follows records while each is whole, its
//! checksum holds and its lsn is one more than the previous one. The first
//! record that fails any of these is the end: a torn write, the zeros of the
//! preallocation, or a record of an older generation.
//!
//! A record damaged after it was made durable also ends the chain, and the
//! records after it would be dropped silently. So recovery looks past the
//! end for any whole record newer than both the chain and the database
//! ([`newer_record_after`]): a torn write is always the last record written,
//! and older generations hold only records a checkpoint covered, so finding
//! one means the log is damaged in the middle, and the store refuses to open
//! rather than lose acknowledged writes.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use xxhash_rust::xxh3::xxh3_64;

/// Bytes before a record's body.
pub(super) const HEADER_LEN: usize = 4 + 8 + 8;
/// The file grows by this much when a record does not fit.
pub(super) const GROW_BYTES: u64 = 1 << 20;
/// Size of the writes that preallocate the file.
const PAGE: usize = 4096;

/// An open log file.
pub(super) struct Wal {
    file: File,
    /// Where the next record goes.
    pos: u64,
    /// Bytes of the file that are allocated (written at least once).
    allocated: u64,
}

/// A whole record found when reading the log.
pub(super) struct Record<'a> {
    pub lsn: u64,
    pub body: &'a [u8],
}

impl Wal {
    /// The whole contents of the log at `path` (empty if there is none), for
    /// [`records`].
    pub(super) fn read(path: &Path) -> std::io::Result<Vec<u8>> {
        match File::open(path) {
            Ok(mut file) => {
                let mut contents = Vec::new();
                file.read_to_end(&mut contents)?;
                Ok(contents)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Replaces the log at `path` with a new, zero-filled one. Call only once
    /// every record of the old one is covered by a durable commit of the
    /// database.
    ///
    /// A new file rather than the old one rewritten: the old one's pages were
    /// read back into the page cache in large folios, and dirtying a few bytes
    /// of a large folio makes the kernel write all of it (a 1 MiB folio per
    /// 150-byte record, measured). The new file's pages are written 4 KiB at a
    /// time, so they are cached as 4 KiB pages and a record costs one or two.
    pub(super) fn create(path: &Path) -> std::io::Result<Wal> {
        let fresh = path.with_extension("wal.new");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&fresh)?;
        let mut wal = Wal {
            file,
            pos: 0,
            allocated: 0,
        };
        wal.grow(1)?;
        std::fs::rename(&fresh, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(wal)
    }
}

impl Wal {
    /// Bytes written since the last [`Wal::reset`].
    pub(super) fn len(&self) -> u64 {
        self.pos
    }

    /// Starts the next generation at offset 0. Call only once every record
    /// written so far is covered by a durable commit of the database.
    pub(super) fn reset(&mut self) {
        self.pos = 0;
    }

    /// Writes one record (`frame` from [`seal`]) and waits until it is on disk.
    pub(super) fn append(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let end = self.pos + frame.len() as u64;
        if end > self.allocated {
            self.grow(end)?;
        }
        self.file.write_all_at(frame, self.pos)?;
        self.file.sync_data()?;
        self.pos = end;
        Ok(())
    }

    /// Extends the file with zeros to cover `end`, and makes the new length
    /// durable now rather than with the next record. Written one page per
    /// call, so the page cache holds the file in 4 KiB pages (see [`Wal::create`]).
    fn grow(&mut self, end: u64) -> std::io::Result<()> {
        let target = end.div_ceil(GROW_BYTES) * GROW_BYTES;
        let zeros = [0u8; PAGE];
        let mut at = self.allocated;
        while at < target {
            self.file.write_all_at(&zeros, at)?;
            at += PAGE as u64;
        }
        self.file.sync_all()?;
        self.allocated = target;
        Ok(())
    }
}

/// Fills in the header of `frame`, whose first [`HEADER_LEN`] bytes were
/// reserved and whose body follows them.
pub(super) fn seal(frame: &mut [u8], lsn: u64) {
    let body_len = u32::try_from(frame.len().saturating_sub(HEADER_LEN)).unwrap_or(u32::MAX);
    frame[..4].copy_from_slice(&body_len.to_le_bytes());
    frame[4..12].copy_from_slice(&lsn.to_le_bytes());
    let sum = checksum(&frame[..12], &frame[HEADER_LEN..]);
    frame[12..20].copy_from_slice(&sum.to_le_bytes());
}

fn checksum(len_and_lsn: &[u8], body: &[u8]) -> u64 {
    // Over the length and lsn as well: a torn header must not pass.
    xxh3_64(len_and_lsn) ^ xxh3_64(body).rotate_left(17)
}

/// The whole record at `at`, if one is there (its checksum holds).
fn record_at(contents: &[u8], at: usize) -> Option<Record<'_>> {
    let header = contents.get(at..at.checked_add(HEADER_LEN)?)?;
    let (len_bytes, rest) = header.split_at(4);
    let (lsn_bytes, sum_bytes) = rest.split_at(8);
    let body_len = u32::from_le_bytes(len_bytes.try_into().ok()?) as usize;
    let lsn = u64::from_le_bytes(lsn_bytes.try_into().ok()?);
    let sum = u64::from_le_bytes(sum_bytes.try_into().ok()?);
    let start = at + HEADER_LEN;
    let body = contents.get(start..start.checked_add(body_len)?)?;
    (body_len > 0 && checksum(&header[..12], body) == sum).then_some(Record { lsn, body })
}

/// The chain of whole records from offset 0 (see the module documentation),
/// and the offset where it ends.
pub(super) fn records(contents: &[u8]) -> (Vec<Record<'_>>, usize) {
    let mut out: Vec<Record<'_>> = Vec::new();
    let mut at = 0usize;
    while let Some(record) = record_at(contents, at) {
        if out
            .last()
            .is_some_and(|prev| prev.lsn.checked_add(1) != Some(record.lsn))
        {
            break;
        }
        at += HEADER_LEN + record.body.len();
        out.push(record);
    }
    (out, at)
}

/// The lsn of a whole record at or after offset `from` whose lsn is at least
/// `min_lsn`, if there is one (see the module documentation). Tries every
/// offset, as a damaged record's length cannot be trusted; run once, at open.
pub(super) fn newer_record_after(contents: &[u8], from: usize, min_lsn: u64) -> Option<u64> {
    (from..contents.len().saturating_sub(HEADER_LEN)).find_map(|at| {
        // The lsn check first: it rules out nearly every offset without a checksum.
        let lsn = u64::from_le_bytes(contents.get(at + 4..at + 12)?.try_into().ok()?);
        if lsn < min_lsn || lsn - min_lsn > 1 << 32 {
            return None;
        }
        record_at(contents, at).map(|r| r.lsn)
    })
}

/// Appends one op to a record's body, encoded by `encode` in place after its
/// length; on error the body is left as it was.
pub(super) fn push_op_with<E>(
    frame: &mut Vec<u8>,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let mark = frame.len();
    frame.extend_from_slice(&[0; 4]);
    if let Err(e) = encode(frame) {
        frame.truncate(mark);
        return Err(e);
    }
    let len = u32::try_from(frame.len() - mark - 4).unwrap_or(u32::MAX);
    frame[mark..mark + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Appends one op (already encoded) to a record's body.
#[cfg(test)]
pub(super) fn push_op(frame: &mut Vec<u8>, op: &[u8]) {
    let len = u32::try_from(op.len()).unwrap_or(u32::MAX);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(op);
}

/// The encoded ops of a record's body, or `None` if the body is malformed
/// (which a record whose checksum holds never is, short of a bug).
pub(super) fn ops(body: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let (op, tail) = tail.split_at_checked(len)?;
        out.push(op);
        rest = tail;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(lsn: u64, ops: &[&[u8]]) -> Vec<u8> {
        let mut f = vec![0u8; HEADER_LEN];
        for op in ops {
            push_op(&mut f, op);
        }
        seal(&mut f, lsn);
        f
    }

    #[test]
    fn a_chain_of_records_reads_back() {
        let mut file = frame(7, &[b"a", b"bc"]);
        file.extend(frame(8, &[b"d"]));
        file.extend(vec![0; 100]);
        let (found, end) = records(&file);
        assert_eq!(end, file.len() - 100);
        assert_eq!(found.iter().map(|r| r.lsn).collect::<Vec<_>>(), [7, 8]);
        assert_eq!(ops(found[0].body), Some(vec![&b"a"[..], &b"bc"[..]]));
        assert_eq!(ops(found[1].body), Some(vec![&b"d"[..]]));
    }

    #[test]
    fn a_torn_or_corrupt_record_ends_the_chain() {
        let first = frame(1, &[b"first"]);
        let second = frame(2, &[b"second record"]);
        let whole = [first.clone(), second.clone()].concat();
        // Torn: the second record cut anywhere.
        for cut in first.len()..whole.len() {
            let lsns: Vec<u64> = records(&whole[..cut]).0.iter().map(|r| r.lsn).collect();
            assert_eq!(lsns, [1], "cut at {cut}");
        }
        // Corrupt: any single byte of the second record flipped.
        for at in first.len()..whole.len() {
            let mut bad = whole.clone();
            bad[at] ^= 0x40;
            let lsns: Vec<u64> = records(&bad).0.iter().map(|r| r.lsn).collect();
            assert_eq!(lsns, [1], "flip at {at}");
        }
    }

    #[test]
    fn an_older_generation_after_the_tail_is_not_followed() {
        // Generation 1 wrote lsns 1..=3; after a checkpoint, generation 2 wrote
        // lsn 4 over the start of the file.
        let old: Vec<u8> = [frame(1, &[b"x"]), frame(2, &[b"y"]), frame(3, &[b"z"])].concat();
        let new = frame(4, &[b"x"]);
        let mut file = old.clone();
        file[..new.len()].copy_from_slice(&new);
        let lsns: Vec<u64> = records(&file).0.iter().map(|r| r.lsn).collect();
        assert_eq!(lsns, [4], "record 2 follows record 4's end but is older");
    }

    #[test]
    fn damage_in_the_middle_is_told_from_a_torn_tail() {
        let chain = [frame(5, &[b"five"]), frame(6, &[b"six"]), frame(7, &[b"seven"])].concat();
        let second = frame(5, &[b"five"]).len();
        // Record 6 damaged: the chain ends before it, and record 7 is found past the end.
        let mut bad = chain.clone();
        bad[second + HEADER_LEN] ^= 1;
        let (found, end) = records(&bad);
        assert_eq!(found.len(), 1);
        assert_eq!(newer_record_after(&bad, end, 6), Some(7));
        // A torn tail: nothing newer after the end.
        let torn = &chain[..chain.len() - 3];
        let (found, end) = records(torn);
        assert_eq!(found.len(), 2);
        assert_eq!(newer_record_after(torn, end, 7), None);
        // Records of an older generation past the end are not newer.
        let mut file = [
            frame(1, &[b"old one"]),
            frame(2, &[b"old two"]),
            frame(3, &[b"old three"]),
        ]
        .concat();
        let new = frame(4, &[b"n"]);
        file[..new.len()].copy_from_slice(&new);
        let (found, end) = records(&file);
        assert_eq!(found.len(), 1);
        assert_eq!(newer_record_after(&file, end, 5), None);
    }

    #[test]
    fn ops_encoded_in_place_read_back_and_a_failed_one_leaves_nothing() {
        let mut f = vec![0u8; HEADER_LEN];
        push_op(&mut f, b"one");
        push_op_with(&mut f, |b| {
            b.extend_from_slice(b"two!");
            Ok::<_, ()>(())
        })
        .unwrap();
        let before = f.len();
        assert!(
            push_op_with(&mut f, |b| {
                b.extend_from_slice(b"half");
                Err(())
            })
            .is_err()
        );
        assert_eq!(f.len(), before);
        seal(&mut f, 3);
        let (found, _) = records(&f);
        assert_eq!(ops(found[0].body), Some(vec![&b"one"[..], &b"two!"[..]]));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert_eq!(ops(&[5, 0, 0, 0, 1]), None);
        assert_eq!(ops(&[1, 0]), None);
        assert_eq!(ops(&[]), Some(vec![]));
    }
}
