//! ringftpd tried as a hostile or unlucky user would (issue 9 §5): downloads nobody reads,
//! uploads that stop, passive ports nobody claims, commands that never end, shutdown with
//! work in flight, a restart right after `kill -9`, names that are not UTF-8, and symlinks.
//!
//! Every timeout is set short by a flag so the tests are quick; every wait is bounded by a
//! socket read timeout or a deadline, so a server that never answers fails the test instead of
//! hanging it.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use socket2::{Domain, Socket, Type};

/// How long any single reply may take before the test gives up: far above every timeout the
/// tests set, so it only fires when the server never answers.
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Helpers

/// The port of a `229 Entering Extended Passive Mode (|||PORT|)` reply.
fn epsv_port(text: &str) -> u16 {
    text.split("|||")
        .nth(1)
        .and_then(|rest| rest.split('|').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {text:?}"))
}

/// A data connection to `port` on the server's address whose receive buffer is 4 KiB, set
/// before connect so the TCP window is small from the handshake on.
fn tiny_receiver(server: &TestServer, port: u16) -> TcpStream {
    let addr = SocketAddr::new(server.addr().ip(), port);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect_timeout(&addr.into(), WAIT).unwrap_or_else(|e| panic!("data connection to {addr}: {e}"));
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// Reads replies until one that is not preliminary (1xx); returns it.
fn final_reply(c: &mut Control, what: &str) -> (u16, String) {
    loop {
        let (code, text) = c.reply().unwrap_or_else(|e| panic!("reply to {what}: {e}"));
        if !(100..200).contains(&code) {
            return (code, text);
        }
    }
}

/// The server's open descriptors, counted by what they are (`socket`, `pipe`, `file`,
/// `anon_inode:[io_uring]`...).
fn fd_kinds(pid: u32) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return kinds;
    };
    for entry in dir.flatten() {
        let Ok(target) = fs::read_link(entry.path()) else { continue };
        let target = target.to_string_lossy().into_owned();
        let kind = if target.starts_with("socket:") {
            "socket".to_string()
        } else if target.starts_with("pipe:") {
            "pipe".to_string()
        } else if target.starts_with('/') {
            "file".to_string()
        } else {
            target
        };
        *kinds.entry(kind).or_default() += 1;
    }
    kinds
}

fn kind(kinds: &BTreeMap<String, usize>, k: &str) -> usize {
    kinds.get(k).copied().unwrap_or(0)
}

/// A control connection that keeps replies as bytes (names that are not UTF-8 come back in
/// MLST and 257 replies as they are).
struct RawControl {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawControl {
    fn connect(addr: SocketAddr) -> RawControl {
        let stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let mut c = RawControl { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
        assert_eq!(c.reply().0, 220);
        c
    }

    /// One reply: its code and all its lines (with their line ends).
    fn reply(&mut self) -> (u16, Vec<u8>) {
        let mut all = Vec::new();
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line).expect("reply");
        assert!(line.len() >= 4, "not a reply: {:?}", String::from_utf8_lossy(&line));
        let code: u16 = std::str::from_utf8(&line[..3]).ok().and_then(|c| c.parse().ok()).expect("code");
        all.extend_from_slice(&line);
        if line[3] == b'-' {
            let end = format!("{code} ");
            loop {
                line.clear();
                let n = self.reader.read_until(b'\n', &mut line).expect("reply line");
                assert!(n > 0, "EOF inside a multi-line reply");
                all.extend_from_slice(&line);
                if line.starts_with(end.as_bytes()) {
                    break;
                }
            }
        }
        (code, all)
    }

    /// Sends `verb` + ` ` + `arg` (raw bytes) + CRLF, returns the reply.
    fn cmd(&mut self, verb: &str, arg: &[u8]) -> (u16, Vec<u8>) {
        let mut line = verb.as_bytes().to_vec();
        if !arg.is_empty() {
            line.push(b' ');
            line.extend_from_slice(arg);
        }
        line.extend_from_slice(b"\r\n");
        self.writer.write_all(&line).unwrap();
        self.reply()
    }

