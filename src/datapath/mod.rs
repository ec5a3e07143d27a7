//! Data connections and transfers (RFC 959 §3.2–3.4): open the storage side, make the data
//! connection, move the bytes, and report how it ended.
//!
//! The storage side is opened *before* the data connection is used, so a missing file is a
//! plain 550 without a 150 first. Files move by splice (see `transfer.rs`); everything else
//! through a buffer. Only `uring.rs` here (through `fileio.rs`) and `engine/uring.rs` know io_uring.

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
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::UnboundedSender;

pub(crate) use connect::{open_passive, AcceptPolicy, PendingAccept};
pub(crate) use fileio::FileIo;
pub(crate) use pipes::PipePool;
pub(crate) use rate::RateLimit;
use transfer::{DataError, Meter};

use crate::auth::User;
use crate::proto::listing;
use crate::session::{Transfer, TransferKind, TransferOutcome};
use crate::storage::{
    DataSink, DataSource, DirEntry, ErrorKind, Storage, StorageError, UploadPolicy, WriteMode,
};

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
    Started { name: Vec<u8>, size: Option<u64> },
    /// Finished: send the final reply.
    Done(TransferOutcome),
}

/// What a transfer needs from its shard and session.
pub(crate) struct TransferEnv<S> {
    pub(crate) storage: Arc<S>,
    pub(crate) pipes: Rc<PipePool>,
    /// How the engine does file I/O that may block.
    pub(crate) file_io: FileIo,
    pub(crate) user: User,
    pub(crate) connect_timeout: Duration,
    /// Binary file transfers by splice rather than a buffered copy.
    pub(crate) splice: bool,
    /// What an interrupted upload leaves behind.
    pub(crate) uploads: UploadPolicy,
    /// Whether the client has closed its control connection. In stream mode the end of an
    /// upload is the data connection closing, which is also what a dying client does; a
    /// control connection closed at the same moment tells the two apart.
    pub(crate) control_closed: Rc<dyn Fn() -> bool>,
    /// The user's rate limit for this direction, shared with their other transfers.
    pub(crate) rate: Option<Arc<RateLimit>>,
    /// Bytes moved so far, readable by the engine even after an abort.
    pub(crate) moved: Rc<Cell<u64>>,
}

/// Runs one transfer to the end and reports through `events`. Dropping the future (ABOR)
/// closes the data connection and releases everything it holds.
pub(crate) async fn run<S: Storage>(
    env: TransferEnv<S>,
    transfer: Transfer,
    connect: DataConnect,
    events: UnboundedSender<Event>,
) {
    let outcome = run_transfer(&env, &transfer, connect, &events).await;
    let _ = events.send(Event::Done(outcome));
}

enum Opened {
    Source(DataSource, Option<u64>),
    /// The sink, the name for the 150 reply, and whether it must be committed at the end.
    Sink(DataSink, Vec<u8>, bool),
    Listing(Vec<u8>),
}

