//! Refusals: commands before login, FTP bounce (PORT/EPRT elsewhere or to low ports),
//! passive-port hijacking, `..` and symlink escapes from the root, special files.

mod common;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::symlink;
use std::time::Duration;

use common::*;

fn q(p: &std::path::Path) -> String {
    format!("'{}'", p.display())
}

#[test]
fn commands_before_login_get_530() {
    let server = TestServer::start("prelogin");
    fs::write(server.root().join("f.txt"), b"secret data").unwrap();
    let refused = [
        "PWD",
        "CWD /",
        "CDUP",
        "LIST",
        "NLST",
        "MLSD",
        "MLST f.txt",
        "RETR f.txt",
        "STOR x.txt",
        "APPE x.txt",
        "STOU",
        "DELE f.txt",
        "MKD d",
        "RMD d",
        "RNFR f.txt",
        "RNTO g.txt",
        "SIZE f.txt",
        "MDTM f.txt",
        "TYPE I",
        "REST 10",
        "PASV",
        "EPSV",
        "PORT 127,0,0,1,100,100",
        "EPRT |1|127.0.0.1|25700|",
        "STAT",
        "ABOR",
        "SITE HELP",
    ];
    let allowed =
        [("NOOP", "200"), ("SYST", "215"), ("FEAT", "211"), ("HELP", "214"), ("OPTS UTF8 ON", "200")];
    let mut steps: Vec<String> = refused.iter().map(|c| format!("raw {c}")).collect();
    steps.extend(allowed.iter().map(|(c, _)| format!("raw {c}")));
    steps.push("login bob secret".into());
    steps.push("raw SIZE f.txt".into());
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    let r = py_opts(&server, &[], &steps).ok(&server);
    let raw = r.lines_with("raw: ");
    assert_eq!(raw.len(), refused.len() + allowed.len() + 1, "{}", r.describe());
    for (cmd, line) in refused.iter().zip(&raw) {
        assert!(line.starts_with("raw: ERR 530"), "{cmd} before login: {line}\n{}", r.describe());
    }
    for ((cmd, code), line) in allowed.iter().zip(&raw[refused.len()..]) {
        assert!(line.starts_with(&format!("raw: {code}")), "{cmd} before login: {line}");
    }
    assert!(r.stdout.contains("login: 230"), "{}", r.describe());
    assert!(raw.last().unwrap().starts_with("raw: 213 11"), "{}", r.describe());
    let names: Vec<_> = fs::read_dir(server.root()).unwrap().collect();
    assert_eq!(names.len(), 1, "something was created before login");
}

#[test]
fn port_and_eprt_bounce_refused() {
    let server = TestServer::start("bounce");
    fs::write(server.root().join("f.txt"), b"payload for the bounce").unwrap();
    // Something listening on "another host": it must never get a connection.
    let victim = TcpListener::bind("127.0.0.2:0").unwrap();
    victim.set_nonblocking(true).unwrap();
    let vport = victim.local_addr().unwrap().port();
    let (hi, lo) = (vport >> 8, vport & 0xff);
    let got = server.work().join("f.txt");
    let r = py_opts(
        &server,
        &["--user", USER, "--password", PASS, "--active"],
        &[
            &format!("raw PORT 127,0,0,2,{hi},{lo}"),
            "raw RETR f.txt",
            &format!("raw EPRT |1|127.0.0.2|{vport}|"),
            "raw RETR f.txt",
            "raw PORT 127,0,0,1,3,255",
            "raw EPRT |1|127.0.0.1|80|",
            "raw PORT 10,1,2,3,100,100",
            "raw EPRT |1|10.1.2.3|25000|",
            // After the refusals the session still works, with its own address.
            &format!("get f.txt {}", q(&got)),
        ],
    )
    .ok(&server);
    let raw = r.lines_with("raw: ");
    let expect = [
        ("PORT to 127.0.0.2", "raw: ERR 501"),
        ("RETR after refused PORT", "raw: ERR 425"),
        ("EPRT to 127.0.0.2", "raw: ERR 501"),
        ("RETR after refused EPRT", "raw: ERR 425"),
        ("PORT to port 1023", "raw: ERR 501"),
        ("EPRT to port 80", "raw: ERR 501"),
        ("PORT to 10.1.2.3", "raw: ERR 501"),
        ("EPRT to 10.1.2.3", "raw: ERR 501"),
    ];
    assert_eq!(raw.len(), expect.len(), "{}", r.describe());
    for ((what, want), line) in expect.iter().zip(&raw) {
        assert!(line.starts_with(want), "{what}: {line}\n{}", r.describe());
    }
    for line in raw.iter().filter(|l| l.contains("501")) {
        assert!(line.contains("Illegal PORT command"), "{line}");
    }
    assert!(r.stdout.contains("get: 226"), "{}", r.describe());
    assert_eq!(fs::read(&got).unwrap(), b"payload for the bounce");
    assert!(victim.accept().is_err(), "the server connected to the foreign address");
}

