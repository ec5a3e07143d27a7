//! When io_uring is blocked (as Docker's default seccomp profile does), `--engine auto` (the
//! default) must serve on the epoll engine after one warning that names the cause, and
//! `--engine uring` must exit with a message that names the cause and the fix, not panic.
//! The tests block `io_uring_setup` for the child with a real seccomp filter.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SYS_IO_URING_SETUP: u32 = 425;

/// Installs a filter that fails io_uring_setup with EPERM and allows everything else.
fn block_io_uring() -> std::io::Result<()> {
    let filter = [
        // Load the syscall number (offset 0 of struct seccomp_data).
        libc::sock_filter { code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, jt: 0, jf: 0, k: 0 },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: SYS_IO_URING_SETUP,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
    // SAFETY: plain prctl calls in the forked child before exec; `prog` outlives them.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn auto_serves_a_full_session_on_epoll_when_io_uring_is_blocked() {
    let server = TestServer::builder("uring-blocked")
        .args(["--engine", "auto"])
        .log_level("info")
        .pre_exec(block_io_uring)
        .start();
    // Large enough to take several pipefuls and chunks through the file I/O path.
    let down = server.root().join("down.bin");
    make_file(&down, 5 * MIB + 7, 41);
    let up = pattern((3 * MIB + 11) as usize, 42);

    let mut c = Control::connect(server.addr(), Duration::from_secs(30));
    c.login(USER, PASS);
    let got = c.download("down.bin").unwrap_or_else(|e| panic!("RETR: {e:?}\n{}", server.log_for_failure()));
    assert_eq!(sha256_bytes(&got), sha256_file(&down), "{}", server.log_for_failure());
    let (code, text) = c.upload("up.bin", &up);
    assert_eq!(code, 226, "STOR: {text}\n{}", server.log_for_failure());
    assert_eq!(sha256_file(&server.root().join("up.bin")), sha256_bytes(&up));
    assert_eq!(c.cmd("QUIT").0, 221);

    // And a real client: curl over EPSV.
    let out = server.work().join("curl.bin");
    let r = run_text(curl(&server).arg("-o").arg(&out).arg(server.url("down.bin"))).ok(&server);
    assert!(curl_sent(&r.stderr).iter().any(|l| l == "EPSV"), "{}", r.describe());
    assert_same_file(&down, &out, &server);

    let log = strip_ansi(&server.stderr_log());
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "one warning:\n{log}");
    let w = warnings[0];
    assert!(w.contains("io_uring is not available") && w.contains("seccomp"), "{w}");
    assert!(w.contains("epoll"), "{w}");
    assert!(log.lines().any(|l| l.contains("ringftp listening") && l.contains("engine=\"epoll\"")), "{log}");
}

#[test]
fn engine_uring_gives_a_clear_error_when_io_uring_is_blocked() {
    let root = std::env::temp_dir();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringftpd"));
    cmd.args(["--root", root.to_str().unwrap(), "--listen", "127.0.0.1:0", "--log-level", "error"])
        .args(["--engine", "uring"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure only calls async-signal-safe prctl.
    unsafe {
        cmd.pre_exec(block_io_uring);
    }
    let mut child = cmd.spawn().expect("spawn ringftpd");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringftpd did not exit when io_uring was blocked");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("io_uring is not available"), "stderr: {stderr}");
    assert!(stderr.contains("seccomp") && stderr.contains("io_uring_disabled"), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}
