//! Passive ports: per-shard lock-free pools. (stub: filled in by a helper)
use std::ops::RangeInclusive;
use std::sync::Arc;

/// The passive port range, split into one slice per shard.
#[derive(Debug)]
pub struct PortPool {
    range: RangeInclusive<u16>,
}

impl PortPool {
    /// Splits `range` into `shards` disjoint slices.
    pub fn new(range: RangeInclusive<u16>, shards: usize) -> Arc<Self> {
        let _ = shards;
        Arc::new(PortPool { range })
    }

    /// Takes a free port, from `shard`'s slice first, then from the others'.
    pub fn acquire(self: &Arc<Self>, shard: usize) -> Option<PortLease> {
        let _ = shard;
        Some(PortLease {
            pool: Arc::clone(self),
            port: *self.range.start(),
        })
    }
}

/// A port taken from the pool; it goes back on drop.
#[derive(Debug)]
pub struct PortLease {
    pool: Arc<PortPool>,
    port: u16,
}

impl PortLease {
    /// The leased port.
    pub fn port(&self) -> u16 {
        let _ = &self.pool;
        self.port
    }
}
