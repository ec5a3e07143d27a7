//! Upload integrity: a full disk or a file-size limit answers 452 and the session goes on;
//! `--uploads keep` leaves an interrupted upload's partial file for REST to resume;
//! `--uploads atomic` shows a file under its name only once complete, keeps the old content
//! visible meanwhile, and leaves nothing behind when the client or the server dies.
//!
//! An upload in progress under `atomic` is an unnamed file (O_TMPFILE): the tests find it in
//! `/proc/<server>/fd` (a link to `DIR/#INODE (deleted)`) to know how much has arrived.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(20);

/// The names in a directory.
fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Sizes of the unnamed files (O_TMPFILE, or unlinked ones) the server holds open in `dir`,
/// one entry per file (the server may hold a file through more than one descriptor).
fn open_unnamed_files(pid: u32, dir: &Path) -> Vec<u64> {
    use std::os::unix::fs::MetadataExt;
    let prefix = format!("{}/", dir.display());
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    let files: BTreeMap<u64, u64> = entries
        .flatten()
        .filter_map(|e| {
            let target = fs::read_link(e.path()).ok()?.display().to_string();
            let rest = target.strip_prefix(&prefix)?;
            // Directly in `dir`, and without a name.
            (!rest.contains('/') && rest.ends_with(" (deleted)")).then(|| fs::metadata(e.path()).ok())?
        })
        .map(|m| (m.ino(), m.len()))
        .collect();
    files.into_values().collect()
}

/// Closes a socket with a reset (SO_LINGER 0) instead of a FIN.
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
}

/// TYPE I, EPSV, `STOR name` (150 expected), then the first bytes: the upload is running.
fn begin_upload(c: &mut Control, name: &str, first: &[u8]) -> TcpStream {
    assert_eq!(c.cmd("TYPE I").0, 200);
    let mut data = c.epsv();
    let (code, text) = c.cmd(&format!("STOR {name}"));
    assert_eq!(code, 150, "STOR {name}: {text}");
    data.write_all(first).unwrap();
    data
}

/// Waits until the server has written `len` bytes into an unnamed file in `dir`.
fn wait_unnamed(server: &TestServer, dir: &Path, len: u64, how_many: usize) {
    let ok = wait_until(T, || {
        open_unnamed_files(server.pid(), dir).iter().filter(|&&l| l == len).count() == how_many
    });
    assert!(
        ok,
        "expected {how_many} unnamed upload file(s) of {len} bytes held by the server in {}; it holds {:?}\n{}",
        dir.display(),
        open_unnamed_files(server.pid(), dir),
        server.log_for_failure()
    );
}

/// Waits until the server has written `len` bytes into `path`.
fn wait_len(server: &TestServer, path: &Path, len: u64) {
    let ok = wait_until(T, || fs::metadata(path).is_ok_and(|m| m.len() == len));
    assert!(
        ok,
        "{} has {:?} bytes, expected {len}\n{}",
        path.display(),
        fs::metadata(path).map(|m| m.len()),
        server.log_for_failure()
    );
}

/// Waits until the server logs the end of the session whose client end is `peer`.
fn wait_session_closed(server: &TestServer, peer: &str) {
    let needle = format!("peer={peer} ");
    let ok =
        server.wait_for_log(T, |log| log.lines().any(|l| l.contains(&needle) && l.ends_with(": closed")));
    assert!(ok, "the session of {peer} did not end\n{}", server.log_for_failure());
}

/// The Python client running `put_stall`, stopped after it sent its bytes.
struct Stalled {
    child: Child,
    /// The client end of its control connection.
    control: String,
}

