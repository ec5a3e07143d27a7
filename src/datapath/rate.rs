//! A byte-rate limit shared by all of one user's transfers on every shard: the generic cell
//! rate algorithm on one atomic, so a transfer reserves its bytes without a lock and sleeps
//! for as long as the reservation is ahead of the allowed rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How far ahead of the rate a transfer may run before it waits (a burst allowance).
const BURST: Duration = Duration::from_millis(100);

/// Bytes per second, as a reservation clock.
#[derive(Debug)]
pub(crate) struct RateLimit {
    bytes_per_second: u64,
    origin: Instant,
    /// When the bytes reserved so far will have been "paid for", in ns since `origin`.
    paid_until: AtomicU64,
}

impl RateLimit {
    pub(crate) fn new(bytes_per_second: u64) -> Self {
        RateLimit {
            bytes_per_second: bytes_per_second.max(1),
            origin: Instant::now(),
            paid_until: AtomicU64::new(0),
        }
    }

    /// The largest chunk worth moving at once: about 1/20 s of the rate, so a limited transfer
    /// moves in small steps rather than a burst and a long sleep.
    pub(crate) fn chunk(&self, max: usize) -> usize {
        let step = usize::try_from(self.bytes_per_second / 20).unwrap_or(usize::MAX);
        step.clamp(4096, max.max(4096)).min(max)
    }

    /// Reserves `bytes` and says how long to wait before moving them.
    pub(crate) fn reserve(&self, bytes: usize) -> Duration {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let cost =
            u64::try_from(u128::from(bytes as u64) * 1_000_000_000 / u128::from(self.bytes_per_second))
                .unwrap_or(u64::MAX);
        let mut current = self.paid_until.load(Ordering::Relaxed);
        loop {
            let next = current.max(now).saturating_add(cost);
            match self.paid_until.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    let ahead = next.saturating_sub(now);
                    return Duration::from_nanos(ahead).saturating_sub(BURST);
                }
                Err(actual) => current = actual,
            }
        }
    }
}

/// Waits as long as the limit (if any) asks after moving `bytes`.
pub(crate) async fn throttle(limit: Option<&RateLimit>, bytes: usize) {
    if let Some(limit) = limit {
        let wait = limit.reserve(bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_to_the_rate() {
        let r = RateLimit::new(1_000_000);
        // The first 100 ms worth pass free (burst), then each 100 KB costs 100 ms.
        assert!(r.reserve(100_000) <= Duration::from_millis(1));
        let wait = r.reserve(100_000);
        assert!(wait > Duration::from_millis(80) && wait <= Duration::from_millis(101), "{wait:?}");
        let wait = r.reserve(1_000_000);
        assert!(wait > Duration::from_millis(1050), "{wait:?}");
    }

    #[test]
    fn chunk_follows_the_rate() {
        assert_eq!(RateLimit::new(100).chunk(262_144), 4096);
        assert_eq!(RateLimit::new(2_000_000).chunk(262_144), 100_000);
        assert_eq!(RateLimit::new(u64::MAX).chunk(262_144), 262_144);
    }
}
