//! Many sessions through few passive ports (issue 13, "Narrow passive ranges"): once every
//! port of `--passive-ports` is taken, sessions share a listener and their data connections
//! are told apart by client address.
//!
//! Each session's control and data sockets are bound to a loopback source address of its own
//! (Linux routes all of 127/8 to lo), so a hundred sessions look like a hundred clients.
//! Every wait is bounded by a socket timeout or a deadline.

mod common;

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use socket2::{Domain, Socket, Type};

/// How long any single reply or read may take before the test gives up.
const WAIT: Duration = Duration::from_secs(30);

/// `127.0.0.n`.
fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A TCP connection to `to` from `from` (any port).
fn connect_from(from: IpAddr, to: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&to.into(), WAIT)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT))?;
    stream.set_write_timeout(Some(WAIT))?;
    Ok(stream)
}

/// A control connection from a chosen source address.
struct Client {
    from: IpAddr,
    server: SocketAddr,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(from: IpAddr, server: SocketAddr) -> Client {
        let stream = connect_from(from, server).unwrap_or_else(|e| panic!("control from {from}: {e}"));
        let mut c =
            Client { from, server, reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
        let (code, text) = c.reply();
        assert_eq!(code, 220, "greeting: {text}");
        c
    }

    /// A control connection through a PROXY-protocol balancer at `from`, for `client`.
    fn via_balancer(from: IpAddr, server: SocketAddr, client: SocketAddr) -> Client {
        let mut stream = connect_from(from, server).unwrap_or_else(|e| panic!("control from {from}: {e}"));
        stream.write_all(&proxy_v2(client, server)).unwrap();
        let mut c =
            Client { from, server, reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
        let (code, text) = c.reply();
        assert_eq!(code, 220, "greeting: {text}");
        c.log_in();
        c
    }

    fn login(from: IpAddr, server: SocketAddr) -> Client {
        let mut c = Client::connect(from, server);
        c.log_in();
        c
    }

    fn log_in(&mut self) {
        let c = self;
        assert_eq!(c.cmd(&format!("USER {USER}")).0, 331);
        assert_eq!(c.cmd(&format!("PASS {PASS}")).0, 230);
        assert_eq!(c.cmd("TYPE I").0, 200);
    }

    /// One reply, `(code, last line)`; multi-line replies are read to their end.
    fn reply(&mut self) -> (u16, String) {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.reader.read_line(&mut line).unwrap_or_else(|e| panic!("{}: reply: {e}", self.from));
            assert!(n > 0, "{}: control connection closed", self.from);
            if line.len() >= 4 && line.as_bytes()[3] == b' ' {
                let code = line[..3].parse().unwrap_or_else(|_| panic!("not a reply: {line:?}"));
                return (code, line.trim_end().to_string());
            }
        }
    }

    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }

    /// PASV or EPSV; the announced port, or the refusal.
    fn passive(&mut self, epsv: bool) -> Result<u16, (u16, String)> {
        let (code, text) = self.cmd(if epsv { "EPSV" } else { "PASV" });
        match code {
            229 => Ok(epsv_port(&text)),
            227 => Ok(pasv_port(&text)),
            _ => Err((code, text)),
        }
    }

    /// A data connection to `port` from this client's address.
    fn data(&self, port: u16) -> TcpStream {
        let to = SocketAddr::new(self.server.ip(), port);
        connect_from(self.from, to).unwrap_or_else(|e| panic!("{}: data connection to {to}: {e}", self.from))
    }

    /// RETR over a data connection already made; the bytes received.
    fn retr(&mut self, mut data: TcpStream, name: &str) -> Vec<u8> {
        let (code, text) = self.cmd(&format!("RETR {name}"));
        assert_eq!(code, 150, "{}: RETR {name}: {text}", self.from);
        let mut got = Vec::new();
        data.read_to_end(&mut got).unwrap_or_else(|e| panic!("{}: RETR {name} data: {e}", self.from));
        let (code, text) = self.reply();
        assert_eq!(code, 226, "{}: RETR {name}: {text}", self.from);
        got
    }

    /// STOR of `body` over a data connection already made.
    fn stor(&mut self, mut data: TcpStream, name: &str, body: &[u8]) {
        let (code, text) = self.cmd(&format!("STOR {name}"));
        assert_eq!(code, 150, "{}: STOR {name}: {text}", self.from);
        data.write_all(body).unwrap_or_else(|e| panic!("{}: STOR {name} data: {e}", self.from));
        drop(data);
        let (code, text) = self.reply();
        assert_eq!(code, 226, "{}: STOR {name}: {text}", self.from);
    }
}

