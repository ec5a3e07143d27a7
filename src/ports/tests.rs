use super::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

/// Acquires from `shard` until the pool runs dry.
fn drain(pool: &Arc<PortPool>, shard: usize) -> Vec<PortLease> {
    std::iter::from_fn(|| pool.acquire(shard)).collect()
}

fn ports(leases: &[PortLease]) -> Vec<u16> {
    let mut p: Vec<u16> = leases.iter().map(PortLease::port).collect();
    p.sort_unstable();
    p
}

#[test]
fn every_port_once_until_exhausted() {
    for shards in [1, 2, 3, 7, 8] {
        let pool = PortPool::new(50000..=50999, shards);
        assert_eq!(pool.len(), 1000);
        assert_eq!(pool.shards(), shards);
        let leases = drain(&pool, 1);
        assert_eq!(ports(&leases), (50000..=50999).collect::<Vec<_>>());
        assert_eq!(pool.in_use(), 1000);
        for s in 0..shards {
            assert!(pool.acquire(s).is_none());
        }
        drop(leases);
        assert_eq!(pool.in_use(), 0);
    }
}

#[test]
fn drop_returns_port() {
    let pool = PortPool::new(2000..=2002, 1);
    let a = pool.acquire(0).expect("a");
    let b = pool.acquire(0).expect("b");
    let c = pool.acquire(0).expect("c");
    assert!(pool.acquire(0).is_none());
    let freed = b.port();
    drop(b);
    assert_eq!(pool.in_use(), 2);
    let again = pool.acquire(0).expect("again");
    assert_eq!(again.port(), freed);
    drop((a, c, again));
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn cursor_rotates_instead_of_reusing() {
    let pool = PortPool::new(3000..=3009, 1);
    let first = pool.acquire(0).expect("first");
    assert_eq!(first.port(), 3000);
    drop(first);
    // The just-released port is not handed straight back out.
    let seen: Vec<u16> = (0..10).map(|_| pool.acquire(0).expect("port").port()).collect();
    // (Each lease is dropped immediately, so each acquire moves one on.)
    assert_eq!(seen, (3001..=3009).chain([3000]).collect::<Vec<_>>());
}

#[test]
fn slices_disjoint_and_cover_range() {
    let pool = PortPool::new(100..=109, 3);
    assert_eq!(pool.slice_range(0), Some(100..=103));
    assert_eq!(pool.slice_range(1), Some(104..=106));
    assert_eq!(pool.slice_range(2), Some(107..=109));
    assert_eq!(pool.slice_range(3), pool.slice_range(0)); // modulo
    for shard in 0..3 {
        let range = pool.slice_range(shard).expect("non-empty");
        let n = range.clone().count();
        let mut leases = Vec::new();
        for _ in 0..n {
            let l = pool.acquire(shard).expect("own slice");
            assert!(range.contains(&l.port()), "{} not in {range:?}", l.port());
            leases.push(l);
        }
        assert_eq!(pool.in_use_by_slice(shard), n);
        drop(leases);
        assert_eq!(pool.in_use_by_slice(shard), 0);
    }
    let mut seen = HashSet::new();
    for shard in 0..3 {
        for p in pool.slice_range(shard).expect("non-empty") {
            assert!(seen.insert(p), "port {p} in two slices");
        }
    }
    assert_eq!(seen.len(), 10);
}

#[test]
fn nearly_equal_slices_large() {
    let pool = PortPool::new(1..=65535, 16);
    let sizes: Vec<usize> = (0..16).map(|s| pool.slice_range(s).expect("non-empty").count()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 65535);
    let (min, max) = (sizes.iter().min(), sizes.iter().max());
    assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{sizes:?}");
}

#[test]
fn steals_when_own_slice_full() {
    let pool = PortPool::new(100..=109, 3);
    let own: Vec<_> = (0..3).map(|_| pool.acquire(2).expect("own")).collect();
    assert_eq!(ports(&own), vec![107, 108, 109]);
    // Slice 2 is full: steal from slice 0 (2 + 1 wrapped) first.
    let stolen = pool.acquire(2).expect("stolen");
    assert_eq!(stolen.port(), 100);
    assert_eq!(pool.in_use_by_slice(0), 1);
    assert_eq!(pool.in_use_by_slice(2), 3);
    // Drain the rest through shard 2; everything is still handed out once.
    let rest = drain(&pool, 2);
    let mut all: Vec<u16> = own.iter().chain([&stolen]).chain(&rest).map(|l| l.port()).collect();
    all.sort_unstable();
    assert_eq!(all, (100..=109).collect::<Vec<_>>());
    // Freeing a port in slice 0 makes it reachable from shard 1 by stealing.
    drop(stolen);
    assert_eq!(pool.acquire(1).map(|l| l.port()), Some(100));
}

#[test]
fn range_smaller_than_shard_count() {
    let pool = PortPool::new(7000..=7002, 8);
    assert_eq!(pool.shards(), 8);
    assert_eq!(pool.len(), 3);
    assert!(pool.slice_range(5).is_none());
    assert_eq!(pool.in_use_by_slice(5), 0);
    // A shard with an empty slice still gets ports by stealing.
    let leases = drain(&pool, 5);
    assert_eq!(ports(&leases), vec![7000, 7001, 7002]);
    assert!(pool.acquire(0).is_none());
}

#[test]
fn single_port_range() {
    let pool = PortPool::try_new(21000..=21000, 4).expect("valid");
    let l = pool.acquire(3).expect("the port");
    assert_eq!(l.port(), 21000);
    assert!(pool.acquire(0).is_none());
    drop(l);
    assert_eq!(pool.acquire(0).map(|l| l.port()), Some(21000));
}

#[test]
fn range_ending_at_65535() {
    let pool = PortPool::try_new(65500..=65535, 3).expect("valid");
    assert_eq!(pool.len(), 36);
    let leases = drain(&pool, 0);
    assert_eq!(ports(&leases), (65500..=65535).collect::<Vec<_>>());
    let full = PortPool::try_new(1..=u16::MAX, 1).expect("valid");
    assert_eq!(full.len(), 65535);
    let leases = drain(&full, 0);
    assert_eq!(leases.len(), 65535);
    assert_eq!(leases.last().map(PortLease::port), Some(65535));
}

#[test]
fn zero_shards_is_one() {
    let pool = PortPool::new(10..=19, 0);
    assert_eq!(pool.shards(), 1);
    assert_eq!(drain(&pool, 42).len(), 10);
}

#[test]
fn shard_index_wraps() {
    let pool = PortPool::new(100..=109, 3);
    assert_eq!(pool.acquire(5).map(|l| l.port()), Some(107)); // 5 % 3 == 2
}

#[test]
fn new_with_bad_ranges() {
    #[allow(clippy::reversed_empty_ranges)]
    let empty = PortPool::new(60000..=50000, 2);
    assert!(empty.is_empty());
    assert!(empty.acquire(0).is_none());
    assert_eq!(empty.in_use(), 0);
    // Port 0 is left out.
    let pool = PortPool::new(0..=2, 1);
    assert_eq!(ports(&drain(&pool, 0)), vec![1, 2]);
    let zero = PortPool::new(0..=0, 1);
    assert!(zero.is_empty());
    assert!(zero.acquire(0).is_none());
}

#[test]
fn try_new_errors() {
    #[allow(clippy::reversed_empty_ranges)]
    let r = PortPool::try_new(60000..=50000, 2);
    assert_eq!(r.err(), Some(PortRangeError::Empty { start: 60000, end: 50000 }));
    assert_eq!(PortPool::try_new(0..=100, 2).err(), Some(PortRangeError::ZeroPort));
    assert_eq!(PortPool::try_new(0..=0, 2).err(), Some(PortRangeError::ZeroPort));
    assert!(PortPool::try_new(1..=1, 0).is_ok());
    let msg = PortRangeError::Empty { start: 2, end: 1 }.to_string();
    assert!(msg.contains("2-1"), "{msg}");
}

#[test]
fn lease_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PortLease>();
    check::<PortPool>();
    let pool = PortPool::new(100..=101, 2);
    let l = pool.acquire(0).expect("port");
    std::thread::spawn(move || drop(l)).join().expect("thread");
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn debug_output() {
    let pool = PortPool::new(100..=109, 3);
    let l = pool.acquire(0).expect("port");
    let s = format!("{pool:?} {l:?}");
    assert!(s.contains("100..=109") && s.contains("in_use: 1") && s.contains("port: 100"), "{s}");
}

#[test]
fn concurrent_never_double_leased() {
    const THREADS: usize = 4;
    const CYCLES: usize = 10_000;
    // Fewer ports than threads * held, over as many slices as threads, so
    // slices run dry and threads steal from each other.
    let pool = PortPool::new(40000..=40005, THREADS);
    let held: Arc<Vec<AtomicBool>> = Arc::new((0..6).map(|_| AtomicBool::new(false)).collect());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = Arc::clone(&pool);
            let held = Arc::clone(&held);
            std::thread::spawn(move || {
                let mut mine: Vec<PortLease> = Vec::with_capacity(2);
                let mut got = 0usize;
                for i in 0..CYCLES {
                    if let Some(l) = pool.acquire(t) {
                        let slot = &held[usize::from(l.port() - 40000)];
                        assert!(!slot.swap(true, Ordering::SeqCst), "port {} leased twice", l.port());
                        mine.push(l);
                        got += 1;
                    }
                    // Hold up to two leases; release in varying order.
                    if mine.len() == 2 || (i % 3 == 0 && !mine.is_empty()) {
                        let l = mine.swap_remove(i % mine.len());
                        let slot = &held[usize::from(l.port() - 40000)];
                        assert!(slot.swap(false, Ordering::SeqCst), "port {} not marked held", l.port());
                        drop(l);
                    }
                }
                for l in mine.drain(..) {
                    let slot = &held[usize::from(l.port() - 40000)];
                    assert!(slot.swap(false, Ordering::SeqCst));
                }
                got
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    assert!(total > 0);
    assert_eq!(pool.in_use(), 0);
    assert!(held.iter().all(|h| !h.load(Ordering::SeqCst)));
    assert_eq!(drain(&pool, 0).len(), 6);
}

#[test]
fn lease_outlives_pool() {
    let pool = PortPool::new(100..=101, 1);
    let l = pool.acquire(0).expect("port");
    drop(pool);
    assert_eq!(l.port(), 100);
    drop(l);
}