impl Stalled {
    fn start(server: &TestServer, local: &Path, remote: &str, bytes: usize) -> Stalled {
        let mut cmd = ftpclient(server);
        cmd.args(["--user", USER, "--password", PASS])
            .arg(format!("put_stall '{}' {remote} {bytes}", local.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("python3");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut control = None;
        let mut seen = Vec::new();
        loop {
            let Ok(line) = rx.recv_timeout(T) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("put_stall did not stall within {T:?}; output {seen:?}\n{}", server.log_for_failure());
            };
            if let Some(addr) = line.strip_prefix("put_stall-control: ") {
                control = Some(addr.to_string());
            }
            let stalled = line.starts_with("put_stall: stalled");
            seen.push(line);
            if stalled {
                break;
            }
        }
        let control = control.unwrap_or_else(|| panic!("no control address in {seen:?}"));
        Stalled { child, control }
    }

    /// SIGKILL, as a crashing client.
    fn kill(mut self) -> String {
        self.child.kill().unwrap();
        let _ = self.child.wait();
        std::mem::take(&mut self.control)
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_fsize_limit_1mib() -> io::Result<()> {
    let lim = libc::rlimit { rlim_cur: MIB as libc::rlim_t, rlim_max: MIB as libc::rlim_t };
    // SAFETY: setrlimit is async-signal-safe and only reads the local struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends `content` on `data` from a thread (the server may stop reading and reset), then
/// closes it; the thread's result says whether every byte was written.
fn send_in_background(mut data: TcpStream, content: Vec<u8>) -> thread::JoinHandle<bool> {
    thread::spawn(move || {
        let ok = data.write_all(&content).is_ok();
        let _ = data.shutdown(Shutdown::Write);
        ok
    })
}

#[test]
fn file_size_limit_answers_452_and_the_session_goes_on() {
    // ringftpd ignores SIGXFSZ, so writes past RLIMIT_FSIZE fail with EFBIG instead of
    // killing it.
    let server = TestServer::builder("efbig").pre_exec(set_fsize_limit_1mib).start();
    let root = server.root();
    make_file(&root.join("down.bin"), 2 * MIB, 21);
    let mut other = Control::connect(server.addr(), T);
    other.login(USER, PASS);
    let mut c = Control::connect(server.addr(), T);
    c.login(USER, PASS);

    let big = pattern(3 * MIB as usize, 22);
    assert_eq!(c.cmd("TYPE I").0, 200);
    let data = c.epsv();
    let (code, text) = c.cmd("STOR big.bin");
    assert_eq!(code, 150, "STOR: {text}");
    let sender = send_in_background(data, big.clone());
    // Another session downloads meanwhile.
    let got = other.download("down.bin").unwrap_or_else(|e| panic!("parallel download: {e:?}"));
    assert!(got == pattern(2 * MIB as usize, 21), "parallel download differs");
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 452, "STOR of 3 MiB past a 1 MiB RLIMIT_FSIZE: {text}\n{}", server.log_for_failure());
    let _ = sender.join();

    assert_eq!(c.cmd("NOOP").0, 200, "session after the 452");
    let small = pattern(100_000, 23);
    let (code, text) = c.upload("small.bin", &small);
    assert_eq!(code, 226, "100 KB STOR after the 452: {text}");
    assert!(fs::read(root.join("small.bin")).unwrap() == small);
    // Keep mode: the part that fit stays, and it is the start of the upload.
    let partial = fs::read(root.join("big.bin")).unwrap();
    assert!(partial.len() as u64 <= MIB, "big.bin has {} bytes past the 1 MiB limit", partial.len());
    assert!(partial == big[..partial.len()], "big.bin is not a prefix of the upload");
    assert!(other.download("small.bin").unwrap() == small);
}

/// Unmounts (lazily) on drop.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_answers_452_and_the_session_goes_on() {
    let server = TestServer::start("enospc");
    let root = server.root();
    let small_fs = root.join("small");
    // Dropped before the server (declared after it), so the scratch directory is removed
    // once the mount is gone.
    let Some(_mount) = mount_small_tmpfs(&small_fs) else { return };
    make_file(&root.join("down.bin"), MIB, 31);
    let mut other = Control::connect(server.addr(), T);
    other.login(USER, PASS);
    let mut c = Control::connect(server.addr(), T);
    c.login(USER, PASS);

    assert_eq!(c.cmd("TYPE I").0, 200);
    let data = c.epsv();
    let (code, text) = c.cmd("STOR small/big.bin");
    assert_eq!(code, 150, "STOR: {text}");
    let sender = send_in_background(data, pattern(3 * MIB as usize, 32));
    let got = other.download("down.bin").unwrap_or_else(|e| panic!("parallel download: {e:?}"));
    assert!(got == pattern(MIB as usize, 31));
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 452, "STOR of 3 MiB into a 2 MiB tmpfs: {text}\n{}", server.log_for_failure());
    let _ = sender.join();

    assert_eq!(c.cmd("NOOP").0, 200);
    let small = pattern(100_000, 33);
    assert_eq!(c.upload("ok.bin", &small).0, 226, "100 KB STOR elsewhere after the 452");
    assert!(fs::read(root.join("ok.bin")).unwrap() == small);
    // Room again once the partial file is gone.
    assert_eq!(c.cmd("DELE small/big.bin").0, 250);
    assert_eq!(c.upload("small/ok.bin", &small).0, 226, "100 KB STOR into the emptied tmpfs");
    assert!(fs::read(small_fs.join("ok.bin")).unwrap() == small);
}

/// Mounts a 2 MiB tmpfs on `dir`; `None` (with a note) where mounting is not allowed.
fn mount_small_tmpfs(dir: &Path) -> Option<Mounted> {
    fs::create_dir_all(dir).unwrap();
    let mounted = run_timeout(
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=2m", "ringftp-test"]).arg(dir),
        Duration::from_secs(20),
    );
    if mounted.status.success() {
        Some(Mounted(dir.to_path_buf()))
    } else {
        eprintln!(
            "note: cannot mount a 2 MiB tmpfs ({}): the real full-disk test is skipped; \
             file_size_limit_answers_452_and_the_session_goes_on covers the 452 path",
            String::from_utf8_lossy(&mounted.stderr).trim()
        );
        None
    }
}

#[test]
fn full_disk_atomic_upload_answers_452_and_frees_the_space() {
    let server = TestServer::with_args("enospc-atomic", &["--uploads", "atomic"]);
    let small_fs = server.root().join("small");
    // Dropped before the server (declared after it).
    let Some(_mount) = mount_small_tmpfs(&small_fs) else { return };
    fs::write(small_fs.join("old.bin"), b"old content").unwrap();
    let mut c = Control::connect(server.addr(), T);
    c.login(USER, PASS);
    for name in ["small/old.bin", "small/new.bin"] {
        assert_eq!(c.cmd("TYPE I").0, 200);
        let data = c.epsv();
        let (code, text) = c.cmd(&format!("STOR {name}"));
        assert_eq!(code, 150, "STOR: {text}");
        let sender = send_in_background(data, pattern(3 * MIB as usize, 35));
        let (code, text) = c.reply().unwrap();
        assert_eq!(
            code,
            452,
            "atomic STOR of 3 MiB into a 2 MiB tmpfs: {text}\n{}",
            server.log_for_failure()
        );
        let _ = sender.join();
        assert_eq!(names(&small_fs), set(&["old.bin"]), "after the failed {name}");
        assert_eq!(fs::read(small_fs.join("old.bin")).unwrap(), b"old content");
        // The unnamed file is gone, and its space with it: a 1.5 MiB upload fits again.
        let fits = pattern(MIB as usize * 3 / 2, 36);
        let (code, text) = c.upload("small/fits.bin", &fits);
        assert_eq!(
            code,
            226,
            "1.5 MiB into the tmpfs after the failed {name}: {text}\n{}",
            server.log_for_failure()
        );
        assert!(fs::read(small_fs.join("fits.bin")).unwrap() == fits);
        assert_eq!(c.cmd("DELE small/fits.bin").0, 250);
    }
}

#[test]
fn keep_interrupted_upload_stays_and_rest_resumes_it() {
    let server = TestServer::with_args("keep-reset", &["--uploads", "keep"]);
    let path = server.root().join("part.bin");
    let full = pattern(3 * MIB as usize, 61);
    let cut = 1_234_567;
    let mut c = Control::connect(server.addr(), T);
    c.login(USER, PASS);
    let data = begin_upload(&mut c, "part.bin", &full[..cut]);
    wait_len(&server, &path, cut as u64);
    reset(data);
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 426, "upload whose data connection was reset: {text}");
    let partial = fs::read(&path).unwrap();
    assert!(partial.len() == cut && partial == full[..cut], "partial file: {} bytes", partial.len());
    let (code, text) = c.cmd("SIZE part.bin");
    assert_eq!((code, text), (213, format!("213 {cut}")));