#[test]
fn passive_connection_from_another_host_is_refused() {
    let server = TestServer::start("pasv-hijack");
    let file = server.root().join("data.bin");
    make_file(&file, 300_001, 21);
    let got = server.work().join("data.bin");
    let r = py(&server, &[&format!("foreign_pasv data.bin {}", q(&got))]).ok(&server);
    let foreign = r.lines_with("foreign: ");
    assert_eq!(foreign.len(), 1, "{}", r.describe());
    assert!(
        foreign[0].starts_with("foreign: closed"),
        "the connection from 127.0.0.2 must be closed without data: {}\n{}",
        foreign[0],
        r.describe()
    );
    assert!(r.stdout.contains("retr-150: 150"), "{}", r.describe());
    assert!(r.stdout.contains("foreign_pasv: 226"), "{}", r.describe());
    assert_same_file(&file, &got, &server);
    assert!(
        server.wait_for_log(Duration::from_secs(5), |l| l
            .contains("refused data connection from a foreign address")),
        "{}",
        server.log_for_failure()
    );
}

/// Parses the port out of a 229 reply: `(|||port|)`.
fn epsv_port(text: &str) -> u16 {
    let inner = text
        .split("(|||")
        .nth(1)
        .and_then(|r| r.split('|').next())
        .unwrap_or_else(|| panic!("not a 229 reply: {text}"));
    inner.parse().unwrap()
}

fn connect_from(source: &str, port: u16) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    s.bind(&from.into()).unwrap();
    let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect from {source} to {to}: {e}"));
    let s: std::net::TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

#[test]
fn foreign_passive_connection_then_data_timeout_425() {
    use std::io::Read;
    let server = TestServer::with_args("pasv-hijack-425", &["--data-timeout", "2"]);
    fs::write(server.root().join("f.txt"), b"not for strangers").unwrap();
    let mut c = Control::connect(server.addr(), Duration::from_secs(15));
    c.login(USER, PASS);
    let (code, text) = c.cmd("EPSV");
    assert_eq!(code, 229, "{text}");
    let port = epsv_port(&text);
    c.send("RETR f.txt");
    // The stranger is let in by the kernel and then closed by the server, without data.
    let mut stranger = connect_from("127.0.0.2", port);
    let mut buf = Vec::new();
    match stranger.read_to_end(&mut buf) {
        Ok(_) => assert!(buf.is_empty(), "a foreign connection got {} bytes", buf.len()),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    // Nobody else comes: 425 at the data timeout, and the session goes on.
    let (code, text) = c.reply().expect("a reply to RETR");
    assert_eq!(code, 425, "{text}\n{}", server.log_for_failure());
    assert_eq!(c.cmd("NOOP").0, 200);
}

/// A passive listener is only looked at once the transfer command arrives: a connection made
/// before it is taken from the queue, and one made after it is waited for. This is the
/// second case (the first is every other download test).
#[test]
fn passive_data_connection_made_after_the_command() {
    use std::io::Read;
    let server = TestServer::start("pasv-late");
    fs::write(server.root().join("f.txt"), b"late but welcome").unwrap();
    let mut c = Control::connect(server.addr(), Duration::from_secs(15));
    c.login(USER, PASS);
    let (code, text) = c.cmd("EPSV");
    assert_eq!(code, 229, "{text}");
    let port = epsv_port(&text);
    c.send("RETR f.txt");
    std::thread::sleep(Duration::from_millis(300));
    let mut data = connect_from("127.0.0.1", port);
    let (code, text) = c.reply().expect("150 once connected");
    assert_eq!(code, 150, "{text}\n{}", server.log_for_failure());
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"late but welcome");
    let (code, text) = c.reply().expect("226");
    assert_eq!(code, 226, "{text}");
}

