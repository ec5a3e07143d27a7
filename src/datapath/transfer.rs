//! Moving bytes between storage and a data connection.
//!
//! Binary transfers of files splice through a pipe: file -> pipe on the shard when the chunk
//! is in the page cache (`pagecache.rs`), else through the engine's [`FileIo`] (io_uring, or
//! the blocking pool: never on the shard); pipe -> socket with a non-blocking `splice(2)` when
//! the socket is writable. Uploads run the same loop the other way, always writing the file
//! through `FileIo`. TYPE A, and storages that give a stream instead of a file descriptor,
//! take the buffered path, which reads cached chunks on the shard the same way. A transfer
//! yields after every mebibyte, so one fast transfer cannot starve the other sessions of its
//! shard. Sockets are driven by readiness alike on both engines; only `FileIo` differs.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use nix::fcntl::{fcntl, FcntlArg, OFlag, SpliceFFlags};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use super::ascii::{FromWire, ToWire};
use super::fileio::{pread_into, splice_here, FileIo};
use super::pagecache::{is_cached, is_in_memory, is_local};
use super::pipes::PipePool;
use super::rate::{throttle, RateLimit};
use super::upload_hash::{TeeHasher, UploadHash};
use crate::session::ListFormat;
use crate::storage::{DigestSlot, Hasher, Lister};
use crate::tls::ktls::{self, Record};
use crate::types::HashAlgo;

/// Size of the buffers of the buffered path; large buffers matter more than zero-copy on
/// loopback (FACTS.md: 64 KiB costs about twice the CPU of 1 MiB).
const BUFFER: usize = 256 * 1024;

/// Size of the read buffer of uploads into a host stream. Smaller: such a sink (an object
/// store's part) copies the bytes into buffers of its own and holds this one through every
/// part it sends, and its speed is the store's, not loopback's.
const STREAM_BUFFER: usize = 64 * 1024;

/// Bytes a transfer moves between yields to the shard's other tasks: about a third of a
/// millisecond at loopback speeds, and few enough trips through the scheduler not to show.
const YIELD_EVERY: usize = 1 << 20;

/// TCP_NOTSENT_LOWAT of a download: the socket takes more only once less than this waits
/// unsent. Without it, each download queued up to its whole send buffer (MiBs), and with
/// many at once the receivers fell behind (zero windows, slow-path receives, spurious
/// retransmits on loopback) and every byte cost the clients three times the CPU. Measured
/// (ringftp-bench retr --sink buffer, 16 MiB file, 3 s, 2 interleaved rounds): 16 sessions
/// 3791 -> 6149 MB/s (p99 194 -> 106 ms), 128 sessions 3778 -> 7176 (p99 1702 -> 528), 512
/// sessions 3869 -> 6715 (p99 2216 -> 1376), 1 session 2481 -> 3159; one 1 GiB RETR (curl,
/// --sink null) unchanged. 64 KiB did no better and stalled one run.
const NOTSENT_LOWAT: u32 = 128 << 10;

/// How long an upload waits for a quarter pipeful once it has asked for one (SO_RCVLOWAT, see
/// [`receive_file`]) before it takes what has come and asks for single bytes again.
const LOW_WATER_WAIT: std::time::Duration = std::time::Duration::from_millis(10);

/// How far ahead one `cachestat` call looks when sending a file.
const CACHE_WINDOW: u64 = 4 << 20;

/// Counts the bytes a transfer moves and paces it: the user's rate limit if any, and a yield
/// every [`YIELD_EVERY`] bytes so one fast transfer cannot starve the shard's other sessions.
pub(crate) struct Meter<'a> {
    pub(crate) rate: Option<&'a RateLimit>,
    pub(crate) moved: &'a Cell<u64>,
    /// Bytes since the last yield.
    pub(crate) unyielded: Cell<usize>,
}

