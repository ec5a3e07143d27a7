//! The library embedded in the test process: events delivered to the host, per-user policy
//! (permissions, homes, session caps, rate limits) and the Prometheus metrics endpoint. The
//! servers run in-process (`Server::builder(...).start()`) on loopback with port 0, and are
//! driven by real clients: Python's ftplib and raw control connections.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ringftp::events::{self, Event, EventReceiver};
use ringftp::{FsStorage, Permissions, Server, ServerBuilder, ServerHandle, User, UserList};

const T: Duration = Duration::from_secs(20);

/// A library server in this process, shut down on drop.
struct Lib {
    handle: Option<ServerHandle>,
    addr: SocketAddr,
    scratch: Scratch,
}

impl Lib {
    /// Starts a server on `127.0.0.1:0` serving a fresh root (created before `configure`
    /// runs, see `prepare`), with this test's own passive ports.
    fn start(
        tag: &str,
        prepare: impl FnOnce(&Path),
        users: UserList,
        configure: impl FnOnce(ServerBuilder<FsStorage, UserList>) -> ServerBuilder<FsStorage, UserList>,
    ) -> Lib {
        let scratch = Scratch::new(tag);
        let root = scratch.join("root");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(scratch.join("work")).unwrap();
        prepare(&root);
        let (lo, hi) = passive_ports_block();
        let builder = Server::builder(FsStorage::new(&root).unwrap(), users)
            .listen("127.0.0.1:0".parse().unwrap())
            .passive_ports(lo..=hi)
            .shutdown_grace(Duration::from_secs(1))
            .engine(common::engine());
        let handle = configure(builder).build().unwrap().start().unwrap();
        let addr = handle.local_addrs()[0];
        Lib { handle: Some(handle), addr, scratch }
    }

    fn root(&self) -> PathBuf {
        self.scratch.join("root")
    }

    fn work(&self) -> PathBuf {
        self.scratch.join("work")
    }

    fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().unwrap()
    }

    fn control(&self) -> Control {
        Control::connect(self.addr, T)
    }

    /// The Python client as `user`, with `steps`.
    fn py(&self, login: Option<(&str, &str)>, steps: &[&str]) -> Ran {
        let mut c = ftpclient_at(self.addr);
        if let Some((user, password)) = login {
            c.args(["--user", user, "--password", password]);
        }
        c.args(steps);
        let r = run_text_timeout(&mut c, Duration::from_secs(60));
        assert!(r.status.success(), "ftpclient failed:\n{}", r.describe());
        r
    }
}

impl Drop for Lib {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
    }
}

fn users() -> UserList {
    UserList::new().user_with_password(User::new("bob"), b"secret")
}

