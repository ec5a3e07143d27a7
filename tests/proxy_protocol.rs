//! The PROXY protocol and per-network PASV addresses (issue 12 §2), with hand-made headers
//! over raw sockets: 127.0.0.1 stands for the balancer, other loopback addresses (and the
//! documentation networks named in headers) for clients. The real balancer is in
//! tests/haproxy.rs.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use common::{Control, TestServer};
use socket2::{Domain, Protocol, Socket, Type};

const T: Duration = Duration::from_secs(10);

fn bound_stream(from: &str, to: SocketAddr) -> TcpStream {
    let from: IpAddr = from.parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket.connect_timeout(&to.into(), T).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(T)).unwrap();
    stream
}

/// A v1 header naming `client` (to `server`).
fn v1(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    format!("PROXY TCP4 {} {} {} {}\r\n", client.ip(), server.ip(), client.port(), server.port()).into_bytes()
}

/// A v2 header (PROXY command, TCP over IPv4) naming `client`.
fn v2(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let (IpAddr::V4(c), IpAddr::V4(s)) = (client.ip(), server.ip()) else { panic!("IPv4 only") };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&c.octets());
    h.extend_from_slice(&s.octets());
    h.extend_from_slice(&client.port().to_be_bytes());
    h.extend_from_slice(&server.port().to_be_bytes());
    h
}

/// A control connection from `from` that first sends `header`, and its first reply.
fn via(from: &str, to: SocketAddr, header: &[u8]) -> (Control, std::io::Result<(u16, String)>) {
    let mut stream = bound_stream(from, to);
    stream.write_all(header).unwrap();
    let mut c = Control::over(stream, T);
    let first = c.reply();
    (c, first)
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn balanced(tag: &str, extra: &[&str]) -> TestServer {
    TestServer::builder(tag)
        .args(["--proxy-protocol-from", "127.0.0.1/32"])
        .args(extra.iter().copied())
        .start()
}

/// The login lines' peers, as the server logged them.
fn logged_login_peers(server: &TestServer) -> Vec<String> {
    server
        .stderr_log()
        .lines()
        .filter(|l| l.contains(" login") && l.contains("peer="))
        .filter_map(|l| {
            l.split("peer=").nth(1).and_then(|r| r.split(&[' ', ':'][..]).next()).map(str::to_owned)
        })
        .collect()
}

#[test]
fn v1_and_v2_headers_name_the_client_in_logs() {
    let server = balanced("pp-versions", &[]);
    for (header, client) in [
        (v1(sock("192.0.2.7:4000"), server.addr()), "192.0.2.7"),
        (v2(sock("198.51.100.9:4001"), server.addr()), "198.51.100.9"),
    ] {
        let (mut c, first) = via("127.0.0.1", server.addr(), &header);
        assert_eq!(first.unwrap().0, 220, "{}", server.log_for_failure());
        c.login(common::USER, common::PASS);
        assert_eq!(c.cmd("QUIT").0, 221);
        let ok = server.wait_for_log(T, |_| logged_login_peers(&server).iter().any(|p| p == client));
        assert!(
            ok,
            "no login logged from {client}: {:?}\n{}",
            logged_login_peers(&server),
            server.log_for_failure()
        );
    }
    assert!(
        !logged_login_peers(&server).iter().any(|p| p == "127.0.0.1"),
        "{:?}",
        logged_login_peers(&server)
    );
}

#[test]
fn per_ip_limit_and_bans_use_the_real_client() {
    let server =
        balanced("pp-limits", &["--max-sessions-per-ip", "1", "--ban-threshold", "2", "--ban-time", "60"]);
    let a = sock("203.0.113.10:5000");
    let (_held, first) = via("127.0.0.1", server.addr(), &v2(a, server.addr()));
    assert_eq!(first.unwrap().0, 220);
    // The same client again through the same balancer: over its limit.
    let (_c, first) = via("127.0.0.1", server.addr(), &v2(sock("203.0.113.10:5001"), server.addr()));
    let (code, text) = first.unwrap();
    assert_eq!(code, 421, "{text}");
    assert!(text.contains("your address"), "{text}");
    // Another client through the same balancer: served.
    let (mut c, first) = via("127.0.0.1", server.addr(), &v1(sock("203.0.113.20:5002"), server.addr()));
    assert_eq!(first.unwrap().0, 220);
    // Two failures ban that client, not the balancer.
    for _ in 0..2 {
        assert_eq!(c.cmd("USER bob").0, 331);
        assert_eq!(c.cmd("PASS wrong").0, 530);
    }
    drop(c);
    let banned = || {
        let (_c, first) = via("127.0.0.1", server.addr(), &v1(sock("203.0.113.20:5003"), server.addr()));
        first.map(|r| r.0).unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + T;
    while banned() != 421 {
        assert!(std::time::Instant::now() < deadline, "never banned\n{}", server.log_for_failure());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_c, first) = via("127.0.0.1", server.addr(), &v1(sock("203.0.113.30:5004"), server.addr()));
    assert_eq!(first.unwrap().0, 220, "another client behind the same balancer is not banned");
}

#[test]
fn trusted_peer_without_header_is_closed() {
    let server = balanced("pp-missing", &[]);
    // Garbage instead of a header: closed at once, never greeted.
    let mut s = bound_stream("127.0.0.1", server.addr());
    s.write_all(b"USER bob\r\nPASS secret\r\n").unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)), "greeted without a header");
    // Silence: closed after the header deadline (5 s), never greeted.
    let mut s = bound_stream("127.0.0.1", server.addr());
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)), "greeted without a header");
    assert!(server.stderr_log().contains("no PROXY header"), "{}", server.log_for_failure());
    // A v2 header with a bad version byte.
    let mut bad = v2(sock("192.0.2.1:1"), server.addr());
    bad[12] = 0x31;
    let (_c, first) = via("127.0.0.1", server.addr(), &bad);
    assert!(first.is_err(), "{first:?}");
}