impl Meter<'_> {
    /// The largest chunk to move at once, given the buffer or pipe size.
    fn chunk(&self, max: usize) -> usize {
        self.rate.map_or(max, |r| r.chunk(max))
    }

    async fn account(&self, bytes: usize) {
        self.moved.set(self.moved.get() + bytes as u64);
        throttle(self.rate, bytes).await;
        let unyielded = self.unyielded.get() + bytes;
        if unyielded >= YIELD_EVERY {
            self.unyielded.set(0);
            tokio::task::yield_now().await;
        } else {
            self.unyielded.set(unyielded);
        }
    }
}

/// Which side failed: the network (426) or the storage (451/452/552).
#[derive(Debug)]
pub(crate) enum DataError {
    Net(io::Error),
    Storage(io::Error),
}

/// The current offset of a file descriptor, where storage positioned it. Storage owns the
/// offset of a file (the REST offset of a download, where an upload starts); the data path
/// only reads it, with one `lseek` that does no I/O.
fn position(fd: &OwnedFd) -> io::Result<i64> {
    Ok(nix::unistd::lseek(fd, 0, nix::unistd::Whence::SeekCur)?)
}

/// Sends a file from where storage positioned it (the REST offset) to the socket, zero-copy.
///
/// `len` is the file's size when it was opened: the loop stops there rather than asking the
/// kernel once more only to learn of the end (an io-wq round trip per small file). A file
/// that shrinks meanwhile still ends at its real end.
pub(crate) async fn send_file(
    file: OwnedFd,
    len: Option<u64>,
    sock: &TcpStream,
    pipes: &Rc<PipePool>,
    io: FileIo,
    meter: &Meter<'_>,
) -> Result<u64, DataError> {
    let mut offset = position(&file).map_err(DataError::Storage)?;
    let mut remaining = len.map_or(u64::MAX, |len| len.saturating_sub(offset as u64));
    let file = Arc::new(file);
    let mut lease = pipes.get().map_err(DataError::Storage)?;
    let (pipe_read, pipe_write, chunk) = {
        let p = lease.pipe();
        (Arc::clone(&p.read), Arc::clone(&p.write), p.size)
    };
    let chunk = u32::try_from(meter.chunk(chunk)).unwrap_or(u32::MAX);
    let mut total = 0u64;
    // The file is known to be in the page cache up to here.
    let mut cached_until = 0u64;
    let inline = is_local(&file);
    // Corked, the kernel sends only full segments whatever the chunk boundaries (proftpd corks
    // around its sendfile too). Uncorked, each chunk ended in a short segment and the
    // segments, wakeups and acks cost a third more server CPU per GB: 1 GiB RETR, 5
    // interleaved runs, curl 1983 -> 2347 MB/s at 0.53 -> 0.42 s/GB, ringftp-bench --sink
    // null 1724 -> 2709 MB/s at 0.56 -> 0.34 s/GB. Not under a rate limit, whose small
    // paced chunks the cork would hold back for up to 200 ms; nor for one chunk, which
    // goes out in one splice anyway.
    let cork = meter.rate.is_none() && remaining > u64::from(chunk);
    if cork {
        let sock = socket2::SockRef::from(sock);
        let _ = sock.set_tcp_cork(true);
        let _ = sock.set_tcp_notsent_lowat(NOTSENT_LOWAT);
    }
    while remaining > 0 {
        lease.dirty = true;
        let want = u32::try_from(remaining).unwrap_or(u32::MAX).min(chunk);
        let at = offset as u64;
        if inline && at >= cached_until {
            // One look at the next few MiB rather than one per chunk.
            let window = remaining.min(CACHE_WINDOW);
            if is_cached(&file, at, window) {
                cached_until = at + window;
            } else if is_cached(&file, at, u64::from(want)) {
                cached_until = at + u64::from(want);
            }
        }
        // Whole pipefuls: against a client that reads into a buffer (the CPU-bound case on a
        // shared machine) 256 KiB steps cost 0.33 s/GB and 64 KiB ones 0.43 (sendfile's step).
        let n = if at + u64::from(want) <= cached_until {
            splice_cached(&file, offset, &pipe_write, want, io).await?
        } else {
            io.splice(&file, offset, &pipe_write, -1, want).await.map_err(DataError::Storage)?
        };
        if n == 0 {
            lease.dirty = false;
            break;
        }
        offset += n as i64;
        remaining = remaining.saturating_sub(n as u64);
        pipe_to_socket(&pipe_read, sock, n, meter.moved).await?;
        lease.dirty = false;
        total += n as u64;
        meter.account(n).await;
    }
    if cork {
        // Sends the tail now rather than at close.
        let _ = socket2::SockRef::from(sock).set_tcp_cork(false);
    }
    drop((pipe_read, pipe_write));
    drop(lease);
    Ok(total)
}

