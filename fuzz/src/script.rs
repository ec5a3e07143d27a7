//! What the session target's input decodes into: a [`Script`] of client bytes, clock moves
//! and answers, either through `arbitrary` or from a readable transcript (`FTP\n` first, see
//! [`Script::from_text`]; the seed corpus is written that way).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
use ringftp::proto::address;
use ringftp::session::{FsOutcome, SessionConfig, TransferOutcome};
use ringftp::storage::{ErrorKind, FileKind, Metadata, UploadPolicy};
use ringftp::{AuthError, Permissions, User};

/// What the fuzzer generates.
#[derive(Arbitrary, Debug, Default)]
pub struct Script {
    pub config: Config,
    pub steps: Vec<Step>,
}

/// The session's settings.
#[derive(Arbitrary, Debug)]
pub struct Config {
    /// The line limit is 1 + this % 1024.
    pub max_line: u16,
    /// Failed logins before 421: this % 5.
    pub max_login_failures: u8,
    /// Commands kept during a transfer: 1 + this % 16.
    pub max_deferred: u8,
    /// Login, idle, data and stall timeouts in seconds (1 + each), and the login failure
    /// delay in tens of milliseconds.
    pub timeouts: [u8; 5],
    pub foreign: bool,
    pub atomic: bool,
    pub peer: AddrChoice,
    pub local: AddrChoice,
    /// The wall clock listings are formatted against: 2020-01-01 plus this many days.
    pub wall_days: u16,
    /// Steps run before the script's, so it can start deep in a session.
    pub login: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_line: 511,
            max_login_failures: 3,
            max_deferred: 15,
            timeouts: [59, 255, 29, 255, 25],
            foreign: false,
            atomic: false,
            peer: AddrChoice::V4Loopback,
            local: AddrChoice::V4Loopback,
            wall_days: 2200,
            login: false,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
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

/// One step of the script.
#[derive(Arbitrary, Debug)]
pub enum Step {
    /// Bytes from the client, as received (Telnet, bare CR, anything).
    Bytes(Vec<u8>),
    /// One command line, fed in chunks of 1 + `chunk` % 8 bytes (`chunk` 0: at once).
    Line { verb: u8, arg: Arg, end: Ending, chunk: u8 },
    /// The clock moves this many 20 ms on; the due timers fire.
    Wait(u16),
    /// The clock moves to the next deadline plus this many milliseconds (less if negative).
    Deadline(i8),
    /// `handle_timeout` now, due or not.
    Early,
    /// Answer what the session waits for, if anything.
    Answer(Answer),
    /// The running transfer moved this many more bytes.
    Progress(u16),
    /// Call an answer method of a kind the session does not wait for.
    Stray(Stray),
    /// The server shuts the session down.
    Shutdown,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Ending {
    CrLf,
    Lf,
    CrCrLf,
    /// A Telnet IP and DM before CRLF, as some clients send with ABOR.
    TelnetCrLf,
    /// No line end: the next bytes continue the line.
    None,
}

impl Ending {
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Ending::CrLf => b"\r\n",
            Ending::Lf => b"\n",
            Ending::CrCrLf => b"\r\r\n",
            Ending::TelnetCrLf => b"\xff\xf4\xff\xf2\r\n",
            Ending::None => b"",
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stray {
    Login,
    Fs,
    Opened,
    Failed,
    Started,
    Done,
}

const V4_ELSEWHERE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50000);
const V6_ELSEWHERE: SocketAddr = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 50000);

/// How to answer.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Answer {
    /// Auth: a read-write user. Storage: run it. Passive: opened on this port. Transfer:
    /// the next natural event (connected, then completed with this many bytes). Abort: done.
    Ok(u32),
    /// Auth: a read-only user. Otherwise as `Ok`.
    ReadOnly,
    /// Auth: refused. Storage: fails. Passive: no port. Transfer: fails.
    Fail(Failure),
    /// Something unusual but possible: a user without permissions, an outcome of the wrong
    /// kind, a passive address of the other family, an unasked abort or a second start.
    Odd(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Failure {
    Storage(u8),
    NoData,
    Lost,
    Midway(u8),
    Unavailable,
    TooManySessions,
}

pub const ERRORS: &[ErrorKind] = &[
    ErrorKind::NotFound,
    ErrorKind::PermissionDenied,
    ErrorKind::AlreadyExists,
    ErrorKind::NotADirectory,
    ErrorKind::IsADirectory,
    ErrorKind::DirectoryNotEmpty,
    ErrorKind::InvalidName,
    ErrorKind::InsufficientStorage,
    ErrorKind::QuotaExceeded,
    ErrorKind::Unavailable,
    ErrorKind::Local,
];

impl Failure {
    pub fn kind(self) -> ErrorKind {
        match self {
            Failure::Storage(k) | Failure::Midway(k) => ERRORS[k as usize % ERRORS.len()],
            _ => ErrorKind::Local,
        }
    }
}

/// Every verb the parser knows, plus a few it does not.
pub const VERBS: &[&[u8]] = &[
    b"USER", b"PASS", b"ACCT", b"QUIT", b"REIN", b"NOOP", b"SYST", b"FEAT", b"OPTS", b"HELP", b"STAT",
    b"SITE", b"TYPE", b"MODE", b"STRU", b"PWD", b"XPWD", b"CWD", b"XCWD", b"CDUP", b"XCUP", b"MKD", b"XMKD",
    b"RMD", b"XRMD", b"DELE", b"RNFR", b"RNTO", b"SIZE", b"MDTM", b"REST", b"PORT", b"EPRT", b"PASV",
    b"EPSV", b"LIST", b"NLST", b"MLSD", b"MLST", b"RETR", b"STOR", b"STOU", b"APPE", b"ALLO", b"ABOR",
    b"SMNT", b"user", b"retr", b"Stor", b"abor", b"epsv", b"XYZZY", b"",
];

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
    b"MLST type;size;modify;perm;",
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

impl Step {
    /// The bytes of a [`Step::Line`].
    pub fn line(verb: u8, arg: &Arg, end: Ending) -> Vec<u8> {
        let verb = VERBS[verb as usize % VERBS.len()];
        let mut out = verb.to_vec();
        match arg {
            Arg::None => {}
            Arg::Name(i) => {
                out.push(b' ');
                out.extend_from_slice(NAMES[*i as usize % NAMES.len()]);
            }
            Arg::Bytes(b) => {
                out.push(b' ');
                out.extend_from_slice(b);
            }
            Arg::Number(n) => out.extend_from_slice(format!(" {n}").as_bytes()),
            Arg::Data(a, port) => {
                let text = match (verb, a.ip()) {
                    (b"PORT", IpAddr::V4(ip)) => address::format_port(SocketAddrV4::new(ip, *port)),
                    _ => address::format_eprt(SocketAddr::new(a.ip(), *port)),
                };
                out.push(b' ');
                out.extend_from_slice(text.as_bytes());
            }
        }
        out.extend_from_slice(end.bytes());
        out
    }
}

// ---- readable scripts ----

/// The prefix that marks a readable transcript (see [`Script::from_text`]).
pub const TEXT_MAGIC: &[u8] = b"FTP\n";

fn addr_choice(word: Option<&[u8]>) -> AddrChoice {
    match word.unwrap_or_default() {
        b"v6" => AddrChoice::V6Loopback,
        b"mapped" => AddrChoice::V4Mapped,
        b"other" => AddrChoice::V4Other,
        b"v6other" => AddrChoice::V6Other,
        _ => AddrChoice::V4Loopback,
    }
}

fn error_named(word: Option<&[u8]>) -> u8 {
    let names: [&[u8]; 11] = [
        b"notfound",
        b"perm",
        b"exists",
        b"notdir",
        b"isdir",
        b"notempty",
        b"name",
        b"full",
        b"quota",
        b"busy",
        b"local",
    ];
    names.iter().position(|n| Some(*n) == word).unwrap_or(0) as u8
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
    /// - `!ok [N]...`: answer what the session waits for (login read-write, run the storage
    ///   request, passive port N, transfer connected / completed with N bytes, abort done);
    /// - `!ro`: like `!ok`, but a login is read-only;
    /// - `!fail [notfound|perm|exists|notdir|isdir|notempty|name|full|quota|busy|local|nodata|lost|midway KIND|unavailable|toomany]`;
    /// - `!odd [N]`: the unusual answer (see [`Answer::Odd`]);
    /// - `!stray login|fs|opened|failed|started|done`: an answer nobody asked for;
    /// - `!wait SECONDS`, `!deadline [MS]`, `!early`, `!progress N`, `!shutdown`;
    /// - before the first line only: `!max N`, `!failures N`, `!deferred N`, `!peer v4|v6|mapped|other|v6other`,
    ///   `!local ...`, `!foreign`, `!atomic`, `!login` (start logged in), `!timeouts LOGIN IDLE DATA STALL`.
    pub fn from_text(text: &[u8]) -> Script {
        let mut s = Script::default();
        let c = &mut s.config;
        for line in text.split_inclusive(|&b| b == b'\n') {
            let bare = line.strip_suffix(b"\n").unwrap_or(line);
            let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
            let Some(directive) = bare.strip_prefix(b"!") else {
                // Client lines in a row are one chunk: nothing happens between them anyway,
                // and one allocation per line would slow the fuzzer down.
                match s.steps.last_mut() {
                    Some(Step::Bytes(b)) => b.extend_from_slice(line),
                    _ => s.steps.push(Step::Bytes(line.to_vec())),
                }
                continue;
            };
            let mut words = directive.split(|&b| b == b' ').filter(|w| !w.is_empty());
            let (word, arg, arg2) = (words.next(), words.next(), words.next());
            let last = words.next_back().or(arg2).or(arg);
            let step = match word.unwrap_or_default() {
                b"ok" => Step::Answer(Answer::Ok(number(last, 50000))),
                b"ro" => Step::Answer(Answer::ReadOnly),
                b"fail" => Step::Answer(Answer::Fail(match arg.unwrap_or_default() {
                    b"nodata" => Failure::NoData,
                    b"lost" => Failure::Lost,
                    b"midway" => Failure::Midway(error_named(arg2)),
                    b"unavailable" => Failure::Unavailable,
                    b"toomany" => Failure::TooManySessions,
                    _ => Failure::Storage(error_named(arg)),
                })),
                b"odd" => Step::Answer(Answer::Odd(number(arg, 1))),
                b"stray" => Step::Stray(match arg.unwrap_or_default() {
                    b"login" => Stray::Login,
                    b"fs" => Stray::Fs,
                    b"opened" => Stray::Opened,
                    b"failed" => Stray::Failed,
                    b"started" => Stray::Started,
                    _ => Stray::Done,
                }),
                b"wait" => Step::Wait(number::<u16>(arg, 1).saturating_mul(50)),
                b"deadline" => Step::Deadline(number(arg, 0)),
                b"early" => Step::Early,
                b"progress" => Step::Progress(number(arg, 1)),
                b"shutdown" => Step::Shutdown,
                _ if !s.steps.is_empty() => Step::Bytes(line.to_vec()),
                b"max" => {
                    c.max_line = number::<u16>(arg, 512).saturating_sub(1);
                    continue;
                }
                b"failures" => {
                    c.max_login_failures = number(arg, 3);
                    continue;
                }
                b"deferred" => {
                    c.max_deferred = number::<u8>(arg, 16).saturating_sub(1);
                    continue;
                }
                b"timeouts" => {
                    let words = directive.split(|&b| b == b' ').filter(|w| !w.is_empty()).skip(1);
                    for (t, w) in c.timeouts.iter_mut().zip(words) {
                        *t = number::<u8>(Some(w), 1).saturating_sub(1);
                    }
                    continue;
                }
                b"peer" => {
                    c.peer = addr_choice(arg);
                    continue;
                }
                b"local" => {
                    c.local = addr_choice(arg);
                    continue;
                }
                b"foreign" | b"atomic" | b"login" => {
                    match word.unwrap_or_default() {
                        b"foreign" => c.foreign = true,
                        b"atomic" => c.atomic = true,
                        _ => c.login = true,
                    }
                    continue;
                }
                // `!abort ...` of the old format: aborts are answered like anything else now.
                _ => continue,
            };
            s.steps.push(step);
        }
        s
    }
}

// ---- what a script means ----

impl Config {
    pub fn session(&self) -> SessionConfig {
        let t = |i: usize| Duration::from_secs(1 + u64::from(self.timeouts[i]));
        let mut config = SessionConfig::default();
        config.max_line = 1 + usize::from(self.max_line) % 1024;
        config.max_login_failures = u32::from(self.max_login_failures % 5);
        config.max_deferred = 1 + usize::from(self.max_deferred) % 16;
        config.dangerous_allow_foreign_active = self.foreign;
        config.uploads = if self.atomic { UploadPolicy::Atomic } else { UploadPolicy::Keep };
        (config.login_timeout, config.idle_timeout, config.data_timeout, config.stall_timeout) =
            (t(0), t(1), t(2), t(3));
        config.login_failure_delay = Duration::from_millis(10 * u64::from(self.timeouts[4]));
        config
    }

    pub fn wall(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_577_836_800 + 86_400 * u64::from(self.wall_days))
    }
}

impl Answer {
    /// The authenticator's answer.
    pub fn auth(self) -> Result<User, AuthError> {
        match self {
            Answer::Ok(_) => Ok(User::new("bob")),
            Answer::ReadOnly => Ok(User::new("anonymous").read_only(true)),
            Answer::Odd(_) => Ok(User::new("odd\r\n530 x").permissions(Permissions::NONE)),
            Answer::Fail(Failure::Unavailable) => Err(AuthError::Unavailable),
            Answer::Fail(Failure::TooManySessions) => Err(AuthError::TooManySessions),
            Answer::Fail(_) => Err(AuthError::BadCredentials),
        }
    }

