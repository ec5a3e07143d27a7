//! The epoll engine, for where io_uring is blocked: each shard thread runs a plain tokio
//! current-thread runtime and a `LocalSet`, and the data path runs file I/O that may wait for
//! the disk on that runtime's blocking pool ([`FileIo::Blocking`]), at most
//! [`BLOCKING_THREADS`] at once per shard, so a page-cache miss never blocks the shard.
//!
//! Nothing else differs from the io_uring engine: sockets are driven by readiness on both.

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use crate::datapath::FileIo;
use crate::server::StartError;

pub(super) const FILE_IO: FileIo = FileIo::Blocking;

/// Blocking threads per shard. A file operation holds one while it waits for the disk; more
/// waiting operations queue, as io_uring's io-wq queues regular-file work past its bound.
pub(super) const BLOCKING_THREADS: usize = 16;

/// How long a finished shard waits for its blocking pool (a file operation still stuck on the
/// disk) before the thread ends anyway; the operation keeps its descriptors until it returns.
const POOL_SHUTDOWN: Duration = Duration::from_secs(1);

/// Runs one shard on the calling thread: reports on `ready` whether the runtime started, then
/// runs `shard` to its end.
pub(super) fn run<F: Future<Output = ()>>(
    shard: impl FnOnce() -> F,
    ready: &mpsc::Sender<Result<(), StartError>>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name("ringftp-file-io")
        .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(StartError::Thread(e)));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    tokio::task::LocalSet::new().block_on(&rt, shard());
    rt.shutdown_timeout(POOL_SHUTDOWN);
}