#[test]
fn client_closing_the_data_connection_gets_426() {
    use std::io::Read;
    let server = TestServer::start("data-drop");
    let big = fs::File::create(server.root().join("huge.bin")).unwrap();
    big.set_len(1024 * MIB).unwrap();
    let mut c = Control::connect(server.addr(), Duration::from_secs(15));
    c.login(USER, PASS);
    assert_eq!(c.cmd("TYPE I").0, 200);
    let (code, text) = c.cmd("EPSV");
    assert_eq!(code, 229, "{text}");
    let mut data = connect_from("127.0.0.1", epsv_port(&text));
    let (code, text) = c.cmd("RETR huge.bin");
    assert_eq!(code, 150, "{text}");
    let mut buf = vec![0u8; 256 * 1024];
    data.read_exact(&mut buf).unwrap();
    drop(data);
    let (code, text) = c.reply().expect("a reply after the data connection broke");
    assert_eq!(code, 426, "{text}\n{}", server.log_for_failure());
    assert_eq!(c.cmd("NOOP").0, 200);
    assert_eq!(c.cmd("SIZE huge.bin").1, "213 1073741824");
}

#[test]
fn dotdot_cannot_leave_the_root() {
    let server = TestServer::start("dotdot");
    let root = server.root();
    // The scratch dir holds root/ and work/: work/secret.txt is one `..` away from the root.
    let secret = server.work().join("secret.txt");
    fs::write(&secret, b"outside the root").unwrap();
    fs::write(root.join("inside.txt"), b"inside").unwrap();
    let src = server.work().join("up.txt");
    fs::write(&src, b"uploaded").unwrap();
    let got = server.work().join("got.txt");
    let r = py(
        &server,
        &[
            "raw CWD ..",
            "raw PWD",
            "raw CWD ../../../..",
            "raw PWD",
            "raw CDUP",
            "raw PWD",
            "raw SIZE ../work/secret.txt",
            "raw SIZE ../../../../etc/passwd",
            "raw MLST ..",
            &format!("get ../work/secret.txt {}", q(&got)),
            &format!("get ../../../../etc/passwd {}", q(&got)),
            &format!("get /../../etc/passwd {}", q(&got)),
            "nlst ..",
            "nlst ../..",
            &format!("put {} ../../escaped.txt", q(&src)),
            &format!("get ../inside.txt {}", q(&got)),
        ],
    )
    .ok(&server);
    let raw = r.lines_with("raw: ");
    let expect = [
        "raw: 250",
        "raw: 257 \"/\"",
        "raw: 250",
        "raw: 257 \"/\"",
        "raw: 2",
        "raw: 257 \"/\"",
        "raw: ERR 550",
        "raw: ERR 550",
        "raw: 250",
    ];
    assert_eq!(raw.len(), expect.len(), "{}", r.describe());
    for (want, line) in expect.iter().zip(&raw) {
        assert!(line.starts_with(want), "want {want}: {line}\n{}", r.describe());
    }
    let gets = r.lines_with("get: ");
    assert_eq!(gets.len(), 4, "{}", r.describe());
    for g in &gets[..3] {
        assert!(g.starts_with("get: ERR 550"), "{g}\n{}", r.describe());
    }
    assert!(gets[3].starts_with("get: 226"), "{}", r.describe());
    assert_eq!(fs::read(&got).unwrap(), b"inside");
    // `..` at the top lists the root itself.
    let nlst: BTreeSetS = r.lines_with("nlst| ").into_iter().collect();
    assert!(
        nlst.iter().all(|l| l == "nlst| inside.txt" || l == "nlst| escaped.txt"),
        "NLST .. shows something outside the root: {nlst:?}"
    );
    assert!(nlst.contains("nlst| inside.txt"), "{}", r.describe());
    // The upload to ../../escaped.txt lands in the root.
    assert!(r.stdout.contains("put: 226"), "{}", r.describe());
    assert_eq!(fs::read(root.join("escaped.txt")).unwrap(), b"uploaded");
    assert!(!root.parent().unwrap().join("escaped.txt").exists());
    assert_eq!(fs::read(&secret).unwrap(), b"outside the root");
}

type BTreeSetS = std::collections::BTreeSet<String>;

