//! One control connection: reads command lines, drives the sans-IO [`Session`], carries out
//! its actions, and writes its replies.
//!
//! A tokio-uring read cannot be cancelled without losing what it read, so the main loop keeps
//! one read future alive across iterations and only ever polls it; it waits on that read, the
//! running transfer's events, one timer (idle or login deadline) and the shutdown signal
//! together, and the others are safe to drop. One future and one reused buffer per session,
//! no reader task or channel, keeps an idle session small.
//!
//! While a transfer runs, ABOR, STAT and NOOP are handled at once; other commands are kept in
//! order and handled when it ends (pipelined commands get their replies in order).

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use crate::proto::address::canonical;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::users::UserLease;
use super::{limits, Shard};
use crate::auth::{AuthError, Authenticator};
use crate::datapath::{self, AcceptPolicy, DataConnect, Event, PendingAccept, TransferEnv};
use crate::events::{Event as HostEvent, TransferRecord};
use crate::proto::{self, Line, LineBuffer, ParseError};
use crate::session::{
    Action, DataChannel, FsOutcome, FsRequest, Session, SessionConfig, Transfer, TransferKind,
    TransferOutcome,
};
use crate::storage::{DirEntry, ErrorKind, Storage};

/// Bytes per control read: commands are short, and 10,000 idle sessions each hold one buffer.
const READ_BUF: usize = 512;
/// Commands kept while a transfer runs before the connection stops reading.
const MAX_DEFERRED: usize = 64;

type Stream = tokio::net::TcpStream;

/// Reads into the spare capacity of `buf` once the socket is readable; owns the buffer so
/// that the pending read can live across the control loop's iterations.
async fn read_owned(stream: Rc<Stream>, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
    loop {
        if let Err(e) = stream.readable().await {
            return (Err(e), buf);
        }
        match stream.try_read_buf(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            res => return (res, buf),
        }
    }
}

/// Writes all of `buf` as the socket becomes writable.
async fn write_all(stream: &Stream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        stream.writable().await?;
        match stream.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

struct Running {
    task: JoinHandle<()>,
    events: mpsc::UnboundedReceiver<Event>,
    kind: TransferKind,
    path: Vec<u8>,
    started: Instant,
    moved: Rc<Cell<u64>>,
}

struct Control<S, A> {
    shard: Rc<Shard<S, A>>,
    stream: Rc<Stream>,
    session: Session,
    lines: LineBuffer,
    /// Lines that arrived during a transfer; `None` stands for an over-long line.
    deferred: VecDeque<Option<Vec<u8>>>,
    out: Vec<u8>,
    passive: Option<PendingAccept>,
    transfer: Option<Running>,
    local: SocketAddr,
    peer: SocketAddr,
    /// The logged-in user's share of per-user limits.
    user_lease: Option<UserLease>,
}

/// Runs `f` on a socket2 view of the control socket.
fn with_socket<R>(stream: &Stream, f: impl FnOnce(socket2::SockRef<'_>) -> R) -> R {
    // SAFETY: the stream owns the descriptor and outlives this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    f(socket2::SockRef::from(&fd))
}

fn local_addr(stream: &Stream) -> io::Result<SocketAddr> {
    with_socket(stream, |s| s.local_addr())?.as_socket().ok_or_else(|| io::Error::other("not an IP socket"))
}

/// Whether the client closed the control connection: a peek that finds end-of-stream (or an
/// error other than "nothing to read yet").
fn peer_closed(stream: &Stream) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    let mut byte = [0u8; 1];
    match recv(stream.as_raw_fd(), &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
        Ok(0) => true,
        Ok(_) | Err(nix::errno::Errno::EAGAIN) => false,
        Err(_) => true,
    }
}

fn virtual_path(path: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(path))
}

