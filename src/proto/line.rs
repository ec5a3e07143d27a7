//! Control-connection framing (RFC 959 §4.1.3, RFC 854): turns a byte stream into command
//! lines.
//!
//! A line ends at LF (CRLF or a bare LF; a bare CR is kept as data, so `RETR a\rb` names the
//! file `a\rb`). Telnet commands (IAC IP, IAC DM, option negotiation) are removed as bytes
//! arrive and IAC IAC becomes one 0xFF byte, so the parser sees plain text and can borrow from
//! the buffer. A line longer than the limit is discarded up to its end and reported once as
//! [`Line::TooLong`], so a peer cannot make the buffer grow without bound.

const IAC: u8 = 255;
const SB: u8 = 250;
const SE: u8 = 240;
const WILL: u8 = 251;
const DONT: u8 = 254;

/// Where the Telnet filter is within an escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Telnet {
    Data,
    /// After IAC.
    Iac,
    /// After IAC WILL/WONT/DO/DONT: one option byte follows.
    Option,
    /// Inside IAC SB ... IAC SE subnegotiation.
    Sub,
    /// After IAC inside a subnegotiation.
    SubIac,
}

/// One framed line, or the report that one was too long.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A line without its CRLF or LF.
    Complete(&'a [u8]),
    /// A line exceeded the limit and was discarded; answer 500 and go on.
    TooLong,
}

/// Accumulates control bytes and yields lines.
#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Start of the unconsumed data in `buf`.
    start: usize,
    max: usize,
    telnet: Telnet,
    /// Dropping bytes until the end of an over-long line.
    discarding: bool,
    /// Bytes of the line being received (after the last LF in `buf`).
    line_len: usize,
    /// Line ends pushed so far, and lines handed out so far.
    pushed: u64,
    taken: u64,
    /// For each discarded line not yet reported, how many lines came before it; its place in
    /// `buf` is an empty line, so complete lines before and after it keep their order.
    too_long: std::collections::VecDeque<u64>,
}

impl LineBuffer {
    /// A buffer that accepts lines of up to `max` bytes (not counting the line end).
    pub fn new(max: usize) -> Self {
        LineBuffer {
            buf: Vec::new(),
            start: 0,
            max: max.max(1),
            telnet: Telnet::Data,
            discarding: false,
            line_len: 0,
            pushed: 0,
            taken: 0,
            too_long: std::collections::VecDeque::new(),
        }
    }

