//! curl against ringftpd: uploads and downloads in each data connection mode (checking in
//! curl's verbose output that the mode asked for is the one used, since curl falls back
//! silently), resume both ways, and quote commands.

mod common;

use std::fs;
use std::path::Path;

use common::*;

#[derive(Debug, Clone, Copy)]
enum Mode {
    Epsv,
    Pasv,
    Eprt,
    Port,
}

impl Mode {
    fn curl_args(self) -> &'static [&'static str] {
        match self {
            Mode::Epsv => &[],
            Mode::Pasv => &["--disable-epsv"],
            Mode::Eprt => &["-P", "-"],
            Mode::Port => &["-P", "-", "--disable-eprt"],
        }
    }

    /// Asserts that curl used exactly this mode (and did not fall back to another).
    fn check(self, r: &Ran, server: &TestServer) {
        let sent = curl_sent(&r.stderr);
        let has = |prefix: &str| sent.iter().any(|c| c.starts_with(prefix));
        let (want, reply, not): (&str, &str, &[&str]) = match self {
            Mode::Epsv => ("EPSV", "< 229 ", &["PASV", "EPRT", "PORT"]),
            Mode::Pasv => ("PASV", "< 227 ", &["EPSV", "EPRT", "PORT"]),
            Mode::Eprt => ("EPRT |1|127.0.0.1|", "< 200 EPRT", &["EPSV", "PASV", "PORT"]),
            Mode::Port => ("PORT 127,0,0,1,", "< 200 PORT", &["EPSV", "PASV", "EPRT"]),
        };
        assert!(
            has(want),
            "curl did not send {want} ({self:?}); sent {sent:?}\n{}",
            server.log_for_failure()
        );
        assert!(r.stderr.contains(reply), "no {reply:?} reply in {self:?} mode:\n{}", r.describe());
        for other in not {
            assert!(!has(other), "curl fell back to {other} in {self:?} mode; sent {sent:?}");
        }
    }
}

fn upload(server: &TestServer, mode: Mode, src: &Path, remote: &str) -> Ran {
    let mut c = curl(server);
    c.args(mode.curl_args()).arg("-T").arg(src).arg(server.url(remote));
    let r = run_text(&mut c).ok(server);
    mode.check(&r, server);
    assert!(r.stderr.contains("< 226"), "{}", r.describe());
    r
}

fn download(server: &TestServer, mode: Mode, remote: &str, dst: &Path) -> Ran {
    let mut c = curl(server);
    c.args(mode.curl_args()).arg("-o").arg(dst).arg(server.url(remote));
    let r = run_text(&mut c).ok(server);
    mode.check(&r, server);
    assert!(r.stderr.contains("< 226"), "{}", r.describe());
    r
}

/// Uploads and downloads files of 0 B, 1 B and 1 MiB + 1 in one mode.
fn roundtrip(mode: Mode) {
    let server = TestServer::start(&format!("curl-{mode:?}"));
    let work = server.work();
    for (i, size) in [0, 1, MIB + 1].into_iter().enumerate() {
        let seed = 100 + i as u64;
        // Upload: the file on the server must be identical.
        let src = work.join(format!("src_{size}.bin"));
        make_file(&src, size, seed);
        let remote = format!("up_{size}.bin");
        upload(&server, mode, &src, &remote);
        assert_same_file(&src, &server.root().join(&remote), &server);

        // Download of a file put on disk by the test.
        let on_server = server.root().join(format!("down_{size}.bin"));
        make_file(&on_server, size, seed + 50);
        let dst = work.join(format!("dl_{size}.bin"));
        download(&server, mode, &format!("down_{size}.bin"), &dst);
        assert_same_file(&on_server, &dst, &server);
    }
}

#[test]
fn curl_epsv_upload_download() {
    roundtrip(Mode::Epsv);
}

#[test]
fn curl_pasv_upload_download() {
    roundtrip(Mode::Pasv);
}

#[test]
fn curl_eprt_upload_download() {
    roundtrip(Mode::Eprt);
}

#[test]
fn curl_port_upload_download() {
    roundtrip(Mode::Port);
}

