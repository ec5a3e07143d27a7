//! Commands clients send beyond RFC 959 and 3659: MFMT (draft-somers-ftp-mfxx), SITE UTIME
//! and SITE CHMOD (as lftp `mirror -R` sends them), AVBL (WinSCP), CLNT, OPTS MLST (RFC 3659
//! §7.9) and OPTS HASH, HASH (draft-bryan-ftpext-hash) and the legacy XCRC, XMD5, XSHA1 and
//! XSHA256.
//!
//! Setting a time or a mode needs [`crate::Permissions::write`]: both change the file as an
//! upload would (see the note on `Permissions` for why there is no separate permission). A
//! digest needs `read`, because it tells something about the content. Each is one storage
//! request; a digest is computed off the shard and bounded (see [`crate::storage`]).

use std::time::SystemTime;

use super::files::{FsPurpose, FsRequest};
use super::{Action, FsOutcome, Session};
use crate::proto::command::{trim, Command};
use crate::proto::listing::{self, Facts};
use crate::proto::reply::{code, Reply};
use crate::types::{ErrorKind, HashAlgo};

/// HELP SITE: exactly the SITE commands that work.
pub(super) const SITE_HELP: &str = "SITE commands: CHMOD HELP UTIME";

/// FEAT lines for the legacy digest commands (WinSCP and FileZilla look for them there).
pub(super) const LEGACY_HASH_FEATURES: &str = "XCRC\nXMD5\nXSHA1\nXSHA256\n";

/// The longest CLNT name kept for logs.
const MAX_CLIENT_NAME: usize = 128;

/// Why one of these commands asked for a storage operation, which decides the reply.
#[derive(Debug)]
pub(in crate::session) enum CmdPurpose {
    /// MFMT: the path as the client gave it, and the time, for the 213.
    Mfmt(Vec<u8>, SystemTime),
    /// SITE UTIME.
    Utime,
    /// SITE CHMOD.
    Chmod,
    /// AVBL.
    Avbl,
    /// HASH or an X command: is it a file, and how long?
    HashWhat(HashJob),
    /// The digest itself, of a file this long.
    Hash(HashJob, u64),
}

#[derive(Debug)]
pub(in crate::session) struct HashJob {
    path: Vec<u8>,
    /// The name as the client gave it, for the HASH reply.
    name: Vec<u8>,
    algo: HashAlgo,
    /// XCRC, XMD5, XSHA1, XSHA256: `250 digest` instead of HASH's 213 line.
    legacy: bool,
}

/// Parses a SITE CHMOD mode: octal, at most `7777`; only the permission bits are kept, so
/// setuid, setgid and sticky bits cannot be set.
fn parse_mode(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 4 {
        return None;
    }
    let mode =
        s.iter().try_fold(0u32, |m, &d| (b'0'..=b'7').contains(&d).then(|| m * 8 + u32::from(d - b'0')))?;
    Some(mode & 0o777)
}

