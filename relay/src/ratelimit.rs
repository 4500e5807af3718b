//! Per-device token buckets.
//!
//! Shared by all connections of a device, so opening more connections does not
//! buy more throughput. Buckets of devices idle long enough to be full again are
//! forgotten by [`RateLimiter::sweep`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use hush_protocol::DeviceId;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets keyed by device.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<DeviceId, Bucket>>,
}

impl RateLimiter {
    /// `rate` tokens per second, at most `burst` saved up.
    pub fn new(rate: f64, burst: f64) -> Self {
        RateLimiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `device` at `now`; on refusal returns how many
    /// milliseconds until a token is available.
    pub fn check(&self, device: DeviceId, now: Instant) -> Result<(), u32> {
        self.take(device, 1.0, now)
    }

    /// Takes `cost` tokens (at most the bucket's size, so any request can
    /// pass once the bucket is full) for `device` at `now`, or none; on
    /// refusal returns how many milliseconds until they are available.
    pub fn take(&self, device: DeviceId, cost: f64, now: Instant) -> Result<(), u32> {
        let cost = cost.clamp(0.0, self.burst);
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.entry(device).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.updated = now;
        if b.tokens >= cost {
            b.tokens -= cost;
            Ok(())
        } else {
            let wait = (cost - b.tokens) / self.rate;
            Err((wait * 1000.0).ceil().min(u32::MAX as f64) as u32)
        }
    }

    /// Forgets buckets that would be full by `now`.
    pub fn sweep(&self, now: Instant) {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let full_after = self.burst / self.rate;
        map.retain(|_, b| now.saturating_duration_since(b.updated).as_secs_f64() < full_after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let rl = RateLimiter::new(10.0, 3.0);
        let d = DeviceId([1; 16]);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.check(d, t0).is_ok());
        }
        let wait = rl.check(d, t0).unwrap_err();
        assert!((90..=100).contains(&wait), "{wait}");
        assert!(rl.check(d, t0 + Duration::from_millis(100)).is_ok());
        // Another device has its own bucket.
        assert!(rl.check(DeviceId([2; 16]), t0).is_ok());
        rl.sweep(t0 + Duration::from_secs(10));
        assert!(rl.buckets.lock().unwrap().is_empty());
    }

    #[test]
    fn a_cost_is_taken_whole_or_not_at_all() {
        let rl = RateLimiter::new(1.0, 5.0);
        let d = DeviceId([1; 16]);
        let t0 = Instant::now();
        assert!(rl.take(d, 3.0, t0).is_ok());
        // Two left: a cost of three waits a second, and takes nothing.
        assert_eq!(rl.take(d, 3.0, t0), Err(1000));
        assert!(rl.take(d, 2.0, t0).is_ok());
        // A cost above the bucket's size counts as the size.
        assert!(rl.take(d, 50.0, t0 + Duration::from_secs(5)).is_ok());
    }
}
