//! What every receiver records, the payload every sender sends, and the
//! per-step summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;

/// Size of every payload, whatever the protocol wraps around it.
pub const PAYLOAD_LEN: usize = 100;

/// The process's clock origin: all timestamps are nanoseconds since it, so
/// sender and receiver (both in this process) share one monotonic clock.
pub fn now_ns(origin: Instant) -> u64 {
    origin.elapsed().as_nanos() as u64
}

/// What a payload carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub sent_ns: u64,
    pub group: u32,
    pub step: u32,
    pub seq: u64,
}

impl Stamp {
    /// 100 bytes: the stamp little-endian, then padding.
    pub fn binary(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(PAYLOAD_LEN);
        b.extend_from_slice(&self.sent_ns.to_le_bytes());
        b.extend_from_slice(&self.group.to_le_bytes());
        b.extend_from_slice(&self.step.to_le_bytes());
        b.extend_from_slice(&self.seq.to_le_bytes());
        b.resize(PAYLOAD_LEN, 0x5a);
        b
    }

    /// Parses [`Stamp::binary`]; `None` for anything else.
    pub fn from_binary(b: &[u8]) -> Option<Stamp> {
        if b.len() != PAYLOAD_LEN {
            return None;
        }
        Some(Stamp {
            sent_ns: u64::from_le_bytes(b[0..8].try_into().ok()?),
            group: u32::from_le_bytes(b[8..12].try_into().ok()?),
            step: u32::from_le_bytes(b[12..16].try_into().ok()?),
            seq: u64::from_le_bytes(b[16..24].try_into().ok()?),
        })
    }

    /// 100 ASCII characters (Socket.IO carries it as a JSON string, so no
    /// binary attachment packets are involved): the stamp in hex, then padding.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{:016x}{:08x}{:08x}{:016x}",
            self.sent_ns, self.group, self.step, self.seq
        );
        while s.len() < PAYLOAD_LEN {
            s.push('x');
        }
        s
    }

    /// Parses [`Stamp::text`].
    pub fn from_text(s: &str) -> Option<Stamp> {
        if s.len() != PAYLOAD_LEN || !s.is_ascii() {
            return None;
        }
        Some(Stamp {
            sent_ns: u64::from_str_radix(&s[0..16], 16).ok()?,
            group: u32::from_str_radix(&s[16..24], 16).ok()?,
            step: u32::from_str_radix(&s[24..32], 16).ok()?,
            seq: u64::from_str_radix(&s[32..48], 16).ok()?,
        })
    }
}

/// Counters shared by all receivers of one run (read by the coordinator to
/// know when a step has drained).
#[derive(Default)]
pub struct Global {
    /// Distinct deliveries of the current step.
    pub unique: AtomicU64,
    /// Time of the latest delivery of the current step (ns since origin).
    pub last_ns: AtomicU64,
}

/// One receiver's record of the current step.
#[derive(Default)]
pub struct Recv {
    pub step: u32,
    pub group: u32,
    /// Send-to-receive latency of every distinct delivery, microseconds.
    pub lat_us: Vec<u32>,
    /// Which sequence numbers arrived (bit per seq).
    seen: Vec<u64>,
    /// One past the highest sequence number seen.
    next: u64,
    pub unique: u64,
    pub duplicates: u64,
    /// Arrivals that skipped ahead of the next expected number.
    pub gaps: u64,
    /// Arrivals below the highest number already seen (late, not duplicate).
    pub reordered: u64,
    /// Deliveries stamped with an earlier step (arrived after its drain).
    pub stale: u64,
    /// Deliveries of another group's message (a routing error).
    pub foreign: u64,
}

impl Recv {
    /// A receiver for members of `group`.
    pub fn new(group: u32) -> Recv {
        Recv {
            group,
            ..Recv::default()
        }
    }

    fn reset(&mut self, step: u32) {
        let group = self.group;
        *self = Recv {
            step,
            group,
            ..Recv::default()
        };
    }

