//! Operations: JSON logs, the transfer log (xferlog), systemd readiness and socket activation,
//! and reloading users, limits, timeouts and the ban list on SIGHUP.
//!
//! Each test runs the real binary on loopback; every wait is bounded.

mod common;

use std::time::Duration;

use common::*;

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn json_logs_are_one_object_per_line() {
    let server = TestServer::with_args("json-log", &["--log-format", "json"]);
    let mut c = Control::connect(server.addr(), TIMEOUT);
    c.login(USER, PASS);
    assert_eq!(c.cmd("QUIT").0, 221);
    assert!(server.wait_for_log(TIMEOUT, |log| log.contains("\"login\"")), "{}", server.log_for_failure());
    let log = server.stderr_log();
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{log}"));
        assert!(value.get("level").is_some_and(|l| l.is_string()), "no level: {line}");
        assert!(value.get("timestamp").is_some(), "no timestamp: {line}");
        assert!(value.get("fields").is_some_and(|f| f.is_object()), "no fields: {line}");
        lines += 1;
    }
    assert!(lines >= 2, "expected several log lines:\n{log}");
    assert!(log.contains(&format!("\"user\":\"{USER}\"")), "the login line names the user:\n{log}");
}

/// The fields of an xferlog line, with the five-word date joined back.
struct XferLine {
    fields: Vec<String>,
}

impl XferLine {
    fn parse(line: &str) -> XferLine {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.len(), 18, "an xferlog line has a 5-word date and 13 more fields: {line:?}");
        let mut fields = vec![words[..5].join(" ")];
        fields.extend(words[5..].iter().map(|w| w.to_string()));
        XferLine { fields }
    }

    fn get(&self, name: &str) -> &str {
        let names = [
            "current-time",
            "transfer-time",
            "remote-host",
            "file-size",
            "filename",
            "transfer-type",
            "special-action-flag",
            "direction",
            "access-mode",
            "username",
            "service-name",
            "authentication-method",
            "authenticated-user-id",
            "completion-status",
        ];
        let i = names.iter().position(|n| *n == name).expect("a field name");
        &self.fields[i]
    }
}

#[test]
fn xferlog_has_a_line_per_complete_and_aborted_transfer() {
    let b = TestServer::builder("xferlog").arg("--anonymous");
    let log_path = b.work().join("xferlog");
    let server = b.args(["--xferlog", log_path.to_str().unwrap()]).start();
    let content = pattern(100_000, 3);
    make_file(&server.root().join("big.bin"), 16 * MIB, 4);
    std::fs::write(server.root().join("notes.txt"), b"one\ntwo\n").unwrap();

    let mut c = Control::connect(server.addr(), TIMEOUT);
    c.login(USER, PASS);
    // A complete upload and download; the space in the name becomes `_`.
    assert_eq!(c.upload("up file.bin", &content).0, 226, "{}", server.log_for_failure());
    assert_eq!(c.download("up file.bin").expect("download"), content);
    // A download whose client goes away after 64 KiB.
    assert_eq!(c.cmd("TYPE I").0, 200);
    let mut data = c.epsv();
    assert_eq!(c.cmd("RETR big.bin").0, 150);
    let mut first = vec![0u8; 64 * 1024];
    std::io::Read::read_exact(&mut data, &mut first).unwrap();
    drop(data);
    let (code, text) = c.reply().expect("a reply after the lost data connection");
    assert!(code == 426 || code == 451, "{code} {text}");
    // An anonymous download in ASCII mode.
    let mut a = Control::connect(server.addr(), TIMEOUT);
    a.login("anonymous", "guest@example.org");
    assert_eq!(a.cmd("TYPE A").0, 200);
    let mut data = a.epsv();
    assert_eq!(a.cmd("RETR notes.txt").0, 150);
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut data, &mut text).unwrap();
    assert_eq!(text, b"one\r\ntwo\r\n");
    assert_eq!(a.reply().unwrap().0, 226);

    let mut lines = Vec::new();
    let complete = wait_until(TIMEOUT, || {
        lines = std::fs::read_to_string(&log_path).unwrap_or_default().lines().map(str::to_string).collect();
        lines.len() >= 4
    });
    assert!(complete, "expected 4 xferlog lines, got {lines:#?}\n{}", server.log_for_failure());
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let lines: Vec<XferLine> = lines.iter().map(|l| XferLine::parse(l)).collect();
    for l in &lines {
        assert_eq!(l.get("remote-host"), "127.0.0.1");
        assert!(l.get("transfer-time").parse::<u64>().is_ok_and(|t| t >= 1), "{:?}", l.fields);
        assert_eq!(l.get("special-action-flag"), "_");
        assert_eq!(l.get("service-name"), "ftp");
        assert_eq!(l.get("authentication-method"), "0");
        assert_eq!(l.get("authenticated-user-id"), "*");
        let year = l.get("current-time").rsplit(' ').next().unwrap().parse::<u32>().unwrap();
        assert!(year >= 2024, "{:?}", l.fields);
    }
    let expect = [
        // size, filename, type, direction, access, user, status
        ("100000", "/up_file.bin", "b", "i", "r", USER, "c"),
        ("100000", "/up_file.bin", "b", "o", "r", USER, "c"),
        ("", "/big.bin", "b", "o", "r", USER, "i"),
        ("10", "/notes.txt", "a", "o", "a", "anonymous", "c"),
    ];
    for (l, (size, name, kind, direction, access, user, status)) in lines.iter().zip(expect) {
        let got = (
            l.get("filename"),
            l.get("transfer-type"),
            l.get("direction"),
            l.get("access-mode"),
            l.get("username"),
            l.get("completion-status"),
        );
        assert_eq!(got, (name, kind, direction, access, user, status), "{:?}", l.fields);
        if !size.is_empty() {
            assert_eq!(l.get("file-size"), size, "{:?}", l.fields);
        }
    }
    let partial: u64 = lines[2].get("file-size").parse().unwrap();
    assert!((64 * 1024..16 * MIB).contains(&partial), "aborted download moved {partial} bytes");
}

