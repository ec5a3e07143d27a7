//! One control connection: the thin loop that feeds the sans-IO [`Session`] bytes and time
//! and carries out what it asks for.
//!
//! read → `handle_input` → carry out `poll_action`s → write → sleep until `poll_timeout`, the
//! next read, or the running transfer's end. Every protocol rule (framing, deferral during a
//! transfer, deadlines and their replies, the storage steps of each command) is the
//! session's; this loop only does I/O, asks storage and the authenticator, and keeps the
//! books (metrics, events, per-user leases).
//!
//! The socket is driven by readiness on both engines: a readable socket is read into the
//! shard's one scratch buffer, so an idle session holds no buffer of its own, and replies go
//! out with one non-blocking write when the socket has room (the usual case).
//!
//! After AUTH TLS (or from the first byte on an implicit FTPS listener) the control stream is
//! a tokio-rustls stream over the same socket, read into a small buffer of the session's own
//! (rustls keeps records across reads, so the shared scratch buffer cannot be lent across an
//! await). The clear path is untouched by this. The handshake is bounded by the login
//! timeout and runs as the session's own task, so a stalled one holds no one else up.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::time::SystemTime;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::users::UserLease;
use super::{limits, Shard};
use crate::auth::{AuthError, Authenticator, Credentials};
use crate::ban::Verdict;
use crate::datapath::{self, AcceptPolicy, DataConnect, Event, Payload, PendingAccept, TransferEnv};
use crate::events::{Event as HostEvent, TransferRecord};
use crate::proto::address::canonical;
use crate::proto::{code, Reply};
use crate::session::{
    Action, DataChannel, FsOutcome, FsRequest, Session, SessionConfig, Transfer, TransferData, TransferKind,
    TransferOutcome,
};
use crate::storage::{DataSink, DataSource, DirEntry, ErrorKind, Lister, Storage};
use crate::tls::{ControlTls, TlsInfo, TlsStream};
use crate::types::Timeouts;

/// Bytes per control read, into the shard's scratch buffer.
pub(crate) const READ_BUF: usize = 4096;

/// Replies queued beyond this are written before the next storage call, so a reply sent in
/// parts (STAT of a directory, a page per part) holds about a page, never the listing; and a
/// buffer that grew past four times this is given back once written.
const FLUSH_AT: usize = 16 * 1024;

struct Running {
    task: JoinHandle<()>,
    events: mpsc::UnboundedReceiver<Event>,
    kind: TransferKind,
    path: Vec<u8>,
    /// TYPE A: for TransferRecord::ascii.
    ascii: bool,
    started: Instant,
    moved: Rc<Cell<u64>>,
}

/// A file or directory storage opened for the transfer the session asks for next.
enum Opened<L> {
    /// A download and the file's size when it was opened.
    Source(DataSource, Option<u64>),
    Sink(DataSink),
    /// A directory to list.
    Listing(L),
}

/// The control socket shared with the transfer task (which peeks at it), as tokio-rustls's
/// transport: readiness plus non-blocking reads and writes, as on the clear path.
struct SharedStream(Rc<TcpStream>);

impl AsyncRead for SharedStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        loop {
            std::task::ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return std::task::Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return std::task::Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        loop {
            std::task::ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                res => return std::task::Poll::Ready(res),
            }
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
    }
}

/// The TLS side of a control connection once TLS is on.
struct ControlTlsState {
    stream: TlsStream<SharedStream>,
    /// What the data connections' handshakes resume.
    context: Rc<ControlTls>,
    /// The session's own read buffer (see the module docs).
    buf: Box<[u8]>,
    info: Option<TlsInfo>,
}

