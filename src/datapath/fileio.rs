//! The file side of a transfer: the one part of the data path that differs between engines.
//!
//! Sockets move by readiness on both engines (`transfer.rs`). A file read, write or splice
//! can wait for the disk (a page-cache miss, dirty-page throttling, a network filesystem), so
//! it must never run on a shard thread unless it is known not to wait. Downloads check with
//! `cachestat` first and read chunks the page cache holds on the shard itself, on both
//! engines (`pagecache.rs`), and uploads to tmpfs, which wait for no disk, write on the shard
//! too; every other file operation goes through [`FileIo`]:
//! - [`FileIo::Uring`] submits it to io_uring, which runs it in a kernel io-wq worker
//!   (`uring.rs`);
//! - [`FileIo::Blocking`] runs the same syscall on the shard runtime's small, bounded pool of
//!   blocking threads (`spawn_blocking`), for the epoll engine where io_uring is unavailable.
//!
//! Either way, the descriptors (`Arc<OwnedFd>`) and the buffer move into the operation and
//! live until it ends, even if the transfer is dropped meanwhile (ABOR): a descriptor number
//! can never be closed and reused under a running operation.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use nix::fcntl::SpliceFFlags;

use super::uring;

/// How a shard does file I/O that may block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileIo {
    /// io_uring operations (the uring engine).
    Uring,
    /// Plain syscalls on the runtime's blocking pool (the epoll engine).
    Blocking,
}

/// Runs `f` on the blocking pool; a job that panicked counts as an I/O error.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> io::Result<R> {
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)
}

/// [`FileIo::splice`] on the calling thread: for a blocking-pool thread, or for the shard
/// itself where the file cannot wait (tmpfs).
pub(crate) fn splice_here(
    fd_in: &OwnedFd,
    off_in: i64,
    fd_out: &OwnedFd,
    off_out: i64,
    len: u32,
) -> io::Result<usize> {
    let mut off_in = (off_in >= 0).then_some(off_in);
    let mut off_out = (off_out >= 0).then_some(off_out);
    nix::fcntl::splice(
        fd_in.as_fd(),
        off_in.as_mut(),
        fd_out.as_fd(),
        off_out.as_mut(),
        len as usize,
        SpliceFFlags::SPLICE_F_MOVE,
    )
    .map_err(io::Error::from)
}

impl FileIo {
    /// Moves up to `len` bytes from `fd_in` at `off_in` to `fd_out` at `off_out`, where one
    /// side is a pipe (offset -1) and the other a file.
    pub(crate) async fn splice(
        self,
        fd_in: &Arc<OwnedFd>,
        off_in: i64,
        fd_out: &Arc<OwnedFd>,
        off_out: i64,
        len: u32,
    ) -> io::Result<usize> {
        match self {
            FileIo::Uring => uring::splice(fd_in, off_in, fd_out, off_out, len).await,
            FileIo::Blocking => {
                let (fd_in, fd_out) = (Arc::clone(fd_in), Arc::clone(fd_out));
                blocking(move || splice_here(&fd_in, off_in, &fd_out, off_out, len)).await?
            }
        }
    }

    /// Reads up to `buf.capacity()` bytes of `file` at `offset`; the buffer comes back
    /// holding them.
    pub(crate) async fn read_at(
        self,
        file: &Arc<OwnedFd>,
        buf: Vec<u8>,
        offset: u64,
    ) -> (io::Result<usize>, Vec<u8>) {
        match self {
            FileIo::Uring => uring::read_at(file, buf, offset).await,
            FileIo::Blocking => {
                let file = Arc::clone(file);
                let job = blocking(move || {
                    let mut buf = buf;
                    let res = pread_into(&file, &mut buf, offset);
                    (res, buf)
                });
                job.await.unwrap_or_else(|e| (Err(e), Vec::new()))
            }
        }
    }

    /// Writes `buf[..len]` to `file` at `offset`; the buffer comes back for reuse.
    pub(crate) async fn write_all_at(
        self,
        file: &Arc<OwnedFd>,
        buf: Vec<u8>,
        len: usize,
        offset: u64,
    ) -> (io::Result<()>, Vec<u8>) {
        let len = len.min(buf.len());
        match self {
            FileIo::Uring => {
                let mut buf = buf;
                let mut done = 0;
                while done < len {
                    let (res, back) = uring::write_at(file, buf, done..len, offset + done as u64).await;
                    buf = back;
                    match res {
                        Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return (Err(e), buf),
                    }
                }
                (Ok(()), buf)
            }
            FileIo::Blocking => {
                let file = Arc::clone(file);
                let job = blocking(move || {
                    let res = pwrite_all(&file, buf.get(..len).unwrap_or_default(), offset);
                    (res, buf)
                });
                job.await.unwrap_or_else(|e| (Err(e), Vec::new()))
            }
        }
    }
}

/// `pread` into the spare capacity of `buf` (cleared first), on the calling thread.
pub(crate) fn pread_into(file: &OwnedFd, buf: &mut Vec<u8>, offset: u64) -> io::Result<usize> {
    buf.clear();
    let offset = libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: the kernel writes at most `capacity` bytes into the Vec's own allocation,
        // and only the bytes it reports written are then counted as initialised.
        let n = unsafe { libc::pread(file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.capacity(), offset) };
        if n >= 0 {
            let n = n as usize;
            // SAFETY: see above; `n <= capacity`.
            unsafe { buf.set_len(n.min(buf.capacity())) };
            return Ok(n);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `pwrite` until all of `buf` is written.
fn pwrite_all(file: &OwnedFd, buf: &[u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while let Some(rest) = buf.get(done..).filter(|r| !r.is_empty()) {
        let at = libc::off_t::try_from(offset + done as u64)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        match nix::sys::uio::pwrite(file, rest, at) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