    fn login(&mut self) {
        assert_eq!(self.cmd("USER", USER.as_bytes()).0, 331);
        assert_eq!(self.cmd("PASS", PASS.as_bytes()).0, 230);
    }

    /// EPSV and a data connection to it.
    fn epsv(&mut self) -> TcpStream {
        let (code, text) = self.cmd("EPSV", b"");
        assert_eq!(code, 229, "EPSV: {}", String::from_utf8_lossy(&text));
        let port = epsv_port(&String::from_utf8_lossy(&text));
        let ip = self.writer.peer_addr().unwrap().ip();
        let data = TcpStream::connect_timeout(&SocketAddr::new(ip, port), WAIT).unwrap();
        data.set_read_timeout(Some(WAIT)).unwrap();
        data
    }

    /// A data command (`RETR`, `LIST`...) over a fresh EPSV connection: the bytes and the
    /// final reply.
    fn data_cmd(&mut self, verb: &str, arg: &[u8]) -> (Vec<u8>, u16, Vec<u8>) {
        let mut data = self.epsv();
        let (code, text) = self.cmd(verb, arg);
        if code != 150 && code != 125 {
            return (Vec::new(), code, text);
        }
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).expect("data");
        let (code, text) = self.reply();
        (bytes, code, text)
    }
}

/// Whether `haystack` contains `needle`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Lines of a listing (CRLF or LF), as lossy text for messages and matching.
fn lines(listing: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(listing).lines().map(|l| l.trim_end_matches('\r').to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Stalled transfers

/// A client that opens a download with a tiny receive window and never reads gets 426 once
/// `--stall-timeout` passes with no byte moved, and the server lets go of the data socket
/// and the file: its descriptors return to where they were.
#[test]
fn a_download_nobody_reads_is_aborted_and_leaks_nothing() {
    let server = TestServer::builder("stall-down").args(["--stall-timeout", "2"]).start();
    make_file(&server.root().join("big.bin"), 64 * MIB, 1);
    let pid = server.pid();
    let at_start = fd_kinds(pid);
    // A first, complete session warms up whatever the server keeps (pipe pools, statics).
    {
        let mut c = Control::connect(server.addr(), WAIT);
        c.login(USER, PASS);
        make_file(&server.root().join("small.bin"), 300 * KIB, 2);
        assert_eq!(c.download("small.bin").expect("warm-up download").len() as u64, 300 * KIB);
        c.cmd("QUIT");
    }
    // Let the warm-up session's sockets close.
    assert!(
        wait_until(Duration::from_secs(5), || kind(&fd_kinds(pid), "socket") <= kind(&at_start, "socket")),
        "descriptors after the warm-up session: {:?}, at start {at_start:?}",
        fd_kinds(pid)
    );
    let baseline = fd_kinds(pid);

    // Three stalled downloads at once, so a leak per transfer shows as a multiple.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut c = Control::connect(server.addr(), WAIT);
        c.login(USER, PASS);
        assert_eq!(c.cmd("TYPE I").0, 200);
        let (code, text) = c.cmd("EPSV");
        assert_eq!(code, 229, "EPSV: {text}");
        let data = tiny_receiver(&server, epsv_port(&text));
        c.send("RETR big.bin");
        let (code, text) = c.reply().unwrap();
        assert_eq!(code, 150, "RETR: {text}");
        stalled.push((c, data));
    }
    for (c, data) in &mut stalled {
        let (code, text) = c.reply().unwrap_or_else(|e| {
            panic!("no reply to a stalled download within {WAIT:?}: {e}\n{}", server.log_for_failure())
        });
        assert_eq!(code, 426, "stalled download: {text}");
        assert!(text.contains("no data moved"), "{text}");
        // The control connection stays usable.
        assert_eq!(c.cmd("NOOP").0, 200);
        // The server closed the data connection: reading drains what the kernel buffered,
        // then ends (EOF or reset), well before the read timeout.
        let mut buf = vec![0u8; 1 << 20];
        let deadline = Instant::now() + WAIT;
        loop {
            match data.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => assert!(Instant::now() < deadline, "the data connection was left open"),
            }
        }
    }
    let with_sessions = fd_kinds(pid);
    drop(stalled);
    // Sockets (data and control) and the open file are released; pipes may stay pooled, but
    // not one pair per aborted transfer beyond what the pool holds after the warm-up.
    let released = wait_until(Duration::from_secs(5), || {
        let now = fd_kinds(pid);
        kind(&now, "socket") <= kind(&baseline, "socket") && kind(&now, "file") <= kind(&baseline, "file")
    });
    let after = fd_kinds(pid);
    eprintln!(
        "server descriptors: before {baseline:?}, with 3 stalled sessions {with_sessions:?}, after {after:?}"
    );
    assert!(
        released,
        "descriptors leaked by aborted downloads: before {baseline:?}, with the sessions \
         {with_sessions:?}, after {after:?}\n{}",
        server.log_for_failure()
    );
    assert!(
        kind(&after, "pipe") <= kind(&baseline, "pipe") + 6,
        "pipes: before {baseline:?}, after {after:?}"
    );
}