    // Resume from where it stopped.
    assert_eq!(c.cmd("TYPE I").0, 200);
    let mut data = c.epsv();
    assert_eq!(c.cmd(&format!("REST {cut}")).0, 350);
    let (code, text) = c.cmd("STOR part.bin");
    assert_eq!(code, 150, "REST + STOR: {text}");
    data.write_all(&full[cut..]).unwrap();
    data.shutdown(Shutdown::Write).unwrap();
    drop(data);
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 226, "resumed upload: {text}");
    let got = fs::read(&path).unwrap();
    assert!(got == full, "resumed file: {} bytes of {}, or different ones", got.len(), full.len());
    assert_eq!(names(&server.root()), set(&["part.bin"]));
}

/// An upload that starts fast (half a pipeful at once, which makes the server wait for
/// quarter pipefuls: SO_RCVLOWAT) and then sends a little at a time and pauses, with the
/// connection open, still has every byte in the file within a bounded wait, and completes.
#[test]
fn an_upload_that_slows_down_after_a_burst_reaches_the_file_at_once() {
    let server = TestServer::with_args("burst-trickle", &["--uploads", "keep"]);
    let path = server.root().join("burst.bin");
    let full = pattern(3 * MIB as usize + 70_000, 63);
    let mut c = Control::connect(server.addr(), T);
    c.login(USER, PASS);
    let mut sent = 3 * MIB as usize;
    let mut data = begin_upload(&mut c, "burst.bin", &full[..sent]);
    wait_len(&server, &path, sent as u64);
    for piece in [1, 999, 4_000, 65_000] {
        data.write_all(&full[sent..sent + piece]).unwrap();
        sent += piece;
        wait_len(&server, &path, sent as u64);
    }
    data.shutdown(Shutdown::Write).unwrap();
    drop(data);
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 226, "upload: {text}");
    let got = fs::read(&path).unwrap();
    assert!(got == full, "file of {} bytes of {}, or different ones", got.len(), full.len());
}

