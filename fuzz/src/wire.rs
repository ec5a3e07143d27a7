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
    // No allocation here: this runs for every reply the session fuzzer sees.
    assert!((100..600).contains(&code), "reply code {code} out of range");
    let digits = [b'0' + (code / 100) as u8, b'0' + (code / 10 % 10) as u8, b'0' + (code % 10) as u8];
    let body = wire.strip_suffix(b"\r\n").unwrap_or_else(|| panic!("reply does not end with CRLF: {wire:?}"));
    // Every LF must be preceded by CR (so lines split at CRLF) and no other CR occurs.
    for (i, &b) in body.iter().enumerate() {
        match b {
            b'\n' => assert!(i > 0 && body[i - 1] == b'\r', "bare LF inside a reply: {wire:?}"),
            b'\r' => assert!(body.get(i + 1) == Some(&b'\n'), "bare CR inside a reply: {wire:?}"),
            _ => {}
        }
    }
    // What the lines should carry: the text's lines with CRs removed.
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let count = text.iter().filter(|&&b| b == b'\n').count() + 1;
    let wire_count = body.iter().filter(|&&b| b == b'\n').count() + 1;
    assert_eq!(wire_count, count, "reply has {wire_count} lines, text has {count}: {wire:?}");
    let same = |line: &[u8], want: &[u8]| line.iter().eq(want.iter().filter(|&&b| b != b'\r'));
    let lines = body.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    for (i, (line, want)) in lines.zip(text.split(|&b| b == b'\n')).enumerate() {
        let (first, last) = (i == 0, i + 1 == count);
        if first || last {
            assert!(line.len() >= 4 && line[..3] == digits, "line {i} lacks the code: {wire:?}");
            let sep = if last { b' ' } else { b'-' };
            assert_eq!(line[3], sep, "line {i} must be `ddd{}`: {wire:?}", sep as char);
            assert!(same(&line[4..], want), "line {i} text changed: {wire:?}");
        } else {
            assert!(
                !(line.len() >= 4 && line[..3] == digits && line[3] == b' '),
                "a middle line ends the reply: {wire:?}"
            );
            let ok = same(line, want) || (line.first() == Some(&b' ') && same(&line[1..], want));
            assert!(ok, "middle line text changed: {line:?} for {want:?}");
        }
    }
}
