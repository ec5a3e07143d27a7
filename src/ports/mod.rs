//! Passive-mode data ports: a lock-free pool split into per-shard slices.
//!
//! Every PASV/EPSV needs a listening port from the configured range (for
//! example `50000..=50999`). The engine runs one shard (OS thread) per core,
//! so the pool is built to keep shards off each other's cache lines:
//!
//! * **Per-shard slices.** The range is cut into `shards` disjoint,
//!   contiguous, nearly equal slices (sizes differ by at most one). A shard
//!   acquires from its own slice, so in the common case no two cores touch the
//!   same memory. Each slice's header and bitmap are cache-line aligned, so
//!   there is no false sharing either.
//! * **Atomic bitmaps.** One bit per port (set = leased) in `AtomicU64` words.
//!   Acquire finds a zero bit and sets it with `fetch_or` (retrying if another
//!   thread won the race); release clears it with `fetch_and`. Both are
//!   lock-free and allocation-free, and a 1000-port slice is 16 words.
//! * **Rotating cursor.** Each slice remembers where its last scan stopped and
//!   the next scan starts just past it, wrapping around. A just-released port
//!   is therefore the *last* candidate for reuse rather than the first: ports
//!   are spread over the slice, and a port whose previous listener or data
//!   connection is still closing (or in `TIME_WAIT`) is not handed straight
//!   back out.
//! * **Stealing.** When a shard's slice is full it tries the other slices in
//!   order (`shard + 1`, `shard + 2`, ... wrapping), so the whole range stays
//!   usable even under uneven load, or when the range has fewer ports than
//!   there are shards (some slices are then empty). [`PortPool::acquire`]
//!   returns `None` only when every port is leased; the engine then shares
//!   ports that are already listening among sessions of different clients.
//!
//! A [`PortLease`] gives its port back when dropped, on any thread. It keeps
//! its *slice* alive through a per-slice `Arc` rather than the whole pool, so
//! the reference count bumped on every acquire and release is per shard too;
//! one pool-wide count would be a cache line written by every core.
//!
//! # Bind failures
//!
//! The pool only tracks which ports *it* has handed out; another process may
//! already be bound to one. The engine handles that without a "skip" API: on a
//! bind failure it keeps the failed lease alive while it acquires the next one
//! (so the same port is not offered again), and drops the failed leases once a
//! bind succeeds or the pool runs dry:
//!
//! ```
//! # use ringftp::ports::PortPool;
//! # let pool = PortPool::new(50000..=50003, 1);
//! # let try_bind = |port: u16| if port < 50002 { None } else { Some(port) };
//! let mut failed = Vec::new();
//! let bound = loop {
//!     let Some(lease) = pool.acquire(0) else { break None };
//!     match try_bind(lease.port()) {
//!         Some(listener) => break Some((lease, listener)),
//!         None => failed.push(lease), // hold it so the next acquire skips it
//!     }
//! };
//! drop(failed); // those ports go back to the pool
//! assert_eq!(bound.map(|(lease, _)| lease.port()), Some(50002));
//! ```

mod slice;
#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::RangeInclusive;
use std::sync::Arc;

use slice::Slice;

/// Why [`PortPool::try_new`] rejected a port range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRangeError {
    /// The range holds no ports (`start > end`).
    Empty {
        /// First port of the rejected range.
        start: u16,
        /// Last port of the rejected range.
        end: u16,
    },
    /// The range includes port 0, which means "any port" to `bind` and cannot
    /// be announced in a PASV/EPSV reply.
    ZeroPort,
}

impl fmt::Display for PortRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRangeError::Empty { start, end } => {
                write!(f, "passive port range {start}-{end} is empty")
            }
            PortRangeError::ZeroPort => f.write_str("passive port range must not include port 0"),
        }
    }
}

impl std::error::Error for PortRangeError {}

/// The passive port range, split into one slice per shard.
///
/// Shared between shards as `Arc<PortPool>`; see the [module docs](self) for
/// the design.
pub struct PortPool {
    /// First port of the usable range (meaningless when `len == 0`).
    start: u16,
    /// Number of ports in the range.
    len: usize,
    /// One slice per shard, in range order. Each is its own `Arc` so a
    /// lease pins only its slice: the reference count a shard bumps on
    /// acquire/release is per slice, not one shared by all shards.
    slices: Box<[Arc<Slice>]>,
}

impl PortPool {
    /// Splits `range` into `shards` disjoint slices, rejecting a bad range.
    ///
    /// `shards == 0` is treated as 1. Fails if the range is empty
    /// (`start > end`) or includes port 0. This is the constructor the server
    /// builder uses.
    pub fn try_new(range: RangeInclusive<u16>, shards: usize) -> Result<Arc<Self>, PortRangeError> {
        let (start, end) = (*range.start(), *range.end());
        if start > end {
            return Err(PortRangeError::Empty { start, end });
        }
        if start == 0 {
            return Err(PortRangeError::ZeroPort);
        }
        Ok(Self::new(range, shards))
    }

