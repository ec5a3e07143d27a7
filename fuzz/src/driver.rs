//! Drives a sans-IO [`Session`] the way the engine (`src/engine/control.rs`) does, from a
//! script the fuzzer generates, against the in-memory storage, and checks its invariants.
//!
//! # How the engine is modelled
//!
//! - Client bytes go through a real [`LineBuffer`]; lines are taken from it only when the
//!   session may take a command (like `Control::process_lines`).
//! - While a transfer runs, a line that parses to a command for which
//!   [`Session::handles_during_transfer`] holds (ABOR, STAT, NOOP) is fed at once; any other
//!   line (and an over-long one, and a line that does not parse) is kept, and the kept lines
//!   are fed first, in order, once the transfer is over.
//! - Authentication, storage and passive-port answers are synchronous in the engine. Here the
//!   script chooses when and how to answer; until then lines stay in the `LineBuffer`, as
//!   they would while the engine awaits the answer.
//! - `Action::Abort` is answered at once, as `Control::abort_transfer` does: a `Started`
//!   event that was already queued is delivered first, then `transfer_done` with `Aborted`
//!   or with the outcome the transfer had already reported.
//! - `TransferOutcome::Aborted` is only ever reported in answer to `Action::Abort` (the data
//!   path never produces it). `OpenFailed`/`NoDataConnection` come before `Started`,
//!   `Completed`/`ConnectionLost` after it; `StorageFailed` at any time.
//!
//! # Invariants (each a panic if broken)
//!
//! 1. No panic in the session.
//! 2. One final reply per command. Replies are counted per call into the session:
//!    - the greeting is exactly one `220`;
//!    - a command fed while no transfer runs gets exactly one final (non-1xx) reply, unless
//!      the session is then waiting for an answer, in which case it gets none yet;
//!    - answering (`login_done`, `fs_done`, `passive_opened`/`passive_failed`, and
//!      `transfer_done` when no ABOR is involved) gives exactly one final reply and ends the
//!      wait; `transfer_started` gives exactly one `150` and nothing else;
//!    - NOOP or STAT during a transfer gets exactly one reply (`200` / `211`) and the transfer
//!      goes on;
//!    - ABOR during a transfer gives exactly two final replies, the transfer's own final
//!      reply and then `226` for the ABOR (possibly after the transfer's `150`), and the
//!      transfer is over;
//!    - `shutdown` gives exactly one `421` and then `Close`.
//!    So at every quiet point: finals = 1 + commands fed + shutdowns - (1 if waiting).
//! 3. Every reply has a code in 100..=599 and a well-formed wire form ([`crate::wire`]).
//! 4. A `150` only comes from `transfer_started` (or the ABOR path), at most once per
//!    transfer, and after it no final reply comes from anything but NOOP/STAT during the
//!    transfer until the transfer's own final reply.
//! 5. After `Action::Close` no further action, whatever is called.
//! 6. `is_waiting()` is true exactly while an answer is owed (`Authenticate`, `Fs`,
//!    `OpenPassive`, `Transfer` polled and not yet answered), `is_transferring()` exactly while
//!    a transfer is owed, and at most one answer is owed at a time; `is_closing()` exactly
//!    after `Close`.
//! 7. An answer of a kind the session does not wait for changes nothing and yields nothing.
//! 8. Storage and transfers are only requested for a logged-in user; never a write for a
//!    read-only one; every path is normalised and stays below the root ([`crate::paths`]).
//! 9. A passive transfer only after a passive listener was opened and not closed since; an
//!    active one only to the client's address, port >= 1024, same family (unless the
//!    dangerous option is on).
//! 10. Listings of the storage (as the data path formats them) are one CRLF line per entry.
//! 11. At the end of the script, answering everything eventually empties the kept lines and
//!     every command has had its final reply.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
use ringftp::proto::{self, address, listing, Command, Line, LineBuffer, ParseError, Reply};
use ringftp::session::{
    Action, DataChannel, FsOutcome, FsRequest, Session, SessionConfig, Transfer, TransferKind,
    TransferOutcome,
};
use ringftp::storage::{DirEntry, ErrorKind, FileKind, Metadata};
use ringftp::{AuthError, User};

use crate::memfs::{MemFs, Write};
use crate::paths::check_virtual;
use crate::wire::write_and_check;

/// Whether to print the transcript to stderr (`RINGFTP_FUZZ_TRACE=1`), for reproducing.
fn trace() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("RINGFTP_FUZZ_TRACE").is_some_and(|v| v != "0"))
}

macro_rules! trace {
    ($($t:tt)*) => {
        if trace() {
            eprintln!($($t)*);
        }
    };
}

// ---------------------------------------------------------------------------------------------
// The script.

/// What the fuzzer generates.
#[derive(Arbitrary, Debug)]
pub struct Script {
    pub config: Config,
    pub steps: Vec<Step>,
}