/// An upload that sends a few bytes and then nothing gets 426 after `--stall-timeout`, and
/// the server closes the data connection.
#[test]
fn an_upload_that_stops_sending_is_aborted() {
    let server = TestServer::builder("stall-up").args(["--stall-timeout", "2"]).start();
    let mut c = Control::connect(server.addr(), WAIT);
    c.login(USER, PASS);
    assert_eq!(c.cmd("TYPE I").0, 200);
    let mut data = c.epsv();
    c.send("STOR stalled.bin");
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 150, "STOR: {text}");
    data.write_all(b"a few bytes").unwrap();
    let (code, text) = c.reply().unwrap_or_else(|e| {
        panic!("no reply to a stalled upload within {WAIT:?}: {e}\n{}", server.log_for_failure())
    });
    assert_eq!(code, 426, "stalled upload: {text}");
    let mut buf = [0u8; 16];
    assert!(matches!(data.read(&mut buf), Ok(0) | Err(_)), "the data connection was left open");
    assert_eq!(c.cmd("NOOP").0, 200, "the control connection stays usable");
}

// ---------------------------------------------------------------------------------------------
// 2. Unclaimed passive listeners

/// Two sessions take both ports of a two-port range with EPSV and then only send NOOPs; a
/// third session of the same address (which may not share their ports) gets 425 until `--data-timeout` reclaims the idle listeners, then its EPSV
/// works and it can download.
#[test]
fn unclaimed_passive_ports_are_reclaimed() {
    let (lo, _) = passive_ports_block();
    let range = format!("{lo}-{}", lo + 1);
    let server =
        TestServer::builder("pasv-reclaim").args(["--passive-ports", &range, "--data-timeout", "2"]).start();
    make_file(&server.root().join("f.bin"), 200 * KIB, 3);

    let mut holders = Vec::new();
    let mut held_ports = Vec::new();
    for _ in 0..2 {
        let mut c = Control::connect(server.addr(), WAIT);
        c.login(USER, PASS);
        let (code, text) = c.cmd("EPSV");
        assert_eq!(code, 229, "EPSV: {text}");
        held_ports.push(epsv_port(&text));
        holders.push(c);
    }
    held_ports.sort_unstable();
    assert_eq!(held_ports, [lo, lo + 1], "both ports of the range are taken");

    let mut c = Control::connect(server.addr(), WAIT);
    c.login(USER, PASS);
    let (code, text) = c.cmd("EPSV");
    assert_eq!(code, 425, "EPSV with the range exhausted: {text}");

    // The holders keep their sessions busy with NOOPs (which must not keep the listeners),
    // until both ports refuse connections: the listeners were closed.
    let deadline = Instant::now() + Duration::from_secs(15);
    let refused = |port: u16| {
        TcpStream::connect_timeout(&SocketAddr::new(server.addr().ip(), port), Duration::from_secs(2))
            .is_err()
    };
    loop {
        for h in &mut holders {
            let (code, text) = h.cmd("NOOP");
            assert_eq!(code, 200, "NOOP from a holder: {text}");
        }
        if held_ports.iter().all(|&p| refused(p)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "passive listeners still open 15 s after EPSV with --data-timeout 2\n{}",
            server.log_for_failure()
        );
        thread::sleep(Duration::from_millis(500));
    }
    // A transfer on a reclaimed listener is refused (no data connection is set up any more).
    let (code, text) = final_reply_after(&mut holders[0], "RETR f.bin");
    assert_eq!(code, 425, "RETR after the listener was reclaimed: {text}");
    assert_eq!(holders[0].cmd("NOOP").0, 200);

    // The third session now gets a port and downloads.
    let got = c.download("f.bin").unwrap_or_else(|e| panic!("download after reclaim: {e:?}"));
    assert_eq!(sha256_bytes(&got), sha256_file(&server.root().join("f.bin")));
}

