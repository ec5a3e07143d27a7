//! `--hash-uploads`: the digest computed while an upload streams, kept in the extended
//! attribute `user.ringftp.<algo>` and used by HASH while the file keeps its size and mtime.
//! Uploads with curl (spliced, and TYPE A through a buffer) and Python's ftplib (also with
//! `--uploads atomic`, and STOU); digests checked against sha2/md5/crc32fast. The attribute
//! checks are skipped only where the filesystem of the test directory has no user xattrs.
//! FTPS (PROT P) uploads are hashed through the buffered path.

mod common;
mod tls_common;

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use sha2::Digest as _;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// The value of the attribute `name` of `path`; `None` if it has none.
fn xattr(path: &Path, name: &str) -> Option<String> {
    let (p, n) = (c_path(path), CString::new(name).unwrap());
    let mut buf = [0u8; 512];
    // SAFETY: valid NUL-terminated strings and a writable buffer of the given length.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let len = usize::try_from(len).ok()?;
    Some(String::from_utf8(buf[..len].to_vec()).unwrap())
}

fn set_xattr(path: &Path, name: &str, value: &str) -> std::io::Result<()> {
    let (p, n) = (c_path(path), CString::new(name).unwrap());
    // SAFETY: valid NUL-terminated strings and a value buffer of the given length.
    let rc = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether the filesystem of `dir` keeps user xattrs (tmpfs before Linux 6.6 does not).
fn has_user_xattrs(dir: &Path) -> bool {
    let probe = dir.join(".xattr-probe");
    fs::write(&probe, b"").unwrap();
    let ok = set_xattr(&probe, "user.probe", "1").is_ok();
    fs::remove_file(&probe).unwrap();
    ok
}

/// What the server stores for `path` as it is now: `<size> <mtime ns> <hex>`.
fn expected_value(path: &Path, digest: &str) -> String {
    let m = fs::metadata(path).unwrap();
    let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
    format!("{} {mtime} {digest}", m.len())
}

/// Asserts the stored digest of `path` is `digest` for the file as it is now.
fn assert_stored(path: &Path, algo: &str, digest: &str, server: &TestServer) {
    let got = xattr(path, &format!("user.ringftp.{algo}"));
    assert_eq!(got, Some(expected_value(path, digest)), "{}: {}", path.display(), server.log_for_failure());
}

fn replies(r: &Ran) -> Vec<String> {
    r.stdout.lines().filter_map(|l| l.strip_prefix("raw: ")).map(str::to_string).collect()
}

fn sha256(data: &[u8]) -> String {
    hex(&sha2::Sha256::digest(data))
}

#[test]
fn curl_upload_keeps_sha256_and_hash_uses_it() {
    let server = TestServer::builder("hashup-curl").args(["--hash-uploads", "sha256"]).start();
    let xattrs = has_user_xattrs(&server.root());
    // Past the 2 MiB hashed on the shard (the rest on a hasher thread), and a small one.
    for (name, len) in [("big.bin", 5 * MIB + 3), ("small.bin", 100)] {
        let src = server.work().join(name);
        make_file(&src, len, 7);
        run_text(curl(&server).arg("-T").arg(&src).arg(server.url(&format!("/{name}")))).ok(&server);
        let data = pattern(len as usize, 7);
        let stored = server.root().join(name);
        assert_eq!(fs::read(&stored).unwrap(), data);
        if xattrs {
            assert_stored(&stored, "sha256", &sha256(&data), &server);
        }
        let r = py(&server, &[&format!("raw HASH {name}")]).ok(&server);
        assert_eq!(
            replies(&r),
            [format!("213 SHA-256 0-{len} {} {name}", sha256(&data))],
            "{}",
            r.describe()
        );
    }
    if !xattrs {
        return;
    }
    // HASH answers from the attribute while size and mtime match: a planted digest shows it.
    let small = server.root().join("small.bin");
    let fake = "00".repeat(32);
    set_xattr(&small, "user.ringftp.sha256", &expected_value(&small, &fake)).unwrap();
    let r = py(&server, &["raw HASH small.bin", "raw OPTS HASH MD5", "raw HASH small.bin"]).ok(&server);
    let md5 = hex(&md5::Md5::digest(pattern(100, 7)));
    assert_eq!(
        replies(&r),
        [
            format!("213 SHA-256 0-100 {fake} small.bin"),
            "200 MD5".into(),
            format!("213 MD5 0-100 {md5} small.bin")
        ],
        "{}",
        r.describe()
    );
    // Rewritten in place by someone else (same size, new mtime): computed again.
    std::thread::sleep(Duration::from_millis(20));
    let other = pattern(100, 8);
    fs::write(&small, &other).unwrap();
    let r = py(&server, &["raw XSHA256 small.bin"]).ok(&server);
    assert_eq!(replies(&r), [format!("250 {}", sha256(&other))], "{}", r.describe());
}

#[test]
fn ftplib_md5_atomic_appe_and_stou() {
    let server =
        TestServer::builder("hashup-ftplib").args(["--hash-uploads", "md5", "--uploads", "atomic"]).start();
    let xattrs = has_user_xattrs(&server.root());
    let len = 3 * MIB + 1;
    let src = server.work().join("a.bin");
    make_file(&src, len, 9);
    let data = pattern(len as usize, 9);
    let md5 = |d: &[u8]| hex(&md5::Md5::digest(d));
    let tail = server.work().join("tail.bin");
    fs::write(&tail, b"appended").unwrap();
    let (s, t) = (src.to_str().unwrap(), tail.to_str().unwrap());
    let r = py(
        &server,
        &[
            &format!("put {s} a.bin"),
            "raw OPTS HASH MD5",
            "raw HASH a.bin",
            "raw XMD5 a.bin",
            &format!("stou {t} u.bin"),
        ],
    )
    .ok(&server);
    let got = replies(&r);
    assert_eq!(got[1], format!("213 MD5 0-{len} {} a.bin", md5(&data)), "{}", r.describe());
    assert_eq!(got[2], format!("250 {}", md5(&data)), "{}", r.describe());
    let stored = server.root().join("a.bin");
    if xattrs {
        // Kept through the rename that commits an atomic upload; only the configured digest.
        assert_stored(&stored, "md5", &md5(&data), &server);
        assert_eq!(xattr(&stored, "user.ringftp.sha256"), None);
        assert_stored(&server.root().join("u.bin"), "md5", &md5(b"appended"), &server);
    }
    // APPE changes the file: HASH computes the new digest; APPE itself keeps none.
    let r = py(&server, &[&format!("appe {t} a.bin"), "raw OPTS HASH MD5", "raw HASH a.bin"]).ok(&server);
    let mut whole = data.clone();
    whole.extend_from_slice(b"appended");
    let got = replies(&r);
    assert_eq!(got[1], format!("213 MD5 0-{} {} a.bin", len + 8, md5(&whole)), "{}", r.describe());
    if xattrs {
        let value = xattr(&stored, "user.ringftp.md5").unwrap();
        assert_ne!(value, expected_value(&stored, &md5(&whole)), "APPE must not store a digest");
    }
    // REST + STOR resumes a file: not a whole upload, no digest.
    let r = py(&server, &[&format!("put {s} r.bin 1000")]).ok(&server);
    assert!(r.stdout.contains("put: 226"), "{}", r.describe());
    if xattrs {
        assert_eq!(xattr(&server.root().join("r.bin"), "user.ringftp.md5"), None);
    }
}

#[test]
fn ascii_upload_hashes_what_is_stored() {
    let server = TestServer::builder("hashup-ascii").args(["--hash-uploads", "sha256"]).start();
    let xattrs = has_user_xattrs(&server.root());
    // curl -B sends TYPE A and the file with CRLF line ends; the server stores LF.
    let src = server.work().join("t.txt");
    let text: Vec<u8> = (0..20_000).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
    fs::write(&src, &text).unwrap();
    let out =
        run_text(curl(&server).arg("--use-ascii").arg("-T").arg(&src).arg(server.url("/t.txt"))).ok(&server);
    assert!(curl_sent(&out.stderr).iter().any(|l| l == "TYPE A"), "{}", out.describe());
    let stored = server.root().join("t.txt");
    let disk = fs::read(&stored).unwrap();
    assert!(disk == text, "TYPE A stores LF line ends ({} bytes on disk)", disk.len());
    if xattrs {
        assert_stored(&stored, "sha256", &sha256(&disk), &server);
    }
    let r = py(&server, &["raw XSHA256 t.txt"]).ok(&server);
    assert_eq!(replies(&r), [format!("250 {}", sha256(&disk))], "{}", r.describe());
    // The same by hand, to see the wire: CRLF in, LF on disk and in the digest.
    let timeout = Duration::from_secs(10);
    let mut c = Control::connect(server.addr(), timeout);
    c.login(USER, PASS);
    assert_eq!(c.cmd("TYPE A").0, 200);
    let (code, text) = c.cmd("PASV");
    assert_eq!(code, 227, "{text}");
    let mut data = TcpStream::connect_timeout(&pasv_addr(&text), timeout).unwrap();
    c.send("STOR crlf.txt");
    assert_eq!(c.reply().unwrap().0, 150);
    data.write_all(b"a\r\nb\r\n").unwrap();
    drop(data);
    assert_eq!(c.reply().unwrap().0, 226);
    let stored = server.root().join("crlf.txt");
    assert_eq!(fs::read(&stored).unwrap(), b"a\nb\n");
    assert_eq!(c.cmd("XSHA256 crlf.txt"), (250, format!("250 {}", sha256(b"a\nb\n"))));
    if xattrs {
        assert_stored(&stored, "sha256", &sha256(b"a\nb\n"), &server);
    }
}

/// The data address of a 227 reply.
fn pasv_addr(text: &str) -> SocketAddr {
    let inner = text.split('(').nth(1).and_then(|s| s.split(')').next()).unwrap();
    let n: Vec<u16> = inner.split(',').map(|x| x.trim().parse().unwrap()).collect();
    format!("{}.{}.{}.{}:{}", n[0], n[1], n[2], n[3], n[4] * 256 + n[5]).parse().unwrap()
}

#[test]
fn aborted_upload_keeps_no_digest() {
    let server = TestServer::builder("hashup-abor").args(["--hash-uploads", "crc32"]).start();
    let timeout = Duration::from_secs(10);
    let mut c = Control::connect(server.addr(), timeout);
    c.login(USER, PASS);
    assert_eq!(c.cmd("TYPE I").0, 200);
    let (code, text) = c.cmd("PASV");
    assert_eq!(code, 227, "{text}");
    let mut data = TcpStream::connect_timeout(&pasv_addr(&text), timeout).unwrap();
    c.send("STOR part.bin");
    assert_eq!(c.reply().unwrap().0, 150);
    data.write_all(&pattern(3 * MIB as usize, 3)).unwrap();
    // Wait (bounded) until the server has written some of it, then abort.
    let part = server.root().join("part.bin");
    let deadline = std::time::Instant::now() + timeout;
    while fs::metadata(&part).map_or(0, |m| m.len()) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    c.send("ABOR");
    let first = c.reply().unwrap();
    assert!(first.0 == 426 || first.0 == 226, "{first:?}");
    if first.0 == 426 {
        assert_eq!(c.reply().unwrap().0, 226);
    }
    drop(data);
    assert_eq!(c.cmd("NOOP").0, 200);
    assert!(fs::metadata(&part).unwrap().len() > 0);
    assert_eq!(xattr(&part, "user.ringftp.crc32"), None, "{}", server.log_for_failure());
    // The same session's next whole upload does keep one.
    let (code, text) = c.cmd("PASV");
    assert_eq!(code, 227, "{text}");
    let mut data = TcpStream::connect_timeout(&pasv_addr(&text), timeout).unwrap();
    c.send("STOR whole.bin");
    assert_eq!(c.reply().unwrap().0, 150);
    data.write_all(b"hello").unwrap();
    drop(data);
    assert_eq!(c.reply().unwrap().0, 226);
    let (code, text) = c.cmd("XCRC whole.bin");
    assert_eq!((code, text), (250, format!("250 {:08x}", crc32fast::hash(b"hello"))));
    if has_user_xattrs(&server.root()) {
        assert_stored(
            &server.root().join("whole.bin"),
            "crc32",
            &format!("{:08x}", crc32fast::hash(b"hello")),
            &server,
        );
    }
}

#[test]
fn ftps_upload_keeps_sha1() {
    let pki = tls_common::Pki::new();
    let (cert, key) = (pki.cert.display().to_string(), pki.key.display().to_string());
    let server = TestServer::builder("hashup-tls")
        .args(["--hash-uploads", "sha1", "--tls-cert", &cert, "--tls-key", &key])
        .start();
    let len = 3 * MIB + 5;
    let src = server.work().join("s.bin");
    make_file(&src, len, 11);
    let data = pattern(len as usize, 11);
    let url = format!("ftp://localhost:{}/s.bin", server.port());
    let ca = pki.ca.display().to_string();
    run_text(curl(&server).args(["--ssl-reqd", "--cacert", &ca, "-T"]).arg(&src).arg(&url)).ok(&server);
    let stored = server.root().join("s.bin");
    assert!(fs::read(&stored).unwrap() == data);
    let sha1 = hex(&sha1::Sha1::digest(&data));
    if has_user_xattrs(&server.root()) {
        assert_stored(&stored, "sha1", &sha1, &server);
    }
    let r = py(&server, &["raw XSHA1 s.bin"]).ok(&server);
    assert_eq!(replies(&r), [format!("250 {sha1}")], "{}", r.describe());
}
