//! Limits and abuse: session caps (total and per address), login and idle timeouts, passive
//! port exhaustion, over-long lines, connection floods, clients that never read, and the
//! commands a session answers while a transfer runs.
//!
//! Memory bounds read the server's VmRSS/VmHWM from `/proc/<pid>/status`; descriptor counts
//! come from `/proc/<pid>/fd`. Both are generous upper bounds on resources, not timings.

mod common;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(10);
/// The memory bound of the abuse tests: far above what an idle server uses, far below what
/// buffering the abuse would take.
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// A `kB` field of `/proc/<pid>/status` (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Asserts the server's resident memory (now and at its peak) is under the bound.
fn assert_memory_bounded(server: &TestServer, what: &str) {
    let (rss, hwm) = (status_kib(server.pid(), "VmRSS"), status_kib(server.pid(), "VmHWM"));
    eprintln!("{what}: server VmRSS {rss} KiB, VmHWM {hwm} KiB");
    assert!(
        rss < RSS_BOUND_KIB && hwm < RSS_BOUND_KIB,
        "{what}: server memory VmRSS {rss} KiB / VmHWM {hwm} KiB, bound {RSS_BOUND_KIB} KiB\n{}",
        server.log_for_failure()
    );
}

/// Open descriptors of a process.
fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// A control connection from `source` (another loopback "host"), greeting not read yet.
fn connect_from(source: IpAddr, addr: SocketAddr) -> Control {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    sock.bind(&SocketAddr::new(source, 0).into()).unwrap_or_else(|e| panic!("bind {source}: {e}"));
    sock.connect_timeout(&addr.into(), T).unwrap_or_else(|e| panic!("connect from {source}: {e}"));
    Control::over(sock.into(), T)
}

fn assert_alive(server: &mut TestServer) {
    if let Some(status) = server.wait_exit(Duration::ZERO) {
        panic!("ringftpd exited: {status}\n{}", server.log_for_failure());
    }
}

/// A fresh session logs in and lists the root (polling while the server still refuses with
/// 421 because closed sessions are being released).
fn login_and_list(server: &TestServer) -> Vec<u8> {
    let mut last = String::new();
    let mut session = None;
    let ok = wait_until(Duration::from_secs(30), || {
        let (c, first) = Control::connect_any(server.addr(), T);
        match first {
            Ok((220, _)) => {
                session = Some(c);
                true
            }
            other => {
                last = format!("{other:?}");
                thread::sleep(Duration::from_millis(50));
                false
            }
        }
    });
    assert!(ok, "no session admitted within 30 s; last first reply {last}\n{}", server.log_for_failure());
    let mut c = session.unwrap();
    c.login(USER, PASS);
    let mut data = c.epsv();
    let (code, text) = c.cmd("LIST");
    assert_eq!(code, 150, "LIST: {text}");
    let mut listing = Vec::new();
    data.read_to_end(&mut listing).unwrap();
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 226, "LIST: {text}");
    assert_eq!(c.cmd("QUIT").0, 221);
    listing
}

#[test]
fn max_sessions_refuses_with_421_and_admits_again_after_one_leaves() {
    let server = TestServer::with_args("max-sessions", &["--max-sessions", "3"]);
    let mut open = Vec::new();
    for i in 0..3 {
        let (c, first) = Control::connect_any(server.addr(), T);
        let (code, text) = first.unwrap_or_else(|e| panic!("session {i}: {e}\n{}", server.log_for_failure()));
        assert_eq!(code, 220, "session {i}: {text}\n{}", server.log_for_failure());
        open.push(c);
    }
    let (mut fourth, first) = Control::connect_any(server.addr(), T);
    let (code, text) = first.expect("a reply to the fourth connection");
    assert_eq!(code, 421, "fourth connection: {text}\n{}", server.log_for_failure());
    assert!(fourth.closed_by_server(), "the refused connection stays open");
    // The admitted ones are unaffected.
    for c in &mut open {
        assert_eq!(c.cmd("NOOP").0, 200);
    }

    // One leaves; a new connection is admitted once the server has seen it go.
    let mut leaving = open.remove(0);
    assert_eq!(leaving.cmd("QUIT").0, 221);
    assert!(leaving.closed_by_server());
    drop(leaving);
    let mut last = String::new();
    let admitted = wait_until(T, || {
        let (c, first) = Control::connect_any(server.addr(), T);
        match first {
            Ok((220, _)) => {
                open.push(c);
                true
            }
            other => {
                last = format!("{other:?}");
                false
            }
        }
    });
    assert!(admitted, "no 220 within {T:?} after a session left; last: {last}\n{}", server.log_for_failure());
    // Full again.
    let (_c, first) = Control::connect_any(server.addr(), T);
    assert_eq!(first.expect("reply").0, 421, "a fourth session while three are open");
    open[2].login(USER, PASS);
}