fn final_reply_after(c: &mut Control, line: &str) -> (u16, String) {
    c.send(line);
    final_reply(c, line)
}

// ---------------------------------------------------------------------------------------------
// 3. A data connection that is never made

#[test]
fn a_data_connection_never_made_gets_425() {
    let server = TestServer::builder("no-data-conn").args(["--data-timeout", "2"]).start();
    make_file(&server.root().join("f.bin"), 100 * KIB, 4);
    let mut c = Control::connect(server.addr(), WAIT);
    c.login(USER, PASS);
    let (code, text) = c.cmd("EPSV");
    assert_eq!(code, 229, "EPSV: {text}");
    let (code, text) = final_reply_after(&mut c, "RETR f.bin");
    assert_eq!(code, 425, "RETR with no data connection: {text}\n{}", server.log_for_failure());
    assert_eq!(c.cmd("NOOP").0, 200, "the control connection stays usable");
    // And the next transfer works normally.
    assert_eq!(c.download("f.bin").expect("download").len() as u64, 100 * KIB);
}

// ---------------------------------------------------------------------------------------------
// 4. and 5. Idle and login timeouts

/// Reads what the server sends within `timeout` (nothing, a reply, or EOF).
fn read_some(stream: &mut TcpStream, timeout: Duration, into: &mut Vec<u8>) -> io::Result<usize> {
    stream.set_read_timeout(Some(timeout))?;
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        Ok(n) => {
            into.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            Err(io::ErrorKind::WouldBlock.into())
        }
        Err(e) => Err(e),
    }
}

