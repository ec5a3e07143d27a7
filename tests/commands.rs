//! The commands clients send beyond the basics, with real clients: MFMT, SITE UTIME/CHMOD,
//! AVBL, CLNT, OPTS MLST, HASH and the X digests with Python's ftplib, curl `-Q`, `lftp mirror
//! -R` (times and modes kept) and rclone (times kept, `rclone check` clean). lftp, curl and
//! rclone are required: if one is missing, its test fails.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use sha1::Digest as _;

/// 2020-01-02 03:04:05 UTC.
const T2020: u64 = 1_577_934_245;
/// 2001-09-09 01:46:40 UTC.
const T2001: u64 = 1_000_000_000;

fn mtime(p: &Path) -> u64 {
    fs::metadata(p).unwrap().modified().unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn set_mtime(p: &Path, secs: u64) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs)).unwrap();
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn raw(steps: &[&str]) -> Vec<String> {
    steps.iter().map(|s| format!("raw {s}")).collect()
}

/// The `raw:` reply lines of a Python client run, in order.
fn replies(r: &Ran) -> Vec<String> {
    r.lines_with("raw: ").into_iter().map(|l| l["raw: ".len()..].to_string()).collect()
}

#[test]
fn ftplib_mfmt_site_utime_chmod() {
    let server = TestServer::start("cmd-mfmt");
    let root = server.root();
    for name in ["a.bin", "b c.bin", "d.bin", "m.bin"] {
        make_file(&root.join(name), 10, 1);
    }
    fs::create_dir(root.join("dir")).unwrap();
    // A link out of the root: nothing done through it may reach the outside file.
    let outside = server.work().join("outside.txt");
    fs::write(&outside, b"x").unwrap();
    set_mtime(&outside, T2001);
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();

    let steps = raw(&[
        "MFMT 20200102030405 a.bin",
        "SITE UTIME 20200102030405 b c.bin",
        "SITE UTIME d.bin 20010909014640 20200102030405 20010909014640 UTC",
        "MFMT 20200102030405.250 m.bin",
        "SITE CHMOD 600 a.bin",
        "SITE CHMOD 4751 d.bin",
        "SITE CHMOD 700 dir",
        "MFMT 20200102030405 escape",
        "SITE CHMOD 777 escape",
        "MFMT 20200102030405 missing",
        "SITE CHMOD 9 a.bin",
        "SITE EXEC id",
        "SITE HELP",
        "MDTM a.bin",
    ]);
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let r = py(&server, &steps).ok(&server);
    let got = replies(&r);
    let errs: Vec<String> = r.lines_with("raw: ERR");
    assert_eq!(got[0], "213 Modify=20200102030405; a.bin", "{}", r.describe());
    assert_eq!(got[1], "200 SITE UTIME command successful.");
    assert_eq!(got[2], "200 SITE UTIME command successful.");
    assert_eq!(got[3], "213 Modify=20200102030405; m.bin");
    assert_eq!(got[4], "200 SITE CHMOD command ok.");
    assert_eq!(got[5], "200 SITE CHMOD command ok.");
    assert_eq!(got[6], "200 SITE CHMOD command ok.");
    for (i, want) in [(7, "ERR 550"), (8, "ERR 550"), (9, "ERR 550"), (10, "ERR 501"), (11, "ERR 502")] {
        assert!(got[i].starts_with(want), "step {i}: {} (want {want})\n{}", got[i], r.describe());
    }
    assert_eq!(got[12], "214 SITE commands: CHMOD HELP UTIME");
    assert_eq!(got[13], "213 20200102030405");
    assert_eq!(errs.len(), 5, "{}", r.describe());

    for name in ["a.bin", "b c.bin", "d.bin", "m.bin"] {
        assert_eq!(mtime(&root.join(name)), T2020, "{name}");
    }
    let m = fs::metadata(root.join("m.bin")).unwrap().modified().unwrap();
    assert_eq!(m, UNIX_EPOCH + Duration::from_millis(T2020 * 1000 + 250));
    assert_eq!(mode(&root.join("a.bin")), 0o600);
    // Only the permission bits: no setuid.
    assert_eq!(mode(&root.join("d.bin")), 0o751);
    assert_eq!(mode(&root.join("dir")), 0o700);
    assert_eq!(mtime(&outside), T2001, "MFMT reached outside the root");
    assert_eq!(mode(&outside), 0o644, "SITE CHMOD reached outside the root");
}