#[test]
fn max_sessions_per_ip_counts_each_address() {
    let server = TestServer::with_args("max-per-ip", &["--max-sessions-per-ip", "2"]);
    let local: IpAddr = Ipv4Addr::LOCALHOST.into();
    // Sessions land on different shards: connect one at a time, reading each greeting first.
    let mut a1 = connect_from(local, server.addr());
    assert_eq!(a1.reply().unwrap().0, 220);
    let mut a2 = connect_from(local, server.addr());
    assert_eq!(a2.reply().unwrap().0, 220);
    let mut a3 = connect_from(local, server.addr());
    let (code, text) = a3.reply().unwrap();
    assert_eq!(code, 421, "third session from 127.0.0.1: {text}\n{}", server.log_for_failure());
    assert!(text.contains("address"), "421 for the address limit: {text}");
    assert!(a3.closed_by_server());

    // Another host is not limited by 127.0.0.1's sessions. The per-address counters are a
    // fixed table of 4096 slots with a random per-process hash key, so 127.0.0.2 shares
    // 127.0.0.1's slot in 1 run out of 4096 (documented in src/engine/limits.rs: the limit
    // is then stricter). Such a collision is by design, so a refusal that names the address
    // is retried once from 127.0.0.3: both colliding is a 1 in 16 million chance.
    let mut other = None;
    let mut refusals = Vec::new();
    for ip in [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)] {
        let mut b = connect_from(ip.into(), server.addr());
        let (code, text) = b.reply().unwrap();
        if code == 220 {
            other = Some(b);
            break;
        }
        assert!(code == 421 && text.contains("address"), "from {ip}: {code} {text}");
        refusals.push(format!("{ip}: {text}"));
    }
    let mut b = other.unwrap_or_else(|| {
        panic!("sessions from other addresses refused: {refusals:?}\n{}", server.log_for_failure())
    });
    b.login(USER, PASS);
    assert_eq!(b.cmd("PWD").0, 257);

    // The two from 127.0.0.1 still work; after one leaves, 127.0.0.1 gets a place again.
    a1.login(USER, PASS);
    assert_eq!(a2.cmd("NOOP").0, 200);
    assert_eq!(a1.cmd("QUIT").0, 221);
    assert!(a1.closed_by_server());
    let again = wait_until(T, || {
        let mut c = connect_from(local, server.addr());
        matches!(c.reply(), Ok((220, _)))
    });
    assert!(again, "127.0.0.1 not admitted again after one of its sessions left");
}

#[test]
fn login_timeout_closes_only_sessions_that_did_not_log_in() {
    let server = TestServer::with_args("login-timeout", &["--login-timeout", "1"]);
    let start = Instant::now();
    let mut silent = Control::connect(server.addr(), T);
    let mut half = Control::connect(server.addr(), T);
    assert_eq!(half.cmd(&format!("USER {USER}")).0, 331);
    let mut logged_in = Control::connect(server.addr(), T);
    logged_in.login(USER, PASS);

    for (name, c) in [("silent", &mut silent), ("USER without PASS", &mut half)] {
        let (code, text) = c
            .reply()
            .unwrap_or_else(|e| panic!("{name}: no 421 within {T:?}: {e}\n{}", server.log_for_failure()));
        assert_eq!(code, 421, "{name}: {text}");
        assert!(text.to_lowercase().contains("timeout"), "{name}: {text}");
        assert!(c.closed_by_server(), "{name}: still open after the 421");
    }
    // A lower bound only: the timeout must not fire early.
    assert!(start.elapsed() >= Duration::from_millis(900), "421 after only {:?}", start.elapsed());

    // The logged-in session outlives the login timeout.
    let past = Duration::from_millis(2500);
    thread::sleep(past.saturating_sub(start.elapsed()));
    assert_eq!(logged_in.cmd("NOOP").0, 200);
    assert_eq!(logged_in.cmd("PWD").0, 257);
}

