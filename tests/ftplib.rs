//! Python's ftplib against ringftpd: transfers in passive and active mode, REST both ways,
//! file and directory commands, TYPE A, STOU, APPE and ABOR.

mod common;

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

fn q(p: &std::path::Path) -> String {
    format!("'{}'", p.display())
}

/// Uploads and downloads 0 B, 1 B, 1 MiB + 1 (and 8 MiB) with ftplib.
fn roundtrip(active: bool) {
    let tag = if active { "ftplib-port" } else { "ftplib-pasv" };
    let server = TestServer::start(tag);
    let work = server.work();
    let mut steps = Vec::new();
    let mut pairs = Vec::new();
    for (i, size) in [0, 1, MIB + 1, 8 * MIB].into_iter().enumerate() {
        let src = work.join(format!("src_{size}.bin"));
        make_file(&src, size, 200 + i as u64);
        steps.push(format!("put {} up_{size}.bin", q(&src)));
        pairs.push((src, server.root().join(format!("up_{size}.bin"))));
        let on_server = server.root().join(format!("down_{size}.bin"));
        make_file(&on_server, size, 300 + i as u64);
        let dst = work.join(format!("dl_{size}.bin"));
        steps.push(format!("get down_{size}.bin {}", q(&dst)));
        pairs.push((on_server, dst));
    }
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let opts: &[&str] = if active {
        &["--user", USER, "--password", PASS, "--active"]
    } else {
        &["--user", USER, "--password", PASS]
    };
    let r = py_opts(&server, opts, &steps).ok(&server);
    assert_eq!(r.lines_with("put: 226").len(), 4, "{}", r.describe());
    assert_eq!(r.lines_with("get: 226").len(), 4, "{}", r.describe());
    for (want, got) in &pairs {
        assert_same_file(want, got, &server);
    }
}

#[test]
fn ftplib_passive_upload_download() {
    roundtrip(false);
}

#[test]
fn ftplib_active_upload_download() {
    roundtrip(true);
}

#[test]
fn ftplib_rest_retr_resumes_download() {
    let server = TestServer::start("ftplib-rest-retr");
    let full = server.root().join("full.bin");
    make_file(&full, 2 * MIB + 333, 11);
    let part = server.work().join("part.bin");
    let head = 777_777;
    fs::write(&part, &fs::read(&full).unwrap()[..head]).unwrap();
    for (active, tag) in [(false, "passive"), (true, "active")] {
        let mut opts = vec!["--user", USER, "--password", PASS];
        if active {
            opts.push("--active");
        }
        let copy = server.work().join(format!("part_{tag}.bin"));
        fs::copy(&part, &copy).unwrap();
        let r = py_opts(&server, &opts, &[&format!("get full.bin {} {head}", q(&copy))]).ok(&server);
        assert!(r.stdout.contains("get: 226"), "{}", r.describe());
        assert_same_file(&full, &copy, &server);
    }
    // REST beyond the end: nothing is sent, the transfer still completes.
    let tail = server.work().join("tail.bin");
    fs::copy(&full, &tail).unwrap();
    let r = py(&server, &[&format!("get full.bin {} {}", q(&tail), 2 * MIB + 333)]).ok(&server);
    assert!(r.stdout.contains("get: 226"), "{}", r.describe());
    assert_same_file(&full, &tail, &server);
}

#[test]
fn ftplib_rest_stor_resumes_upload() {
    let server = TestServer::start("ftplib-rest-stor");
    let src = server.work().join("src.bin");
    make_file(&src, 3 * MIB + 1, 12);
    let data = fs::read(&src).unwrap();
    // The server holds the first part, plus garbage beyond the restart point that the
    // resumed STOR must cut off.
    let remote = server.root().join("up.bin");
    let head = 1_500_001;
    let mut partial = data[..head].to_vec();
    partial.extend_from_slice(&[0u8; 4 * 1024 * 1024]);
    fs::write(&remote, &partial).unwrap();
    let r = py(&server, &[&format!("put {} up.bin {head}", q(&src))]).ok(&server);
    assert!(r.stdout.contains("put: 226"), "{}", r.describe());
    assert_same_file(&src, &remote, &server);

    // Active mode too.
    fs::write(&remote, &data[..12345]).unwrap();
    let r = py_opts(
        &server,
        &["--user", USER, "--password", PASS, "--active"],
        &[&format!("put {} up.bin 12345", q(&src))],
    )
    .ok(&server);
    assert!(r.stdout.contains("put: 226"), "{}", r.describe());
    assert_same_file(&src, &remote, &server);
}