/// Splices a chunk the page cache holds into the empty pipe on the shard's own thread: no
/// page has to come from the disk, so this does not block, and it saves the round trip to an
/// io-wq worker or a blocking thread. Falls back to `io` if the kernel disagrees after all.
async fn splice_cached(
    file: &Arc<OwnedFd>,
    offset: i64,
    pipe: &Arc<OwnedFd>,
    len: u32,
    io: FileIo,
) -> Result<usize, DataError> {
    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    let mut off = offset;
    match nix::fcntl::splice(file.as_fd(), Some(&mut off), pipe.as_fd(), None, len as usize, flags) {
        Ok(n) => Ok(n),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {
            io.splice(file, offset, pipe, -1, len).await.map_err(DataError::Storage)
        }
        Err(e) => Err(DataError::Storage(e.into())),
    }
}

/// Drains exactly `n` bytes from the pipe into the socket as it becomes writable. If the
/// client goes away first, what did reach the socket is still counted in `moved` (the
/// transfer log reports it), though the chunk is never accounted whole.
///
/// Without SPLICE_F_MORE: it corks the tail of every chunk until the next one. Against a
/// client that splices to /dev/null that cost a fifth of the throughput (2.4 vs 3.0 GB/s);
/// against one that reads into a buffer it gained 3-5 %.
async fn pipe_to_socket(
    pipe: &OwnedFd,
    sock: &TcpStream,
    n: usize,
    moved: &Cell<u64>,
) -> Result<(), DataError> {
    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    let whole = n;
    let mut n = n;
    let lost = |n: usize, e: io::Error| {
        moved.set(moved.get() + (whole - n) as u64);
        DataError::Net(e)
    };
    while n > 0 {
        sock.writable().await.map_err(|e| lost(n, e))?;
        let res = sock.try_io(Interest::WRITABLE, || {
            nix::fcntl::splice(pipe.as_fd(), None, sock.as_fd(), None, n, flags).map_err(io::Error::from)
        });
        match res {
            Ok(0) => return Err(lost(n, io::ErrorKind::WriteZero.into())),
            Ok(m) => n -= m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(lost(n, e)),
        }
    }
    Ok(())
}

