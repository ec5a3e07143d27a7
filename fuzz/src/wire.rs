//! The wire form of a reply, checked against RFC 959 §4.2.

use ringftp::proto::Reply;

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
    assert!(!wire.is_empty(), "empty reply");
    assert!(wire.ends_with(b"\r\n"), "reply does not end with CRLF: {wire:?}");
    assert!((100..600).contains(&code), "reply code {code} out of range");
    let digits = [b'0' + (code / 100) as u8, b'0' + (code / 10 % 10) as u8, b'0' + (code % 10) as u8];
    // Split into lines, checking every LF is preceded by CR and no other CR occurs.
    let body = &wire[..wire.len() - 2];
    let lines: Vec<&[u8]> = split_crlf(body);
    for l in &lines {
        assert!(!l.contains(&b'\r') && !l.contains(&b'\n'), "bare CR or LF inside a reply line: {wire:?}");
    }
    // What the lines should carry.
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let want: Vec<Vec<u8>> =
        text.split(|&b| b == b'\n').map(|l| l.iter().copied().filter(|&b| b != b'\r').collect()).collect();
    assert_eq!(lines.len(), want.len(), "reply has {} lines, text has {}: {wire:?}", lines.len(), want.len());
    let first = lines[0];
    let last = lines[lines.len() - 1];
    assert!(first.len() >= 4, "first line too short: {wire:?}");
    assert_eq!(first[..3], digits, "first line has the wrong code: {wire:?}");
    assert!(first[..3].iter().all(u8::is_ascii_digit), "code is not 3 digits: {wire:?}");
    assert!(last.len() >= 4, "last line too short: {wire:?}");
    assert_eq!(last[..3], digits, "last line has the wrong code: {wire:?}");
    assert_eq!(last[3], b' ', "last line must be `ddd `: {wire:?}");
    if lines.len() == 1 {
        assert_eq!(&first[4..], &want[0][..], "single-line text changed: {wire:?}");
        return;
    }
    assert_eq!(first[3], b'-', "first line of a multi-line reply must be `ddd-`");
    assert_eq!(&first[4..], &want[0][..], "first line text changed: {wire:?}");
    assert_eq!(&last[4..], &want[want.len() - 1][..], "last line text changed: {wire:?}");
    for (line, want) in lines[1..lines.len() - 1].iter().zip(&want[1..want.len() - 1]) {
        assert!(
            !(line.len() >= 4 && line[..3] == digits && line[3] == b' '),
            "a middle line looks like the end of the reply: {wire:?}"
        );
        assert!(
            *line == &want[..] || (line.first() == Some(&b' ') && line[1..] == want[..]),
            "middle line text changed: {line:?} for {want:?}"
        );
    }
}

/// Splits at CRLF; a LF without CR before it stays inside a line (and fails the check).
fn split_crlf(body: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < body.len() {
        if body[i] == b'\r' && body[i + 1] == b'\n' {
            lines.push(&body[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    lines.push(&body[start..]);
    lines
}