#[test]
fn ftplib_file_and_directory_commands() {
    let server = TestServer::start("ftplib-fileops");
    let root = server.root();
    fs::write(root.join("a.txt"), b"alpha\n").unwrap();
    fs::create_dir(root.join("full")).unwrap();
    fs::write(root.join("full/inside.txt"), b"x").unwrap();
    let sized = root.join("sized.bin");
    make_file(&sized, MIB + 1, 13);
    // 2024-02-29 12:34:56 UTC
    let mtime = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
    fs::File::options().write(true).open(&sized).unwrap().set_modified(mtime).unwrap();

    let r = py(
        &server,
        &[
            "raw RNFR a.txt",
            "raw RNTO renamed.txt",
            "raw RNFR missing.txt",
            "raw RNTO whatever.txt",
            "raw MKD newdir",
            "raw MKD newdir",
            "raw CWD newdir",
            "raw PWD",
            "raw CDUP",
            "raw PWD",
            "raw CWD /newdir",
            "raw CWD ..",
            "raw PWD",
            "raw RMD newdir",
            "raw RMD full",
            "raw DELE full",
            "raw DELE renamed.txt",
            "raw DELE renamed.txt",
            "raw CWD nowhere",
            "raw CWD sized.bin",
            "raw SIZE sized.bin",
            "raw SIZE full",
            "raw SIZE nothing",
            "raw MDTM sized.bin",
            "raw MDTM nothing",
        ],
    )
    .ok(&server);
    let raw = r.lines_with("raw: ");
    let expect = [
        ("RNFR a.txt", "raw: 350"),
        ("RNTO renamed.txt", "raw: 250"),
        ("RNFR missing.txt", "raw: ERR 550"),
        ("RNTO without RNFR", "raw: ERR 503"),
        ("MKD newdir", "raw: 257 \"/newdir\""),
        ("MKD newdir again", "raw: ERR 550"),
        ("CWD newdir", "raw: 250"),
        ("PWD", "raw: 257 \"/newdir\""),
        ("CDUP", "raw: 2"),
        ("PWD after CDUP", "raw: 257 \"/\""),
        ("CWD /newdir", "raw: 250"),
        ("CWD ..", "raw: 250"),
        ("PWD after CWD ..", "raw: 257 \"/\""),
        ("RMD newdir", "raw: 250"),
        ("RMD of a non-empty dir", "raw: ERR 550"),
        ("DELE of a dir", "raw: ERR 550"),
        ("DELE renamed.txt", "raw: 250"),
        ("DELE again", "raw: ERR 550"),
        ("CWD missing", "raw: ERR 550"),
        ("CWD to a file", "raw: ERR 550"),
        ("SIZE", "raw: 213 1048577"),
        ("SIZE of a dir", "raw: ERR 550"),
        ("SIZE missing", "raw: ERR 550"),
        ("MDTM", "raw: 213 20240229123456"),
        ("MDTM missing", "raw: ERR 550"),
    ];
    assert_eq!(raw.len(), expect.len(), "{}", r.describe());
    for ((what, want), got) in expect.iter().zip(&raw) {
        assert!(got.starts_with(want), "{what}: expected {want:?}, got {got:?}\n{}", r.describe());
    }
    assert!(!root.join("a.txt").exists());
    assert!(!root.join("renamed.txt").exists());
    assert!(!root.join("newdir").exists());
    assert_eq!(fs::read(root.join("full/inside.txt")).unwrap(), b"x");
}

#[test]
fn ftplib_rename_moves_content_between_directories() {
    let server = TestServer::start("ftplib-rename");
    let root = server.root();
    let f = root.join("data.bin");
    make_file(&f, 65_537, 14);
    let sha = sha256_file(&f);
    fs::create_dir(root.join("dst")).unwrap();
    let r = py(&server, &["raw RNFR data.bin", "raw RNTO dst/moved.bin", "nlst dst"]).ok(&server);
    assert!(r.stdout.contains("raw: 250"), "{}", r.describe());
    assert!(!f.exists());
    assert_eq!(sha256_file(&root.join("dst/moved.bin")), sha);
}