/// Serves one accepted control connection until it closes.
pub(crate) async fn serve<S: Storage, A: Authenticator>(
    shard: Rc<Shard<S, A>>,
    stream: Stream,
    peer: SocketAddr,
) {
    // A span per session costs about 2 KB while it lives, so it is a debug-level span: at
    // `--log-level debug` every line of a session carries its peer, shard and user; the few
    // info-level lines name the peer themselves.
    let span = tracing::debug_span!("session", %peer, shard = shard.id, user = tracing::field::Empty);
    shard.sessions.set(shard.sessions.get() + 1);
    shard.metrics.session_opened();
    let guard = SessionCount(Rc::clone(&shard));
    async move {
        let _ = stream.set_nodelay(true);
        // Clients send ABOR as TCP urgent data (RFC 959 §4.1.3); without OOBINLINE the kernel
        // takes its last byte out of the stream and the command never ends.
        let _ = with_socket(&stream, |s| s.set_out_of_band_inline(true));
        let _permit = match guard.0.limits.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                tracing::info!(%peer, ?refusal, "connection refused: too many sessions");
                guard.0.metrics.reply(421);
                let text: &[u8] = match refusal {
                    limits::Refusal::Total => b"421 Too many users, try again later.\r\n",
                    limits::Refusal::PerAddress => b"421 Too many connections from your address.\r\n",
                };
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(5), write_all(&stream, text)).await;
                let _ = with_socket(&stream, |s| s.shutdown(std::net::Shutdown::Both));
                return;
            }
        };
        let local = match local_addr(&stream) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "no local address");
                return;
            }
        };
        let config = &guard.0.config;
        let mut session_config = SessionConfig::default();
        session_config.greeting.clone_from(&config.greeting);
        session_config.max_login_failures = config.max_login_failures;
        session_config.dangerous_allow_foreign_active = config.dangerous_foreign_data;
        let stream = Rc::new(stream);
        let mut control = Control {
            session: Session::new(session_config, peer, local),
            lines: LineBuffer::new(config.max_line),
            shard: Rc::clone(&guard.0),
            stream,
            deferred: VecDeque::new(),
            out: Vec::new(),
            passive: None,
            transfer: None,
            local,
            peer,
            user_lease: None,
        };
        tracing::debug!("connected");
        if let Err(e) = control.run().await {
            tracing::debug!(error = %e, "control connection ended");
        }
        control.finish();
        if let Some(user) = control.session.user() {
            control.emit(HostEvent::Logout { user: user.name.clone(), peer });
        }
        tracing::debug!("closed");
    }
    .instrument(span)
    .await;
}

/// Counts the shard's sessions for graceful shutdown, also when a session task is dropped.
struct SessionCount<S, A>(Rc<Shard<S, A>>);

impl<S, A> Drop for SessionCount<S, A> {
    fn drop(&mut self) {
        self.0.sessions.set(self.0.sessions.get().saturating_sub(1));
        self.0.metrics.session_closed();
    }
}

async fn next_event(transfer: &mut Option<Running>) -> Event {
    match transfer {
        // A transfer task that ended without reporting (it panicked) counts as a local error.
        Some(r) => {
            r.events.recv().await.unwrap_or(Event::Done(TransferOutcome::StorageFailed(ErrorKind::Local)))
        }
        None => std::future::pending().await,
    }
}

impl<S: Storage, A: Authenticator> Control<S, A> {
    async fn run(&mut self) -> io::Result<()> {
        let idle = self.shard.config.idle_timeout;
        let mut shutdown = self.shard.shutdown.clone();
        let mut shutting_down = false;
        let mut idle_deadline = Instant::now() + idle;
        let login_deadline = Instant::now() + self.shard.config.login_timeout;
        let stream = Rc::clone(&self.stream);
        let read = read_owned(Rc::clone(&stream), Vec::with_capacity(READ_BUF));
        tokio::pin!(read);
        let timer = tokio::time::sleep_until(idle_deadline);
        tokio::pin!(timer);
        self.run_actions().await;
        loop {
            self.process_lines().await;
            if shutting_down && !self.session.is_transferring() {
                self.session.shutdown("Server shutting down.");
                self.run_actions().await;
            }
            self.flush().await?;
            if self.session.is_closing() {
                return Ok(());
            }
            // One timer: the login deadline until someone logs in, then the idle deadline;
            // neither while a transfer runs.
            let awaiting_login = self.session.user().is_none() && !self.session.is_waiting();
            let deadline = if awaiting_login { idle_deadline.min(login_deadline) } else { idle_deadline };
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            let can_read = self.deferred.len() < MAX_DEFERRED;
            tokio::select! {
                event = next_event(&mut self.transfer) => {
                    self.on_event(event);
                    idle_deadline = Instant::now() + idle;
                    self.run_actions().await;
                }
                (res, mut buf) = &mut read, if can_read => match res {
                    Ok(n) if n > 0 => {
                        self.lines.push(&buf);
                        buf.clear();
                        read.set(read_owned(Rc::clone(&stream), buf));
                        idle_deadline = Instant::now() + idle;
                    }
                    // End of stream or a reset: the client is gone.
                    _ => return Ok(()),
                },
                () = &mut timer, if self.transfer.is_none() => {
                    if awaiting_login && login_deadline <= idle_deadline {
                        tracing::info!(peer = %self.peer, "login timeout");
                        self.session.shutdown("Login timeout.");
                    } else {
                        tracing::info!(peer = %self.peer, "idle timeout");
                        self.session.shutdown("Timeout.");
                    }
                    self.run_actions().await;
                }
                changed = shutdown.changed(), if !shutting_down => {
                    shutting_down = changed.is_err() || *shutdown.borrow();
                }
            }
        }
    }

