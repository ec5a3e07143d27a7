//! The `ringftpd` command line: help, refusals at startup, users files, timeouts, and
//! graceful shutdown on signals.

mod common;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn help_exits_zero_and_mentions_every_flag() {
    let out = run_text(Command::new(BIN).arg("--help"));
    assert!(out.status.success(), "{}", out.describe());
    for flag in [
        "--root",
        "--listen",
        "--user",
        "--users-file",
        "--anonymous",
        "--passive-ports",
        "--public-address",
        "--cores",
        "--idle-timeout",
        "--data-timeout",
        "--greeting",
        "--log-level",
        "--hash-password",
        "--version",
        "--log-format",
        "--xferlog",
        "--ban-threshold",
        "--ban-time",
        "--ban-allow",
        "--user-lockout",
    ] {
        assert!(out.stdout.contains(flag), "--help does not mention {flag}:\n{}", out.stdout);
    }
}

#[test]
fn version_prints_the_name_and_the_crate_version() {
    let out = run_text(Command::new(BIN).arg("--version"));
    assert!(out.status.success(), "{}", out.describe());
    assert_eq!(out.stdout.trim(), format!("ringftpd {}", env!("CARGO_PKG_VERSION")), "{}", out.describe());
}

#[test]
fn nonexistent_root_exits_2_with_one_line() {
    let scratch = Scratch::new("noroot");
    let missing = scratch.join("does-not-exist");
    let out = run_text_timeout(
        Command::new(BIN).arg("--root").arg(&missing).args([
            "--listen",
            "127.0.0.1:0",
            "--user",
            "bob:secret",
        ]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr:\n{}", out.describe());
    assert!(lines[0].starts_with("ringftpd: "), "{}", out.describe());
    assert!(lines[0].contains("does-not-exist"), "the message should name the root: {}", lines[0]);
    assert!(out.stdout.is_empty(), "{}", out.describe());
}

#[test]
fn root_that_is_a_file_exits_2() {
    let scratch = Scratch::new("fileroot");
    let file = scratch.join("plain-file");
    fs::write(&file, b"x").unwrap();
    let out = run_text_timeout(
        Command::new(BIN).arg("--root").arg(&file).args(["--listen", "127.0.0.1:0"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.describe());
    assert!(out.stderr.starts_with("ringftpd: "), "{}", out.describe());
}

#[test]
fn inverted_passive_range_is_refused() {
    let scratch = Scratch::new("badrange");
    let out = run_text_timeout(
        Command::new(BIN).arg("--root").arg(scratch.path()).args([
            "--listen",
            "127.0.0.1:0",
            "--passive-ports",
            "10-5",
        ]),
        Duration::from_secs(10),
    );
    assert!(!out.status.success(), "{}", out.describe());
    assert!(out.stderr.contains("10-5"), "{}", out.describe());
    // Port 0 is not a port either.
    let out = run_text_timeout(
        Command::new(BIN).arg("--root").arg(scratch.path()).args([
            "--listen",
            "127.0.0.1:0",
            "--passive-ports",
            "0-100",
        ]),
        Duration::from_secs(10),
    );
    assert!(!out.status.success(), "{}", out.describe());
}

#[test]
fn bad_ban_allow_network_is_refused() {
    let out = run_text_timeout(
        Command::new(BIN).args([
            "--listen",
            "127.0.0.1:0",
            "--ban-threshold",
            "3",
            "--ban-allow",
            "10.0.0.0/8,nope",
        ]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("nope"), "{}", out.describe());
}

#[test]
fn unknown_flag_exits_2() {
    let out = run_text_timeout(Command::new(BIN).arg("--no-such-flag"), Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
}

fn hash_password(password: &str) -> String {
    let out = run_with_input(
        Command::new(BIN).arg("--hash-password"),
        Duration::from_secs(30),
        Some(format!("{password}\n").as_bytes()),
    );
    assert!(out.status.success(), "--hash-password failed: {}", String::from_utf8_lossy(&out.stderr));
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2"), "not a PHC hash: {hash:?}");
    hash
}

#[test]
fn users_file_with_hashed_passwords_and_a_read_only_user() {
    let alice_hash = hash_password("wonderland");
    let carol_hash = hash_password("c4r0l pass");
    assert_ne!(alice_hash, carol_hash);

    let builder = TestServer::builder("usersfile").no_default_user();
    let users = builder.work().join("users");
    fs::create_dir_all(builder.work()).unwrap();
    fs::create_dir_all(builder.root().join("pub")).unwrap();
    fs::write(builder.root().join("pub/readme.txt"), b"read me\n").unwrap();
    fs::write(&users, format!("# test users\nalice:{alice_hash}::rw\ncarol:{carol_hash}:pub:ro\n")).unwrap();
    let server = builder.arg("--users-file").arg(users.display().to_string()).start();
    assert!(
        !server.stdout_lines().iter().any(|l| l.contains("anonymous")),
        "a users file must not enable anonymous access: {:?}",
        server.stdout_lines()
    );
    let work = server.work();
    let src = work.join("up.bin");
    make_file(&src, 100_000, 7);

    // alice: read-write, home is the root.
    let r = py_opts(
        &server,
        &["--user", "alice", "--password", "wonderland"],
        &[&format!("put '{}' alice.bin", src.display()), "raw PWD"],
    )
    .ok(&server);
    assert!(r.stdout.contains("put: 226"), "{}", r.describe());
    assert_same_file(&src, &server.root().join("alice.bin"), &server);

    // Wrong password for alice; bob (not in the file) cannot log in at all.
    let r = py_opts(&server, &[], &["login alice wrong", "login bob secret"]);
    let logins = r.lines_with("login: ");
    assert_eq!(logins.len(), 2, "{}", r.describe());
    assert!(logins[0].starts_with("login: ERR 530"), "{}", r.describe());
    assert!(logins[1].starts_with("login: ERR 530"), "{}", r.describe());

    // carol: read-only, home is pub/: she sees readme.txt at her root, and cannot write.
    let got = work.join("readme.txt");
    let r = py_opts(
        &server,
        &["--user", "carol", "--password", "c4r0l pass"],
        &[
            &format!("get readme.txt '{}'", got.display()),
            &format!("put '{}' carol.bin", src.display()),
            "raw MKD carols",
            "raw DELE readme.txt",
            "raw CWD ..",
            "nlst",
        ],
    )
    .ok(&server);
    assert!(r.stdout.contains("get: 226"), "{}", r.describe());
    assert_eq!(fs::read(&got).unwrap(), b"read me\n");
    let put = r.lines_with("put: ");
    assert!(put[0].starts_with("put: ERR 550"), "{}", r.describe());
    assert!(r.lines_with("raw: ")[0].starts_with("raw: ERR 550"), "MKD: {}", r.describe());
    assert!(r.lines_with("raw: ")[1].starts_with("raw: ERR 550"), "DELE: {}", r.describe());
    // Her home is her root: `..` does not reach the real root.
    assert!(r.stdout.contains("nlst| readme.txt"), "{}", r.describe());
    assert!(!r.stdout.contains("nlst| alice.bin"), "{}", r.describe());
    assert!(!server.root().join("carol.bin").exists());
    assert!(!server.root().join("pub/carol.bin").exists());
    assert!(!server.root().join("pub/carols").exists());
    assert!(server.root().join("pub/readme.txt").exists());
}

#[test]
fn greeting_flag_sets_the_220_text() {
    let server = TestServer::with_args("greeting", &["--greeting", "hello from the tests"]);
    let r = py(&server, &["raw NOOP"]).ok(&server);
    assert!(r.stdout.contains("greeting: 220 hello from the tests"), "{}", r.describe());
}

#[test]
fn idle_timeout_closes_the_session_with_421() {
    let server = TestServer::with_args("idle", &["--idle-timeout", "1"]);
    let mut c = Control::connect(server.addr(), Duration::from_secs(10));
    c.login(USER, PASS);
    let t0 = Instant::now();
    let (code, text) = c.reply().expect("an unsolicited 421 at the idle timeout");
    assert_eq!(code, 421, "{text}\n{}", server.log_for_failure());
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(5),
        "idle timeout of 1 s fired after {waited:?}"
    );
    assert!(c.closed_by_server(), "the connection should be closed after 421");
}

#[test]
fn data_timeout_answers_425() {
    let server = TestServer::with_args("datato", &["--data-timeout", "1"]);
    fs::write(server.root().join("f.txt"), b"data").unwrap();
    let mut c = Control::connect(server.addr(), Duration::from_secs(10));
    c.login(USER, PASS);
    let (code, text) = c.cmd("EPSV");
    assert_eq!(code, 229, "{text}");
    // Nobody connects to the passive port.
    let t0 = Instant::now();
    let (code, text) = c.cmd("RETR f.txt");
    assert_eq!(code, 425, "{text}\n{}", server.log_for_failure());
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // The session goes on.
    assert_eq!(c.cmd("NOOP").0, 200);
}

#[test]
fn sigterm_while_idle_exits_zero() {
    let mut server = TestServer::start("sigterm");
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5));
    let Some(status) = status else {
        panic!("ringftpd still running 5 s after SIGTERM\n{}", server.log_for_failure());
    };
    assert!(status.success(), "exit status after SIGTERM: {status}\n{}", server.log_for_failure());
}

#[test]
fn sigint_while_idle_exits_zero() {
    let mut server = TestServer::start("sigint");
    server.signal(libc::SIGINT);
    let status = server.wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status after SIGINT: {status:?}\n{}",
        server.log_for_failure()
    );
}

#[test]
fn sigterm_sends_421_to_connected_clients() {
    let mut server = TestServer::start("sigterm421");
    let mut logged_in = Control::connect(server.addr(), Duration::from_secs(10));
    logged_in.login(USER, PASS);
    let mut anonymous = Control::connect(server.addr(), Duration::from_secs(10));
    assert!(server.wait_for_log(Duration::from_secs(5), |log| { log.matches("connected").count() >= 2 }));
    server.signal(libc::SIGTERM);
    for (who, c) in [("logged-in", &mut logged_in), ("not logged in", &mut anonymous)] {
        let (code, text) = c.reply().unwrap_or_else(|e| panic!("{who} client: no 421 at shutdown: {e}"));
        assert_eq!(code, 421, "{who}: {text}");
        assert!(c.closed_by_server(), "{who}: not closed after 421");
    }
    let status = server.wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status after SIGTERM with clients: {status:?}\n{}",
        server.log_for_failure()
    );
}

#[test]
fn a_port_another_server_listens_on_is_refused_not_shared() {
    // SO_REUSEPORT would let a second server join the first one's port and take half its
    // connections; it must fail instead.
    let first = TestServer::start("port-taken");
    let scratch = Scratch::new("port-taken-2");
    let addr = first.addr().to_string();
    let out = run_text_timeout(
        Command::new(BIN).arg("--root").arg(scratch.path()).args(["--listen", &addr, "--user", "bob:secret"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("in use"), "{}", out.describe());
    // The first server is unaffected.
    let mut c = Control::connect(first.addr(), Duration::from_secs(10));
    c.login(USER, PASS);
    assert_eq!(c.cmd("NOOP").0, 200);
}

#[test]
fn public_address_is_announced_in_pasv_only() {
    // Behind NAT the server must tell clients the outside address in PASV; EPSV carries only
    // the port, so it keeps working whatever the address.
    let server = TestServer::with_args("public-addr", &["--public-address", "127.0.0.9"]);
    fs::write(server.root().join("f.txt"), b"hello nat\n").unwrap();
    let mut c = Control::connect(server.addr(), Duration::from_secs(10));
    c.login(USER, PASS);
    let (code, text) = c.cmd("PASV");
    assert_eq!(code, 227, "{text}");
    assert!(text.contains("(127,0,0,9,"), "PASV must announce the public address: {text}");
    assert_eq!(c.download("f.txt").expect("EPSV download"), b"hello nat\n");
}

#[test]
fn active_source_port_is_control_port_minus_one() {
    let server = TestServer::with_args("active-src", &["--active-source-port"]);
    let source = server.port() - 1;
    // The kernel chose the control port; the one below it may belong to someone else.
    if std::net::TcpListener::bind(("127.0.0.1", source)).is_err() {
        eprintln!("port {source} is in use here; the server falls back to any port, nothing to check");
        return;
    }
    fs::write(server.root().join("f.txt"), b"from port 20\n").unwrap();
    let mut c = Control::connect(server.addr(), Duration::from_secs(10));
    c.login(USER, PASS);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let std::net::SocketAddr::V4(v4) = listener.local_addr().unwrap() else { unreachable!() };
    let (code, text) = c.cmd(&format!("PORT {}", ringftp::proto::address::format_port(v4)));
    assert_eq!(code, 200, "{text}");
    c.send("RETR f.txt");
    // A bounded accept: the test must fail, not hang, if the server never connects.
    listener.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (mut data, from) = loop {
        match listener.accept() {
            Ok(conn) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(std::time::Instant::now() < deadline, "the server never connected");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    data.set_nonblocking(false).unwrap();
    data.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(from.port(), source, "the active data connection comes from control port - 1");
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut data, &mut got).unwrap();
    assert_eq!(got, b"from port 20\n");
    assert_eq!(c.reply().unwrap().0, 150);
    assert_eq!(c.reply().unwrap().0, 226);
}
