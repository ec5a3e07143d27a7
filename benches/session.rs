//! The sans-IO session's cost per command: a whole client session (greeting, login, CWD,
//! TYPE, EPSV + LIST, EPSV + RETR, SIZE, MDTM, EPSV + STOR, QUIT) per iteration, with every
//! action answered in-line as the engine would, and replies serialised to wire bytes.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringftp::proto::parse;
use ringftp::session::{Action, FsOutcome, FsRequest, Session, SessionConfig, TransferOutcome};
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
fn drain(s: &mut Session, out: &mut Vec<u8>, listing: &[DirEntry], now: SystemTime) {
    let announce: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 50_000));
    while let Some(action) = s.poll_action() {
        match action {
            Action::Reply(r) => r.write_to(out),
            Action::Authenticate { username, .. } => s.login_done(Ok(User::new(username))),
            Action::Fs(FsRequest::List(_)) => s.fs_done(FsOutcome::Listing(listing.to_vec()), now),
            Action::Fs(FsRequest::Metadata(path)) => {
                let meta = if path.ends_with(b".bin") {
                    Metadata::new(FileKind::File, 64 << 20).modified(now)
                } else {
                    Metadata::new(FileKind::Dir, 0)
                };
                s.fs_done(FsOutcome::Metadata(meta), now);
            }
            Action::Fs(_) => s.fs_done(FsOutcome::Done, now),
            Action::OpenPassive => s.passive_opened(announce),
            Action::Transfer(t) => {
                s.transfer_started(t.file_name(), Some(64 << 20));
                s.transfer_done(TransferOutcome::Completed { bytes: 64 << 20 });
            }
            _ => {}
        }
    }
}

/// One whole session; returns the reply bytes.
fn transcript(out: &mut Vec<u8>, listing: &[DirEntry], now: SystemTime) -> usize {
    out.clear();
    let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
    let local = SocketAddr::from(([127, 0, 0, 1], 2121));
    let mut s = Session::new(SessionConfig::default(), peer, local);
    drain(&mut s, out, listing, now);
    for line in LINES {
        match parse(line.as_bytes()) {
            Ok(cmd) => s.handle_command(cmd),
            Err(e) => s.handle_parse_error(e),
        }
        drain(&mut s, out, listing, now);
    }
    out.len()
}

fn bench(c: &mut Criterion) {
    let now = SystemTime::now();
    let listing: Vec<DirEntry> = (0..16)
        .map(|i| DirEntry {
            name: format!("file-{i:04}.bin").into_bytes(),
            metadata: Metadata::new(FileKind::File, 4096).modified(now),
        })
        .collect();
    let mut out = Vec::with_capacity(8192);
    transcript(&mut out, &listing, now);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("230 ") && text.contains("226 ") && text.ends_with("221 Goodbye.\r\n"),
        "unexpected transcript:\n{text}"
    );

    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(LINES.len() as u64));
    g.bench_function("transcript/commands", |b| b.iter(|| transcript(black_box(&mut out), &listing, now)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
