//! TYPE A line-end conversion (RFC 959 §3.1.1.1): files keep Unix LF, the wire carries CRLF.
//! Pure functions over chunks; a CR at a chunk boundary is carried in a flag.

/// LF -> CRLF for sending. An LF already preceded by CR is left alone, so a file with DOS
/// line ends is not doubled. `prev_cr` says whether the previous chunk ended in CR.
pub(crate) fn to_wire(input: &[u8], prev_cr: &mut bool, out: &mut Vec<u8>) {
    for &b in input {
        if b == b'\n' && !*prev_cr {
            out.push(b'\r');
        }
        out.push(b);
        *prev_cr = b == b'\r';
    }
}

/// CRLF -> LF for receiving; a lone CR is kept. `pending_cr` holds a CR that ended the
/// previous chunk until the next byte shows whether an LF follows.
pub(crate) fn from_wire(input: &[u8], pending_cr: &mut bool, out: &mut Vec<u8>) {
    for &b in input {
        if *pending_cr {
            *pending_cr = false;
            if b != b'\n' {
                out.push(b'\r');
            }
        }
        if b == b'\r' {
            *pending_cr = true;
        } else {
            out.push(b);
        }
    }
}

/// The sending side's conversion state: a no-op in binary mode.
#[derive(Debug, Default)]
pub(crate) struct ToWire {
    ascii: bool,
    prev_cr: bool,
    out: Vec<u8>,
}

impl ToWire {
    pub(crate) fn new(ascii: bool) -> Self {
        ToWire { ascii, ..ToWire::default() }
    }

    /// The bytes to put on the wire for `data`.
    pub(crate) fn convert<'a>(&'a mut self, data: &'a [u8]) -> &'a [u8] {
        if !self.ascii {
            return data;
        }
        self.out.clear();
        to_wire(data, &mut self.prev_cr, &mut self.out);
        &self.out
    }
}

/// The receiving side's conversion state: a no-op in binary mode.
#[derive(Debug, Default)]
pub(crate) struct FromWire {
    ascii: bool,
    pending_cr: bool,
    out: Vec<u8>,
}

impl FromWire {
    pub(crate) fn new(ascii: bool) -> Self {
        FromWire { ascii, ..FromWire::default() }
    }

    /// The bytes to store for `data`; at `eof` a held-back CR is released.
    pub(crate) fn convert<'a>(&'a mut self, data: &'a [u8], eof: bool) -> &'a [u8] {
        if !self.ascii {
            return data;
        }
        self.out.clear();
        from_wire(data, &mut self.pending_cr, &mut self.out);
        if eof && std::mem::take(&mut self.pending_cr) {
            self.out.push(b'\r');
        }
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(f: fn(&[u8], &mut bool, &mut Vec<u8>), parts: &[&[u8]]) -> Vec<u8> {
        let (mut flag, mut out) = (false, Vec::new());
        for p in parts {
            f(p, &mut flag, &mut out);
        }
        out
    }

    #[test]
    fn sending() {
        assert_eq!(chunks(to_wire, &[b"a\nb\r\nc\n"]), b"a\r\nb\r\nc\r\n");
        assert_eq!(chunks(to_wire, &[b"a\r", b"\nb\n"]), b"a\r\nb\r\n");
    }

    #[test]
    fn receiving() {
        assert_eq!(chunks(from_wire, &[b"a\r\nb\rc\n"]), b"a\nb\rc\n");
        assert_eq!(chunks(from_wire, &[b"a\r", b"\nb\r", b"x"]), b"a\nb\rx");
        // A CR at the very end stays pending; the caller flushes it at EOF.
        let (mut pending, mut out) = (false, Vec::new());
        from_wire(b"z\r", &mut pending, &mut out);
        assert!(pending);
        assert_eq!(out, b"z");
    }
}