/// Parses the argument of SITE UTIME in either form lftp sends: `YYYYMMDDhhmmss path`, or
/// `path atime mtime ctime UTC` (the older form); returns the modification time and path.
fn parse_utime(arg: &[u8]) -> Option<(SystemTime, &[u8])> {
    // The long form first: its end is unmistakable, and its path may begin with digits.
    let mut parts = arg.rsplitn(5, |&b| b == b' ');
    if let (Some(utc), Some(_ctime), Some(mtime), Some(atime), Some(path)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    {
        if utc.eq_ignore_ascii_case(b"UTC") && listing::parse_timeval(atime).is_some() && !path.is_empty() {
            if let Some(t) = listing::parse_timeval(mtime) {
                return Some((t, path));
            }
        }
    }
    let i = arg.iter().position(|&b| b == b' ')?;
    let time = listing::parse_timeval(arg.get(..i)?)?;
    let path = arg.get(i + 1..)?;
    (!path.is_empty()).then_some((time, path))
}

fn hex(bytes: &[u8], out: &mut Vec<u8>) {
    let digit = |n: u8| if n < 10 { b'0' + n } else { b'a' + n - 10 };
    for b in bytes {
        out.push(digit(b >> 4));
        out.push(digit(b & 15));
    }
}

impl Session {
    /// The FEAT line for HASH, the selected algorithm marked with `*`.
    pub(super) fn hash_feature(&self) -> String {
        let mut s = String::from("HASH ");
        for (i, algo) in HashAlgo::ALL.into_iter().enumerate() {
            if i > 0 {
                s.push(';');
            }
            s.push_str(algo.name());
            if algo == self.hash_algo {
                s.push('*');
            }
        }
        s
    }

    /// OPTS MLST fact;fact;...: from now on MLST and MLSD send only those (RFC 3659 §7.9).
    pub(super) fn opts_mlst(&mut self, value: &[u8]) {
        self.facts = Facts::parse(trim(value));
        let mut text = String::from("MLST OPTS ");
        self.facts.write_selected(&mut text);
        self.reply(Reply::owned(code::OK, text.trim_end().to_owned()));
    }

    /// OPTS HASH [algorithm]: names the algorithm HASH uses, after changing it if one is given.
    pub(super) fn opts_hash(&mut self, value: &[u8]) {
        let value = trim(value);
        if !value.is_empty() {
            match HashAlgo::from_name(value) {
                Some(algo) => self.hash_algo = algo,
                None => return self.reply_static(code::PARAMETER_NOT_IMPLEMENTED, "Unknown algorithm."),
            }
        }
        self.reply(Reply::new(code::OK, self.hash_algo.name()));
    }

    /// CLNT name: noted for the log; any client may say it, also before login.
    pub(super) fn clnt(&mut self, name: &[u8]) {
        let name: String =
            String::from_utf8_lossy(name).chars().filter(|c| !c.is_control()).take(MAX_CLIENT_NAME).collect();
        self.actions.push_back(Action::ClientName(name));
        self.reply_static(code::OK, "Noted.");
    }

    /// SITE subcommand: CHMOD, UTIME and HELP; any other is 502.
    pub(super) fn site(&mut self, arg: &[u8]) {
        let arg = trim(arg);
        let (sub, rest) = match arg.iter().position(|&b| b == b' ') {
            Some(i) => (arg.get(..i).unwrap_or_default(), trim(arg.get(i + 1..).unwrap_or_default())),
            None => (arg, &b""[..]),
        };
        if sub.eq_ignore_ascii_case(b"HELP") {
            self.reply_static(code::HELP, SITE_HELP);
        } else if sub.eq_ignore_ascii_case(b"CHMOD") {
            let (mode, path) = match rest.iter().position(|&b| b == b' ') {
                Some(i) => (rest.get(..i).unwrap_or_default(), rest.get(i + 1..).unwrap_or_default()),
                None => (rest, &b""[..]),
            };
            let Some(mode) = parse_mode(mode).filter(|_| !path.is_empty()) else {
                return self.reply_static(code::SYNTAX_ERROR_ARGS, "Usage: SITE CHMOD <octal mode> <path>");
            };
            if self.allowed(|p| p.write) {
                if let Some(p) = self.resolve(path) {
                    self.fs(FsPurpose::Cmd(CmdPurpose::Chmod), FsRequest::SetMode { path: p, mode });
                }
            }
        } else if sub.eq_ignore_ascii_case(b"UTIME") {
            let Some((time, path)) = parse_utime(rest) else {
                return self.reply_static(
                    code::SYNTAX_ERROR_ARGS,
                    "Usage: SITE UTIME <YYYYMMDDhhmmss> <path> or SITE UTIME <path> <atime> <mtime> <ctime> UTC",
                );
            };
            if self.allowed(|p| p.write) {
                if let Some(p) = self.resolve(path) {
                    self.fs(FsPurpose::Cmd(CmdPurpose::Utime), FsRequest::SetModified { path: p, time });
                }
            }
        } else {
            self.reply_static(code::NOT_IMPLEMENTED, "Unknown SITE command.");
        }
    }

    /// MFMT, AVBL, HASH and the X digests (logged in).
    pub(super) fn site_command(&mut self, cmd: Command<'_>) {
        match cmd {
            Command::Mfmt { modified, path } => {
                if self.allowed(|p| p.write) {
                    if let Some(p) = self.resolve(path) {
                        let purpose = CmdPurpose::Mfmt(path.to_vec(), modified);
                        self.fs(FsPurpose::Cmd(purpose), FsRequest::SetModified { path: p, time: modified });
                    }
                }
            }
            Command::Avbl(arg) => {
                if let Some(p) = self.resolve(arg.map(trim).unwrap_or(b".")) {
                    self.fs(FsPurpose::Cmd(CmdPurpose::Avbl), FsRequest::AvailableSpace(p));
                }
            }
            Command::Hash(arg) => self.hash(arg, self.hash_algo, false),
            Command::XHash(algo, arg) => self.hash(arg, algo, true),
            _ => self.reply_static(code::NOT_IMPLEMENTED, "Command not implemented."),
        }
    }

    fn hash(&mut self, arg: &[u8], algo: HashAlgo, legacy: bool) {
        if !self.allowed(|p| p.read) {
            return;
        }
        if let Some(path) = self.resolve(arg) {
            let job = HashJob { path: path.clone(), name: arg.to_vec(), algo, legacy };
            self.fs(FsPurpose::Cmd(CmdPurpose::HashWhat(job)), FsRequest::Metadata(path));
        }
    }

    pub(super) fn cmd_answered(&mut self, purpose: CmdPurpose, outcome: FsOutcome) {
        match (purpose, outcome) {
            (CmdPurpose::Mfmt(name, time), FsOutcome::Done) => {
                // draft-somers-ftp-mfxx §3: `213 Modify=<time>; <path>`.
                let mut text = b"Modify=".to_vec();
                listing::write_timeval(time, &mut text);
                text.extend_from_slice(b"; ");
                text.extend(name.iter().map(|&b| if b == b'\r' || b == b'\n' { b'?' } else { b }));
                self.reply(Reply::owned(code::FILE_STATUS, text));
            }
            (CmdPurpose::Utime, FsOutcome::Done) => {
                self.reply_static(code::OK, "SITE UTIME command successful.")
            }
            (CmdPurpose::Chmod, FsOutcome::Done) => self.reply_static(code::OK, "SITE CHMOD command ok."),
            (CmdPurpose::Avbl, FsOutcome::Space(n)) => {
                self.reply(Reply::owned(code::FILE_STATUS, n.to_string()))
            }
            (CmdPurpose::HashWhat(job), FsOutcome::Metadata(m)) => {
                if !m.is_file() {
                    return self.reply_static(code::FILE_NOT_FOUND, "Not a plain file.");
                }
                let request = FsRequest::Hash { path: job.path.clone(), algo: job.algo };
                self.fs(FsPurpose::Cmd(CmdPurpose::Hash(job, m.len)), request);
            }
            (CmdPurpose::Hash(job, len), FsOutcome::Digest(digest)) => {
                let mut text = Vec::with_capacity(digest.len() * 2 + job.name.len() + 32);
                if job.legacy {
                    hex(&digest, &mut text);
                    return self.reply(Reply::owned(code::FILE_ACTION_OK, text));
                }
                // draft-bryan-ftpext-hash §3.1: `213 <algo> <start>-<end> <digest> <name>`.
                text.extend_from_slice(format!("{} 0-{len} ", job.algo.name()).as_bytes());
                hex(&digest, &mut text);
                text.push(b' ');
                text.extend(job.name.iter().map(|&b| if b == b'\r' || b == b'\n' { b'?' } else { b }));
                self.reply(Reply::owned(code::FILE_STATUS, text));
            }
            (CmdPurpose::Hash(..), FsOutcome::Failed(ErrorKind::Unavailable)) => {
                self.reply_static(code::FILE_UNAVAILABLE, "Too many digests being computed; try again later.")
            }
            (
                CmdPurpose::Utime | CmdPurpose::Chmod | CmdPurpose::Mfmt(..),
                FsOutcome::Failed(ErrorKind::NotSupported),
            ) => self.reply_static(code::NOT_IMPLEMENTED, "Not supported by this storage."),
            (_, FsOutcome::Failed(kind)) => self.reply(Reply::new(kind.reply_code(), kind.text())),
            // An answer of the wrong kind: an engine bug, not the peer's.
            (_, _) => self.reply_static(code::LOCAL_ERROR, "Local error in processing."),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn modes() {
        assert_eq!(parse_mode(b"644"), Some(0o644));
        assert_eq!(parse_mode(b"0755"), Some(0o755));
        assert_eq!(parse_mode(b"4755"), Some(0o755));
        assert_eq!(parse_mode(b"7"), Some(0o7));
        for bad in [&b""[..], b"8", b"64a", b"77777", b"-1", b"0x1"] {
            assert_eq!(parse_mode(bad), None);
        }
    }

    #[test]
    fn utime_forms() {
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(parse_utime(b"20240229123456 a b"), Some((t, &b"a b"[..])));
        assert_eq!(
            parse_utime(b"dir/a b 20000101000000 20240229123456 20000101000000 UTC"),
            Some((t, &b"dir/a b"[..]))
        );
        assert_eq!(
            parse_utime(b"20240229123456 20000101000000 20240229123456 20000101000000 UTC"),
            Some((t, &b"20240229123456"[..]))
        );
        assert_eq!(parse_utime(b"20240229123456"), None);
        assert_eq!(parse_utime(b"f 1 2 3 UTC"), None);
        assert_eq!(parse_utime(b"f"), None);
    }
}
