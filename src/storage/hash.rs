//! File digests for HASH (draft-bryan-ftpext-hash) and the legacy XCRC/XMD5/XSHA1/XSHA256,
//! computed off the shard and bounded process-wide.
//!
//! A digest reads the whole file, so a client asking for many could keep every disk and core
//! busy. Two bounds stop that: a session runs one storage request at a time (the session
//! waits for each answer), and at most [`MAX_HASH_JOBS`] digests run at once in the process,
//! counted by [`HashPermit`]s; a request beyond that is refused at once with 450 rather than
//! queued. A job whose session went away stops at its next block.

use std::fs::File;
#[cfg(feature = "object")]
use std::future::Future;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use digest::Digest;
use tokio::io::AsyncReadExt;

use super::{DataSource, ErrorKind, HashAlgo, Result};

/// Digests that may run at once in this process.
pub const MAX_HASH_JOBS: usize = 4;

/// Bytes read per step.
const BLOCK: usize = 256 * 1024;

static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// One of the [`MAX_HASH_JOBS`] places; given back on drop.
#[derive(Debug)]
pub struct HashPermit(());

impl Drop for HashPermit {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes a place for a digest, or [`ErrorKind::Unavailable`] (450) if all are taken.
pub fn hash_permit() -> Result<HashPermit> {
    RUNNING
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_HASH_JOBS).then_some(n + 1))
        .map(|_| HashPermit(()))
        .map_err(|_| ErrorKind::Unavailable.into())
}

/// A running digest of one of the [`HashAlgo`]s (also fed by uploads, see
/// [`crate::ServerBuilder::hash_uploads`]).
pub(crate) enum Hasher {
    Sha256(sha2::Sha256),
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
    Crc32(crc32fast::Hasher),
}

impl Hasher {
    pub(crate) fn new(algo: HashAlgo) -> Hasher {
        match algo {
            HashAlgo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            HashAlgo::Md5 => Hasher::Md5(md5::Md5::new()),
            HashAlgo::Crc32 => Hasher::Crc32(crc32fast::Hasher::new()),
            _ => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha1(h) => h.update(bytes),
            Hasher::Md5(h) => h.update(bytes),
            Hasher::Crc32(h) => h.update(bytes),
        }
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
        }
    }
}

#[cfg(feature = "object")]
/// Blocks smaller than this are hashed on the shard: a thread hop would cost more.
const INLINE_BLOCK: usize = 256 * 1024;

#[cfg(feature = "object")]
/// The digest of an upload whose bytes a sink holds in large blocks it keeps for a while
/// anyway (an object upload's parts): each block is hashed on tokio's blocking pool while
/// the sink sends it, one block at a time and in order, so a slow digest costs the shard
/// nothing but a wait when the next block is ready before the previous one is hashed.
/// Bytes may also be hashed on the shard as they arrive ([`BlockHasher::update`]); a block
/// is hashed from where those end.
pub(crate) struct BlockHasher {
    algo: HashAlgo,
    state: BlockState,
    /// Bytes hashed or being hashed: where the next block's hashing starts.
    hashed: u64,
    /// Since when the caller waits for a block's hash, and how long it waited before.
    waiting: Option<std::time::Instant>,
    waited: std::time::Duration,
}

#[cfg(feature = "object")]
enum BlockState {
    Idle(Hasher),
    Busy(tokio::task::JoinHandle<Hasher>),
    /// A job failed (the pool is shutting down) or a block came while one was hashed, or
    /// out of order: no digest.
    Failed,
}

#[cfg(feature = "object")]
impl BlockHasher {
    pub(crate) fn new(algo: HashAlgo) -> BlockHasher {
        BlockHasher {
            algo,
            state: BlockState::Idle(Hasher::new(algo)),
            hashed: 0,
            waiting: None,
            waited: std::time::Duration::ZERO,
        }
    }