#[test]
fn ftplib_stou_creates_unique_names() {
    let server = TestServer::start("ftplib-stou");
    let root = server.root();
    let work = server.work();
    fs::write(root.join("taken.txt"), b"original").unwrap();
    let one = work.join("one.txt");
    let two = work.join("two.txt");
    let three = work.join("three.txt");
    fs::write(&one, b"first upload").unwrap();
    fs::write(&two, b"second upload").unwrap();
    fs::write(&three, b"third upload").unwrap();
    let r = py(
        &server,
        &[
            &format!("stou {}", q(&one)),
            &format!("stou {}", q(&two)),
            &format!("stou {} taken.txt", q(&three)),
        ],
    )
    .ok(&server);
    let prelim = r.lines_with("stou-150: ");
    assert_eq!(prelim.len(), 3, "{}", r.describe());
    assert_eq!(r.lines_with("stou: 226").len(), 3, "{}", r.describe());
    let mut names = Vec::new();
    for (line, content) in prelim.iter().zip([&b"first upload"[..], b"second upload", b"third upload"]) {
        let name = line
            .strip_prefix("stou-150: 150 FILE: ")
            .unwrap_or_else(|| panic!("STOU preliminary reply {line:?} is not '150 FILE: name'"))
            .trim();
        assert_eq!(fs::read(root.join(name)).unwrap_or_default(), content, "file {name} named in {line:?}");
        names.push(name.to_string());
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "STOU reused a name: {names:?}");
    assert_eq!(fs::read(root.join("taken.txt")).unwrap(), b"original");
}

#[test]
fn ftplib_appe_appends_and_creates() {
    let server = TestServer::start("ftplib-appe");
    let root = server.root();
    let work = server.work();
    let first = root.join("log.bin");
    make_file(&first, 100_003, 15);
    let more = work.join("more.bin");
    make_file(&more, MIB + 7, 16);
    let r = py(&server, &[&format!("appe {} log.bin", q(&more)), &format!("appe {} fresh.bin", q(&more))])
        .ok(&server);
    assert_eq!(r.lines_with("appe: 226").len(), 2, "{}", r.describe());
    let mut want = pattern(100_003, 15);
    want.extend_from_slice(&pattern(MIB as usize + 7, 16));
    let got = fs::read(&first).unwrap();
    assert_eq!(got.len(), want.len());
    assert_eq!(sha256_bytes(&got), sha256_bytes(&want));
    assert_same_file(&more, &root.join("fresh.bin"), &server);
}

#[test]
fn ftplib_type_a_converts_line_ends() {
    let server = TestServer::start("ftplib-ascii");
    let root = server.root();
    let work = server.work();
    let text = b"line one\nline two\n\nlast line without newline";
    fs::write(root.join("unix.txt"), text).unwrap();
    let wire = work.join("wire.txt");
    let r = py(&server, &[&format!("aget unix.txt {}", q(&wire))]).ok(&server);
    assert!(r.stdout.contains("aget: 226"), "{}", r.describe());
    assert_eq!(
        String::from_utf8(fs::read(&wire).unwrap()).unwrap(),
        "line one\r\nline two\r\n\r\nlast line without newline"
    );
    // A larger file: every LF becomes CRLF, and nothing else changes.
    let mut big = Vec::new();
    for i in 0..50_000 {
        big.extend_from_slice(format!("row {i}: {}\n", "x".repeat(i % 97)).as_bytes());
    }
    fs::write(root.join("big.txt"), &big).unwrap();
    let wire = work.join("big.wire");
    let r = py(&server, &[&format!("aget big.txt {}", q(&wire))]).ok(&server);
    assert!(r.stdout.contains("aget: 226"), "{}", r.describe());
    let want: Vec<u8> = String::from_utf8(big.clone()).unwrap().replace('\n', "\r\n").into_bytes();
    let got = fs::read(&wire).unwrap();
    assert_eq!(got.len(), want.len(), "TYPE A size");
    assert!(got == want, "TYPE A content differs");
    // The same file in TYPE I is untouched.
    let bin = work.join("big.bin");
    let r = py(&server, &[&format!("get big.txt {}", q(&bin))]).ok(&server);
    assert!(r.stdout.contains("get: 226"), "{}", r.describe());
    assert!(fs::read(&bin).unwrap() == big);
}