/// One byte every half second, never a line end: the idle timer keeps running, because only
/// a complete command counts as activity.
#[test]
fn partial_command_bytes_do_not_reset_the_idle_timer() {
    let server = TestServer::builder("idle-drip").args(["--idle-timeout", "2"]).start();
    let mut c = Control::connect(server.addr(), WAIT);
    c.login(USER, PASS);
    let mut stream = c.stream().try_clone().unwrap();
    let mut got = Vec::new();
    let mut sent = 0;
    // With the timer reset by every byte the server would never answer: 10 s bound.
    for &b in b"NOOPNOOPNOOPNOOPNOOP" {
        if stream.write_all(&[b]).is_ok() {
            sent += 1;
        }
        match read_some(&mut stream, Duration::from_millis(500), &mut got) {
            Ok(0) => break,
            Ok(_) if got.ends_with(b"\n") => break,
            Ok(_) | Err(_) => {}
        }
        if got.ends_with(b"\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("421 Timeout."),
        "after {sent} bytes without a line end: {text:?}\n{}",
        server.log_for_failure()
    );
    assert!(sent < 12, "the idle timeout came only after {sent} half-second bytes: {text:?}");
    assert!(c.closed_by_server(), "the connection is closed after 421");
}

#[test]
fn a_silent_connection_gets_421_at_the_login_timeout() {
    let server = TestServer::builder("login-timeout").args(["--login-timeout", "1"]).start();
    let mut c = Control::connect(server.addr(), WAIT);
    let (code, text) = c.reply().unwrap_or_else(|e| panic!("no 421 within {WAIT:?}: {e}"));
    assert_eq!(code, 421, "{text}");
    assert!(text.contains("Login timeout"), "{text}");
    assert!(c.closed_by_server(), "the connection is closed after 421");
}

// ---------------------------------------------------------------------------------------------
// 6. Shutdown

/// SIGTERM with a slow download running and an idle session: the idle one gets 421 at once,
/// the download runs on for the grace period and then gets 426 and 421, connections made
/// just after the signal are refused or told 421 (never left without a greeting), and the
/// process exits 0.
#[test]
fn shutdown_answers_everyone_and_exits() {
    // The grace period has no flag, only the config file key.
    let builder = TestServer::builder("shutdown-hostile");
    let config = builder.work().join("ringftpd.toml");
    fs::create_dir_all(builder.work()).unwrap();
    fs::write(&config, "shutdown_grace = 2\n").unwrap();
    let mut server = builder.args(["--config".to_string(), config.display().to_string()]).start();
    make_file(&server.root().join("big.bin"), 64 * MIB, 5);

    let mut idle = Control::connect(server.addr(), WAIT);
    idle.login(USER, PASS);

    let mut c = Control::connect(server.addr(), WAIT);
    c.login(USER, PASS);
    assert_eq!(c.cmd("TYPE I").0, 200);
    let (code, text) = c.cmd("EPSV");
    assert_eq!(code, 229, "EPSV: {text}");
    let mut data = tiny_receiver(&server, epsv_port(&text));
    c.send("RETR big.bin");
    assert_eq!(c.reply().unwrap().0, 150);
    // A slow reader: 4 KiB every 10 ms (~400 KiB/s) keeps the transfer moving but far from
    // done when the grace period ends.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut total = 0u64;
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                match data.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n as u64,
                }
                thread::sleep(Duration::from_millis(10));
            }
            total
        })
    };
    thread::sleep(Duration::from_millis(300));
    server.signal(libc::SIGTERM);
    let signalled = Instant::now();

    // Connections in the first second after the signal: refused, reset, or 421.
    let mut outcomes = BTreeMap::<&str, usize>::new();
    while signalled.elapsed() < Duration::from_secs(1) {
        let outcome = match TcpStream::connect_timeout(&server.addr(), Duration::from_secs(2)) {
            Err(_) => "refused",
            Ok(mut s) => {
                let mut got = Vec::new();
                match read_some(&mut s, Duration::from_secs(5), &mut got) {
                    Ok(0) => "closed without a greeting",
                    Ok(_) if got.starts_with(b"421") => "421",
                    // Accepted before the server saw the signal: greeted, and then, like any
                    // idle session, told 421.
                    Ok(_) if got.starts_with(b"220") => {
                        let deadline = Instant::now() + Duration::from_secs(5);
                        while !got.windows(5).any(|w| w == b"\n421 ") && Instant::now() < deadline {
                            match read_some(&mut s, Duration::from_millis(200), &mut got) {
                                Ok(0) => break,
                                Ok(_) => {}
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                                Err(_) => break,
                            }
                        }
                        assert!(
                            got.windows(5).any(|w| w == b"\n421 "),
                            "a session greeted as SIGTERM arrived got no 421: {:?}",
                            String::from_utf8_lossy(&got)
                        );
                        "220 then 421"
                    }
                    Ok(_) => panic!("a connection after SIGTERM got {:?}", String::from_utf8_lossy(&got)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        panic!("a connection after SIGTERM was left without a greeting for 5 s")
                    }
                    Err(_) => "reset",
                }
            }
        };
        *outcomes.entry(outcome).or_default() += 1;
        thread::sleep(Duration::from_millis(20));
    }
    eprintln!("connections in the first second after SIGTERM: {outcomes:?}");
    assert!(
        !outcomes.contains_key("closed without a greeting"),
        "connections after SIGTERM: {outcomes:?}\n{}",
        server.log_for_failure()
    );

    let (code, text) = idle.reply().unwrap_or_else(|e| panic!("idle session: no reply: {e}"));
    assert_eq!(code, 421, "idle session at shutdown: {text}");

    let (code, text) = c.reply().unwrap_or_else(|e| {
        panic!("download at shutdown: no reply within {WAIT:?}: {e}\n{}", server.log_for_failure())
    });
    assert_eq!(code, 426, "download at shutdown, after the grace period: {text}");
    let (code, text) = c.reply().unwrap_or_else(|e| panic!("download at shutdown: no 421: {e}"));
    assert_eq!(code, 421, "after the 426: {text}");
    stop.store(true, Ordering::Relaxed);
    let total = reader.join().unwrap();
    assert!(total < 64 * MIB, "the download should not have finished ({total} bytes)");

    let status = server.wait_exit(Duration::from_secs(10)).expect("ringftpd exits after the grace period");
    assert!(status.success(), "exit status {status:?}\n{}", server.log_for_failure());
}