/// Runs the control connection's TLS handshake, bounded by `timeout` (the login timeout).
async fn tls_handshake<S, A>(
    shard: &Shard<S, A>,
    stream: &Rc<TcpStream>,
    timeout: std::time::Duration,
) -> io::Result<ControlTlsState> {
    let Some(acceptor) = shard.config.tls.as_ref() else {
        return Err(io::Error::other("TLS is not configured"));
    };
    let context = acceptor.control();
    match context.accept_control(SharedStream(Rc::clone(stream)), timeout).await {
        Ok(tls) => {
            shard.metrics.tls_handshake(true);
            let info = TlsInfo::of(tls.get_ref().1);
            tracing::debug!(version = info.as_ref().map(|i| i.version), "TLS on the control connection");
            Ok(ControlTlsState {
                stream: tls,
                context: Rc::new(context),
                buf: vec![0; READ_BUF].into_boxed_slice(),
                info,
            })
        }
        Err(e) => {
            shard.metrics.tls_handshake(false);
            tracing::info!(error = %e, "control TLS handshake failed");
            Err(io::Error::other(e))
        }
    }
}

/// Waits for input: readiness of the clear socket (`None`: read it now), or the next
/// decrypted bytes of a TLS one (`Some(0)`: the client closed).
async fn next_input(stream: &TcpStream, tls: Option<&mut ControlTlsState>) -> io::Result<Option<usize>> {
    match tls {
        None => stream.readable().await.map(|()| None),
        Some(t) => match t.stream.read(&mut t.buf).await {
            Ok(n) => Ok(Some(n)),
            // A client that drops the connection without close_notify has gone all the same.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(0)),
            Err(e) => Err(e),
        },
    }
}

struct Control<S: Storage, A> {
    shard: Rc<Shard<S, A>>,
    stream: Rc<TcpStream>,
    /// Set once AUTH TLS succeeded (or from the start on an implicit FTPS listener).
    tls: Option<Box<ControlTlsState>>,
    /// The session asked for the handshake; it runs once the 234 is written.
    start_tls: bool,
    session: Session,
    out: Vec<u8>,
    passive: Option<PendingAccept>,
    /// Boxed, as is `transfer`: an idle session's task carries every field (see `run`).
    opened: Option<Box<Opened<S::Lister>>>,
    transfer: Option<Box<Running>>,
    local: SocketAddr,
    peer: SocketAddr,
    /// The logged-in user's share of per-user limits.
    user_lease: Option<UserLease>,
    /// The generation in [`Shard::timeouts`] of the timeouts the session has.
    timeouts_seen: u64,
}

/// Whether the client closed the control connection: a peek that finds end-of-stream (or an
/// error other than "nothing to read yet").
fn peer_closed(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.try_io(tokio::io::Interest::READABLE, || {
        nix::sys::socket::recv(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            &mut byte,
            nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)
    }) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    }
}

fn virtual_path(path: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(path))
}

/// Writes one reply to a connection the session never sees (refused at the door). A fresh
/// socket's send buffer always has room for one line, so one non-blocking write does.
fn refuse(stream: &TcpStream, reply: Reply) {
    let mut out = Vec::new();
    reply.write_to(&mut out);
    let _ = stream.try_write(&out);
}

