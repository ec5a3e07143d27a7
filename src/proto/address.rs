//! Data-connection addresses: PORT and PASV (RFC 959 §4.1.2, §4.2.2) and their extended forms
//! EPRT and EPSV (RFC 2428), parsed and formatted. Used by the server and by clients such as
//! the benchmark.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

/// Why an address argument or reply does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    /// Not of the form the command defines.
    Malformed,
    /// A number out of range (a byte over 255, port 0).
    OutOfRange,
    /// EPRT with a protocol other than 1 (IPv4) or 2 (IPv6).
    UnsupportedProtocol,
}

impl std::fmt::Display for AddressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AddressError::Malformed => "malformed address",
            AddressError::OutOfRange => "address number out of range",
            AddressError::UnsupportedProtocol => "unsupported network protocol",
        })
    }
}

impl std::error::Error for AddressError {}

/// Maps an IPv4-mapped IPv6 address (what a dual-stack socket reports for an IPv4 peer) to
/// plain IPv4, so comparisons and PASV replies see the address the client sees.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parses six comma-separated decimal bytes `h1,h2,h3,h4,p1,p2` (PORT argument, PASV reply).
fn parse_six(s: &[u8]) -> Result<SocketAddrV4, AddressError> {
    let mut n = [0u8; 6];
    let mut parts = s.split(|&b| b == b',');
    for slot in n.iter_mut() {
        let part = super::command::trim(parts.next().ok_or(AddressError::Malformed)?);
        if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
            return Err(AddressError::Malformed);
        }
        let v = part.iter().fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
        *slot = u8::try_from(v).map_err(|_| AddressError::OutOfRange)?;
    }
    if parts.next().is_some() {
        return Err(AddressError::Malformed);
    }
    let [a, b, c, d, p1, p2] = n;
    let port = u16::from_be_bytes([p1, p2]);
    if port == 0 {
        return Err(AddressError::OutOfRange);
    }
    Ok(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port))
}

/// Parses a PORT argument: `h1,h2,h3,h4,p1,p2`.
pub fn parse_port(arg: &[u8]) -> Result<SocketAddrV4, AddressError> {
    parse_six(super::command::trim(arg))
}

/// Parses an EPRT argument: `<d>proto<d>address<d>port<d>`, where `<d>` is any printable
/// ASCII character (usually `|`).
pub fn parse_eprt(arg: &[u8]) -> Result<SocketAddr, AddressError> {
    let arg = super::command::trim(arg);
    let (&delim, rest) = arg.split_first().ok_or(AddressError::Malformed)?;
    if !(33..=126).contains(&delim) {
        return Err(AddressError::Malformed);
    }
    let mut fields = rest.split(|&b| b == delim);
    let (Some(proto), Some(addr), Some(port), Some(b""), None) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(AddressError::Malformed);
    };
    let addr = std::str::from_utf8(addr).map_err(|_| AddressError::Malformed)?;
    let ip: IpAddr = match proto {
        b"1" => addr.parse::<Ipv4Addr>().map_err(|_| AddressError::Malformed)?.into(),
        b"2" => addr.parse::<Ipv6Addr>().map_err(|_| AddressError::Malformed)?.into(),
        p if !p.is_empty() && p.iter().all(u8::is_ascii_digit) => {
            return Err(AddressError::UnsupportedProtocol)
        }
        _ => return Err(AddressError::Malformed),
    };
    let port = parse_port_number(port)?;
    Ok(SocketAddr::new(ip, port))
}

fn parse_port_number(s: &[u8]) -> Result<u16, AddressError> {
    if s.is_empty() || s.len() > 5 || !s.iter().all(u8::is_ascii_digit) {
        return Err(AddressError::Malformed);
    }
    let v = s.iter().fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    match u16::try_from(v) {
        Ok(0) | Err(_) => Err(AddressError::OutOfRange),
        Ok(p) => Ok(p),
    }
}

/// Formats the text of a 227 reply for `addr`.
pub fn format_pasv(addr: SocketAddrV4, out: &mut String) {
    let [a, b, c, d] = addr.ip().octets();
    let [p1, p2] = addr.port().to_be_bytes();
    let _ = write!(out, "Entering Passive Mode ({a},{b},{c},{d},{p1},{p2}).");
}

/// Formats the text of a 229 reply for `port`.
pub fn format_epsv(port: u16, out: &mut String) {
    let _ = write!(out, "Entering Extended Passive Mode (|||{port}|)");
}

/// Formats a PORT argument (for clients).
pub fn format_port(addr: SocketAddrV4) -> String {
    let [a, b, c, d] = addr.ip().octets();
    let [p1, p2] = addr.port().to_be_bytes();
    format!("{a},{b},{c},{d},{p1},{p2}")
}

/// Formats an EPRT argument (for clients).
pub fn format_eprt(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!("|1|{ip}|{}|", addr.port()),
        IpAddr::V6(ip) => format!("|2|{ip}|{}|", addr.port()),
    }
}