#[test]
fn ftplib_read_only_user_cannot_set_times_or_modes() {
    let server = TestServer::builder("cmd-ro").no_default_user().arg("--anonymous").start();
    let f = server.root().join("f.bin");
    make_file(&f, 10, 2);
    set_mtime(&f, T2001);
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    let steps = raw(&[
        "MFMT 20200102030405 f.bin",
        "SITE UTIME 20200102030405 f.bin",
        "SITE CHMOD 600 f.bin",
        "XCRC f.bin",
    ]);
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let r = py_opts(&server, &["--user", "anonymous", "--password", "x"], &steps).ok(&server);
    let got = replies(&r);
    for line in &got[..3] {
        assert!(line.starts_with("ERR 550"), "{}", r.describe());
    }
    assert!(got[3].starts_with("250 "), "{}", r.describe());
    assert_eq!(mtime(&f), T2001);
    assert_eq!(mode(&f), 0o644);
}

#[test]
fn ftplib_avbl_clnt_and_opts_mlst() {
    let server = TestServer::start("cmd-mlst");
    let f = server.root().join("f.bin");
    make_file(&f, 1234, 3);
    let meta = fs::metadata(&f).unwrap();
    let steps = raw(&[
        "AVBL",
        "AVBL /",
        "AVBL missing",
        "CLNT ringftp-test-client 1.0",
        "MLST f.bin",
        "OPTS MLST size;unique;UNIX.owner;nosuchfact;",
        "MLST f.bin",
        "FEAT",
    ]);
    let mut steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    steps.push("mlsd");
    let r = py(&server, &steps).ok(&server);
    let got = replies(&r);
    let avbl: u64 = got[0]
        .strip_prefix("213 ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", r.describe()));
    assert!(avbl > 0);
    assert!(got[1].starts_with("213 "), "{}", r.describe());
    assert!(got[2].starts_with("ERR 550"), "{}", r.describe());
    assert_eq!(got[3], "200 Noted.");
    let unique = format!("unique={:x}U{:x};", meta.dev(), meta.ino());
    let owner = format!("UNIX.owner={};UNIX.group={};", meta.uid(), meta.gid());
    assert!(got[4].contains("type=file;size=1234;"), "{}", got[4]);
    assert!(got[4].contains(&unique) && got[4].contains(&owner), "{}", got[4]);
    assert_eq!(got[5], "200 MLST OPTS size;unique;UNIX.owner;");
    assert!(got[6].contains(&format!(" size=1234;{unique}UNIX.owner={}; /f.bin", meta.uid())), "{}", got[6]);
    assert!(
        got[7].contains(" MLST type;size*;modify;perm;unique*;UNIX.mode;UNIX.owner*;UNIX.group; |"),
        "{}",
        got[7]
    );
    let mlsd = r.lines_with("mlsd| ");
    assert!(
        mlsd[0].contains(&format!("size=1234;{unique}UNIX.owner={}; f.bin", meta.uid())),
        "{}",
        r.describe()
    );
    assert!(!mlsd[0].contains("modify="), "{}", r.describe());
    // CLNT is in the session's log.
    assert!(
        server.wait_for_log(Duration::from_secs(5), |l| l.contains("ringftp-test-client 1.0")),
        "{}",
        server.log_for_failure()
    );
}

#[test]
fn ftplib_hash_and_legacy_digests() {
    let server = TestServer::start("cmd-hash");
    let len = 3 * MIB + 17;
    make_file(&server.root().join("big file.bin"), len, 4);
    fs::create_dir(server.root().join("d")).unwrap();
    let data = pattern(len as usize, 4);
    let sha256 = hex(&sha2::Sha256::digest(&data));
    let sha1 = hex(&sha1::Sha1::digest(&data));
    let md5 = hex(&md5::Md5::digest(&data));
    let crc = format!("{:08x}", crc32fast::hash(&data));
    let steps = raw(&[
        "HASH big file.bin",
        "OPTS HASH SHA-1",
        "HASH big file.bin",
        "OPTS HASH MD5",
        "HASH big file.bin",
        "OPTS HASH CRC32",
        "HASH big file.bin",
        "OPTS HASH SHA-512",
        "OPTS HASH",
        "XCRC big file.bin",
        "XMD5 big file.bin",
        "XSHA1 big file.bin",
        "XSHA256 big file.bin",
        "HASH d",
        "HASH missing",
        "FEAT",
    ]);
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let r = py(&server, &steps).ok(&server);
    let got = replies(&r);
    let want = [
        format!("213 SHA-256 0-{len} {sha256} big file.bin"),
        "200 SHA-1".into(),
        format!("213 SHA-1 0-{len} {sha1} big file.bin"),
        "200 MD5".into(),
        format!("213 MD5 0-{len} {md5} big file.bin"),
        "200 CRC32".into(),
        format!("213 CRC32 0-{len} {crc} big file.bin"),
    ];
    assert_eq!(got[..7], want, "{}", r.describe());
    assert!(got[7].starts_with("ERR 504"), "{}", r.describe());
    assert_eq!(got[8], "200 CRC32");
    assert_eq!(
        got[9..13],
        [format!("250 {crc}"), format!("250 {md5}"), format!("250 {sha1}"), format!("250 {sha256}")]
    );
    assert!(got[13].starts_with("ERR 550") && got[14].starts_with("ERR 550"), "{}", r.describe());
    assert!(got[15].contains(" HASH SHA-256;SHA-1;MD5;CRC32* |"), "{}", got[15]);
}