/// A PROXY protocol v2 header (TCP over IPv4) naming `client`.
fn proxy_v2(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let (IpAddr::V4(c), IpAddr::V4(s)) = (client.ip(), server.ip()) else { panic!("IPv4 only") };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&c.octets());
    h.extend_from_slice(&s.octets());
    h.extend_from_slice(&client.port().to_be_bytes());
    h.extend_from_slice(&server.port().to_be_bytes());
    h
}

fn epsv_port(text: &str) -> u16 {
    text.split("|||")
        .nth(1)
        .and_then(|rest| rest.split('|').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {text:?}"))
}

fn pasv_port(text: &str) -> u16 {
    let inner =
        text.split('(').nth(1).and_then(|r| r.split(')').next()).unwrap_or_else(|| panic!("{text:?}"));
    let n: Vec<u16> = inner.split(',').map(|p| p.trim().parse().expect("number")).collect();
    assert_eq!(n.len(), 6, "227 reply {text:?}");
    n[4] * 256 + n[5]
}

/// Open descriptors of a process that are `kind`: `socket`, `pipe` or `file`.
fn fd_count(pid: u32, kind: &str) -> usize {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    dir.flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter(|target| {
            let t = target.to_string_lossy();
            match kind {
                "file" => t.starts_with('/'),
                _ => t.starts_with(&format!("{kind}:")),
            }
        })
        .count()
}

/// A rendezvous for `n` threads that gives up after `WAIT` (a thread that failed never
/// arrives), so a failure in one session fails the test instead of hanging it.
struct Rendezvous {
    arrived: AtomicUsize,
    n: usize,
}

impl Rendezvous {
    fn wait(&self, round: usize) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let all = wait_until(WAIT, || self.arrived.load(Ordering::SeqCst) >= self.n * round);
        assert!(
            all,
            "only {} of {} sessions reached round {round}",
            self.arrived.load(Ordering::SeqCst),
            self.n
        );
    }
}

const SESSIONS: usize = 100;

/// A hundred sessions, each from its own address, hold a passive listener at the same moment
/// on a 4-port range (PASV and EPSV mixed), then each downloads and uploads a file of its own
/// with the content checked; afterwards the server's descriptors are back to where they were.
#[test]
fn hundred_sessions_share_four_passive_ports() {
    let (lo, _) = passive_ports_block();
    let range = format!("{lo}-{}", lo + 3);
    // More shards than cores: sessions of one port sit on different shards.
    let server =
        TestServer::builder("pasv-shared-100").args(["--passive-ports", &range, "--cores", "3"]).start();
    for i in 0..SESSIONS {
        make_file(&server.root().join(format!("down{i}.bin")), 64 * KIB + i as u64 * 977, i as u64);
    }
    let pid = server.pid();
    let addr = server.addr();
    // One session first, so that lazily made per-process state is counted in the baseline.
    {
        let mut c = Client::login(loopback(200), addr);
        let port = c.passive(true).expect("EPSV");
        let data = c.data(port);
        assert_eq!(c.retr(data, "down0.bin").len() as u64, 64 * KIB);
        assert_eq!(c.cmd("QUIT").0, 221);
    }
    // The server closes its side of that session after QUIT, without the test seeing it.
    thread::sleep(Duration::from_millis(300));
    let baseline = (fd_count(pid, "socket"), fd_count(pid, "file"), fd_count(pid, "pipe"));

    let meet = Arc::new(Rendezvous { arrived: AtomicUsize::new(0), n: SESSIONS });
    let root = server.root();
    let threads: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let meet = Arc::clone(&meet);
            let root = root.clone();
            thread::spawn(move || -> Vec<u16> {
                let from = loopback(2 + i as u8);
                let mut c = Client::login(from, addr);
                let mut ports = Vec::new();

                // Everyone holds a listener at once, then downloads.
                let port = c.passive(i % 2 == 0).unwrap_or_else(|e| panic!("{from}: first passive: {e:?}"));
                ports.push(port);
                meet.wait(1);
                let data = c.data(port);
                let got = c.retr(data, &format!("down{i}.bin"));
                assert!(got == pattern(64 * KIB as usize + i * 977, i as u64), "{from}: download differs");

                // Again, with the other command, for an upload.
                let port = c.passive(i % 2 == 1).unwrap_or_else(|e| panic!("{from}: second passive: {e:?}"));
                ports.push(port);
                meet.wait(2);
                let body = pattern(32 * KIB as usize + i * 501, 1000 + i as u64);
                let data = c.data(port);
                c.stor(data, &format!("up{i}.bin"), &body);
                let stored = fs::read(root.join(format!("up{i}.bin"))).unwrap();
                assert!(stored == body, "{from}: upload differs ({} of {} bytes)", stored.len(), body.len());
                assert_eq!(c.cmd("QUIT").0, 221);
                ports
            })
        })
        .collect();
    let mut failures = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    for t in threads {
        match t.join() {
            Ok(ports) => used.extend(ports),
            Err(e) => failures.push(
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())),
            ),
        }
    }
    assert!(
        failures.is_empty(),
        "{} sessions failed: {:?}\n{}",
        failures.len(),
        failures,
        server.log_for_failure()
    );
    assert!(used.iter().all(|p| (lo..=lo + 3).contains(p)), "ports outside the range: {used:?}");
    eprintln!("{SESSIONS} sessions used passive ports {used:?}");

    // Sockets (control, data, listeners) and files go back to where they were; each shard's
    // two pipe pools may keep up to 16 idle pipes (32 descriptors) each.
    let now = || (fd_count(pid, "socket"), fd_count(pid, "file"), fd_count(pid, "pipe"));
    let back = wait_until(Duration::from_secs(10), || {
        let (sockets, files, _) = now();
        sockets <= baseline.0 && files <= baseline.1
    });
    let after = now();
    eprintln!("server (sockets, files, pipes): before {baseline:?}, after {after:?}");
    assert!(back, "descriptors (sockets, files, pipes) after the sessions: {after:?}, before: {baseline:?}");
    assert!(after.2 <= baseline.2 + 3 * 2 * 32, "pipes: before {baseline:?}, after {after:?}");
    // And the listeners are closed: nothing answers on the range any more.
    for port in lo..=lo + 3 {
        let refused = TcpStream::connect_timeout(&SocketAddr::new(addr.ip(), port), WAIT).is_err();
        assert!(refused, "port {port} still listens after every session ended");
    }
}