// ---------------------------------------------------------------------------------------------
// 7. Restart right after kill -9

/// `kill -9` and an immediate restart on the same port, five times: the new server must
/// bind even while the kernel still tears down the old one's sockets (and io_uring instance,
/// which had a download in flight).
#[test]
fn restart_on_the_same_port_right_after_kill_9() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    for round in 0..5 {
        let mut server = TestServer::builder("restart-kill9").listen(&listen).start();
        make_file(&server.root().join("big.bin"), 16 * MIB, 6);
        // A live session with a download in flight, so the kill leaves sockets of the port
        // and pending kernel operations behind.
        let mut c = Control::connect(server.addr(), WAIT);
        c.login(USER, PASS);
        assert_eq!(c.cmd("TYPE I").0, 200);
        let (code, text) = c.cmd("EPSV");
        assert_eq!(code, 229, "EPSV: {text}");
        let data = tiny_receiver(&server, epsv_port(&text));
        assert_eq!(c.cmd("RETR big.bin").0, 150);
        server.signal(libc::SIGKILL);
        server.wait_exit(Duration::from_secs(10)).expect("killed");
        // Started at once; `start` fails the test if the server exits (address in use).
        let next = TestServer::builder("restart-kill9-next").listen(&listen).start();
        drop((c, data));
        let mut c = Control::connect(next.addr(), WAIT);
        c.login(USER, PASS);
        assert_eq!(c.cmd("NOOP").0, 200, "round {round}");
        drop(c);
        drop(next);
        drop(server);
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Names that are not UTF-8

#[test]
fn names_that_are_not_utf8_work_end_to_end() {
    let server = TestServer::start("latin1-names");
    let name: &[u8] = b"caf\xe9.txt";
    let content = b"un caf\xe9, s'il vous pla\xeet\n";
    fs::write(server.root().join(OsStr::from_bytes(name)), content).unwrap();
    let mut c = RawControl::connect(server.addr());
    c.login();
    assert_eq!(c.cmd("TYPE", b"I").0, 200);

    let (listing, code, _) = c.data_cmd("LIST", b"");
    assert_eq!(code, 226);
    assert!(contains(&listing, b" caf\xe9.txt\r\n"), "LIST: {:?}", lines(&listing));
    let (listing, code, _) = c.data_cmd("NLST", b"");
    assert_eq!(code, 226);
    assert!(contains(&listing, b"caf\xe9.txt\r\n"), "NLST: {:?}", lines(&listing));

    let (bytes, code, text) = c.data_cmd("RETR", name);
    assert_eq!(code, 226, "RETR: {}", String::from_utf8_lossy(&text));
    assert_eq!(bytes, content);

    let (code, text) = c.cmd("SIZE", name);
    assert_eq!((code, text), (213, format!("213 {}\r\n", content.len()).into_bytes()));
    let (code, text) = c.cmd("MDTM", name);
    assert_eq!(code, 213, "MDTM: {}", String::from_utf8_lossy(&text));
    let (code, text) = c.cmd("MLST", name);
    assert_eq!(code, 250, "MLST: {}", String::from_utf8_lossy(&text));
    assert!(contains(&text, b"type=file;"), "MLST: {}", String::from_utf8_lossy(&text));
    assert!(contains(&text, b" /caf\xe9.txt\r\n"), "MLST: {}", String::from_utf8_lossy(&text));

    let new: &[u8] = b"th\xe9.txt";
    assert_eq!(c.cmd("RNFR", name).0, 350);
    let (code, text) = c.cmd("RNTO", new);
    assert_eq!(code, 250, "RNTO: {}", String::from_utf8_lossy(&text));
    assert!(!server.root().join(OsStr::from_bytes(name)).exists());
    assert_eq!(fs::read(server.root().join(OsStr::from_bytes(new))).unwrap(), content);

    // A directory and an upload with such names too.
    let dir: &[u8] = b"r\xe9pertoire";
    assert_eq!(c.cmd("MKD", dir).0, 257);
    assert_eq!(c.cmd("CWD", dir).0, 250);
    // A 0xFF byte travels as Telnet IAC IAC (RFC 854), and arrives as one 0xFF.
    let mut data = c.epsv();
    assert_eq!(c.cmd("STOR", b"\xff\xff\xfe-not-utf8").0, 150);
    data.write_all(b"up").unwrap();
    drop(data);
    assert_eq!(c.reply().0, 226);
    let uploaded = server.root().join(OsStr::from_bytes(dir)).join(OsStr::from_bytes(b"\xff\xfe-not-utf8"));
    assert_eq!(fs::read(&uploaded).unwrap(), b"up");
    assert_eq!(c.cmd("CDUP", b"").0, 250);

    let (code, text) = c.cmd("DELE", new);
    assert_eq!(code, 250, "DELE: {}", String::from_utf8_lossy(&text));
    assert!(!server.root().join(OsStr::from_bytes(new)).exists());
}

// ---------------------------------------------------------------------------------------------
// 9. Symlinks inside the root

/// A tree with a file, a directory, links to both, a dangling link and a link that leaves
/// the root.
fn symlink_tree(root: &Path) {
    use std::os::unix::fs::symlink;
    fs::write(root.join("target.txt"), b"the target's content\n").unwrap();
    fs::create_dir(root.join("dir")).unwrap();
    fs::write(root.join("dir/inner.txt"), b"inner\n").unwrap();
    symlink("target.txt", root.join("link.txt")).unwrap();
    symlink("dir", root.join("dirlink")).unwrap();
    symlink("missing", root.join("dangling")).unwrap();
    symlink("/etc/passwd", root.join("escape")).unwrap();
    // Relative to its own directory, not to the one listed first.
    symlink("../target.txt", root.join("dir/up.txt")).unwrap();
}

#[test]
fn symlinks_are_listed_with_their_targets() {
    let server = TestServer::start("symlinks-list");
    symlink_tree(&server.root());
    let mut c = RawControl::connect(server.addr());
    c.login();

    let (listing, code, _) = c.data_cmd("LIST", b"");
    assert_eq!(code, 226);
    let list = lines(&listing);
    let line = |name: &str| {
        list.iter()
            // The name is the ninth field of an `ls -l` line.
            .find(|l| l.split_whitespace().nth(8) == Some(name))
            .unwrap_or_else(|| panic!("{name} not in LIST: {list:#?}"))
            .clone()
    };
    for (name, target) in
        [("link.txt", "target.txt"), ("dirlink", "dir"), ("dangling", "missing"), ("escape", "/etc/passwd")]
    {
        let l = line(name);
        assert!(l.starts_with("lrwxrwxrwx "), "LIST line of {name}: {l}");
        assert!(l.ends_with(&format!(" {name} -> {target}")), "LIST line of {name}: {l}");
    }
    assert!(line("target.txt").starts_with("-rw"), "{list:#?}");

    let (listing, code, _) = c.data_cmd("MLSD", b"");
    assert_eq!(code, 226);
    let mlsd = lines(&listing);
    let facts = |name: &str| {
        mlsd.iter()
            .find(|l| l.ends_with(&format!("; {name}")))
            .unwrap_or_else(|| panic!("{name} not in MLSD: {mlsd:#?}"))
            .clone()
    };
    let target_len = fs::metadata(server.root().join("target.txt")).unwrap().len();
    assert!(facts("link.txt").starts_with(&format!("type=file;size={target_len};")), "{mlsd:#?}");
    assert!(facts("dirlink").starts_with("type=dir;"), "{mlsd:#?}");
    assert!(facts("dangling").starts_with("type=OS.unix=symlink;"), "{mlsd:#?}");
    assert!(facts("escape").starts_with("type=OS.unix=symlink;"), "{mlsd:#?}");

    let (listing, code, _) = c.data_cmd("MLSD", b"dir");
    assert_eq!(code, 226);
    let sub = lines(&listing);
    let up = sub.iter().find(|l| l.ends_with("; up.txt")).unwrap_or_else(|| panic!("{sub:#?}"));
    assert!(up.starts_with(&format!("type=file;size={target_len};")), "{sub:#?}");

    // MLST says the same as MLSD for each.
    for (name, kind) in [("link.txt", "type=file;"), ("dirlink", "type=dir;")] {
        let (code, text) = c.cmd("MLST", name.as_bytes());
        assert_eq!(code, 250, "MLST {name}: {}", String::from_utf8_lossy(&text));
        assert!(
            contains(&text, format!(" {kind}").as_bytes()),
            "MLST {name}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    // What the links point to can be fetched through them.
    let (bytes, code, _) = c.data_cmd("RETR", b"link.txt");
    assert_eq!((code, bytes.as_slice()), (226, &b"the target's content\n"[..]));
    let (bytes, code, _) = c.data_cmd("RETR", b"dirlink/inner.txt");
    assert_eq!((code, bytes.as_slice()), (226, &b"inner\n"[..]));
}

#[test]
fn lftp_mirror_copies_a_symlinked_file() {
    let server = TestServer::start("symlinks-lftp");
    symlink_tree(&server.root());
    // The dangling and escaping links cannot be fetched; leave them out so mirror succeeds.
    fs::remove_file(server.root().join("dangling")).unwrap();
    fs::remove_file(server.root().join("escape")).unwrap();
    let work = server.work();
    run_text(&mut lftp(&server, &work, "mirror / mirrored")).ok(&server);
    let got = fs::read(work.join("mirrored/link.txt")).unwrap_or_else(|e| {
        panic!("lftp mirror left out the symlinked file: {e}\n{}", server.log_for_failure())
    });
    assert_eq!(got, b"the target's content\n");
    assert_eq!(fs::read(work.join("mirrored/dirlink/inner.txt")).unwrap(), b"inner\n");
}

#[test]
fn wget_mirror_copies_a_symlinked_file() {
    let server = TestServer::start("symlinks-wget");
    symlink_tree(&server.root());
    let work = server.work();
    let url = format!("ftp://{USER}:{PASS}@{}:{}/", server.host(), server.port());
    let ran = run_text(
        Command::new("wget")
            .args(["-m", "-nH", "--no-verbose", "--timeout=10", "--tries=1", "-P"])
            .arg(work.join("wget"))
            .arg(&url),
    );
    let got = fs::read(work.join("wget/link.txt")).unwrap_or_else(|e| {
        panic!("wget -m left out the symlinked file: {e}\n{}\n{}", ran.describe(), server.log_for_failure())
    });
    assert_eq!(got, b"the target's content\n", "{}", ran.describe());
    assert_eq!(fs::read(work.join("wget/target.txt")).unwrap(), b"the target's content\n");
}