/// Asserts every step's line is a success (no `ERR`, no `EXC`).
fn assert_steps_ok(r: &Ran) {
    for line in r.stdout.lines() {
        assert!(
            !line.contains(": ERR ") && !line.contains(": EXC "),
            "step failed: {line}\n{}",
            r.describe()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Events

/// The session of the events tests: MKD, STOR, RETR, RNFR/RNTO, DELE, RMD, QUIT.
fn scripted_session(lib: &Lib, size: u64) -> Ran {
    let up = lib.work().join("up.bin");
    make_file(&up, size, 81);
    let down = lib.work().join("down.bin");
    let r = lib.py(
        Some(("bob", "secret")),
        &[
            "raw MKD dir",
            &format!("put '{}' /dir/file", up.display()),
            &format!("get /dir/file '{}'", down.display()),
            "raw RNFR /dir/file",
            "raw RNTO /dir/file2",
            "raw DELE /dir/file2",
            "raw RMD /dir",
            "quit",
        ],
    );
    assert_steps_ok(&r);
    assert!(r.stdout.contains("put: 226") && r.stdout.contains("get: 226"), "{}", r.describe());
    assert_eq!(fs::read(&down).unwrap(), fs::read(&up).unwrap());
    r
}

/// Collects events until `done` holds for them (bounded), then until the queue stays quiet
/// for a moment, so that an extra event would be counted too.
fn collect(rx: &EventReceiver, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let mut events = Vec::new();
    let deadline = Instant::now() + T;
    while !done(&events) && Instant::now() < deadline {
        if let Some(e) = rx.recv_timeout(Duration::from_millis(100)) {
            events.push(e);
        }
    }
    while let Some(e) = rx.recv_timeout(Duration::from_millis(500)) {
        events.push(e);
    }
    events
}

#[test]
fn events_report_each_action_once() {
    let (tx, rx) = events::channel(1024);
    let lib = Lib::start("events", |_| {}, users(), |b| b.events(tx));
    let size = 300 * KIB + 5;
    scripted_session(&lib, size);
    let bad = lib.py(None, &["login bob wrong"]);
    assert!(bad.stdout.contains("login: ERR 530"), "{}", bad.describe());

    let events = collect(&rx, |events| {
        events.iter().any(|e| matches!(e, Event::Logout { .. }))
            && events.iter().any(|e| matches!(e, Event::Login { ok: false, .. }))
    });
    let list = format!("{events:#?}");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &events {
        let kind = match e {
            Event::Login { ok: true, .. } => "login ok",
            Event::Login { ok: false, .. } => "login failed",
            Event::Logout { .. } => "logout",
            Event::Upload(_) => "upload",
            Event::Download(_) => "download",
            Event::Deleted { .. } => "deleted",
            Event::Renamed { .. } => "renamed",
            Event::DirCreated { .. } => "dir created",
            Event::DirRemoved { .. } => "dir removed",
            _ => "other",
        };
        *counts.entry(kind).or_default() += 1;
    }
    let want: BTreeMap<&str, usize> = [
        ("login ok", 1),
        ("login failed", 1),
        ("logout", 1),
        ("upload", 1),
        ("download", 1),
        ("deleted", 1),
        ("renamed", 1),
        ("dir created", 1),
        ("dir removed", 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts, want, "event counts; events:\n{list}");
    assert_eq!(rx.dropped(), 0);

    for e in &events {
        match e {
            Event::Login { user, peer, .. } => {
                assert_eq!(user, "bob");
                assert!(peer.ip().is_loopback(), "{peer}");
            }
            Event::Logout { user, .. } => assert_eq!(user, "bob"),
            Event::Upload(r) | Event::Download(r) => {
                assert_eq!(r.user, "bob");
                assert_eq!(r.path, Path::new("/dir/file"), "{list}");
                assert_eq!(r.bytes, size, "{list}");
                assert!(r.complete, "{list}");
            }
            Event::Renamed { from, to, .. } => {
                assert_eq!((from.as_path(), to.as_path()), (Path::new("/dir/file"), Path::new("/dir/file2")));
            }
            Event::Deleted { path, .. } => assert_eq!(path, Path::new("/dir/file2")),
            Event::DirCreated { path, .. } | Event::DirRemoved { path, .. } => {
                assert_eq!(path, Path::new("/dir"))
            }
            _ => {}
        }
    }
    // In order within the session.
    let order: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Login { ok: true, .. } => Some("login"),
            Event::DirCreated { .. } => Some("mkd"),
            Event::Upload(_) => Some("stor"),
            Event::Download(_) => Some("retr"),
            Event::Renamed { .. } => Some("rename"),
            Event::Deleted { .. } => Some("dele"),
            Event::DirRemoved { .. } => Some("rmd"),
            Event::Logout { .. } => Some("logout"),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["login", "mkd", "stor", "retr", "rename", "dele", "rmd", "logout"], "{list}");
}

#[test]
fn full_event_queue_drops_instead_of_blocking() {
    // Capacity 1 and never drained while the session runs.
    let (tx, rx) = events::channel(1);
    let lib = Lib::start("events-full", |_| {}, users(), |b| b.events(tx));
    let started = Instant::now();
    scripted_session(&lib, 64 * KIB);
    eprintln!("session with a full event queue took {:?}", started.elapsed());
    assert!(rx.dropped() > 0, "nothing dropped with a queue of one");
    // The one queued event is the first one: the login.
    assert!(matches!(rx.try_recv(), Some(Event::Login { ok: true, .. })));
    // The server still serves.
    let mut c = lib.control();
    c.login("bob", "secret");
    assert_eq!(c.cmd("PWD").0, 257);
}

#[test]
fn events_mark_interrupted_transfers_incomplete() {
    let (tx, rx) = events::channel(1024);
    let size = 8 * MIB;
    let lib = Lib::start(
        "events-incomplete",
        |root| make_file(&root.join("big.bin"), size, 83),
        users(),
        |b| b.events(tx),
    );
    let mut c = lib.control();
    c.login("bob", "secret");
    assert!(matches!(rx.recv_timeout(T), Some(Event::Login { ok: true, .. })));

    // An upload whose data connection is reset after 300,000 bytes.
    assert_eq!(c.cmd("TYPE I").0, 200);
    let mut data = c.epsv();
    assert_eq!(c.cmd("STOR part.bin").0, 150);
    let sent = 300_000;
    data.write_all(&pattern(sent, 84)).unwrap();
    let part = lib.root().join("part.bin");
    assert!(wait_until(T, || fs::metadata(&part).is_ok_and(|m| m.len() == sent as u64)), "upload stalled");
    socket2::SockRef::from(&data).set_linger(Some(Duration::ZERO)).unwrap();
    drop(data);
    assert_eq!(c.reply().unwrap().0, 426);
    match rx.recv_timeout(T) {
        Some(Event::Upload(r)) => {
            assert!(!r.complete, "{r:?}");
            assert_eq!((r.bytes, r.path.as_path()), (sent as u64, Path::new("/part.bin")), "{r:?}");
        }
        other => panic!("expected an incomplete upload, got {other:?}"),
    }

    // A download stopped by ABOR after the first MiB.
    let mut data = c.epsv();
    assert_eq!(c.cmd("RETR big.bin").0, 150);
    let mut first = vec![0u8; MIB as usize];
    data.read_exact(&mut first).unwrap();
    c.send("ABOR");
    assert_eq!(c.reply().unwrap().0, 426);
    assert_eq!(c.reply().unwrap().0, 226);
    drop(data);
    match rx.recv_timeout(T) {
        Some(Event::Download(r)) => {
            assert!(!r.complete, "{r:?}");
            assert!(r.bytes >= MIB && r.bytes < size, "{r:?}");
            assert_eq!(r.path, Path::new("/big.bin"));
        }
        other => panic!("expected an incomplete download, got {other:?}"),
    }
    // A refused RETR (no such file) is no transfer at all.
    let _ = c.epsv();
    assert_eq!(c.cmd("RETR missing.bin").0, 550);
    assert_eq!(c.cmd("QUIT").0, 221);
    assert!(matches!(rx.recv_timeout(T), Some(Event::Logout { .. })));
    assert_eq!(rx.recv_timeout(Duration::from_millis(300)), None);
}

// ---------------------------------------------------------------------------------------------
// Per-user policy

#[test]
fn permissions_read_only_and_write_only() {
    let read_only = Permissions { read: true, write: false, delete: false, rename: false, mkdir: false };
    let write_only = Permissions { read: false, write: true, delete: false, rename: false, mkdir: false };
    let users = UserList::new()
        .user_with_password(User::new("reader").permissions(read_only), b"r")
        .user_with_password(User::new("writer").permissions(write_only), b"w");
    let lib =
        Lib::start("permissions", |root| fs::write(root.join("pub.txt"), b"public").unwrap(), users, |b| b);

    let mut r = lib.control();
    r.login("reader", "r");
    assert_eq!(r.upload("new.txt", b"x").0, 550, "STOR as reader");
    for cmd in ["MKD d", "DELE pub.txt", "RNFR pub.txt", "APPE pub.txt", "STOU"] {
        let (code, text) = r.cmd(cmd);
        assert_eq!(code, 550, "{cmd} as reader: {text}");
    }
    assert_eq!(r.download("pub.txt").unwrap(), b"public");

    let mut w = lib.control();
    w.login("writer", "w");
    assert_eq!(w.download("pub.txt").unwrap_err().0, 550, "RETR as writer");
    let (code, text) = w.upload("new.txt", b"from writer");
    assert_eq!(code, 226, "STOR as writer: {text}");
    for cmd in ["MKD d", "DELE new.txt", "RNFR new.txt"] {
        assert_eq!(w.cmd(cmd).0, 550, "{cmd} as writer");
    }

    let root = lib.root();
    assert_eq!(fs::read(root.join("pub.txt")).unwrap(), b"public");
    assert_eq!(fs::read(root.join("new.txt")).unwrap(), b"from writer");
    let mut names: Vec<_> = fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["new.txt", "pub.txt"]);
}

fn nlst(c: &mut Control, path: &str) -> Vec<String> {
    let mut data = c.epsv();
    let (code, text) = c.cmd(format!("NLST {path}").trim_end());
    assert_eq!(code, 150, "NLST {path}: {text}");
    let mut out = String::new();
    data.read_to_string(&mut out).unwrap();
    assert_eq!(c.reply().unwrap().0, 226);
    let mut names: Vec<String> = out.lines().map(str::to_string).collect();
    names.sort();
    names
}

#[test]
fn users_with_different_homes_cannot_see_each_other() {
    let users = UserList::new()
        .user_with_password(User::new("alice").home("alice"), b"a")
        .user_with_password(User::new("bob").home("bob"), b"b");
    let lib = Lib::start(
        "homes",
        |root| {
            fs::create_dir_all(root.join("alice")).unwrap();
            fs::create_dir_all(root.join("bob")).unwrap();
            fs::write(root.join("alice/a.txt"), b"alice's").unwrap();
            fs::write(root.join("bob/x"), b"bob's").unwrap();
            fs::write(root.join("top.txt"), b"root's").unwrap();
        },
        users,
        |b| b,
    );
    let mut alice = lib.control();
    alice.login("alice", "a");
    assert_eq!(nlst(&mut alice, ""), ["a.txt"]);
    assert_eq!(nlst(&mut alice, "/"), ["a.txt"]);
    assert_eq!(alice.cmd("PWD").1, "257 \"/\" is the current directory");
    for path in ["../bob/x", "/bob/x", "/../bob/x", "../../bob/x", "../top.txt"] {
        let err = alice.download(path).expect_err(path);
        assert_eq!(err.0, 550, "RETR {path} as alice: {}", err.1);
        assert_eq!(alice.cmd(&format!("SIZE {path}")).0, 550, "SIZE {path}");
    }
    assert_eq!(alice.cmd("CWD ../bob").0, 550);
    assert_eq!(alice.cmd("CWD ..").0, 250);
    assert_eq!(nlst(&mut alice, ""), ["a.txt"], "CWD .. stays in the home");
    // alice's upload lands in her home only.
    assert_eq!(alice.upload("../x", b"alice's x").0, 226);
    assert_eq!(fs::read(lib.root().join("alice/x")).unwrap(), b"alice's x");
    assert_eq!(fs::read(lib.root().join("bob/x")).unwrap(), b"bob's");

    let mut bob = lib.control();
    bob.login("bob", "b");
    assert_eq!(nlst(&mut bob, ""), ["x"]);
    assert_eq!(bob.download("x").unwrap(), b"bob's");
    assert_eq!(bob.download("../alice/a.txt").unwrap_err().0, 550);
}

#[test]
fn per_user_max_sessions_refuses_the_second_login_with_421() {
    let users = UserList::new()
        .user_with_password(User::new("single").max_sessions(1), b"s")
        .user_with_password(User::new("bob"), b"secret");
    let lib = Lib::start("user-max-sessions", |_| {}, users, |b| b);
    let mut first = lib.control();
    first.login("single", "s");
    let mut second = lib.control();
    assert_eq!(second.cmd("USER single").0, 331);
    let (code, text) = second.cmd("PASS s");
    assert_eq!(code, 421, "second login of a max_sessions(1) user: {text}");
    assert!(second.closed_by_server(), "the refused session stays open");
    // Other users are not affected.
    let mut bob = lib.control();
    bob.login("bob", "secret");
    // Once the first leaves, the user can log in again.
    assert_eq!(first.cmd("QUIT").0, 221);
    assert!(first.closed_by_server());
    let mut last = (0, String::new());
    let again = wait_until(T, || {
        let mut c = lib.control();
        assert_eq!(c.cmd("USER single").0, 331);
        last = c.cmd("PASS s");
        last.0 == 230
    });
    assert!(again, "no login after the first session left; last reply {last:?}");
}

// `User::max_sessions`: "Limits the user's concurrent sessions; beyond it a login gets 421".
// A session that logs in again as the same user is still one session (USER while logged in
// starts a new login, RFC 959 4.1.1, and the session supports it); a session that left with
// REIN is no session of that user any more.

#[test]
fn per_user_max_sessions_lets_the_only_session_log_in_again() {
    let users = UserList::new().user_with_password(User::new("single").max_sessions(1), b"s");
    let lib = Lib::start("user-max-relogin", |_| {}, users, |b| b);
    let mut a = lib.control();
    a.login("single", "s");
    assert_eq!(a.cmd("USER single").0, 331);
    let (code, text) = a.cmd("PASS s");
    assert_eq!(code, 230, "the only session of a max_sessions(1) user logs in again: {text}");
    assert_eq!(a.cmd("PWD").0, 257);
}

#[test]
fn per_user_max_sessions_frees_the_place_of_a_session_after_rein() {
    let users = UserList::new().user_with_password(User::new("single").max_sessions(1), b"s");
    let lib = Lib::start("user-max-rein", |_| {}, users, |b| b);
    let mut a = lib.control();
    a.login("single", "s");
    let (code, text) = a.cmd("REIN");
    assert_eq!(code, 220, "REIN: {text}");
    assert_eq!(a.cmd("PWD").0, 530, "still logged in after REIN");
    // Nobody is logged in as `single` now.
    let mut last = (0, String::new());
    // The session that gets in must stay open: it holds the only place from then on.
    let mut holder = None;
    let admitted = wait_until(Duration::from_secs(5), || {
        let mut c = lib.control();
        assert_eq!(c.cmd("USER single").0, 331);
        last = c.cmd("PASS s");
        let ok = last.0 == 230;
        if ok {
            holder = Some(c);
        }
        ok
    });
    assert!(admitted, "a login while the user's only other session has sent REIN: {last:?}");
    assert!(holder.is_some());
    // That login holds the only place now: the REIN'd session cannot log in again.
    assert_eq!(a.cmd("USER single").0, 331);
    assert_eq!(a.cmd("PASS s").0, 421, "a second concurrent login of a max_sessions(1) user");
}

/// Logs in and opens a data connection, ready for `RETR name`.
fn ready_to_retr(addr: SocketAddr, user: &str, pass: &str) -> (Control, TcpStream) {
    let mut c = Control::connect(addr, T);
    c.login(user, pass);
    assert_eq!(c.cmd("TYPE I").0, 200);
    let data = c.epsv();
    (c, data)
}

fn finish_retr(c: &mut Control, mut data: TcpStream, name: &str) -> Vec<u8> {
    let (code, text) = c.cmd(&format!("RETR {name}"));
    assert_eq!(code, 150, "RETR {name}: {text}");
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 226, "RETR {name}: {text}");
    got
}

const RATE: u64 = 500_000;

#[test]
fn per_user_rate_limit_slows_a_download() {
    let users = UserList::new().user_with_password(User::new("slow").rate_limit(RATE), b"s");
    const SIZE: u64 = 1_500_000;
    let lib = Lib::start("rate-single", |root| make_file(&root.join("f.bin"), SIZE, 91), users, |b| b);
    let (mut c, data) = ready_to_retr(lib.addr, "slow", "s");
    let started = Instant::now();
    let got = finish_retr(&mut c, data, "f.bin");
    let took = started.elapsed();
    assert!(got == pattern(SIZE as usize, 91));
    // 1.5 MB at 500 kB/s is 3 s, less the 100 ms burst: 2.9 s. Lower bound only, with room.
    eprintln!("1.5 MB at {RATE} B/s took {took:?}");
    assert!(took >= Duration::from_secs(2), "1.5 MB at {RATE} B/s took only {took:?}");

    // Uploads have their own limit at the same rate.
    assert_eq!(c.cmd("TYPE I").0, 200);
    let mut data = c.epsv();
    let content = pattern(SIZE as usize, 96);
    let started = Instant::now();
    assert_eq!(c.cmd("STOR up.bin").0, 150);
    data.write_all(&content).unwrap();
    data.shutdown(std::net::Shutdown::Write).unwrap();
    drop(data);
    let (code, text) = c.reply().unwrap();
    let took = started.elapsed();
    assert_eq!(code, 226, "rate-limited STOR: {text}");
    assert!(fs::read(lib.root().join("up.bin")).unwrap() == content);
    eprintln!("1.5 MB upload at {RATE} B/s took {took:?}");
    assert!(took >= Duration::from_secs(2), "1.5 MB upload at {RATE} B/s took only {took:?}");
}

#[test]
fn per_user_rate_limit_is_shared_by_the_users_sessions() {
    let users = UserList::new().user_with_password(User::new("slow").rate_limit(RATE), b"s");
    const SIZE: u64 = 750_000;
    let lib = Lib::start("rate-shared", |root| make_file(&root.join("h.bin"), SIZE, 92), users, |b| b);
    // Both sessions log in (sharing the user's state) before either transfer starts.
    let sessions: Vec<_> = (0..2).map(|_| ready_to_retr(lib.addr, "slow", "s")).collect();
    let barrier = Arc::new(Barrier::new(3));
    let threads: Vec<_> = sessions
        .into_iter()
        .map(|(mut c, data)| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                finish_retr(&mut c, data, "h.bin")
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for t in threads {
        assert!(t.join().unwrap() == pattern(SIZE as usize, 92));
    }
    let took = started.elapsed();
    // 2 x 750 kB share 500 kB/s: 2.9 s; each alone at the full rate would take 1.4 s.
    eprintln!("2 x 750 kB at a shared {RATE} B/s took {took:?}");
    assert!(took >= Duration::from_secs(2), "2 x 750 kB took only {took:?}: the limit is not shared");
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// `GET path` over HTTP/1.0: the status code and the body.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, T).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.set_write_timeout(Some(T)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).unwrap();
    let response = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) =
        response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end: {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    (status, body.to_string())
}

/// One sample: its name and labels.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses and checks exposition text: comments are `# TYPE|HELP|UNIT|EOF`, every other
/// non-empty line is `name{labels} value` or `name value` with a numeric value.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    let (mut types, mut helps) = (0, 0);
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            let word = comment.split_whitespace().next().unwrap_or_default();
            assert!(["TYPE", "HELP", "UNIT", "EOF"].contains(&word), "unknown comment line {line:?}");
            types += usize::from(word == "TYPE");
            helps += usize::from(word == "HELP");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value is not a number: {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                let labels = inner
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) =
                            pair.split_once('=').unwrap_or_else(|| panic!("bad label {pair:?}: {line:?}"));
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .unwrap_or_else(|| panic!("unquoted label value: {line:?}"));
                        (k.to_string(), v.to_string())
                    })
                    .collect();
                (name, labels)
            }
            None => (series, BTreeMap::new()),
        };
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        assert!(valid_name, "bad metric name in {line:?}");
        samples.push(Sample { name: name.to_string(), labels, value });
    }
    assert!(types > 0 && helps > 0, "no # TYPE / # HELP lines:\n{text}");
    samples
}