#[test]
fn idle_timeout_closes_idle_sessions_but_not_busy_ones_or_running_transfers() {
    // A rate-limited user makes the download last ~3 s on the server, whatever the socket
    // buffers hold: far longer than the 1 s idle timeout.
    let builder = TestServer::builder("idle-timeout");
    let work = builder.work();
    fs::create_dir_all(&work).unwrap();
    let config = work.join("ringftpd.toml");
    fs::write(&config, "[[users]]\nname = \"slow\"\npassword = \"pw\"\nrate_limit = 1000000\n").unwrap();
    let server = builder.args(["--idle-timeout", "1", "--config"]).arg(config.display().to_string()).start();
    const SIZE: usize = 3_000_000;
    make_file(&server.root().join("slow.bin"), SIZE as u64, 7);

    let addr = server.addr();
    let transfer = thread::spawn(move || {
        let mut c = Control::connect(addr, Duration::from_secs(30));
        c.login("slow", "pw");
        let started = Instant::now();
        let got = c.download("slow.bin");
        (got, started.elapsed())
    });
    let busy = thread::spawn(move || {
        let mut c = Control::connect(addr, T);
        c.login(USER, PASS);
        let mut codes = Vec::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(2500) {
            codes.push(c.cmd("NOOP").0);
            thread::sleep(Duration::from_millis(250));
        }
        codes
    });

    let mut idle = Control::connect(addr, T);
    idle.login(USER, PASS);
    let last_command = Instant::now();
    let (code, text) = idle.reply().unwrap_or_else(|e| panic!("no 421 within {T:?}: {e}"));
    assert_eq!(code, 421, "idle session: {text}");
    assert!(idle.closed_by_server());
    assert!(
        last_command.elapsed() >= Duration::from_millis(900),
        "idle 421 after {:?}",
        last_command.elapsed()
    );

    let codes = busy.join().unwrap();
    assert!(codes.iter().all(|&c| c == 200), "a session sending NOOPs was cut: {codes:?}");
    let (got, took) = transfer.join().unwrap();
    let got = got.unwrap_or_else(|(code, text)| {
        panic!("rate-limited download ended with {code} {text} after {took:?}\n{}", server.log_for_failure())
    });
    assert!(got == pattern(SIZE, 7), "downloaded {} of {SIZE} bytes, or different ones", got.len());
    eprintln!("rate-limited download took {took:?} with a 1 s idle timeout");
    assert!(took > Duration::from_millis(1500), "the download did not outlast the idle timeout ({took:?})");
}

#[test]
fn passive_port_exhaustion_answers_425_and_recovers() {
    // One port of this test's own block: the server has exactly one passive port. Both
    // sessions come from 127.0.0.1, so B cannot share A's port (tests/passive_shared.rs has
    // sessions of different addresses sharing one).
    let (port, _) = passive_ports_block();
    let range = format!("{port}-{port}");
    let server = TestServer::with_args("pasv-exhaust", &["--passive-ports", &range]);
    const SIZE: usize = 2 * MIB as usize;
    make_file(&server.root().join("file.bin"), SIZE as u64, 3);
    let mut a = Control::connect(server.addr(), T);
    a.login(USER, PASS);
    let mut b = Control::connect(server.addr(), T);
    b.login(USER, PASS);

    assert_eq!(a.cmd("TYPE I").0, 200);
    let (code, text) = a.cmd("PASV");
    assert_eq!(code, 227, "A's PASV: {text}\n{}", server.log_for_failure());
    assert!(text.contains(&format!(",{},{})", port >> 8, port & 0xff)), "227 for port {port}: {text}");

    for cmd in ["PASV", "EPSV"] {
        let (code, text) = b.cmd(cmd);
        assert_eq!(code, 425, "B's {cmd} while A holds the only port: {text}");
    }
    assert_eq!(b.cmd("NOOP").0, 200, "B unusable after the 425");
    assert_eq!(b.cmd("PWD").0, 257);

    // A still downloads over its port.
    let mut data = TcpStream::connect_timeout(&SocketAddr::new(server.addr().ip(), port), T).unwrap();
    data.set_read_timeout(Some(T)).unwrap();
    let (code, text) = a.cmd("RETR file.bin");
    assert_eq!(code, 150, "RETR: {text}");
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    drop(data);
    let (code, text) = a.reply().unwrap();
    assert_eq!(code, 226, "RETR: {text}");
    assert!(got == pattern(SIZE, 3), "A's download differs ({} bytes)", got.len());

    // The port is free again: B gets it and can use it.
    let (code, text) = b.cmd("PASV");
    assert_eq!(code, 227, "B's PASV after A's transfer ended: {text}\n{}", server.log_for_failure());
    let mut data = TcpStream::connect_timeout(&SocketAddr::new(server.addr().ip(), port), T).unwrap();
    data.set_read_timeout(Some(T)).unwrap();
    assert_eq!(b.cmd("NLST").0, 150);
    let mut listing = String::new();
    data.read_to_string(&mut listing).unwrap();
    assert_eq!(b.reply().unwrap().0, 226);
    assert_eq!(listing.trim_end(), "file.bin");
}