#[test]
fn curl_quote_mfmt_chmod_and_hash() {
    let server = TestServer::start("cmd-curl");
    let f = server.root().join("c.bin");
    make_file(&f, 100, 5);
    let out = run_text(
        curl(&server)
            .args(["-Q", "MFMT 20200102030405 c.bin", "-Q", "SITE CHMOD 640 c.bin", "-Q", "XSHA256 c.bin"])
            .arg("-o")
            .arg(server.work().join("c.out"))
            .arg(server.url("/c.bin")),
    )
    .ok(&server);
    let sent = curl_sent(&out.stderr);
    assert!(sent.iter().any(|l| l.starts_with("MFMT")), "{}", out.describe());
    assert!(out.stderr.contains("< 213 Modify=20200102030405; c.bin"), "{}", out.describe());
    let digest = sha256_file(&f);
    assert!(out.stderr.contains(&format!("< 250 {digest}")), "{}", out.describe());
    assert_eq!(mtime(&f), T2020);
    assert_eq!(mode(&f), 0o640);
}

#[test]
fn lftp_reverse_mirror_keeps_times_and_modes() {
    let server = TestServer::start("cmd-lftp");
    let local = server.work().join("tree");
    let files =
        [("top.bin", 0o640, T2001), ("sub/x.sh", 0o755, T2020), ("sub/deep/r.txt", 0o600, T2001 + 12345)];
    for (i, (name, m, t)) in files.iter().enumerate() {
        let p = local.join(name);
        make_file(&p, 1000 + i as u64, 10 + i as u64);
        fs::set_permissions(&p, fs::Permissions::from_mode(*m)).unwrap();
        set_mtime(&p, *t);
    }
    let r = run_text(&mut lftp(&server, &server.work(), "mirror -R tree /up")).ok(&server);
    for (name, m, t) in files {
        let p = server.root().join("up").join(name);
        assert_eq!(sha256_file(&p), sha256_file(&local.join(name)), "{name}");
        assert_eq!(mtime(&p), t, "{name} mtime\n{}\n{}", r.describe(), server.log_for_failure());
        assert_eq!(mode(&p), m, "{name} mode\n{}", r.describe());
    }
}

fn rclone(server: &TestServer) -> Command {
    common::rclone(&server.host(), server.port())
}

#[test]
fn rclone_copy_keeps_modification_times_and_check_is_clean() {
    let server = TestServer::start("cmd-rclone");
    let local = server.work().join("src");
    let files = [("a.bin", T2001), ("dir/b.bin", T2020), ("dir/c d.bin", T2001 + 7)];
    for (i, (name, t)) in files.iter().enumerate() {
        let p = local.join(name);
        make_file(&p, 5000 + i as u64 * 1000, 20 + i as u64);
        set_mtime(&p, *t);
    }
    let timeout = Duration::from_secs(90);
    let r = run_text_timeout(rclone(&server).args(["copy", "-v"]).arg(&local).arg(":ftp:dst"), timeout)
        .ok(&server);
    assert!(!r.stderr.contains("SetModTime is not supported"), "{}", r.describe());
    for (name, t) in files {
        let p = server.root().join("dst").join(name);
        assert_eq!(sha256_file(&p), sha256_file(&local.join(name)), "{name}");
        assert_eq!(mtime(&p), t, "{name} mtime\n{}", r.describe());
    }
    let check =
        run_text_timeout(rclone(&server).arg("check").arg(&local).arg(":ftp:dst"), timeout).ok(&server);
    assert!(check.stderr.contains("0 differences found"), "{}", check.describe());
    eprintln!("rclone check: {}", check.stderr.trim());
    // And the times as rclone reads them back (MLSD modify=).
    let lsl = run_text_timeout(rclone(&server).args(["lsl", ":ftp:dst"]), timeout).ok(&server);
    assert!(lsl.stdout.contains("2001-09-09 01:46:40"), "{}", lsl.describe());
}
