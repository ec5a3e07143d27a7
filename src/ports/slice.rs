//! One shard's slice of the port range: a lock-free bitmap plus a rotating
//! cursor. Private to the `ports` module.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Bits per bitmap word.
const WORD_BITS: usize = 64;
/// Bitmap words per cache line.
const LINE_WORDS: usize = 8;
/// Bits per cache line.
const LINE_BITS: usize = WORD_BITS * LINE_WORDS;

/// One cache line of bitmap words. Each slice owns whole lines, so two
/// slices' bitmaps never share a cache line (no false sharing between
/// shards).
#[repr(align(64))]
struct Line([AtomicU64; LINE_WORDS]);

impl Line {
    fn new() -> Self {
        Line(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// A contiguous run of ports owned by one shard. A set bit means "leased".
///
/// Aligned to a cache line so the cursor (written on every acquire by the
/// owning shard) does not share a line with a neighbouring slice's header.
#[repr(align(64))]
pub(super) struct Slice {
    /// Offset of this slice's first port from the start of the whole range.
    first: usize,
    /// Number of ports in the slice (may be 0).
    len: usize,
    /// Number of bitmap words holding real ports: `ceil(len / 64)`.
    words: usize,
    /// Bits set permanently in the last word because they are past `len`.
    pad_bits: u32,
    /// Where the next scan starts: one past the last port handed out.
    cursor: AtomicUsize,
    /// The bitmap, in whole cache lines.
    lines: Box<[Line]>,
}

impl Slice {
    /// A slice of `len` ports starting `first` ports into the range.
    pub(super) fn new(first: usize, len: usize) -> Self {
        let words = len.div_ceil(WORD_BITS);
        let lines: Box<[Line]> = (0..len.div_ceil(LINE_BITS)).map(|_| Line::new()).collect();
        let tail = len % WORD_BITS;
        let mut pad_bits = 0;
        if tail != 0 {
            // Mark the bits past the end as leased forever so the hot path
            // needs no extra mask for the last word.
            let pad = u64::MAX << tail;
            pad_bits = pad.count_ones();
            let last = words - 1; // words >= 1 because tail != 0
            if let Some(w) = lines.get(last / LINE_WORDS).and_then(|l| l.0.get(last % LINE_WORDS)) {
                w.store(pad, Ordering::Relaxed);
            }
        }
        Slice { first, len, words, pad_bits, cursor: AtomicUsize::new(0), lines }
    }

    /// Offset of the slice's first port from the start of the range.
    pub(super) fn first(&self) -> usize {
        self.first
    }

    /// Number of ports in the slice.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn word(&self, w: usize) -> Option<&AtomicU64> {
        self.lines.get(w / LINE_WORDS).and_then(|l| l.0.get(w % LINE_WORDS))
    }

    /// Takes a free bit among `mask` in word `w`; returns its bit number.
    #[inline]
    fn take_in_word(&self, w: usize, mask: u64) -> Option<usize> {
        let word = self.word(w)?;
        let mut cur = word.load(Ordering::Relaxed);
        loop {
            let free = !cur & mask;
            if free == 0 {
                return None;
            }
            let bit = free.trailing_zeros();
            let b = 1u64 << bit;
            let prev = word.fetch_or(b, Ordering::Acquire);
            if prev & b == 0 {
                return Some(bit as usize);
            }
            // Someone else took it first; look again with fresher state.
            cur = prev;
        }
    }

    /// Leases a free port of this slice, scanning from the cursor and
    /// wrapping around once. Returns the port's index within the slice.
    pub(super) fn acquire(&self) -> Option<usize> {
        let n = self.len;
        let nw = self.words;
        if n == 0 {
            return None;
        }
        let start = self.cursor.load(Ordering::Relaxed);
        let start = if start >= n { 0 } else { start };
        let (sw, sb) = (start / WORD_BITS, start % WORD_BITS);
        // Bits at or after the cursor within its word (sb < 64).
        let high = u64::MAX << sb;
        // k == 0: the cursor's word from the cursor on; 1..nw: the other
        // words in order; k == nw: the cursor's word before the cursor.
        for k in 0..=nw {
            let mask = if k == 0 {
                high
            } else if k == nw {
                !high
            } else {
                u64::MAX
            };
            if mask == 0 {
                continue;
            }
            let mut w = sw + k;
            if w >= nw {
                w -= nw;
            }
            if let Some(bit) = self.take_in_word(w, mask) {
                let idx = w * WORD_BITS + bit;
                let next = idx + 1;
                self.cursor.store(if next >= n { 0 } else { next }, Ordering::Relaxed);
                return Some(idx);
            }
        }
        None
    }

    /// Returns the port at index `idx` of this slice to the pool.
    #[inline]
    pub(super) fn release(&self, idx: usize) {
        if idx >= self.len {
            return;
        }
        if let Some(word) = self.word(idx / WORD_BITS) {
            word.fetch_and(!(1u64 << (idx % WORD_BITS)), Ordering::Release);
        }
    }

    /// Number of leased ports in this slice (a snapshot).
    pub(super) fn in_use(&self) -> usize {
        let set: u32 = (0..self.words)
            .filter_map(|w| self.word(w))
            .map(|w| w.load(Ordering::Relaxed).count_ones())
            .sum();
        set.saturating_sub(self.pad_bits) as usize
    }
}
