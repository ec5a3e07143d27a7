//! `ringftpd --config`: the example file, users from the file, precedence of flags over the
//! file, and the errors a bad file gets.
//!
//! Each test starts the real binary on `127.0.0.1:0` and talks FTP to it over a raw control
//! connection (and EPSV data connections). Every wait is bounded; servers are killed on drop.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringftpd");
const EXAMPLE: &str = include_str!("../ringftpd.example.toml");
const TIMEOUT: Duration = Duration::from_secs(20);

/// A temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ringftp-config-{}-{n}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(path.join("root")).unwrap();
        Scratch(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn root(&self) -> PathBuf {
        self.join("root")
    }

    /// Writes `text` as `ringftpd.toml` and returns its path.
    fn config(&self, text: &str) -> PathBuf {
        let path = self.join("ringftpd.toml");
        fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A running `ringftpd`, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `ringftpd ARGS` and waits (bounded) for its first `listening on` line.
fn start(args: &[&str], cwd: Option<&Path>) -> Server {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                if let Some(addr) = line.strip_prefix("ringftpd listening on ") {
                    let addr = addr.trim().parse().unwrap();
                    return Server { child, addr };
                }
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!("ringftpd {args:?} did not print its address ({status:?})");
            }
        }
    }
}

/// Starts with `--config PATH --root ROOT --listen 127.0.0.1:0` and `extra` flags.
fn start_with(scratch: &Scratch, config: &Path, extra: &[&str]) -> Server {
    let root = scratch.root();
    let mut args = vec!["--config", config.to_str().unwrap(), "--root", root.to_str().unwrap()];
    args.extend(["--listen", "127.0.0.1:0", "--log-level", "warn"]);
    args.extend(extra);
    start(&args, None)
}

/// Runs `ringftpd ARGS`, which must exit within the timeout; returns its code and stderr.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringftpd {args:?} did not exit");
        }
        thread::sleep(Duration::from_millis(20));
    };
    (status.code(), reader.join().unwrap())
}

/// A minimal FTP client on a raw control connection.
struct Ftp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Ftp {
    /// Connects and reads the greeting.
    fn connect(addr: SocketAddr) -> (Ftp, u16, String) {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        let mut ftp = Ftp { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
        let (code, text) = ftp.reply();
        (ftp, code, text)
    }

    /// Reads one reply, multi-line or not.
    fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        let mut first = String::new();
        self.reader.read_line(&mut first).unwrap();
        assert!(first.len() >= 4, "short reply {first:?}");
        let code: u16 = first[..3].parse().unwrap_or_else(|_| panic!("bad reply {first:?}"));
        text.push_str(&first);
        if first.as_bytes()[3] == b'-' {
            loop {
                let mut line = String::new();
                if self.reader.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                text.push_str(&line);
                if line.starts_with(&format!("{code} ")) {
                    break;
                }
            }
        }
        (code, text)
    }

    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }

    /// USER + PASS; the code of the last reply.
    fn login(&mut self, user: &str, pass: &str) -> u16 {
        match self.cmd(&format!("USER {user}")) {
            (331, _) => self.cmd(&format!("PASS {pass}")).0,
            (code, _) => code,
        }
    }

    /// Opens a passive data connection with EPSV.
    fn epsv(&mut self) -> TcpStream {
        let (code, text) = self.cmd("EPSV");
        assert_eq!(code, 229, "{text}");
        let port = text.split("|||").nth(1).and_then(|rest| rest.split('|').next()).unwrap();
        let addr = SocketAddr::new(self.writer.peer_addr().unwrap().ip(), port.parse().unwrap());
        let data = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        data.set_read_timeout(Some(TIMEOUT)).unwrap();
        data.set_write_timeout(Some(TIMEOUT)).unwrap();
        data
    }

    /// STOR `name` with `content`; the final reply code.
    fn stor(&mut self, name: &str, content: &[u8]) -> u16 {
        assert_eq!(self.cmd("TYPE I").0, 200);
        let mut data = self.epsv();
        let (code, _) = self.cmd(&format!("STOR {name}"));
        if !(100..200).contains(&code) {
            return code;
        }
        data.write_all(content).unwrap();
        data.shutdown(Shutdown::Write).unwrap();
        drop(data);
        self.reply().0
    }

    /// RETR `name`: the bytes, or the refusing reply code.
    fn retr(&mut self, name: &str) -> Result<Vec<u8>, u16> {
        assert_eq!(self.cmd("TYPE I").0, 200);
        let mut data = self.epsv();
        let (code, _) = self.cmd(&format!("RETR {name}"));
        if !(100..200).contains(&code) {
            return Err(code);
        }
        let mut content = Vec::new();
        data.read_to_end(&mut content).unwrap();
        let (code, text) = self.reply();
        assert_eq!(code, 226, "{text}");
        Ok(content)
    }
}

