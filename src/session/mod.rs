//! The per-connection FTP state machine, sans I/O (RFC 959 §5.4 command-reply sequences).
//!
//! A [`Session`] owns the whole control protocol: the framing of the bytes the client sends
//! (CRLF or LF lines, Telnet IAC, over-long lines), the parse, who is logged in, the working
//! directory, TYPE, REST, RNFR, how the next data connection is made, which commands wait
//! while a transfer runs, and every deadline (login, idle, data connection, stalled transfer,
//! the delay after a failed login) with its reply. It never touches a socket, a file or a
//! clock: bytes and time go in, [`Action`]s come out. Its model is quinn-proto's `Connection`.
//!
//! # Driving a session
//!
//! Inputs are the `handle_*` methods and the answers to actions (`*_done`, `passive_*`,
//! `transfer_*`); outputs are [`Session::poll_action`] and [`Session::poll_timeout`]. An engine
//! runs this loop:
//!
//! 1. Drain [`Session::poll_action`] and carry out each action: send a reply, ask the
//!    authenticator, run a storage operation, open or close a passive listener, run or abort
//!    a transfer, close. An action that needs an answer (authentication, storage, passive
//!    listener, transfer) is answered through its method, in any order relative to reading,
//!    and answering may queue more actions: keep draining until `poll_action` is `None`.
//! 2. Write the replies. If [`Session::is_closing`], close once they are written.
//! 3. Wait for the first of: bytes from the client (only while [`Session::wants_input`]),
//!    the running transfer's progress or end, and the instant [`Session::poll_timeout`] names.
//! 4. Feed what happened: [`Session::handle_input`] with the bytes (an empty slice at end of
//!    stream is not needed: just close), [`Session::transfer_started`] /
//!    [`Session::transfer_done`], or, when the timer fires, first
//!    [`Session::transfer_progress`] with the bytes moved so far (if a transfer runs), then
//!    [`Session::handle_timeout`]. Go to 1.
//!
//! Every method takes `now` where time matters, so transcripts can run in virtual time.
//! Tests are transcripts: bytes in, replies and actions out.

// A peer controls every input here: no panicking shortcuts (fuzzed, see fuzz/), and no
// unsafe code, so the fuzz targets need no memory sanitizer to find what can go wrong here.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![forbid(unsafe_code)]

mod files;
mod site;
mod tls;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::proto::command::{Command, EpsvArg, TransferType};
use crate::proto::reply::{code, Reply, ReplyCode};
use crate::proto::{self, address, listing, Line, LineBuffer, ParseError};
use crate::types::{AuthError, DirEntry, ErrorKind, HashAlgo, Metadata, Timeouts, UploadPolicy, User};

pub use files::{FsRequest, ListFormat, Transfer, TransferData, TransferKind};
pub use tls::TlsPolicy;

/// Session settings that come from the server configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    /// The text of the 220 greeting.
    pub greeting: String,
    /// Failed logins after which the session is closed with 421.
    pub max_login_failures: u32,
    /// Allow PORT/EPRT to an address other than the client's, or to a port below 1024
    /// (FTP bounce attacks use this).
    pub dangerous_allow_foreign_active: bool,
    /// The longest command line; longer ones are answered 500 and dropped.
    pub max_line: usize,
    /// How long a client may take to log in (421 "Login timeout.").
    pub login_timeout: Duration,
    /// How long a session may go without a command outside a transfer (421 "Timeout.").
    pub idle_timeout: Duration,
    /// How long a data connection may take to be made once a transfer is asked for (425),
    /// and how long a passive listener stays open with no transfer to claim it.
    pub data_timeout: Duration,
    /// How long a running transfer may move no byte before it is aborted (426).
    pub stall_timeout: Duration,
    /// The delay before each "530 Login incorrect", times the number of failures so far
    /// (at most 8 steps): password guessing gets slow.
    pub login_failure_delay: Duration,
    /// What an interrupted STOR leaves behind (decides how uploads are opened).
    pub uploads: UploadPolicy,
    /// Commands kept while a transfer runs; beyond it the session stops taking input.
    pub max_deferred: usize,
    /// TLS on the control connection (AUTH TLS); `Off` unless the server has a certificate.
    pub tls: TlsPolicy,
    /// TLS on data connections (PROT P).
    pub tls_data: TlsPolicy,
    /// Anonymous logins may use clear text even where TLS is required (vsftpd's
    /// `allow_anon_ssl=NO` behaviour, inverted).
    pub tls_anonymous_exempt: bool,
    /// Implicit FTPS: the connection is TLS from its first byte (the engine handshakes
    /// before the greeting), with PBSZ 0 and PROT P implied.
    pub implicit_tls: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            greeting: "ringftp ready".into(),
            max_login_failures: 3,
            dangerous_allow_foreign_active: false,
            max_line: 4096,
            login_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(300),
            login_failure_delay: Duration::from_millis(250),
            uploads: UploadPolicy::Keep,
            max_deferred: 64,
            tls: TlsPolicy::Off,
            tls_data: TlsPolicy::Off,
            tls_anonymous_exempt: false,
            implicit_tls: false,
        }
    }
}