    /// Appends received bytes, removing Telnet commands.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        for &b in data {
            let keep = match self.telnet {
                Telnet::Data if b == IAC => {
                    self.telnet = Telnet::Iac;
                    None
                }
                Telnet::Data => Some(b),
                Telnet::Iac => {
                    self.telnet = match b {
                        IAC => Telnet::Data,
                        WILL..=DONT => Telnet::Option,
                        SB => Telnet::Sub,
                        _ => Telnet::Data,
                    };
                    (b == IAC).then_some(IAC)
                }
                Telnet::Option => {
                    self.telnet = Telnet::Data;
                    None
                }
                Telnet::Sub => {
                    if b == IAC {
                        self.telnet = Telnet::SubIac;
                    }
                    None
                }
                Telnet::SubIac => {
                    self.telnet = if b == SE { Telnet::Data } else { Telnet::Sub };
                    None
                }
            };
            if let Some(b) = keep {
                self.keep(b);
            }
        }
    }

    fn keep(&mut self, b: u8) {
        if self.discarding {
            if b == b'\n' {
                self.discarding = false;
            }
            return;
        }
        if b == b'\n' {
            self.pushed += 1;
            self.line_len = 0;
            self.buf.push(b);
            return;
        }
        // A CR may follow a line of exactly `max` bytes: it is part of the line end.
        let limit = if b == b'\r' { self.max + 1 } else { self.max };
        if self.line_len >= limit {
            // Drop the partial line and leave an empty line in its place as the marker.
            self.buf.truncate(self.buf.len() - self.line_len);
            self.line_len = 0;
            self.buf.push(b'\n');
            self.too_long.push_back(self.pushed);
            self.pushed += 1;
            self.discarding = true;
            return;
        }
        self.line_len += 1;
        self.buf.push(b);
    }

    /// The next complete line, if one is buffered.
    pub fn next_line(&mut self) -> Option<Line<'_>> {
        let rest = self.buf.get(self.start..)?;
        let end = rest.iter().position(|&c| c == b'\n')?;
        let line_start = self.start;
        self.start += end + 1;
        let index = self.taken;
        self.taken += 1;
        if self.too_long.front() == Some(&index) {
            self.too_long.pop_front();
            return Some(Line::TooLong);
        }
        let line = self.buf.get(line_start..line_start + end)?;
        Some(Line::Complete(line.strip_suffix(b"\r").unwrap_or(line)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn lines(max: usize, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, ()>> {
        let mut lb = LineBuffer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            lb.push(c);
            while let Some(l) = lb.next_line() {
                out.push(match l {
                    Line::Complete(l) => Ok(l.to_vec()),
                    Line::TooLong => Err(()),
                });
            }
        }
        out
    }

    #[test]
    fn crlf_lf_and_partial() {
        let got = lines(100, &[b"USER a\r\nPASS", b" b\nNOOP\r", b"\n"]);
        assert_eq!(got, vec![Ok(b"USER a".to_vec()), Ok(b"PASS b".to_vec()), Ok(b"NOOP".to_vec())]);
    }

    #[test]
    fn bare_cr_is_data() {
        assert_eq!(lines(100, &[b"RETR a\rb\r\n"]), vec![Ok(b"RETR a\rb".to_vec())]);
    }

    #[test]
    fn telnet_sequences_removed() {
        // IAC IP, IAC DM before ABOR, as clients send it; IAC WILL x negotiation; IAC IAC = 0xFF.
        let got = lines(100, &[b"\xff\xf4\xff\xf2ABOR\r\n", b"\xff\xfb\x01RETR \xff\xffx\r\n"]);
        assert_eq!(got, vec![Ok(b"ABOR".to_vec()), Ok(b"RETR \xffx".to_vec())]);
    }

    #[test]
    fn telnet_split_across_chunks() {
        let got = lines(100, &[b"NO\xff", b"\xf4OP\r\n"]);
        assert_eq!(got, vec![Ok(b"NOOP".to_vec())]);
    }

    #[test]
    fn subnegotiation_removed() {
        let got = lines(100, &[b"\xff\xfa\x18\x01\xff\xf0NOOP\r\n"]);
        assert_eq!(got, vec![Ok(b"NOOP".to_vec())]);
    }

    #[test]
    fn over_long_line_reported_once_in_order() {
        let long = vec![b'x'; 50];
        let got = lines(10, &[b"NOOP\r\n", &long, &long, b"\r\nQUIT\r\n"]);
        assert_eq!(got, vec![Ok(b"NOOP".to_vec()), Err(()), Ok(b"QUIT".to_vec())]);
    }

    #[test]
    fn over_long_without_end_keeps_memory_bounded() {
        let mut lb = LineBuffer::new(16);
        for _ in 0..10_000 {
            lb.push(&[b'a'; 100]);
        }
        assert!(lb.buf.len() <= 18);
        lb.push(b"");
        assert_eq!(lb.next_line(), Some(Line::TooLong));
        assert_eq!(lb.next_line(), None);
        lb.push(b"\nNOOP\n");
        assert_eq!(lb.next_line(), Some(Line::Complete(b"NOOP")));
    }

    #[test]
    fn exactly_max_is_accepted() {
        assert_eq!(lines(4, &[b"NOOP\r\n"]), vec![Ok(b"NOOP".to_vec())]);
        // The CR of CRLF counts against the limit only as part of the line end.
        assert_eq!(lines(4, &[b"NOOPX\r\n"]), vec![Err(())]);
    }
}
