//! Passive port pool: cost of one acquire + release (lease drop).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringftp::ports::PortPool;

/// A typical range: 1000 ports.
const RANGE: std::ops::RangeInclusive<u16> = 50000..=50999;

fn single(c: &mut Criterion) {
    let mut g = c.benchmark_group("ports/single");
    for shards in [1usize, 8] {
        let pool = PortPool::new(RANGE, shards);
        g.bench_function(BenchmarkId::new("acquire_drop", format!("{shards}_shards")), |b| {
            b.iter(|| drop(black_box(pool.acquire(black_box(0)))))
        });
    }
    // Same, with half the slice already leased (longer scans).
    let pool = PortPool::new(RANGE, 1);
    let held: Vec<_> = (0..500).filter_map(|_| pool.acquire(0)).collect();
    g.bench_function("acquire_drop/half_full", |b| b.iter(|| drop(black_box(pool.acquire(black_box(0))))));
    drop(held);
    g.finish();
}

/// `threads` threads, each doing `iters` acquire+drop cycles from shard
/// `shard_of(t)`, started together behind a barrier. Returns the wall time
/// of the slowest thread (thread spawn is not measured).
fn run_threads(pool: &Arc<PortPool>, threads: usize, iters: u64, shard_of: fn(usize) -> usize) -> Duration {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let pool = Arc::clone(pool);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let shard = shard_of(t);
                barrier.wait();
                let start = Instant::now();
                for _ in 0..iters {
                    drop(black_box(pool.acquire(black_box(shard))));
                }
                start.elapsed()
            })
        })
        .collect();
    handles.into_iter().filter_map(|h| h.join().ok()).max().unwrap_or_default()
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("ports/contended");
    for threads in [2usize, 4] {
        // Each thread on its own shard's slice: the intended use.
        let pool = PortPool::new(RANGE, threads);
        g.bench_function(BenchmarkId::new("own_shard", threads), |b| {
            b.iter_custom(|iters| run_threads(&pool, threads, iters, |t| t))
        });
        // Worst case for comparison: every thread on the same slice.
        let pool = PortPool::new(RANGE, 1);
        g.bench_function(BenchmarkId::new("same_slice", threads), |b| {
            b.iter_custom(|iters| run_threads(&pool, threads, iters, |_| 0))
        });
    }
    g.finish();
}

criterion_group!(benches, single, contended);
criterion_main!(benches);
