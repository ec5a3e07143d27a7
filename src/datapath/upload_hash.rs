//! The digest of an upload, computed while it streams ([`crate::ServerBuilder::hash_uploads`]).
//!
//! A buffered upload hashes each buffer as it writes it: the bytes are in hand. A spliced
//! upload never brings its bytes into user space, so each pipeful is duplicated with `tee(2)`
//! into a second pipe (page references, no copy) and read from there into the hasher, while
//! the first pipe is spliced to the file as without hashing.
//!
//! The first [`INLINE_BYTES`] are hashed on the shard: small files then cost no thread. A
//! larger upload moves its hasher to a thread of its own that reads the second pipe as the
//! shard fills it, so a slow digest (SHA-256 at about 2 GB/s with SHA-NI, far less without)
//! neither stalls the shard's other sessions nor limits the upload to one core. At most
//! [`MAX_HASH_WORKERS`] such threads run in the process; past that an upload stays on the
//! shard, which slows it (and its shard) rather than adding threads. The threads are not the
//! runtime's blocking pool: a hasher holding a pool thread while its upload's file write
//! waits in that pool's queue could deadlock the epoll engine.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::fcntl::{fcntl, FcntlArg, OFlag, SpliceFFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::oneshot;

use crate::storage::Hasher;
use crate::types::HashAlgo;

/// Bytes of an upload hashed on the shard before its hasher moves to a thread.
const INLINE_BYTES: u64 = 2 * 1024 * 1024;

/// Hasher threads that may run at once in the process.
pub(crate) const MAX_HASH_WORKERS: usize = 16;

/// Bytes read from the second pipe at once.
const READ_BLOCK: usize = 256 * 1024;

static WORKERS: AtomicUsize = AtomicUsize::new(0);

/// One of the [`MAX_HASH_WORKERS`] places; given back on drop.
struct WorkerPermit(());

impl WorkerPermit {
    fn take() -> Option<WorkerPermit> {
        WORKERS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_HASH_WORKERS).then_some(n + 1))
            .ok()
            .map(|_| WorkerPermit(()))
    }
}

impl Drop for WorkerPermit {
    fn drop(&mut self) {
        WORKERS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Which digest an upload computes and, once it completed, the digest.
#[derive(Debug)]
pub(crate) struct UploadHash {
    pub(crate) algo: HashAlgo,
    pub(crate) digest: Option<Vec<u8>>,
}

/// Hashes what a spliced upload moves, through a second pipe fed by `tee(2)`.
pub(crate) struct TeeHasher {
    /// The second pipe's write end, non-blocking, for waiting until the worker made room.
    write: AsyncFd<OwnedFd>,
    state: State,
}

enum State {
    /// Hashing on the shard: each tee is read back at once.
    Inline { read: OwnedFd, hasher: Hasher, buf: Vec<u8>, hashed: u64 },
    /// A thread reads the pipe to its end and sends the digest.
    Worker(oneshot::Receiver<Vec<u8>>),
    /// The worker could not be started: no digest.
    Failed,
}

impl TeeHasher {
    /// A hasher for `algo` whose pipe holds `size` bytes (as the upload's own pipe).
    pub(crate) fn new(algo: HashAlgo, size: usize) -> io::Result<TeeHasher> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // EPERM past pipe-max-size or the user budget: the default size still works, with
        // more, shorter tees.
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(i32::try_from(size).unwrap_or(i32::MAX)));
        fcntl(&write, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        let state = State::Inline { read, hasher: Hasher::new(algo), buf: vec![0; READ_BLOCK], hashed: 0 };
        // SAFETY: the `OwnedFd` moves into the `AsyncFd`, which alone owns and closes it.
        let write = unsafe { AsyncFd::register_with_interest(write, Interest::WRITABLE) }?;
        Ok(TeeHasher { write, state })
    }

    /// Duplicates up to `len` bytes from the head of `pipe` (which holds at least that many)
    /// into the hasher, and returns how many: the caller must consume exactly those from
    /// `pipe` before the next call, as a tee always starts at the head.
    pub(crate) async fn tee(&mut self, pipe: &OwnedFd, len: usize) -> io::Result<usize> {
        let flags = SpliceFFlags::SPLICE_F_NONBLOCK;
        let n = match &mut self.state {
            State::Failed => return Ok(len),
            State::Inline { read, hasher, buf, hashed } => {
                // The second pipe is empty here, so the tee cannot find it full.
                let n = nix::fcntl::tee(pipe.as_fd(), self.write.get_ref().as_fd(), len, flags)?;
                let mut left = n;
                while left > 0 {
                    let want = left.min(buf.len());
                    let got = match nix::unistd::read(read.as_fd(), buf.get_mut(..want).unwrap_or_default()) {
                        Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                        Ok(got) => got,
                        Err(nix::errno::Errno::EINTR) => continue,
                        Err(e) => return Err(e.into()),
                    };
                    hasher.update(buf.get(..got).unwrap_or_default());
                    left -= got;
                }
                *hashed += n as u64;
                n
            }
            State::Worker(_) => loop {
                let mut ready = self.write.writable().await?;
                match ready.try_io(|w| Ok(nix::fcntl::tee(pipe.as_fd(), w.get_ref().as_fd(), len, flags)?)) {
                    Ok(result) => break result?,
                    Err(_would_block) => continue,
                }
            },
        };
        if matches!(self.state, State::Inline { hashed, .. } if hashed >= INLINE_BYTES) {
            self.move_to_worker();
        }
        Ok(n)
    }

    /// Hashes bytes that came some other way than through the pipe (the plaintext rustls had
    /// decrypted before a kTLS handoff), before the first tee. Later, the order is lost:
    /// no digest then.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match &mut self.state {
            State::Inline { hasher, hashed: 0, .. } => hasher.update(bytes),
            _ => self.state = State::Failed,
        }
    }

    /// Moves the hasher to a thread if a place is free; else it stays on the shard.
    fn move_to_worker(&mut self) {
        let Some(permit) = WorkerPermit::take() else {
            return;
        };
        let State::Inline { read, hasher, buf, .. } = std::mem::replace(&mut self.state, State::Failed)
        else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        let spawned = std::thread::Builder::new().name("ringftp-hash".into()).spawn(move || {
            let _permit = permit;
            if let Some(digest) = drain(read, hasher, buf) {
                let _ = tx.send(digest);
            }
        });
        match spawned {
            Ok(_) => self.state = State::Worker(rx),
            Err(e) => tracing::warn!(error = %e, "cannot start a hasher thread; this upload keeps no digest"),
        }
    }

    /// The digest of everything teed, or `None` if it could not be computed.
    pub(crate) async fn finish(self) -> Option<Vec<u8>> {
        let TeeHasher { write, state } = self;
        // The worker reads to the end of the pipe: closing the write end ends it.
        drop(write);
        match state {
            State::Inline { hasher, .. } => Some(hasher.finish()),
            State::Worker(rx) => rx.await.ok(),
            State::Failed => None,
        }
    }
}

/// The worker: hashes what `read` yields until its writer closes it.
fn drain(read: OwnedFd, mut hasher: Hasher, mut buf: Vec<u8>) -> Option<Vec<u8>> {
    loop {
        match nix::unistd::read(read.as_fd(), &mut buf) {
            Ok(0) => return Some(hasher.finish()),
            Ok(n) => hasher.update(buf.get(..n).unwrap_or_default()),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                tracing::warn!(error = %e, "hasher thread cannot read its pipe; no digest");
                return None;
            }
        }
    }
}
