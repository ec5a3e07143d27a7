//! `ringftpd --config`: the example file, users from the file, precedence of flags over the
//! file, and the errors a bad file gets.
//!
//! Each test starts the real binary on `127.0.0.1:0` and talks FTP to it over a raw control
//! connection (and EPSV data connections). Every wait is bounded; servers are killed on drop.

mod common;

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{run_timeout, Control, ServerBuilder, TestServer, BIN};

const EXAMPLE: &str = include_str!("../ringftpd.example.toml");
const TIMEOUT: Duration = Duration::from_secs(20);

/// A server (not started yet) with `text` as its `ringftpd.toml`, in the work directory
/// beside the root, plus the harness's `--root`, `--listen 127.0.0.1:0` and `extra` flags.
/// No default user: the file says who may log in.
fn with_config(tag: &str, text: &str, extra: &[&str]) -> ServerBuilder {
    let b = TestServer::builder(tag).no_default_user().log_level("warn");
    fs::create_dir_all(b.root()).unwrap();
    fs::create_dir_all(b.work()).unwrap();
    let config = b.work().join("ringftpd.toml");
    fs::write(&config, text).unwrap();
    b.args(["--config", config.to_str().unwrap()]).args(extra.iter().copied())
}

/// Connects: the control connection, the greeting's code and text.
fn connect(server: &TestServer) -> (Control, u16, String) {
    let (c, greeting) = Control::connect_any(server.addr(), TIMEOUT);
    let (code, text) = greeting.expect("a greeting");
    (c, code, text)
}

/// USER + PASS; the code of the last reply.
fn login(c: &mut Control, user: &str, pass: &str) -> u16 {
    match c.cmd(&format!("USER {user}")) {
        (331, _) => c.cmd(&format!("PASS {pass}")).0,
        (code, _) => code,
    }
}

/// `ringftpd ARGS`, which must exit within the timeout: its code and stderr.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let out = run_timeout(Command::new(BIN).args(args), TIMEOUT);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
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
    let server = with_config("example", EXAMPLE, &[]).start();
    let (mut ftp, code, greeting) = connect(&server);
    assert_eq!(code, 220);
    assert!(greeting.contains("ringftp ready"), "{greeting}");
    // No users configured: anonymous read-only, as without a file.
    assert_eq!(login(&mut ftp, "anonymous", "guest@"), 230);
}

#[test]
fn example_file_with_every_setting_uncommented_starts() {
    // The example's fixed ports would collide with other tests: override them.
    let b = with_config("example-all", &uncomment(EXAMPLE), &["--metrics", "127.0.0.1:0", "--cores", "1"]);
    fs::write(b.work().join("users.txt"), "# no users here\n").unwrap();
    fs::create_dir_all(b.root().join("alice")).unwrap();
    fs::write(b.root().join("hello.txt"), b"hello").unwrap();
    let server = b.start();
    let (mut ftp, code, _) = connect(&server);
    assert_eq!(code, 220);
    // The example's guest has a plain password and is read-only.
    assert_eq!(login(&mut ftp, "guest", "change-me"), 230);
    assert_eq!(ftp.upload("nope.txt", b"x").0, 550);
    // anonymous = false wins over anonymous_home.
    let (mut ftp, _, _) = connect(&server);
    assert_eq!(login(&mut ftp, "anonymous", "x"), 530);
}

#[test]
fn config_user_with_password_logs_in_and_uploads() {
    let text = "[[users]]\nname = \"bob\"\npassword = \"s3cret\"\nhome = \"bob\"\nrate_limit = 10000000\n";
    let b = with_config("upload", text, &[]);
    fs::create_dir(b.root().join("bob")).unwrap();
    let server = b.start();
    let (mut ftp, _, _) = connect(&server);
    assert_eq!(login(&mut ftp, "bob", "wrong"), 530);
    assert_eq!(login(&mut ftp, "bob", "s3cret"), 230);
    assert_eq!(ftp.upload("up.txt", b"uploaded through the config user").0, 226);
    assert_eq!(fs::read(server.root().join("bob/up.txt")).unwrap(), b"uploaded through the config user");
    assert_eq!(ftp.download("up.txt").unwrap(), b"uploaded through the config user");
    // Users are configured, so anonymous access is off unless asked for.
    let (mut ftp, _, _) = connect(&server);
    assert_eq!(login(&mut ftp, "anonymous", "x"), 530);
}

#[test]
fn config_user_with_password_hash_logs_in() {
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
    let text = format!("[[users]]\nname = \"carol\"\npassword_hash = \"{}\"\n", hash.trim());
    let server = with_config("hash", &text, &[]).start();
    let (mut ftp, _, _) = connect(&server);
    assert_eq!(login(&mut ftp, "carol", "hashed pw"), 230);
}