#[test]
fn ftplib_abor_during_large_retr() {
    let server = TestServer::start("ftplib-abor");
    // A sparse 1 GiB file: far more than the socket buffers hold.
    let big = fs::File::create(server.root().join("huge.bin")).unwrap();
    big.set_len(1024 * MIB).unwrap();
    let r = py(&server, &["abor huge.bin", "raw NOOP", "raw PWD"]).ok(&server);
    assert!(r.stdout.contains("abor-150: 150"), "{}", r.describe());
    let replies = r.lines_with("abor-reply: ");
    let codes: Vec<&str> = replies.iter().map(|l| &l["abor-reply: ".len()..][..3]).collect();
    assert!(codes == ["426", "226"] || codes == ["226"], "ABOR replies {replies:?}\n{}", r.describe());
    let data = r.lines_with("abor-data: ");
    assert!(
        data.len() == 1 && !data[0].contains("still open"),
        "the data connection must be closed after ABOR: {data:?}"
    );
    // The control connection still works.
    assert!(r.stdout.contains("raw: 200"), "NOOP after ABOR:\n{}", r.describe());
    assert!(r.stdout.contains("raw: 257"), "PWD after ABOR:\n{}", r.describe());
    assert!(r.stdout.contains("abor: done"), "{}", r.describe());
}

/// Python's `FTP.abort()` sends `ABOR\r\n` with MSG_OOB (TCP urgent data), as RFC 959's
/// "Telnet Synch" suggests; servers that read the control connection without SO_OOBINLINE
/// lose the urgent byte (the final LF).
#[test]
fn ftplib_abort_method_with_urgent_data() {
    let server = TestServer::start("ftplib-abort-oob");
    let big = fs::File::create(server.root().join("huge.bin")).unwrap();
    big.set_len(1024 * MIB).unwrap();
    let r = py_opts(
        &server,
        &["--user", USER, "--password", PASS, "--timeout", "8"],
        &["abor_oob huge.bin", "raw NOOP"],
    )
    .ok(&server);
    let replies = r.lines_with("abor-reply: ");
    assert!(
        !replies.is_empty() && (replies[0].contains(" 426") || replies[0].contains(" 226")),
        "FTP.abort() got no 426/226 reply:\n{}\n{}",
        r.describe(),
        server.log_for_failure()
    );
    assert!(r.stdout.contains("raw: 200"), "NOOP after abort():\n{}", r.describe());
}

#[test]
fn ftplib_second_passive_request_without_transfer() {
    // Clients re-issue PASV/EPSV when they change their mind (or retry); the first passive
    // listener is dropped and a new one is opened.
    let server = TestServer::start("ftplib-epsv-twice");
    fs::write(server.root().join("f.txt"), b"payload").unwrap();
    let got = server.work().join("f.txt");
    let r = py_opts(
        &server,
        &["--user", USER, "--password", PASS, "--timeout", "8"],
        &["raw EPSV", "raw EPSV", "raw PASV", &format!("get f.txt {}", q(&got)), "raw NOOP"],
    )
    .ok(&server);
    let raw = r.lines_with("raw: ");
    assert!(raw.len() == 4, "{}", r.describe());
    assert!(raw[0].starts_with("raw: 229"), "{}", r.describe());
    assert!(raw[1].starts_with("raw: 229"), "second EPSV:\n{}\n{}", r.describe(), server.log_for_failure());
    assert!(raw[2].starts_with("raw: 227"), "PASV after EPSV:\n{}", r.describe());
    assert!(r.stdout.contains("get: 226"), "{}", r.describe());
    assert_eq!(fs::read(&got).unwrap(), b"payload");
}

#[test]
fn ftplib_mdtm_matches_fresh_upload_time() {
    let server = TestServer::start("ftplib-mdtm");
    let src = server.work().join("s.txt");
    fs::write(&src, b"now").unwrap();
    let before = SystemTime::now();
    let r = py(&server, &[&format!("put {} s.txt", q(&src)), "raw MDTM s.txt"]).ok(&server);
    let line = r.lines_with("raw: 213 ");
    assert_eq!(line.len(), 1, "{}", r.describe());
    let stamp = line[0]["raw: 213 ".len()..].trim();
    assert_eq!(stamp.len(), 14, "MDTM {stamp:?}");
    let disk = fs::metadata(server.root().join("s.txt")).unwrap().modified().unwrap();
    assert!(disk >= before - Duration::from_secs(2));
    let secs = disk.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(stamp, utc_stamp(secs), "MDTM must be the mtime in UTC");
}

/// `YYYYMMDDHHMMSS` in UTC.
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}{:02}{:02}{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}