/// Finds the address in a 227 reply text: the first run of six comma-separated numbers
/// (RFC 959 leaves the surrounding text free, and servers differ).
pub fn parse_pasv_reply(text: &[u8]) -> Result<SocketAddrV4, AddressError> {
    let start = text.iter().position(u8::is_ascii_digit).ok_or(AddressError::Malformed)?;
    let rest = text.get(start..).unwrap_or_default();
    let end =
        rest.iter().position(|&b| !(b.is_ascii_digit() || b == b',' || b == b' ')).unwrap_or(rest.len());
    parse_six(super::command::trim(rest.get(..end).unwrap_or_default()))
}

/// Finds the port in a 229 reply text: `(<d><d><d>port<d>)`.
pub fn parse_epsv_reply(text: &[u8]) -> Result<u16, AddressError> {
    let open = text.iter().position(|&b| b == b'(').ok_or(AddressError::Malformed)?;
    let inner = text.get(open + 1..).unwrap_or_default();
    let close = inner.iter().position(|&b| b == b')').ok_or(AddressError::Malformed)?;
    let inner = inner.get(..close).unwrap_or_default();
    let (&d, rest) = inner.split_first().ok_or(AddressError::Malformed)?;
    match rest {
        [d2, d3, port @ .., d4] if *d2 == d && *d3 == d && *d4 == d => parse_port_number(port),
        _ => Err(AddressError::Malformed),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn port_table() {
        let v4 = |a, b, c, d, p| Ok(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), p));
        let cases: &[(&[u8], Result<SocketAddrV4, AddressError>)] = &[
            (b"127,0,0,1,4,1", v4(127, 0, 0, 1, 1025)),
            (b" 10,1,2,3,255,255 ", v4(10, 1, 2, 3, 65535)),
            (b"127, 0, 0, 1, 0, 21", v4(127, 0, 0, 1, 21)),
            (b"127,0,0,1,0,0", Err(AddressError::OutOfRange)),
            (b"127,0,0,1,4,256", Err(AddressError::OutOfRange)),
            (b"127,0,0,1,4", Err(AddressError::Malformed)),
            (b"127,0,0,1,4,1,9", Err(AddressError::Malformed)),
            (b"127,0,0,1,4,", Err(AddressError::Malformed)),
            (b"127,0,0,1,-4,1", Err(AddressError::Malformed)),
            (b"1270,0,0,1,4,1", Err(AddressError::Malformed)),
            (b"", Err(AddressError::Malformed)),
        ];
        for (arg, want) in cases {
            assert_eq!(parse_port(arg), *want, "{}", String::from_utf8_lossy(arg));
        }
    }

    #[test]
    fn eprt_table() {
        let cases: &[(&[u8], Result<SocketAddr, AddressError>)] = &[
            (b"|1|132.235.1.2|6275|", Ok("132.235.1.2:6275".parse().unwrap())),
            (b"|2|::1|5282|", Ok("[::1]:5282".parse().unwrap())),
            (b"!2!1080::8:800:200C:417A!5282!", Ok("[1080::8:800:200C:417A]:5282".parse().unwrap())),
            (b"|3|1.2.3.4|5|", Err(AddressError::UnsupportedProtocol)),
            (b"|1|::1|5|", Err(AddressError::Malformed)),
            (b"|2|1.2.3.4|5|", Err(AddressError::Malformed)),
            (b"|1|1.2.3.4|0|", Err(AddressError::OutOfRange)),
            (b"|1|1.2.3.4|65536|", Err(AddressError::OutOfRange)),
            (b"|1|1.2.3.4|5", Err(AddressError::Malformed)),
            (b"|1|1.2.3.4|5||", Err(AddressError::Malformed)),
            (b" 1 1.2.3.4 5 ", Err(AddressError::Malformed)),
            (b"|", Err(AddressError::Malformed)),
        ];
        for (arg, want) in cases {
            assert_eq!(parse_eprt(arg), *want, "{}", String::from_utf8_lossy(arg));
        }
    }

    #[test]
    fn replies_round_trip() {
        let addr = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 50001);
        let mut s = String::new();
        format_pasv(addr, &mut s);
        assert_eq!(s, "Entering Passive Mode (192,168,1,2,195,81).");
        assert_eq!(parse_pasv_reply(s.as_bytes()), Ok(addr));
        assert_eq!(parse_pasv_reply(b"=192,168,1,2,195,81"), Ok(addr));
        s.clear();
        format_epsv(50001, &mut s);
        assert_eq!(parse_epsv_reply(s.as_bytes()), Ok(50001));
        assert_eq!(parse_epsv_reply(b"(|||)"), Err(AddressError::Malformed));
        assert_eq!(parse_epsv_reply(b"(||1|2|)"), Err(AddressError::Malformed));
        assert_eq!(parse_port(format_port(addr).as_bytes()), Ok(addr));
        let v6: SocketAddr = "[::1]:2121".parse().unwrap();
        assert_eq!(parse_eprt(format_eprt(v6).as_bytes()), Ok(v6));
    }
}