    /// Hashes `bytes` here, now (call only when ready): the next bytes of the upload.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match &mut self.state {
            BlockState::Idle(h) => h.update(bytes),
            _ => self.state = BlockState::Failed,
        }
        self.hashed += bytes.len() as u64;
    }

    /// Ready once the last block is hashed.
    pub(crate) fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if let BlockState::Busy(job) = &mut self.state {
            let done = std::pin::Pin::new(job).poll(cx);
            let std::task::Poll::Ready(done) = done else {
                self.waiting.get_or_insert_with(std::time::Instant::now);
                return std::task::Poll::Pending;
            };
            self.state = match done {
                Ok(h) => BlockState::Idle(h),
                Err(_) => BlockState::Failed,
            };
            if let Some(since) = self.waiting.take() {
                self.waited += since.elapsed();
            }
        }
        std::task::Poll::Ready(())
    }

    /// How long the caller waited for blocks to be hashed (in [`BlockHasher::poll_ready`]).
    pub(crate) fn waited(&self) -> std::time::Duration {
        self.waited
    }

    /// Starts hashing what `block`, the upload's bytes up to offset `end`, holds past the
    /// bytes already hashed (call only when ready).
    pub(crate) fn push<B: AsRef<[u8]> + Send + 'static>(&mut self, block: B, end: u64) {
        let len = block.as_ref().len() as u64;
        let Some(skip) = self.hashed.checked_sub(end.saturating_sub(len)).filter(|&s| s <= len) else {
            self.state = BlockState::Failed;
            return;
        };
        let BlockState::Idle(mut h) = std::mem::replace(&mut self.state, BlockState::Failed) else {
            return;
        };
        self.hashed = end;
        // `skip` is at most the block's length, which is a usize.
        let from = usize::try_from(skip).unwrap_or(usize::MAX);
        if len - skip < INLINE_BLOCK as u64 {
            h.update(block.as_ref().get(from..).unwrap_or_default());
            self.state = BlockState::Idle(h);
        } else {
            self.state = BlockState::Busy(tokio::task::spawn_blocking(move || {
                h.update(block.as_ref().get(from..).unwrap_or_default());
                h
            }));
        }
    }

    /// The digest of every byte hashed, if it is ready and nothing went wrong.
    pub(crate) fn finish(self) -> Option<(HashAlgo, Vec<u8>)> {
        match self.state {
            BlockState::Idle(h) => Some((self.algo, h.finish())),
            _ => None,
        }
    }
}

/// The digest of bytes in memory (tests, and backends that hold files in memory).
#[cfg(test)]
pub(crate) fn digest(algo: HashAlgo, bytes: &[u8]) -> Vec<u8> {
    let mut h = Hasher::new(algo);
    h.update(bytes);
    h.finish()
}

/// Sets the flag when the future waiting for a job is dropped (its session went away).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Digests what `source` yields to its end: a file on tokio's blocking pool, a stream here.
/// `permit` is held until the job ends, also when the caller gives up waiting.
pub(crate) async fn hash_source(source: DataSource, algo: HashAlgo, permit: HashPermit) -> Result<Vec<u8>> {
    match source {
        DataSource::File(file) => {
            let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
            let flag = Arc::clone(&cancel.0);
            let job = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                hash_file(file, algo, &flag)
            });
            let result = job.await.map_err(|_| ErrorKind::Local)?;
            drop(cancel);
            result
        }
        DataSource::Stream(mut stream) => {
            let _permit = permit;
            let mut h = Hasher::new(algo);
            let mut buf = vec![0; BLOCK];
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Ok(h.finish());
                }
                h.update(buf.get(..n).unwrap_or_default());
            }
        }
    }
}

fn hash_file(mut file: File, algo: HashAlgo, cancel: &AtomicBool) -> Result<Vec<u8>> {
    let mut h = Hasher::new(algo);
    let mut buf = vec![0; BLOCK];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(ErrorKind::Local.into());
        }
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn known_digests() {
        assert_eq!(
            hex(&digest(HashAlgo::Sha256, b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex(&digest(HashAlgo::Sha1, b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex(&digest(HashAlgo::Md5, b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(hex(&digest(HashAlgo::Crc32, b"abc")), "352441c2");
    }

    #[test]
    fn permits_are_bounded() {
        let permits: Vec<_> = (0..MAX_HASH_JOBS).map(|_| hash_permit().unwrap()).collect();
        assert_eq!(hash_permit().unwrap_err().kind(), ErrorKind::Unavailable);
        drop(permits);
        assert!(hash_permit().is_ok());
    }

    #[cfg(feature = "object")]
    #[test]
    fn block_hasher_hashes_blocks_in_order_after_inline_bytes() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let data: Vec<u8> = (0..3 * 1024 * 1024 + 7u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut h = BlockHasher::new(HashAlgo::Sha256);
        rt.block_on(async {
            // 100 bytes as they arrive, then the first block (which holds them too), a large
            // block for the pool, and a small one hashed here.
            h.update(&data[..100]);
            let ends = [1024 * 1024, 3 * 1024 * 1024, data.len()];
            let mut start = 0;
            for end in ends {
                std::future::poll_fn(|cx| h.poll_ready(cx)).await;
                h.push(data[start..end].to_vec(), end as u64);
                start = end;
            }
            std::future::poll_fn(|cx| h.poll_ready(cx)).await;
        });
        assert_eq!(h.finish().unwrap(), (HashAlgo::Sha256, digest(HashAlgo::Sha256, &data)));

        // A gap, or a block while one is hashed, gives no digest.
        let mut gap = BlockHasher::new(HashAlgo::Crc32);
        gap.push(vec![1u8; 10], 20);
        assert!(gap.finish().is_none());
        let mut early = BlockHasher::new(HashAlgo::Crc32);
        rt.block_on(async {
            early.push(vec![1u8; 1 << 20], 1 << 20);
            early.push(vec![1u8; 10], (1 << 20) + 10);
        });
        assert!(early.finish().is_none());
    }
}