/// 100 MiB up with one mode and back down with another.
fn big_roundtrip(up: Mode, down: Mode) {
    let server = TestServer::start(&format!("curl-100m-{up:?}-{down:?}"));
    let work = server.work();
    let src = work.join("big.bin");
    make_file(&src, 100 * MIB, 42);
    let src_sha = sha256_file(&src);
    upload(&server, up, &src, "big.bin");
    let on_server = server.root().join("big.bin");
    assert_eq!(fs::metadata(&on_server).unwrap().len(), 100 * MIB);
    assert_eq!(sha256_file(&on_server), src_sha, "uploaded 100 MiB differ");
    let dst = work.join("big.down");
    download(&server, down, "big.bin", &dst);
    assert_eq!(fs::metadata(&dst).unwrap().len(), 100 * MIB);
    assert_eq!(sha256_file(&dst), src_sha, "downloaded 100 MiB differ");
}

#[test]
fn curl_100mib_up_epsv_down_port() {
    big_roundtrip(Mode::Epsv, Mode::Port);
}

#[test]
fn curl_100mib_up_eprt_down_pasv() {
    big_roundtrip(Mode::Eprt, Mode::Pasv);
}

#[test]
fn curl_resume_download_uses_rest() {
    let server = TestServer::start("curl-resume-get");
    let full = server.root().join("full.bin");
    make_file(&full, 3 * MIB + 5, 9);
    let part = server.work().join("full.bin");
    let head = 1_048_579usize;
    fs::write(&part, &fs::read(&full).unwrap()[..head]).unwrap();
    let mut c = curl(&server);
    c.args(["-C", "-", "-o"]).arg(&part).arg(server.url("full.bin"));
    let r = run_text(&mut c).ok(&server);
    let sent = curl_sent(&r.stderr);
    assert!(sent.iter().any(|c| c == &format!("REST {head}")), "curl did not send REST {head}: {sent:?}");
    assert!(r.stderr.contains("< 350"), "{}", r.describe());
    assert_same_file(&full, &part, &server);
}

/// Drops `path`'s pages from the page cache (written back first). Returns how many of its
/// pages are still cached, by `cachestat(2)`; `None` where the kernel lacks it. On tmpfs the
/// pages are the file and stay.
fn evict(path: &Path) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    // SAFETY: plain syscalls on a descriptor this function owns; `stat` outlives the call.
    unsafe {
        assert_eq!(libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED), 0);
        let range = [0u64, 0u64]; // offset 0, length 0: to the end of the file
        let mut stat = [0u64; 5];
        let res = libc::syscall(451, f.as_raw_fd(), range.as_ptr(), stat.as_mut_ptr(), 0u32);
        (res == 0).then_some(stat[0])
    }
}

/// Downloads of a file that is not in the page cache take the io_uring path for the chunks
/// the disk must supply, and the cached path for those read ahead: whole and resumed
/// mid-page, the bytes must be the file's.
#[test]
fn curl_download_of_a_file_not_in_the_page_cache() {
    let server = TestServer::start("curl-cold");
    let cold = server.root().join("cold.bin");
    make_file(&cold, 6 * MIB + 123, 77);
    let cached = evict(&cold);
    eprintln!("pages of cold.bin still cached after eviction: {cached:?}");
    let dst = server.work().join("cold.down");
    download(&server, Mode::Epsv, "cold.bin", &dst);
    assert_same_file(&cold, &dst, &server);

    evict(&cold);
    let head = 3 * MIB as usize + 1001;
    let part = server.work().join("cold.part");
    fs::write(&part, &fs::read(&cold).unwrap()[..head]).unwrap();
    evict(&cold);
    let mut c = curl(&server);
    c.args(["-C", "-", "-o"]).arg(&part).arg(server.url("cold.bin"));
    let r = run_text(&mut c).ok(&server);
    assert!(curl_sent(&r.stderr).iter().any(|c| c == &format!("REST {head}")), "{}", r.describe());
    assert_same_file(&cold, &part, &server);
}