    /// The address a passive listener is announced on (`None`: no port), for a control
    /// connection on `local`.
    pub fn passive(self, local: SocketAddr) -> Option<SocketAddr> {
        match self {
            Answer::Ok(port) => Some(SocketAddr::new(local.ip(), port as u16)),
            Answer::ReadOnly => Some(local),
            // The other family.
            Answer::Odd(_) => Some(if local.is_ipv4() { V6_ELSEWHERE } else { V4_ELSEWHERE }),
            Answer::Fail(_) => None,
        }
    }

    /// A storage answer that is not the storage's: a failure, or one of the wrong kind.
    pub fn fs_outcome(self) -> FsOutcome {
        match self {
            Answer::Fail(f) => FsOutcome::Failed(f.kind()),
            Answer::Odd(n) => match n % 4 {
                0 => FsOutcome::Done,
                1 => FsOutcome::Metadata(Metadata::new(FileKind::Symlink, u64::MAX)),
                2 => FsOutcome::Listing(Vec::new()),
                _ => FsOutcome::Opened { size: None },
            },
            _ => FsOutcome::Done,
        }
    }

    /// How the running transfer ends; `None`: it starts (the data connection is made).
    pub fn transfer_outcome(self, started: bool, abort: bool, moved: u64) -> Option<TransferOutcome> {
        Some(match (self, abort, started) {
            (Answer::Ok(_) | Answer::ReadOnly, false, false) => return None,
            (Answer::Odd(n), false, _) if n % 2 == 0 => return None,
            (Answer::Ok(_) | Answer::ReadOnly, true, _) => TransferOutcome::Aborted,
            (Answer::Ok(bytes), false, true) => TransferOutcome::Completed { bytes: bytes.into() },
            (Answer::ReadOnly, false, true) | (Answer::Odd(_), true, _) => {
                TransferOutcome::Completed { bytes: moved }
            }
            // Aborted with no Abort asked for.
            (Answer::Odd(_), false, _) => TransferOutcome::Aborted,
            (Answer::Fail(f), _, _) => match (f, started) {
                (Failure::Storage(_), false) => TransferOutcome::OpenFailed(f.kind()),
                (Failure::NoData | Failure::Lost, false) => TransferOutcome::NoDataConnection,
                (Failure::NoData | Failure::Lost, true) => TransferOutcome::ConnectionLost,
                _ => TransferOutcome::StorageFailed(f.kind()),
            },
        })
    }
}