async fn run_transfer<S: Storage>(
    env: &TransferEnv<S>,
    t: &Transfer,
    connect: DataConnect,
    events: &UnboundedSender<Event>,
) -> TransferOutcome {
    let opened = match open_storage(env, t).await {
        Ok(o) => o,
        Err(e) => return TransferOutcome::OpenFailed(e.kind()),
    };
    let sock = match connect {
        // Dropped with this future on ABOR, which closes the listener.
        DataConnect::Passive(pending) => match pending.accept().await {
            Ok(sock) => sock,
            Err(e) => {
                tracing::debug!(error = %e, "no passive data connection");
                return TransferOutcome::NoDataConnection;
            }
        },
        DataConnect::Active { local, source_port, target } => {
            match connect::connect_active(local, source_port, target, env.connect_timeout).await {
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
    let (name, size) = match &opened {
        Opened::Source(_, size) => (t.file_name().to_vec(), *size),
        Opened::Sink(_, name, _) => (name.clone(), None),
        Opened::Listing(_) => (Vec::new(), None),
    };
    let _ = events.send(Event::Started { name, size });
    // An atomic upload is committed with a second handle on its file, as the first one moves
    // into the data path.
    let mut commit = None;
    let meter = Meter { rate: env.rate.as_deref(), moved: &env.moved, unyielded: Cell::new(0) };
    let result = match opened {
        Opened::Source(DataSource::File(file), len) if !t.ascii && env.splice => {
            transfer::send_file(OwnedFd::from(file), t.offset, len, &sock, &env.pipes, env.file_io, &meter)
                .await
        }
        Opened::Source(DataSource::File(file), len) => {
            transfer::send_file_buffered(file, t.offset, len, &mut sock, t.ascii, env.file_io, &meter).await
        }
        Opened::Source(DataSource::Stream(s), _) => {
            transfer::send_stream(s, &mut sock, t.ascii, &meter).await
        }
        Opened::Sink(DataSink::File(file), _, replace) => {
            if replace {
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
        Opened::Sink(DataSink::Stream(s), _, _) => {
            transfer::receive_stream(&mut sock, s, t.ascii, &meter).await
        }
        Opened::Listing(bytes) => transfer::send_bytes(&bytes, &mut sock, &meter).await,
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

async fn open_storage<S: Storage>(env: &TransferEnv<S>, t: &Transfer) -> Result<Opened, StorageError> {
    let storage = &env.storage;
    let user = &env.user;
    let path = t.storage_path();
    match t.kind {
        TransferKind::Retr => {
            let source = storage.open_read(user, path, t.offset).await?;
            let size = match &source {
                DataSource::File(f) => f.metadata().ok().map(|m| m.len()),
                _ => None,
            };
            Ok(Opened::Source(source, size))
        }
        TransferKind::Stor => {
            let mode = match (t.offset, env.uploads) {
                (0, UploadPolicy::Atomic) => WriteMode::Replace,
                (0, _) => WriteMode::Truncate,
                (offset, _) => WriteMode::Resume(offset),
            };
            let sink = storage.open_write(user, path, mode).await?;
            Ok(Opened::Sink(sink, t.file_name().to_vec(), mode == WriteMode::Replace))
        }
        TransferKind::Appe => {
            let sink = storage.open_write(user, path, WriteMode::Append).await?;
            Ok(Opened::Sink(sink, t.file_name().to_vec(), false))
        }
        TransferKind::Stou => open_unique(env, t).await,
        TransferKind::List | TransferKind::Nlst | TransferKind::Mlsd => {
            let meta = storage.metadata(user, path).await?;
            let entries = if meta.is_dir() {
                storage.list(user, path).await?
            } else if t.kind == TransferKind::Mlsd {
                return Err(ErrorKind::NotADirectory.into());
            } else {
                vec![DirEntry { name: t.file_name().to_vec(), metadata: meta }]
            };
            Ok(Opened::Listing(format_listing(t, &entries, SystemTime::now())))
        }
    }
}

/// STOU: the requested name if free, else `name.1`, `name.2`, ... (vsftpd's scheme).
async fn open_unique<S: Storage>(env: &TransferEnv<S>, t: &Transfer) -> Result<Opened, StorageError> {
    let mut candidate = t.path.clone();
    for i in 0..100u32 {
        if i > 0 {
            candidate.clone_from(&t.path);
            candidate.extend_from_slice(format!(".{i}").as_bytes());
        }
        let path = crate::proto::path::storage_path(&candidate);
        match env.storage.open_write(&env.user, path, WriteMode::CreateNew).await {
            Ok(sink) => {
                let name = crate::proto::path::file_name(&candidate).to_vec();
                return Ok(Opened::Sink(sink, name, false));
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ErrorKind::AlreadyExists.into())
}

fn format_listing(t: &Transfer, entries: &[DirEntry], now: SystemTime) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 64);
    for e in entries {
        match t.kind {
            TransferKind::List => listing::write_list_line(&e.name, &e.metadata, now, &mut out),
            TransferKind::Nlst => listing::write_nlst_line(&e.name, &mut out),
            _ => {
                listing::write_facts(&e.name, &e.metadata, t.writable, &mut out);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out
}
