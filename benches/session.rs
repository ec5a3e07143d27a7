//! The sans-IO session's cost per command: a whole client session (greeting, login, CWD,
//! TYPE, EPSV + LIST, EPSV + RETR, SIZE, MDTM, EPSV + STOR, QUIT) per iteration, with every
//! action answered in-line as the engine would, bytes in through the session's own framing, and
//! replies serialised to wire bytes.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringftp::session::{Action, FsOutcome, FsRequest, Session, SessionConfig, TransferData, TransferOutcome};
use ringftp::storage::{DirEntry, FileKind, Metadata};
use ringftp::User;

const LINES: &[&str] = &[
    "USER bob",
    "PASS pw",
    "SYST",
    "PWD",
    "CWD /pub/data",
    "TYPE I",
    "EPSV",
    "LIST",
    "SIZE big.bin",
    "MDTM big.bin",
    "EPSV",
    "RETR big.bin",
    "EPSV",
    "STOR upload.bin",
    "NOOP",
    "QUIT",
];

/// The engine's side: answers each action at once; returns the reply bytes written.
fn drain(s: &mut Session, out: &mut Vec<u8>, listing: &[DirEntry], now: SystemTime, t0: Instant) {
    let announce: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 50_000));
    while let Some(action) = s.poll_action() {
        match action {
            Action::Reply(r) => r.write_to(out),
            Action::Authenticate { username, .. } => s.login_done(Ok(User::new(username)), t0),
            Action::Fs(FsRequest::OpenList(_)) => s.fs_done(FsOutcome::Opened { size: None }, t0, now),
            Action::Fs(FsRequest::Metadata(path)) => {
                let meta = if path.ends_with(b".bin") {
                    Metadata::new(FileKind::File, 64 << 20).modified(now)
                } else {
                    Metadata::new(FileKind::Dir, 0)
                };
                s.fs_done(FsOutcome::Metadata(meta), t0, now);
            }
            Action::Fs(FsRequest::OpenRead { .. }) => {
                s.fs_done(FsOutcome::Opened { size: Some(64 << 20) }, t0, now)
            }
            Action::Fs(FsRequest::OpenWrite { .. }) => s.fs_done(FsOutcome::Opened { size: None }, t0, now),
            Action::Fs(_) => s.fs_done(FsOutcome::Done, t0, now),
            Action::OpenPassive => s.passive_opened(announce, t0),
            Action::Transfer(t) => {
                // A listing is formatted as the data path sends it.
                if let TransferData::Listing(format) = t.data {
                    let mut bytes = Vec::new();
                    format.write(listing, &mut bytes);
                    black_box(bytes);
                }
                s.transfer_started(t0);
                s.transfer_done(TransferOutcome::Completed { bytes: 64 << 20 }, t0);
            }
            _ => {}
        }
    }
}

/// One whole session; returns the reply bytes.
fn transcript(out: &mut Vec<u8>, listing: &[DirEntry], now: SystemTime, t0: Instant) -> usize {
    out.clear();
    let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
    let local = SocketAddr::from(([127, 0, 0, 1], 2121));
    let mut s = Session::new(SessionConfig::default(), peer, local, t0);
    drain(&mut s, out, listing, now, t0);
    let mut line = Vec::with_capacity(64);
    for l in LINES {
        line.clear();
        line.extend_from_slice(l.as_bytes());
        line.extend_from_slice(b"\r\n");
        s.handle_input(&line, t0);
        drain(&mut s, out, listing, now, t0);
    }
    out.len()
}

fn bench(c: &mut Criterion) {
    let now = SystemTime::now();
    let t0 = Instant::now();
    let listing: Vec<DirEntry> = (0..16)
        .map(|i| DirEntry {
            name: format!("file-{i:04}.bin").into_bytes(),
            metadata: Metadata::new(FileKind::File, 4096).modified(now),
        })
        .collect();
    let mut out = Vec::with_capacity(8192);
    transcript(&mut out, &listing, now, t0);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("230 ") && text.contains("226 ") && text.ends_with("221 Goodbye.\r\n"),
        "unexpected transcript:\n{text}"
    );

    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(LINES.len() as u64));
    g.bench_function("transcript/commands", |b| {
        b.iter(|| transcript(black_box(&mut out), &listing, now, t0))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