/// The value of the sample `name` with (at least) these labels; 0 if it does not exist yet.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(matching.len() <= 1, "several samples match {name} {labels:?}: {matching:?}");
    matching.first().map_or(0.0, |s| s.value)
}

fn scrape(addr: SocketAddr) -> (Vec<Sample>, String) {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "GET /metrics: {body}");
    (parse_exposition(&body), body)
}

#[test]
fn metrics_count_logins_bytes_transfers_and_errors() {
    let lib = Lib::start("metrics", |_| {}, users(), |b| b.metrics("127.0.0.1:0".parse().unwrap()));
    let metrics = lib.handle().metrics_addr().expect("metrics address");
    assert!(metrics.ip().is_loopback() && metrics.port() != 0, "{metrics}");
    let (up_size, down_size) = (200 * KIB + 3, 300 * KIB + 1);
    let up = lib.work().join("up.bin");
    make_file(&up, up_size, 93);
    make_file(&lib.root().join("down.bin"), down_size, 94);
    let back = lib.work().join("back.bin");
    let r = lib.py(
        Some(("bob", "secret")),
        &[&format!("put '{}' up.bin", up.display()), &format!("get down.bin '{}'", back.display()), "quit"],
    );
    assert_steps_ok(&r);
    let bad = lib.py(None, &["login bob wrong"]);
    assert!(bad.stdout.contains("login: ERR 530"), "{}", bad.describe());

    let (s, body) = scrape(metrics);
    let check = |name: &str, labels: &[(&str, &str)], at_least: f64| {
        let v = value(&s, name, labels);
        assert!(v >= at_least, "{name}{labels:?} = {v}, expected at least {at_least}\n{body}");
    };
    check("ringftp_logins_total", &[("result", "ok")], 1.0);
    check("ringftp_logins_total", &[("result", "failed")], 1.0);
    check("ringftp_bytes_total", &[("direction", "in")], up_size as f64);
    check("ringftp_bytes_total", &[("direction", "out")], down_size as f64);
    check("ringftp_transfers_total", &[("command", "STOR"), ("result", "ok")], 1.0);
    check("ringftp_transfers_total", &[("command", "RETR"), ("result", "ok")], 1.0);
    check("ringftp_error_replies_total", &[("code", "530")], 1.0);
    assert!(s.iter().any(|s| s.name == "ringftp_sessions"), "no ringftp_sessions gauge\n{body}");
    assert!(
        s.iter().any(|s| s.name == "ringftp_passive_ports_in_use" && s.labels.contains_key("shard")),
        "no ringftp_passive_ports_in_use{{shard}}\n{body}"
    );
    assert_eq!(http_get(metrics, "/nothing-here").0, 404);

    // Counters move with a transfer, by its size.
    let (before, _) = scrape(metrics);
    let size = 123_457;
    make_file(&lib.root().join("more.bin"), size, 95);
    let mut c = lib.control();
    c.login("bob", "secret");
    assert_eq!(c.download("more.bin").unwrap().len() as u64, size);
    let (after, body) = scrape(metrics);
    let delta =
        |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
    assert_eq!(delta("ringftp_bytes_total", &[("direction", "out")]), size as f64, "{body}");
    assert_eq!(delta("ringftp_transfers_total", &[("command", "RETR"), ("result", "ok")]), 1.0, "{body}");
    assert_eq!(delta("ringftp_logins_total", &[("result", "ok")]), 1.0, "{body}");
    assert_eq!(delta("ringftp_bytes_total", &[("direction", "in")]), 0.0, "{body}");
    // The open session shows in the gauge.
    assert!(value(&after, "ringftp_sessions", &[]) >= 1.0, "{body}");
}