    /// Records one arrival at `now_ns`.
    pub fn record(&mut self, s: Stamp, now_ns: u64, global: &Global) {
        if s.group != self.group {
            self.foreign += 1;
            return;
        }
        if s.step != self.step {
            if s.step < self.step {
                self.stale += 1;
                return;
            }
            self.reset(s.step);
        }
        let (word, bit) = ((s.seq / 64) as usize, 1u64 << (s.seq % 64));
        if word >= self.seen.len() {
            // Sequence numbers are dense from 0, so this grows with the step.
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        if s.seq > self.next {
            self.gaps += 1;
        } else if s.seq < self.next {
            self.reordered += 1;
        }
        self.next = self.next.max(s.seq + 1);
        let us = now_ns.saturating_sub(s.sent_ns) / 1000;
        self.lat_us.push(us.min(u32::MAX as u64) as u32);
        global.unique.fetch_add(1, Ordering::Relaxed);
        global.last_ns.fetch_max(now_ns, Ordering::Relaxed);
    }
}

/// A receiver's record, shared with the coordinator (locked once per
/// delivery by its own task, so uncontended but for the step's end).
pub type Shared = Arc<Mutex<Recv>>;

/// One step of one server, as reported.
#[derive(Clone, Debug)]
pub struct Row {
    pub server: String,
    /// `open 200/s` or `closed W=16`.
    pub mode: String,
    /// Offered messages/s (open loop), or 0 for the closed loop.
    pub offered: f64,
    pub sent: u64,
    pub send_errors: u64,
    pub expected: u64,
    pub delivered: u64,
    pub deliveries_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub cpu_pct: f64,
    pub rss_mib: f64,
    pub loss: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub reordered: u64,
    pub stale: u64,
    pub foreign: u64,
}

impl Row {
    pub fn json(&self) -> serde_json::Value {
        json!({
            "server": self.server, "mode": self.mode, "offered_msgs_per_s": self.offered,
            "sent": self.sent, "send_errors": self.send_errors, "expected": self.expected,
            "delivered": self.delivered, "deliveries_per_s": self.deliveries_per_s,
            "p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "p99_ms": self.p99_ms,
            "p999_ms": self.p999_ms, "max_ms": self.max_ms, "cpu_pct_of_one_core": self.cpu_pct,
            "rss_mib": self.rss_mib, "loss": self.loss, "duplicates": self.duplicates,
            "gaps": self.gaps, "reordered": self.reordered, "stale": self.stale,
            "foreign": self.foreign,
        })
    }

    /// Anything but a clean exactly-once, in-order delivery of all expected.
    pub fn faults(&self) -> u64 {
        self.loss + self.duplicates + self.gaps + self.reordered + self.stale + self.foreign + self.send_errors
    }
}

/// Percentile of sorted microseconds, in milliseconds.
pub fn pct_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let s = Stamp {
            sent_ns: 123_456_789_012,
            group: 7,
            step: 3,
            seq: 99_999,
        };
        assert_eq!(s.binary().len(), PAYLOAD_LEN);
        assert_eq!(s.text().len(), PAYLOAD_LEN);
        assert_eq!(Stamp::from_binary(&s.binary()), Some(s));
        assert_eq!(Stamp::from_text(&s.text()), Some(s));
    }

    #[test]
    fn receiver_tells_gaps_duplicates_and_reordering() {
        let g = Global::default();
        let mut r = Recv::new(1);
        let st = |seq| Stamp {
            sent_ns: 0,
            group: 1,
            step: 0,
            seq,
        };
        for seq in [0, 1, 3, 2, 3] {
            r.record(st(seq), 1000, &g);
        }
        assert_eq!((r.unique, r.gaps, r.reordered, r.duplicates), (4, 1, 1, 1));
        r.record(Stamp { group: 2, ..st(4) }, 1000, &g);
        assert_eq!(r.foreign, 1);
        r.record(Stamp { step: 1, ..st(0) }, 1000, &g);
        assert_eq!((r.step, r.unique), (1, 1));
        r.record(st(5), 1000, &g);
        assert_eq!(r.stale, 1);
        assert_eq!(g.unique.load(Ordering::Relaxed), 5);
    }
}