/// A `ringftpd` started by hand (for what [`TestServer`] cannot set up: an inherited fd 3 and
/// a `LISTEN_PID` that must be the server's own pid); stopped on drop.
struct Manual {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    _scratch: Scratch,
}

impl Manual {
    /// `sh -c 'LISTEN_PID=$$ exec ringftpd ARGS'` (exec keeps the pid), with `env` set and
    /// `fd3` (if any) as descriptor 3, as systemd passes sockets.
    fn start(tag: &str, args: &[&str], env: &[(&str, &str)], fd3: Option<i32>, listen_pid: bool) -> Manual {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let scratch = Scratch::new(tag);
        let root = scratch.join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("hello.txt"), b"hello\n").unwrap();
        let script = if listen_pid { "LISTEN_PID=$$ exec \"$0\" \"$@\"" } else { "exec \"$0\" \"$@\"" };
        let mut c = Command::new("sh");
        c.args(["-c", script, BIN, "--root", root.to_str().unwrap(), "--user", "bob:secret"])
            .args(["--log-level", "debug"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(scratch.join("stderr.log")).unwrap()));
        if let Some(fd) = fd3 {
            // SAFETY: dup2 and fcntl are async-signal-safe; `fd` stays open in the parent
            // until the child has exec'd (spawn returns after that).
            unsafe {
                c.pre_exec(move || {
                    if fd == 3 {
                        let flags = libc::fcntl(3, libc::F_GETFD);
                        if libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    } else if libc::dup2(fd, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                })
            };
        }
        let mut child = c.spawn().expect("start ringftpd");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Manual { child, lines, _scratch: scratch }
    }