#[test]
fn metrics_gauges_return_to_zero_when_sessions_end() {
    let lib = Lib::start(
        "metrics-gauges",
        |root| fs::write(root.join("f"), b"x").unwrap(),
        users(),
        |b| b.metrics("127.0.0.1:0".parse().unwrap()),
    );
    let metrics = lib.handle().metrics_addr().unwrap();
    let mut sessions: Vec<Control> = (0..3).map(|_| lib.control()).collect();
    for c in &mut sessions {
        c.login("bob", "secret");
        assert_eq!(c.cmd("EPSV").0, 229);
    }
    let (s, body) = scrape(metrics);
    assert_eq!(value(&s, "ringftp_sessions", &[]), 3.0, "{body}");
    let ports: f64 = s.iter().filter(|s| s.name == "ringftp_passive_ports_in_use").map(|s| s.value).sum();
    assert_eq!(ports, 3.0, "three sessions each hold a passive port\n{body}");
    for c in &mut sessions {
        assert_eq!(c.cmd("QUIT").0, 221);
    }
    drop(sessions);
    let mut last = String::new();
    let settled = wait_until(T, || {
        let (s, body) = scrape(metrics);
        let ports: f64 = s.iter().filter(|s| s.name == "ringftp_passive_ports_in_use").map(|s| s.value).sum();
        last = body;
        value(&s, "ringftp_sessions", &[]) == 0.0 && ports == 0.0
    });
    assert!(settled, "sessions and passive ports did not return to 0:\n{last}");
}