#[test]
fn passive_port_is_reusable_by_the_session_that_holds_it() {
    // A new PASV/EPSV replaces the session's previous passive listener (RFC 959: the last
    // one counts), so a session never needs two ports: with a single port, asking again
    // must work every time.
    let (port, _) = passive_ports_block();
    let range = format!("{port}-{port}");
    let server = TestServer::with_args("pasv-again", &["--passive-ports", &range]);
    fs::write(server.root().join("f.txt"), b"content").unwrap();
    let mut c = Control::connect(server.addr(), T);
    c.login(USER, PASS);
    let mut replies = Vec::new();
    for cmd in ["PASV", "PASV", "EPSV", "PASV", "EPSV", "EPSV"] {
        replies.push(format!("{cmd} -> {}", c.cmd(cmd).1));
    }
    let refused: Vec<&String> = replies.iter().filter(|r| r.contains("-> 425")).collect();
    assert!(
        refused.is_empty(),
        "a session asking again for the only passive port was refused:\n{}\n{}",
        replies.join("\n"),
        server.log_for_failure()
    );
    assert_eq!(c.download("f.txt").unwrap(), b"content");
}

#[test]
fn overlong_lines_get_one_500_and_memory_stays_bounded() {
    let server = TestServer::start("overlong-line");
    let mut c = Control::connect(server.addr(), Duration::from_secs(60));
    c.login(USER, PASS);

    c.send_raw(&vec![b'A'; 100 * 1024]);
    c.send_raw(b"\r\n");
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 500, "100 KB line: {text}");
    // The very next reply is NOOP's: the long line got exactly one reply.
    let (code, text) = c.cmd("NOOP");
    assert_eq!(code, 200, "after the 100 KB line: {text}");

    // 10 MiB with no line end at all, in chunks, then the end of line and a command.
    let chunk = vec![b'B'; 64 * 1024];
    for _ in 0..160 {
        c.send_raw(&chunk);
    }
    c.send_raw(b"\r\nNOOP\r\n");
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 500, "10 MiB line: {text}");
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 200, "NOOP after the 10 MiB line: {text}");
    assert_eq!(c.cmd("PWD").0, 257);
    assert_memory_bounded(&server, "after a 10 MiB line");
}

#[test]
fn configured_max_line_length_applies() {
    // There is no --max-line-length flag; the configuration file has max_line_length.
    let builder = TestServer::builder("max-line-config");
    let work = builder.work();
    fs::create_dir_all(&work).unwrap();
    let config = work.join("ringftpd.toml");
    fs::write(&config, "max_line_length = 64\n").unwrap();
    let server = builder.arg("--config").arg(config.display().to_string()).start();
    fs::write(server.root().join("f.txt"), b"x").unwrap();
    let mut c = Control::connect(server.addr(), T);
    c.login(USER, PASS);
    // 5 + 60 = 65 bytes: one over.
    let (code, text) = c.cmd(&format!("SIZE {}", "a".repeat(60)));
    assert_eq!(code, 500, "65-byte line with max_line_length = 64: {text}");
    let (code, text) = c.cmd(&format!("SIZE {}", "a".repeat(50)));
    assert_eq!(code, 550, "55-byte line: {text}");
    assert_eq!(c.cmd("SIZE f.txt").0, 213);
}

/// Raises this process's soft RLIMIT_NOFILE to the hard limit; returns the limit.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0, "{}", io::Error::last_os_error());
        }
    }
    lim.rlim_cur
}

/// Reads a greeting line (bounded) from a raw connection.
fn first_line(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(T)).unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        match s.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => line.push(byte[0]),
            Err(e) => return format!("<error {e}>"),
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