/// Receives into a file from its current position until the client closes, zero-copy; with
/// `hash`, also computes its digest from a `tee(2)` of each pipeful (`upload_hash.rs`).
///
/// `ktls` is Some on a kTLS socket, holding the plaintext rustls had already decrypted (the
/// first bytes of the file). There a record that is not data stops splice (EINVAL, or EIO):
/// the client's close_notify is the end of the file, anything else aborts the upload.
pub(crate) async fn receive_file(
    sock: &TcpStream,
    file: OwnedFd,
    ktls: Option<Vec<u8>>,
    pipes: &Rc<PipePool>,
    io: FileIo,
    meter: &Meter<'_>,
    hash: Option<&mut UploadHash>,
) -> Result<u64, DataError> {
    // splice(2) refuses files opened with O_APPEND; write at the end explicitly instead.
    let flags = fcntl(&file, FcntlArg::F_GETFL).map_err(|e| DataError::Storage(e.into()))?;
    let mut offset = if OFlag::from_bits_truncate(flags).contains(OFlag::O_APPEND) {
        let without = OFlag::from_bits_truncate(flags) - OFlag::O_APPEND;
        fcntl(&file, FcntlArg::F_SETFL(without)).map_err(|e| DataError::Storage(e.into()))?;
        nix::unistd::lseek(&file, 0, nix::unistd::Whence::SeekEnd)
            .map_err(|e| DataError::Storage(e.into()))?
    } else {
        position(&file).map_err(DataError::Storage)?
    };
    let file = Arc::new(file);
    let mut total = 0u64;
    let mut lease = pipes.get().map_err(DataError::Storage)?;
    let (pipe_read, pipe_write, chunk) = {
        let p = lease.pipe();
        (Arc::clone(&p.read), Arc::clone(&p.write), p.size)
    };
    let mut tee = match &hash {
        Some(h) => Some(TeeHasher::new(h.algo, chunk).map_err(DataError::Storage)?),
        None => None,
    };
    let on_ktls = ktls.is_some();
    // On tmpfs a write is a copy into memory that waits for no disk: the shard does it itself
    // rather than waking an io-wq worker or a blocking thread per pipeful, a third busy
    // thread on a 2-core box. A/B (curl -T 1 GiB to tmpfs, 9 runs each, interleaved): uring
    // 1706 -> 1759 MB/s at 0.41 -> 0.36 s/GB of server CPU, epoll 1540 -> 1749 at 0.39 -> 0.35.
    let in_memory = is_in_memory(&file);
    if let Some(early) = ktls.filter(|e| !e.is_empty()) {
        if let Some(tee) = &mut tee {
            tee.update(&early);
        }
        let len = early.len();
        let (res, _) = io.write_all_at(&file, early, len, offset as u64).await;
        res.map_err(DataError::Storage)?;
        offset += len as i64;
        total += len as u64;
        meter.account(len).await;
    }
    let chunk = meter.chunk(chunk);
    let at_record = |e: &io::Error| on_ktls && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EIO));
    // Each file write costs a round trip to an io-wq worker or a blocking thread, so fewer,
    // fuller ones move data faster. A client that sends in small steps (curl: 64 KiB) gets one
    // round trip per step once the loop catches up with it (measured: 2.7 s of server CPU for
    // a 1 GiB curl upload instead of 0.4, at a third of the speed). So once a client shows it
    // outpaces the writes (half a pipeful waiting at once), the socket is made readable only
    // for a quarter pipeful (SO_RCVLOWAT) or the close; when that does not come within
    // LOW_WATER_WAIT (the client slowed down or paused), the loop takes what is there and
    // goes back to single bytes, so no byte waits unseen by the file or the stall timer.
    let mut low_water = false;
    loop {
        if low_water {
            if tokio::time::timeout(LOW_WATER_WAIT, sock.readable()).await.is_err() {
                low_water = false;
                // The kernel signals readiness at once if bytes are waiting.
                set_recv_low_water(sock, 1);
                continue;
            }
        } else {
            sock.readable().await.map_err(DataError::Net)?;
        }
        let fill = fill_pipe(sock, &pipe_write, 0, chunk, &at_record)?;
        if fill.n == 0 {
            if fill.record {
                ktls_end(sock).await?;
            }
            if fill.record || fill.eof {
                break;
            }
            continue;
        }
        lease.dirty = true;
        // Not on kTLS, whose readiness is per record.
        if !low_water && !on_ktls && fill.n >= chunk / 2 && chunk >= 4 {
            low_water = set_recv_low_water(sock, chunk / 4);
        }
        let Fill { mut n, eof, record } = fill;
        let got = n;
        // Bytes at the head of the pipe already duplicated into the hasher's pipe: only those
        // may be written, since the next tee starts at the head again.
        let mut teed = 0;
        while n > 0 {
            let mut len = n;
            if let Some(tee) = &mut tee {
                if teed == 0 {
                    teed = tee.tee(&pipe_read, n).await.map_err(DataError::Storage)?;
                }
                len = teed;
            }
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            let m = if in_memory {
                splice_here(&pipe_read, -1, &file, offset, len).map_err(DataError::Storage)?
            } else {
                io.splice(&pipe_read, -1, &file, offset, len).await.map_err(DataError::Storage)?
            };
            if m == 0 {
                return Err(DataError::Storage(io::ErrorKind::WriteZero.into()));
            }
            offset += m as i64;
            n -= m;
            teed = teed.saturating_sub(m);
            total += m as u64;
        }
        lease.dirty = false;
        meter.account(got).await;
        if record {
            ktls_end(sock).await?;
            break;
        }
        if eof {
            break;
        }
    }
    drop((pipe_read, pipe_write));
    drop(lease);
    if let (Some(tee), Some(hash)) = (tee, hash) {
        hash.digest = tee.finish().await;
    }
    Ok(total)
}

