//! Control-connection framing and command parsing: arbitrary bytes, pushed into a
//! `LineBuffer` in arbitrary chunks (and repeated, so the stream can be long), every line
//! through `proto::parse`.
//!
//! Input: `[max][split][repeat]` then the stream. `max` picks the line limit, `split` the
//! chunk sizes, `repeat` how many times the stream is pushed.
//!
//! Checks:
//! - no panic;
//! - the lines equal those of a simple reference framer run on the whole stream at once
//!   (Telnet commands removed, IAC IAC kept as 0xFF, split at LF, one trailing CR dropped, a
//!   line over the limit reported once as `TooLong`, as soon as it is over), whatever the
//!   chunking;
//! - no complete line is longer than the limit;
//! - the buffer's memory does not grow with the length of the stream (measured by a counting
//!   allocator: bounded by the limit and the largest chunk);
//! - every parse error has a reply with a code in 500..=599 and a well-formed wire form;
//! - every path argument resolves to a normalised path below the root (`fuzz/src/paths.rs`).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;
use ringftp::proto::{parse, Command, Line, LineBuffer, ParseError};
use ringftp_fuzz::paths::check_resolve;
use ringftp_fuzz::wire::write_and_check;

/// Counts the bytes the Rust code has allocated and not freed.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MAXES: [usize; 12] = [1, 2, 3, 4, 5, 8, 16, 32, 64, 128, 512, 4096];

/// One line as the reference framer sees it.
#[derive(Debug, PartialEq)]
enum Want {
    Complete(Vec<u8>),
    TooLong,
}

/// RFC 854 Telnet filtering of a whole stream: IAC IAC is one 0xFF, IAC WILL/WONT/DO/DONT
/// take one option byte, IAC SB ... IAC SE is dropped, any other IAC x is dropped.
fn telnet_filter(stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < stream.len() {
        let b = stream[i];
        i += 1;
        if b != 255 {
            out.push(b);
            continue;
        }
        let Some(&cmd) = stream.get(i) else { break };
        i += 1;
        match cmd {
            255 => out.push(255),
            251..=254 => i += 1,
            250 => {
                // Up to IAC SE; IAC IAC inside is an escaped data byte.
                loop {
                    match stream.get(i) {
                        None => break,
                        Some(255) => {
                            i += 1;
                            let next = stream.get(i).copied();
                            i += 1;
                            if next == Some(240) || next.is_none() {
                                break;
                            }
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The lines of the whole filtered stream, including a trailing partial line that is
/// already over the limit.
fn reference_lines(filtered: &[u8], max: usize) -> Vec<Want> {
    let mut out = Vec::new();
    let mut parts = filtered.split(|&b| b == b'\n').peekable();
    while let Some(part) = parts.next() {
        let complete = parts.peek().is_some();
        if complete {
            let line = part.strip_suffix(b"\r").unwrap_or(part);
            out.push(if line.len() > max { Want::TooLong } else { Want::Complete(line.to_vec()) });
        } else {
            // The limit is hit by a byte past `max`, except a CR right after `max` bytes,
            // which may be the CR of CRLF.
            let over = part.len() > max + 1 || (part.len() == max + 1 && part.last() != Some(&b'\r'));
            if over {
                out.push(Want::TooLong);
            }
        }
    }
    out
}

fn check_command(cmd: Command<'_>) {
    let path = match cmd {
        Command::Cwd(p)
        | Command::Mkd(p)
        | Command::Rmd(p)
        | Command::Dele(p)
        | Command::Rnfr(p)
        | Command::Rnto(p)
        | Command::Size(p)
        | Command::Mdtm(p)
        | Command::Retr(p)
        | Command::Stor(p)
        | Command::Appe(p) => Some(p),
        Command::List(p)
        | Command::Nlst(p)
        | Command::Mlsd(p)
        | Command::Mlst(p)
        | Command::Stou(p)
        | Command::Stat(p) => p,
        _ => None,
    };
    if let Some(p) = path {
        check_resolve(b"/", p);
        check_resolve(b"/pub/sub", p);
        if let Some(deep) = check_resolve(b"/a/b/c", p) {
            check_resolve(&deep, b"..");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (max, split, repeat, stream) = match data {
        [m, s, r, rest @ ..] => (MAXES[*m as usize % MAXES.len()], *s, 1 + (*r as usize % 16), rest),
        _ => return,
    };
    // Chunk sizes: 1..=256 bytes, a few patterns chosen by `split`.
    let chunk_len = |i: usize| -> usize {
        let base = usize::from(split);
        match split % 4 {
            0 => 1,
            1 => 1 + (base + i * 7) % 17,
            2 => 1 + (base * 31 + i * 13) % 256,
            _ => 1024,
        }
    };

    let mut whole = Vec::with_capacity(stream.len() * repeat);
    for _ in 0..repeat {
        whole.extend_from_slice(stream);
    }
    let want = reference_lines(&telnet_filter(&whole), max);

    let mut lb = LineBuffer::new(max);
    let baseline = LIVE.load(Ordering::Relaxed);
    let mut next = 0;
    let mut pos = 0;
    let mut i = 0;
    let mut largest_chunk = 0;
    while pos < whole.len() {
        let n = chunk_len(i).min(whole.len() - pos);
        largest_chunk = largest_chunk.max(n);
        lb.push(&whole[pos..pos + n]);
        pos += n;
        i += 1;
        while let Some(line) = lb.next_line() {
            match line {
                Line::Complete(l) => {
                    assert!(l.len() <= max, "line of {} > limit {max}", l.len());
                    match want.get(next) {
                        Some(Want::Complete(w)) => assert_eq!(l, &w[..], "line {next}"),
                        other => panic!("line {next}: got {l:?}, want {other:?}"),
                    }
                    match parse(l) {
                        Ok(cmd) => check_command(cmd),
                        Err(e) => {
                            let reply = e.reply();
                            assert!((500..600).contains(&reply.code().get()), "{e:?}");
                            write_and_check(&reply);
                        }
                    }
                }
                Line::TooLong => {
                    assert_eq!(want.get(next), Some(&Want::TooLong), "line {next}");
                    let reply = ParseError::LineTooLong.reply();
                    assert_eq!(reply.code().get(), 500);
                }
            }
            next += 1;
        }
        let live = LIVE.load(Ordering::Relaxed).saturating_sub(baseline);
        let bound = 2 * (max + 2 + largest_chunk) + 16 * (largest_chunk + 1) + 4096;
        assert!(
            live <= bound,
            "LineBuffer holds {live} bytes after {pos} pushed (limit {max}, chunks <= {largest_chunk})"
        );
    }
    assert_eq!(next, want.len(), "lines missing: {:?}", &want[next..]);
});
