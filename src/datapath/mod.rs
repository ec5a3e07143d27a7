//! Data connections and transfers (RFC 959 §3.2–3.4): open the storage side, make the data
//! connection, move the bytes, and report how it ended.
//!
//! The session has the storage side opened *before* it asks for the transfer, so a missing
//! file is a plain 550 without a 150 first. Files move by splice (see `transfer.rs`);
//! everything else through a buffer. Only `uring.rs` here (through `fileio.rs`) and
//! `engine/uring.rs` know io_uring.

mod ascii;
mod connect;
mod fileio;
mod pagecache;
mod pipes;
mod rate;
mod transfer;
mod uring;

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

pub(crate) use connect::{open_passive, AcceptPolicy, PendingAccept};
pub(crate) use fileio::FileIo;
pub(crate) use pipes::PipePool;
pub(crate) use rate::RateLimit;
use transfer::{DataError, Meter};

use crate::auth::User;
use crate::session::{Transfer, TransferOutcome};
use crate::storage::{DataSink, DataSource, Storage, StorageError};

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
pub(crate) enum Payload {
    /// A download, and the file's size when it was opened.
    Source(DataSource, Option<u64>),
    Sink(DataSink),
    Bytes(Vec<u8>),
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
}

/// Runs one transfer to the end and reports through `events`. Dropping the future (an
/// abort) closes the data connection and releases everything it holds. How long the data
/// connection may take, and how long a transfer may stall, is the session's to decide.
pub(crate) async fn run<S: Storage>(
    env: TransferEnv<S>,
    transfer: Transfer,
    payload: Payload,
    connect: DataConnect,
    events: UnboundedSender<Event>,
) {
    let outcome = run_transfer(&env, &transfer, payload, connect, &events).await;
    let _ = events.send(Event::Done(outcome));
}

async fn run_transfer<S: Storage>(
    env: &TransferEnv<S>,
    t: &Transfer,
    payload: Payload,
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
    let _ = events.send(Event::Started);
    // An atomic upload is committed with a second handle on its file, as the first one moves
    // into the data path.
    let mut commit = None;
    let meter = Meter { rate: env.rate.as_deref(), moved: &env.moved, unyielded: Cell::new(0) };
    let result = match payload {
        Payload::Source(DataSource::File(file), len) if !t.ascii && env.splice => {
            transfer::send_file(OwnedFd::from(file), t.offset, len, &sock, &env.pipes, env.file_io, &meter)
                .await
        }
        Payload::Source(DataSource::File(file), len) => {
            transfer::send_file_buffered(file, t.offset, len, &mut sock, t.ascii, env.file_io, &meter).await
        }
        Payload::Source(DataSource::Stream(s), _) => {
            transfer::send_stream(s, &mut sock, t.ascii, &meter).await
        }
        Payload::Sink(DataSink::File(file)) => {
            if t.commit {
                match file.try_clone() {
                    Ok(f) => commit = Some(f),
                    Err(e) => return TransferOutcome::StorageFailed(StorageError::from(e).kind()),
                }
            }
            if !t.ascii && env.splice {
                transfer::receive_file(&sock, OwnedFd::from(file), &env.pipes, env.file_io, &meter).await
            } else {
                transfer::receive_file_buffered(&mut sock, file, t.ascii, env.file_io, &meter).await
            }
        }
        Payload::Sink(DataSink::Stream(s)) => transfer::receive_stream(&mut sock, s, t.ascii, &meter).await,
        Payload::Bytes(bytes) => transfer::send_bytes(&bytes, &mut sock, &meter).await,
    };
    if let (Ok(_), Some(file)) = (&result, commit) {
        // Let a control-connection close sent together with the data close arrive.
        tokio::time::sleep(Duration::from_millis(10)).await;
        if (env.control_closed)() {
            tracing::info!("client went away at the end of an atomic upload; not committed");
            return TransferOutcome::ConnectionLost;
        }
        if let Err(e) = env.storage.commit_write(&env.user, t.storage_path(), &file).await {
            tracing::warn!(error = %e, "cannot commit the upload");
            return TransferOutcome::StorageFailed(e.kind());
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