    /// Handles buffered lines as far as the session can take them.
    async fn process_lines(&mut self) {
        loop {
            if self.session.is_closing() {
                return;
            }
            if self.session.is_transferring() {
                let Some(line) = self.lines.next_line() else {
                    return;
                };
                match line {
                    // ABOR acts at once; NOOP and STAT too, unless earlier commands are held
                    // (their replies must come first).
                    Line::Complete(l) => match proto::parse(l) {
                        Ok(cmd)
                            if Session::handles_during_transfer(&cmd)
                                && (self.deferred.is_empty() || matches!(cmd, proto::Command::Abor)) =>
                        {
                            self.session.handle_command(cmd)
                        }
                        _ => self.deferred.push_back(Some(l.to_vec())),
                    },
                    Line::TooLong => self.deferred.push_back(None),
                }
            } else if let Some(line) = self.deferred.pop_front() {
                match line {
                    Some(l) => match proto::parse(&l) {
                        Ok(cmd) => self.session.handle_command(cmd),
                        Err(e) => self.session.handle_parse_error(e),
                    },
                    None => self.session.handle_parse_error(ParseError::LineTooLong),
                }
            } else {
                let Some(line) = self.lines.next_line() else {
                    return;
                };
                match line {
                    Line::Complete(l) => match proto::parse(l) {
                        Ok(cmd) => self.session.handle_command(cmd),
                        Err(e) => self.session.handle_parse_error(e),
                    },
                    Line::TooLong => self.session.handle_parse_error(ParseError::LineTooLong),
                }
            }
            self.run_actions().await;
        }
    }

    /// Carries out everything the session asked for.
    async fn run_actions(&mut self) {
        self.run_actions_inner().await;
        // Logged out (REIN, or USER starting a new login): the user's place is free again.
        if self.session.user().is_none() {
            self.user_lease = None;
        }
    }

