//! Session limits shared by all shards: sessions in total and per client address, and the
//! timeouts a reload can change.
//!
//! Per-address counts live in a fixed table of atomic counters indexed by a keyed hash of the
//! address, so admission takes no lock and the table never grows, whatever a flood of
//! addresses does. Two addresses that share a slot share its count, which can only make the
//! limit stricter for them; the hash key is random per process, so a peer cannot aim its
//! addresses at someone else's slot.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::types::Timeouts;
use std::sync::Arc;

const SLOTS: usize = 4096;

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Total,
    PerAddress,
}

/// The counters; one per server, shared by the shards.
#[derive(Debug)]
pub(crate) struct Limits {
    /// Atomics, so a reload can change them while sessions are admitted (see [`Limits::set`]).
    max_total: AtomicUsize,
    max_per_ip: AtomicU32,
    total: AtomicUsize,
    per_ip: Box<[AtomicU32]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Limits {
    /// `0` means no limit.
    pub(crate) fn new(max_total: usize, max_per_ip: u32) -> Arc<Self> {
        Arc::new(Limits {
            max_total: AtomicUsize::new(unlimited_if_zero(max_total)),
            max_per_ip: AtomicU32::new(unlimited_if_zero(max_per_ip)),
            total: AtomicUsize::new(0),
            per_ip: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        })
    }

    /// New limits (`0`: none) for the sessions admitted from now on; sessions over a lowered
    /// limit stay until they end.
    pub(crate) fn set(&self, max_total: usize, max_per_ip: u32) {
        self.max_total.store(unlimited_if_zero(max_total), Ordering::Relaxed);
        self.max_per_ip.store(unlimited_if_zero(max_per_ip), Ordering::Relaxed);
    }

    fn slot(&self, ip: IpAddr) -> usize {
        (self.hasher.hash_one(ip) as usize) % SLOTS
    }

    /// Admits a session from `ip`, or says why not. The permit releases both counts on drop.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total.load(Ordering::Relaxed) {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Total);
        }
        let slot = self.slot(ip);
        let counter = self.per_ip.get(slot);
        let max_per_ip = self.max_per_ip.load(Ordering::Relaxed);
        if counter.is_some_and(|c| c.fetch_add(1, Ordering::AcqRel) >= max_per_ip) {
            if let Some(c) = counter {
                c.fetch_sub(1, Ordering::AcqRel);
            }
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::PerAddress);
        }
        Ok(Permit { limits: Arc::clone(self), slot })
    }

    /// Sessions open now.
    #[cfg(test)]
    pub(crate) fn sessions(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

/// The timeouts in force, shared by the shards: a session reads them when it starts, and
/// again when `generation` has moved (one relaxed load per wake-up), so a reload costs
/// sessions nothing until it happens and takes no lock.
#[derive(Debug)]
pub(crate) struct LiveTimeouts {
    /// Bumped after each change.
    generation: AtomicU64,
    /// Login, idle, data, stall, in milliseconds.
    ms: [AtomicU64; 4],
}

impl LiveTimeouts {
    pub(crate) fn new(t: Timeouts) -> Arc<Self> {
        let live = LiveTimeouts { generation: AtomicU64::new(0), ms: Default::default() };
        live.store(t);
        Arc::new(live)
    }

    fn store(&self, t: Timeouts) {
        for (slot, d) in self.ms.iter().zip([t.login, t.idle, t.data, t.stall]) {
            slot.store(u64::try_from(d.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }

    /// New timeouts for sessions from now on (and open sessions' next deadlines).
    pub(crate) fn set(&self, t: Timeouts) {
        self.store(t);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Which change is in force: compare with the one a session last read.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The timeouts now, and their generation. A read during a change may see some new
    /// values with the generation before it; the session then reads again at its next
    /// wake-up, since the generation has moved.
    pub(crate) fn get(&self) -> (u64, Timeouts) {
        let generation = self.generation();
        let [login, idle, data, stall] =
            self.ms.each_ref().map(|m| Duration::from_millis(m.load(Ordering::Relaxed)));
        (generation, Timeouts { login, idle, data, stall })
    }
}

/// `0` means no limit.
fn unlimited_if_zero<T: PartialEq + From<u8> + Bounded>(n: T) -> T {
    if n == T::from(0) {
        T::MAX
    } else {
        n
    }
}

/// The largest value of a counter type.
trait Bounded {
    const MAX: Self;
}

impl Bounded for usize {
    const MAX: Self = usize::MAX;
}

impl Bounded for u32 {
    const MAX: Self = u32::MAX;
}

/// An admitted session's place in the counts.
#[derive(Debug)]
pub(crate) struct Permit {
    limits: Arc<Limits>,
    slot: usize,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(c) = self.limits.per_ip.get(self.slot) {
            c.fetch_sub(1, Ordering::AcqRel);
        }
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_and_per_address() {
        let limits = Limits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = limits.admit(a).unwrap();
        let _p2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Refusal::PerAddress);
        let _p3 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).unwrap_err(), Refusal::Total);
        assert_eq!(limits.sessions(), 3);
        drop(p1);
        let _p4 = limits.admit(a).unwrap();
        assert_eq!(limits.sessions(), 3);
    }

    #[test]
    fn set_changes_later_admissions() {
        let limits = Limits::new(0, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let p1 = limits.admit(a).unwrap();
        let _p2 = limits.admit(a).unwrap();
        limits.set(0, 1);
        assert_eq!(limits.admit(a).unwrap_err(), Refusal::PerAddress);
        limits.set(2, 0);
        assert_eq!(limits.admit(a).unwrap_err(), Refusal::Total);
        drop(p1);
        let _p3 = limits.admit(a).unwrap();
    }

    #[test]
    fn zero_means_unlimited() {
        let limits = Limits::new(0, 0);
        let ip: IpAddr = "::1".parse().unwrap();
        let permits: Vec<_> = (0..1000).map(|_| limits.admit(ip).unwrap()).collect();
        assert_eq!(limits.sessions(), 1000);
        drop(permits);
        assert_eq!(limits.sessions(), 0);
    }
}
