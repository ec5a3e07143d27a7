//! Data connections and transfers (RFC 959 §3.2–3.4): open the storage side, make the data
//! connection, move the bytes, and report how it ended.
//!
//! The session has the storage side opened *before* it asks for the transfer, so a missing
//! file is a plain 550 without a 150 first. Files move by splice (see `transfer.rs`);
//! everything else through a buffer. Only `uring.rs` here (through `fileio.rs`) and
//! `engine/uring.rs` know io_uring.
//!
//! PROT P (RFC 4217): the TLS handshake, with its session-reuse check, runs in rustls; then
//! a binary file transfer hands the keys to the kernel (kTLS, `tls/ktls.rs`) when it can take
//! them and splices as a clear one does, and everything else (listings, TYPE A, streams, a
//! cipher the kernel lacks) stays in rustls's buffered loop.

mod ascii;
mod connect;
mod fileio;
mod pagecache;
mod passive;
mod pipes;
mod rate;
mod transfer;
mod upload_hash;
mod uring;

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

pub(crate) use connect::AcceptPolicy;
pub(crate) use fileio::FileIo;
pub(crate) use passive::{PassivePorts, PendingAccept};
pub(crate) use pipes::PipePool;
pub(crate) use rate::RateLimit;
use transfer::{DataError, Meter};
use upload_hash::UploadHash;

use crate::auth::User;
use crate::session::TransferKind;
use crate::session::{ListFormat, Transfer, TransferOutcome};
use crate::storage::{DataSink, DataSource, Storage, StorageError};
use crate::tls::ktls::{self, Corked, EnableError, KtlsSocket};
use crate::tls::{AcceptError, ControlTls, TlsStream};
use crate::types::HashAlgo;

/// How the data connection of a transfer is made.
pub(crate) enum DataConnect {
    /// Wait for the client on the passive listener.
    Passive(PendingAccept),
    /// Connect to the client.
    Active { local: IpAddr, source_port: Option<u16>, target: SocketAddr },
    /// No passive listener exists (it failed or was dropped): answer 425.
    Missing,
}

/// What a transfer reports to its control connection.
#[derive(Debug)]
pub(crate) enum Event {
    /// The data connection is open: send 150.
    Started,
    /// Finished: send the final reply.
    Done(TransferOutcome),
}

/// What a transfer moves: the storage side the session had opened, or bytes it formatted.
pub(crate) enum Payload<L> {
    /// A download, and the file's size when it was opened.
    Source(DataSource, Option<u64>),
    Sink(DataSink),
    Bytes(Vec<u8>),
    /// A directory, sent a page at a time as it is read.
    Listing(L, ListFormat),
}

/// What a transfer needs from its shard and session.
pub(crate) struct TransferEnv<S> {
    pub(crate) storage: Arc<S>,
    pub(crate) pipes: Rc<PipePool>,
    /// How the engine does file I/O that may block.
    pub(crate) file_io: FileIo,
    pub(crate) user: User,
    /// Binary file transfers by splice rather than a buffered copy.
    pub(crate) splice: bool,
    /// Whether the client has closed its control connection. In stream mode the end of an
    /// upload is the data connection closing, which is also what a dying client does; a
    /// control connection closed at the same moment tells the two apart.
    pub(crate) control_closed: Rc<dyn Fn() -> bool>,
    /// The user's rate limit for this direction, shared with their other transfers.
    pub(crate) rate: Option<Arc<RateLimit>>,
    /// Bytes moved so far, readable by the engine even after an abort (and by the session's
    /// stall timer).
    pub(crate) moved: Rc<Cell<u64>>,
    /// PROT P: the control connection's TLS context, which the data handshake must resume.
    pub(crate) tls: Option<Rc<ControlTls>>,
    /// How long the data connection's TLS handshake may take.
    pub(crate) tls_timeout: Duration,
    /// Counts data handshakes (ok or not).
    pub(crate) on_handshake: Rc<dyn Fn(bool)>,
    /// Compute the digest of whole uploads and keep it with the file
    /// ([`crate::ServerBuilder::hash_uploads`]).
    pub(crate) hash_uploads: Option<HashAlgo>,
    /// Counts TLS data connections by the path their bytes took.
    pub(crate) on_tls_path: Rc<dyn Fn(TlsPath)>,
}

/// Runs one transfer to the end and reports through `events`. Dropping the future (an
/// abort) closes the data connection and releases everything it holds. How long the data
/// connection may take, and how long a transfer may stall, is the session's to decide.
pub(crate) async fn run<S: Storage>(
    env: TransferEnv<S>,
    transfer: Transfer,
    payload: Payload<S::Lister>,
    connect: DataConnect,
    events: UnboundedSender<Event>,
) {
    let outcome = run_transfer(&env, &transfer, payload, connect, &events).await;
    let _ = events.send(Event::Done(outcome));
}