    async fn run_actions_inner(&mut self) {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Reply(r) => {
                    self.shard.metrics.reply(r.code());
                    r.write_to(&mut self.out);
                }
                Action::Authenticate { username, password } => {
                    // Boxed: an idle session's future should not carry the authenticator's.
                    let mut result = Box::pin(self.shard.auth.authenticate(&username, &password)).await;
                    // A new login gives up the place of the previous one first.
                    self.user_lease = None;
                    if let Ok(user) = &result {
                        // Per-user limits apply from login on, across every shard.
                        match self.shard.users.admit(user) {
                            Some(lease) => self.user_lease = Some(lease),
                            None => result = Err(AuthError::TooManySessions),
                        }
                    }
                    self.shard.metrics.login(result.is_ok());
                    self.emit(HostEvent::Login {
                        user: username.clone(),
                        peer: self.peer,
                        ok: result.is_ok(),
                    });
                    match &result {
                        Ok(user) => {
                            tracing::Span::current().record("user", user.name.as_str());
                            tracing::info!(peer = %self.peer, user = %user.name, "login");
                        }
                        Err(e) => {
                            tracing::info!(peer = %self.peer, user = %username, error = %e, "login failed");
                            // A growing delay makes password guessing slow.
                            let step = u64::from(self.session.login_failures() + 1).min(8);
                            tokio::time::sleep(std::time::Duration::from_millis(250 * step)).await;
                        }
                    }
                    self.session.login_done(result);
                }
                Action::Fs(request) => {
                    let outcome = Box::pin(self.run_fs(&request)).await;
                    if matches!(outcome, FsOutcome::Done) {
                        self.fs_event(&request);
                    }
                    self.session.fs_done(outcome, SystemTime::now());
                }
                Action::OpenPassive => self.open_passive(),
                Action::ClosePassive => self.close_passive(),
                Action::Transfer(t) => self.start_transfer(t),
                Action::Abort => self.abort_transfer(),
                // The main loop sees `is_closing` after flushing the replies before it.
                Action::Close => {}
            }
        }
    }

    async fn run_fs(&self, request: &FsRequest) -> FsOutcome {
        let Some(user) = self.session.user() else {
            return FsOutcome::Failed(ErrorKind::PermissionDenied);
        };
        let storage = &*self.shard.storage;
        let path = request.storage_path();
        let result = match request {
            FsRequest::Metadata(_) => storage.metadata(user, path).await.map(FsOutcome::Metadata),
            FsRequest::List(virtual_path) => match storage.metadata(user, path).await {
                Ok(meta) if meta.is_dir() => storage.list(user, path).await.map(FsOutcome::Listing),
                Ok(meta) => Ok(FsOutcome::Listing(vec![DirEntry {
                    name: proto::path::file_name(virtual_path).to_vec(),
                    metadata: meta,
                }])),
                Err(e) => Err(e),
            },
            FsRequest::MakeDir(_) => storage.make_dir(user, path).await.map(|()| FsOutcome::Done),
            FsRequest::RemoveDir(_) => storage.remove_dir(user, path).await.map(|()| FsOutcome::Done),
            FsRequest::RemoveFile(_) => storage.remove_file(user, path).await.map(|()| FsOutcome::Done),
            FsRequest::Rename { to, .. } => {
                storage.rename(user, path, proto::path::storage_path(to)).await.map(|()| FsOutcome::Done)
            }
        };
        match result {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::debug!(error = %e, ?request, "storage refused");
                FsOutcome::Failed(e.kind())
            }
        }
    }

    fn open_passive(&mut self) {
        self.close_passive();
        let ip = canonical(self.local.ip());
        let config = &self.shard.config;
        let policy = AcceptPolicy {
            peer: canonical(self.peer.ip()),
            allow_foreign: config.dangerous_foreign_data,
            timeout: config.data_timeout,
        };
        match datapath::open_passive(&self.shard.ports, self.shard.id, ip, policy) {
            Ok(Some((port, pending))) => {
                self.passive = Some(pending);
                let announce = config.public_address.unwrap_or(ip);
                self.session.passive_opened(SocketAddr::new(announce, port));
            }
            Ok(None) => {
                tracing::warn!("passive port range exhausted");
                self.session.passive_failed();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a passive port");
                self.session.passive_failed();
            }
        }
    }

    /// Closes the passive listener; its port is back in the pool at once.
    fn close_passive(&mut self) {
        self.passive = None;
    }

    fn start_transfer(&mut self, transfer: Transfer) {
        let connect = match transfer.channel {
            DataChannel::Passive => self.passive.take().map_or(DataConnect::Missing, DataConnect::Passive),
            DataChannel::Active(target) => {
                self.close_passive();
                let source_port = self
                    .shard
                    .config
                    .active_source_port
                    .then(|| self.local.port().checked_sub(1))
                    .flatten()
                    .filter(|&p| p > 0);
                DataConnect::Active { local: canonical(self.local.ip()), source_port, target }
            }
        };
        let Some(user) = self.session.user().cloned() else {
            self.session.transfer_done(TransferOutcome::OpenFailed(ErrorKind::PermissionDenied));
            return;
        };
        let moved = Rc::new(Cell::new(0u64));
        let env = TransferEnv {
            storage: std::sync::Arc::clone(&self.shard.storage),
            pipes: Rc::clone(if transfer.kind.is_upload() {
                &self.shard.upload_pipes
            } else {
                &self.shard.pipes
            }),
            file_io: self.shard.file_io,
            user,
            connect_timeout: self.shard.config.data_timeout,
            splice: self.shard.config.splice,
            uploads: self.shard.config.uploads,
            rate: self.user_lease.as_ref().and_then(|l| {
                if transfer.kind.is_upload() {
                    l.shared.upload.clone()
                } else {
                    l.shared.download.clone()
                }
            }),
            moved: Rc::clone(&moved),
            control_closed: {
                let stream = Rc::clone(&self.stream);
                Rc::new(move || peer_closed(&stream))
            },
        };
        tracing::debug!(kind = ?transfer.kind, path = %String::from_utf8_lossy(&transfer.path), "transfer");
        let (tx, events) = mpsc::unbounded_channel();
        let (kind, path) = (transfer.kind, transfer.path.clone());
        let task = tokio::task::spawn_local(datapath::run(env, transfer, connect, tx).in_current_span());
        self.transfer = Some(Running { task, events, kind, path, started: Instant::now(), moved });
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Started { name, size } => self.session.transfer_started(&name, size),
            Event::Done(outcome) => {
                if let Some(running) = self.transfer.take() {
                    self.transfer_ended(&running, outcome);
                }
                tracing::debug!(?outcome, "transfer done");
                self.session.transfer_done(outcome);
            }
        }
    }

    /// Counts a finished transfer and tells the host.
    fn transfer_ended(&self, running: &Running, outcome: TransferOutcome) {
        let bytes = running.moved.get();
        let (command, upload) = match running.kind {
            TransferKind::Retr => ("RETR", false),
            TransferKind::Stor => ("STOR", true),
            TransferKind::Appe => ("APPE", true),
            TransferKind::Stou => ("STOU", true),
            TransferKind::List => ("LIST", false),
            TransferKind::Nlst => ("NLST", false),
            TransferKind::Mlsd => ("MLSD", false),
        };
        let result = match outcome {
            TransferOutcome::Completed { .. } => "ok",
            TransferOutcome::Aborted => "aborted",
            TransferOutcome::OpenFailed(_) => "refused",
            TransferOutcome::NoDataConnection => "no_connection",
            TransferOutcome::ConnectionLost => "connection_lost",
            TransferOutcome::StorageFailed(_) => "storage_error",
        };
        self.shard.metrics.transfer(command, result, bytes, upload);
        let Some(user) = self.session.user() else { return };
        if !matches!(
            running.kind,
            TransferKind::Retr | TransferKind::Stor | TransferKind::Appe | TransferKind::Stou
        ) || matches!(outcome, TransferOutcome::OpenFailed(_) | TransferOutcome::NoDataConnection)
        {
            return;
        }
        let record = TransferRecord {
            user: user.name.clone(),
            peer: self.peer,
            path: virtual_path(&running.path),
            bytes,
            duration: running.started.elapsed(),
            complete: matches!(outcome, TransferOutcome::Completed { .. }),
        };
        self.emit(if upload { HostEvent::Upload(record) } else { HostEvent::Download(record) });
    }

    fn fs_event(&self, request: &FsRequest) {
        let Some(user) = self.session.user() else { return };
        let user = user.name.clone();
        let event = match request {
            FsRequest::MakeDir(p) => HostEvent::DirCreated { user, path: virtual_path(p) },
            FsRequest::RemoveDir(p) => HostEvent::DirRemoved { user, path: virtual_path(p) },
            FsRequest::RemoveFile(p) => HostEvent::Deleted { user, path: virtual_path(p) },
            FsRequest::Rename { from, to } => {
                HostEvent::Renamed { user, from: virtual_path(from), to: virtual_path(to) }
            }
            _ => return,
        };
        self.emit(event);
    }

    fn emit(&self, event: HostEvent) {
        if let Some(listener) = &self.shard.events {
            listener.on_event(event);
        }
    }

    fn abort_transfer(&mut self) {
        let Some(mut running) = self.transfer.take() else {
            return;
        };
        // A transfer that finished before the ABOR arrived reports that, not an abort.
        let mut outcome = TransferOutcome::Aborted;
        while let Ok(event) = running.events.try_recv() {
            match event {
                Event::Started { name, size } => self.session.transfer_started(&name, size),
                Event::Done(o) => outcome = o,
            }
        }
        running.task.abort();
        self.transfer_ended(&running, outcome);
        self.session.transfer_done(outcome);
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        // A client that never reads its replies must not hold the session forever.
        let write = write_all(&self.stream, &self.out);
        let res = match tokio::time::timeout(self.shard.config.idle_timeout, write).await {
            Ok(res) => res,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "client does not read replies")),
        };
        self.out.clear();
        res
    }

    fn finish(&mut self) {
        if let Some(running) = self.transfer.take() {
            running.task.abort();
            self.transfer_ended(&running, TransferOutcome::ConnectionLost);
        }
        self.close_passive();
        let _ = with_socket(&self.stream, |s| s.shutdown(std::net::Shutdown::Both));
    }
}