/// Something the engine must do for the session.
#[derive(Debug)]
#[non_exhaustive]
pub enum Action {
    /// Send this reply on the control connection. A [`Reply::is_partial`] one is a part of a
    /// longer reply that later ones complete (STAT of a directory, a page at a time): the
    /// engine may write it before it carries out the next action.
    Reply(Reply),
    /// Check these credentials; answer with [`Session::login_done`].
    Authenticate {
        /// The USER name.
        username: String,
        /// The PASS argument.
        password: Vec<u8>,
    },
    /// Run a storage operation for the logged-in user; answer with [`Session::fs_done`].
    Fs(FsRequest),
    /// Open a passive listener (dropping any previous one); answer with
    /// [`Session::passive_opened`] or [`Session::passive_failed`].
    OpenPassive,
    /// Drop the passive listener, if any (active mode chosen, or no transfer claimed it).
    ClosePassive,
    /// Make the data connection and run a transfer; report with [`Session::transfer_started`]
    /// once the connection is made, and [`Session::transfer_done`] at the end.
    Transfer(Transfer),
    /// Abort the running transfer; answer with [`Session::transfer_done`]:
    /// [`TransferOutcome::Aborted`], or the outcome it had already reached.
    Abort,
    /// Send the replies before this action (the 234), then run the TLS server handshake on
    /// the control connection; answer with [`Session::tls_started`], or close the
    /// connection if the handshake fails.
    StartTls,
    /// Close the control connection after the replies before this action are sent.
    Close,
    /// The client named itself with CLNT: for the session's log span. Needs no answer.
    ClientName(String),
}

/// The answer to a [`FsRequest`].
#[derive(Debug)]
#[non_exhaustive]
pub enum FsOutcome {
    /// Done, nothing to report.
    Done,
    /// The metadata asked for.
    Metadata(Metadata),
    /// A page of the directory being listed ([`FsRequest::ListPage`]); empty once it is
    /// exhausted.
    Listing(Vec<DirEntry>),
    /// The file is open for the transfer that follows; its size if known (for the 150).
    Opened {
        /// The file's size, for downloads.
        size: Option<u64>,
    },
    /// The bytes still available ([`FsRequest::AvailableSpace`]).
    Space(u64),
    /// The digest asked for ([`FsRequest::Hash`]).
    Digest(Vec<u8>),
    /// It failed.
    Failed(ErrorKind),
}

/// How a transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferOutcome {
    /// All bytes moved.
    Completed {
        /// Bytes on the data connection.
        bytes: u64,
    },
    /// Storage refused before the data connection was used (550, 553...).
    OpenFailed(ErrorKind),
    /// No data connection could be made (425).
    NoDataConnection,
    /// The data connection broke (426).
    ConnectionLost,
    /// [`Action::Abort`] stopped it.
    Aborted,
    /// Storage failed mid-transfer (451, 452, 552).
    StorageFailed(ErrorKind),
    /// The data connection's TLS handshake did not resume the control connection's session,
    /// which the server requires (522).
    TlsNotResumed,
}

/// How the next data connection is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataChannel {
    /// Accept on the passive listener the engine opened.
    Passive,
    /// Connect to the client (PORT/EPRT).
    Active(SocketAddr),
}

#[derive(Debug)]
enum Login {
    /// Waiting for USER.
    Anonymous,
    /// USER given, waiting for PASS.
    NeedPassword(String),
    /// Logged in.
    LoggedIn(User),
}

/// Why the session aborts a running transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AbortBy {
    /// ABOR from the client: the transfer's reply, then 226 for the ABOR.
    Client,
    /// No data connection within the data timeout: 425.
    NoConnection,
    /// No byte moved within the stall timeout: 426.
    Stalled,
    /// The server is going down: 426, then 421 and close.
    Shutdown,
}

/// A transfer the engine runs.
#[derive(Debug)]
struct Running {
    kind: TransferKind,
    /// The name for the 150 reply.
    name: Vec<u8>,
    size: Option<u64>,
    /// Set once the data connection is made.
    started: bool,
    abort: Option<AbortBy>,
    /// When the data connection must be made by, then when the last byte moved.
    since: Instant,
    moved: u64,
}

/// What the session waits for from the engine.
#[derive(Debug)]
enum Waiting {
    Nothing,
    Auth,
    /// The 530 after a failed login, held until this instant.
    LoginDelay(Instant),
    Fs(files::FsPurpose),
    Passive {
        extended: bool,
    },
    Transfer(Running),
    /// The TLS handshake after AUTH TLS.
    Tls,
}

