//! Command parsing (RFC 959 §4.1, §5.3; RFC 2389 FEAT/OPTS; RFC 2428 EPRT/EPSV; RFC 3659
//! SIZE/MDTM/REST/MLST/MLSD; RFC 4217 AUTH/PBSZ/PROT/CCC).
//!
//! [`parse`] takes one line without its line end and borrows every argument from it, so
//! parsing never allocates. Verbs are case-insensitive; arguments stay bytes because path
//! names need not be UTF-8. An error is a small `Copy` value that knows its reply.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::SystemTime;

use super::address::{self, AddressError};
use super::reply::{code, Reply};
use crate::types::HashAlgo;

/// A parsed command. Path arguments are raw bytes, resolved later by the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command<'a> {
    /// USER name.
    User(&'a [u8]),
    /// PASS password (may be empty).
    Pass(&'a [u8]),
    /// ACCT account information.
    Acct(&'a [u8]),
    /// QUIT: close after the reply.
    Quit,
    /// REIN: log out, keep the connection.
    Rein,
    /// NOOP.
    Noop,
    /// SYST: the system type.
    Syst,
    /// FEAT: list extensions (RFC 2389).
    Feat,
    /// OPTS command options (RFC 2389).
    Opts(&'a [u8]),
    /// HELP, optionally about one verb.
    Help(Option<&'a [u8]>),
    /// STAT: server status, or a listing of a path over the control connection.
    Stat(Option<&'a [u8]>),
    /// SITE subcommand.
    Site(&'a [u8]),
    /// TYPE A (ASCII, with line-end conversion) or TYPE I / L 8 (binary).
    Type(TransferType),
    /// MODE S (stream, the only mode supported).
    Mode,
    /// STRU F (file structure, the only one supported).
    Stru,
    /// PWD / XPWD.
    Pwd,
    /// CWD / XCWD path.
    Cwd(&'a [u8]),
    /// CDUP / XCUP.
    Cdup,
    /// MKD / XMKD path.
    Mkd(&'a [u8]),
    /// RMD / XRMD path.
    Rmd(&'a [u8]),
    /// DELE path.
    Dele(&'a [u8]),
    /// RNFR path.
    Rnfr(&'a [u8]),
    /// RNTO path.
    Rnto(&'a [u8]),
    /// SIZE path (RFC 3659 §4).
    Size(&'a [u8]),
    /// MDTM path (RFC 3659 §3).
    Mdtm(&'a [u8]),
    /// REST offset (RFC 3659 §5: stream-mode restart).
    Rest(u64),
    /// PORT h1,h2,h3,h4,p1,p2.
    Port(SocketAddrV4),
    /// EPRT |proto|address|port| (RFC 2428 §2).
    Eprt(SocketAddr),
    /// PASV.
    Pasv,
    /// EPSV, EPSV 1/2, or EPSV ALL (RFC 2428 §3).
    Epsv(EpsvArg),
    /// LIST, optionally of a path; `ls` options such as `-la` are kept for the session.
    List(Option<&'a [u8]>),
    /// NLST, optionally of a path.
    Nlst(Option<&'a [u8]>),
    /// MLSD, optionally of a path (RFC 3659 §7).
    Mlsd(Option<&'a [u8]>),
    /// MLST, optionally of a path (RFC 3659 §7).
    Mlst(Option<&'a [u8]>),
    /// RETR path.
    Retr(&'a [u8]),
    /// STOR path.
    Stor(&'a [u8]),
    /// STOU, optionally with a name to base the unique name on.
    Stou(Option<&'a [u8]>),
    /// APPE path.
    Appe(&'a [u8]),
    /// ALLO: accepted and ignored.
    Allo,
    /// ABOR: abort the running transfer.
    Abor,
    /// AUTH mechanism (RFC 4217 §4): `TLS`, `SSL` (curl tries it first), `TLS-C`...; the
    /// argument is kept as sent so the session decides which it accepts.
    Auth(&'a [u8]),
    /// PBSZ size (RFC 4217 §8): the protection buffer size; TLS allows only 0.
    Pbsz(u64),
    /// PROT level (RFC 4217 §9): the data channel protection level.
    Prot(ProtLevel),
    /// CCC (RFC 4217 §6): clear the control channel.
    Ccc,
    /// MFMT time path (draft-somers-ftp-mfxx §3): set the modification time (UTC).
    Mfmt {
        /// The new modification time.
        modified: SystemTime,
        /// The file.
        path: &'a [u8],
    },
    /// AVBL, optionally of a path (draft-peterson-streamlined-ftp-command-extensions §4):
    /// the bytes still available.
    Avbl(Option<&'a [u8]>),
    /// CLNT name: what the client program is (for logs).
    Clnt(&'a [u8]),
    /// HASH path (draft-bryan-ftpext-hash §3): the digest OPTS HASH chose.
    Hash(&'a [u8]),
    /// XCRC, XMD5, XSHA1, XSHA256 path: the legacy one-algorithm digest commands.
    XHash(HashAlgo, &'a [u8]),
}

/// The argument of PROT (RFC 4217 §9, after RFC 2228).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtLevel {
    /// `PROT C`: data in clear.
    Clear,
    /// `PROT S`: integrity only (TLS cannot give it; RFC 4217 says reply 536).
    Safe,
    /// `PROT E`: confidentiality only (as Safe: 536 under TLS).
    Confidential,
    /// `PROT P`: integrity and confidentiality: TLS on every data connection.
    Private,
}

/// The representation type of TYPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferType {
    /// `TYPE A [N]`: ASCII, lines end in CRLF on the wire.
    Ascii,
    /// TYPE I or TYPE L 8: bytes as they are.
    Binary,
}

/// The argument of EPSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpsvArg {
    /// No argument: the protocol of the control connection.
    Any,
    /// EPSV 1 (IPv4) or EPSV 2 (IPv6).
    Protocol(u8),
    /// EPSV ALL: from now on only EPSV is accepted for data connections.
    All,
}

/// Why a line is not a command the session can run; each kind is one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// An empty line (500).
    Empty,
    /// Not a verb this server knows (500).
    UnknownVerb,
    /// A verb this server knows but does not implement (502).
    NotImplemented,
    /// The verb needs an argument (501).
    MissingArgument,
    /// The argument is malformed (501).
    BadArgument,
    /// A parameter this server does not implement, e.g. TYPE E or MODE B (504).
    UnsupportedParameter,
    /// EPRT/EPSV with a network protocol other than 1 or 2 (522).
    UnsupportedProtocol,
    /// The line was longer than the limit and was discarded (500).
    LineTooLong,
}

impl ParseError {
    /// The reply for this error.
    pub fn reply(self) -> Reply {
        match self {
            ParseError::Empty => Reply::new(code::SYNTAX_ERROR, "Empty command"),
            ParseError::UnknownVerb => Reply::new(code::SYNTAX_ERROR, "Unknown command"),
            ParseError::NotImplemented => Reply::new(code::NOT_IMPLEMENTED, "Command not implemented"),
            ParseError::MissingArgument => Reply::new(code::SYNTAX_ERROR_ARGS, "Missing argument"),
            ParseError::BadArgument => Reply::new(code::SYNTAX_ERROR_ARGS, "Invalid argument"),
            ParseError::UnsupportedParameter => {
                Reply::new(code::PARAMETER_NOT_IMPLEMENTED, "Command not implemented for that parameter")
            }
            ParseError::UnsupportedProtocol => {
                Reply::new(code::UNSUPPORTED_PROTOCOL, "Network protocol not supported, use (1,2)")
            }
            ParseError::LineTooLong => Reply::new(code::SYNTAX_ERROR, "Command line too long"),
        }
    }
}

impl From<AddressError> for ParseError {
    fn from(err: AddressError) -> Self {
        match err {
            AddressError::UnsupportedProtocol => ParseError::UnsupportedProtocol,
            _ => ParseError::BadArgument,
        }
    }
}

/// Parses one command line (without CRLF).
pub fn parse(line: &[u8]) -> Result<Command<'_>, ParseError> {
    // Some clients put spaces before the verb; RFC 959 does not, but accepting is harmless.
    let line = trim_start(line);
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    let (verb, arg) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (line.get(..i).unwrap_or_default(), line.get(i + 1..)),
        None => (line, None),
    };
    // Verbs are 3 to 7 letters (XSHA256); uppercase into a fixed array so matching needs no
    // allocation.
    if verb.len() > 7 {
        return Err(ParseError::UnknownVerb);
    }
    let mut upper = [0u8; 7];
    for (dst, src) in upper.iter_mut().zip(verb) {
        *dst = src.to_ascii_uppercase();
    }
    let verb = upper.get(..verb.len()).unwrap_or_default();
    // An argument that is empty or only spaces counts as absent.
    let arg = arg.filter(|a| a.iter().any(|&b| b != b' '));
    let required = || arg.ok_or(ParseError::MissingArgument);

    Ok(match verb {
        b"USER" => Command::User(required()?),
        b"PASS" => Command::Pass(arg.unwrap_or_default()),
        b"ACCT" => Command::Acct(required()?),
        b"QUIT" => Command::Quit,
        b"REIN" => Command::Rein,
        b"NOOP" => Command::Noop,
        b"SYST" => Command::Syst,
        b"FEAT" => Command::Feat,
        b"OPTS" => Command::Opts(required()?),
        b"HELP" => Command::Help(arg),
        b"STAT" => Command::Stat(arg),
        b"SITE" => Command::Site(required()?),
        b"TYPE" => Command::Type(parse_type(required()?)?),
        b"MODE" => match trim(required()?) {
            [b'S' | b's'] => Command::Mode,
            [b'B' | b'b' | b'C' | b'c' | b'Z' | b'z'] => return Err(ParseError::UnsupportedParameter),
            _ => return Err(ParseError::BadArgument),
        },
        b"STRU" => match trim(required()?) {
            [b'F' | b'f'] => Command::Stru,
            [b'R' | b'r' | b'P' | b'p'] => return Err(ParseError::UnsupportedParameter),
            _ => return Err(ParseError::BadArgument),
        },
        b"PWD" | b"XPWD" => Command::Pwd,
        b"CWD" | b"XCWD" => Command::Cwd(required()?),
        b"CDUP" | b"XCUP" => Command::Cdup,
        b"MKD" | b"XMKD" => Command::Mkd(required()?),
        b"RMD" | b"XRMD" => Command::Rmd(required()?),
        b"DELE" => Command::Dele(required()?),
        b"RNFR" => Command::Rnfr(required()?),
        b"RNTO" => Command::Rnto(required()?),
        b"SIZE" => Command::Size(required()?),
        b"MDTM" => Command::Mdtm(required()?),
        b"REST" => Command::Rest(parse_u64(trim(required()?)).ok_or(ParseError::BadArgument)?),
        b"PORT" => Command::Port(address::parse_port(required()?)?),
        b"EPRT" => Command::Eprt(address::parse_eprt(required()?)?),
        b"PASV" => Command::Pasv,
        b"EPSV" => Command::Epsv(match arg.map(trim) {
            None => EpsvArg::Any,
            Some(a) if a.eq_ignore_ascii_case(b"ALL") => EpsvArg::All,
            Some(b"1") => EpsvArg::Protocol(1),
            Some(b"2") => EpsvArg::Protocol(2),
            Some(a) if !a.is_empty() && a.iter().all(u8::is_ascii_digit) => {
                return Err(ParseError::UnsupportedProtocol)
            }
            Some(_) => return Err(ParseError::BadArgument),
        }),
        b"LIST" => Command::List(arg),
        b"NLST" => Command::Nlst(arg),
        b"MLSD" => Command::Mlsd(arg),
        b"MLST" => Command::Mlst(arg),
        b"RETR" => Command::Retr(required()?),
        b"STOR" => Command::Stor(required()?),
        b"STOU" => Command::Stou(arg),
        b"APPE" => Command::Appe(required()?),
        b"ALLO" => Command::Allo,
        b"ABOR" => Command::Abor,
        b"AUTH" => Command::Auth(trim(required()?)),
        b"PBSZ" => Command::Pbsz(parse_u64(trim(required()?)).ok_or(ParseError::BadArgument)?),
        b"PROT" => Command::Prot(match trim(required()?) {
            [b'C' | b'c'] => ProtLevel::Clear,
            [b'S' | b's'] => ProtLevel::Safe,
            [b'E' | b'e'] => ProtLevel::Confidential,
            [b'P' | b'p'] => ProtLevel::Private,
            // RFC 4217 §9: an unknown level is 504.
            _ => return Err(ParseError::UnsupportedParameter),
        }),
        b"CCC" => Command::Ccc,
        b"MFMT" => {
            let a = trim_start(required()?);
            let (time, path) = match a.iter().position(|&b| b == b' ') {
                Some(i) => (a.get(..i).unwrap_or_default(), a.get(i + 1..).unwrap_or_default()),
                None => return Err(ParseError::MissingArgument),
            };
            if path.iter().all(|&b| b == b' ') {
                return Err(ParseError::MissingArgument);
            }
            let modified = super::listing::parse_timeval(time).ok_or(ParseError::BadArgument)?;
            Command::Mfmt { modified, path }
        }
        b"AVBL" => Command::Avbl(arg),
        b"CLNT" => Command::Clnt(trim(required()?)),
        b"HASH" => Command::Hash(required()?),
        b"XCRC" => Command::XHash(HashAlgo::Crc32, required()?),
        b"XMD5" => Command::XHash(HashAlgo::Md5, required()?),
        b"XSHA1" => Command::XHash(HashAlgo::Sha1, required()?),
        b"XSHA256" => Command::XHash(HashAlgo::Sha256, required()?),
        b"SMNT" => return Err(ParseError::NotImplemented),
        _ => return Err(ParseError::UnknownVerb),
    })
}

fn parse_type(arg: &[u8]) -> Result<TransferType, ParseError> {
    let mut parts = arg.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let kind = parts.next().ok_or(ParseError::MissingArgument)?;
    let param = parts.next();
    if parts.next().is_some() {
        return Err(ParseError::BadArgument);
    }
    match (kind, param) {
        ([b'A' | b'a'], None | Some([b'N' | b'n'])) => Ok(TransferType::Ascii),
        ([b'A' | b'a'], Some([b'T' | b't' | b'C' | b'c'])) => Err(ParseError::UnsupportedParameter),
        ([b'I' | b'i'], None) => Ok(TransferType::Binary),
        ([b'L' | b'l'], Some(b"8")) => Ok(TransferType::Binary),
        ([b'L' | b'l'], Some(_)) | ([b'E' | b'e'], _) => Err(ParseError::UnsupportedParameter),
        _ => Err(ParseError::BadArgument),
    }
}

/// Parses a decimal u64 without sign or spaces; None on overflow.
pub(crate) fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if d.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ').count();
    s.get(n..).unwrap_or_default()
}

/// Strips spaces (not other bytes: a path may end in a tab) from both ends.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let s = trim_start(s);
    let n = s.iter().rev().take_while(|&&b| b == b' ').count();
    s.get(..s.len() - n).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn table() {
        let ok: &[(&[u8], Command)] = &[
            (b"USER bob", Command::User(b"bob")),
            (b"user bob", Command::User(b"bob")),
            (b"PASS", Command::Pass(b"")),
            (b"PASS  two  spaces ", Command::Pass(b" two  spaces ")),
            (b"  NOOP", Command::Noop),
            (b"XPWD", Command::Pwd),
            (b"TYPE I", Command::Type(TransferType::Binary)),
            (b"type a n", Command::Type(TransferType::Ascii)),
            (b"TYPE L 8", Command::Type(TransferType::Binary)),
            (b"MODE S", Command::Mode),
            (b"STRU F", Command::Stru),
            (b"RETR a file with spaces", Command::Retr(b"a file with spaces")),
            (b"RETR \xff\xfe", Command::Retr(b"\xff\xfe")),
            (b"REST 0", Command::Rest(0)),
            (b"REST 18446744073709551615", Command::Rest(u64::MAX)),
            (b"PORT 127,0,0,1,4,1", Command::Port(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1025))),
            (b"EPSV", Command::Epsv(EpsvArg::Any)),
            (b"EPSV all", Command::Epsv(EpsvArg::All)),
            (b"EPSV 2", Command::Epsv(EpsvArg::Protocol(2))),
            (b"LIST", Command::List(None)),
            (b"LIST ", Command::List(None)),
            (b"LIST -la", Command::List(Some(b"-la"))),
            (b"MLSD /x", Command::Mlsd(Some(b"/x"))),
            (b"STOU", Command::Stou(None)),
            (b"ALLO 1000", Command::Allo),
            (b"ABOR", Command::Abor),
            (b"OPTS UTF8 ON", Command::Opts(b"UTF8 ON")),
            (b"AUTH TLS", Command::Auth(b"TLS")),
            (b"auth ssl", Command::Auth(b"ssl")),
            (b"AUTH TLS-C ", Command::Auth(b"TLS-C")),
            (b"PBSZ 0", Command::Pbsz(0)),
            (b"PBSZ  16384", Command::Pbsz(16384)),
            (b"PROT P", Command::Prot(ProtLevel::Private)),
            (b"prot c", Command::Prot(ProtLevel::Clear)),
            (b"PROT S", Command::Prot(ProtLevel::Safe)),
            (b"PROT E ", Command::Prot(ProtLevel::Confidential)),
            (b"CCC", Command::Ccc),
            (b"ccc", Command::Ccc),
            (b"MFMT 20240229123456 a file", Command::Mfmt { modified: at(1_709_210_096), path: b"a file" }),
            (
                b"mfmt 19700101000000.5 f",
                Command::Mfmt { modified: at(0) + Duration::from_millis(500), path: b"f" },
            ),
            (b"AVBL", Command::Avbl(None)),
            (b"AVBL /up", Command::Avbl(Some(b"/up"))),
            (b"CLNT lftp 4.9 ", Command::Clnt(b"lftp 4.9")),
            (b"HASH f", Command::Hash(b"f")),
            (b"XCRC f", Command::XHash(HashAlgo::Crc32, b"f")),
            (b"xmd5 f", Command::XHash(HashAlgo::Md5, b"f")),
            (b"XSHA1 f", Command::XHash(HashAlgo::Sha1, b"f")),
            (b"XSHA256 f g", Command::XHash(HashAlgo::Sha256, b"f g")),
        ];
        for (line, want) in ok {
            assert_eq!(parse(line), Ok(*want), "{}", String::from_utf8_lossy(line));
        }
        let bad: &[(&[u8], ParseError)] = &[
            (b"", ParseError::Empty),
            (b"   ", ParseError::Empty),
            (b"FOO", ParseError::UnknownVerb),
            (b"RETRX a", ParseError::UnknownVerb),
            (b"\0\0\0\0", ParseError::UnknownVerb),
            (b"RETR", ParseError::MissingArgument),
            (b"RETR   ", ParseError::MissingArgument),
            (b"USER", ParseError::MissingArgument),
            (b"TYPE E", ParseError::UnsupportedParameter),
            (b"TYPE A T", ParseError::UnsupportedParameter),
            (b"TYPE X", ParseError::BadArgument),
            (b"TYPE I I", ParseError::BadArgument),
            (b"MODE B", ParseError::UnsupportedParameter),
            (b"MODE Z", ParseError::UnsupportedParameter),
            (b"MODE Q", ParseError::BadArgument),
            (b"STRU R", ParseError::UnsupportedParameter),
            (b"REST -1", ParseError::BadArgument),
            (b"REST 18446744073709551616", ParseError::BadArgument),
            (b"REST 12a", ParseError::BadArgument),
            (b"PORT 1,2,3", ParseError::BadArgument),
            (b"PORT 256,0,0,1,1,1", ParseError::BadArgument),
            (b"EPRT |3|::1|5|", ParseError::UnsupportedProtocol),
            (b"EPSV 3", ParseError::UnsupportedProtocol),
            (b"EPSV x", ParseError::BadArgument),
            (b"SMNT /", ParseError::NotImplemented),
            (b"AUTH", ParseError::MissingArgument),
            (b"AUTH  ", ParseError::MissingArgument),
            (b"PBSZ", ParseError::MissingArgument),
            (b"PBSZ -1", ParseError::BadArgument),
            (b"PBSZ 0x10", ParseError::BadArgument),
            (b"PBSZ 18446744073709551616", ParseError::BadArgument),
            (b"PROT", ParseError::MissingArgument),
            (b"PROT X", ParseError::UnsupportedParameter),
            (b"PROT PP", ParseError::UnsupportedParameter),
            (b"PROTX P", ParseError::UnknownVerb),
            (b"MFMT", ParseError::MissingArgument),
            (b"MFMT 20240229123456", ParseError::MissingArgument),
            (b"MFMT 20240229123456  ", ParseError::MissingArgument),
            (b"MFMT 2024022912345 f", ParseError::BadArgument),
            (b"MFMT 20241329123456 f", ParseError::BadArgument),
            (b"MFMT f 20240229123456", ParseError::BadArgument),
            (b"CLNT", ParseError::MissingArgument),
            (b"HASH", ParseError::MissingArgument),
            (b"XSHA256", ParseError::MissingArgument),
            (b"XSHA512 f", ParseError::UnknownVerb),
            (b"XSHA2566 f", ParseError::UnknownVerb),
        ];
        for (line, want) in bad {
            assert_eq!(parse(line), Err(*want), "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn every_error_has_a_reply() {
        for e in [
            ParseError::Empty,
            ParseError::UnknownVerb,
            ParseError::NotImplemented,
            ParseError::MissingArgument,
            ParseError::BadArgument,
            ParseError::UnsupportedParameter,
            ParseError::UnsupportedProtocol,
            ParseError::LineTooLong,
        ] {
            let code = e.reply().code();
            assert!((500..600).contains(&code.get()), "{e:?} -> {code}");
        }
    }
}
