//! PORT/EPRT arguments and PASV/EPSV reply texts: parsing never panics, and whatever parses
//! formats back to the same address. Addresses made from the input bytes round-trip through
//! every formatter too.
//!
//! Input: any bytes (an argument or a reply text).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use libfuzzer_sys::fuzz_target;
use ringftp::proto::address::{
    format_eprt, format_epsv, format_pasv, format_port, parse_eprt, parse_epsv_reply, parse_pasv_reply,
    parse_port, AddressError,
};
use ringftp::proto::{parse, Command};

fn check_v4(a: SocketAddrV4) {
    let port = parse_port(format_port(a).as_bytes());
    let mut pasv = String::new();
    format_pasv(a, &mut pasv);
    let pasv = parse_pasv_reply(pasv.as_bytes());
    if a.port() == 0 {
        assert_eq!(port, Err(AddressError::OutOfRange));
        assert_eq!(pasv, Err(AddressError::OutOfRange));
    } else {
        assert_eq!(port, Ok(a), "PORT round trip");
        assert_eq!(pasv, Ok(a), "PASV round trip");
        let line = format!("PORT {}", format_port(a));
        assert_eq!(parse(line.as_bytes()), Ok(Command::Port(a)));
    }
}

fn check_any(a: SocketAddr) {
    let eprt = parse_eprt(format_eprt(a).as_bytes());
    let mut epsv = String::new();
    format_epsv(a.port(), &mut epsv);
    let epsv = parse_epsv_reply(epsv.as_bytes());
    if a.port() == 0 {
        assert_eq!(eprt, Err(AddressError::OutOfRange));
        assert_eq!(epsv, Err(AddressError::OutOfRange));
    } else {
        assert_eq!(eprt, Ok(a), "EPRT round trip");
        assert_eq!(epsv, Ok(a.port()), "EPSV round trip");
        let line = format!("EPRT {}", format_eprt(a));
        assert_eq!(parse(line.as_bytes()), Ok(Command::Eprt(a)));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = parse_port(data) {
        assert_ne!(a.port(), 0);
        assert_eq!(parse_port(format_port(a).as_bytes()), Ok(a));
        check_v4(a);
    }
    if let Ok(a) = parse_eprt(data) {
        assert_ne!(a.port(), 0);
        assert_eq!(parse_eprt(format_eprt(a).as_bytes()), Ok(a));
        if let SocketAddr::V6(v6) = a {
            assert_eq!((v6.flowinfo(), v6.scope_id()), (0, 0));
        }
        check_any(a);
    }
    if let Ok(a) = parse_pasv_reply(data) {
        assert_ne!(a.port(), 0);
        let mut text = String::new();
        format_pasv(a, &mut text);
        assert_eq!(parse_pasv_reply(text.as_bytes()), Ok(a));
        check_v4(a);
    }
    if let Ok(p) = parse_epsv_reply(data) {
        assert_ne!(p, 0);
        let mut text = String::new();
        format_epsv(p, &mut text);
        assert_eq!(parse_epsv_reply(text.as_bytes()), Ok(p));
    }
    // The same bytes as a command argument: PORT/EPRT parse exactly when the functions do
    // (after the command's own handling of spaces).
    for verb in [&b"PORT "[..], b"EPRT "] {
        let mut line = verb.to_vec();
        line.extend_from_slice(data);
        let _ = parse(&line);
    }
    // Addresses made from the bytes.
    if let [a, b, c, d, p1, p2, ..] = *data {
        check_v4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), u16::from_be_bytes([p1, p2])));
        check_any(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), u16::from_be_bytes([p1, p2])));
    }
    if data.len() >= 18 {
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&data[..16]);
        check_any(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), u16::from_be_bytes([data[16], data[17]])));
    }
});
