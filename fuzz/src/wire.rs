//! The wire form of a reply, checked against RFC 959 §4.2.

use ringftp::proto::Reply;

/// Reassembles replies the session sends in parts ([`Reply::is_partial`]) and checks each
/// whole reply as the client reads it: the parts' wire forms one after the other are one
/// reply of all their texts.
#[derive(Debug, Default)]
pub struct Assembler {
    /// The wire form of the last reply, or of every part so far of one sent in parts.
    wire: Vec<u8>,
    /// Where the last part starts in `wire`.
    start: usize,
    /// The code and text of the parts so far.
    parts: Option<(u16, Vec<u8>)>,
}

impl Assembler {
    /// Adds `r`; once a reply is whole, checks it with [`check_wire`] and returns true.
    pub fn push(&mut self, r: &Reply) -> bool {
        self.start = if self.parts.is_some() { self.wire.len() } else { 0 };
        self.wire.truncate(self.start);
        r.write_to(&mut self.wire);
        if let Some((code, text)) = &mut self.parts {
            assert_eq!(*code, r.code().get(), "a part of another code: {r:?}");
            let more = r.text().strip_suffix(b"\n").unwrap_or(r.text());
            if !more.is_empty() || !r.is_partial() {
                text.push(b'\n');
                text.extend_from_slice(more);
            }
        } else if r.is_partial() {
            let first = r.text().strip_suffix(b"\n").unwrap_or(r.text());
            self.parts = Some((r.code().get(), first.to_vec()));
        }
        if r.is_partial() {
            return false;
        }
        match self.parts.take() {
            Some((code, text)) => check_wire(&self.wire, code, &text),
            None => check_wire(&self.wire, r.code().get(), r.text()),
        }
        true
    }

    /// The wire form of the reply (or part) pushed last.
    pub fn last(&self) -> &[u8] {
        &self.wire[self.start..]
    }
}

/// Writes `reply` and checks the result with [`check_wire`]; returns the wire bytes.
pub fn write_and_check(reply: &Reply) -> Vec<u8> {
    let mut out = Vec::new();
    reply.write_to(&mut out);
    check_wire(&out, reply.code().get(), reply.text());
    out
}

/// Asserts that `wire` is one well-formed reply (RFC 959 §4.2) for `code` and `text`:
///
/// - non-empty and ends with CRLF; every line ends in CRLF and holds no other CR or LF;
/// - a single-line reply is exactly `ddd text\r\n` (text without CRs and without one
///   trailing LF);
/// - a multi-line reply starts with `ddd-`, ends with a line starting `ddd `, and no line in
///   between starts with `ddd ` (so a client cannot take it for the end);
/// - the lines carry the text's lines, in order, with only CRs removed (a middle line may be
///   indented by one space).
pub fn check_wire(wire: &[u8], code: u16, text: &[u8]) {
    // One pass over the wire, line by line against the text, with no allocation: this runs for
    // every reply the session fuzzer sees, and every byte compared is a coverage callback.
    assert!((100..600).contains(&code), "reply code {code} out of range");
    let digits = [b'0' + (code / 100) as u8, b'0' + (code / 10 % 10) as u8, b'0' + (code % 10) as u8];
    assert!(wire.ends_with(b"\r\n"), "reply does not end with CRLF: {wire:?}");
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let mut lines = text.split(|&b| b == b'\n').peekable();
    let mut rest = wire;
    let mut i = 0;
    while let Some(want) = lines.next() {
        let (first, last) = (i == 0, lines.peek().is_none());
        let body = if first || last {
            let sep = if last { b' ' } else { b'-' };
            assert!(rest.len() >= 4 && rest[..3] == digits, "line {i} lacks the code: {wire:?}");
            assert_eq!(rest[3], sep, "line {i} must be `ddd{}`: {wire:?}", sep as char);
            &rest[4..]
        } else {
            let ends_reply = rest.len() >= 4 && rest[..3] == digits && rest[3] == b' ';
            assert!(!ends_reply, "a middle line ends the reply: {wire:?}");
            rest
        };
        // The line carries the text's line with only CRs removed (a middle line may be
        // indented by one space), then CRLF: so no other CR or LF.
        let line_end = |at: &[u8]| carries(at, want).filter(|&n| at[n..].starts_with(b"\r\n"));
        let (skip, n) = match line_end(body) {
            Some(n) => (0, n),
            None if !(first || last) && body.first() == Some(&b' ') => match line_end(&body[1..]) {
                Some(n) => (1, n),
                None => panic!("middle line {i} text changed for {want:?}: {wire:?}"),
            },
            None => panic!("line {i} text changed for {want:?} (or a bare CR/LF): {wire:?}"),
        };
        rest = &body[skip + n + 2..];
        i += 1;
    }
    assert!(rest.is_empty(), "reply has more lines than its text ({i}): {wire:?}");
}

/// If `wire` starts with `text` less its CRs, that length.
fn carries(wire: &[u8], text: &[u8]) -> Option<usize> {
    if !text.contains(&b'\r') {
        return wire.starts_with(text).then_some(text.len());
    }
    let mut n = 0;
    for &b in text.iter().filter(|&&b| b != b'\r') {
        if wire.get(n) != Some(&b) {
            return None;
        }
        n += 1;
    }
    Some(n)
}

/// Asserts that `listing` (LIST, NLST or MLSD data) is one CRLF-ended line per entry, with
/// no other CR or LF.
pub fn check_listing(listing: &[u8]) {
    for line in listing.split_inclusive(|&c| c == b'\n') {
        let body = line.strip_suffix(b"\r\n").expect("a listing line without CRLF");
        assert!(!body.contains(&b'\r'), "a CR inside a listing line: {listing:?}");
    }
}
