//! IORING_OP_SPLICE (Linux 5.7) through tokio-uring's public oneshot escape hatch.
//!
//! Only the *file* side of a transfer goes through io_uring: the kernel runs the splice in an
//! io-wq worker, so a page-cache miss or dirty-page throttling blocks that worker, never the
//! shard (downloads skip it for chunks known to be cached, see `pagecache.rs`). The *socket*
//! side uses a non-blocking `splice(2)` driven by readiness (see `transfer.rs`): an io_uring
//! splice on a socket either fails with EAGAIN (non-blocking) or pins a kernel worker per
//! stalled client (blocking), as measured in FACTS.md.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

use io_uring::{cqueue, opcode, types};
use tokio_uring::{OneshotOutputTransform, UnsubmittedOneshot};

/// Turns the completion into bytes moved or an error.
#[derive(Debug)]
struct SpliceOutput;

impl OneshotOutputTransform for SpliceOutput {
    type Output = io::Result<usize>;
    /// The two descriptors stay alive until the kernel is done with them, even if the future
    /// is dropped (tokio-uring keeps the stored data of an abandoned op until it completes).
    type StoredData = (Rc<OwnedFd>, Rc<OwnedFd>);

    fn transform_oneshot_output(self, _fds: Self::StoredData, cqe: cqueue::Entry) -> io::Result<usize> {
        let res = cqe.result();
        if res < 0 {
            Err(io::Error::from_raw_os_error(-res))
        } else {
            Ok(res as usize)
        }
    }
}

/// Moves up to `len` bytes from `fd_in` at `off_in` to `fd_out` at `off_out` (-1 for a pipe).
pub(crate) async fn splice(
    fd_in: &Rc<OwnedFd>,
    off_in: i64,
    fd_out: &Rc<OwnedFd>,
    off_out: i64,
    len: u32,
) -> io::Result<usize> {
    let sqe = opcode::Splice::new(
        types::Fd(fd_in.as_raw_fd()),
        off_in,
        types::Fd(fd_out.as_raw_fd()),
        off_out,
        len,
    )
    .build();
    UnsubmittedOneshot::new((Rc::clone(fd_in), Rc::clone(fd_out)), SpliceOutput, sqe).submit().await
}