/// Sets SO_RCVLOWAT: the socket is readable once `bytes` have arrived (or the peer closed).
/// Best effort: false if the kernel refused, and the loop then runs with smaller steps.
fn set_recv_low_water(sock: &TcpStream, bytes: usize) -> bool {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket descriptor, and a pointer to a c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "SO_RCVLOWAT not set");
    }
    rc == 0
}

/// What [`fill_pipe`] left in the pipe, and why it stopped.
struct Fill {
    /// Bytes in the pipe.
    n: usize,
    /// The client closed the connection.
    eof: bool,
    /// A kTLS record that is not data is next (see [`receive_file`]).
    record: bool,
}

/// Splices what the socket holds into the pipe, which holds `n` bytes, until it holds
/// `chunk`, the socket has nothing more for now, or the client closed.
fn fill_pipe(
    sock: &TcpStream,
    pipe_write: &OwnedFd,
    mut n: usize,
    chunk: usize,
    at_record: &impl Fn(&io::Error) -> bool,
) -> Result<Fill, DataError> {
    let sflags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    while n < chunk {
        let more = sock.try_io(Interest::READABLE, || {
            nix::fcntl::splice(sock.as_fd(), None, pipe_write.as_fd(), None, chunk - n, sflags)
                .map_err(io::Error::from)
        });
        match more {
            Ok(0) => return Ok(Fill { n, eof: true, record: false }),
            Ok(m) => n += m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            // What is in the pipe is the file's; the record is read once it is written.
            Err(e) if at_record(&e) => return Ok(Fill { n, eof: false, record: true }),
            Err(e) => return Err(DataError::Net(e)),
        }
    }
    Ok(Fill { n, eof: false, record: false })
}

