//! A per-shard pool of pipes for splice.
//!
//! A pipe is the kernel buffer that splice moves pages through. Creating one and resizing it
//! costs three syscalls, so each shard keeps a few. The size aims for the configured value
//! (256 KiB by default) and is read back, because `F_SETPIPE_SZ` is capped by
//! `/proc/sys/fs/pipe-max-size` and by the per-user pipe budget: a failed resize keeps the
//! default 64 KiB rather than failing the transfer. A pipe that may still hold bytes (an
//! aborted transfer) is closed instead of returned, so stale data never leaks into another
//! transfer.

use std::cell::RefCell;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// Pipes kept per shard at most; more are created on demand and closed when returned.
const MAX_IDLE: usize = 16;

/// One pipe: read end, write end, capacity. The ends are `Arc` because a file operation on the
/// blocking pool (epoll engine) or in io_uring holds them until it ends, on another thread.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) read: Arc<OwnedFd>,
    pub(crate) write: Arc<OwnedFd>,
    pub(crate) size: usize,
}

/// The pool; `Rc` because it belongs to one shard.
#[derive(Debug)]
pub(crate) struct PipePool {
    idle: RefCell<Vec<Pipe>>,
    want_size: usize,
}

impl PipePool {
    pub(crate) fn new(want_size: usize) -> Rc<Self> {
        Rc::new(PipePool { idle: RefCell::new(Vec::new()), want_size })
    }

    /// Takes a clean pipe from the pool or makes one.
    pub(crate) fn get(self: &Rc<Self>) -> io::Result<PipeLease> {
        let pipe = match self.idle.borrow_mut().pop() {
            Some(p) => p,
            None => self.create()?,
        };
        Ok(PipeLease { pipe, pool: Rc::clone(self), dirty: false })
    }

    fn create(&self) -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let want = i32::try_from(self.want_size).unwrap_or(i32::MAX);
        // EPERM past pipe-max-size or the user budget: keep the default size.
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(want));
        let size = fcntl(&write, FcntlArg::F_GETPIPE_SZ)?;
        Ok(Pipe { read: Arc::new(read), write: Arc::new(write), size: size.max(4096) as usize })
    }
}

/// A pipe in use. Mark it dirty while bytes may sit in it; a dirty pipe, or one an abandoned
/// file operation still holds, is closed on drop instead of returned.
#[derive(Debug)]
pub(crate) struct PipeLease {
    pipe: Pipe,
    pool: Rc<PipePool>,
    pub(crate) dirty: bool,
}

impl PipeLease {
    pub(crate) fn pipe(&self) -> &Pipe {
        &self.pipe
    }
}

impl Drop for PipeLease {
    fn drop(&mut self) {
        let in_use = Arc::strong_count(&self.pipe.read) > 1 || Arc::strong_count(&self.pipe.write) > 1;
        if self.dirty || in_use {
            return;
        }
        let mut idle = self.pool.idle.borrow_mut();
        if idle.len() < MAX_IDLE {
            // The lease's own references drop right after, leaving the pool the only owner.
            idle.push(Pipe {
                read: Arc::clone(&self.pipe.read),
                write: Arc::clone(&self.pipe.write),
                size: self.pipe.size,
            });
        }
    }
}