/// Serves one accepted control connection until it closes.
pub(crate) async fn serve<S: Storage, A: Authenticator>(
    shard: Rc<Shard<S, A>>,
    stream: TcpStream,
    peer: SocketAddr,
    implicit: bool,
) {
    // Behind a balancer the socket's peer is the balancer; its PROXY header names the client.
    let Some(peer) = super::proxy::client_address(&shard.config.proxy_protocol_from, &stream, peer).await
    else {
        return;
    };
    // A span per session costs about 2 KB while it lives, so it is a debug-level span: at
    // `--log-level debug` every line of a session carries its peer, shard and user; the few
    // info-level lines name the peer themselves.
    let span = tracing::debug_span!(
        "session",
        %peer,
        shard = shard.id,
        user = tracing::field::Empty,
        client = tracing::field::Empty
    );
    shard.sessions.set(shard.sessions.get() + 1);
    shard.metrics.session_opened();
    let guard = SessionCount(Rc::clone(&shard));
    async move {
        let _ = stream.set_nodelay(true);
        // Clients send ABOR as TCP urgent data (RFC 959 §4.1.3); without OOBINLINE the kernel
        // takes its last byte out of the stream and the command never ends.
        let _ = socket2::SockRef::from(&stream).set_out_of_band_inline(true);
        if *guard.0.shutdown.borrow() {
            // Accepted in the moment the server began to shut down: refuse, do not greet.
            guard.0.metrics.reply(code::NOT_AVAILABLE.get());
            refuse(&stream, Reply::new(code::NOT_AVAILABLE, "Server shutting down."));
            return;
        }
        if let Some(left) =
            guard.0.bans.as_ref().and_then(|b| b.is_banned(peer.ip(), std::time::Instant::now()))
        {
            tracing::info!(%peer, left_secs = left.as_secs(), "connection refused: address banned");
            guard.0.metrics.banned_refusal();
            guard.0.metrics.reply(code::NOT_AVAILABLE.get());
            refuse(
                &stream,
                Reply::new(code::NOT_AVAILABLE, "Too many failures from your address; try again later."),
            );
            return;
        }
        let _permit = match guard.0.limits.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                tracing::info!(%peer, ?refusal, "connection refused: too many sessions");
                guard.0.metrics.reply(code::NOT_AVAILABLE.get());
                let text = match refusal {
                    limits::Refusal::Total => "Too many users, try again later.",
                    limits::Refusal::PerAddress => "Too many connections from your address.",
                };
                refuse(&stream, Reply::new(code::NOT_AVAILABLE, text));
                return;
            }
        };
        let local = match stream.local_addr() {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "no local address");
                return;
            }
        };
        let stream = Rc::new(stream);
        // Read once: the session keeps these until a reload moves the generation.
        let (timeouts_seen, timeouts) = guard.0.timeouts.get();
        let tls = if implicit {
            // Implicit FTPS: the handshake comes first and the 220 goes inside TLS.
            // Boxed, like every rare, large wait here: an idle session's task is as big as
            // its largest suspended state (see `run`).
            match Box::pin(tls_handshake(&guard.0, &stream, timeouts.login)).await {
                Ok(t) => Some(Box::new(t)),
                Err(_) => return,
            }
        } else {
            None
        };
        let mut config = session_config(&guard.0.config, timeouts);
        config.implicit_tls = implicit;
        let session = Session::new(config, peer, local, Instant::now().into_std());
        let mut control = Control {
            session,
            shard: Rc::clone(&guard.0),
            stream,
            tls,
            start_tls: false,
            out: Vec::new(),
            passive: None,
            opened: None,
            transfer: None,
            local,
            peer,
            user_lease: None,
            timeouts_seen,
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

fn session_config(config: &crate::config::Config, timeouts: Timeouts) -> SessionConfig {
    let mut c = SessionConfig::default();
    c.greeting.clone_from(&config.greeting);
    c.max_login_failures = config.max_login_failures;
    c.dangerous_allow_foreign_active = config.dangerous_foreign_data;
    c.max_line = config.max_line;
    c.login_timeout = timeouts.login;
    c.idle_timeout = timeouts.idle;
    c.data_timeout = timeouts.data;
    c.stall_timeout = timeouts.stall;
    c.uploads = config.uploads;
    if config.tls.is_some() {
        c.tls = config.tls_control;
        c.tls_data = config.tls_data;
        c.tls_anonymous_exempt = config.tls_anonymous_exempt;
    }
    c
}

/// Counts the shard's sessions for graceful shutdown, also when a session task is dropped.
struct SessionCount<S, A>(Rc<Shard<S, A>>);

impl<S, A> Drop for SessionCount<S, A> {
    fn drop(&mut self) {
        self.0.sessions.set(self.0.sessions.get().saturating_sub(1));
        self.0.metrics.session_closed();
    }
}

/// Entries a STAT page buffer is made for: a built-in backend's page (1,024 entries, or 1,000
/// keys). The buffer is made here on the shard, so a page read on the blocking pool does not
/// grow it there: buffers grown on one thread and freed on another left mimalloc holding
/// 8 MB more over a 100,000-entry STAT (`benches/list_memory.py`).
const PAGE_ENTRIES: usize = 1024;

/// The next page of a listing that is not empty, or an empty one at its end (a lister's
/// pages may be empty, e.g. a store's page of directory markers only).
async fn next_page<L: Lister>(lister: &mut L) -> crate::storage::Result<Vec<DirEntry>> {
    let mut page = Vec::with_capacity(PAGE_ENTRIES);
    while lister.next_page(&mut page).await? && page.is_empty() {}
    Ok(page)
}

async fn next_event(transfer: &mut Option<Box<Running>>) -> Event {
    match transfer {
        // A transfer task that ended without reporting (it panicked) counts as a local error.
        Some(r) => {
            r.events.recv().await.unwrap_or(Event::Done(TransferOutcome::StorageFailed(ErrorKind::Local)))
        }
        None => std::future::pending().await,
    }
}

/// Sleeps until the timer fires; forever when there is none.
async fn sleep_until_set(timer: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Far enough ahead to stand for "no deadline" in a reusable timer.
fn never() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400 * 365)
}

