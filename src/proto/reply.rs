//! Replies: the code table and the wire format (RFC 959 §4.2).
//!
//! A reply is a code and a text. A text with several lines becomes a multi-line reply:
//! `123-first`, the middle lines indented by one space (so a line that starts with digits can
//! never be mistaken for the end), and `123 last`. CR and LF never appear inside a line on the
//! wire, whatever the text holds, so a file name cannot inject a reply.
//!
//! A reply too long to hold at once (STAT of a large directory) goes out in parts: a
//! [`Reply::opening`] (`123-first` and indented lines), any number of [`Reply::continuation`]s
//! (indented lines only), then an ordinary reply with the same code, whose single line is the
//! `123 last` that ends it.

use std::borrow::Cow;
use std::fmt;

/// A reply code: three digits, 100..=599. Every code the server sends is a constant of
/// [`code`], so a reply can never carry a malformed code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyCode(u16);

impl ReplyCode {
    /// A code from a number, if it is a valid three-digit reply code.
    pub const fn new(value: u16) -> Option<ReplyCode> {
        if value >= 100 && value < 600 {
            Some(ReplyCode(value))
        } else {
            None
        }
    }

    /// The number.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// Whether this is a positive preliminary reply (1yz): another reply follows.
    pub const fn is_preliminary(self) -> bool {
        self.0 < 200
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Reply codes, with the meaning RFC 959 (and the RFC that added it) gives each.
pub mod code {
    use super::ReplyCode;

    macro_rules! codes {
        ($($(#[$doc:meta])* $name:ident = $value:literal;)*) => {
            $($(#[$doc])* pub const $name: ReplyCode = ReplyCode($value);)*
        };
    }
    codes! {
        /// 110 Restart marker reply.
        RESTART_MARKER = 110;
        /// 120 Service ready in nnn minutes.
        SERVICE_READY_SOON = 120;
        /// 125 Data connection already open; transfer starting.
        DATA_ALREADY_OPEN = 125;
        /// 150 File status okay; about to open data connection.
        FILE_STATUS_OK = 150;
        /// 200 Command okay.
        OK = 200;
        /// 202 Command not implemented, superfluous at this site.
        SUPERFLUOUS = 202;
        /// 211 System status, or system help reply (also FEAT, RFC 2389).
        SYSTEM_STATUS = 211;
        /// 212 Directory status.
        DIRECTORY_STATUS = 212;
        /// 213 File status (also SIZE, MDTM: RFC 3659).
        FILE_STATUS = 213;
        /// 214 Help message.
        HELP = 214;
        /// 215 NAME system type.
        SYSTEM_TYPE = 215;
        /// 220 Service ready for new user.
        SERVICE_READY = 220;
        /// 221 Service closing control connection.
        CLOSING = 221;
        /// 225 Data connection open; no transfer in progress.
        DATA_OPEN_NO_TRANSFER = 225;
        /// 226 Closing data connection; requested file action successful.
        CLOSING_DATA = 226;
        /// 227 Entering Passive Mode (h1,h2,h3,h4,p1,p2).
        PASSIVE_MODE = 227;
        /// 229 Entering Extended Passive Mode (|||port|) (RFC 2428).
        EXTENDED_PASSIVE_MODE = 229;
        /// 234 Security exchange done: start the TLS handshake (RFC 2228, RFC 4217 AUTH TLS).
        AUTH_OK = 234;
        /// 230 User logged in, proceed.
        LOGGED_IN = 230;
        /// 250 Requested file action okay, completed.
        FILE_ACTION_OK = 250;
        /// 257 "PATHNAME" created.
        PATH_CREATED = 257;
        /// 331 User name okay, need password.
        NEED_PASSWORD = 331;
        /// 332 Need account for login.
        NEED_ACCOUNT = 332;
        /// 350 Requested file action pending further information.
        PENDING = 350;
        /// 421 Service not available, closing control connection.
        NOT_AVAILABLE = 421;
        /// 425 Can't open data connection.
        CANT_OPEN_DATA = 425;
        /// 426 Connection closed; transfer aborted.
        TRANSFER_ABORTED = 426;
        /// 450 Requested file action not taken; file unavailable (e.g. busy).
        FILE_UNAVAILABLE = 450;
        /// 451 Requested action aborted: local error in processing.
        LOCAL_ERROR = 451;
        /// 452 Requested action not taken; insufficient storage space.
        INSUFFICIENT_STORAGE = 452;
        /// 500 Syntax error, command unrecognized.
        SYNTAX_ERROR = 500;
        /// 501 Syntax error in parameters or arguments.
        SYNTAX_ERROR_ARGS = 501;
        /// 502 Command not implemented.
        NOT_IMPLEMENTED = 502;
        /// 503 Bad sequence of commands.
        BAD_SEQUENCE = 503;
        /// 504 Command not implemented for that parameter.
        PARAMETER_NOT_IMPLEMENTED = 504;
        /// 521 Data connections must be protected (RFC 4217 §9, `PROT P` required).
        DATA_PROTECTION_REQUIRED = 521;
        /// 522 Network protocol not supported (RFC 2428).
        UNSUPPORTED_PROTOCOL = 522;
        /// 530 Not logged in.
        NOT_LOGGED_IN = 530;
        /// 532 Need account for storing files.
        NEED_ACCOUNT_FOR_STORING = 532;
        /// 534 Request denied for policy reasons (RFC 2228: CCC refused, TLS required).
        POLICY_DENIED = 534;
        /// 536 Requested PROT level not supported by mechanism (RFC 2228).
        PROT_NOT_SUPPORTED = 536;
        /// 550 Requested action not taken; file unavailable (not found, no access).
        FILE_NOT_FOUND = 550;
        /// 551 Requested action aborted: page type unknown.
        PAGE_TYPE_UNKNOWN = 551;
        /// 552 Requested file action aborted: exceeded storage allocation.
        EXCEEDED_STORAGE = 552;
        /// 553 Requested action not taken: file name not allowed.
        BAD_FILE_NAME = 553;
    }
}

/// One reply: a code and a text, which may span several lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: ReplyCode,
    text: Cow<'static, [u8]>,
    part: Part,
}

/// Which part of a multi-line reply a [`Reply`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// All of it: the last line carries the code.
    Whole,
    /// Its first lines; the end comes later.
    Opening,
    /// Middle lines only.
    Continuation,
}

impl Reply {
    /// A reply with static text.
    pub const fn new(code: ReplyCode, text: &'static str) -> Self {
        Reply { code, text: Cow::Borrowed(text.as_bytes()), part: Part::Whole }
    }

    /// A reply with text built at run time (may contain non-UTF-8 path bytes).
    pub fn owned(code: ReplyCode, text: impl Into<Vec<u8>>) -> Self {
        Reply { code, text: Cow::Owned(text.into()), part: Part::Whole }
    }

    /// The first lines of a multi-line reply whose end comes later: `123-` and the first line,
    /// then the others indented. [`Reply::continuation`]s may follow; a whole reply with the
    /// same code (one line) ends it.
    pub fn opening(code: ReplyCode, text: impl Into<Vec<u8>>) -> Self {
        Reply { code, text: Cow::Owned(text.into()), part: Part::Opening }
    }

    /// More middle lines of the reply a [`Reply::opening`] began, each indented; an empty text
    /// sends nothing.
    pub fn continuation(code: ReplyCode, text: impl Into<Vec<u8>>) -> Self {
        Reply { code, text: Cow::Owned(text.into()), part: Part::Continuation }
    }

    /// Whether this is a part of a reply that later ones complete ([`Reply::opening`],
    /// [`Reply::continuation`]): the client has no whole reply yet.
    pub fn is_partial(&self) -> bool {
        self.part != Part::Whole
    }

    /// The reply code.
    pub fn code(&self) -> ReplyCode {
        self.code
    }

    /// The text, lines separated by `\n`.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Whether this is a positive preliminary reply (1yz): another reply follows.
    pub fn is_preliminary(&self) -> bool {
        self.code.is_preliminary()
    }

    /// Appends the wire form to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let code = self.code.0;
        let digits = [b'0' + (code / 100) as u8, b'0' + (code / 10 % 10) as u8, b'0' + (code % 10) as u8];
        let text = self.text.strip_suffix(b"\n").unwrap_or(&self.text);
        if text.is_empty() && self.part == Part::Continuation {
            return;
        }
        let mut lines = text.split(|&b| b == b'\n').peekable();
        // Only a whole reply ends here, and only a continuation has no first line.
        let mut first = self.part != Part::Continuation;
        while let Some(line) = lines.next() {
            let last = lines.peek().is_none() && self.part == Part::Whole;
            if first || last {
                out.extend_from_slice(&digits);
                out.push(if last { b' ' } else { b'-' });
            } else {
                out.push(b' ');
            }
            // A CR inside a line would end it early for some clients; drop it.
            out.extend(line.iter().copied().filter(|&b| b != b'\r'));
            out.extend_from_slice(b"\r\n");
            first = false;
        }
    }
}

/// Quotes a path for a 257 reply (RFC 959 Appendix II): `"` doubled, LF sent as NUL.
pub fn quote_path(path: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in path {
        match b {
            b'"' => out.extend_from_slice(b"\"\""),
            b'\n' => out.push(0),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn wire(r: &Reply) -> String {
        let mut out = Vec::new();
        r.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn single_line() {
        assert_eq!(wire(&Reply::new(code::OK, "OK")), "200 OK\r\n");
        assert_eq!(wire(&Reply::new(code::OK, "")), "200 \r\n");
    }

    #[test]
    fn multi_line() {
        let r = Reply::new(code::SYSTEM_STATUS, "Features:\nEPSV\nSIZE\nEnd");
        assert_eq!(wire(&r), "211-Features:\r\n EPSV\r\n SIZE\r\n211 End\r\n");
    }

    #[test]
    fn empty_lines_and_digit_lines_are_safe() {
        let r = Reply::new(code::HELP, "a\n\n226 fake\n\nz");
        assert_eq!(wire(&r), "214-a\r\n \r\n 226 fake\r\n \r\n214 z\r\n");
        assert_eq!(wire(&Reply::new(code::HELP, "\n")), "214 \r\n");
        assert_eq!(wire(&Reply::new(code::HELP, "\n\n")), "214-\r\n214 \r\n");
    }

    #[test]
    fn a_reply_in_parts_is_one_multi_line_reply() {
        let parts = [
            Reply::opening(code::FILE_STATUS, "Status follows:\nline 1\r\n"),
            Reply::continuation(code::FILE_STATUS, ""),
            Reply::continuation(code::FILE_STATUS, "213 line 2\r\nline 3\r\n"),
            Reply::new(code::FILE_STATUS, "End of status"),
        ];
        let all: String = parts.iter().map(wire).collect();
        assert_eq!(all, "213-Status follows:\r\n line 1\r\n 213 line 2\r\n line 3\r\n213 End of status\r\n");
        assert!(parts[0].is_partial() && parts[2].is_partial() && !parts[3].is_partial());
        assert_eq!(wire(&Reply::opening(code::FILE_STATUS, "Status")), "213-Status\r\n");
    }

    #[test]
    fn cr_removed_and_codes_checked() {
        assert_eq!(wire(&Reply::owned(code::FILE_NOT_FOUND, b"a\rb".to_vec())), "550 ab\r\n");
        assert_eq!(ReplyCode::new(42), None);
        assert_eq!(ReplyCode::new(600), None);
        assert_eq!(ReplyCode::new(599).map(ReplyCode::get), Some(599));
    }

    #[test]
    fn quoting() {
        let mut out = Vec::new();
        quote_path(b"/a \"b\"\nc", &mut out);
        assert_eq!(out, b"\"/a \"\"b\"\"\0c\"");
    }
}