/// Reads the record that stopped a splice from a kTLS socket: the client's close_notify ends
/// the upload; another alert or a post-handshake message (a TLS 1.3 KeyUpdate, which the
/// kernel cannot follow here) aborts it (426).
async fn ktls_end(sock: &TcpStream) -> Result<(), DataError> {
    // An alert is 2 bytes, a KeyUpdate 5; a longer record is cut, which does not matter here.
    let mut buf = [0u8; 256];
    let fd = sock.as_raw_fd();
    loop {
        match sock.try_io(Interest::READABLE, || ktls::recv_record(fd, &mut buf)) {
            Ok(Record::CloseNotify) => return Ok(()),
            Ok(other) => {
                tracing::debug!(record = ?other, "kTLS upload stopped by a record that is not data");
                return Err(DataError::Net(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "TLS record other than close_notify ended the upload",
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                sock.readable().await.map_err(DataError::Net)?;
            }
            Err(e) => return Err(DataError::Net(e)),
        }
    }
}

/// Sends a close_notify on a kTLS socket, waiting for room in the send buffer.
pub(crate) async fn ktls_close_notify(sock: &TcpStream) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    loop {
        sock.writable().await?;
        match sock.try_io(Interest::WRITABLE, || ktls::send_close_notify(fd)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => return other,
        }
    }
}

/// Sends a file from where storage positioned it through a buffer, converting line ends for
/// TYPE A. Chunks the page cache holds are read on the shard, others through `io`, so a
/// page-cache miss does not block the shard.
pub(crate) async fn send_file_buffered<W: AsyncWrite + Unpin>(
    file: std::fs::File,
    len: Option<u64>,
    sock: &mut W,
    ascii: bool,
    io: FileIo,
    meter: &Meter<'_>,
) -> Result<u64, DataError> {
    let file = Arc::new(OwnedFd::from(file));
    let mut offset = position(&file).map_err(DataError::Storage)? as u64;
    let inline = is_local(&file);
    let mut buf = Vec::with_capacity(meter.chunk(BUFFER));
    let mut wire = ToWire::new(ascii);
    let mut total = 0u64;
    loop {
        // Only a range inside the file can be known to be cached; the last read, which
        // finds the end, goes through `io`.
        let want = len.map_or(0, |len| len.saturating_sub(offset)).min(buf.capacity() as u64);
        let n = if inline && is_cached(&file, offset, want) {
            pread_into(&file, &mut buf, offset)
        } else {
            let (res, b) = io.read_at(&file, buf, offset).await;
            buf = b;
            res
        }
        .map_err(DataError::Storage)?;
        if n == 0 {
            break;
        }
        offset += n as u64;
        let out = wire.convert(&buf);
        sock.write_all(out).await.map_err(DataError::Net)?;
        total += out.len() as u64;
        meter.account(out.len()).await;
    }
    Ok(total)
}

/// Receives into a file through a buffer, converting line ends for TYPE A. Writes go through
/// `io` with owned buffers that come back from each write, so the loop does not allocate.
/// With `hash`, also computes the digest of what it writes (after conversion: what is stored).
pub(crate) async fn receive_file_buffered<R: AsyncRead + Unpin>(
    sock: &mut R,
    file: std::fs::File,
    ascii: bool,
    io: FileIo,
    meter: &Meter<'_>,
    hash: Option<&mut UploadHash>,
) -> Result<u64, DataError> {
    let file = Arc::new(OwnedFd::from(file));
    let flags = fcntl(&file, FcntlArg::F_GETFL).map_err(|e| DataError::Storage(e.into()))?;
    let mut offset = if OFlag::from_bits_truncate(flags).contains(OFlag::O_APPEND) {
        nix::unistd::lseek(&file, 0, nix::unistd::Whence::SeekEnd)
            .map_err(|e| DataError::Storage(e.into()))?
    } else {
        position(&file).map_err(DataError::Storage)?
    } as u64;
    let mut buf = vec![0u8; meter.chunk(BUFFER)];
    let mut out = Vec::new();
    let mut disk = FromWire::new(true);
    let mut hasher = hash.as_ref().map(|h| Hasher::new(h.algo));
    let mut total = 0u64;
    loop {
        let n = sock.read(&mut buf).await.map_err(DataError::Net)?;
        total += n as u64;
        if ascii {
            // The write owns its buffer: the converted bytes are copied once more.
            out.clear();
            out.extend_from_slice(disk.convert(buf.get(..n).unwrap_or_default(), n == 0));
            if let Some(h) = &mut hasher {
                h.update(&out);
            }
            let (out_len, len) = (out.len(), out.len() as u64);
            if len > 0 {
                let (res, back) = io.write_all_at(&file, out, out_len, offset).await;
                out = back;
                res.map_err(DataError::Storage)?;
                offset += len;
            }
        } else if n > 0 {
            if let Some(h) = &mut hasher {
                h.update(buf.get(..n).unwrap_or_default());
            }
            let (res, back) = io.write_all_at(&file, buf, n, offset).await;
            buf = back;
            res.map_err(DataError::Storage)?;
            offset += n as u64;
        }
        if n == 0 {
            break;
        }
        meter.account(n).await;
    }
    if let (Some(h), Some(hash)) = (hasher, hash) {
        hash.digest = Some(h.finish());
    }
    Ok(total)
}

/// Sends a host-provided stream.
pub(crate) async fn send_stream<W: AsyncWrite + Unpin>(
    mut src: Pin<Box<dyn AsyncRead>>,
    sock: &mut W,
    ascii: bool,
    meter: &Meter<'_>,
) -> Result<u64, DataError> {
    let mut buf = vec![0u8; meter.chunk(BUFFER)];
    let mut wire = ToWire::new(ascii);
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf).await.map_err(DataError::Storage)?;
        if n == 0 {
            break;
        }
        let out = wire.convert(buf.get(..n).unwrap_or_default());
        sock.write_all(out).await.map_err(DataError::Net)?;
        total += out.len() as u64;
        meter.account(out.len()).await;
    }
    Ok(total)
}