/// On a one-port range two sessions of one address never wait on the port at once: the
/// second's PASV and EPSV get 425 while the first waits, a session of another address shares
/// the port meanwhile, and once the first has its data connection the second gets the port.
#[test]
fn one_address_waits_on_a_port_once() {
    let (port, _) = passive_ports_block();
    let range = format!("{port}-{port}");
    let server = TestServer::builder("pasv-shared-same-ip").args(["--passive-ports", &range]).start();
    make_file(&server.root().join("f.bin"), 300 * KIB, 5);
    let want = pattern(300 * KIB as usize, 5);
    let addr = server.addr();

    let mut a = Client::login(loopback(2), addr);
    let mut b = Client::login(loopback(2), addr);
    let mut c = Client::login(loopback(3), addr);
    assert_eq!(a.passive(false), Ok(port), "A's PASV");
    for epsv in [false, true] {
        match b.passive(epsv) {
            Err((425, _)) => {}
            other => panic!(
                "B's {} while A of the same address waits: {other:?}",
                if epsv { "EPSV" } else { "PASV" }
            ),
        }
    }
    assert_eq!(b.cmd("NOOP").0, 200, "B usable after the 425");
    assert_eq!(c.passive(true), Ok(port), "C, another address, shares the port");

    // C connects first; A's transfer accepts C's connection and hands it over.
    let c_data = c.data(port);
    let a_data = a.data(port);
    assert!(a.retr(a_data, "f.bin") == want, "A's download differs");
    // A has left the port: B of the same address gets it now.
    assert_eq!(b.passive(false), Ok(port), "B's PASV after A's transfer\n{}", server.log_for_failure());
    assert!(c.retr(c_data, "f.bin") == want, "C's download differs");
    let b_data = b.data(port);
    assert!(b.retr(b_data, "f.bin") == want, "B's download differs");
}