/// One control connection's protocol state. See the module docs for how to drive it.
///
/// - Getters: [`Session::user`], [`Session::is_waiting`], [`Session::is_transferring`],
///   [`Session::is_closing`], [`Session::wants_input`], [`Session::login_failures`].
/// - Inputs: [`Session::handle_input`], [`Session::handle_timeout`], and the answers
///   [`Session::login_done`], [`Session::fs_done`], [`Session::passive_opened`],
///   [`Session::passive_failed`], [`Session::transfer_started`],
///   [`Session::transfer_progress`], [`Session::transfer_done`]; [`Session::shutdown`] from the
///   server.
/// - Outputs: [`Session::poll_action`], [`Session::poll_timeout`].
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    peer: SocketAddr,
    local: SocketAddr,
    lines: LineBuffer,
    /// Lines that arrived during a transfer, handled in order after it; `None` stands for an
    /// over-long line.
    deferred: VecDeque<Option<Vec<u8>>>,
    login: Login,
    login_failures: u32,
    cwd: Vec<u8>,
    transfer_type: TransferType,
    rest: u64,
    rename_from: Option<Vec<u8>>,
    data: Option<DataChannel>,
    epsv_all: bool,
    /// The MLSx facts MLST and MLSD send (OPTS MLST).
    facts: listing::Facts,
    /// The digest HASH computes (OPTS HASH).
    hash_algo: HashAlgo,
    waiting: Waiting,
    closing: bool,
    /// A shutdown waits for the running transfer's abort.
    shutting_down: Option<&'static str>,
    login_deadline: Instant,
    idle_deadline: Instant,
    /// When the open passive listener is given up if no transfer claims it.
    passive_deadline: Option<Instant>,
    tls: tls::TlsState,
    actions: VecDeque<Action>,
}

impl Session {
    /// A new session for a client at `peer` connected to `local`; queues the 220 greeting.
    pub fn new(mut config: SessionConfig, peer: SocketAddr, local: SocketAddr, now: Instant) -> Self {
        // The greeting is sent once; the session does not keep a copy.
        let greeting = std::mem::take(&mut config.greeting);
        let mut s = Session {
            peer: canonical(peer),
            local: canonical(local),
            lines: LineBuffer::new(config.max_line),
            deferred: VecDeque::new(),
            login: Login::Anonymous,
            login_failures: 0,
            cwd: b"/".to_vec(),
            transfer_type: TransferType::Binary,
            rest: 0,
            rename_from: None,
            data: None,
            epsv_all: false,
            facts: listing::Facts::ALL,
            hash_algo: HashAlgo::Sha256,
            waiting: Waiting::Nothing,
            closing: false,
            shutting_down: None,
            login_deadline: now + config.login_timeout,
            idle_deadline: now + config.idle_timeout,
            passive_deadline: None,
            tls: tls::TlsState::new(&config),
            actions: VecDeque::new(),
            config,
        };
        s.reply(Reply::owned(code::SERVICE_READY, greeting));
        s
    }

    // ---- getters ----

    /// The logged-in user.
    pub fn user(&self) -> Option<&User> {
        match &self.login {
            Login::LoggedIn(user) => Some(user),
            _ => None,
        }
    }

    /// Whether an action is unanswered.
    pub fn is_waiting(&self) -> bool {
        !matches!(self.waiting, Waiting::Nothing)
    }

    /// Whether a transfer is running.
    pub fn is_transferring(&self) -> bool {
        matches!(self.waiting, Waiting::Transfer(_))
    }

    /// Whether the session has asked to close.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether the engine should read from the client: not while the commands kept during a
    /// transfer are at their bound, nor while an answer other than a transfer's is awaited.
    pub fn wants_input(&self) -> bool {
        !self.closing
            && match self.waiting {
                Waiting::Nothing => true,
                Waiting::Transfer(_) => self.deferred.len() < self.config.max_deferred,
                _ => false,
            }
    }

    /// Failed logins so far.
    pub fn login_failures(&self) -> u32 {
        self.login_failures
    }

    /// Whether `cmd` is handled at once while a transfer runs, rather than after it.
    pub fn handles_during_transfer(cmd: &Command<'_>) -> bool {
        matches!(cmd, Command::Abor | Command::Stat(None) | Command::Noop)
    }

    // ---- outputs ----