async fn run_transfer<S: Storage>(
    env: &TransferEnv<S>,
    t: &Transfer,
    payload: Payload<S::Lister>,
    connect: DataConnect,
    events: &UnboundedSender<Event>,
) -> TransferOutcome {
    let sock = match connect {
        // Dropped with this future on abort, which closes the listener.
        DataConnect::Passive(pending) => match pending.accept().await {
            Ok(sock) => sock,
            Err(e) => {
                tracing::debug!(error = %e, "no passive data connection");
                return TransferOutcome::NoDataConnection;
            }
        },
        DataConnect::Active { local, source_port, target } => {
            match connect::connect_active(local, source_port, target).await {
                Ok(sock) => sock,
                Err(e) => {
                    tracing::debug!(%target, error = %e, "active connect failed");
                    return TransferOutcome::NoDataConnection;
                }
            }
        }
        DataConnect::Missing => return TransferOutcome::NoDataConnection,
    };
    let mut sock = sock;
    // The 150 comes before the data handshake: clients start TLS once they have read it.
    let _ = events.send(Event::Started);
    // Streams that keep a digest get it from receive_stream; a file's is stored below.
    let mut hash = whole_upload_digest(env, t)
        .filter(|_| matches!(payload, Payload::Sink(DataSink::File(_))))
        .map(|algo| UploadHash { algo, digest: None });
    // An atomic upload is committed with a second handle on its file, as the first one moves
    // into the data path; an upload whose digest is kept needs one too.
    let commit = match &payload {
        Payload::Sink(DataSink::File(file)) if t.commit || hash.is_some() => match file.try_clone() {
            Ok(f) => Some(f),
            Err(e) => return TransferOutcome::StorageFailed(StorageError::from(e).kind()),
        },
        _ => None,
    };
    let meter = Meter { rate: env.rate.as_deref(), moved: &env.moved, unyielded: Cell::new(0) };
    let result = if t.protect {
        let Some(tls) = &env.tls else {
            // The session asks for PROT P only on a TLS control connection.
            return TransferOutcome::NoDataConnection;
        };
        // kTLS keeps splice, so it is worth it where splice would be used on a clear
        // connection: binary file transfers. Listings, TYPE A and streams stay on rustls.
        let spliced = env.splice
            && !t.ascii
            && matches!(payload, Payload::Source(DataSource::File(_), _) | Payload::Sink(DataSink::File(_)));
        if tls.ktls() && spliced {
            // Corked: rustls must not read past the handshake, or those bytes would be lost
            // when the keys move to the kernel.
            let stream = match handshake(env, tls, t, Corked::new(sock)).await {
                Ok(s) => s,
                Err(outcome) => return outcome,
            };
            match ktls::enable(stream) {
                Ok(sock) => {
                    tracing::debug!("TLS data connection on kTLS: splice");
                    (env.on_tls_path)(TlsPath::Ktls);
                    over_ktls(env, t, payload, sock, hash.as_mut(), &meter).await
                }
                Err(EnableError { error, stream: Some(mut stream) }) => {
                    tracing::debug!(%error, "kTLS not taken; TLS data connection on rustls");
                    (env.on_tls_path)(TlsPath::Rustls);
                    stream.get_mut().0.uncork();
                    over_rustls(env, t, payload, &mut *stream, hash.as_mut(), &meter).await
                }
                Err(EnableError { error, stream: None }) => {
                    // The secrets had left rustls: the connection cannot go on.
                    tracing::warn!(%error, "kTLS setup failed after the handoff; data connection closed");
                    return TransferOutcome::ConnectionLost;
                }
            }
        } else {
            let mut stream = match handshake(env, tls, t, sock).await {
                Ok(s) => s,
                Err(outcome) => return outcome,
            };
            tracing::debug!(ktls = tls.ktls(), spliced, "TLS data connection on rustls");
            (env.on_tls_path)(TlsPath::Rustls);
            over_rustls(env, t, payload, &mut stream, hash.as_mut(), &meter).await
        }
    } else {
        match payload {
            Payload::Source(DataSource::File(file), len) if !t.ascii && env.splice => {
                transfer::send_file(OwnedFd::from(file), len, &sock, &env.pipes, env.file_io, &meter).await
            }
            Payload::Source(DataSource::File(file), len) => {
                transfer::send_file_buffered(file, len, &mut sock, t.ascii, env.file_io, &meter).await
            }
            Payload::Source(DataSource::Stream(s), _) => {
                transfer::send_stream(s, &mut sock, t.ascii, &meter).await
            }
            Payload::Sink(DataSink::File(file)) => {
                let (pipes, io) = (&env.pipes, env.file_io);
                if !t.ascii && env.splice {
                    transfer::receive_file(&sock, OwnedFd::from(file), None, pipes, io, &meter, hash.as_mut())
                        .await
                } else {
                    transfer::receive_file_buffered(&mut sock, file, t.ascii, io, &meter, hash.as_mut()).await
                }
            }
            Payload::Sink(DataSink::Stream(s)) => {
                transfer::receive_stream(&mut sock, s, t.ascii, &meter, &*env.control_closed, None).await
            }
            Payload::Sink(DataSink::StreamWithDigest(s, slot)) => {
                let digest = whole_upload_digest(env, t).map(|algo| (algo, slot));
                transfer::receive_stream(&mut sock, s, t.ascii, &meter, &*env.control_closed, digest).await
            }
            Payload::Bytes(bytes) => transfer::send_bytes(&bytes, &mut sock, &meter).await,
            Payload::Listing(lister, format) => {
                transfer::send_listing(lister, format, &mut sock, &meter).await
            }
        }
    };
    if let (Ok(_), Some(file)) = (&result, &commit) {
        if t.commit {
            // Let a control-connection close sent together with the data close arrive.
            tokio::time::sleep(Duration::from_millis(10)).await;
            if (env.control_closed)() {
                tracing::info!("client went away at the end of an atomic upload; not committed");
                return TransferOutcome::ConnectionLost;
            }
            if let Err(e) = env.storage.commit_write(&env.user, t.storage_path(), file).await {
                tracing::warn!(error = %e, "cannot commit the upload");
                return TransferOutcome::StorageFailed(e.kind());
            }
        }
        // A client that died mid-upload ends it as a finished one does, often with its
        // control connection closing at once: keep no digest of a file it did not finish.
        // (Without the wait of the atomic case: a missed one only costs a recomputation.)
        if let (Some(UploadHash { algo, digest: Some(digest) }), false) = (&hash, (env.control_closed)()) {
            if let Err(e) = env.storage.store_digest(&env.user, t.storage_path(), file, *algo, digest).await {
                tracing::debug!(error = %e, "cannot keep the upload's digest");
            }
        }
    }
    // Downloads end with the socket's close (dropped on return): the kernel sends a FIN after
    // the last queued byte, as a shutdown would, one syscall fewer per file.
    match result {
        Ok(bytes) => TransferOutcome::Completed { bytes },
        Err(DataError::Net(e)) => {
            tracing::debug!(error = %e, "data connection lost");
            TransferOutcome::ConnectionLost
        }
        Err(DataError::Storage(e)) => {
            tracing::warn!(error = %e, "storage failed during transfer");
            TransferOutcome::StorageFailed(StorageError::from(e).kind())
        }
    }
}