impl<S: Storage, A: Authenticator> Control<S, A> {
    /// The control loop. An idle session's whole cost is its task, and a task is as large as
    /// the largest state its future can be suspended in, so rare, large waits (TLS handshakes,
    /// logins, storage calls) are boxed and rare fields are `Option<Box<_>>`: the task then
    /// fits mimalloc's 2 KiB size class (`-Zprint-type-sizes` shows it; check after changes).
    async fn run(&mut self) -> io::Result<()> {
        let mut shutdown = self.shard.shutdown.clone();
        let mut shutting_down = false;
        let grace = self.shard.config.shutdown_grace;
        let timer = tokio::time::sleep_until(never());
        tokio::pin!(timer);
        // Made only when a shutdown finds a transfer running: a `Sleep` in every idle session's
        // task would cost it 96 bytes.
        let mut grace_timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
        let stream = Rc::clone(&self.stream);
        loop {
            self.run_actions().await?;
            self.flush().await?;
            if self.session.is_closing() {
                return Ok(());
            }
            if std::mem::take(&mut self.start_tls) {
                // The 234 is out; anything else the client sent in clear was dropped.
                let handshake =
                    Box::pin(tls_handshake(&self.shard, &self.stream, self.session.timeouts().login));
                self.tls = Some(Box::new(handshake.await?));
                self.session.tls_started(Instant::now().into_std());
                continue;
            }
            let deadline = self.session.poll_timeout().map(Instant::from_std);
            if let Some(d) = deadline {
                if timer.deadline() != d {
                    timer.as_mut().reset(d);
                }
            }
            let can_read = self.session.wants_input();
            tokio::select! {
                event = next_event(&mut self.transfer) => {
                    self.refresh_timeouts();
                    self.on_event(event);
                }
                ready = next_input(&stream, self.tls.as_deref_mut()), if can_read => {
                    match ready? {
                        None => match self.read_into_session(&stream) {
                            Ok(true) => {}
                            // End of stream or a reset: the client is gone.
                            Ok(false) => return Ok(()),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => return Err(e),
                        },
                        Some(0) => return Ok(()),
                        Some(n) => {
                            let now = Instant::now().into_std();
                            self.refresh_timeouts();
                            if let Some(t) = &self.tls {
                                self.session.handle_input(t.buf.get(..n).unwrap_or_default(), now);
                            }
                        }
                    }
                }
                () = &mut timer, if deadline.is_some() => {
                    let now = Instant::now().into_std();
                    self.refresh_timeouts();
                    if let Some(r) = &self.transfer {
                        self.session.transfer_progress(r.moved.get(), now);
                    }
                    self.session.handle_timeout(now);
                    if self.session.is_closing() {
                        tracing::info!(peer = %self.peer, "session timed out");
                    }
                }
                changed = shutdown.changed(), if !shutting_down => {
                    shutting_down = changed.is_err() || *shutdown.borrow();
                    if shutting_down {
                        if self.session.is_transferring() {
                            // Running transfers get the grace period, then 426 and 421.
                            grace_timer = Some(Box::pin(tokio::time::sleep(grace)));
                        } else {
                            self.session.shutdown("Server shutting down.");
                        }
                    }
                }
                () = sleep_until_set(&mut grace_timer), if grace_timer.is_some() => {
                    self.session.shutdown("Server shutting down.");
                    grace_timer = None;
                }
            }
            if shutting_down && !self.session.is_transferring() {
                self.session.shutdown("Server shutting down.");
            }
        }
    }