#[test]
fn symlinks_out_of_the_root_are_refused() {
    let server = TestServer::start("symlinks");
    let root = server.root();
    let work = server.work();
    let secret = work.join("secret.txt");
    fs::write(&secret, b"outside the root").unwrap();
    let outdir = work.join("outdir");
    fs::create_dir(&outdir).unwrap();
    fs::write(outdir.join("victim.txt"), b"victim").unwrap();
    fs::write(root.join("plain.txt"), b"plain inside").unwrap();
    symlink("/etc", root.join("etc_link")).unwrap();
    symlink(&secret, root.join("file_link")).unwrap();
    symlink("../work/secret.txt", root.join("rel_link")).unwrap();
    symlink(&outdir, root.join("dir_link")).unwrap();
    symlink("plain.txt", root.join("inside_link")).unwrap();
    let src = work.join("evil.txt");
    fs::write(&src, b"overwritten!").unwrap();
    let got = work.join("got.txt");

    let r = py(
        &server,
        &[
            &format!("get etc_link/passwd {}", q(&got)),
            &format!("get file_link {}", q(&got)),
            &format!("get rel_link {}", q(&got)),
            &format!("get dir_link/victim.txt {}", q(&got)),
            "raw CWD etc_link",
            "raw CWD dir_link",
            "raw SIZE file_link",
            "raw SIZE rel_link",
            "raw MDTM etc_link/passwd",
            "raw MLST file_link",
            "raw RNFR dir_link/victim.txt",
            "raw DELE dir_link/victim.txt",
            "raw MKD dir_link/newdir",
            "raw RMD dir_link",
            "list etc_link",
            "nlst dir_link",
            "mlsd etc_link",
            &format!("put {} file_link", q(&src)),
            &format!("put {} dir_link/new.txt", q(&src)),
            &format!("appe {} rel_link", q(&src)),
            "raw PWD",
            &format!("get inside_link {}", q(&got)),
        ],
    )
    .ok(&server);
    for prefix in ["raw: ", "list: ", "nlst: ", "mlsd: ", "put: ", "appe: "] {
        for line in r.lines_with(prefix) {
            if line.starts_with("raw: 257") {
                continue; // PWD
            }
            assert!(line.starts_with(&format!("{prefix}ERR 550")), "expected 550: {line}\n{}", r.describe());
        }
    }
    let gets = r.lines_with("get: ");
    assert_eq!(gets.len(), 5, "{}", r.describe());
    for g in &gets[..4] {
        assert!(g.starts_with("get: ERR 550"), "{g}\n{}", r.describe());
    }
    assert!(r.stdout.contains("raw: 257 \"/\""), "{}", r.describe());
    // A symlink that stays inside the root works.
    assert!(gets[4].starts_with("get: 226"), "{}", r.describe());
    assert_eq!(fs::read(&got).unwrap(), b"plain inside");
    // Nothing outside changed.
    assert_eq!(fs::read(&secret).unwrap(), b"outside the root");
    assert_eq!(fs::read(outdir.join("victim.txt")).unwrap(), b"victim");
    assert!(!outdir.join("new.txt").exists());
    assert!(!outdir.join("newdir").exists());
    assert!(server.root().join("dir_link").is_symlink());
}

#[test]
fn special_files_are_refused_not_hung() {
    let server = TestServer::start("fifo");
    let fifo = server.root().join("pipe");
    let c = std::ffi::CString::new(fifo.display().to_string()).unwrap();
    // SAFETY: mkfifo on a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let src = server.work().join("x.txt");
    fs::write(&src, b"x").unwrap();
    let got = server.work().join("got");
    let r = py_opts(
        &server,
        &["--user", USER, "--password", PASS, "--timeout", "10"],
        &[&format!("get pipe {}", q(&got)), &format!("put {} pipe", q(&src)), "raw SIZE pipe", "raw NOOP"],
    )
    .ok(&server);
    assert!(r.stdout.contains("get: ERR 550"), "{}", r.describe());
    assert!(r.stdout.contains("put: ERR 550"), "{}", r.describe());
    assert!(r.stdout.contains("raw: ERR 550"), "{}", r.describe());
    assert!(r.stdout.contains("raw: 200"), "{}", r.describe());
}

#[test]
fn overlong_and_odd_command_lines() {
    let server = TestServer::start("oddlines");
    let mut c = Control::connect(server.addr(), Duration::from_secs(10));
    c.login(USER, PASS);
    // An over-long line is refused, and the session goes on.
    let (code, text) = c.cmd(&format!("RETR {}", "a".repeat(10_000)));
    assert_eq!(code / 100, 5, "{text}");
    assert_eq!(c.cmd("NOOP").0, 200);
    // Unknown commands: 500/502.
    let (code, text) = c.cmd("XYZZY");
    assert!(code == 500 || code == 502, "{code} {text}");
    // A NUL in a path: refused.
    let (code, text) = c.cmd("SIZE a\0b");
    assert_eq!(code / 100, 5, "{text}");
    // Lower-case commands and a bare LF line end work.
    c.send_raw(b"pwd\n");
    let (code, text) = c.reply().unwrap();
    assert_eq!(code, 257, "{text}");
    assert_eq!(c.cmd("QUIT").0, 221);
    assert!(c.closed_by_server());
}