/// The session's settings and the starting storage.
#[derive(Arbitrary, Debug)]
pub struct Config {
    /// The line limit is 1 + this % 1024.
    pub max_line: u16,
    /// Failed logins before 421: this % 5.
    pub max_login_failures: u8,
    pub allow_foreign_active: bool,
    pub peer: AddrChoice,
    pub local: AddrChoice,
    /// "now" is 2020-01-01 plus this many days.
    pub now_days: u16,
    /// Modification times of the sample tree's nodes.
    pub times: Vec<TimeChoice>,
    /// Sizes of the sample tree's files.
    pub sizes: Vec<u64>,
    /// How each ABOR is answered, used in turn (default: `Aborted`).
    pub aborts: Vec<AbortWith>,
    /// Steps run before the script's, so it can start deep in a session.
    pub prelude: Prelude,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Prelude {
    Nothing,
    /// USER, PASS, logged in read-write.
    Login,
    /// USER, PASS, logged in read-only.
    LoginReadOnly,
    /// Logged in, then EPSV answered.
    LoginEpsv,
    /// Logged in, then PORT to the client.
    LoginPort,
}

impl Prelude {
    fn steps(self) -> Vec<Step> {
        let cmd = |verb, arg| Step::Command(verb, arg, Ending::CrLf);
        let ok = || Step::Answer(Answer::Ok { port: 50000, bytes: 100 });
        let mut steps = Vec::new();
        if matches!(self, Prelude::Nothing) {
            return steps;
        }
        steps.push(cmd(Verb::User, Arg::Bytes(b"bob".to_vec())));
        steps.push(cmd(Verb::Pass, Arg::Bytes(b"pw".to_vec())));
        steps.push(match self {
            Prelude::LoginReadOnly => Step::Answer(Answer::OkReadOnly { port: 50000, bytes: 100 }),
            _ => ok(),
        });
        match self {
            Prelude::LoginEpsv => {
                steps.push(cmd(Verb::Epsv, Arg::None));
                steps.push(ok());
            }
            Prelude::LoginPort => steps.push(cmd(Verb::Eprt, Arg::Data(AddrChoice::V4Loopback, 3000))),
            _ => {}
        }
        steps
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum AddrChoice {
    V4Loopback,
    V4Other,
    V6Loopback,
    V4Mapped,
    V6Other,
}

impl AddrChoice {
    pub fn ip(self) -> IpAddr {
        match self {
            AddrChoice::V4Loopback => IpAddr::V4(Ipv4Addr::LOCALHOST),
            // Documentation ranges: only values here, nothing is ever sent.
            AddrChoice::V4Other => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            AddrChoice::V6Loopback => IpAddr::V6(Ipv6Addr::LOCALHOST),
            AddrChoice::V4Mapped => IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()),
            AddrChoice::V6Other => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum TimeChoice {
    Unknown,
    /// Seconds since (or before) the epoch.
    Secs(i64),
    /// This many seconds before "now".
    Ago(u32),
    /// This many seconds after "now".
    Ahead(u32),
    Latest,
    Earliest,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum AbortWith {
    /// The abort took effect.
    Aborted,
    /// The transfer had already reported this before the ABOR was handled.
    AlreadyDone(Failure),
    AlreadyCompleted(u32),
    /// A `Started` event was still queued, then the abort took effect.
    StartedThenAborted,
    StartedThenCompleted(u32),
}

/// One step of the script.
#[derive(Arbitrary, Debug)]
pub enum Step {
    /// Bytes from the client, as received (Telnet, bare CR, anything).
    Input(Vec<u8>),
    /// One command line.
    Command(Verb, Arg, Ending),
    /// Answer what the session waits for, if anything.
    Answer(Answer),
    /// Call an answer method of a kind the session does not wait for.
    Stray(StrayKind, Answer),
    /// The engine shuts the session down (idle timeout, server shutdown), when it may.
    Shutdown,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Ending {
    CrLf,
    Lf,
    CrCrLf,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum StrayKind {
    Login,
    Fs,
    PassiveOpened,
    PassiveFailed,
    Started,
    Done,
}

/// How to answer.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Answer {
    /// Auth: a read-write user. Storage: run it. Passive: opened on the local address.
    /// Transfer: the next natural event (open storage and start, or complete).
    Ok { port: u16, bytes: u32 },
    /// Auth: a read-only user. Otherwise as `Ok`.
    OkReadOnly { port: u16, bytes: u32 },
    /// Auth: refused. Storage: fails. Passive: no port. Transfer: fails.
    Fail(Failure),
    /// Something unusual but possible: a user name with line breaks, a passive address of
    /// another family, a storage outcome of the wrong kind, a 150 name with line breaks.
    Odd(AddrChoice, u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Failure {
    Storage(Kind),
    NoData,
    Lost,
    Midway(Kind),
    AuthUnavailable,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Kind {
    NotFound,
    PermissionDenied,
    AlreadyExists,
    NotADirectory,
    IsADirectory,
    DirectoryNotEmpty,
    InvalidName,
    InsufficientStorage,
    QuotaExceeded,
    Unavailable,
    Local,
}

impl Kind {
    pub fn kind(self) -> ErrorKind {
        match self {
            Kind::NotFound => ErrorKind::NotFound,
            Kind::PermissionDenied => ErrorKind::PermissionDenied,
            Kind::AlreadyExists => ErrorKind::AlreadyExists,
            Kind::NotADirectory => ErrorKind::NotADirectory,
            Kind::IsADirectory => ErrorKind::IsADirectory,
            Kind::DirectoryNotEmpty => ErrorKind::DirectoryNotEmpty,
            Kind::InvalidName => ErrorKind::InvalidName,
            Kind::InsufficientStorage => ErrorKind::InsufficientStorage,
            Kind::QuotaExceeded => ErrorKind::QuotaExceeded,
            Kind::Unavailable => ErrorKind::Unavailable,
            Kind::Local => ErrorKind::Local,
        }
    }
}

impl Failure {
    fn kind(self) -> ErrorKind {
        match self {
            Failure::Storage(k) | Failure::Midway(k) => k.kind(),
            _ => ErrorKind::Local,
        }
    }

    /// The outcome of a failed transfer, as the data path would report it.
    fn outcome(self, started: bool) -> TransferOutcome {
        match (self, started) {
            (Failure::Storage(k), false) => TransferOutcome::OpenFailed(k.kind()),
            (Failure::NoData | Failure::Lost, false) => TransferOutcome::NoDataConnection,
            (Failure::Lost | Failure::NoData, true) => TransferOutcome::ConnectionLost,
            (Failure::Storage(k) | Failure::Midway(k), _) => TransferOutcome::StorageFailed(k.kind()),
            // A transfer task that ended without reporting.
            (Failure::AuthUnavailable, _) => TransferOutcome::StorageFailed(ErrorKind::Local),
        }
    }
}

/// Every verb the parser knows, plus a few it does not.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Verb {
    User,
    Pass,
    Acct,
    Quit,
    Rein,
    Noop,
    Syst,
    Feat,
    Opts,
    Help,
    Stat,
    Site,
    Type,
    Mode,
    Stru,
    Pwd,
    Xpwd,
    Cwd,
    Xcwd,
    Cdup,
    Xcup,
    Mkd,
    Xmkd,
    Rmd,
    Xrmd,
    Dele,
    Rnfr,
    Rnto,
    Size,
    Mdtm,
    Rest,
    Port,
    Eprt,
    Pasv,
    Epsv,
    List,
    Nlst,
    Mlsd,
    Mlst,
    Retr,
    Stor,
    Stou,
    Appe,
    Allo,
    Abor,
    Smnt,
    Lowercase(LowerVerb),
    Unknown,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum LowerVerb {
    User,
    Pass,
    Retr,
    Stor,
    List,
    Abor,
    Epsv,
}

impl Verb {
    pub fn text(self) -> &'static [u8] {
        match self {
            Verb::User => b"USER",
            Verb::Pass => b"PASS",
            Verb::Acct => b"ACCT",
            Verb::Quit => b"QUIT",
            Verb::Rein => b"REIN",
            Verb::Noop => b"NOOP",
            Verb::Syst => b"SYST",
            Verb::Feat => b"FEAT",
            Verb::Opts => b"OPTS",
            Verb::Help => b"HELP",
            Verb::Stat => b"STAT",
            Verb::Site => b"SITE",
            Verb::Type => b"TYPE",
            Verb::Mode => b"MODE",
            Verb::Stru => b"STRU",
            Verb::Pwd => b"PWD",
            Verb::Xpwd => b"XPWD",
            Verb::Cwd => b"CWD",
            Verb::Xcwd => b"XCWD",
            Verb::Cdup => b"CDUP",
            Verb::Xcup => b"XCUP",
            Verb::Mkd => b"MKD",
            Verb::Xmkd => b"XMKD",
            Verb::Rmd => b"RMD",
            Verb::Xrmd => b"XRMD",
            Verb::Dele => b"DELE",
            Verb::Rnfr => b"RNFR",
            Verb::Rnto => b"RNTO",
            Verb::Size => b"SIZE",
            Verb::Mdtm => b"MDTM",
            Verb::Rest => b"REST",
            Verb::Port => b"PORT",
            Verb::Eprt => b"EPRT",
            Verb::Pasv => b"PASV",
            Verb::Epsv => b"EPSV",
            Verb::List => b"LIST",
            Verb::Nlst => b"NLST",
            Verb::Mlsd => b"MLSD",
            Verb::Mlst => b"MLST",
            Verb::Retr => b"RETR",
            Verb::Stor => b"STOR",
            Verb::Stou => b"STOU",
            Verb::Appe => b"APPE",
            Verb::Allo => b"ALLO",
            Verb::Abor => b"ABOR",
            Verb::Smnt => b"SMNT",
            Verb::Lowercase(l) => match l {
                LowerVerb::User => b"user",
                LowerVerb::Pass => b"pass",
                LowerVerb::Retr => b"retr",
                LowerVerb::Stor => b"Stor",
                LowerVerb::List => b"list",
                LowerVerb::Abor => b"abor",
                LowerVerb::Epsv => b"epsv",
            },
            Verb::Unknown => b"XYZZY",
        }
    }
}

/// Arguments worth trying: names in the sample tree, options, and parameters.
pub const NAMES: &[&[u8]] = &[
    b"pub",
    b"/pub/file.txt",
    b"file.txt",
    b"sub",
    b"..",
    b"../..",
    b"/",
    b".",
    b"new",
    b"new/inner",
    b"/pub/sub/deep.bin",
    b"deep.bin",
    b"a b",
    b"readme",
    b"empty",
    b"link",
    b"fifo",
    b"cr\rname",
    b"\xff\xfe",
    b"-la",
    b"-la pub",
    b"-l -a /pub",
    b"nope/x",
    b"readme/x",
    b"//pub//./sub/",
    b"../../../../etc/passwd",
    b"*",
    b"UTF8 ON",
    b"UTF8 OFF",
    b"utf-8",
    b"MLST type;size;modify;perm;UNIX.mode;",
    b"MLST nope;",
    b"I",
    b"A",
    b"A N",
    b"L 8",
    b"E",
    b"ALL",
    b"1",
    b"2",
    b"3",
    b"HELP",
    b"CHMOD 777 x",
    b"S",
    b"F",
    b"B",
    b"0",
    b"100",
    b"18446744073709551615",
    b"bob",
    b"anonymous",
    b"pw",
];

#[derive(Arbitrary, Debug, Clone)]
pub enum Arg {
    None,
    Name(u8),
    Bytes(Vec<u8>),
    Number(u64),
    /// PORT/EPRT argument for this address and port.
    Data(AddrChoice, u16),
}

impl Arg {
    fn write(&self, verb: Verb, out: &mut Vec<u8>) {
        match self {
            Arg::None => {}
            Arg::Name(i) => {
                out.push(b' ');
                out.extend_from_slice(NAMES[*i as usize % NAMES.len()]);
            }
            Arg::Bytes(b) => {
                out.push(b' ');
                out.extend_from_slice(b);
            }
            Arg::Number(n) => {
                out.push(b' ');
                out.extend_from_slice(n.to_string().as_bytes());
            }
            Arg::Data(a, port) => {
                out.push(b' ');
                let addr = SocketAddr::new(a.ip(), *port);
                match (verb, a.ip()) {
                    (Verb::Port, IpAddr::V4(ip)) => out.extend_from_slice(
                        address::format_port(std::net::SocketAddrV4::new(ip, *port)).as_bytes(),
                    ),
                    (Verb::Port, _) => out.extend_from_slice(
                        address::format_port(std::net::SocketAddrV4::new(Ipv4Addr::LOCALHOST, *port))
                            .as_bytes(),
                    ),
                    _ => out.extend_from_slice(address::format_eprt(addr).as_bytes()),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The driver.

/// Reply codes that end a transfer.
const TRANSFER_FINAL: &[u16] = &[226, 425, 426, 450, 451, 452, 550, 552, 553];

/// Which call into the session produced the actions being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Greeting,
    /// A command (or parse error) fed while no transfer runs.
    Command,
    /// NOOP or STAT fed during a transfer.
    InTransfer,
    /// ABOR fed during a transfer.
    Abort,
    /// `login_done`, `fs_done`, `passive_opened`, `passive_failed`.
    Answer,
    Started,
    Done,
    Stray,
    Shutdown,
    AfterClose,
}

/// What the session waits for.
#[derive(Debug)]
enum Owed {
    Auth,
    Fs(FsRequest),
    Passive,
    Transfer(Running),
}

#[derive(Debug)]
struct Running {
    t: Transfer,
    started: bool,
    /// The file an upload writes, once opened.
    target: Option<(Vec<u8>, Write)>,
}

/// Replies of one call.
#[derive(Debug, Default)]
struct Out {
    finals: Vec<u16>,
    prelims: Vec<u16>,
    actions: usize,
}

pub struct Driver {
    session: Session,
    lines: LineBuffer,
    max_line: usize,
    /// Lines kept during a transfer; `None` is an over-long line.
    deferred: VecDeque<Option<Vec<u8>>>,
    fs: MemFs,
    now: SystemTime,
    peer: SocketAddr,
    local: SocketAddr,
    allow_foreign: bool,
    owed: Option<Owed>,
    closed: bool,
    /// The engine holds a passive listener.
    listener: bool,
    /// A 150 was sent and its transfer's final reply not yet.
    open_150: bool,
    aborts: Vec<AbortWith>,
    abort_index: usize,
    /// Counters for invariant 2.
    fed: u64,
    finals: u64,
    shutdowns: u64,
}

fn time_of(choice: TimeChoice, now: SystemTime) -> Option<SystemTime> {
    match choice {
        TimeChoice::Unknown => None,
        TimeChoice::Secs(s) if s >= 0 => UNIX_EPOCH.checked_add(Duration::from_secs(s as u64)),
        TimeChoice::Secs(s) => UNIX_EPOCH.checked_sub(Duration::from_secs(s.unsigned_abs())),
        TimeChoice::Ago(s) => now.checked_sub(Duration::from_secs(s.into())),
        TimeChoice::Ahead(s) => now.checked_add(Duration::from_secs(s.into())),
        TimeChoice::Latest => UNIX_EPOCH.checked_add(Duration::from_secs(i64::MAX as u64)),
        TimeChoice::Earliest => UNIX_EPOCH.checked_sub(Duration::from_secs(i64::MAX as u64)),
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// Formats a listing as the data path does and checks it is one CRLF line per entry.
pub fn check_listing(kind: TransferKind, entries: &[DirEntry], now: SystemTime, writable: bool) {
    let mut out = Vec::new();
    for e in entries {
        match kind {
            TransferKind::List => listing::write_list_line(&e.name, &e.metadata, now, &mut out),
            TransferKind::Nlst => listing::write_nlst_line(&e.name, &mut out),
            _ => {
                listing::write_facts(&e.name, &e.metadata, writable, &mut out);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    let crlfs = out.windows(2).filter(|w| w == b"\r\n").count();
    let crs = out.iter().filter(|&&b| b == b'\r').count();
    let lfs = out.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(crlfs, entries.len(), "listing lines: {out:?}");
    assert_eq!(crs, entries.len(), "bare CR in a listing: {out:?}");
    assert_eq!(lfs, entries.len(), "bare LF in a listing: {out:?}");
    if kind == TransferKind::Nlst {
        return;
    }
    // MLSD/MLST facts: the name follows the first "; ".
    if kind == TransferKind::Mlsd {
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            assert!(line.windows(2).any(|w| w == b"; "), "facts line without \"; \": {line:?}");
        }
    }
}

impl Driver {
    pub fn new(config: &Config) -> Self {
        let now = UNIX_EPOCH + Duration::from_secs(1_577_836_800 + u64::from(config.now_days) * 86_400);
        let times: Vec<_> = config.times.iter().map(|&t| time_of(t, now)).collect();
        let fs = MemFs::sample(&times, &config.sizes);
        let mut sc = SessionConfig::default();
        sc.max_login_failures = u32::from(config.max_login_failures % 5);
        sc.dangerous_allow_foreign_active = config.allow_foreign_active;
        let peer = SocketAddr::new(config.peer.ip(), 40000);
        let local = SocketAddr::new(config.local.ip(), 2121);
        let max_line = 1 + usize::from(config.max_line % 1024);
        let mut d = Driver {
            session: Session::new(sc, peer, local),
            lines: LineBuffer::new(max_line),
            max_line,
            deferred: VecDeque::new(),
            fs,
            now,
            peer: canonical(peer),
            local: canonical(local),
            allow_foreign: config.allow_foreign_active,
            owed: None,
            closed: false,
            listener: false,
            open_150: false,
            aborts: config.aborts.clone(),
            abort_index: 0,
            fed: 0,
            finals: 0,
            shutdowns: 0,
        };
        d.call(Call::Greeting, |_| {});
        d
    }

    /// Runs a whole script, then answers everything until the session is idle.
    pub fn run(script: &Script) {
        let mut d = Driver::new(&script.config);
        for step in script.config.prelude.steps().iter().chain(&script.steps) {
            d.step(step);
        }
        d.finish();
    }

    pub fn step(&mut self, step: &Step) {
        trace!("STEP {step:?}");
        match step {
            Step::Input(bytes) => self.input(bytes),
            Step::Command(verb, arg, ending) => {
                let mut line = verb.text().to_vec();
                arg.write(*verb, &mut line);
                line.extend_from_slice(match ending {
                    Ending::CrLf => b"\r\n",
                    Ending::Lf => b"\n",
                    Ending::CrCrLf => b"\r\r\n",
                });
                self.input(&line);
            }
            Step::Answer(a) => {
                if self.closed {
                    self.after_close_answer(*a);
                } else {
                    self.answer(*a);
                    self.process_lines();
                }
            }
            Step::Stray(kind, a) => self.stray(*kind, *a, false),
            Step::Shutdown => {
                if self.closed {
                    self.call(Call::AfterClose, |s| s.shutdown("Server shutting down."));
                } else if !self.session.is_waiting() {
                    self.shutdowns += 1;
                    self.call(Call::Shutdown, |s| s.shutdown("Server shutting down."));
                }
            }
        }
        self.check_counts();
        // Invariant 7, at every step: answers nobody asked for are ignored.
        for kind in [
            StrayKind::Login,
            StrayKind::Fs,
            StrayKind::PassiveOpened,
            StrayKind::PassiveFailed,
            StrayKind::Started,
            StrayKind::Done,
        ] {
            self.stray(kind, Answer::Fail(Failure::Lost), true);
        }
    }

    fn input(&mut self, bytes: &[u8]) {
        // The engine reads at most 1024 bytes at a time.
        for chunk in bytes.chunks(1024) {
            self.lines.push(chunk);
            self.process_lines();
        }
    }

    fn next_line(&mut self) -> Option<Option<Vec<u8>>> {
        let max = self.max_line;
        match self.lines.next_line()? {
            Line::Complete(l) => {
                assert!(l.len() <= max, "line of {} bytes, limit {max}", l.len());
                Some(Some(l.to_vec()))
            }
            Line::TooLong => Some(None),
        }
    }

    /// `Control::process_lines`.
    fn process_lines(&mut self) {
        loop {
            if self.closed {
                // The engine stops reading; anything fed now must be ignored.
                if let Some(line) = self.next_line() {
                    self.feed(Call::AfterClose, line);
                    continue;
                }
                return;
            }
            if self.session.is_transferring() {
                let Some(line) = self.next_line() else {
                    return;
                };
                let during = match &line {
                    Some(l) => match proto::parse(l) {
                        Ok(cmd) if Session::handles_during_transfer(&cmd) => {
                            Some(if matches!(cmd, Command::Abor) { Call::Abort } else { Call::InTransfer })
                        }
                        _ => None,
                    },
                    None => None,
                };
                match during {
                    Some(call) => self.feed(call, line),
                    None => self.deferred.push_back(line),
                }
            } else if self.session.is_waiting() {
                // The engine is awaiting the answer; lines wait in the buffer.
                return;
            } else if let Some(line) = self.deferred.pop_front() {
                self.feed(Call::Command, line);
            } else {
                let Some(line) = self.next_line() else {
                    return;
                };
                self.feed(Call::Command, line);
            }
        }
    }

    fn feed(&mut self, call: Call, line: Option<Vec<u8>>) {
        if call != Call::AfterClose {
            self.fed += 1;
        }
        trace!(">> {}", line.as_deref().map_or("<too long>".into(), String::from_utf8_lossy));
        self.call(call, |s| match line.as_deref().map(proto::parse) {
            Some(Ok(cmd)) => s.handle_command(cmd),
            Some(Err(e)) => s.handle_parse_error(e),
            None => s.handle_parse_error(ParseError::LineTooLong),
        });
    }

    /// Calls into the session, carries out and checks what it asks for.
    fn call(&mut self, call: Call, f: impl FnOnce(&mut Session)) -> Out {
        let before = (self.session.is_waiting(), self.session.is_transferring(), self.session.is_closing());
        f(&mut self.session);
        let out = self.drain(call);
        self.check_state();
        let waiting = self.session.is_waiting();
        let transferring = self.session.is_transferring();
        match call {
            Call::Greeting => assert_eq!(out.finals, [220]),
            Call::Command => {
                assert!(out.prelims.is_empty(), "1xx to a command: {out:?}");
                assert_eq!(
                    out.finals.len() + usize::from(waiting),
                    1,
                    "a command must get one final reply or wait for an answer: {out:?}"
                );
            }
            Call::InTransfer => {
                assert!(out.prelims.is_empty(), "{out:?}");
                assert!(out.finals == [200] || out.finals == [211], "NOOP/STAT during a transfer: {out:?}");
                assert!(transferring, "NOOP/STAT ended the transfer");
            }
            Call::Abort => {
                assert!(before.1, "ABOR fed as in-transfer without a transfer");
                assert!(!waiting, "ABOR left the session waiting");
                assert!(out.prelims.len() <= 1, "{out:?}");
                assert_eq!(out.finals.len(), 2, "ABOR during a transfer: {out:?}");
                assert!(TRANSFER_FINAL.contains(&out.finals[0]), "{out:?}");
                assert_eq!(out.finals[1], 226, "ABOR's own reply: {out:?}");
            }
            Call::Answer | Call::Done => {
                assert!(out.prelims.is_empty(), "{out:?}");
                assert_eq!(out.finals.len(), 1, "an answer gives one final reply: {out:?}");
                assert!(!waiting, "still waiting after the answer");
                if call == Call::Done {
                    assert!(TRANSFER_FINAL.contains(&out.finals[0]), "{out:?}");
                }
            }
            Call::Started => {
                assert_eq!(out.prelims, [150], "{out:?}");
                assert!(out.finals.is_empty(), "{out:?}");
                assert!(transferring);
            }
            Call::Stray => {
                assert_eq!(out.actions, 0, "an answer nobody asked for did something");
                let after = (waiting, transferring, self.session.is_closing());
                assert_eq!(before, after, "an answer nobody asked for changed the state");
            }
            Call::Shutdown => {
                assert_eq!(out.finals, [421], "{out:?}");
                assert!(self.closed, "shutdown without Close");
            }
            Call::AfterClose => assert_eq!(out.actions, 0, "actions after Close"),
        }
        out
    }

    fn drain(&mut self, call: Call) -> Out {
        let mut out = Out::default();
        while let Some(action) = self.session.poll_action() {
            assert!(!self.closed, "action after Close: {action:?}");
            out.actions += 1;
            match action {
                Action::Reply(r) => self.on_reply(&r, call, &mut out),
                Action::Authenticate { username, password } => {
                    trace!("   Authenticate {username:?} {password:?}");
                    self.owe(Owed::Auth);
                }
                Action::Fs(req) => {
                    trace!("   Fs {req:?}");
                    self.check_fs_request(&req);
                    self.owe(Owed::Fs(req));
                }
                Action::OpenPassive => {
                    trace!("   OpenPassive");
                    // The engine drops any previous listener first.
                    self.listener = false;
                    self.owe(Owed::Passive);
                }
                Action::ClosePassive => {
                    trace!("   ClosePassive");
                    self.listener = false;
                }
                Action::Transfer(t) => {
                    trace!("   Transfer {t:?}");
                    self.check_transfer(&t);
                    // The engine hands the passive listener to the transfer.
                    if t.channel == DataChannel::Passive {
                        self.listener = false;
                    }
                    self.owe(Owed::Transfer(Running { t, started: false, target: None }));
                }
                Action::Abort => {
                    trace!("   Abort");
                    assert_eq!(call, Call::Abort, "Abort action outside ABOR");
                    self.abort_now();
                }
                Action::Close => {
                    trace!("   Close");
                    self.closed = true;
                }
                other => panic!("unknown action {other:?}"),
            }
        }
        out
    }

    fn owe(&mut self, owed: Owed) {
        assert!(self.owed.is_none(), "a second answer owed ({owed:?}) while one is ({:?})", self.owed);
        self.owed = Some(owed);
    }

    fn on_reply(&mut self, r: &Reply, call: Call, out: &mut Out) {
        let code = r.code();
        assert!((100..600).contains(&code), "the session made a reply with code {code}");
        let wire = write_and_check(r);
        trace!("<< {}", String::from_utf8_lossy(&wire).trim_end());
        if r.is_preliminary() {
            assert_eq!(code, 150, "unexpected 1xx");
            assert!(matches!(call, Call::Started | Call::Abort), "150 from {call:?}");
            assert!(!self.open_150, "a second 150 for one transfer");
            // (ABOR answers the transfer before its replies are drained.)
            assert!(
                call == Call::Abort || matches!(self.owed, Some(Owed::Transfer(_))),
                "150 without a transfer"
            );
            self.open_150 = true;
            out.prelims.push(code);
            return;
        }
        if self.open_150 {
            assert!(
                matches!(call, Call::InTransfer | Call::Abort | Call::Done),
                "reply {code} from {call:?} between a 150 and its transfer's final reply"
            );
        }
        if matches!(call, Call::Abort | Call::Done) && out.finals.is_empty() {
            self.open_150 = false;
        }
        self.finals += 1;
        out.finals.push(code);
    }

    /// Invariant 6.
    fn check_state(&self) {
        assert_eq!(
            self.session.is_waiting(),
            self.owed.is_some(),
            "is_waiting() = {} but owed = {:?}",
            self.session.is_waiting(),
            self.owed
        );
        assert_eq!(
            self.session.is_transferring(),
            matches!(self.owed, Some(Owed::Transfer(_))),
            "is_transferring() disagrees with {:?}",
            self.owed
        );
        assert_eq!(self.session.is_closing(), self.closed, "is_closing()");
        if !self.session.is_transferring() {
            assert!(!self.open_150, "a 150 without its final reply");
        }
    }

    /// Invariant 2, as a total.
    fn check_counts(&self) {
        let waiting = u64::from(self.session.is_waiting());
        assert_eq!(
            self.finals + waiting,
            1 + self.fed + self.shutdowns,
            "final replies {} + waiting {waiting} != greeting + {} commands + {} shutdowns",
            self.finals,
            self.fed,
            self.shutdowns
        );
    }

    fn writable(&self) -> bool {
        self.session.user().is_some_and(|u| !u.is_read_only())
    }

    fn check_fs_request(&self, req: &FsRequest) {
        assert!(self.session.user().is_some(), "storage before login: {req:?}");
        match req {
            FsRequest::Metadata(p) | FsRequest::List(p) => check_virtual(p),
            FsRequest::MakeDir(p) | FsRequest::RemoveDir(p) | FsRequest::RemoveFile(p) => {
                assert!(self.writable(), "a write for a read-only user: {req:?}");
                check_virtual(p);
            }
            FsRequest::Rename { from, to } => {
                assert!(self.writable(), "a rename for a read-only user: {req:?}");
                check_virtual(from);
                check_virtual(to);
            }
            other => panic!("unknown request {other:?}"),
        }
    }

    fn check_transfer(&self, t: &Transfer) {
        assert!(self.session.user().is_some(), "transfer before login: {t:?}");
        check_virtual(&t.path);
        if t.kind.is_upload() {
            assert!(self.writable(), "an upload for a read-only user: {t:?}");
        }
        assert_eq!(t.writable, self.writable());
        if t.kind.is_listing() {
            assert!(!t.ascii, "a listing in ASCII mode");
        }
        if !matches!(t.kind, TransferKind::Retr | TransferKind::Stor) {
            assert_eq!(t.offset, 0, "a REST offset for {:?}", t.kind);
        }
        match t.channel {
            DataChannel::Passive => assert!(self.listener, "a passive transfer without a listener"),
            DataChannel::Active(addr) => {
                assert_eq!(addr, canonical(addr), "active address not canonical");
                assert_eq!(addr.is_ipv4(), self.local.is_ipv4(), "active family");
                if !self.allow_foreign {
                    assert_eq!(addr.ip(), self.peer.ip(), "active to a foreign address");
                    assert!(addr.port() >= 1024, "active to a low port");
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Answers.

    fn answer(&mut self, a: Answer) {
        let Some(owed) = self.owed.take() else {
            return;
        };
        trace!("   answer {a:?} to {owed:?}");
        match owed {
            Owed::Auth => {
                let result = match a {
                    Answer::Ok { .. } => Ok(User::new("bob")),
                    Answer::OkReadOnly { .. } => Ok(User::new("ro").read_only(true)),
                    Answer::Fail(Failure::AuthUnavailable) => Err(AuthError::Unavailable),
                    Answer::Fail(_) => Err(AuthError::BadCredentials),
                    Answer::Odd(..) => Ok(User::new("x\ny\r\n211 End\n")),
                };
                self.call(Call::Answer, |s| s.login_done(result));
            }
            Owed::Fs(req) => {
                let outcome = match a {
                    Answer::Ok { .. } | Answer::OkReadOnly { .. } => self.run_fs(&req),
                    Answer::Fail(f) => FsOutcome::Failed(f.kind()),
                    // The wrong kind of outcome: an engine bug the session must survive.
                    Answer::Odd(_, n) => match (&req, n % 3) {
                        (FsRequest::Metadata(_), 0) => FsOutcome::Done,
                        (FsRequest::Metadata(_), _) => FsOutcome::Listing(Vec::new()),
                        (_, 0) => FsOutcome::Metadata(Metadata::new(FileKind::Dir, 0)),
                        _ => self.run_fs(&req),
                    },
                };
                let now = self.now;
                self.fs.check();
                self.call(Call::Answer, |s| s.fs_done(outcome, now));
            }
            Owed::Passive => match a {
                Answer::Ok { port, .. } | Answer::OkReadOnly { port, .. } => {
                    let addr = SocketAddr::new(self.local.ip(), port.max(1));
                    self.listener = true;
                    self.call(Call::Answer, |s| s.passive_opened(addr));
                }
                Answer::Odd(ip, port) => {
                    let addr = SocketAddr::new(ip.ip(), port.max(1));
                    self.listener = true;
                    self.call(Call::Answer, |s| s.passive_opened(addr));
                }
                Answer::Fail(_) => {
                    self.call(Call::Answer, |s| s.passive_failed());
                }
            },
            Owed::Transfer(mut r) => {
                if !r.started {
                    match a {
                        Answer::Ok { .. } | Answer::OkReadOnly { .. } => match self.open(&mut r) {
                            Ok((name, size)) => self.start(r, &name, size),
                            Err(kind) => self.done(TransferOutcome::OpenFailed(kind)),
                        },
                        Answer::Fail(f) => self.done(f.outcome(false)),
                        Answer::Odd(_, n) => {
                            let name = b"x\r\n226 fake\ny\n".to_vec();
                            self.start(r, &name, Some(u64::from(n)));
                        }
                    }
                } else {
                    match a {
                        Answer::Ok { bytes, .. } | Answer::OkReadOnly { bytes, .. } => {
                            if let Some((path, mode)) = &r.target {
                                let now = self.now;
                                self.fs.write_done(path, *mode, bytes.into(), now);
                            }
                            self.done(TransferOutcome::Completed { bytes: bytes.into() })
                        }
                        Answer::Fail(f) => self.done(f.outcome(true)),
                        Answer::Odd(_, n) => self.done(TransferOutcome::Completed { bytes: u64::from(n) }),
                    }
                }
            }
        }
    }

    fn start(&mut self, r: Running, name: &[u8], size: Option<u64>) {
        let mut r = r;
        r.started = true;
        self.owed = Some(Owed::Transfer(r));
        self.call(Call::Started, |s| s.transfer_started(name, size));
    }

    fn done(&mut self, outcome: TransferOutcome) {
        trace!("   done {outcome:?}");
        self.owed = None;
        self.call(Call::Done, |s| s.transfer_done(outcome));
    }

    /// `Control::abort_transfer`, called while draining the ABOR's actions.
    fn abort_now(&mut self) {
        let Some(Owed::Transfer(r)) = self.owed.take() else {
            panic!("Abort without a transfer: {:?}", self.owed);
        };
        let how = self.aborts.get(self.abort_index).copied().unwrap_or(AbortWith::Aborted);
        self.abort_index += 1;
        let (start, outcome) = match how {
            AbortWith::Aborted => (false, TransferOutcome::Aborted),
            AbortWith::AlreadyDone(f) => (false, f.outcome(r.started)),
            AbortWith::AlreadyCompleted(b) => (false, TransferOutcome::Completed { bytes: b.into() }),
            AbortWith::StartedThenAborted => (true, TransferOutcome::Aborted),
            AbortWith::StartedThenCompleted(b) => (true, TransferOutcome::Completed { bytes: b.into() }),
        };
        let name = r.t.file_name().to_vec();
        if start && !r.started {
            self.owed = Some(Owed::Transfer(Running { started: true, ..r }));
            self.session.transfer_started(&name, None);
        }
        self.owed = None;
        self.session.transfer_done(outcome);
        // The replies are drained by the caller's loop.
    }

    /// Opens the storage side of a transfer, as `datapath::open_storage` does.
    fn open(&mut self, r: &mut Running) -> Result<(Vec<u8>, Option<u64>), ErrorKind> {
        let t = &r.t;
        let name = t.file_name().to_vec();
        match t.kind {
            TransferKind::Retr => Ok((name, Some(self.fs.open_read(&t.path)?))),
            TransferKind::Stor | TransferKind::Appe => {
                let mode = match (t.kind, t.offset) {
                    (TransferKind::Appe, _) => Write::Append,
                    (_, 0) => Write::Truncate,
                    (_, o) => Write::Resume(o),
                };
                self.fs.open_write(&t.path, mode)?;
                r.target = Some((t.path.clone(), mode));
                Ok((name, None))
            }
            TransferKind::Stou => {
                for i in 0..100u32 {
                    let mut candidate = t.path.clone();
                    if i > 0 {
                        candidate.extend_from_slice(format!(".{i}").as_bytes());
                    }
                    match self.fs.open_write(&candidate, Write::CreateNew) {
                        Ok(()) => {
                            let name = ringftp::proto::path::file_name(&candidate).to_vec();
                            r.target = Some((candidate, Write::CreateNew));
                            return Ok((name, None));
                        }
                        Err(ErrorKind::AlreadyExists) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(ErrorKind::AlreadyExists)
            }
            _ => {
                let meta = self.fs.metadata(&t.path)?;
                let entries = if meta.is_dir() {
                    self.fs.list(&t.path)?
                } else if t.kind == TransferKind::Mlsd {
                    return Err(ErrorKind::NotADirectory);
                } else {
                    vec![DirEntry { name: name.clone(), metadata: meta }]
                };
                check_listing(t.kind, &entries, self.now, t.writable);
                Ok((Vec::new(), None))
            }
        }
    }

    /// `Control::run_fs`, against the in-memory storage.
    fn run_fs(&mut self, req: &FsRequest) -> FsOutcome {
        let now = self.now;
        let result = match req {
            FsRequest::Metadata(p) => self.fs.metadata(p).map(FsOutcome::Metadata),
            FsRequest::List(p) => self.fs.list(p).map(|entries| {
                check_listing(TransferKind::List, &entries, now, true);
                FsOutcome::Listing(entries)
            }),
            FsRequest::MakeDir(p) => self.fs.make_dir(p, now).map(|()| FsOutcome::Done),
            FsRequest::RemoveDir(p) => self.fs.remove_dir(p).map(|()| FsOutcome::Done),
            FsRequest::RemoveFile(p) => self.fs.remove_file(p).map(|()| FsOutcome::Done),
            FsRequest::Rename { from, to } => self.fs.rename(from, to).map(|()| FsOutcome::Done),
            other => panic!("unknown request {other:?}"),
        };
        self.fs.check();
        result.unwrap_or_else(FsOutcome::Failed)
    }

    // -----------------------------------------------------------------------------------------
    // Stray answers and the end.

    fn stray(&mut self, kind: StrayKind, a: Answer, quiet: bool) {
        let matches_owed = matches!(
            (kind, &self.owed),
            (StrayKind::Login, Some(Owed::Auth))
                | (StrayKind::Fs, Some(Owed::Fs(_)))
                | (StrayKind::PassiveOpened | StrayKind::PassiveFailed, Some(Owed::Passive))
                | (StrayKind::Started | StrayKind::Done, Some(Owed::Transfer(_)))
        );
        if matches_owed {
            return;
        }
        let call = if self.closed { Call::AfterClose } else { Call::Stray };
        let now = self.now;
        if !quiet {
            trace!("   stray {kind:?} {a:?}");
        }
        match kind {
            StrayKind::Login => {
                self.call(call, |s| s.login_done(Ok(User::new("mallory"))));
            }
            StrayKind::Fs => {
                self.call(call, |s| s.fs_done(FsOutcome::Done, now));
            }
            StrayKind::PassiveOpened => {
                let addr = SocketAddr::new(self.local.ip(), 2000);
                self.call(call, |s| s.passive_opened(addr));
            }
            StrayKind::PassiveFailed => {
                self.call(call, |s| s.passive_failed());
            }
            StrayKind::Started => {
                self.call(call, |s| s.transfer_started(b"stray", Some(1)));
            }
            StrayKind::Done => {
                let outcome = match a {
                    Answer::Fail(f) => f.outcome(true),
                    _ => TransferOutcome::Completed { bytes: 1 },
                };
                self.call(call, |s| s.transfer_done(outcome));
            }
        }
    }

    fn after_close_answer(&mut self, a: Answer) {
        let now = self.now;
        self.call(Call::AfterClose, |s| {
            s.login_done(Ok(User::new("late")));
            s.fs_done(FsOutcome::Done, now);
            s.passive_opened(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2000));
            s.passive_failed();
            s.transfer_started(b"late", None);
            s.transfer_done(match a {
                Answer::Fail(f) => f.outcome(true),
                _ => TransferOutcome::Completed { bytes: 0 },
            });
            s.handle_command(Command::Noop);
            s.handle_parse_error(ParseError::Empty);
        });
    }

    /// Invariant 11: answer everything until nothing is owed and no line is left.
    pub fn finish(&mut self) {
        for _ in 0..100_000 {
            if self.closed || self.owed.is_none() {
                break;
            }
            self.answer(Answer::Ok { port: 50000, bytes: 10 });
            self.process_lines();
            self.check_counts();
        }
        if !self.closed {
            assert!(self.owed.is_none(), "still owed after answering everything");
            assert!(self.deferred.is_empty(), "kept lines never fed");
            assert!(self.next_line().is_none(), "buffered lines never fed");
        }
        self.check_counts();
    }
}

// ---------------------------------------------------------------------------------------------
// Readable scripts, for the seed corpus.

/// The prefix that marks a readable transcript (see [`Script::from_text`]).
pub const TEXT_MAGIC: &[u8] = b"FTP\n";

impl Default for Config {
    fn default() -> Self {
        Config {
            max_line: 511,
            max_login_failures: 3,
            allow_foreign_active: false,
            peer: AddrChoice::V4Loopback,
            local: AddrChoice::V4Loopback,
            now_days: 2200,
            times: vec![TimeChoice::Ago(3600), TimeChoice::Ago(86_400 * 400)],
            sizes: Vec::new(),
            aborts: Vec::new(),
            prelude: Prelude::Nothing,
        }
    }
}

fn addr_choice(word: &[u8]) -> AddrChoice {
    match word {
        b"v6" => AddrChoice::V6Loopback,
        b"mapped" => AddrChoice::V4Mapped,
        b"other" => AddrChoice::V4Other,
        b"v6other" => AddrChoice::V6Other,
        _ => AddrChoice::V4Loopback,
    }
}

fn kind_named(word: Option<&[u8]>) -> Kind {
    match word.unwrap_or_default() {
        b"perm" => Kind::PermissionDenied,
        b"exists" => Kind::AlreadyExists,
        b"notdir" => Kind::NotADirectory,
        b"isdir" => Kind::IsADirectory,
        b"notempty" => Kind::DirectoryNotEmpty,
        b"name" => Kind::InvalidName,
        b"full" => Kind::InsufficientStorage,
        b"quota" => Kind::QuotaExceeded,
        b"busy" => Kind::Unavailable,
        b"local" => Kind::Local,
        _ => Kind::NotFound,
    }
}

fn number<T: std::str::FromStr>(word: Option<&[u8]>, default: T) -> T {
    word.and_then(|w| std::str::from_utf8(w).ok()).and_then(|w| w.parse().ok()).unwrap_or(default)
}

impl Script {
    /// Decodes fuzz input: a readable transcript after [`TEXT_MAGIC`], anything else
    /// through `arbitrary`.
    pub fn decode(data: &[u8]) -> Option<Script> {
        if let Some(text) = data.strip_prefix(TEXT_MAGIC) {
            return Some(Script::from_text(text));
        }
        Script::arbitrary_take_rest(arbitrary::Unstructured::new(data)).ok()
    }

    /// A transcript: every line is sent as it is (with its line end, CRLF or LF), except
    /// lines starting with `!`, which are directives:
    ///
    /// - `!ok [port] [bytes]`: answer what the session waits for (login as a read-write user,
    ///   run the storage request, open the passive port, start / complete the transfer);
    /// - `!ro`: like `!ok`, but a login is read-only;
    /// - `!fail [notfound|perm|exists|notdir|isdir|notempty|name|full|quota|busy|local|nodata|lost|midway]`;
    /// - `!odd`: the unusual answer (see [`Answer::Odd`]);
    /// - `!stray login|fs|opened|failed|started|done`: an answer nobody asked for;
    /// - `!shutdown`;
    /// - before the first line only: `!max N`, `!failures N`, `!peer v4|v6|mapped|other`,
    ///   `!local ...`, `!foreign`, `!login` (start logged in), `!abort aborted|completed|started|startedcompleted|lost`
    ///   (one per ABOR, in order).
    pub fn from_text(text: &[u8]) -> Script {
        let mut config = Config::default();
        let mut steps = Vec::new();
        for line in text.split_inclusive(|&b| b == b'\n') {
            let bare = line.strip_suffix(b"\n").unwrap_or(line);
            let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
            let Some(directive) = bare.strip_prefix(b"!") else {
                steps.push(Step::Input(line.to_vec()));
                continue;
            };
            let mut words = directive.split(|&b| b == b' ').filter(|w| !w.is_empty());
            let word = words.next().unwrap_or_default();
            let arg = words.next();
            let arg2 = words.next();
            let step = match word {
                b"ok" => Step::Answer(Answer::Ok { port: number(arg, 50000), bytes: number(arg2, 1000) }),
                b"ro" => Step::Answer(Answer::OkReadOnly { port: 50000, bytes: 1000 }),
                b"fail" => Step::Answer(Answer::Fail(match arg.unwrap_or_default() {
                    b"nodata" => Failure::NoData,
                    b"lost" => Failure::Lost,
                    b"midway" => Failure::Midway(kind_named(arg2)),
                    b"unavailable" => Failure::AuthUnavailable,
                    _ => Failure::Storage(kind_named(arg)),
                })),
                b"odd" => Step::Answer(Answer::Odd(AddrChoice::V6Loopback, 1)),
                b"stray" => Step::Stray(
                    match arg.unwrap_or_default() {
                        b"login" => StrayKind::Login,
                        b"fs" => StrayKind::Fs,
                        b"opened" => StrayKind::PassiveOpened,
                        b"failed" => StrayKind::PassiveFailed,
                        b"started" => StrayKind::Started,
                        _ => StrayKind::Done,
                    },
                    Answer::Ok { port: 50000, bytes: 1 },
                ),
                b"shutdown" => Step::Shutdown,
                _ if !steps.is_empty() => Step::Input(line.to_vec()),
                b"max" => {
                    config.max_line = number::<u16>(arg, 512).saturating_sub(1);
                    continue;
                }
                b"failures" => {
                    config.max_login_failures = number(arg, 3);
                    continue;
                }
                b"peer" => {
                    config.peer = addr_choice(arg.unwrap_or_default());
                    continue;
                }
                b"local" => {
                    config.local = addr_choice(arg.unwrap_or_default());
                    continue;
                }
                b"login" => {
                    config.prelude = Prelude::Login;
                    continue;
                }
                b"foreign" => {
                    config.allow_foreign_active = true;
                    continue;
                }
                b"abort" => {
                    config.aborts.push(match arg.unwrap_or_default() {
                        b"completed" => AbortWith::AlreadyCompleted(100),
                        b"started" => AbortWith::StartedThenAborted,
                        b"startedcompleted" => AbortWith::StartedThenCompleted(100),
                        b"lost" => AbortWith::AlreadyDone(Failure::Lost),
                        _ => AbortWith::Aborted,
                    });
                    continue;
                }
                _ => Step::Input(line.to_vec()),
            };
            steps.push(step);
        }
        Script { config, steps }
    }
}