#[test]
fn flags_override_the_file() {
    let text = "greeting = \"hello from the file\"\nlisten = [\"127.0.0.1:1\"]\n";
    // The file's greeting, the flag's listen address (port 1 would fail to bind).
    let server = with_config("precedence", text, &[]).start();
    let (_, _, greeting) = connect(&server);
    assert!(greeting.contains("hello from the file"), "{greeting}");
    drop(server);
    let server = with_config("precedence-flag", text, &["--greeting", "hello from the flag"]).start();
    let (_, _, greeting) = connect(&server);
    assert!(greeting.contains("hello from the flag"), "{greeting}");
}

#[test]
fn paths_in_the_file_are_relative_to_it() {
    let b = with_config("relative", "root = \"served\"\nlisten = [\"127.0.0.1:0\"]\n", &[]);
    fs::create_dir(b.work().join("served")).unwrap();
    fs::write(b.work().join("served/file.txt"), b"relative root").unwrap();
    // Started from elsewhere, without --root.
    let server = b.no_root().current_dir("/").start();
    let (mut ftp, _, _) = connect(&server);
    assert_eq!(login(&mut ftp, "anonymous", "x"), 230);
    assert_eq!(ftp.download("file.txt").unwrap(), b"relative root");
}

#[test]
fn read_only_config_user_gets_550_on_stor() {
    let text = "[[users]]\nname = \"ro\"\npassword = \"pw\"\nread_only = true\n\n\
                [[users]]\nname = \"up\"\npassword = \"pw\"\npermissions = [\"write\"]\n";
    let b = with_config("readonly", text, &[]);
    fs::write(b.root().join("existing.txt"), b"keep me").unwrap();
    let server = b.start();
    let (mut ftp, _, _) = connect(&server);
    assert_eq!(login(&mut ftp, "ro", "pw"), 230);
    assert_eq!(ftp.upload("new.txt", b"x").0, 550);
    assert_eq!(ftp.upload("existing.txt", b"x").0, 550);
    assert_eq!(ftp.download("existing.txt").unwrap(), b"keep me");
    assert!(!server.root().join("new.txt").exists());
    // A write-only user may upload but not download.
    let (mut ftp, _, _) = connect(&server);
    assert_eq!(login(&mut ftp, "up", "pw"), 230);
    assert_eq!(ftp.upload("new.txt", b"x").0, 226);
    assert_eq!(ftp.download("existing.txt").map_err(|(code, _)| code), Err(550));
}

#[test]
fn per_user_max_sessions_refuses_the_second_login() {
    let text = "[[users]]\nname = \"one\"\npassword = \"pw\"\nmax_sessions = 1\n";
    let server = with_config("maxsessions", text, &[]).start();
    let (mut first, _, _) = connect(&server);
    assert_eq!(login(&mut first, "one", "pw"), 230);
    let (mut second, _, _) = connect(&server);
    assert_eq!(login(&mut second, "one", "pw"), 421);
    // Once the first session ends, the user may log in again.
    assert_eq!(first.cmd("QUIT").0, 221);
    drop(first);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (mut again, _, _) = connect(&server);
        match login(&mut again, "one", "pw") {
            230 => break,
            421 if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            code => panic!("login after the first session ended: {code}"),
        }
    }
}

/// A config file in a fresh directory, for the runs that must fail before serving.
fn bad_config(tag: &str, text: &str) -> (common::Scratch, String) {
    let scratch = common::Scratch::new(tag);
    let path = scratch.join("ringftpd.toml");
    fs::write(&path, text).unwrap();
    (scratch, path.to_str().unwrap().to_string())
}

#[test]
fn unknown_key_exits_2_naming_the_key_and_line() {
    let (_dir, config) = bad_config("unknown", "greeting = \"hi\"\ngreting = \"typo\"\n");
    let (code, stderr) = run_to_exit(&["--config", &config, "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("greting"), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("ringftpd.toml"), "the message names the file: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn wrong_type_exits_2() {
    let text = "\n[[users]]\nname = \"a\"\npassword = \"p\"\nmax_sessions = \"many\"\n";
    let (_dir, config) = bad_config("wrongtype", text);
    let (code, stderr) = run_to_exit(&["--config", &config, "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("users[0].max_sessions") && stderr.contains("line 5"), "{stderr}");
    // A bad address is a wrong value too.
    let (_dir, config) = bad_config("badaddr", "listen = [\"127.0.0.1\"]\n");
    let (code, stderr) = run_to_exit(&["--config", &config]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("listen[0]") && stderr.contains("line 1"), "{stderr}");
}

#[test]
fn missing_config_file_exits_2() {
    let scratch = common::Scratch::new("missing");
    let missing = scratch.join("nope.toml");
    let (code, stderr) = run_to_exit(&["--config", missing.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("nope.toml"), "{stderr}");
}
