//! The io_uring half of the data path: the file side of a transfer as io_uring operations,
//! submitted through tokio-uring's public oneshot escape hatch. Used by the uring engine only
//! (see `fileio.rs`).
//!
//! IORING_OP_SPLICE (Linux 5.7) moves a chunk between a file and a pipe; IORING_OP_READ and
//! IORING_OP_WRITE (Linux 5.6) serve the buffered path. The kernel runs each in an io-wq
//! worker, so a page-cache miss or dirty-page throttling blocks that worker, never the shard.
//! The *socket* side is never an io_uring op: an io_uring splice on a socket either fails with
//! EAGAIN (non-blocking) or pins a kernel worker per stalled client (blocking), as measured in
//! FACTS.md; it is a non-blocking `splice(2)` on readiness instead (see `transfer.rs`).
//!
//! Every descriptor and buffer an operation uses moves into it and stays alive until the
//! kernel completes it, even if the future is dropped (tokio-uring keeps the stored data of an
//! abandoned op until its completion arrives).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use io_uring::{cqueue, opcode, types};
use tokio_uring::{OneshotOutputTransform, UnsubmittedOneshot};

fn result(cqe: &cqueue::Entry) -> io::Result<usize> {
    let res = cqe.result();
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as usize)
    }
}

/// Turns a splice completion into bytes moved or an error.
#[derive(Debug)]
struct SpliceOutput;

impl OneshotOutputTransform for SpliceOutput {
    type Output = io::Result<usize>;
    type StoredData = (Arc<OwnedFd>, Arc<OwnedFd>);

    fn transform_oneshot_output(self, _fds: Self::StoredData, cqe: cqueue::Entry) -> io::Result<usize> {
        result(&cqe)
    }
}

/// Moves up to `len` bytes from `fd_in` at `off_in` to `fd_out` at `off_out` (-1 for a pipe).
pub(crate) async fn splice(
    fd_in: &Arc<OwnedFd>,
    off_in: i64,
    fd_out: &Arc<OwnedFd>,
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
    UnsubmittedOneshot::new((Arc::clone(fd_in), Arc::clone(fd_out)), SpliceOutput, sqe).submit().await
}

/// A read's completion: the buffer comes back holding what was read.
#[derive(Debug)]
struct ReadOutput;

impl OneshotOutputTransform for ReadOutput {
    type Output = (io::Result<usize>, Vec<u8>);
    type StoredData = (Arc<OwnedFd>, Vec<u8>);

    fn transform_oneshot_output(self, (_fd, mut buf): Self::StoredData, cqe: cqueue::Entry) -> Self::Output {
        let res = result(&cqe);
        if let Ok(n) = res {
            // SAFETY: the kernel initialised the first `n` bytes, and `n` is at most the
            // capacity the read was given.
            unsafe { buf.set_len(n.min(buf.capacity())) };
        }
        (res, buf)
    }
}

/// Reads up to `buf.capacity()` bytes of `file` at `offset` into `buf` (replacing its contents).
pub(crate) async fn read_at(
    file: &Arc<OwnedFd>,
    mut buf: Vec<u8>,
    offset: u64,
) -> (io::Result<usize>, Vec<u8>) {
    buf.clear();
    let len = u32::try_from(buf.capacity()).unwrap_or(u32::MAX);
    // The heap block does not move when the Vec moves into the operation.
    let sqe = opcode::Read::new(types::Fd(file.as_raw_fd()), buf.as_mut_ptr(), len).offset(offset).build();
    UnsubmittedOneshot::new((Arc::clone(file), buf), ReadOutput, sqe).submit().await
}

/// A write's completion: bytes written, and the buffer back.
#[derive(Debug)]
struct WriteOutput;

impl OneshotOutputTransform for WriteOutput {
    type Output = (io::Result<usize>, Vec<u8>);
    type StoredData = (Arc<OwnedFd>, Vec<u8>);

    fn transform_oneshot_output(self, (_fd, buf): Self::StoredData, cqe: cqueue::Entry) -> Self::Output {
        (result(&cqe), buf)
    }
}

/// Writes `buf[range]` (once; it may write less) to `file` at `offset`.
pub(crate) async fn write_at(
    file: &Arc<OwnedFd>,
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
    offset: u64,
) -> (io::Result<usize>, Vec<u8>) {
    let rest = buf.get(range).unwrap_or_default();
    let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
    let sqe = opcode::Write::new(types::Fd(file.as_raw_fd()), rest.as_ptr(), len).offset(offset).build();
    UnsubmittedOneshot::new((Arc::clone(file), buf), WriteOutput, sqe).submit().await
}
