//! The per-connection FTP state machine, sans I/O (RFC 959 §5.4 command-reply sequences).
//!
//! A session knows who is logged in, the working directory, the transfer type, a pending REST
//! offset or RNFR name, and how the next data connection is made. It never touches a socket,
//! a file or a clock. The engine drives it like this:
//!
//! 1. Feed each parsed command to [`Session::handle_command`].
//! 2. Drain [`Session::poll_action`] until it returns `None`, and carry each [`Action`] out:
//!    send a reply, ask the authenticator, run a storage operation, open a passive port, run
//!    a transfer, close.
//! 3. Actions that need an answer (authentication, storage, passive port, transfer) are
//!    answered through the matching `*_done` method, which queues more actions (the reply).
//!    Until then [`Session::is_waiting`] is true and no command should be fed, except that
//!    during a transfer the commands for which [`Session::handles_during_transfer`] is true
//!    (ABOR, STAT, NOOP) are fed at once and the others kept for later, in order.
//!
//! Tests are transcripts: command lines in, replies and actions out.

// A peer controls every input here: no panicking shortcuts (fuzzed, see fuzz/).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod files;

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::auth::{AuthError, User};
use crate::proto::command::{Command, EpsvArg, TransferType};
use crate::proto::reply::{code, Reply};
use crate::proto::{address, listing};
use crate::storage::{DirEntry, ErrorKind, Metadata};

pub use files::{FsRequest, Transfer, TransferKind};

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
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            greeting: "ringftp ready".into(),
            max_login_failures: 3,
            dangerous_allow_foreign_active: false,
        }
    }
}

/// Something the engine must do for the session.
#[derive(Debug)]
#[non_exhaustive]
pub enum Action {
    /// Send this reply on the control connection.
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
    /// Drop the passive listener, if any: the client chose active mode.
    ClosePassive,
    /// Open the data connection and run a transfer; report with [`Session::transfer_started`]
    /// and then [`Session::transfer_done`].
    Transfer(Transfer),
    /// Abort the running transfer; it ends with [`TransferOutcome::Aborted`].
    Abort,
    /// Close the control connection after the replies before this action are sent.
    Close,
}

/// The answer to a [`FsRequest`].
#[derive(Debug)]
#[non_exhaustive]
pub enum FsOutcome {
    /// Done, nothing to report.
    Done,
    /// The metadata asked for.
    Metadata(Metadata),
    /// The listing asked for.
    Listing(Vec<DirEntry>),
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
    /// ABOR stopped it (426, then 226 for the ABOR).
    Aborted,
    /// Storage failed mid-transfer (451, 452, 552).
    StorageFailed(ErrorKind),
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

/// What the session waits for from the engine.
#[derive(Debug)]
enum Waiting {
    Nothing,
    Auth,
    Fs(files::FsPurpose),
    Passive { extended: bool },
    Transfer { kind: TransferKind, aborting: bool },
}

/// One control connection's protocol state. See the module docs for how to drive it.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    peer: SocketAddr,
    local: SocketAddr,
    login: Login,
    login_failures: u32,
    cwd: Vec<u8>,
    transfer_type: TransferType,
    rest: u64,
    rename_from: Option<Vec<u8>>,
    data: Option<DataChannel>,
    epsv_all: bool,
    waiting: Waiting,
    closing: bool,
    actions: VecDeque<Action>,
}

impl Session {
    /// A new session for a client at `peer` connected to `local`; queues the 220 greeting.
    pub fn new(mut config: SessionConfig, peer: SocketAddr, local: SocketAddr) -> Self {
        // The greeting is sent once; the session does not keep a copy.
        let greeting = std::mem::take(&mut config.greeting);
        let mut s = Session {
            peer: canonical(peer),
            local: canonical(local),
            login: Login::Anonymous,
            login_failures: 0,
            cwd: b"/".to_vec(),
            transfer_type: TransferType::Binary,
            rest: 0,
            rename_from: None,
            data: None,
            epsv_all: false,
            waiting: Waiting::Nothing,
            closing: false,
            actions: VecDeque::new(),
            config,
        };
        s.reply(Reply::owned(code::SERVICE_READY, greeting));
        s
    }