/// Receives into a host-provided stream and shuts it down at the end.
///
/// Shutting the stream down commits the upload (an object store completes it), so a client
/// that died (its data connection closing looks like the end of the file) must not get that
/// far: `control_closed` is asked first, as for atomic file uploads.
pub(crate) async fn receive_stream<R: AsyncRead + Unpin>(
    sock: &mut R,
    mut dst: Pin<Box<dyn AsyncWrite>>,
    ascii: bool,
    meter: &Meter<'_>,
    control_closed: &dyn Fn() -> bool,
    digest: Option<(HashAlgo, DigestSlot)>,
) -> Result<u64, DataError> {
    let mut buf = vec![0u8; meter.chunk(STREAM_BUFFER)];
    let mut disk = FromWire::new(ascii);
    let mut total = 0u64;
    let mut hasher = digest.as_ref().map(|(algo, slot)| {
        slot.begin(*algo);
        Hasher::new(*algo)
    });
    loop {
        let n = sock.read(&mut buf).await.map_err(DataError::Net)?;
        let out = disk.convert(buf.get(..n).unwrap_or_default(), n == 0);
        dst.write_all(out).await.map_err(DataError::Storage)?;
        if let (Some(h), Some((_, slot))) = (&mut hasher, &digest) {
            // Hashed as stored (after TYPE A conversion), and only while the sink wants it:
            // after the write, so a sink that takes the hashing over at its first byte
            // (`DigestSlot::take_over`) has none hashed twice.
            if slot.wanted() {
                h.update(out);
            } else {
                hasher = None;
            }
        }
        if n == 0 {
            break;
        }
        total += n as u64;
        meter.account(n).await;
    }
    // Let a control-connection close sent together with the data close arrive.
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    if control_closed() {
        tracing::info!("client went away at the end of an upload; not committed");
        return Err(DataError::Net(io::ErrorKind::ConnectionAborted.into()));
    }
    if let (Some(h), Some((algo, slot))) = (hasher, digest) {
        slot.put(algo, h.finish());
    }
    dst.shutdown().await.map_err(DataError::Storage)?;
    Ok(total)
}

/// Sends bytes already in memory (listings).
pub(crate) async fn send_bytes<W: AsyncWrite + Unpin>(
    bytes: &[u8],
    sock: &mut W,
    meter: &Meter<'_>,
) -> Result<u64, DataError> {
    sock.write_all(bytes).await.map_err(DataError::Net)?;
    meter.moved.set(bytes.len() as u64);
    Ok(bytes.len() as u64)
}

/// Sends a directory listing a page at a time: each page is formatted into one buffer and
/// written before the next is read, so the listing holds a page, never the directory.
pub(crate) async fn send_listing<L: Lister, W: AsyncWrite + Unpin>(
    mut lister: L,
    format: ListFormat,
    sock: &mut W,
    meter: &Meter<'_>,
) -> Result<u64, DataError> {
    let (mut entries, mut bytes) = (Vec::new(), Vec::new());
    let mut total = 0u64;
    loop {
        entries.clear();
        let more =
            lister.next_page(&mut entries).await.map_err(|e| DataError::Storage(io::Error::other(e)))?;
        if !more {
            return Ok(total);
        }
        bytes.clear();
        format.write(&entries, &mut bytes);
        sock.write_all(&bytes).await.map_err(DataError::Net)?;
        total += bytes.len() as u64;
        meter.moved.set(total);
    }
}