#[test]
fn connection_flood_is_survived_and_descriptors_return() {
    // Each connection costs this process one descriptor and the server one. The target is
    // 10,000 connections, which needs a hard RLIMIT_NOFILE of about 21,000 in this process
    // (the other tests of this file run in parallel and need descriptors too). With a lower
    // hard limit (20,000 on the machine this was written on) the count is scaled down to
    // half of what is left after 1,000 spare descriptors: 9,500 there.
    let hard = raise_nofile();
    let count = if hard >= 21_000 { 10_000 } else { (hard.saturating_sub(1_000) / 2) as usize };
    eprintln!("RLIMIT_NOFILE hard limit {hard}: flooding with {count} connections");
    assert!(count >= 1_000, "RLIMIT_NOFILE hard limit {hard} is too low for a flood test");

    let mut server = TestServer::builder("flood")
        .args(["--max-sessions", "20000", "--max-sessions-per-ip", "0"])
        .log_level("info")
        .start();
    let pid = server.pid();
    login_and_list(&server);
    let baseline = {
        // Settled: the warm-up session is gone.
        let mut last = fd_count(pid);
        wait_until(T, || {
            thread::sleep(Duration::from_millis(100));
            let now = fd_count(pid);
            let stable = now == last;
            last = now;
            stable
        });
        last
    };
    eprintln!("server descriptors before the flood: {baseline}");

    let started = Instant::now();
    let mut conns = Vec::with_capacity(count);
    for i in 0..count {
        let mut s = TcpStream::connect_timeout(&server.addr(), T).unwrap_or_else(|e| {
            panic!("connection {i} of {count}: {e}\n{}", server.log_for_failure());
        });
        if i % 500 == 0 || i == count - 1 {
            let line = first_line(&mut s);
            assert!(
                line.starts_with("220"),
                "connection {i}: greeting {line:?}\n{}",
                server.log_for_failure()
            );
        }
        conns.push(s);
    }
    eprintln!("{count} connections open after {:?}", started.elapsed());
    assert_alive(&mut server);
    // Every one of them reached the server.
    let all_in = wait_until(Duration::from_secs(30), || fd_count(pid) >= baseline + count);
    assert!(all_in, "server has {} descriptors, expected at least {}", fd_count(pid), baseline + count);

    drop(conns);
    let margin = 8;
    let released = wait_until(Duration::from_secs(60), || fd_count(pid) <= baseline + margin);
    assert!(
        released,
        "server descriptors did not return to the baseline: {} now, {baseline} before the flood\n{}",
        fd_count(pid),
        server.log_for_failure()
    );
    assert_alive(&mut server);
    login_and_list(&server);
    assert!(
        wait_until(T, || fd_count(pid) <= baseline + margin),
        "descriptors after the last session: {} (baseline {baseline})",
        fd_count(pid)
    );
    assert_alive(&mut server);
}

#[test]
fn connection_flood_beyond_max_sessions_gets_421() {
    let mut server = TestServer::builder("flood-100")
        .args(["--max-sessions", "100", "--max-sessions-per-ip", "0"])
        .log_level("info")
        .start();
    fs::write(server.root().join("marker.txt"), b"m").unwrap();
    let (mut admitted, mut refused, mut other) = (0, 0, Vec::new());
    let mut conns = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect_timeout(&server.addr(), T)
            .unwrap_or_else(|e| panic!("connection {i}: {e}\n{}", server.log_for_failure()));
        let line = first_line(&mut s);
        match line.get(..3) {
            Some("220") => admitted += 1,
            Some("421") => refused += 1,
            _ => other.push(format!("{i}: {line:?}")),
        }
        conns.push(s);
    }
    assert!(other.is_empty(), "unexpected first replies: {other:?}\n{}", server.log_for_failure());
    assert_eq!((admitted, refused), (100, 200), "admitted/refused of 300 with --max-sessions 100");
    assert_alive(&mut server);
    drop(conns);
    let listing = login_and_list(&server);
    assert!(String::from_utf8_lossy(&listing).contains("marker.txt"));
    assert_alive(&mut server);
}