    /// Splits `range` into `shards` disjoint slices; never fails.
    ///
    /// `shards == 0` is treated as 1. Port 0 is silently left out of the
    /// range. An empty range (`start > end`, or just `0..=0`) gives a pool with
    /// no ports, whose [`acquire`](Self::acquire) always returns `None`. Use
    /// [`try_new`](Self::try_new) to reject such ranges instead.
    pub fn new(range: RangeInclusive<u16>, shards: usize) -> Arc<Self> {
        let shards = shards.max(1);
        let start = (*range.start()).max(1);
        let end = *range.end();
        let len = if start > end { 0 } else { usize::from(end) - usize::from(start) + 1 };
        let (base, extra) = (len / shards, len % shards);
        let mut first = 0;
        let slices = (0..shards)
            .map(|i| {
                // The first `extra` slices get one port more.
                let n = base + usize::from(i < extra);
                let s = Arc::new(Slice::new(first, n));
                first += n;
                s
            })
            .collect();
        Arc::new(PortPool { start, len, slices })
    }

    /// Takes a free port, from `shard`'s slice first, then from the others'.
    ///
    /// `shard` is taken modulo [`shards`](Self::shards). Other slices are
    /// tried in order `shard + 1`, `shard + 2`, ... (wrapping). Returns `None`
    /// when every port in the range is leased. Lock-free; does not allocate.
    pub fn acquire(self: &Arc<Self>, shard: usize) -> Option<PortLease> {
        let n = self.slices.len();
        if n == 0 || self.len == 0 {
            return None;
        }
        let own = shard % n;
        for k in 0..n {
            let mut s = own + k;
            if s >= n {
                s -= n;
            }
            let Some(slice) = self.slices.get(s) else {
                continue;
            };
            if let Some(idx) = slice.acquire() {
                let port = usize::from(self.start) + slice.first() + idx;
                match u16::try_from(port) {
                    Ok(port) => return Some(PortLease { slice: Arc::clone(slice), idx, port }),
                    // Unreachable: offsets stay inside the range. Give the bit
                    // back rather than leak it.
                    Err(_) => slice.release(idx),
                }
            }
        }
        None
    }

    /// Number of ports currently leased, over all slices (a snapshot, for
    /// metrics).
    pub fn in_use(&self) -> usize {
        self.slices.iter().map(|s| s.in_use()).sum()
    }

    /// Number of ports currently leased from `shard`'s slice, whoever holds
    /// them (a snapshot). `shard` is taken modulo [`shards`](Self::shards).
    pub fn in_use_by_slice(&self, shard: usize) -> usize {
        self.slice(shard).map_or(0, |s| s.in_use())
    }

    /// The ports in `shard`'s slice, or `None` if that slice is empty.
    /// `shard` is taken modulo [`shards`](Self::shards).
    pub fn slice_range(&self, shard: usize) -> Option<RangeInclusive<u16>> {
        let slice = self.slice(shard)?;
        if slice.len() == 0 {
            return None;
        }
        let first = usize::from(self.start) + slice.first();
        let last = first + slice.len() - 1;
        Some(u16::try_from(first).ok()?..=u16::try_from(last).ok()?)
    }

    /// Total number of ports in the range (leased or not).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range holds no ports at all (only possible via
    /// [`new`](Self::new)).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of slices, i.e. the shard count the pool was built for (at
    /// least 1).
    pub fn shards(&self) -> usize {
        self.slices.len()
    }

    fn slice(&self, shard: usize) -> Option<&Slice> {
        let n = self.slices.len();
        if n == 0 {
            return None;
        }
        self.slices.get(shard % n).map(|s| &**s)
    }
}

impl fmt::Debug for PortPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PortPool");
        if self.len == 0 {
            d.field("range", &"empty");
        } else {
            let end = usize::from(self.start) + self.len - 1;
            d.field("range", &format_args!("{}..={}", self.start, end));
        }
        d.field("shards", &self.slices.len()).field("in_use", &self.in_use()).finish()
    }
}

/// A port taken from the pool; it goes back on drop.
///
/// `Send` and `Sync`: it may be dropped on any thread (a passive port that
/// sessions of several shards share goes back from whichever leaves it last). It holds its slice of the pool alive, so
/// it stays valid (and harmless to drop) even after the [`PortPool`] is gone.
pub struct PortLease {
    /// The slice the port came from.
    slice: Arc<Slice>,
    /// Index of the port within that slice.
    idx: usize,
    port: u16,
}

impl PortLease {
    /// The leased port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Debug for PortLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortLease").field("port", &self.port).finish()
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.slice.release(self.idx);
    }
}