    /// The next thing the engine must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether an action is unanswered; feed no command then (but see
    /// [`Session::handles_during_transfer`]).
    pub fn is_waiting(&self) -> bool {
        !matches!(self.waiting, Waiting::Nothing)
    }

    /// Whether a transfer is running.
    pub fn is_transferring(&self) -> bool {
        matches!(self.waiting, Waiting::Transfer { .. })
    }

    /// Whether the session has asked to close.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// The logged-in user.
    pub fn user(&self) -> Option<&User> {
        match &self.login {
            Login::LoggedIn(user) => Some(user),
            _ => None,
        }
    }

    /// Whether `cmd` is handled at once while a transfer runs, rather than after it.
    pub fn handles_during_transfer(cmd: &Command<'_>) -> bool {
        matches!(cmd, Command::Abor | Command::Stat(None) | Command::Noop)
    }

    fn reply(&mut self, reply: Reply) {
        self.actions.push_back(Action::Reply(reply));
    }

    fn reply_static(&mut self, code: u16, text: &'static str) {
        self.reply(Reply::new(code, text));
    }

    fn close(&mut self) {
        self.closing = true;
        self.actions.push_back(Action::Close);
    }

    /// Handles one command; see the module docs for what may be fed when.
    pub fn handle_command(&mut self, cmd: Command<'_>) {
        if self.closing {
            return;
        }
        if self.is_transferring() {
            self.handle_during_transfer(cmd);
            return;
        }
        // RNTO must come right after RNFR: any other command forgets the RNFR.
        let rename_from = self.rename_from.take();
        match cmd {
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
            // Placeholder until the session handles RFC 4217 (issue 11, phase 2).
            Command::Auth(_) | Command::Pbsz(_) | Command::Prot(_) | Command::Ccc => {
                self.reply_static(code::NOT_IMPLEMENTED, "TLS not configured.")
            }
            _ if self.user().is_none() => {
                self.reply_static(code::NOT_LOGGED_IN, "Please login with USER and PASS.")
            }
            Command::Rein => {
                self.login = Login::Anonymous;
                self.reset_session_state();
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
                self.data = None;
                self.reply_static(code::DATA_OPEN_NO_TRANSFER, "No transfer to abort.");
            }
            Command::Pasv => self.passive(false, EpsvArg::Any),
            Command::Epsv(arg) => self.passive(true, arg),
            Command::Port(addr) => self.active(SocketAddr::V4(addr), false),
            Command::Eprt(addr) => self.active(addr, true),
            other => self.file_command(other, rename_from),
        }
    }

    /// Answers a line that did not parse (500, 501, 502, 504 or 522).
    pub fn handle_parse_error(&mut self, error: crate::proto::ParseError) {
        if self.closing {
            return;
        }
        self.rename_from = None;
        self.reply(error.reply());
    }

    fn handle_during_transfer(&mut self, cmd: Command<'_>) {
        match cmd {
            Command::Abor => {
                if let Waiting::Transfer { aborting, .. } = &mut self.waiting {
                    if !*aborting {
                        *aborting = true;
                        self.actions.push_back(Action::Abort);
                    }
                }
            }
            Command::Noop => self.reply_static(code::OK, "NOOP ok."),
            Command::Stat(None) => {
                self.reply_static(code::SYSTEM_STATUS, "Status: data transfer in progress.")
            }
            // The engine should have kept these; refusing is the safe answer.
            _ => self.reply_static(code::BAD_SEQUENCE, "A transfer is in progress."),
        }
    }