#[test]
fn keep_upload_of_a_killed_client_stays_and_rest_resumes_it() {
    let server = TestServer::with_args("keep-kill", &["--uploads", "keep"]);
    let path = server.root().join("part.bin");
    let src = server.work().join("src.bin");
    make_file(&src, 2 * MIB, 62);
    let cut = 777_777;
    let stalled = Stalled::start(&server, &src, "part.bin", cut);
    wait_len(&server, &path, cut as u64);
    let peer = stalled.kill();
    wait_session_closed(&server, &peer);
    let partial = fs::read(&path).unwrap();
    assert!(partial.len() == cut && partial[..] == fs::read(&src).unwrap()[..cut], "partial file");

    let r = py(&server, &[&format!("put '{}' part.bin {cut}", src.display())]).ok(&server);
    assert!(r.stdout.contains("put: 226"), "{}", r.describe());
    assert_same_file(&src, &path, &server);
}

#[test]
fn atomic_upload_appears_complete_without_temporary_files() {
    let server = TestServer::with_args("atomic-complete", &["--uploads", "atomic"]);
    let root = server.root();
    fs::create_dir(root.join("sub")).unwrap();
    let mut c = Control::connect(server.addr(), T);
    c.login(USER, PASS);
    let content = pattern(2 * MIB as usize + 123, 31);
    assert_eq!(c.upload("new.bin", &content).0, 226);
    assert_eq!(c.upload("sub/deep.bin", &content[..1000]).0, 226);
    assert_eq!(c.upload("empty.bin", b"").0, 226);
    assert!(fs::read(root.join("new.bin")).unwrap() == content);
    assert!(fs::read(root.join("sub/deep.bin")).unwrap() == content[..1000]);
    assert_eq!(fs::metadata(root.join("empty.bin")).unwrap().len(), 0);
    assert_eq!(names(&root), set(&["empty.bin", "new.bin", "sub"]));
    assert_eq!(names(&root.join("sub")), set(&["deep.bin"]));
    // Through ftplib as well, and a download of the result.
    let src = server.work().join("src.bin");
    make_file(&src, 300 * KIB, 34);
    let back = server.work().join("back.bin");
    let r = py(
        &server,
        &[&format!("put '{}' py.bin", src.display()), &format!("get py.bin '{}'", back.display())],
    )
    .ok(&server);
    assert!(r.stdout.contains("put: 226") && r.stdout.contains("get: 226"), "{}", r.describe());
    assert_same_file(&src, &root.join("py.bin"), &server);
    assert_same_file(&src, &back, &server);
    assert_eq!(names(&root), set(&["empty.bin", "new.bin", "py.bin", "sub"]));
    assert!(open_unnamed_files(server.pid(), &root).is_empty());

    // An atomic upload gets the permissions of a file created in place (APPE, which always
    // writes in place).
    let mut data = c.epsv();
    assert_eq!(c.cmd("APPE appended.bin").0, 150);
    data.write_all(b"in place").unwrap();
    drop(data);
    assert_eq!(c.reply().unwrap().0, 226);
    let mode = |name: &str| {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(root.join(name)).unwrap().permissions().mode() & 0o7777
    };
    assert_eq!(mode("new.bin"), mode("appended.bin"), "modes of an atomic STOR and of an APPE");
}