#[test]
fn untrusted_peer_with_header_is_refused_and_without_is_served() {
    let server = balanced("pp-untrusted", &[]);
    let forged = v1(sock("10.9.9.9:1234"), server.addr());
    let (mut c, first) = via("127.0.0.2", server.addr(), &forged);
    match first {
        // The header was there when the connection was served: closed unanswered.
        Err(_) => assert!(server.wait_for_log(T, |l| l.contains("not a configured balancer"))),
        // It arrived a moment later: the session sees it as an unknown command.
        Ok((220, _)) => assert_eq!(c.reply().unwrap().0, 500),
        Ok(other) => panic!("{other:?}"),
    }
    // Without a header, a direct client gets normal service under its own address.
    let (mut c, first) = via("127.0.0.2", server.addr(), b"");
    assert_eq!(first.unwrap().0, 220);
    c.login(common::USER, common::PASS);
    assert!(server.wait_for_log(T, |_| logged_login_peers(&server).iter().any(|p| p == "127.0.0.2")));
    assert!(!logged_login_peers(&server).iter().any(|p| p == "10.9.9.9"));
}

/// `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` -> the address.
fn pasv_addr(text: &str) -> SocketAddr {
    let inner = text.split('(').nth(1).and_then(|r| r.split(')').next()).unwrap();
    let n: Vec<u16> = inner.split(',').map(|x| x.trim().parse().unwrap()).collect();
    let ip = std::net::Ipv4Addr::new(n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8);
    SocketAddr::new(ip.into(), n[4] * 256 + n[5])
}

#[test]
fn pasv_address_follows_the_client_network() {
    let server =
        balanced("pp-public", &["--public-address", "10.0.0.0/8=10.0.0.5,127.0.0.2/32=127.0.0.6,localhost"]);
    let cases = [
        (Some(sock("10.20.30.40:999")), "10.0.0.5"),
        (Some(sock("192.0.2.1:999")), "127.0.0.1"), // the name `localhost`
        (None, "127.0.0.6"),                        // direct from 127.0.0.2
    ];
    for (client, expect) in cases {
        let (mut c, first) = match client {
            Some(client) => via("127.0.0.1", server.addr(), &v2(client, server.addr())),
            None => via("127.0.0.2", server.addr(), b""),
        };
        assert_eq!(first.unwrap().0, 220);
        c.login(common::USER, common::PASS);
        let (code, text) = c.cmd("PASV");
        assert_eq!(code, 227, "{text}");
        assert_eq!(pasv_addr(&text).ip().to_string(), expect, "{client:?}: {text}");
        let (code, text) = c.cmd("EPSV");
        assert_eq!(code, 229, "{text}");
        assert!(text.contains("(|||"), "EPSV names only the port: {text}");
    }
}

#[test]
fn unresolvable_public_name_stops_the_start() {
    let out = common::run_timeout(
        std::process::Command::new(common::BIN).args([
            "--listen",
            "127.0.0.1:0",
            "--root",
            "/tmp",
            "--anonymous",
            "--public-address",
            "no-such-host.invalid",
        ]),
        Duration::from_secs(60),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-host.invalid"), "{err}");
}

/// A RETR of `name` over a passive port, its data connection made by `connect`.
fn passive_listing_from(c: &mut Control, connect: impl FnOnce(SocketAddr) -> TcpStream) -> Option<Vec<u8>> {
    let (code, text) = c.cmd("PASV");
    assert_eq!(code, 227, "{text}");
    let port = pasv_addr(&text).port();
    let mut data = connect(SocketAddr::from(([127, 0, 0, 1], port)));
    c.send("RETR hello.txt");
    let mut got = Vec::new();
    let read = data.read_to_end(&mut got);
    let (code, _) = c.reply().unwrap();
    if code == 150 {
        let (code, _) = c.reply().unwrap();
        (code == 226 && read.is_ok()).then_some(got)
    } else {
        None
    }
}

#[test]
fn passive_data_connections_are_checked_against_the_real_client() {
    let server = balanced("pp-data", &["--proxy-protocol-data", "--data-timeout", "2"]);
    std::fs::write(server.root().join("hello.txt"), b"hello\n").unwrap();
    let client = sock("127.0.0.2:7000");
    let (mut c, first) = via("127.0.0.1", server.addr(), &v2(client, server.addr()));
    assert_eq!(first.unwrap().0, 220);
    c.login(common::USER, common::PASS);
    // Through the balancer, with a header naming the session's client: served.
    let got = passive_listing_from(&mut c, |to| {
        let mut s = bound_stream("127.0.0.1", to);
        s.write_all(&v2(sock("127.0.0.2:7001"), to)).unwrap();
        s
    });
    assert_eq!(got.as_deref(), Some(&b"hello\n"[..]), "{}", server.log_for_failure());
    // Directly from the client (no header, not a balancer): served.
    let got = passive_listing_from(&mut c, |to| bound_stream("127.0.0.2", to));
    assert_eq!(got.as_deref(), Some(&b"hello\n"[..]));
    // Through the balancer for someone else: refused (a hijack), the transfer times out.
    let got = passive_listing_from(&mut c, |to| {
        let mut s = bound_stream("127.0.0.1", to);
        s.write_all(&v2(sock("127.0.0.9:7002"), to)).unwrap();
        s
    });
    assert_eq!(got, None);
    assert!(server.wait_for_log(T, |l| l.contains("refused data connection from a foreign address")));
}