/// Which way a TLS data connection's bytes went, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsPath {
    /// The kernel encrypts; files splice.
    Ktls,
    /// rustls encrypts in a buffer.
    Rustls,
}

impl TlsPath {
    pub(crate) fn name(self) -> &'static str {
        match self {
            TlsPath::Ktls => "ktls",
            TlsPath::Rustls => "rustls",
        }
    }
}

/// The data connection's TLS handshake, with the session-reuse check (done here, before any
/// key could move to the kernel). On failure, the outcome to report.
async fn handshake<S, IO>(
    env: &TransferEnv<S>,
    tls: &ControlTls,
    t: &Transfer,
    io: IO,
) -> Result<TlsStream<IO>, TransferOutcome>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let accepted = if t.kind.is_upload() {
        tls.accept_upload(io, env.tls_timeout).await
    } else {
        tls.accept_data(io, env.tls_timeout).await
    };
    match accepted {
        Ok(s) => {
            (env.on_handshake)(true);
            Ok(s)
        }
        Err(AcceptError::NotResumed) => {
            (env.on_handshake)(false);
            tracing::info!("data connection refused: TLS session not resumed");
            Err(TransferOutcome::TlsNotResumed)
        }
        Err(e) => {
            (env.on_handshake)(false);
            tracing::debug!(error = %e, "data connection TLS handshake failed");
            Err(TransferOutcome::NoDataConnection)
        }
    }
}

