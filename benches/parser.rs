//! Control-channel parsing cost: `LineBuffer` framing plus `proto::parse` over a realistic
//! client transcript, fed in TCP-segment-sized chunks as the engine receives it.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringftp::proto::{parse, Line, LineBuffer};

/// One client session's lines: login, navigation, passive and active setup, metadata,
/// transfers and listings, some with long paths.
fn session_lines() -> Vec<String> {
    let long = "/srv/ftp/projects/2024/quarterly-reports/engineering/backend/storage-tier/\
                very-long-directory-name-used-for-benchmarking/archive/2024-06";
    let mut lines: Vec<String> = [
        "USER anonymous",
        "PASS guest@example.com",
        "SYST",
        "FEAT",
        "OPTS UTF8 ON",
        "PWD",
        "TYPE I",
        "CWD /pub/releases",
        "EPSV",
        "LIST -la",
        "PASV",
        "MLSD",
        "SIZE ringftp-0.1.0.tar.gz",
        "MDTM ringftp-0.1.0.tar.gz",
        "EPSV",
        "RETR ringftp-0.1.0.tar.gz",
        "PORT 127,0,0,1,195,80",
        "RETR README.md",
        "EPRT |1|127.0.0.1|50001|",
        "STOR upload-0001.bin",
        "REST 1048576",
        "EPSV",
        "STOR upload-0001.bin",
        "NOOP",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..4 {
        lines.push(format!("CWD {long}"));
        lines.push(format!("SIZE {long}/data-{i:06}.bin"));
        lines.push("EPSV".into());
        lines.push(format!("RETR {long}/data-{i:06}.bin"));
        lines.push(format!("MLSD {long}"));
        lines.push(format!("STOR {long}/upload-{i:06}.tmp"));
    }
    lines.push("QUIT".into());
    lines
}

/// The wire bytes of `sessions` transcripts and the number of command lines in them.
fn stream(sessions: usize) -> (Vec<u8>, u64) {
    let lines = session_lines();
    let mut bytes = Vec::new();
    let mut count = 0;
    for _ in 0..sessions {
        for l in &lines {
            bytes.extend_from_slice(l.as_bytes());
            bytes.extend_from_slice(b"\r\n");
            count += 1;
        }
    }
    (bytes, count)
}

/// Frames and parses the whole stream; returns the commands that parsed (so nothing is
/// optimised away).
fn frame_and_parse(bytes: &[u8], chunk: usize) -> usize {
    let mut lb = LineBuffer::new(4096);
    let mut parsed = 0;
    for c in bytes.chunks(chunk) {
        lb.push(c);
        while let Some(line) = lb.next_line() {
            if let Line::Complete(l) = line {
                if black_box(parse(l)).is_ok() {
                    parsed += 1;
                }
            }
        }
    }
    parsed
}

fn bench(c: &mut Criterion) {
    let (bytes, count) = stream(64);
    assert_eq!(frame_and_parse(&bytes, 1448) as u64, count, "a line did not parse");
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();

    let mut g = c.benchmark_group("parser");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("frame+parse/bytes", |b| b.iter(|| frame_and_parse(black_box(&bytes), 1448)));
    g.throughput(Throughput::Elements(count));
    g.bench_function("frame+parse/commands", |b| b.iter(|| frame_and_parse(black_box(&bytes), 1448)));
    g.bench_function("parse-only/commands", |b| {
        b.iter(|| lines.iter().filter(|l| black_box(parse(black_box(l))).is_ok()).count())
    });
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("frame+parse/one-byte-chunks", |b| b.iter(|| frame_and_parse(black_box(&bytes), 1)));
    g.finish();

    // Framing cost against line length: a peer chooses the length (up to the 4096-byte
    // limit), so the cost per byte should not grow with it. Few samples: at the time of
    // writing it does grow (quadratically), and a 4000-byte run takes ~0.3 s.
    let mut g = c.benchmark_group("parser-line-length");
    g.sample_size(10);
    for len in [64usize, 512, 4000] {
        let line = format!("RETR /{}\r\n", "a".repeat(len - 6));
        let long: Vec<u8> = line.as_bytes().repeat((256 << 10) / line.len());
        g.throughput(Throughput::Bytes(long.len() as u64));
        g.bench_function(format!("frame+parse/{len}-byte-lines"), |b| {
            b.iter(|| frame_and_parse(black_box(&long), 1448))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
