//! The io_uring engine: each shard thread runs a tokio-uring runtime (a tokio current-thread
//! runtime and a `LocalSet` around one io_uring), and the data path does its file I/O as
//! io_uring operations ([`FileIo::Uring`]), which the kernel runs in io-wq workers.
//!
//! This and `datapath/uring.rs` are the only places that import tokio-uring or io-uring.

use std::future::Future;
use std::io;
use std::sync::mpsc;

use crate::datapath::FileIo;
use crate::server::StartError;

pub(super) const FILE_IO: FileIo = FileIo::Uring;

/// Whether this process may create an io_uring at all (seccomp filters, the
/// `kernel.io_uring_disabled` sysctl, an old kernel or RLIMIT_MEMLOCK can refuse it).
pub(super) fn probe() -> io::Result<()> {
    io_uring::IoUring::new(4).map(drop)
}

/// Why the kernel refused `io_uring_setup`, in a few words, for the one warning `auto` logs.
pub(super) fn refusal_cause(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) => "blocked by a seccomp profile or the kernel.io_uring_disabled sysctl",
        Some(libc::ENOSYS) => "this kernel has no io_uring (Linux 5.7 or newer is needed)",
        Some(libc::ENOMEM) => "not enough locked memory for the ring (RLIMIT_MEMLOCK)",
        _ => "io_uring_setup failed",
    }
}

/// Runs one shard on the calling thread: reports on `ready` whether the runtime started, then
/// runs `shard` to its end.
pub(super) fn run<F: Future<Output = ()>>(
    shard: impl FnOnce() -> F,
    ready: &mpsc::Sender<Result<(), StartError>>,
) {
    // Runtime::new, not tokio_uring::start: start() panics when io_uring is blocked.
    let rt = match tokio_uring::Runtime::new(&tokio_uring::builder()) {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(StartError::IoUring(e)));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    rt.block_on(shard());
}
