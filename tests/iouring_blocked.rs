//! When io_uring is blocked (as Docker's default seccomp profile does), ringftpd must exit
//! with a message that names the cause and the fix, not panic. The test blocks
//! `io_uring_setup` for the child with a real seccomp filter.

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
fn blocked_io_uring_gives_a_clear_error() {
    let root = std::env::temp_dir();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringftpd"));
    cmd.args(["--root", root.to_str().unwrap(), "--listen", "127.0.0.1:0", "--log-level", "error"])
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