/// A connection to a shared port from an address no session waits for gets no one's data:
/// it is closed, and the sessions' own transfers go through.
#[test]
fn a_stranger_on_a_shared_port_gets_nothing() {
    let (port, _) = passive_ports_block();
    let range = format!("{port}-{port}");
    let server = TestServer::builder("pasv-shared-stranger").args(["--passive-ports", &range]).start();
    make_file(&server.root().join("secret.bin"), 200 * KIB, 9);
    let want = pattern(200 * KIB as usize, 9);
    let addr = server.addr();

    let mut a = Client::login(loopback(2), addr);
    let mut b = Client::login(loopback(3), addr);
    assert_eq!(a.passive(true), Ok(port));
    assert_eq!(b.passive(false), Ok(port), "B shares the only port");

    // The stranger is first in the accept queue, before both clients.
    let mut stranger =
        connect_from(loopback(4), SocketAddr::new(addr.ip(), port)).expect("stranger connects");
    let a_data = a.data(port);
    let b_data = b.data(port);
    assert!(a.retr(a_data, "secret.bin") == want, "A's download differs");
    assert!(b.retr(b_data, "secret.bin") == want, "B's download differs");

    let mut got = Vec::new();
    let read = stranger.read_to_end(&mut got);
    assert!(got.is_empty(), "the stranger received {} bytes", got.len());
    assert!(
        read.is_ok() || read.as_ref().is_err_and(|e| e.kind() == io::ErrorKind::ConnectionReset),
        "the stranger's connection was not closed: {read:?}"
    );
    assert!(
        server.stderr_log().contains("refused data connection from a foreign address"),
        "the refusal is logged\n{}",
        server.log_for_failure()
    );
}

/// A server that lets any address make a data connection cannot tell sessions' connections
/// apart, so it never shares a port: with one port, a second session of another address gets
/// 425 while the first waits, as before.
#[test]
fn ports_are_not_shared_when_foreign_data_connections_are_allowed() {
    let (port, _) = passive_ports_block();
    let scratch = Scratch::new("pasv-foreign-config");
    let config = scratch.join("ringftpd.toml");
    fs::write(&config, "dangerous_allow_foreign_data_connections = true\n").unwrap();
    let range = format!("{port}-{port}");
    let server = TestServer::builder("pasv-not-shared")
        .args(["--passive-ports", &range, "--config", config.to_str().unwrap()])
        .start();
    fs::write(server.root().join("f.txt"), b"content").unwrap();
    let addr = server.addr();
    let mut a = Client::login(loopback(2), addr);
    let mut b = Client::login(loopback(3), addr);
    assert_eq!(a.passive(false), Ok(port), "A's PASV\n{}", server.log_for_failure());
    match b.passive(true) {
        Err((425, _)) => {}
        other => panic!("B's EPSV on a port A holds with foreign connections allowed: {other:?}"),
    }
    let data = a.data(port);
    assert_eq!(a.retr(data, "f.txt"), b"content");
    assert_eq!(b.passive(true), Ok(port), "B's EPSV once A is done");
}

/// Behind a balancer that sends a PROXY header on data connections too, every connection
/// comes from the balancer, and the header says whose it is: two clients share the only port
/// and each gets its own file, though the first to transfer accepts both connections.
#[test]
fn sessions_behind_a_proxy_protocol_balancer_share_a_port() {
    let (port, _) = passive_ports_block();
    let range = format!("{port}-{port}");
    let server = TestServer::builder("pasv-shared-proxy")
        .args(["--passive-ports", &range, "--proxy-protocol-from", "127.0.0.1/32", "--proxy-protocol-data"])
        .start();
    make_file(&server.root().join("a.bin"), 100 * KIB, 1);
    make_file(&server.root().join("b.bin"), 150 * KIB, 2);
    let addr = server.addr();
    let balancer = loopback(1);
    let (client_a, client_b): (SocketAddr, SocketAddr) =
        ("192.0.2.10:40000".parse().unwrap(), "192.0.2.20:40000".parse().unwrap());
    let mut a = Client::via_balancer(balancer, addr, client_a);
    let mut b = Client::via_balancer(balancer, addr, client_b);
    assert_eq!(a.passive(true), Ok(port), "A's EPSV\n{}", server.log_for_failure());
    assert_eq!(b.passive(false), Ok(port), "B shares the port\n{}", server.log_for_failure());
    // A second session of A's client may not wait on the port at once.
    let mut a2 = Client::via_balancer(balancer, addr, "192.0.2.10:40001".parse().unwrap());
    assert!(matches!(a2.passive(true), Err((425, _))), "A's client twice on one port");

    let to = SocketAddr::new(addr.ip(), port);
    let data_for = |client: SocketAddr| {
        let mut s = connect_from(balancer, to).expect("data connection");
        s.write_all(&proxy_v2(client, to)).unwrap();
        s
    };
    // B's connection is first in the queue; A's transfer accepts it and hands it to B.
    let b_data = data_for(client_b);
    let a_data = data_for(client_a);
    assert!(a.retr(a_data, "a.bin") == pattern(100 * KIB as usize, 1), "A's download differs");
    assert!(b.retr(b_data, "b.bin") == pattern(150 * KIB as usize, 2), "B's download differs");
}