/// The digest to compute for this upload, if any: only a whole file has one worth keeping
/// (STOR or STOU, not APPE, not STOR after REST).
fn whole_upload_digest<S>(env: &TransferEnv<S>, t: &Transfer) -> Option<HashAlgo> {
    env.hash_uploads.filter(|_| matches!(t.kind, TransferKind::Stor | TransferKind::Stou) && t.offset == 0)
}

/// A TLS transfer through rustls, ended with close_notify.
async fn over_rustls<S: Storage, IO>(
    env: &TransferEnv<S>,
    t: &Transfer,
    payload: Payload<S::Lister>,
    stream: &mut IO,
    hash: Option<&mut UploadHash>,
    meter: &Meter<'_>,
) -> Result<u64, DataError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let result = buffered(t, payload, &mut LenientEof(stream), hash, env, meter).await;
    match result {
        // close_notify: a download's client knows it is whole; an upload's client (Python's
        // ftplib `unwrap()`) waits for ours in answer to its own.
        Ok(n) => match tokio::io::AsyncWriteExt::shutdown(stream).await {
            Ok(()) => Ok(n),
            Err(e) if !t.kind.is_upload() => Err(DataError::Net(e)),
            Err(_) => Ok(n),
        },
        other => other,
    }
}

/// A TLS transfer on a kTLS socket: the same splice loops as a clear connection, with the
/// plaintext rustls had already decrypted written first, ended with close_notify (as
/// [`over_rustls`]).
async fn over_ktls<S: Storage>(
    env: &TransferEnv<S>,
    t: &Transfer,
    payload: Payload<S::Lister>,
    sock: KtlsSocket,
    hash: Option<&mut UploadHash>,
    meter: &Meter<'_>,
) -> Result<u64, DataError> {
    let KtlsSocket { mut tcp, early, .. } = sock;
    let result = match payload {
        Payload::Source(DataSource::File(file), len) => {
            // A download's client sends nothing; `early` is empty or ignorable.
            transfer::send_file(OwnedFd::from(file), len, &tcp, &env.pipes, env.file_io, meter).await
        }
        Payload::Sink(DataSink::File(file)) => {
            transfer::receive_file(
                &tcp,
                OwnedFd::from(file),
                Some(early),
                &env.pipes,
                env.file_io,
                meter,
                hash,
            )
            .await
        }
        // Not chosen for kTLS (see run_transfer); plain reads and writes work on it too.
        other => {
            return buffered(t, other, &mut tcp, hash, env, meter).await;
        }
    };
    match result {
        Ok(n) => match transfer::ktls_close_notify(&tcp).await {
            Ok(()) => {
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tcp).await;
                Ok(n)
            }
            Err(e) if !t.kind.is_upload() => Err(DataError::Net(e)),
            Err(_) => Ok(n),
        },
        other => other,
    }
}

/// Moves a transfer's bytes through a buffer over any stream (a TLS data connection).
async fn buffered<S: Storage, IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    t: &Transfer,
    payload: Payload<S::Lister>,
    io: &mut IO,
    hash: Option<&mut UploadHash>,
    env: &TransferEnv<S>,
    meter: &Meter<'_>,
) -> Result<u64, DataError> {
    let file_io = env.file_io;
    match payload {
        Payload::Source(DataSource::File(file), len) => {
            transfer::send_file_buffered(file, len, io, t.ascii, file_io, meter).await
        }
        Payload::Source(DataSource::Stream(s), _) => transfer::send_stream(s, io, t.ascii, meter).await,
        Payload::Sink(DataSink::File(file)) => {
            transfer::receive_file_buffered(io, file, t.ascii, file_io, meter, hash).await
        }
        Payload::Sink(DataSink::Stream(s)) => {
            transfer::receive_stream(io, s, t.ascii, meter, &*env.control_closed, None).await
        }
        Payload::Sink(DataSink::StreamWithDigest(s, slot)) => {
            let digest = whole_upload_digest(env, t).map(|algo| (algo, slot));
            transfer::receive_stream(io, s, t.ascii, meter, &*env.control_closed, digest).await
        }
        Payload::Bytes(bytes) => transfer::send_bytes(&bytes, io, meter).await,
        Payload::Listing(lister, format) => transfer::send_listing(lister, format, io, meter).await,
    }
}

/// A TLS data stream whose end without close_notify counts as an end, as vsftpd's default
/// (`strict_ssl_read_eof=NO`) has it: several clients close upload connections that way.
struct LenientEof<'a, IO>(&'a mut IO);

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for LenientEof<'_, IO> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut *self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                tracing::debug!("TLS data connection closed without close_notify");
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for LenientEof<'_, IO> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}