#[test]
fn metrics_count_the_421_of_refused_connections() {
    // ringftp_error_replies_total is "4xx and 5xx replies sent, by code": the 421 a full
    // server sends to a new connection is one of them.
    let lib = Lib::start(
        "metrics-refused",
        |_| {},
        users(),
        |b| b.metrics("127.0.0.1:0".parse().unwrap()).max_sessions(1),
    );
    let metrics = lib.handle().metrics_addr().unwrap();
    let _admitted = lib.control();
    for _ in 0..2 {
        let (mut refused, first) = Control::connect_any(lib.addr, T);
        let (code, text) = first.unwrap();
        assert_eq!(code, 421, "{text}");
        assert!(refused.closed_by_server());
    }
    let (s, body) = scrape(metrics);
    let counted = value(&s, "ringftp_error_replies_total", &[("code", "421")]);
    assert_eq!(counted, 2.0, "two 421 replies to refused connections, counted {counted}:\n{body}");
}

#[test]
fn ringftpd_metrics_flag_prints_and_serves_the_address() {
    let server = TestServer::with_args("metrics-flag", &["--metrics", "127.0.0.1:0"]);
    let lines = server.stdout_lines();
    let url = lines
        .iter()
        .find_map(|l| l.strip_prefix("ringftpd metrics on http://"))
        .unwrap_or_else(|| panic!("no metrics line on stdout: {lines:?}"));
    let addr: SocketAddr = url
        .strip_suffix("/metrics")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("bad metrics line: {url:?}"));
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let mut c = Control::connect(server.addr(), T);
    assert_eq!(c.cmd("USER bob").0, 331);
    assert_eq!(c.cmd("PASS nope").0, 530);
    c.login(USER, PASS);
    let (s, body) = scrape(addr);
    assert!(value(&s, "ringftp_logins_total", &[("result", "ok")]) >= 1.0, "{body}");
    assert!(value(&s, "ringftp_logins_total", &[("result", "failed")]) >= 1.0, "{body}");
    assert!(value(&s, "ringftp_error_replies_total", &[("code", "530")]) >= 1.0, "{body}");
    assert!(value(&s, "ringftp_sessions", &[]) >= 1.0, "{body}");
}