/// Turns the example's commented-out settings (`#key = ...`, `#[[users]]`) into settings.
fn uncomment(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn example_file_starts_the_server_with_the_defaults() {
    let scratch = Scratch::new("example");
    let config = scratch.config(EXAMPLE);
    let server = start_with(&scratch, &config, &[]);
    let (mut ftp, code, greeting) = Ftp::connect(server.addr);
    assert_eq!(code, 220);
    assert!(greeting.contains("ringftp ready"), "{greeting}");
    // No users configured: anonymous read-only, as without a file.
    assert_eq!(ftp.login("anonymous", "guest@"), 230);
}

#[test]
fn example_file_with_every_setting_uncommented_starts() {
    let scratch = Scratch::new("example-all");
    let config = scratch.config(&uncomment(EXAMPLE));
    fs::write(scratch.join("users.txt"), "# no users here\n").unwrap();
    fs::create_dir_all(scratch.root().join("alice")).unwrap();
    fs::write(scratch.root().join("hello.txt"), b"hello").unwrap();
    // The example's fixed ports would collide with other tests: override them.
    let server = start_with(&scratch, &config, &["--metrics", "127.0.0.1:0", "--cores", "1"]);
    let (mut ftp, code, _) = Ftp::connect(server.addr);
    assert_eq!(code, 220);
    // The example's guest has a plain password and is read-only.
    assert_eq!(ftp.login("guest", "change-me"), 230);
    assert_eq!(ftp.stor("nope.txt", b"x"), 550);
    // anonymous = false wins over anonymous_home.
    let (mut ftp, _, _) = Ftp::connect(server.addr);
    assert_eq!(ftp.login("anonymous", "x"), 530);
}

#[test]
fn config_user_with_password_logs_in_and_uploads() {
    let scratch = Scratch::new("upload");
    let config = scratch
        .config("[[users]]\nname = \"bob\"\npassword = \"s3cret\"\nhome = \"bob\"\nrate_limit = 10000000\n");
    fs::create_dir(scratch.root().join("bob")).unwrap();
    let server = start_with(&scratch, &config, &[]);
    let (mut ftp, _, _) = Ftp::connect(server.addr);
    assert_eq!(ftp.login("bob", "wrong"), 530);
    assert_eq!(ftp.login("bob", "s3cret"), 230);
    assert_eq!(ftp.stor("up.txt", b"uploaded through the config user"), 226);
    assert_eq!(fs::read(scratch.root().join("bob/up.txt")).unwrap(), b"uploaded through the config user");
    assert_eq!(ftp.retr("up.txt").unwrap(), b"uploaded through the config user");
    // Users are configured, so anonymous access is off unless asked for.
    let (mut ftp, _, _) = Ftp::connect(server.addr);
    assert_eq!(ftp.login("anonymous", "x"), 530);
}

#[test]
fn config_user_with_password_hash_logs_in() {
    let scratch = Scratch::new("hash");
    let mut child = Command::new(BIN)
        .arg("--hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hashed pw\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    let config =
        scratch.config(&format!("[[users]]\nname = \"carol\"\npassword_hash = \"{}\"\n", hash.trim()));
    let server = start_with(&scratch, &config, &[]);
    let (mut ftp, _, _) = Ftp::connect(server.addr);
    assert_eq!(ftp.login("carol", "hashed pw"), 230);
}

#[test]
fn flags_override_the_file() {
    let scratch = Scratch::new("precedence");
    let config = scratch.config("greeting = \"hello from the file\"\nlisten = [\"127.0.0.1:1\"]\n");
    // The file's greeting, the flag's listen address (port 1 would fail to bind).
    let server = start_with(&scratch, &config, &[]);
    let (_, _, greeting) = Ftp::connect(server.addr);
    assert!(greeting.contains("hello from the file"), "{greeting}");
    drop(server);
    let server = start_with(&scratch, &config, &["--greeting", "hello from the flag"]);
    let (_, _, greeting) = Ftp::connect(server.addr);
    assert!(greeting.contains("hello from the flag"), "{greeting}");
}

#[test]
fn paths_in_the_file_are_relative_to_it() {
    let scratch = Scratch::new("relative");
    fs::create_dir(scratch.join("served")).unwrap();
    fs::write(scratch.join("served/file.txt"), b"relative root").unwrap();
    let config = scratch.config("root = \"served\"\nlisten = [\"127.0.0.1:0\"]\n");
    // Started from elsewhere, without --root.
    let server = start(&["--config", config.to_str().unwrap(), "--log-level", "warn"], Some(Path::new("/")));
    let (mut ftp, _, _) = Ftp::connect(server.addr);
    assert_eq!(ftp.login("anonymous", "x"), 230);
    assert_eq!(ftp.retr("file.txt").unwrap(), b"relative root");
}

#[test]
fn read_only_config_user_gets_550_on_stor() {
    let scratch = Scratch::new("readonly");
    fs::write(scratch.root().join("existing.txt"), b"keep me").unwrap();
    let config = scratch.config(
        "[[users]]\nname = \"ro\"\npassword = \"pw\"\nread_only = true\n\n\
         [[users]]\nname = \"up\"\npassword = \"pw\"\npermissions = [\"write\"]\n",
    );
    let server = start_with(&scratch, &config, &[]);
    let (mut ftp, _, _) = Ftp::connect(server.addr);
    assert_eq!(ftp.login("ro", "pw"), 230);
    assert_eq!(ftp.stor("new.txt", b"x"), 550);
    assert_eq!(ftp.stor("existing.txt", b"x"), 550);
    assert_eq!(ftp.retr("existing.txt").unwrap(), b"keep me");
    assert!(!scratch.root().join("new.txt").exists());
    // A write-only user may upload but not download.
    let (mut ftp, _, _) = Ftp::connect(server.addr);
    assert_eq!(ftp.login("up", "pw"), 230);
    assert_eq!(ftp.stor("new.txt", b"x"), 226);
    assert_eq!(ftp.retr("existing.txt"), Err(550));
}

#[test]
fn per_user_max_sessions_refuses_the_second_login() {
    let scratch = Scratch::new("maxsessions");
    let config = scratch.config("[[users]]\nname = \"one\"\npassword = \"pw\"\nmax_sessions = 1\n");
    let server = start_with(&scratch, &config, &[]);
    let (mut first, _, _) = Ftp::connect(server.addr);
    assert_eq!(first.login("one", "pw"), 230);
    let (mut second, _, _) = Ftp::connect(server.addr);
    assert_eq!(second.login("one", "pw"), 421);
    // Once the first session ends, the user may log in again.
    assert_eq!(first.cmd("QUIT").0, 221);
    drop(first);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (mut again, _, _) = Ftp::connect(server.addr);
        match again.login("one", "pw") {
            230 => break,
            421 if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            code => panic!("login after the first session ended: {code}"),
        }
    }
}

#[test]
fn unknown_key_exits_2_naming_the_key_and_line() {
    let scratch = Scratch::new("unknown");
    let config = scratch.config("greeting = \"hi\"\ngreting = \"typo\"\n");
    let (code, stderr) = run_to_exit(&["--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("greting"), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("ringftpd.toml"), "the message names the file: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn wrong_type_exits_2() {
    let scratch = Scratch::new("wrongtype");
    let config = scratch.config("\n[[users]]\nname = \"a\"\npassword = \"p\"\nmax_sessions = \"many\"\n");
    let (code, stderr) = run_to_exit(&["--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("users[0].max_sessions") && stderr.contains("line 5"), "{stderr}");
    // A bad address is a wrong value too.
    let config = scratch.config("listen = [\"127.0.0.1\"]\n");
    let (code, stderr) = run_to_exit(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("listen[0]") && stderr.contains("line 1"), "{stderr}");
}

#[test]
fn missing_config_file_exits_2() {
    let scratch = Scratch::new("missing");
    let missing = scratch.join("nope.toml");
    let (code, stderr) = run_to_exit(&["--config", missing.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("nope.toml"), "{stderr}");
}