    /// The next thing the engine must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Session::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closing {
            return None;
        }
        match &self.waiting {
            Waiting::Nothing => {
                let mut t = self.idle_deadline;
                if self.user().is_none() {
                    t = t.min(self.login_deadline);
                }
                Some(self.passive_deadline.map_or(t, |p| p.min(t)))
            }
            Waiting::LoginDelay(until) => Some(*until),
            Waiting::Transfer(r) if r.abort.is_none() => {
                Some(r.since + if r.started { self.config.stall_timeout } else { self.config.data_timeout })
            }
            // Authentication, storage and passive answers are the engine's to bound.
            _ => None,
        }
    }

    // ---- inputs ----

    /// Bytes from the client: framed into lines and handled as far as the session can go.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if self.closing {
            return;
        }
        self.lines.push(bytes);
        self.drive(now);
    }

    /// Acts on every deadline that has passed by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closing {
            return;
        }
        let logged_in = self.user().is_some();
        match &mut self.waiting {
            Waiting::Nothing => {
                if !logged_in && now >= self.login_deadline {
                    self.shutdown("Login timeout.");
                } else if now >= self.idle_deadline {
                    self.shutdown("Timeout.");
                } else if self.passive_deadline.is_some_and(|p| now >= p) {
                    // Nobody claimed the port: give it back to the pool.
                    self.passive_deadline = None;
                    self.data = None;
                    self.actions.push_back(Action::ClosePassive);
                }
            }
            Waiting::LoginDelay(until) if now >= *until => {
                self.waiting = Waiting::Nothing;
                self.reply_static(code::NOT_LOGGED_IN, "Login incorrect.");
                self.idle_deadline = now + self.config.idle_timeout;
                self.drive(now);
            }
            Waiting::Transfer(r) if r.abort.is_none() => {
                let limit = if r.started { self.config.stall_timeout } else { self.config.data_timeout };
                if now >= r.since + limit {
                    r.abort = Some(if r.started { AbortBy::Stalled } else { AbortBy::NoConnection });
                    self.actions.push_back(Action::Abort);
                }
            }
            _ => {}
        }
    }

    /// New timeouts (a reload). Deadlines already set stay; each one set from now on (the
    /// idle deadline at the next command, the login deadline at REIN, the next passive
    /// port) uses the new values, and a running transfer's data and stall limits change at
    /// once.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.config.login_timeout = timeouts.login;
        self.config.idle_timeout = timeouts.idle;
        self.config.data_timeout = timeouts.data;
        self.config.stall_timeout = timeouts.stall;
    }

    /// The timeouts in force (the engine bounds its own waits, e.g. a TLS handshake, by them).
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            login: self.config.login_timeout,
            idle: self.config.idle_timeout,
            data: self.config.data_timeout,
            stall: self.config.stall_timeout,
        }
    }

    /// The running transfer's byte count so far (call it before [`Session::handle_timeout`]):
    /// a transfer that moves bytes is not stalled.
    pub fn transfer_progress(&mut self, moved: u64, now: Instant) {
        if let Waiting::Transfer(r) = &mut self.waiting {
            if r.started && moved != r.moved {
                r.moved = moved;
                r.since = now;
            }
        }
    }

    /// Handles one parsed command, as if its line had arrived. Engines feed bytes with
    /// [`Session::handle_input`]; this is for tests and benches.
    pub fn handle_command(&mut self, cmd: Command<'_>, now: Instant) {
        if self.closing {
            return;
        }
        self.idle_deadline = now + self.config.idle_timeout;
        if self.is_transferring() {
            self.handle_during_transfer(cmd);
            return;
        }
        // RNTO must come right after RNFR: any other command forgets the RNFR.
        let rename_from = self.rename_from.take();
        match cmd {
            _ if self.tls_command(&cmd) => {}
            Command::User(name) => self.user_cmd(name),
            Command::Pass(password) => self.pass_cmd(password),
            Command::Acct(_) => self.reply_static(code::SUPERFLUOUS, "ACCT not needed"),
            Command::Quit => {
                self.reply_static(code::CLOSING, "Goodbye.");
                self.close();
            }
            Command::Noop => self.reply_static(code::OK, "NOOP ok."),
            Command::Feat => self.feat(),
            Command::Opts(arg) => self.opts(arg),
            Command::Help(arg) => self.help(arg),
            Command::Syst => self.reply_static(code::SYSTEM_TYPE, "UNIX Type: L8"),
            Command::Clnt(name) => self.clnt(name),
            _ if self.user().is_none() => {
                self.reply_static(code::NOT_LOGGED_IN, "Please login with USER and PASS.")
            }
            Command::Rein => {
                self.tls_rein();
                self.login = Login::Anonymous;
                self.reset_session_state();
                self.login_deadline = now + self.config.login_timeout;
                self.reply_static(code::SERVICE_READY, "Service ready for new user.");
            }
            Command::Stat(None) => self.server_status(),
            Command::Site(arg) => self.site(arg),
            Command::Type(t) => {
                self.transfer_type = t;
                match t {
                    TransferType::Ascii => self.reply_static(code::OK, "Switching to ASCII mode."),
                    TransferType::Binary => self.reply_static(code::OK, "Switching to Binary mode."),
                }
            }
            Command::Mode => self.reply_static(code::OK, "Mode set to S."),
            Command::Stru => self.reply_static(code::OK, "Structure set to F."),
            Command::Allo => self.reply_static(code::SUPERFLUOUS, "ALLO command ignored."),
            Command::Rest(offset) => {
                self.rest = offset;
                self.reply(Reply::owned(code::PENDING, format!("Restart position accepted ({offset}).")));
            }
            Command::Abor => {
                self.reply_static(code::DATA_OPEN_NO_TRANSFER, "No transfer to abort.");
            }
            Command::Pasv => self.passive(false, EpsvArg::Any, now),
            Command::Epsv(arg) => self.passive(true, arg, now),
            Command::Port(addr) => self.active(SocketAddr::V4(addr), false),
            Command::Eprt(addr) => self.active(addr, true),
            _ if self.refuses_clear_data(&cmd) => {}
            other => self.file_command(other, rename_from),
        }
    }

    /// Answers a line that did not parse (500, 501, 502, 504 or 522).
    fn handle_parse_error(&mut self, error: ParseError, now: Instant) {
        if self.closing {
            return;
        }
        self.idle_deadline = now + self.config.idle_timeout;
        self.rename_from = None;
        self.reply(error.reply());
    }

    /// Handles buffered lines as far as the session can take them: kept lines first once a
    /// transfer is over; during a transfer ABOR (and NOOP and STAT when nothing is kept, so
    /// replies stay in order) at once and the rest kept; nothing while another answer is due.
    fn drive(&mut self, now: Instant) {
        // The buffer lends the line to the parser while the session handles it.
        let mut lines = std::mem::replace(&mut self.lines, LineBuffer::new(0));
        loop {
            if self.closing {
                break;
            }
            match self.waiting {
                Waiting::Nothing => {
                    if let Some(kept) = self.deferred.pop_front() {
                        match kept {
                            Some(l) => match proto::parse(&l) {
                                Ok(cmd) => self.handle_command(cmd, now),
                                Err(e) => self.handle_parse_error(e, now),
                            },
                            None => self.handle_parse_error(ParseError::LineTooLong, now),
                        }
                        continue;
                    }
                    match lines.next_line() {
                        None => break,
                        Some(Line::Complete(l)) => match proto::parse(l) {
                            Ok(cmd) => self.handle_command(cmd, now),
                            Err(e) => self.handle_parse_error(e, now),
                        },
                        Some(Line::TooLong) => self.handle_parse_error(ParseError::LineTooLong, now),
                    }
                }
                Waiting::Transfer(ref r) if self.deferred.len() < self.config.max_deferred => {
                    // Once the transfer is being aborted, everything waits for its end, so a
                    // second ABOR (or a NOOP after ABOR) is answered after the first's 226.
                    let aborting = r.abort.is_some();
                    match lines.next_line() {
                        None => break,
                        Some(Line::Complete(l)) => match proto::parse(l) {
                            Ok(cmd)
                                if !aborting
                                    && Session::handles_during_transfer(&cmd)
                                    && (self.deferred.is_empty() || matches!(cmd, Command::Abor)) =>
                            {
                                self.handle_command(cmd, now)
                            }
                            _ => self.deferred.push_back(Some(l.to_vec())),
                        },
                        Some(Line::TooLong) => self.deferred.push_back(None),
                    }
                }
                _ => break,
            }
        }
        if std::mem::take(&mut self.tls.discard_buffered) {
            lines = LineBuffer::new(self.config.max_line);
        }
        self.lines = lines;
    }

    fn handle_during_transfer(&mut self, cmd: Command<'_>) {
        match cmd {
            Command::Abor => {
                if let Waiting::Transfer(r) = &mut self.waiting {
                    if r.abort.is_none() {
                        r.abort = Some(AbortBy::Client);
                        self.actions.push_back(Action::Abort);
                    }
                }
            }
            Command::Noop => self.reply_static(code::OK, "NOOP ok."),
            Command::Stat(None) => {
                self.reply_static(code::SYSTEM_STATUS, "Status: data transfer in progress.")
            }
            // Only the commands above reach here during a transfer.
            _ => self.reply_static(code::BAD_SEQUENCE, "A transfer is in progress."),
        }
    }

    fn reply(&mut self, reply: Reply) {
        self.actions.push_back(Action::Reply(reply));
    }

    fn reply_static(&mut self, code: ReplyCode, text: &'static str) {
        self.reply(Reply::new(code, text));
    }

    fn close(&mut self) {
        self.closing = true;
        self.actions.push_back(Action::Close);
    }

    fn reset_session_state(&mut self) {
        self.cwd = b"/".to_vec();
        self.transfer_type = TransferType::Binary;
        self.rest = 0;
        self.rename_from = None;
        if self.data.take() == Some(DataChannel::Passive) {
            self.actions.push_back(Action::ClosePassive);
        }
        self.passive_deadline = None;
        self.epsv_all = false;
    }

    fn user_cmd(&mut self, name: &[u8]) {
        // USER while logged in starts a new login, as RFC 959 §4.1.1 allows.
        self.reset_session_state();
        self.login = Login::NeedPassword(String::from_utf8_lossy(name).into_owned());
        self.reply_static(code::NEED_PASSWORD, "Please specify the password.");
    }

    fn pass_cmd(&mut self, password: &[u8]) {
        match std::mem::replace(&mut self.login, Login::Anonymous) {
            Login::NeedPassword(username) => {
                self.waiting = Waiting::Auth;
                self.actions.push_back(Action::Authenticate { username, password: password.to_vec() });
            }
            Login::LoggedIn(user) => {
                self.login = Login::LoggedIn(user);
                self.reply_static(code::LOGGED_IN, "Already logged in.");
            }
            Login::Anonymous => self.reply_static(code::BAD_SEQUENCE, "Login with USER first."),
        }
    }

    /// The authenticator's answer to [`Action::Authenticate`].
    pub fn login_done(&mut self, result: Result<User, AuthError>, now: Instant) {
        // After Close (a shutdown while the authenticator ran) nothing more is said.
        if self.closing || !matches!(self.waiting, Waiting::Auth) {
            return;
        }
        self.waiting = Waiting::Nothing;
        self.idle_deadline = now + self.config.idle_timeout;
        match result {
            Ok(user) if self.refuses_user_on_clear(&user) => {
                // The password was right, so no delay; the refusal still counts, so a client
                // cannot retry without end.
                self.login_failures += 1;
                self.reply_static(code::NOT_LOGGED_IN, "TLS required for this user: use AUTH TLS first.");
                if self.login_failures >= self.config.max_login_failures {
                    self.reply_static(code::NOT_AVAILABLE, "Too many failed logins, closing.");
                    self.close();
                }
            }
            Ok(user) => {
                self.login = Login::LoggedIn(user);
                self.login_failures = 0;
                self.reply_static(code::LOGGED_IN, "Login successful.");
            }
            Err(AuthError::TooManySessions) => {
                self.reply_static(code::NOT_AVAILABLE, "Too many sessions for this user.");
                self.close();
            }
            Err(_) => {
                self.login_failures += 1;
                if self.login_failures >= self.config.max_login_failures {
                    self.reply_static(code::NOT_AVAILABLE, "Too many failed logins, closing.");
                    self.close();
                } else {
                    let steps = self.login_failures.min(8);
                    self.waiting = Waiting::LoginDelay(now + self.config.login_failure_delay * steps);
                }
            }
        }
        self.drive(now);
    }

    fn feat(&mut self) {
        let (auth, pbsz) = self.tls_features();
        let text = format!(
            "Features:\n{auth}AVBL\nCLNT\nEPRT\nEPSV\n{}\nMDTM\nMFMT\n{}\nPASV\n{pbsz}REST STREAM\nSIZE\nTVFS\nUTF8\n{}End",
            self.hash_feature(),
            self.facts.feature(),
            site::LEGACY_HASH_FEATURES,
        );
        self.reply(Reply::owned(code::SYSTEM_STATUS, text));
    }

    fn opts(&mut self, arg: &[u8]) {
        let arg = crate::proto::command::trim(arg);
        let (name, value) = match arg.iter().position(|&b| b == b' ') {
            Some(i) => (arg.get(..i).unwrap_or_default(), arg.get(i + 1..).unwrap_or_default()),
            None => (arg, &b""[..]),
        };
        if name.eq_ignore_ascii_case(b"UTF8") || name.eq_ignore_ascii_case(b"UTF-8") {
            // Paths are bytes end to end, so UTF-8 is always on; OFF is refused.
            if value.is_empty() || value.eq_ignore_ascii_case(b"ON") {
                self.reply_static(code::OK, "Always in UTF8 mode.");
            } else {
                self.reply_static(code::PARAMETER_NOT_IMPLEMENTED, "UTF8 cannot be turned off.");
            }
        } else if name.eq_ignore_ascii_case(b"MLST") {
            self.opts_mlst(value);
        } else if name.eq_ignore_ascii_case(b"HASH") {
            self.opts_hash(value);
        } else {
            self.reply_static(code::SYNTAX_ERROR_ARGS, "Option not understood.");
        }
    }

    fn help(&mut self, arg: Option<&[u8]>) {
        if arg.is_some_and(|a| crate::proto::command::trim(a).eq_ignore_ascii_case(b"SITE")) {
            self.reply_static(code::HELP, site::SITE_HELP);
            return;
        }
        self.reply_static(
            code::HELP,
            "The following commands are recognized:\n\
             ABOR ACCT ALLO APPE AVBL CDUP CLNT CWD  DELE EPRT EPSV FEAT HASH HELP\n\
             LIST MDTM MFMT MKD  MLSD MLST MODE NLST NOOP OPTS PASS PASV PORT PWD\n\
             QUIT REIN REST RETR RMD  RNFR RNTO SITE SIZE STAT STOR STOU STRU SYST\n\
             TYPE USER XCRC XCUP XCWD XMD5 XMKD XPWD XRMD XSHA1 XSHA256\n\
             Help OK.",
        );
    }

    fn server_status(&mut self) {
        let user = self.user().map(|u| u.name.clone()).unwrap_or_default();
        let mode = match self.data {
            None => "none".to_string(),
            Some(DataChannel::Passive) => "passive".to_string(),
            Some(DataChannel::Active(addr)) => format!("active to {addr}"),
        };
        let text = format!(
            "ringftp status:\nConnected to {}\nLogged in as {user}\nTYPE: {}\nData connection: {mode}\nEnd of status",
            self.peer.ip(),
            match self.transfer_type {
                TransferType::Ascii => "ASCII",
                TransferType::Binary => "BINARY",
            },
        );
        self.reply(Reply::owned(code::SYSTEM_STATUS, text));
    }

    fn passive(&mut self, extended: bool, arg: EpsvArg, now: Instant) {
        if arg == EpsvArg::All {
            self.epsv_all = true;
            self.reply_static(code::OK, "EPSV ALL ok.");
            return;
        }
        if self.epsv_all && !extended {
            self.reply_static(code::BAD_SEQUENCE, "EPSV ALL in effect: only EPSV is allowed.");
            return;
        }
        if !extended && self.local.is_ipv6() {
            // RFC 2428 §3: PASV cannot describe an IPv6 address.
            self.reply_static(code::UNSUPPORTED_PROTOCOL, "PASV needs IPv4; use EPSV.");
            return;
        }
        let family = if self.local.is_ipv4() { 1 } else { 2 };
        if let EpsvArg::Protocol(p) = arg {
            if p != family {
                let text = if family == 1 {
                    "Network protocol not supported, use (1)"
                } else {
                    "Network protocol not supported, use (2)"
                };
                self.reply_static(code::UNSUPPORTED_PROTOCOL, text);
                return;
            }
        }
        self.data = None;
        self.passive_deadline = Some(now + self.config.data_timeout);
        self.waiting = Waiting::Passive { extended };
        self.actions.push_back(Action::OpenPassive);
    }

    /// The engine opened a passive listener; `announce` is the address to tell the client
    /// (the configured public address, or the control connection's local address).
    pub fn passive_opened(&mut self, announce: SocketAddr, now: Instant) {
        let Waiting::Passive { extended } = self.waiting else {
            return;
        };
        if self.closing {
            return;
        }
        self.waiting = Waiting::Nothing;
        let mut text = String::new();
        if extended {
            address::format_epsv(announce.port(), &mut text);
            self.reply(Reply::owned(code::EXTENDED_PASSIVE_MODE, text));
        } else if let SocketAddr::V4(v4) = canonical(announce) {
            address::format_pasv(v4, &mut text);
            self.reply(Reply::owned(code::PASSIVE_MODE, text));
        } else {
            self.passive_deadline = None;
            self.actions.push_back(Action::ClosePassive);
            self.reply_static(code::UNSUPPORTED_PROTOCOL, "PASV needs IPv4; use EPSV.");
            self.drive(now);
            return;
        }
        self.data = Some(DataChannel::Passive);
        self.drive(now);
    }

    /// No passive listener could be opened (the port range is exhausted).
    pub fn passive_failed(&mut self, now: Instant) {
        if !self.closing && matches!(self.waiting, Waiting::Passive { .. }) {
            self.waiting = Waiting::Nothing;
            self.passive_deadline = None;
            self.reply_static(code::CANT_OPEN_DATA, "No passive port available, try again later.");
            self.drive(now);
        }
    }

    fn active(&mut self, addr: SocketAddr, extended: bool) {
        if self.epsv_all {
            self.reply_static(code::BAD_SEQUENCE, "EPSV ALL in effect: only EPSV is allowed.");
            return;
        }
        let addr = canonical(addr);
        if !self.config.dangerous_allow_foreign_active {
            if addr.ip() != self.peer.ip() {
                self.reply_static(
                    code::SYNTAX_ERROR_ARGS,
                    "Illegal PORT command: address is not the client's.",
                );
                return;
            }
            if addr.port() < 1024 {
                self.reply_static(code::SYNTAX_ERROR_ARGS, "Illegal PORT command: port below 1024.");
                return;
            }
        }
        if addr.is_ipv4() != self.local.is_ipv4() {
            self.reply_static(
                code::UNSUPPORTED_PROTOCOL,
                if self.local.is_ipv4() {
                    "Network protocol not supported, use (1)"
                } else {
                    "Network protocol not supported, use (2)"
                },
            );
            return;
        }
        if self.data == Some(DataChannel::Passive) {
            self.actions.push_back(Action::ClosePassive);
        }
        self.passive_deadline = None;
        self.data = Some(DataChannel::Active(addr));
        if extended {
            self.reply_static(code::OK, "EPRT command successful.");
        } else {
            self.reply_static(code::OK, "PORT command successful. Consider using PASV.");
        }
    }

    /// Starts waiting for the transfer the session just asked for.
    fn run_transfer(&mut self, transfer: Transfer, size: Option<u64>, now: Instant) {
        // The listener now belongs to the transfer; its deadline is the transfer's.
        self.passive_deadline = None;
        self.data = None;
        self.rest = 0;
        self.waiting = Waiting::Transfer(Running {
            kind: transfer.kind,
            name: transfer.file_name().to_vec(),
            size,
            started: false,
            abort: None,
            since: now,
            moved: 0,
        });
        self.actions.push_back(Action::Transfer(transfer));
    }

    /// The data connection is made and the transfer begins: queues the 150 reply.
    pub fn transfer_started(&mut self, now: Instant) {
        let Waiting::Transfer(r) = &mut self.waiting else {
            return;
        };
        if r.started {
            return;
        }
        r.started = true;
        r.since = now;
        let mode = match self.transfer_type {
            TransferType::Ascii => "ASCII",
            TransferType::Binary => "BINARY",
        };
        let text = match r.kind {
            TransferKind::List | TransferKind::Nlst | TransferKind::Mlsd => {
                "Here comes the directory listing.".as_bytes().to_vec()
            }
            TransferKind::Stou => {
                let mut t = b"FILE: ".to_vec();
                t.extend_from_slice(&r.name);
                t
            }
            _ => {
                let mut t = format!("Opening {mode} mode data connection for ").into_bytes();
                t.extend_from_slice(&r.name);
                if let Some(size) = r.size {
                    t.extend_from_slice(format!(" ({size} bytes)").as_bytes());
                }
                t.push(b'.');
                t
            }
        };
        self.reply(Reply::owned(code::FILE_STATUS_OK, text));
    }

    /// The transfer ended: queues its final reply (and the ABOR reply after an ABOR), then
    /// handles the commands kept meanwhile.
    pub fn transfer_done(&mut self, outcome: TransferOutcome, now: Instant) {
        if !self.is_transferring() {
            return;
        }
        let Waiting::Transfer(r) = std::mem::replace(&mut self.waiting, Waiting::Nothing) else {
            return;
        };
        self.idle_deadline = now + self.config.idle_timeout;
        let client_abor = r.abort == Some(AbortBy::Client);
        match (outcome, r.abort) {
            (TransferOutcome::Aborted, Some(AbortBy::NoConnection)) => {
                self.reply_static(code::CANT_OPEN_DATA, "Failed to establish connection.")
            }
            (TransferOutcome::Aborted, Some(AbortBy::Stalled)) => {
                self.reply_static(code::TRANSFER_ABORTED, "Transfer timed out: no data moved.")
            }
            (TransferOutcome::Aborted, Some(AbortBy::Shutdown)) => {
                self.reply_static(code::TRANSFER_ABORTED, "Transfer aborted: server shutting down.")
            }
            (TransferOutcome::Aborted, _) => self.reply_static(code::TRANSFER_ABORTED, "Transfer aborted."),
            (TransferOutcome::Completed { .. }, _) => match r.kind {
                TransferKind::List | TransferKind::Nlst | TransferKind::Mlsd => {
                    self.reply_static(code::CLOSING_DATA, "Directory send OK.")
                }
                _ => self.reply_static(code::CLOSING_DATA, "Transfer complete."),
            },
            (TransferOutcome::OpenFailed(kind), _) => self.reply(Reply::new(kind.reply_code(), kind.text())),
            (TransferOutcome::NoDataConnection, _) => {
                self.reply_static(code::CANT_OPEN_DATA, "Failed to establish connection.")
            }
            (TransferOutcome::TlsNotResumed, _) => self.reply_static(
                code::UNSUPPORTED_PROTOCOL,
                "TLS session of the data connection not resumed: reuse the control connection's session.",
            ),
            (TransferOutcome::ConnectionLost, _) => {
                self.reply_static(code::TRANSFER_ABORTED, "Connection closed; transfer aborted.")
            }
            (TransferOutcome::StorageFailed(kind), _) => {
                let code = match kind {
                    ErrorKind::InsufficientStorage | ErrorKind::QuotaExceeded => kind.reply_code(),
                    _ => code::LOCAL_ERROR,
                };
                self.reply(Reply::new(code, kind.text()));
            }
        }
        if client_abor {
            // RFC 959 §4.1.3: the transfer's reply, then 226 for the ABOR itself.
            self.reply_static(code::CLOSING_DATA, "ABOR successful.");
        }
        if let Some(reason) = self.shutting_down.take() {
            self.shutdown(reason);
            return;
        }
        self.drive(now);
    }

    /// The server is closing the session: queues 421 and Close. A running transfer is
    /// aborted first (426), and the 421 follows its end.
    pub fn shutdown(&mut self, reason: &'static str) {
        if self.closing {
            return;
        }
        if let Waiting::Transfer(r) = &mut self.waiting {
            self.shutting_down = Some(reason);
            if r.abort.is_none() {
                r.abort = Some(AbortBy::Shutdown);
                self.actions.push_back(Action::Abort);
            }
            return;
        }
        self.end_begun_reply();
        self.reply_static(code::NOT_AVAILABLE, reason);
        self.close();
    }
}

/// [`address::canonical`] for a socket address.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(address::canonical(addr.ip()), addr.port())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;