    /// Gives the session the timeouts of a reload that happened since it last looked (one
    /// atomic load when none did), before it sets its next deadline.
    fn refresh_timeouts(&mut self) {
        if self.shard.timeouts.generation() != self.timeouts_seen {
            let timeouts;
            (self.timeouts_seen, timeouts) = self.shard.timeouts.get();
            self.session.set_timeouts(timeouts);
        }
    }

    /// Reads what the socket has into the shard's scratch buffer and feeds it to the session.
    /// `Ok(false)`: end of stream.
    fn read_into_session(&mut self, stream: &TcpStream) -> io::Result<bool> {
        self.refresh_timeouts();
        let mut scratch = self.shard.scratch.borrow_mut();
        let n = stream.try_read(&mut scratch[..])?;
        if n == 0 {
            return Ok(false);
        }
        self.session.handle_input(scratch.get(..n).unwrap_or_default(), Instant::now().into_std());
        Ok(true)
    }

    /// Carries out everything the session asked for; fails only if writing replies does.
    async fn run_actions(&mut self) -> io::Result<()> {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Reply(r) => {
                    // A reply in parts is counted once, at its end.
                    if !r.is_partial() {
                        self.shard.metrics.reply(r.code().get());
                    }
                    r.write_to(&mut self.out);
                }
                Action::Authenticate { username, password } => {
                    Box::pin(self.authenticate(username, password)).await
                }
                Action::Fs(request) => {
                    if self.out.len() >= FLUSH_AT {
                        Box::pin(self.flush()).await?;
                    }
                    let outcome = Box::pin(self.run_fs(&request)).await;
                    if matches!(outcome, FsOutcome::Done) {
                        self.fs_event(&request);
                    }
                    self.session.fs_done(outcome, Instant::now().into_std(), SystemTime::now());
                }
                Action::OpenPassive => self.open_passive(),
                Action::ClosePassive => self.passive = None,
                Action::Transfer(t) => self.start_transfer(t),
                Action::Abort => self.abort_transfer(),
                // The main loop runs the handshake after flushing the replies before it.
                Action::StartTls => self.start_tls = true,
                // The main loop sees `is_closing` after flushing the replies before it.
                Action::Close => {}
                Action::ClientName(name) => {
                    tracing::Span::current().record("client", name.as_str());
                    tracing::info!(peer = %self.peer, client = %name, "client");
                }
            }
        }
        // Logged out (REIN, or USER starting a new login): the user's place is free again.
        if self.session.user().is_none() {
            self.user_lease = None;
        }
        Ok(())
    }

    async fn authenticate(&mut self, username: String, password: Vec<u8>) {
        let bans = self.shard.bans.clone();
        let now = std::time::Instant::now();
        // A locked-out name is refused before the authenticator is asked, like a wrong password.
        let locked = bans.as_ref().is_some_and(|b| b.is_locked_out(&username, now).is_some());
        let mut result = if locked {
            tracing::info!(peer = %self.peer, user = %username, "login refused: user locked out");
            Err(AuthError::BadCredentials)
        } else {
            // The chain the control connection's handshake verified (mTLS) goes with the
            // name and password, so a host can log users in by certificate.
            let mut credentials = Credentials::new(&username, &password, self.peer);
            if let Some(t) = &self.tls {
                credentials = credentials.tls(t.info.as_ref().map_or(&[][..], |i| &i.peer_chain[..]));
            }
            // Boxed: an idle session's future should not carry the authenticator's.
            Box::pin(self.shard.auth.login(&credentials)).await
        };
        if let Some(bans) = &bans {
            match &result {
                Ok(_) => bans.record_login_success(self.peer.ip(), &username, now),
                Err(AuthError::BadCredentials) => {
                    let failure = bans.record_login_failure(self.peer.ip(), &username, now);
                    if let Verdict::Banned(duration) = failure.address {
                        tracing::warn!(ip = %self.peer.ip(), secs = duration.as_secs(), "address banned");
                        self.shard.metrics.ban("address");
                        self.emit(HostEvent::Banned { ip: self.peer.ip(), duration });
                    }
                    if let Verdict::Banned(duration) = failure.user {
                        tracing::warn!(user = %username, secs = duration.as_secs(), "user locked out");
                        self.shard.metrics.ban("user");
                        self.emit(HostEvent::LockedOut { user: username.clone(), duration });
                    }
                }
                Err(_) => {}
            }
        }
        // A new login gives up the place of the previous one first.
        self.user_lease = None;
        if let Ok(user) = &result {
            // Per-user limits apply from login on, across every shard.
            match self.shard.users.admit(user) {
                Some(lease) => self.user_lease = Some(lease),
                None => result = Err(AuthError::TooManySessions),
            }
        }
        let error = result.as_ref().err().copied();
        // The session has the last word: a user whose own policy needs TLS is refused on a
        // clear connection even though the authenticator accepted them.
        self.session.login_done(result, Instant::now().into_std());
        let ok = self.session.user().is_some();
        self.shard.metrics.login(ok);
        self.emit(HostEvent::Login { user: username.clone(), peer: self.peer, ok });
        match (self.session.user(), error) {
            (Some(user), _) => {
                tracing::Span::current().record("user", user.name.as_str());
                let info = self.tls.as_ref().and_then(|t| t.info.as_ref());
                tracing::info!(
                    peer = %self.peer,
                    user = %user.name,
                    tls = info.map_or("none", |i| i.version),
                    cipher = info.map_or("none", |i| i.cipher),
                    client_cert = info.is_some_and(|i| !i.peer_chain.is_empty()),
                    "login"
                );
            }
            (None, Some(e)) => {
                tracing::info!(peer = %self.peer, user = %username, error = %e, "login failed")
            }
            // The user's own TLS policy refused them (or the session is closing).
            (None, None) => {
                tracing::info!(peer = %self.peer, user = %username, "login refused by the session")
            }
        }
    }

    async fn run_fs(&mut self, request: &FsRequest) -> FsOutcome {
        let Some(user) = self.session.user() else {
            return FsOutcome::Failed(ErrorKind::PermissionDenied);
        };
        let storage = &*self.shard.storage;
        let path = request.storage_path();
        let result = match request {
            FsRequest::Metadata(_) => storage.metadata(user, path).await.map(FsOutcome::Metadata),
            FsRequest::ListPage(_) => {
                let page = match self.opened.as_deref_mut() {
                    Some(Opened::Listing(lister)) => next_page(lister).await,
                    _ => Err(ErrorKind::Local.into()),
                };
                // The end, or a failure: the directory is closed.
                if page.as_ref().map_or(true, Vec::is_empty) {
                    self.opened = None;
                }
                page.map(FsOutcome::Listing)
            }
            FsRequest::OpenList(_) => match storage.list(user, path).await {
                Ok(lister) => {
                    self.opened = Some(Box::new(Opened::Listing(lister)));
                    Ok(FsOutcome::Opened { size: None })
                }
                Err(e) => Err(e),
            },
            FsRequest::OpenRead { offset, .. } => match storage.open_read(user, path, *offset).await {
                Ok(source) => {
                    let size = match &source {
                        DataSource::File(f) => f.metadata().ok().map(|m| m.len()),
                        _ => None,
                    };
                    self.opened = Some(Box::new(Opened::Source(source, size)));
                    Ok(FsOutcome::Opened { size })
                }
                Err(e) => Err(e),
            },
            FsRequest::OpenWrite { mode, .. } => match storage.open_write(user, path, *mode).await {
                Ok(sink) => {
                    self.opened = Some(Box::new(Opened::Sink(sink)));
                    Ok(FsOutcome::Opened { size: None })
                }
                Err(e) => Err(e),
            },
            FsRequest::MakeDir(_) => storage.make_dir(user, path).await.map(|()| FsOutcome::Done),
            FsRequest::RemoveDir(_) => storage.remove_dir(user, path).await.map(|()| FsOutcome::Done),
            FsRequest::RemoveFile(_) => storage.remove_file(user, path).await.map(|()| FsOutcome::Done),
            FsRequest::Rename { to, .. } => storage
                .rename(user, path, crate::proto::path::storage_path(to))
                .await
                .map(|()| FsOutcome::Done),
            FsRequest::SetModified { time, .. } => {
                storage.set_modified(user, path, *time).await.map(|()| FsOutcome::Done)
            }
            FsRequest::SetMode { mode, .. } => {
                storage.set_mode(user, path, *mode).await.map(|()| FsOutcome::Done)
            }
            FsRequest::AvailableSpace(_) => storage.available_space(user, path).await.map(FsOutcome::Space),
            FsRequest::Hash { algo, .. } => storage.hash(user, path, *algo).await.map(FsOutcome::Digest),
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
        self.passive = None;
        let ip = canonical(self.local.ip());
        let config = &self.shard.config;
        let policy = AcceptPolicy::new(config, self.peer.ip());
        let now = Instant::now().into_std();
        match self.shard.ports.open(self.shard.id, ip, policy) {
            Ok(Some((port, pending))) => {
                self.passive = Some(pending);
                let announce = super::public::announce(config, self.peer.ip(), ip);
                self.session.passive_opened(SocketAddr::new(announce, port), now);
            }
            Ok(None) => {
                tracing::warn!("passive port range exhausted: no port without a session of this client");
                self.session.passive_failed(now);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a passive port");
                self.session.passive_failed(now);
            }
        }
    }

    fn start_transfer(&mut self, transfer: Transfer) {
        let now = Instant::now();
        let connect = match transfer.channel {
            DataChannel::Passive => self.passive.take().map_or(DataConnect::Missing, DataConnect::Passive),
            DataChannel::Active(target) => {
                self.passive = None;
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
        let payload = match (&transfer.data, self.opened.take().map(|o| *o)) {
            (TransferData::Bytes(b), _) => Payload::Bytes(b.clone()),
            (TransferData::Opened, Some(Opened::Source(s, size))) => Payload::Source(s, size),
            (TransferData::Opened, Some(Opened::Sink(s))) => Payload::Sink(s),
            (TransferData::Listing(format), Some(Opened::Listing(l))) => Payload::Listing(l, *format),
            // The session asks for a transfer only after its open succeeded.
            (TransferData::Opened | TransferData::Listing(_), _) => {
                self.session.transfer_done(TransferOutcome::OpenFailed(ErrorKind::Local), now.into_std());
                return;
            }
        };
        let Some(user) = self.session.user().cloned() else {
            self.session
                .transfer_done(TransferOutcome::OpenFailed(ErrorKind::PermissionDenied), now.into_std());
            return;
        };
        let moved = Rc::new(Cell::new(0u64));
        let upload = transfer.kind.is_upload();
        let env = TransferEnv {
            storage: std::sync::Arc::clone(&self.shard.storage),
            pipes: Rc::clone(if upload { &self.shard.upload_pipes } else { &self.shard.pipes }),
            file_io: self.shard.file_io,
            user,
            splice: self.shard.config.splice,
            hash_uploads: self.shard.config.hash_uploads,
            rate: self.user_lease.as_ref().and_then(|l| {
                if upload {
                    l.shared.upload.clone()
                } else {
                    l.shared.download.clone()
                }
            }),
            moved: Rc::clone(&moved),
            tls: if transfer.protect { self.tls.as_ref().map(|t| Rc::clone(&t.context)) } else { None },
            tls_timeout: self.session.timeouts().data,
            on_handshake: {
                let metrics = std::sync::Arc::clone(&self.shard.metrics);
                Rc::new(move |ok| metrics.tls_handshake(ok))
            },
            on_tls_path: {
                let metrics = std::sync::Arc::clone(&self.shard.metrics);
                Rc::new(move |path: datapath::TlsPath| metrics.tls_data_path(path.name()))
            },
            control_closed: {
                let stream = Rc::clone(&self.stream);
                Rc::new(move || peer_closed(&stream))
            },
        };
        tracing::debug!(kind = ?transfer.kind, path = %String::from_utf8_lossy(&transfer.path), "transfer");
        let (tx, events) = mpsc::unbounded_channel();
        let (kind, path, ascii) = (transfer.kind, transfer.path.clone(), transfer.ascii);
        let task =
            tokio::task::spawn_local(datapath::run(env, transfer, payload, connect, tx).in_current_span());
        self.transfer = Some(Box::new(Running { task, events, kind, path, ascii, started: now, moved }));
    }

    fn on_event(&mut self, event: Event) {
        let now = Instant::now().into_std();
        match event {
            Event::Started => self.session.transfer_started(now),
            Event::Done(outcome) => {
                if let Some(running) = self.transfer.take() {
                    self.transfer_ended(&running, outcome);
                }
                tracing::debug!(?outcome, "transfer done");
                self.session.transfer_done(outcome, now);
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
            TransferOutcome::TlsNotResumed => "tls_not_resumed",
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
            ascii: running.ascii,
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
        let now = Instant::now().into_std();
        let Some(mut running) = self.transfer.take() else {
            return;
        };
        // A transfer that finished before the abort arrived reports that, not an abort.
        let mut outcome = TransferOutcome::Aborted;
        while let Ok(event) = running.events.try_recv() {
            match event {
                Event::Started => self.session.transfer_started(now),
                Event::Done(o) => outcome = o,
            }
        }
        running.task.abort();
        self.transfer_ended(&running, outcome);
        self.session.transfer_done(outcome, now);
    }

    /// Sends the queued replies: one non-blocking write when the socket has room, else a
    /// wait bounded by the idle timeout (a client that never reads its replies must not hold
    /// the session forever).
    async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        if let Some(t) = &mut self.tls {
            let write = async {
                t.stream.write_all(&self.out).await?;
                t.stream.flush().await
            };
            match tokio::time::timeout(self.session.timeouts().idle, write).await {
                Ok(res) => res?,
                Err(_) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "client does not read replies"))
                }
            }
            self.out.clear();
            self.shrink_out();
            return Ok(());
        }
        let mut sent = 0;
        while sent < self.out.len() {
            match self.stream.try_write(self.out.get(sent..).unwrap_or_default()) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let writable = tokio::time::timeout(self.session.timeouts().idle, self.stream.writable());
                    match writable.await {
                        Ok(res) => res?,
                        Err(_) => {
                            return Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "client does not read replies",
                            ))
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.shrink_out();
        Ok(())
    }

    /// A long reply (STAT of a directory) must not leave an idle session holding its buffer.
    fn shrink_out(&mut self) {
        if self.out.capacity() > 4 * FLUSH_AT {
            self.out = Vec::new();
        }
    }

    fn finish(&mut self) {
        if let Some(running) = self.transfer.take() {
            running.task.abort();
            self.transfer_ended(&running, TransferOutcome::ConnectionLost);
        }
        self.passive = None;
        let _ = socket2::SockRef::from(&*self.stream).shutdown(std::net::Shutdown::Both);
    }
}