#[test]
fn client_that_never_reads_replies_does_not_grow_the_server() {
    let mut server = TestServer::start("slow-reader");
    fs::write(server.root().join("f.txt"), b"hello").unwrap();
    let mut c = Control::connect(server.addr(), Duration::from_secs(30));
    c.login(USER, PASS);
    const N: usize = 20_000;
    let mut writer = c.stream().try_clone().unwrap();
    let flood = thread::spawn(move || writer.write_all("NOOP\r\n".repeat(N).as_bytes()));
    // Give the server the time to take in what it will (bounded: the writer may well stay
    // blocked until this client reads).
    wait_until(Duration::from_secs(3), || flood.is_finished());
    thread::sleep(Duration::from_millis(300));
    assert_memory_bounded(&server, "with 20,000 unread NOOP replies");

    // Another session is served meanwhile.
    let mut other = Control::connect(server.addr(), T);
    other.login(USER, PASS);
    assert_eq!(other.cmd("NOOP").0, 200);
    assert_eq!(other.download("f.txt").unwrap(), b"hello");

    // Now read: every reply is a 200, or the server closed the connection; nothing hangs.
    let mut answered = 0;
    let mut end = None;
    while answered < N {
        match c.reply() {
            Ok((200, _)) => answered += 1,
            Ok((code, text)) => panic!("reply {answered}: {code} {text}"),
            Err(e) => {
                end = Some(e);
                break;
            }
        }
    }
    let sent = flood.join().unwrap();
    match end {
        None => {
            sent.unwrap();
            assert_eq!(c.cmd("NOOP").0, 200, "the session after 20,000 NOOPs");
        }
        Some(e) => {
            assert!(
                matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset),
                "after {answered} replies the connection neither worked nor was closed: {e}"
            );
            eprintln!("the server closed the non-reading session after {answered} replies");
        }
    }
    assert_alive(&mut server);
    let mut again = Control::connect(server.addr(), T);
    again.login(USER, PASS);
    assert_memory_bounded(&server, "after the slow reader");
}

#[test]
fn commands_during_a_transfer_pipelining_and_byte_by_byte() {
    let server = TestServer::start("during-transfer");
    let size = 64 * MIB;
    make_file(&server.root().join("big.bin"), size, 11);
    let mut c = Control::connect(server.addr(), Duration::from_secs(30));
    c.login(USER, PASS);
    assert_eq!(c.cmd("TYPE I").0, 200);
    let mut data = c.epsv();
    let (code, text) = c.cmd("RETR big.bin");
    assert_eq!(code, 150, "RETR: {text}");
    // Read a little, then stop reading: the transfer stays in progress.
    let mut first = vec![0u8; MIB as usize];
    data.read_exact(&mut first).unwrap();
    assert!(first == pattern(MIB as usize, 11), "first MiB differs");

    let (code, text) = c.cmd("STAT");
    assert!(code == 211 || code == 213, "STAT during RETR: {code} {text}");
    let (code, text) = c.cmd("NOOP");
    assert_eq!(code, 200, "NOOP during RETR: {text}");
    c.send("ABOR");
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 426, "first reply to ABOR: {text}\n{}", server.log_for_failure());
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 226, "second reply to ABOR: {text}");
    // The server closed the data connection: it ends well before the 64 MiB.
    data.set_read_timeout(Some(T)).unwrap();
    let mut rest = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let how = loop {
        match data.read(&mut buf) {
            Ok(0) => break "closed".to_string(),
            Ok(n) => rest += n as u64,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break "reset".to_string(),
            Err(e) => panic!("data connection after ABOR: {e} after {rest} more bytes"),
        }
    };
    assert!(MIB + rest < size, "the whole file arrived despite ABOR ({how})");

    // Pipelined commands in one write: answered in order.
    c.send_raw(b"TYPE I\r\nPWD\r\nSYST\r\nNOOP\r\n");
    let codes: Vec<u16> = (0..4).map(|_| c.reply().unwrap().0).collect();
    assert_eq!(codes, [200, 257, 215, 200], "pipelined TYPE I, PWD, SYST, NOOP");

    // Byte by byte, each in its own segment.
    c.stream().set_nodelay(true).unwrap();
    for (line, want) in [("PWD\r\n", 257), ("NOOP\r\n", 200), ("SIZE big.bin\r\n", 213)] {
        for b in line.bytes() {
            c.send_raw(&[b]);
            thread::sleep(Duration::from_millis(5));
        }
        let (code, text) = c.reply().unwrap();
        assert_eq!(code, want, "{} sent byte by byte: {text}", line.trim_end());
    }
    let (code, text) = c.cmd("SIZE big.bin");
    assert_eq!((code, text.as_str()), (213, format!("213 {size}").as_str()));
}