#[test]
fn curl_resume_upload() {
    let server = TestServer::start("curl-resume-put");
    let src = server.work().join("src.bin");
    make_file(&src, 2 * MIB + 17, 10);
    let remote = server.root().join("partial.bin");
    fs::write(&remote, &fs::read(&src).unwrap()[..1_234_567]).unwrap();
    let mut c = curl(&server);
    c.args(["-C", "-", "-T"]).arg(&src).arg(server.url("partial.bin"));
    let r = run_text(&mut c).ok(&server);
    let sent = curl_sent(&r.stderr);
    // curl asks SIZE, then appends the rest (APPE) or restarts the STOR there (REST).
    assert!(sent.iter().any(|c| c == "SIZE partial.bin"), "{sent:?}");
    assert!(r.stderr.contains("< 213 1234567"), "{}", r.describe());
    assert!(sent.iter().any(|c| c == "APPE partial.bin" || c == "REST 1234567"), "{sent:?}");
    assert_same_file(&src, &remote, &server);
}

#[test]
fn curl_create_dirs_and_quote_commands() {
    let server = TestServer::start("curl-quote");
    let src = server.work().join("f.txt");
    fs::write(&src, b"nested file\n").unwrap();
    // --ftp-create-dirs makes a/b/c; a pre-quote MKD runs before the transfer.
    let mut c = curl(&server);
    c.args(["--ftp-create-dirs", "-Q", "MKD /pre", "-T"]).arg(&src).arg(server.url("a/b/c/f.txt"));
    let r = run_text(&mut c).ok(&server);
    assert!(r.stderr.contains("> MKD a"), "{}", r.describe());
    assert_eq!(fs::read(server.root().join("a/b/c/f.txt")).unwrap(), b"nested file\n");
    assert!(server.root().join("pre").is_dir());

    // Post-quote: rename, then delete, after a listing.
    let mut c = curl(&server);
    c.args(["--list-only", "-Q", "-RNFR /a/b/c/f.txt", "-Q", "-RNTO /a/g.txt", "-Q", "-RMD /pre"])
        .arg(server.url("a/b/c/"));
    let r = run_text(&mut c).ok(&server);
    assert_eq!(r.stdout.trim(), "f.txt", "{}", r.describe());
    assert!(!server.root().join("a/b/c/f.txt").exists());
    assert_eq!(fs::read(server.root().join("a/g.txt")).unwrap(), b"nested file\n");
    assert!(!server.root().join("pre").exists());

    let mut c = curl(&server);
    c.args(["--list-only", "-Q", "-DELE /a/g.txt"]).arg(server.url("a/"));
    let r = run_text(&mut c).ok(&server);
    let mut names: Vec<&str> = r.stdout.lines().collect();
    names.sort_unstable();
    assert_eq!(names, ["b", "g.txt"], "{}", r.describe());
    assert!(!server.root().join("a/g.txt").exists());

    // A failing quote command makes curl fail (550 for a missing file).
    let mut c = curl(&server);
    c.args(["--list-only", "-Q", "DELE /missing"]).arg(server.url(""));
    let r = run_text(&mut c).fails(&server);
    assert!(r.stderr.contains("< 550"), "{}", r.describe());
}

#[test]
fn curl_missing_file_is_550() {
    let server = TestServer::start("curl-missing");
    let mut c = curl(&server);
    c.arg("-o").arg(server.work().join("x")).arg(server.url("nope.bin"));
    let r = run_text(&mut c).fails(&server);
    assert!(r.stderr.contains("< 550"), "{}", r.describe());
    // curl's "remote file not found".
    assert_eq!(r.status.code(), Some(78), "{}", r.describe());
}

#[test]
fn curl_one_url_per_process_over_many_files() {
    // Many short sessions one after the other: each must be served (no leaked ports or
    // sessions in between).
    let server = TestServer::builder("curl-many").args(["--passive-ports", "32100-32103"]).start();
    for i in 0..40u64 {
        let name = format!("f{i}.bin");
        let p = server.root().join(&name);
        make_file(&p, 1000 + i, i);
        let dst = server.work().join(&name);
        let mut c = curl(&server);
        c.args(Mode::Epsv.curl_args()).arg("-o").arg(&dst).arg(server.url(&name));
        let r = run_text(&mut c).ok(&server);
        assert!(r.stderr.contains("|||3210"), "{}", r.describe());
        assert_same_file(&p, &dst, &server);
    }
}
