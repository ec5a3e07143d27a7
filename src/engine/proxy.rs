//! The PROXY protocol (HAProxy's spec, versions 1 and 2): behind a TCP load balancer every
//! connection comes from the balancer, and the header it sends first names the real client.
//!
//! Only balancers the host names ([`crate::ServerBuilder::proxy_protocol_from`]) are
//! believed. From them the header is required, read with a deadline before anything else,
//! and a connection without one (or with garbage) is closed. From any other address a
//! connection that starts with a header is closed, since a client could otherwise pick its
//! own address; one without a header gets normal service, so a node can be reached directly
//! too. That check peeks at what has arrived by the time the connection is served and does
//! not wait (clients speak only after the greeting): a header that arrives later reaches the
//! session as a line it does not know (`PROXY ...` gets 500; v2's signature contains `QUIT`)
//! and is never believed either way.
//!
//! Framing is ours and reads exactly the header's bytes, so whatever the client sent after
//! it (an upload's first bytes, on a data connection) stays in the socket; the parsing is
//! the `ppp` crate's.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use ppp::{v1, v2, HeaderResult};
use tokio::net::TcpStream;

use crate::proto::address::canonical;

/// How long a trusted balancer has to send its header. A balancer sends it at once, with
/// the connection; the bound only keeps a silent peer from holding a task.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The v2 header's first 12 bytes.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 header's longest form, CRLF included (the spec's bound).
const V1_MAX: usize = 107;
/// The v2 header's longest address-and-TLV part accepted: addresses are at most 216 bytes;
/// the rest is room for a balancer's TLVs (unique id, TLS details).
const V2_MAX_BODY: usize = 4096;

/// Whether `ip` is one of the balancers in `from`.
pub(crate) fn trusted(from: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    from.iter().any(|net| net.contains(&ip))
}

/// The real client of a control connection accepted from `peer`, or `None` when the
/// connection is to be closed unanswered. Without configured balancers: `peer`, at once.
pub(crate) async fn client_address(
    from: &[IpNet],
    stream: &TcpStream,
    peer: SocketAddr,
) -> Option<SocketAddr> {
    if from.is_empty() {
        return Some(peer);
    }
    match admit(from, stream, peer).await {
        Ok(client) => {
            if client != peer {
                tracing::debug!(%peer, %client, "PROXY header");
            }
            Some(client)
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "connection closed: PROXY protocol");
            None
        }
    }
}

/// [`client_address`]'s rule, shared with passive data connections: from a balancer, the
/// header's source (or `peer` for a header that names none: a health check's LOCAL, v1's
/// UNKNOWN); from anyone else, `peer`, unless the connection starts with a header.
pub(crate) async fn admit(from: &[IpNet], stream: &TcpStream, peer: SocketAddr) -> io::Result<SocketAddr> {
    if trusted(from, peer.ip()) {
        match tokio::time::timeout(HEADER_TIMEOUT, read_header(stream)).await {
            Ok(Ok(source)) => Ok(source.unwrap_or(peer)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(invalid("no PROXY header from a balancer address")),
        }
    } else if starts_with_header(stream) {
        Err(invalid("a PROXY header from an address that is not a configured balancer"))
    } else {
        Ok(peer)
    }
}

fn invalid(text: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text.into())
}

/// Whether what has arrived so far starts like a header; does not wait.
fn starts_with_header(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 12];
    let Ok(n) = nix::sys::socket::recv(
        std::os::fd::AsRawFd::as_raw_fd(stream),
        &mut buf,
        nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    ) else {
        return false;
    };
    looks_like_header(&buf[..n])
}

fn looks_like_header(start: &[u8]) -> bool {
    start.starts_with(b"PROXY ") || start.starts_with(&V2_SIGNATURE)
}

/// Reads one header, exactly its bytes, and returns the source address it names.
async fn read_header(stream: &TcpStream) -> io::Result<Option<SocketAddr>> {
    // 15 bytes: the shortest v1 header (`PROXY UNKNOWN\r\n`); v2's fixed part is 16.
    let mut header = vec![0u8; 15];
    read_exact(stream, &mut header).await?;
    if header.starts_with(&V2_SIGNATURE) {
        header.push(0);
        read_exact(stream, &mut header[15..]).await?;
        let body = usize::from(u16::from_be_bytes([header[14], header[15]]));
        if body > V2_MAX_BODY {
            return Err(invalid(format!("PROXY v2 header of {body} bytes")));
        }
        header.resize(16 + body, 0);
        read_exact(stream, &mut header[16..]).await?;
    } else if header.starts_with(b"PROXY ") {
        // Byte by byte: a v1 line has no length field, and reading past its CRLF would take
        // the client's bytes.
        while !header.ends_with(b"\r\n") {
            if header.len() >= V1_MAX {
                return Err(invalid("PROXY v1 header without CRLF"));
            }
            let mut byte = [0u8; 1];
            read_exact(stream, &mut byte).await?;
            header.push(byte[0]);
        }
    } else {
        return Err(invalid("not a PROXY header"));
    }
    parse(&header)
}

/// The source address a complete header names (`None`: it names none to use).
pub(crate) fn parse(header: &[u8]) -> io::Result<Option<SocketAddr>> {
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            v1::Addresses::Unknown => None,
        }),
        HeaderResult::V2(Ok(h)) => Ok(match (h.command, h.addresses) {
            (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            // LOCAL (the balancer's own health check), UNIX or unspecified addresses.
            _ => None,
        }),
        HeaderResult::V1(Err(e)) => Err(invalid(format!("bad PROXY v1 header: {e}"))),
        HeaderResult::V2(Err(e)) => Err(invalid(format!("bad PROXY v2 header: {e}"))),
    }
}

async fn read_exact(stream: &TcpStream, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        stream.readable().await?;
        match stream.try_read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(src: SocketAddr, dst: SocketAddr, command: v2::Command) -> Vec<u8> {
        let builder =
            v2::Builder::with_addresses(v2::Version::Two | command, v2::Protocol::Stream, (src, dst));
        builder.build().unwrap()
    }

    #[test]
    fn parses_both_versions() {
        let src: SocketAddr = "192.0.2.7:4242".parse().unwrap();
        let dst: SocketAddr = "198.51.100.1:21".parse().unwrap();
        assert_eq!(parse(b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 21\r\n").unwrap(), Some(src));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), None);
        assert_eq!(parse(&v2(src, dst, v2::Command::Proxy)).unwrap(), Some(src));
        assert_eq!(parse(&v2(src, dst, v2::Command::Local)).unwrap(), None);
        let src6: SocketAddr = "[2001:db8::7]:4242".parse().unwrap();
        let dst6: SocketAddr = "[2001:db8::1]:21".parse().unwrap();
        assert_eq!(parse(&v2(src6, dst6, v2::Command::Proxy)).unwrap(), Some(src6));
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            &b"PROXY TCP4 999.0.0.1 1.1.1.1 1 2\r\n"[..],
            b"PROXY TCP9 x\r\n",
            b"USER anonymous\r\n",
            b"\r\n\r\n\0\r\nQUIT\n\x99\x11\0\0",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(looks_like_header(b"PROXY TCP4 "));
        assert!(looks_like_header(&V2_SIGNATURE));
        assert!(!looks_like_header(b"USER x\r\n"));
    }

    #[test]
    fn trust_is_by_network_and_sees_through_mapped_addresses() {
        let from: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        assert!(trusted(&from, "127.0.0.1".parse().unwrap()));
        assert!(trusted(&from, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(!trusted(&from, "127.0.0.2".parse().unwrap()));
    }
}