    fn reset_session_state(&mut self) {
        self.cwd = b"/".to_vec();
        self.transfer_type = TransferType::Binary;
        self.rest = 0;
        self.rename_from = None;
        self.data = None;
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
    pub fn login_done(&mut self, result: Result<User, AuthError>) {
        if !matches!(self.waiting, Waiting::Auth) {
            return;
        }
        self.waiting = Waiting::Nothing;
        match result {
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
                    self.reply_static(code::NOT_LOGGED_IN, "Login incorrect.");
                }
            }
        }
    }

    /// Failed logins so far (the engine delays the reply by this many steps).
    pub fn login_failures(&self) -> u32 {
        self.login_failures
    }

    fn feat(&mut self) {
        let text = format!(
            "Features:\nEPRT\nEPSV\nMDTM\n{}\nPASV\nREST STREAM\nSIZE\nTVFS\nUTF8\nEnd",
            listing::FACTS_FEATURE
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
            // All facts are always sent; acknowledge the ones asked for that exist.
            let known = ["type", "size", "modify", "perm", "UNIX.mode"];
            let mut chosen = String::new();
            for fact in value.split(|&b| b == b';') {
                if let Some(k) = known.iter().find(|k| k.as_bytes().eq_ignore_ascii_case(fact)) {
                    chosen.push_str(k);
                    chosen.push(';');
                }
            }
            self.reply(Reply::owned(code::OK, format!("MLST OPTS {chosen}")));
        } else {
            self.reply_static(code::SYNTAX_ERROR_ARGS, "Option not understood.");
        }
    }

    fn help(&mut self, arg: Option<&[u8]>) {
        if arg.is_some_and(|a| crate::proto::command::trim(a).eq_ignore_ascii_case(b"SITE")) {
            self.reply_static(code::HELP, "SITE commands: HELP");
            return;
        }
        self.reply_static(
            code::HELP,
            "The following commands are recognized:\n\
             ABOR ACCT ALLO APPE CDUP CWD  DELE EPRT EPSV FEAT HELP LIST MDTM MKD\n\
             MLSD MLST MODE NLST NOOP OPTS PASS PASV PORT PWD  QUIT REIN REST RETR\n\
             RMD  RNFR RNTO SITE SIZE STAT STOR STOU STRU SYST TYPE USER XCUP XCWD\n\
             XMKD XPWD XRMD\n\
             Help OK.",
        );
    }

    fn site(&mut self, arg: &[u8]) {
        let arg = crate::proto::command::trim(arg);
        let sub = arg.split(|&b| b == b' ').next().unwrap_or_default();
        if sub.eq_ignore_ascii_case(b"HELP") {
            self.reply_static(code::HELP, "SITE commands: HELP");
        } else {
            self.reply_static(code::NOT_IMPLEMENTED, "Unknown SITE command.");
        }
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

    fn passive(&mut self, extended: bool, arg: EpsvArg) {
        if arg == EpsvArg::All {
            self.epsv_all = true;
            self.reply_static(code::OK, "EPSV ALL ok.");
            return;
        }
        if self.epsv_all && !extended {
            self.reply_static(code::BAD_SEQUENCE, "EPSV ALL in effect: only EPSV is allowed.");
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
        self.waiting = Waiting::Passive { extended };
        self.actions.push_back(Action::OpenPassive);
    }

    /// The engine opened a passive listener; `announce` is the address to tell the client
    /// (the configured public address, or the control connection's local address).
    pub fn passive_opened(&mut self, announce: SocketAddr) {
        let Waiting::Passive { extended } = self.waiting else {
            return;
        };
        self.waiting = Waiting::Nothing;
        let mut text = String::new();
        if extended {
            address::format_epsv(announce.port(), &mut text);
            self.reply(Reply::owned(code::EXTENDED_PASSIVE_MODE, text));
        } else if let SocketAddr::V4(v4) = canonical(announce) {
            address::format_pasv(v4, &mut text);
            self.reply(Reply::owned(code::PASSIVE_MODE, text));
        } else {
            self.actions.push_back(Action::ClosePassive);
            self.reply_static(code::CANT_OPEN_DATA, "PASV needs IPv4; use EPSV.");
            return;
        }
        self.data = Some(DataChannel::Passive);
    }

    /// No passive listener could be opened (the port range is exhausted).
    pub fn passive_failed(&mut self) {
        if matches!(self.waiting, Waiting::Passive { .. }) {
            self.waiting = Waiting::Nothing;
            self.reply_static(code::CANT_OPEN_DATA, "No passive port available, try again later.");
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
        self.actions.push_back(Action::ClosePassive);
        self.data = Some(DataChannel::Active(addr));
        if extended {
            self.reply_static(code::OK, "EPRT command successful.");
        } else {
            self.reply_static(code::OK, "PORT command successful. Consider using PASV.");
        }
    }

    /// The data connection is open and the transfer begins: queues the 150 reply.
    pub fn transfer_started(&mut self, name: &[u8], size: Option<u64>) {
        let Waiting::Transfer { kind, .. } = self.waiting else {
            return;
        };
        let mode = match self.transfer_type {
            TransferType::Ascii => "ASCII",
            TransferType::Binary => "BINARY",
        };
        let text = match kind {
            TransferKind::List | TransferKind::Nlst | TransferKind::Mlsd => {
                "Here comes the directory listing.".as_bytes().to_vec()
            }
            TransferKind::Stou => {
                let mut t = b"FILE: ".to_vec();
                t.extend_from_slice(name);
                t
            }
            _ => {
                let mut t = format!("Opening {mode} mode data connection for ").into_bytes();
                t.extend_from_slice(name);
                if let Some(size) = size {
                    t.extend_from_slice(format!(" ({size} bytes)").as_bytes());
                }
                t.push(b'.');
                t
            }
        };
        self.reply(Reply::owned(code::FILE_STATUS_OK, text));
    }

    /// The transfer ended: queues its final reply (and the ABOR reply after an abort).
    pub fn transfer_done(&mut self, outcome: TransferOutcome) {
        let Waiting::Transfer { kind, aborting } = self.waiting else {
            return;
        };
        self.waiting = Waiting::Nothing;
        self.data = None;
        self.rest = 0;
        match outcome {
            TransferOutcome::Completed { .. } if aborting => {
                // Finished before the abort took effect: RFC 959 says 226 for the ABOR only.
                self.reply_static(code::CLOSING_DATA, "Transfer complete.");
                self.reply_static(code::CLOSING_DATA, "ABOR successful.");
            }
            TransferOutcome::Completed { .. } => match kind {
                TransferKind::List | TransferKind::Nlst | TransferKind::Mlsd => {
                    self.reply_static(code::CLOSING_DATA, "Directory send OK.")
                }
                _ => self.reply_static(code::CLOSING_DATA, "Transfer complete."),
            },
            TransferOutcome::Aborted => {
                self.reply_static(code::TRANSFER_ABORTED, "Transfer aborted.");
                self.reply_static(code::CLOSING_DATA, "ABOR successful.");
            }
            TransferOutcome::OpenFailed(kind) => {
                self.reply(Reply::new(kind.reply_code(), kind.text()));
                if aborting {
                    self.reply_static(code::CLOSING_DATA, "ABOR successful.");
                }
            }
            TransferOutcome::NoDataConnection => {
                self.reply_static(code::CANT_OPEN_DATA, "Failed to establish connection.");
                if aborting {
                    self.reply_static(code::CLOSING_DATA, "ABOR successful.");
                }
            }
            TransferOutcome::ConnectionLost => {
                self.reply_static(code::TRANSFER_ABORTED, "Connection closed; transfer aborted.");
                if aborting {
                    self.reply_static(code::CLOSING_DATA, "ABOR successful.");
                }
            }
            TransferOutcome::StorageFailed(kind) => {
                let code = match kind {
                    ErrorKind::InsufficientStorage | ErrorKind::QuotaExceeded => kind.reply_code(),
                    _ => code::LOCAL_ERROR,
                };
                self.reply(Reply::new(code, kind.text()));
                if aborting {
                    self.reply_static(code::CLOSING_DATA, "ABOR successful.");
                }
            }
        }
    }

    /// The engine is closing the session (idle timeout, shutdown): queues 421 and Close.
    pub fn shutdown(&mut self, reason: &'static str) {
        if !self.closing {
            self.reply_static(code::NOT_AVAILABLE, reason);
            self.close();
        }
    }
}

/// [`address::canonical`] for a socket address.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(address::canonical(addr.ip()), addr.port())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;
