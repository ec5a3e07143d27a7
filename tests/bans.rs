//! The ban list across connections (issue 13 §2): a brute force from one address is refused at
//! connect while another address logs in; a user name locked out after failures from any
//! address; the allow-list is never banned. 127.0.0.2 stands for a second host.

mod common;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use common::{Control, TestServer};
use socket2::{Domain, Protocol, Socket, Type};

const T: Duration = Duration::from_secs(10);

/// A control connection from `from`, and its first reply.
fn connect_from(from: &str, to: SocketAddr) -> (Control, std::io::Result<(u16, String)>) {
    let from: IpAddr = from.parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket.connect_timeout(&to.into(), T).unwrap();
    let stream: TcpStream = socket.into();
    let mut c = Control::over(stream, T);
    let first = c.reply();
    (c, first)
}

/// One failed login from `from`; the session goes on.
fn fail_login(c: &mut Control, user: &str) {
    assert_eq!(c.cmd(&format!("USER {user}")).0, 331);
    assert_eq!(c.cmd("PASS wrong").0, 530);
}

#[test]
fn brute_force_from_one_address_is_refused_while_another_logs_in() {
    let server = TestServer::builder("bans").args(["--ban-threshold", "4", "--ban-time", "60"]).start();
    // Two connections, two failures each (the third in one session would close it).
    for _ in 0..2 {
        let (mut c, first) = connect_from("127.0.0.2", server.addr());
        assert_eq!(first.unwrap().0, 220);
        fail_login(&mut c, "bob");
        fail_login(&mut c, "bob");
    }
    // The next connection from that address is refused at once with 421.
    let (mut c, first) = connect_from("127.0.0.2", server.addr());
    let (code, text) = first.unwrap();
    assert_eq!(code, 421, "{text}\n{}", server.log_for_failure());
    assert!(text.contains("Too many failures"), "{text}");
    assert!(c.reply().is_err(), "the connection is closed after the 421");
    // Another address still logs in, with the right password, as the same user.
    let (mut c, first) = connect_from("127.0.0.1", server.addr());
    assert_eq!(first.unwrap().0, 220);
    assert_eq!(c.cmd("USER bob").0, 331);
    assert_eq!(c.cmd("PASS secret").0, 230, "{}", server.log_for_failure());
    assert!(server.stderr_log().contains("address banned"));
}

#[test]
fn user_lockout_counts_failures_from_any_address() {
    let server = TestServer::builder("lockout")
        .args(["--user-lockout", "2", "--ban-threshold", "100", "--ban-time", "60"])
        .start();
    let (mut a, _) = connect_from("127.0.0.2", server.addr());
    fail_login(&mut a, "bob");
    let (mut b, _) = connect_from("127.0.0.3", server.addr());
    fail_login(&mut b, "bob");
    // Locked out: even the right password fails now, from a third address.
    let (mut c, _) = connect_from("127.0.0.4", server.addr());
    assert_eq!(c.cmd("USER bob").0, 331);
    assert_eq!(c.cmd("PASS secret").0, 530, "{}", server.log_for_failure());
    assert!(server.stderr_log().contains("locked out"));
}

#[test]
fn allow_list_is_never_banned() {
    let server = TestServer::builder("banallow")
        .args(["--ban-threshold", "2", "--ban-time", "60", "--ban-allow", "127.0.0.2/32"])
        .start();
    for _ in 0..2 {
        let (mut c, first) = connect_from("127.0.0.2", server.addr());
        assert_eq!(first.unwrap().0, 220);
        fail_login(&mut c, "bob");
        fail_login(&mut c, "bob");
    }
    let (mut c, first) = connect_from("127.0.0.2", server.addr());
    assert_eq!(first.unwrap().0, 220, "{}", server.log_for_failure());
    assert_eq!(c.cmd("USER bob").0, 331);
    assert_eq!(c.cmd("PASS secret").0, 230);
}