#[test]
fn atomic_overwrite_shows_the_old_content_until_complete() {
    let server = TestServer::with_args("atomic-overwrite", &["--uploads", "atomic"]);
    let root = server.root();
    let old = pattern(2 * MIB as usize, 41);
    fs::write(root.join("f.bin"), &old).unwrap();
    let new = pattern(2 * MIB as usize + 7, 42);
    let half = MIB as usize;
    let mut c = Control::connect(server.addr(), T);
    c.login(USER, PASS);
    let mut data = begin_upload(&mut c, "f.bin", &new[..half]);
    wait_unnamed(&server, &root, half as u64, 1);

    // Mid-upload: on disk and over FTP, f.bin is the old file, whole.
    assert!(fs::read(root.join("f.bin")).unwrap() == old, "f.bin changed during the upload");
    assert_eq!(names(&root), set(&["f.bin"]));
    let mut reader = Control::connect(server.addr(), T);
    reader.login(USER, PASS);
    let got = reader.download("f.bin").unwrap();
    assert!(got == old, "RETR during the upload got {} bytes, not the old file", got.len());
    assert_eq!(reader.cmd("SIZE f.bin").1, format!("213 {}", old.len()));

    data.write_all(&new[half..]).unwrap();
    data.shutdown(Shutdown::Write).unwrap();
    drop(data);
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 226, "upload: {text}");
    assert!(fs::read(root.join("f.bin")).unwrap() == new, "f.bin after the upload");
    assert!(reader.download("f.bin").unwrap() == new);
    assert_eq!(names(&root), set(&["f.bin"]));
}