    /// The address of the first `ringftpd listening on` line.
    fn listening(&self) -> std::net::SocketAddr {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no listening line ({e})\n{}", self.log()));
            if let Some(addr) = line.strip_prefix("ringftpd listening on ") {
                return addr.trim().parse().unwrap();
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._scratch.join("stderr.log")).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Manual {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
        let ok = wait_until(Duration::from_secs(3), || self.child.try_wait().is_ok_and(|s| s.is_some()));
        if !ok {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Receives one datagram from the notification socket, as text.
fn notification(socket: &std::os::unix::net::UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_is_notified_once_the_port_accepts() {
    let scratch = Scratch::new("notify");
    let path = scratch.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    let server = Manual::start(
        "notify-server",
        &["--listen", "127.0.0.1:0", "--cores", "2"],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
        None,
        false,
    );
    let ready = notification(&socket);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}\n{}", server.log());
    let status = ready.lines().find_map(|l| l.strip_prefix("STATUS=listening on ")).expect("a STATUS line");
    let addr: std::net::SocketAddr = status.parse().unwrap();
    // Ready means accepting: the greeting comes at once.
    let mut c = Control::connect(addr, TIMEOUT);
    c.login(USER, PASS);
    assert_eq!(server.listening(), addr);
    // A reload is bracketed by RELOADING=1 and READY=1.
    server.signal(libc::SIGHUP);
    let reloading = notification(&socket);
    assert!(reloading.lines().any(|l| l == "RELOADING=1"), "{reloading:?}");
    assert!(reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")), "{reloading:?}");
    let again = notification(&socket);
    assert!(again.lines().any(|l| l == "READY=1"), "{again:?}");
    assert_eq!(c.cmd("NOOP").0, 200);
    server.signal(libc::SIGTERM);
    let stopping = notification(&socket);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
}

#[test]
fn socket_activation_serves_the_inherited_listener() {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Manual::start(
        "activated",
        // --listen is ignored when systemd passes sockets; two shards share the one socket.
        &["--listen", "127.0.0.1:0", "--cores", "2"],
        &[("LISTEN_FDS", "1")],
        Some(listener.as_raw_fd()),
        true,
    );
    assert_eq!(server.listening(), addr, "{}", server.log());
    // Several sessions at once (spread over both shards' accepts), each with a transfer.
    let mut sessions: Vec<Control> = (0..4).map(|_| Control::connect(addr, TIMEOUT)).collect();
    for c in &mut sessions {
        c.login(USER, PASS);
        assert_eq!(c.download("hello.txt").expect("download"), b"hello\n");
    }
    // Nothing else listens: only one listening line came.
    assert!(server.lines.try_recv().is_err());
}

#[test]
fn listen_fds_for_another_pid_are_ignored() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Manual::start(
        "not-activated",
        &["--listen", "127.0.0.1:0"],
        &[("LISTEN_FDS", "1"), ("LISTEN_PID", "1")],
        None,
        false,
    );
    let addr = server.listening();
    assert_ne!(addr, listener.local_addr().unwrap());
    let mut c = Control::connect(addr, TIMEOUT);
    c.login(USER, PASS);
}

/// `ringftpd --hash-password` for `password`.
fn hash_password(password: &str) -> String {
    let out = run_with_input(
        std::process::Command::new(BIN).arg("--hash-password"),
        TIMEOUT,
        Some(format!("{password}\n").as_bytes()),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// USER + PASS on a new connection: the code of the last reply.
fn login_code(server: &TestServer, user: &str, pass: &str) -> u16 {
    let mut c = Control::connect(server.addr(), TIMEOUT);
    match c.cmd(&format!("USER {user}")) {
        (331, _) => c.cmd(&format!("PASS {pass}")).0,
        (code, _) => code,
    }
}

/// Sends SIGHUP and waits until the log has `needle` `n` times.
fn reload(server: &TestServer, needle: &str, n: usize) {
    server.signal(libc::SIGHUP);
    assert!(
        server.wait_for_log(TIMEOUT, |log| log.matches(needle).count() >= n),
        "no {needle:?} after SIGHUP\n{}",
        server.log_for_failure()
    );
}

#[test]
fn sighup_reloads_the_users_file_and_keeps_it_when_invalid() {
    let (alice, carol) = (hash_password("alice pw"), hash_password("carol pw"));
    let b = TestServer::builder("reload-users").no_default_user();
    let users = b.work().join("users");
    std::fs::create_dir_all(b.work()).unwrap();
    std::fs::write(&users, format!("alice:{alice}::rw\n")).unwrap();
    let server = b.args(["--users-file", users.to_str().unwrap()]).start();
    let mut held = Control::connect(server.addr(), TIMEOUT);
    held.login("alice", "alice pw");
    assert_eq!(login_code(&server, "carol", "carol pw"), 530);

    // A good file: carol in, alice out; alice's open session goes on.
    std::fs::write(&users, format!("# swapped\ncarol:{carol}::ro\n")).unwrap();
    reload(&server, "reloaded the users", 1);
    assert_eq!(login_code(&server, "carol", "carol pw"), 230, "{}", server.log_for_failure());
    assert_eq!(login_code(&server, "alice", "alice pw"), 530);
    assert_eq!(held.cmd("NOOP").0, 200);

    // A bad file: the old users stay, and the log says what is wrong and where.
    std::fs::write(&users, format!("carol:{carol}::ro\nthis is not a user line\n")).unwrap();
    reload(&server, "reload failed", 1);
    let log = server.stderr_log();
    let line = log.lines().find(|l| l.contains("reload failed")).unwrap();
    assert!(line.contains("line 2") && line.contains(users.to_str().unwrap()), "{line}");
    assert_eq!(login_code(&server, "carol", "carol pw"), 230);
    assert_eq!(login_code(&server, "alice", "alice pw"), 530);
    // A missing file is bad too.
    std::fs::remove_file(&users).unwrap();
    reload(&server, "reload failed", 2);
    assert_eq!(login_code(&server, "carol", "carol pw"), 230);
}

#[test]
fn sighup_reloads_the_users_of_the_config_file() {
    let b = TestServer::builder("reload-config").no_default_user();
    let config = b.work().join("ringftpd.toml");
    std::fs::create_dir_all(b.work()).unwrap();
    let user = |name: &str, pw: &str| format!("[[users]]\nname = \"{name}\"\npassword = \"{pw}\"\n");
    std::fs::write(&config, user("dave", "pw1")).unwrap();
    let server = b.args(["--config", config.to_str().unwrap()]).start();
    assert_eq!(login_code(&server, "dave", "pw1"), 230);

    std::fs::write(&config, user("erin", "pw2")).unwrap();
    reload(&server, "reloaded the users", 1);
    assert_eq!(login_code(&server, "erin", "pw2"), 230, "{}", server.log_for_failure());
    assert_eq!(login_code(&server, "dave", "pw1"), 530);

    // A user without a password: refused, with the key named; erin stays.
    std::fs::write(&config, "[[users]]\nname = \"frank\"\n").unwrap();
    reload(&server, "reload failed", 1);
    let log = server.stderr_log();
    let line = log.lines().find(|l| l.contains("reload failed")).unwrap();
    assert!(line.contains("users[0]") && line.contains("password"), "{line}");
    assert_eq!(login_code(&server, "erin", "pw2"), 230);
    assert_eq!(login_code(&server, "frank", ""), 530);
}

/// A control connection from `from` (127.0.0.2 stands for a second host), and its first reply.
fn connect_from(from: &str, to: std::net::SocketAddr) -> (Control, std::io::Result<(u16, String)>) {
    use socket2::{Domain, Protocol, Socket, Type};
    let from: std::net::IpAddr = from.parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.bind(&std::net::SocketAddr::new(from, 0).into()).unwrap();
    socket.connect_timeout(&to.into(), TIMEOUT).unwrap();
    let mut c = Control::over(socket.into(), TIMEOUT);
    let first = c.reply();
    (c, first)
}

#[test]
fn sighup_reloads_the_limits_and_the_ban_allow_list_and_keeps_them_when_invalid() {
    let b = TestServer::builder("reload-limits");
    let config = b.work().join("ringftpd.toml");
    std::fs::create_dir_all(b.work()).unwrap();
    let limits = |per_ip: u32, allow: &str| {
        format!("max_sessions_per_ip = {per_ip}\nban_threshold = 2\nban_time = 60\nban_allow = [{allow}]\n")
    };
    std::fs::write(&config, limits(3, "")).unwrap();
    let server = b.args(["--config", config.to_str().unwrap()]).start();
    let held: Vec<Control> = (0..2).map(|_| Control::connect(server.addr(), TIMEOUT)).collect();

    // Two failed logins ban 127.0.0.2.
    let (mut c, first) = connect_from("127.0.0.2", server.addr());
    assert_eq!(first.unwrap().0, 220);
    for _ in 0..2 {
        assert_eq!(c.cmd("USER bob").0, 331);
        assert_eq!(c.cmd("PASS wrong").0, 530);
    }
    drop(c);
    assert_eq!(connect_from("127.0.0.2", server.addr()).1.unwrap().0, 421, "banned");

    // Two sessions per address from now on, and 127.0.0.2 on the allow-list.
    std::fs::write(&config, limits(2, "\"127.0.0.2/32\"")).unwrap();
    reload(&server, "reloaded the ban list's allow-list", 1);
    assert!(server.stderr_log().contains("reloaded the session limits"), "{}", server.log_for_failure());
    let (code, text) = Control::connect_any(server.addr(), TIMEOUT).1.unwrap();
    assert_eq!(code, 421, "a third session from 127.0.0.1: {text}\n{}", server.log_for_failure());
    let (mut c, first) = connect_from("127.0.0.2", server.addr());
    assert_eq!(first.unwrap().0, 220, "the allow-list lifts the ban\n{}", server.log_for_failure());
    assert_eq!(c.cmd("USER bob").0, 331);
    assert_eq!(c.cmd("PASS secret").0, 230);
    drop(c);
    // The sessions over the lowered limit go on.
    let mut held = held;
    assert_eq!(held[0].cmd("NOOP").0, 200);

    // A bad file: the log says why, and the limits and the allow-list stay.
    std::fs::write(&config, "max_sessions_per_ip = \"many\"\n").unwrap();
    reload(&server, "reload failed", 1);
    let log = server.stderr_log();
    let line = log.lines().find(|l| l.contains("reload failed")).unwrap();
    assert!(line.contains("max_sessions_per_ip"), "{line}");
    assert_eq!(Control::connect_any(server.addr(), TIMEOUT).1.unwrap().0, 421, "still 2 per address");
    assert_eq!(connect_from("127.0.0.2", server.addr()).1.unwrap().0, 220, "still allowed");
    assert_eq!(held[1].cmd("NOOP").0, 200);
}

#[test]
fn sighup_reloads_the_timeouts_and_keeps_them_when_invalid() {
    let b = TestServer::builder("reload-timeouts");
    let config = b.work().join("ringftpd.toml");
    std::fs::create_dir_all(b.work()).unwrap();
    let timeouts = |idle: u64, login: u64| format!("idle_timeout = {idle}\nlogin_timeout = {login}\n");
    std::fs::write(&config, timeouts(300, 60)).unwrap();
    let server = b.args(["--config", config.to_str().unwrap()]).start();
    let mut before = Control::connect(server.addr(), TIMEOUT);
    before.login(USER, PASS);

    // One second idle and to log in, from now on.
    std::fs::write(&config, timeouts(1, 1)).unwrap();
    reload(&server, "reloaded the timeouts", 1);
    // A new session gets 421 after the new timeout, long before the old one.
    let mut c = Control::connect(server.addr(), TIMEOUT);
    c.login(USER, PASS);
    let (code, text) = c.reply().expect("421 after the new idle timeout");
    assert_eq!((code, text.as_str()), (421, "421 Timeout."), "{}", server.log_for_failure());
    let (code, text) = Control::connect(server.addr(), TIMEOUT).reply().expect("421 login timeout");
    assert_eq!((code, text.as_str()), (421, "421 Login timeout."));
    // The session from before keeps its deadline until its next command, which sets one with
    // the new timeout.
    assert_eq!(before.cmd("NOOP").0, 200);
    assert_eq!(before.reply().expect("421 after its next command").0, 421);

    // A zero timeout is refused: the log says which, and the short timeouts stay.
    std::fs::write(&config, timeouts(0, 60)).unwrap();
    reload(&server, "reload failed", 1);
    let log = server.stderr_log();
    let line = log.lines().find(|l| l.contains("reload failed")).unwrap();
    assert!(line.contains("idle_timeout must be longer than zero"), "{line}");
    let mut c = Control::connect(server.addr(), TIMEOUT);
    c.login(USER, PASS);
    assert_eq!(c.reply().expect("still the short idle timeout").0, 421);
    // So does a file that does not parse.
    std::fs::write(&config, "idle_timeout = \"long\"\n").unwrap();
    reload(&server, "reload failed", 2);
    let (code, text) =
        Control::connect(server.addr(), TIMEOUT).reply().expect("still the short login timeout");
    assert_eq!((code, text.as_str()), (421, "421 Login timeout."));
}

/// Fails `n` logins from `from`: the server's first reply on the connection, and whether the
/// address is refused (421) on a new connection afterwards.
fn fail_logins(server: &TestServer, from: &str, n: usize) -> bool {
    let (mut c, first) = connect_from(from, server.addr());
    assert_eq!(first.unwrap().0, 220, "{from} already banned\n{}", server.log_for_failure());
    for _ in 0..n {
        assert_eq!(c.cmd("USER bob").0, 331);
        assert_eq!(c.cmd("PASS wrong").0, 530);
    }
    drop(c);
    let refused = connect_from(from, server.addr()).1;
    refused.is_ok_and(|(code, _)| code == 421)
}

#[test]
fn sighup_reloads_the_ban_thresholds_and_keeps_them_when_invalid() {
    let b = TestServer::builder("reload-bans");
    let config = b.work().join("ringftpd.toml");
    std::fs::create_dir_all(b.work()).unwrap();
    let bans = |threshold: u32| format!("ban_threshold = {threshold}\nban_time = 600\n");
    std::fs::write(&config, bans(5)).unwrap();
    let server = b.args(["--config", config.to_str().unwrap()]).start();
    assert!(!fail_logins(&server, "127.0.0.2", 2), "two failures are under 5");

    // Two failures ban, from now on. (127.0.0.2's two count too: its next failure bans it.)
    std::fs::write(&config, bans(2)).unwrap();
    reload(&server, "reloaded the ban thresholds", 1);
    assert!(fail_logins(&server, "127.0.0.3", 2), "banned after 2\n{}", server.log_for_failure());
    assert!(fail_logins(&server, "127.0.0.2", 1), "its earlier failures were kept");
    // Others still log in.
    assert_eq!(login_code(&server, USER, PASS), 230);

    // A bad file: the threshold stays at 2.
    std::fs::write(&config, format!("{}max_sessions = -1\n", bans(50))).unwrap();
    reload(&server, "reload failed", 1);
    assert!(fail_logins(&server, "127.0.0.4", 2), "still banned after 2\n{}", server.log_for_failure());

    // Off, and on again: a ban list that starts off can be turned on by a reload.
    std::fs::write(&config, bans(0)).unwrap();
    reload(&server, "reloaded the ban thresholds", 2);
    assert!(!fail_logins(&server, "127.0.0.5", 2), "banning is off");
}

#[test]
fn sighup_turns_on_a_ban_list_that_started_off() {
    let b = TestServer::builder("reload-bans-on");
    let config = b.work().join("ringftpd.toml");
    std::fs::create_dir_all(b.work()).unwrap();
    std::fs::write(&config, "").unwrap();
    let server = b.args(["--config", config.to_str().unwrap()]).start();
    assert!(!fail_logins(&server, "127.0.0.2", 2), "no ban list");
    std::fs::write(&config, "ban_threshold = 2\n").unwrap();
    reload(&server, "reloaded the ban thresholds", 1);
    assert!(fail_logins(&server, "127.0.0.3", 2), "banned after 2\n{}", server.log_for_failure());
}

#[test]
fn an_embedder_can_hand_the_server_its_own_listener() {
    use ringftp::{FsStorage, Server, User, UserList};
    let scratch = Scratch::new("embed-listener");
    std::fs::write(scratch.join("f.txt"), b"inherited\n").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (lo, hi) = passive_ports_block();
    let users = UserList::new().user_with_password(User::new(USER), PASS.as_bytes());
    let handle = Server::builder(FsStorage::new(scratch.path()).unwrap(), users)
        .listener(listener)
        .passive_ports(lo..=hi)
        .cores(2)
        .build()
        .unwrap()
        .start()
        .unwrap();
    // Only the given socket: no default 127.0.0.1:2121.
    assert_eq!(handle.local_addrs(), [addr]);
    for _ in 0..4 {
        let mut c = Control::connect(addr, TIMEOUT);
        c.login(USER, PASS);
        assert_eq!(c.download("f.txt").expect("download"), b"inherited\n");
    }
    handle.shutdown();
}