#[test]
fn atomic_interrupted_uploads_leave_nothing() {
    let server = TestServer::with_args("atomic-interrupt", &["--uploads", "atomic"]);
    let root = server.root();
    let old = pattern(MIB as usize, 51);
    fs::write(root.join("old.bin"), &old).unwrap();
    let new = pattern(2 * MIB as usize, 52);
    let half = &new[..MIB as usize];
    let unchanged = |what: &str| {
        assert!(
            wait_until(T, || open_unnamed_files(server.pid(), &root).is_empty()),
            "{what}: the server still holds an unnamed upload file"
        );
        assert!(fs::read(root.join("old.bin")).unwrap() == old, "{what}: old.bin changed");
        assert_eq!(names(&root), set(&["old.bin"]), "{what}: names in the directory");
    };
    let mut c = Control::connect(server.addr(), T);
    c.login(USER, PASS);

    // The data connection reset, for a new file and over an existing one.
    for name in ["n1.bin", "old.bin"] {
        let data = begin_upload(&mut c, name, half);
        wait_unnamed(&server, &root, MIB, 1);
        reset(data);
        let (code, text) = c.reply().unwrap();
        assert_eq!(code, 426, "{name}, data connection reset: {text}");
        unchanged(&format!("{name} after a reset"));
    }

    // ABOR.
    let data = begin_upload(&mut c, "old.bin", half);
    wait_unnamed(&server, &root, MIB, 1);
    c.send("ABOR");
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 426, "first reply to ABOR: {text}");
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 226, "second reply to ABOR: {text}");
    drop(data);
    unchanged("old.bin after ABOR");

    // The control connection closes, then the data connection ends with a plain FIN, as
    // if the upload were complete.
    for name in ["n2.bin", "old.bin"] {
        let mut c2 = Control::connect(server.addr(), T);
        c2.login(USER, PASS);
        let data = begin_upload(&mut c2, name, half);
        wait_unnamed(&server, &root, MIB, 1);
        let peer = c2.stream().local_addr().unwrap().to_string();
        c2.stream().shutdown(Shutdown::Both).unwrap();
        drop(c2);
        data.shutdown(Shutdown::Write).unwrap();
        wait_session_closed(&server, &peer);
        drop(data);
        unchanged(&format!("{name} after the control connection closed"));
    }

    // The client process killed (SIGKILL) mid-upload: both its connections end with a FIN.
    let src = server.work().join("src.bin");
    fs::write(&src, &new).unwrap();
    for name in ["n3.bin", "old.bin"] {
        let stalled = Stalled::start(&server, &src, name, half.len());
        wait_unnamed(&server, &root, MIB, 1);
        let peer = stalled.kill();
        wait_session_closed(&server, &peer);
        unchanged(&format!("{name} after the client was killed"));
    }

    // The first session is still fine.
    assert_eq!(c.upload("done.bin", &new).0, 226);
    assert!(fs::read(root.join("done.bin")).unwrap() == new);
    assert_eq!(names(&root), set(&["done.bin", "old.bin"]));
}

#[test]
fn atomic_upload_leaves_nothing_when_the_server_is_killed() {
    let mut server = TestServer::with_args("atomic-sigkill", &["--uploads", "atomic"]);
    let root = server.root();
    let old = pattern(MIB as usize, 71);
    fs::write(root.join("old.bin"), &old).unwrap();
    let new = pattern(MIB as usize, 72);
    let mut a = Control::connect(server.addr(), T);
    a.login(USER, PASS);
    let mut b = Control::connect(server.addr(), T);
    b.login(USER, PASS);
    let _da = begin_upload(&mut a, "old.bin", &new[..512 * KIB as usize]);
    let _db = begin_upload(&mut b, "fresh.bin", &new[..512 * KIB as usize]);
    wait_unnamed(&server, &root, 512 * KIB, 2);
    server.signal(libc::SIGKILL);
    let status = server.wait_exit(T).expect("ringftpd still running after SIGKILL");
    assert!(!status.success());
    assert_eq!(names(&root), set(&["old.bin"]), "after SIGKILL mid-upload");
    assert!(fs::read(root.join("old.bin")).unwrap() == old, "old.bin changed");
}
